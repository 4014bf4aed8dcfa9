//! A private `tether` daemon for the run: its own discovery and state dirs (so it never meets
//! the user's daemon), the test cluster's admin kubeconfig, and a JSON-RPC client as the IDEs
//! use (WebSocket, bearer token).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::core::params::ObjectParams;
use jsonrpsee::ws_client::{HeaderMap, HeaderValue, WsClient, WsClientBuilder};
use serde_json::Value;
use tether::discovery::{self, Paths};
use tether::server::api::{SessionEvent, SessionStarted};

/// How long one call may take: a cold agent start is seconds, never minutes.
const CALL_TIMEOUT: Duration = Duration::from_secs(180);

/// The daemon process and a connection to it. [`Daemon::shutdown`] stops it; dropping it kills
/// its process group.
pub struct Daemon {
    child: tokio::process::Child,
    pid: u32,
    client: WsClient,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `tether daemon start --foreground` in its own process group and connects.
    pub async fn start(tether: &Path, kubeconfig: &Path) -> anyhow::Result<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("tether-bench-daemon-")
            .tempdir()
            .context("daemon: making its state dir")?;
        let paths = Paths {
            runtime_dir: dir.path().join("xdg-run/tether"),
            state_dir: dir.path().join("xdg-state/tether"),
        };
        paths
            .create_dirs()
            .context("daemon: making its state dir")?;
        let log = dir.path().join("daemon.out");
        let out = std::fs::File::create(&log).context("daemon: creating its output file")?;
        let child = tokio::process::Command::new(tether)
            .args(["daemon", "start", "--foreground"])
            .env("XDG_RUNTIME_DIR", dir.path().join("xdg-run"))
            .env("XDG_STATE_HOME", dir.path().join("xdg-state"))
            .env("KUBECONFIG", kubeconfig)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("daemon: starting {}", tether.display()))?;
        let pid = child.id().context("daemon: exited at once")?;
        let (info, _) = discovery::wait_live(&paths, Duration::from_secs(30))
            .await
            .with_context(|| {
                format!(
                    "daemon: not live after 30 s (log {})",
                    paths.log_file().display()
                )
            })?;
        anyhow::ensure!(
            info.pid == pid,
            "daemon: the discovery file names pid {}, not the daemon started ({pid})",
            info.pid
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", info.token))?,
        );
        let client = WsClientBuilder::default()
            .set_headers(headers)
            .request_timeout(CALL_TIMEOUT)
            .build(&info.address)
            .await
            .with_context(|| format!("daemon: connecting to {}", info.address))?;
        Ok(Daemon {
            child,
            pid,
            client,
            log: paths.log_file(),
            _dir: dir,
        })
    }

    /// `session.start` with these params (an object).
    pub async fn session_start(&self, params: &Value) -> anyhow::Result<SessionStarted> {
        self.client
            .request("session.start", object(params)?)
            .await
            .map_err(|e| call_error("session.start", e, &self.log))
    }

    /// `session.stop`.
    pub async fn session_stop(&self, id: &str) -> anyhow::Result<()> {
        let mut p = ObjectParams::new();
        p.insert("id", id)?;
        self.client
            .request::<Value, _>("session.stop", p)
            .await
            .map(|_| ())
            .map_err(|e| call_error("session.stop", e, &self.log))
    }

    /// `session.events` of one session (replayed from its start).
    pub async fn events(&self, id: &str) -> anyhow::Result<Subscription<SessionEvent>> {
        let mut p = ObjectParams::new();
        p.insert("id", id)?;
        self.client
            .subscribe("session.events", p, "session.unwatch_events")
            .await
            .map_err(|e| call_error("session.events", e, &self.log))
    }

    /// Resident set size now, in bytes (`VmRSS` of /proc/PID/status).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.pid)
    }

    /// Asks the daemon to stop (its sessions end and their agents are removed), then waits.
    pub async fn shutdown(mut self) {
        let _ = self
            .client
            .request::<Value, _>("daemon.shutdown", ObjectParams::new())
            .await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "tether-bench: the daemon (pid {}) did not stop in 20 s; killing it",
                self.pid
            );
            kill_group(self.pid);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(self.pid);
        }
    }
}

/// Kills the process group `pgid` (a child started with `process_group(0)`).
pub fn kill_group(pgid: u32) {
    // SAFETY: kill has no memory preconditions; a negative pid names the group.
    unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
}

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{path}: no VmRSS line"))?;
    Ok(kb * 1024)
}

fn object(params: &Value) -> anyhow::Result<ObjectParams> {
    let map = params
        .as_object()
        .context("session params must be a JSON object")?;
    let mut p = ObjectParams::new();
    for (k, v) in map {
        p.insert(k, v)?;
    }
    Ok(p)
}

fn call_error(method: &str, e: jsonrpsee::core::ClientError, log: &Path) -> anyhow::Error {
    match e {
        jsonrpsee::core::ClientError::Call(obj) => {
            let hint = tether::server::error::error_data(&obj)
                .and_then(|d| d.hint)
                .map(|h| format!("\n  help: {h}"))
                .unwrap_or_default();
            anyhow::anyhow!("{method}: {}{hint}", obj.message())
        }
        other => anyhow::anyhow!(
            "{method}: the daemon did not answer: {other} (log {})",
            log.display()
        ),
    }
}
