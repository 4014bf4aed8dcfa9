//! Remote files of one session: path operations inside the target's root and a table of open
//! handles.
//!
//! Paths are resolved by [`resolve`] and never leave `/proc/PID/root`. Path operations run
//! concurrently on blocking threads. Each open handle has its own task that runs that handle's
//! requests in arrival order (reads of one file must not overtake each other) while handles and
//! path operations proceed in parallel. Handles die with the session.
//!
//! Reads are buffered: a small `Read` of a regular file reads [`READ_AHEAD`] bytes and serves the
//! next small reads from memory, so an app reading line by line costs one syscall per 256 KiB,
//! not per line. A `Read` of at least [`READ_AHEAD`] bytes is filled completely in one response
//! (up to [`MAX_READ`]). Clients should ask for at least 64 KiB per `Read` (and pass the app's
//! smaller reads through their own buffer): each request is a round trip of the agent link.

pub mod creds;
mod ops;
pub mod resolve;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tether_protocol::agent::{AgentMessage, Response};
use tether_protocol::file::{FileRequest, FileResponse};
use tether_protocol::{RemoteFd, RequestId};
use tokio::sync::mpsc;

use crate::errors::{OpError, OpResult};
use crate::session::reply;
use crate::target::Target;

/// Bytes read ahead for small reads of a regular file.
pub const READ_AHEAD: usize = 256 * 1024;

/// Largest `Read`/`ReadAt`/`ReadWhole` answer, well below the 16 MiB frame limit.
pub const MAX_READ: usize = 8 * 1024 * 1024;

type Job = (RequestId, FileRequest);

/// The open handles of one session.
#[derive(Debug)]
pub struct FileTable {
    target: Arc<Target>,
    to_daemon: mpsc::Sender<AgentMessage>,
    handles: Arc<Mutex<HashMap<RemoteFd, mpsc::UnboundedSender<Job>>>>,
    next_fd: Arc<AtomicU64>,
}

