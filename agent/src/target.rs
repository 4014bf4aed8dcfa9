//! The target process: its PID, whether it still lives, its root directory and network
//! namespace.
//!
//! Liveness comes from a pidfd (Linux >= 5.3): it becomes readable when the process exits, and
//! unlike a bare PID it can never point at a reused PID. A watcher task flips [`Target::is_gone`]
//! so each request checks liveness with one atomic load.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tether_protocol::AgentError;
use thiserror::Error;
use tokio::sync::watch;

use crate::errors::missing_capability;
use crate::files::creds::Creds;
use crate::files::resolve::open_in_root;
use crate::netns::NetNs;

/// Errors of finding the target.
#[derive(Debug, Error)]
pub enum TargetError {
    /// No such process.
    #[error("process {pid} does not exist\n  help: check the PID as the agent sees it (hostPID)")]
    NoSuchProcess {
        /// The PID.
        pid: u32,
    },
    /// The process exists but its root cannot be opened.
    #[error(
        "cannot open the root of process {pid} ({path}): {source}\n  help: the agent needs CAP_SYS_PTRACE to reach another user's process"
    )]
    Root {
        /// The PID.
        pid: u32,
        /// `/proc/PID/root`.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// The process the agent acts for.
#[derive(Debug)]
pub struct Target {
    pid: u32,
    root_path: PathBuf,
    /// The root, or why the agent may not open it (files then fail with that error).
    root: Result<OwnedFd, AgentError>,
    netns: NetNs,
    hostname: String,
    /// Filesystem credentials path operations take (`None`: unreadable, act as the agent).
    creds: Option<Creds>,
    gone: Arc<AtomicBool>,
    gone_rx: watch::Receiver<bool>,
}

impl Target {
    /// Opens the target. Must run inside a tokio runtime (the exit watcher is a task).
    pub fn open(pid: u32) -> Result<Self, TargetError> {
        // SAFETY: pidfd_open takes a pid and flags; returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Err(TargetError::NoSuchProcess { pid });
            }
            tracing::warn!("pidfd_open({pid}) failed ({e}); target exit will not be detected");
        }
        let pidfd = (raw >= 0).then(|| {
            // SAFETY: a fresh fd we own.
            unsafe { OwnedFd::from_raw_fd(raw as i32) }
        });
        let root_path = PathBuf::from(format!("/proc/{pid}/root"));
        let root = match File::options()
            .read(true)
            .custom_flags_path()
            .open(&root_path)
        {
            Ok(f) => Ok(OwnedFd::from(f)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(TargetError::NoSuchProcess { pid });
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                tracing::warn!(
                    "cannot open {}: {e}; file requests will fail",
                    root_path.display()
                );
                Err(missing_capability(
                    "CAP_SYS_PTRACE",
                    "reach the target's files through /proc/PID/root",
                ))
            }
            Err(source) => {
                return Err(TargetError::Root {
                    pid,
                    path: root_path.clone(),
                    source,
                });
            }
        };
        let netns = NetNs::enter_or_report(pid);
        let hostname = read_hostname(pid, root.as_ref().ok().map(AsRawFd::as_raw_fd));
        let creds = Creds::of(pid)
            .inspect_err(|e| {
                tracing::warn!("cannot read the credentials of {pid}: {e}; files act as root")
            })
            .ok();
        let gone = Arc::new(AtomicBool::new(false));
        let (gone_tx, gone_rx) = watch::channel(false);
        if let Some(pidfd) = pidfd {
            let gone = gone.clone();
            // SAFETY: the AsyncFd owns the pidfd, so the fd stays open and unique while registered.
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    pidfd,
                    tokio::io::Interest::READABLE,
                )
            };
            match registered {
                Ok(afd) => {
                    tokio::spawn(async move {
                        let _ = afd.readable().await;
                        tracing::warn!(pid, "target process exited");
                        gone.store(true, Ordering::SeqCst);
                        let _ = gone_tx.send(true);
                    });
                }
                Err(e) => tracing::warn!("cannot watch target {pid}: {e}"),
            }
        }
        Ok(Self {
            pid,
            root_path,
            root,
            netns,
            hostname,
            creds,
            gone,
            gone_rx,
        })
    }

    /// The filesystem credentials of the target when it started (its user owns what the session
    /// creates).
    pub fn creds(&self) -> Option<&Creds> {
        self.creds.as_ref()
    }

    /// The target's PID as the agent sees it.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `/proc/PID/root`, for logs and for reading files the agent itself needs
    /// (resolv.conf, hosts) through the target's root.
    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// An `O_PATH` directory fd of the target's root; paths are resolved beneath it.
    pub fn root_fd(&self) -> Result<i32, AgentError> {
        self.root
            .as_ref()
            .map(AsRawFd::as_raw_fd)
            .map_err(Clone::clone)
    }

    /// The target's network namespace.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// The pod's hostname.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Whether the target process exited.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// `Err(TargetGone)` once the target exited.
    pub fn ensure_alive(&self) -> Result<(), AgentError> {
        if self.is_gone() {
            Err(AgentError::TargetGone { pid: self.pid })
        } else {
            Ok(())
        }
    }

    /// Resolves when the target exits.
    pub async fn gone(&self) {
        let mut rx = self.gone_rx.clone();
        let _ = rx.wait_for(|g| *g).await;
    }
}

trait OpenPathExt {
    fn custom_flags_path(&mut self) -> &mut Self;
}

impl OpenPathExt for std::fs::OpenOptions {
    fn custom_flags_path(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
    }
}

/// The hostname of the target's UTS namespace; falls back to its /etc/hostname, resolved inside
/// its root like every other target path.
fn read_hostname(pid: u32, root: Option<i32>) -> String {
    let uts = std::thread::spawn(move || -> std::io::Result<String> {
        let ns = File::open(format!("/proc/{pid}/ns/uts"))?;
        // SAFETY: setns on a valid fd, affecting only this short-lived thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUTS) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    })
    .join();
    match uts {
        Ok(Ok(name)) => name,
        other => {
            tracing::debug!("hostname from UTS namespace failed: {other:?}");
            root.and_then(|root| {
                let fd = open_in_root(root, b"/etc/hostname", libc::O_RDONLY, 0).ok()?;
                let text = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                text.ok().map(|s| s.trim().to_owned())
            })
            .unwrap_or_default()
        }
    }
}
