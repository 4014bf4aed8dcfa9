//! Runs `tether-bench-probe` on one side of a comparison: under the layer (the env a
//! `session.start` returned), inside the pod (`nsenter` into its namespaces and root), or plainly
//! on the host.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tether::server::api::SessionStarted;
use tether_bench::probe::{Op, ProbeOutput};

use crate::pod::POD_PROBE;

/// How long one probe run may take (the largest is a 64 MiB transfer through the API server).
const PROBE_TIMEOUT: Duration = Duration::from_secs(300);

/// The env a session gives its debuggee.
#[derive(Debug, Clone)]
pub struct SessionEnv {
    /// Session id.
    pub id: String,
    /// Variables to set (`LD_PRELOAD`, session address and token, the pod's variables).
    pub set: BTreeMap<String, String>,
    /// Variables to remove.
    pub unset: Vec<String>,
}

impl From<SessionStarted> for SessionEnv {
    fn from(s: SessionStarted) -> Self {
        SessionEnv {
            id: s.id,
            set: s.env,
            unset: s.unset,
        }
    }
}

impl SessionEnv {
    /// Applies the env to `cmd` as an IDE does (its `LD_PRELOAD` first).
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        for k in &self.unset {
            cmd.env_remove(k);
        }
        for (k, v) in &self.set {
            let v = match (k.as_str(), std::env::var("LD_PRELOAD")) {
                ("LD_PRELOAD", Ok(old)) if !old.is_empty() => format!("{v}:{old}"),
                _ => v.clone(),
            };
            cmd.env(k, v);
        }
    }
}

/// Where a probe runs.
#[derive(Debug, Clone, Copy)]
pub enum Side<'a> {
    /// On the host, with the layer of this session preloaded.
    Tether(&'a SessionEnv),
    /// Inside the pod: the namespaces and root of this pod process.
    Pod(u32),
    /// On the host, nothing preloaded.
    Host,
}

/// Runs probes.
#[derive(Debug, Clone)]
pub struct Prober {
    /// The probe binary.
    pub bin: PathBuf,
}

impl Prober {
    /// A command that runs the probe with `args` on `side`.
    pub fn command(&self, side: Side<'_>, args: &[String]) -> tokio::process::Command {
        let mut cmd = match side {
            Side::Pod(pid) => {
                // Net, mount, root and cwd of the pod's process: the probe (copied into the
                // pod by `BenchPod::install_probe`) sees the pod's files and network.
                let mut c = tokio::process::Command::new("nsenter");
                c.args([
                    "-t",
                    &pid.to_string(),
                    "-n",
                    "-m",
                    "-r",
                    "-w",
                    "--",
                    POD_PROBE,
                ]);
                c
            }
            Side::Tether(_) | Side::Host => tokio::process::Command::new(&self.bin),
        };
        if let Side::Tether(env) = side {
            env.apply(&mut cmd);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `op` on `side` and parses its output.
    pub async fn run(&self, side: Side<'_>, op: &Op) -> anyhow::Result<ProbeOutput> {
        let what = format!("probe {} ({})", op.to_args().join(" "), side_name(side));
        let out = tokio::time::timeout(PROBE_TIMEOUT, self.command(side, &op.to_args()).output())
            .await
            .with_context(|| format!("{what}: no result after {} s", PROBE_TIMEOUT.as_secs()))?
            .with_context(|| format!("{what}: cannot start {}", self.bin.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            out.status.success(),
            "{what}: {}: {}",
            out.status,
            stderr.trim()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).with_context(|| format!("{what}: bad output {line:?}"))
    }
}

fn side_name(side: Side<'_>) -> &'static str {
    match side {
        Side::Tether(_) => "under the layer",
        Side::Pod(_) => "inside the pod",
        Side::Host => "on the host",
    }
}

/// A binary next to this one (`<target>/<profile>/NAME`), as `cargo build` puts them.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is not built\n  help: tests/bench/run builds everything it needs (or cargo build -p {})",
        path.display(),
        package_of(name)
    );
    Ok(path)
}

fn package_of(bin: &str) -> &'static str {
    match bin {
        "tether" => "tether",
        "libtether_layer.so" => "tether-layer",
        "tether-agent" => "tether-agent",
        "tether-testsrv" => "tether-testkit",
        _ => "tether-bench",
    }
}
