//! The peer: `kubectl port-forward` to the bench pod through the same API server, with the
//! kubectl built from the same Kubernetes module as the cluster ($TETHER_KUBECTL).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::daemon::kill_group;

/// How long kubectl may take to say it forwards.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// kubectl with the admin kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The kubectl binary.
    pub bin: PathBuf,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// A kubectl command with the kubeconfig set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig);
        c
    }

    /// Runs kubectl with `args` and `stdin`; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        use std::io::Write as _;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let mut input = child.stdin.take().context("kubectl stdin")?;
        if let Some(s) = stdin {
            input.write_all(s.as_bytes())?;
        }
        drop(input);
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A running `kubectl port-forward`; killed (with its process group) on drop.
pub struct PortForward {
    child: Child,
    /// Local address it forwards from.
    pub addr: SocketAddr,
}

impl PortForward {
    /// Starts `kubectl -n NS port-forward pod/POD :PORT` and waits until it forwards.
    pub fn start(k: &Kubectl, namespace: &str, pod: &str, port: u16) -> anyhow::Result<Self> {
        let t = Instant::now();
        let mut child = k
            .command()
            .args(["-n", namespace, "port-forward", &format!("pod/{pod}")])
            .arg(format!(":{port}"))
            .args(["--address", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} port-forward", k.bin.display()))?;
        let stdout = child.stdout.take().context("kubectl stdout")?;
        let stderr = child.stderr.take().context("kubectl stderr")?;
        let pid = child.id();
        // kubectl prints a line per connection: keep reading, or it blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let errors =
            std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let local = loop {
            match rx.recv_timeout(READY_TIMEOUT.saturating_sub(t.elapsed())) {
                Ok(line) => {
                    if let Some(port) = forwarded_port(&line) {
                        break port;
                    }
                }
                Err(_) => {
                    kill_group(pid);
                    let _ = child.wait();
                    let err = errors.join().unwrap_or_default();
                    anyhow::bail!(
                        "kubectl port-forward pod/{pod} {port}: no \"Forwarding from\" line in {} s: {}",
                        READY_TIMEOUT.as_secs(),
                        err.trim()
                    );
                }
            }
        };
        std::thread::spawn(move || for _ in rx {});
        Ok(PortForward {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, local)),
        })
    }

    /// kubectl's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// The local port of `Forwarding from 127.0.0.1:PORT -> N`.
fn forwarded_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_local_port_from_kubectl_output() {
        assert_eq!(
            forwarded_port("Forwarding from 127.0.0.1:43121 -> 17100"),
            Some(43121)
        );
        assert_eq!(forwarded_port("Forwarding from [::1]:43121 -> 17100"), None);
        assert_eq!(forwarded_port("Handling connection for 17100"), None);
    }
}
