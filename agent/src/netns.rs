//! Running code inside the target's network namespace.
//!
//! `setns(2)` changes the namespace of the calling thread only, and tokio moves tasks between
//! threads, so the agent keeps one dedicated OS thread that entered the target's netns once and
//! runs closures sent to it. Closures there should be short (create a socket, bind it): a socket
//! keeps the namespace it was created in, so the caller converts it with `from_std` and does the
//! slow parts (connect, IO) from tokio on any thread.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc;

use tether_protocol::AgentError;
use thiserror::Error;

use crate::errors::missing_capability;

type Job = Box<dyn FnOnce() + Send>;

/// Errors of entering or using the namespace.
#[derive(Debug, Error)]
pub enum NetNsError {
    /// The namespace file could not be opened (target gone, or no permission).
    #[error("cannot open {path}: {source}")]
    Open {
        /// `/proc/PID/ns/net`.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// `setns` was refused for lack of CAP_SYS_ADMIN.
    #[error(
        "cannot enter the target's network namespace {path}: permission denied\n  help: the agent needs CAP_SYS_ADMIN (and CAP_SYS_PTRACE for another user's process)"
    )]
    Permission {
        /// `/proc/PID/ns/net`.
        path: PathBuf,
    },
    /// `setns` failed otherwise.
    #[error("cannot enter the target's network namespace {path}: {source}")]
    Setns {
        /// `/proc/PID/ns/net`.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The namespace thread is gone (it panicked).
    #[error("the network namespace thread is gone")]
    ThreadGone,
    /// The namespace could not be entered when the agent started (see [`NetNs::enter_or_report`]).
    #[error("{0}")]
    Unavailable(AgentError),
}

impl From<NetNsError> for AgentError {
    fn from(e: NetNsError) -> Self {
        match e {
            NetNsError::Permission { .. } => missing_capability(
                "CAP_SYS_ADMIN",
                "enter the target's network namespace (setns)",
            ),
            NetNsError::Open { ref source, .. }
                if source.raw_os_error() == Some(libc::EACCES)
                    || source.raw_os_error() == Some(libc::EPERM) =>
            {
                missing_capability(
                    "CAP_SYS_PTRACE",
                    "open the target's network namespace (/proc/PID/ns/net)",
                )
            }
            NetNsError::Unavailable(e) => e,
            other => AgentError::Other(other.to_string()),
        }
    }
}

/// A handle on the thread that lives in the target's network namespace. Cheap to share
/// (`Arc`); jobs run one at a time in submission order.
#[derive(Debug)]
pub struct NetNs {
    /// The thread's queue, or why there is no thread.
    jobs: Result<mpsc::Sender<Job>, AgentError>,
    path: PathBuf,
}

impl NetNs {
    /// Like [`NetNs::enter`], but a failure is kept and returned by every [`NetNs::run`], so the
    /// agent still serves what needs no network (files, env) and each network request tells the
    /// session what is missing (for example `MissingCapability { CAP_SYS_ADMIN }`).
    pub fn enter_or_report(pid: u32) -> Self {
        match Self::enter(pid) {
            Ok(ns) => ns,
            Err(e) => {
                tracing::warn!("network requests will fail: {e}");
                Self {
                    path: PathBuf::from(format!("/proc/{pid}/ns/net")),
                    jobs: Err(e.into()),
                }
            }
        }
    }

    /// Starts a thread in the network namespace of `pid`.
    pub fn enter(pid: u32) -> Result<Self, NetNsError> {
        Self::enter_path(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// Starts a thread in the network namespace at `path` (a `/proc/PID/ns/net` or a bind mount).
    pub fn enter_path(path: PathBuf) -> Result<Self, NetNsError> {
        let ns = File::open(&path).map_err(|source| NetNsError::Open {
            path: path.clone(),
            source,
        })?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), std::io::Error>>(1);
        std::thread::Builder::new()
            .name("tether-netns".into())
            .spawn(move || {
                // SAFETY: setns on a valid namespace fd; it only affects this thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                let res = if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                };
                let ok = res.is_ok();
                let _ = ready_tx.send(res);
                drop(ns);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })
            .map_err(|source| NetNsError::Setns {
                path: path.clone(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                jobs: Ok(jobs),
                path,
            }),
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EPERM) => {
                Err(NetNsError::Permission { path })
            }
            Ok(Err(source)) => Err(NetNsError::Setns { path, source }),
            Err(_) => Err(NetNsError::ThreadGone),
        }
    }

    /// The namespace file this handle entered.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// `Err` when the namespace could not be entered (see [`NetNs::enter_or_report`]).
    pub fn available(&self) -> Result<(), AgentError> {
        self.jobs.as_ref().map(drop).map_err(Clone::clone)
    }

    /// Runs `f` on the namespace thread and returns its result.
    pub async fn run<R, F>(&self, f: F) -> Result<R, NetNsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let jobs = match &self.jobs {
            Ok(jobs) => jobs,
            Err(e) => return Err(NetNsError::Unavailable(e.clone())),
        };
        jobs.send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .map_err(|_| NetNsError::ThreadGone)?;
        rx.await.map_err(|_| NetNsError::ThreadGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closures_run_in_the_entered_namespace() {
        use std::os::unix::fs::MetadataExt;
        // A thread in a fresh network namespace stands in for the target; it stays alive (and its
        // namespace with it) until told to go.
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // SAFETY: unshare affects this thread only (CLONE_NEWNET).
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                0,
                "unshare (root?)"
            );
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            ready_tx.send(tid).unwrap();
            let _ = done_rx.recv();
        });
        let tid = ready_rx.recv().unwrap();
        let path = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
        let theirs = std::fs::metadata(&path).unwrap().ino();
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_ne!(theirs, ours);
        let ns = NetNs::enter_path(path).expect("enter the thread's netns");
        let seen = ns
            .run(|| {
                // The namespace thread's own view, and its interfaces: a fresh netns has only lo.
                let ino = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
                let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
                let ifaces: Vec<String> = dev
                    .lines()
                    .skip(2)
                    .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
                    .collect();
                (ino, ifaces)
            })
            .await
            .unwrap();
        assert_eq!(seen, (theirs, vec!["lo".to_owned()]));
        done_tx.send(()).unwrap();
        holder.join().unwrap();
    }

    #[tokio::test]
    async fn missing_process_is_an_open_error() {
        let err = NetNs::enter(u32::MAX / 2).unwrap_err();
        assert!(matches!(err, NetNsError::Open { .. }), "{err}");
    }
}
