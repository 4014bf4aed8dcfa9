//! One daemon per user, found through a discovery file.
//!
//! The running daemon writes `daemon.json` (mode 0600: pid, version, address, token) into
//! `$XDG_RUNTIME_DIR/tether/`, or `~/.local/state/tether/` when there is no runtime dir, and holds
//! an exclusive `flock` on `daemon.lock` beside it for its whole life. Clients call
//! [`ensure_daemon`]: it uses the daemon named by the file when that daemon is live (its pid is
//! alive *and* it answers `daemon.info` with the token), and otherwise starts one.
//!
//! Invariant: only the process holding the lock writes or removes the discovery file, so two
//! starts racing each other cannot both become the daemon; a file left by a dead daemon (stale)
//! is replaced by the next one.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use jsonrpsee::{
    core::client::ClientT,
    rpc_params,
    ws_client::{HeaderMap, HeaderValue, WsClient, WsClientBuilder},
};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::server::api::DaemonInfo;

/// Name of the discovery file inside the discovery dir.
pub const DISCOVERY_FILE: &str = "daemon.json";
/// Name of the lock file the running daemon holds.
pub const LOCK_FILE: &str = "daemon.lock";
/// Name of the daemon's log file inside the state dir.
pub const LOG_FILE: &str = "daemon.log";

/// What a client needs to reach the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryInfo {
    /// Daemon process id.
    pub pid: u32,
    /// tether version of the daemon.
    pub version: String,
    /// WebSocket URL, `ws://127.0.0.1:PORT`.
    pub address: String,
    /// Bearer token every connection must present.
    pub token: String,
}

/// Where the discovery file, the lock and the log live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Holds `daemon.json` and `daemon.lock`.
    pub runtime_dir: PathBuf,
    /// Holds `daemon.log`.
    pub state_dir: PathBuf,
}

impl Paths {
    /// The user's dirs from the environment: `$XDG_RUNTIME_DIR/tether` (else the state dir) and
    /// `$XDG_STATE_HOME/tether` (else `~/.local/state/tether`).
    pub fn from_env() -> io::Result<Self> {
        let state_dir = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("tether"),
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            "neither XDG_STATE_HOME nor HOME is set",
                        )
                    })?;
                PathBuf::from(home).join(".local/state/tether")
            }
        };
        let runtime_dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("tether"),
            None => state_dir.clone(),
        };
        Ok(Self {
            runtime_dir,
            state_dir,
        })
    }

    /// Both dirs under one root, for tests.
    pub fn in_dir(root: &Path) -> Self {
        Self {
            runtime_dir: root.join("run"),
            state_dir: root.join("state"),
        }
    }

    /// The discovery file.
    pub fn discovery_file(&self) -> PathBuf {
        self.runtime_dir.join(DISCOVERY_FILE)
    }

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.runtime_dir.join(LOCK_FILE)
    }

    /// The daemon's log file.
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join(LOG_FILE)
    }

    /// Creates both dirs, private to the user (0700).
    pub fn create_dirs(&self) -> io::Result<()> {
        for dir in [&self.runtime_dir, &self.state_dir] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        Ok(())
    }
}