impl FileTable {
    /// An empty table whose answers go to `to_daemon`.
    pub fn new(target: Arc<Target>, to_daemon: mpsc::Sender<AgentMessage>) -> Self {
        Self {
            target,
            to_daemon,
            handles: Arc::default(),
            next_fd: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Starts one request; its answer is sent to the daemon when done.
    pub fn dispatch(&self, id: RequestId, req: FileRequest) {
        let fd = req.fd();
        if let Some(fd) = fd {
            let mut handles = self.handles.lock().expect("file table lock");
            let queue = if matches!(req, FileRequest::Close { .. }) {
                handles.remove(&fd)
            } else {
                handles.get(&fd).cloned()
            };
            drop(handles);
            match queue {
                Some(q) => {
                    if let Err(mpsc::error::SendError((id, _))) = q.send((id, req)) {
                        self.answer(id, Err(bad_fd(fd)));
                    }
                }
                None => self.answer(id, Err(bad_fd(fd))),
            }
            return;
        }
        let root = match self.target.root_fd() {
            Ok(root) => root,
            Err(e) => return self.answer(id, Err(OpError::Agent(e))),
        };
        let creds = self.target.creds().cloned();
        let tx = self.to_daemon.clone();
        let handles = self.handles.clone();
        let next_fd = self.next_fd.clone();
        let to_daemon = self.to_daemon.clone();
        tokio::spawn(async move {
            let res = match tokio::task::spawn_blocking(move || as_target(creds, root, req)).await {
                Ok(res) => res,
                Err(e) => Err(OpError::errno(
                    libc::EIO,
                    format!("file operation panicked: {e}"),
                )),
            };
            let res = match res {
                Ok(PathDone::Response(r)) => Ok(r),
                Ok(PathDone::Opened(file, metadata)) => {
                    let fd = next_fd.fetch_add(1, Ordering::Relaxed);
                    let (q, jobs) = mpsc::unbounded_channel();
                    handles.lock().expect("file table lock").insert(fd, q);
                    tokio::spawn(handle_task(file, jobs, to_daemon));
                    Ok(FileResponse::Opened { fd, metadata })
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(reply(id, res.map(Response::File))).await;
        });
    }

    fn answer(&self, id: RequestId, res: OpResult<FileResponse>) {
        let tx = self.to_daemon.clone();
        tokio::spawn(async move {
            let _ = tx.send(reply(id, res.map(Response::File))).await;
        });
    }

    /// Closes every handle (the session ended).
    pub fn close_all(&self) {
        self.handles.lock().expect("file table lock").clear();
    }
}

fn bad_fd(fd: RemoteFd) -> OpError {
    OpError::errno(
        libc::EBADF,
        format!("remote fd {fd} is not open in this session"),
    )
}

enum PathDone {
    Response(FileResponse),
    Opened(ops::OpenFile, tether_protocol::file::Metadata),
}

/// Runs `req` with the target's filesystem credentials (see [`creds`]); as the agent when they
/// are unknown or cannot be taken (said once in the log).
fn as_target(creds: Option<creds::Creds>, root: i32, req: FileRequest) -> OpResult<PathDone> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let _as = creds.and_then(|c| {
        c.enter()
            .inspect_err(|e| {
                WARNED.call_once(|| tracing::warn!("{e}; file operations act as root"));
            })
            .ok()
            .flatten()
    });
    path_op(root, req)
}

fn path_op(root: i32, req: FileRequest) -> OpResult<PathDone> {
    use FileResponse as R;
    let r = match req {
        FileRequest::Open { path, options } => {
            let (fd, md) = ops::open(root, &path, &options)?;
            return Ok(PathDone::Opened(ops::OpenFile::new(fd, path, &md), md));
        }
        FileRequest::ReadWhole { path, max_len } => {
            let (data, metadata) = ops::read_whole(root, &path, max_len)?;
            R::Contents {
                data: data.into(),
                metadata,
            }
        }
        FileRequest::Stat { path, follow } => R::Metadata(ops::stat(root, &path, follow)?),
        FileRequest::Access { path, mode } => {
            ops::access(root, &path, mode)?;
            R::Done
        }
        FileRequest::ReadDir { path } => R::Entries(ops::read_dir(root, &path)?),
        FileRequest::ReadLink { path } => R::Path(ops::read_link(root, &path)?),
        FileRequest::Mkdir { path, mode } => {
            ops::mkdir(root, &path, mode)?;
            R::Done
        }
        FileRequest::Unlink { path } => {
            ops::remove(root, &path, false)?;
            R::Done
        }
        FileRequest::Rmdir { path } => {
            ops::remove(root, &path, true)?;
            R::Done
        }
        FileRequest::Rename { from, to } => {
            ops::rename(root, &from, &to)?;
            R::Done
        }
        FileRequest::Symlink { target, link } => {
            ops::symlink(root, &target, &link)?;
            R::Done
        }
        FileRequest::Read { .. }
        | FileRequest::ReadAt { .. }
        | FileRequest::Write { .. }
        | FileRequest::WriteAt { .. }
        | FileRequest::Seek { .. }
        | FileRequest::Fstat { .. }
        | FileRequest::Close { .. } => unreachable!("handle requests go to the handle's task"),
    };
    Ok(PathDone::Response(r))
}

/// Runs one handle's requests in order until it is closed or the session ends.
async fn handle_task(
    file: ops::OpenFile,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    to_daemon: mpsc::Sender<AgentMessage>,
) {
    let mut file = Some(file);
    while let Some((id, req)) = jobs.recv().await {
        let close = matches!(req, FileRequest::Close { .. });
        let Some(f) = file.take() else { break };
        let joined = tokio::task::spawn_blocking(move || {
            let mut f = f;
            let res = fd_op(&mut f, req);
            (f, res)
        })
        .await;
        let res = match joined {
            Ok((f, res)) => {
                file = Some(f);
                res
            }
            Err(e) => Err(OpError::errno(
                libc::EIO,
                format!("file operation panicked: {e}"),
            )),
        };
        let _ = to_daemon.send(reply(id, res.map(Response::File))).await;
        if close || file.is_none() {
            break;
        }
    }
    // Dropping the file closes it, on a blocking thread: close(2) can block (NFS, FUSE).
    if let Some(f) = file {
        tokio::task::spawn_blocking(move || drop(f));
    }
}

fn fd_op(f: &mut ops::OpenFile, req: FileRequest) -> OpResult<FileResponse> {
    use FileResponse as R;
    Ok(match req {
        FileRequest::Read { len, .. } => R::Data(f.read(clamp(len))?.into()),
        FileRequest::ReadAt { offset, len, .. } => R::Data(f.read_at(offset, clamp(len))?.into()),
        FileRequest::Write { data, .. } => R::Written(f.write(data.as_slice())?),
        FileRequest::WriteAt { offset, data, .. } => {
            R::Written(f.write_at(offset, data.as_slice())?)
        }
        FileRequest::Seek { from, .. } => R::Offset(f.seek(from)?),
        FileRequest::Fstat { .. } => R::Metadata(f.fstat()?),
        FileRequest::Close { .. } => R::Done,
        other => unreachable!("path request {other:?} sent to a handle"),
    })
}

fn clamp(len: u64) -> usize {
    len.min(MAX_READ as u64) as usize
}