/// Why the discovery file or the daemon could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Reading or writing a file in the discovery or state dir failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or dir.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The discovery file is not valid JSON of the expected shape.
    #[error("{}: not a tether discovery file: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A started daemon exited before it was ready.
    #[error("the daemon exited during start ({status}); last log lines:\n{log_tail}")]
    StartFailed {
        /// Exit status of the daemon process.
        status: String,
        /// The end of its log file.
        log_tail: String,
    },
    /// A started daemon did not become ready in time.
    #[error("the daemon did not become ready within {0:?}")]
    StartTimeout(Duration),
    /// The daemon answered, but not as expected.
    #[error("daemon at {address} does not answer: {cause}")]
    Unreachable {
        /// Its address.
        address: String,
        /// What failed.
        cause: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DiscoveryError + '_ {
    move |source| DiscoveryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `info` to `path` atomically (temp file in the same dir, fsync, rename) with mode 0600.
pub fn write_atomic(path: &Path, info: &DiscoveryInfo) -> Result<(), DiscoveryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{DISCOVERY_FILE}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode above is filtered by the umask; 0600 must hold whatever the umask is.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        let text = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Reads the discovery file; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<DiscoveryInfo>, DiscoveryError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| DiscoveryError::Malformed {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Removes the discovery file if it still names `pid` (a newer daemon may have replaced it).
pub fn remove_if_ours(path: &Path, pid: u32) {
    if let Ok(Some(info)) = read(path)
        && info.pid == pid
    {
        let _ = fs::remove_file(path);
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        // EPERM: it exists but belongs to someone else.
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    // A zombie has exited; its parent just has not reaped it yet.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => true,
    }
}

/// Connects to the daemon with its token.
pub async fn connect(info: &DiscoveryInfo) -> Result<WsClient, DiscoveryError> {
    let unreachable = |cause: String| DiscoveryError::Unreachable {
        address: info.address.clone(),
        cause,
    };
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", info.token))
        .map_err(|e| unreachable(format!("token is not a valid header value: {e}")))?;
    headers.insert(http::header::AUTHORIZATION, bearer);
    WsClientBuilder::default()
        .set_headers(headers)
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Duration::from_secs(30))
        .build(&info.address)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

/// Asks the daemon named by `info` for `daemon.info`, checking that it is the same process.
pub async fn probe(info: &DiscoveryInfo) -> Result<DaemonInfo, DiscoveryError> {
    let client = connect(info).await?;
    let answer: DaemonInfo = client
        .request("daemon.info", rpc_params![])
        .await
        .map_err(|e| DiscoveryError::Unreachable {
            address: info.address.clone(),
            cause: e.to_string(),
        })?;
    if answer.pid != info.pid {
        return Err(DiscoveryError::Unreachable {
            address: info.address.clone(),
            cause: format!(
                "it is pid {}, the discovery file says pid {}",
                answer.pid, info.pid
            ),
        });
    }
    Ok(answer)
}

/// What the discovery file says about the daemon.
#[derive(Debug)]
pub enum Found {
    /// A daemon is running and answered.
    Live(DiscoveryInfo, DaemonInfo),
    /// The file names a daemon that is gone or does not answer.
    Stale(DiscoveryInfo, String),
    /// No discovery file.
    Missing,
}

/// Reads the discovery file and checks the daemon it names.
pub async fn find(paths: &Paths) -> Result<Found, DiscoveryError> {
    let Some(info) = read(&paths.discovery_file())? else {
        return Ok(Found::Missing);
    };
    if !pid_alive(info.pid) {
        let why = format!("pid {} is not running", info.pid);
        return Ok(Found::Stale(info, why));
    }
    match probe(&info).await {
        Ok(daemon) => Ok(Found::Live(info, daemon)),
        Err(e) => {
            let why = e.to_string();
            Ok(Found::Stale(info, why))
        }
    }
}

/// The exclusive lock the running daemon holds on `daemon.lock`.
#[derive(Debug)]
pub struct DaemonLock {
    _lock: Flock<File>,
}

/// Takes the daemon lock without waiting; `None` when another process holds it.
pub fn try_lock(paths: &Paths) -> Result<Option<DaemonLock>, DiscoveryError> {
    let path = paths.lock_file();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(DaemonLock { _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(io_err(&path)(io::Error::from(errno))),
    }
}

/// Waits until the discovery file names a live daemon, up to `timeout`.
pub async fn wait_live(
    paths: &Paths,
    timeout: Duration,
) -> Result<(DiscoveryInfo, DaemonInfo), DiscoveryError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Found::Live(info, daemon) = find(paths).await? {
            return Ok((info, daemon));
        }
        if Instant::now() >= deadline {
            return Err(DiscoveryError::StartTimeout(timeout));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a start may take before [`spawn_daemon`] gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts `exe daemon start --foreground` detached (own session via `setsid`, stdin from
/// /dev/null, stdout and stderr appended to the log file) and waits until a daemon is live.
///
/// The live daemon may be another one that won a race with this start; either way the caller
/// gets a daemon that answers.
pub async fn spawn_daemon(
    paths: &Paths,
    exe: &Path,
) -> Result<(DiscoveryInfo, DaemonInfo), DiscoveryError> {
    paths.create_dirs().map_err(io_err(&paths.runtime_dir))?;
    let log_path = paths.log_file();
    rotate_log(&log_path);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    let log_err = log.try_clone().map_err(io_err(&log_path))?;
    let mut cmd = Command::new(exe);
    // The daemon outlives this command: it must not pin the caller's directory, so relative
    // KUBECONFIG entries are made absolute first.
    if let Some(kubeconfig) = absolute_kubeconfig() {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    cmd.current_dir("/");
    cmd.args(["daemon", "start", "--foreground"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io_err(exe))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Found::Live(info, daemon) = find(paths).await? {
            return Ok((info, daemon));
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Exit 0 means it found another live daemon; look once more before failing.
            if status.success()
                && let Found::Live(info, daemon) = find(paths).await?
            {
                return Ok((info, daemon));
            }
            return Err(DiscoveryError::StartFailed {
                status: status.to_string(),
                log_tail: log_tail(&log_path, 20),
            });
        }
        if Instant::now() >= deadline {
            return Err(DiscoveryError::StartTimeout(START_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The daemon the discovery file names when it is live; otherwise starts one with `exe`.
pub async fn ensure_daemon(paths: &Paths, exe: &Path) -> Result<DiscoveryInfo, DiscoveryError> {
    if let Found::Live(info, _) = find(paths).await? {
        return Ok(info);
    }
    spawn_daemon(paths, exe).await.map(|(info, _)| info)
}

/// The log file is moved to `daemon.log.1` at a daemon start once it is larger than this.
pub const LOG_ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// Keeps one old log: `daemon.log` becomes `daemon.log.1` when it is too big.
pub fn rotate_log(path: &Path) {
    if fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = fs::rename(path, path.with_extension("log.1"));
    }
}

/// `$KUBECONFIG` with relative entries made absolute against the current dir; `None` when unset
/// or already absolute.
fn absolute_kubeconfig() -> Option<std::ffi::OsString> {
    let value = std::env::var_os("KUBECONFIG")?;
    let paths: Vec<PathBuf> = std::env::split_paths(&value).collect();
    if paths
        .iter()
        .all(|p| p.as_os_str().is_empty() || p.is_absolute())
    {
        return None;
    }
    let cwd = std::env::current_dir().ok()?;
    std::env::join_paths(
        paths
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| cwd.join(p)),
    )
    .ok()
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until `pid` is gone, up to `timeout`; true when it exited.
pub async fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A failed call as the CLI shows it: the daemon's one-line message, then its hint.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", hint.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
pub struct CallError {
    /// The error's message (or the transport failure).
    pub message: String,
    /// The error's `data.hint`.
    pub hint: Option<String>,
    /// The error's `data.kind`, when the daemon sent one.
    pub kind: Option<crate::server::error::ErrorKind>,
}

/// Calls `method` with by-name `params` and reads the result, keeping the daemon's error shape.
pub async fn call<R: serde::de::DeserializeOwned>(
    client: &WsClient,
    method: &str,
    params: serde_json::Value,
) -> Result<R, CallError> {
    let mut p = jsonrpsee::core::params::ObjectParams::new();
    if let serde_json::Value::Object(map) = params {
        for (k, v) in map {
            // Inserting a JSON value cannot fail.
            let _ = p.insert(&k, v);
        }
    }
    client.request(method, p).await.map_err(|e| match e {
        jsonrpsee::core::ClientError::Call(obj) => {
            let data = crate::server::error::error_data(&obj);
            CallError {
                message: obj.message().to_owned(),
                hint: data.as_ref().and_then(|d| d.hint.clone()),
                kind: data.map(|d| d.kind),
            }
        }
        other => CallError {
            message: format!("{method}: {other}"),
            hint: None,
            kind: None,
        },
    })
}

/// A fresh random token: 32 bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DISCOVERY_FILE);
        let info = DiscoveryInfo {
            pid: 42,
            version: "0.1.0".into(),
            address: "ws://127.0.0.1:1".into(),
            token: new_token(),
        };
        write_atomic(&path, &info).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap(), Some(info));
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn pid_alive_sees_self_and_not_a_reaped_child() {
        assert!(pid_alive(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
    }

    #[test]
    fn malformed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DISCOVERY_FILE);
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(read(&path), Err(DiscoveryError::Malformed { .. })));
        assert!(read(&dir.path().join("absent.json")).unwrap().is_none());
    }

    #[test]
    fn big_log_is_rotated_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(LOG_FILE);
        fs::write(&log, "small").unwrap();
        rotate_log(&log);
        assert!(log.exists());
        let big = vec![b'x'; usize::try_from(LOG_ROTATE_BYTES).unwrap() + 1];
        fs::write(&log, &big).unwrap();
        rotate_log(&log);
        assert!(!log.exists());
        assert_eq!(
            fs::metadata(dir.path().join("daemon.log.1")).unwrap().len(),
            big.len() as u64
        );
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(dir.path());
        paths.create_dirs().unwrap();
        let first = try_lock(&paths).unwrap();
        assert!(first.is_some());
        assert!(try_lock(&paths).unwrap().is_none());
        drop(first);
        assert!(try_lock(&paths).unwrap().is_some());
    }
}
