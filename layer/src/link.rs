//! The session link: blocking request/response connections to the daemon's session router.
//!
//! A small pool of connections serves all threads: a thread takes one, does one exchange and
//! puts it back, so a slow call on one thread never blocks another. Every new connection says
//! its own hello. Connections belong to the process that opened them: after `fork` the child
//! drops its copies (pid check, plus the fork handler) and opens fresh ones, whose hello carries
//! the child's pid and ppid.
//!
//! Invariant: no lock is held across socket I/O; the pool lock covers a `Vec` push or pop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tether_protocol::codec::{self, CodecError};
use tether_protocol::layer::{
    DaemonHello, DaemonMessage, LayerHello, LayerMessage, LayerRequest, LayerResponse,
};
use tether_protocol::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, RemoteError};

use crate::fdtable;
use crate::lock::SpinLock;

/// Where the session listens (`TETHER_SESSION_ADDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAddr {
    /// `unix:/path`.
    Unix(PathBuf),
    /// `tcp:127.0.0.1:PORT`.
    Tcp(SocketAddr),
}

impl SessionAddr {
    /// Parses `unix:/path` or `tcp:HOST:PORT`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("`{s}` names no socket path"));
            }
            Ok(Self::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            a.parse()
                .map(Self::Tcp)
                .map_err(|_| format!("`{s}` is not tcp:IP:PORT"))
        } else {
            Err(format!("`{s}` is neither unix:/path nor tcp:IP:PORT"))
        }
    }
}

impl std::fmt::Display for SessionAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Why an exchange with the session failed (as opposed to a remote errno).
#[derive(Debug)]
pub enum LinkError {
    /// Connecting failed.
    Connect(io::Error),
    /// The session refused the hello.
    Refused(String),
    /// Framing or I/O on an open connection failed.
    Codec(CodecError),
    /// The peer answered something out of protocol.
    Protocol(String),
    /// An earlier failure marked the session as gone.
    Dead,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "{e}"),
            Self::Refused(why) => write!(f, "the session refused this process: {why}"),
            Self::Codec(e) => write!(f, "{e}"),
            Self::Protocol(why) => write!(f, "protocol error: {why}"),
            Self::Dead => f.write_str("the session is gone"),
        }
    }
}

impl LinkError {
    /// Whether the error was a read timeout (the session is slow, not necessarily gone).
    fn is_timeout(&self) -> bool {
        matches!(self, Self::Codec(CodecError::Io(e))
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Conn {
    stream: Stream,
    pid: u32,
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Self::Unix(s) => s.as_raw_fd(),
            Self::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl Conn {
    /// Whether the fd still is this session socket: an unhooked close (close_range) followed
    /// by a hooked open that got the same number clears the mark.
    fn intact(&self) -> bool {
        fdtable::kind(self.stream.fd()) == fdtable::Kind::Layer
    }

    /// Drops the connection without closing its fd number, which now belongs to the app.
    fn abandon(self) {
        std::mem::forget(self);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Unmark before the stream closes the fd, so the number is a plain fd again.
        fdtable::unmark_layer(self.stream.fd());
    }
}

/// Lowest fd number for session sockets: out of the way of programs that expect small fds
/// (shells redirect 3..9) or close them in a loop.
const HIGH_FD: RawFd = 500;

/// Moves a socket to a high fd number (close-on-exec) and marks it as the layer's own, so the
/// app's `close` of that number cannot break the link. Keeps the socket where it is if the
/// move fails (fd limit).
fn protect<T: FromRawFd + IntoRawFd>(s: T) -> T {
    let fd = s.into_raw_fd();
    // SAFETY: duplicating a socket we own.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD) };
    let fd = if high >= 0 {
        // SAFETY: closing the original we own; `high` refers to the same socket.
        unsafe { libc::close(fd) };
        high
    } else {
        fd
    };
    fdtable::mark_layer(fd);
    // SAFETY: `fd` is an open socket we own exactly once.
    unsafe { T::from_raw_fd(fd) }
}

/// How long one exchange may take before the layer gives up on it. Remote connects and DNS can
/// take seconds; a hung session must not hang the debuggee forever.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per process.
const POOL_MAX: usize = 8;

/// Identity sent in every hello.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Session token.
    pub token: String,
    /// `/proc/self/exe`.
    pub exe: String,
    /// Arguments.
    pub argv: Vec<String>,
}

/// The link to one session.
pub struct Link {
    addr: SessionAddr,
    identity: Identity,
    pool: SpinLock<Vec<Conn>>,
    dead: AtomicBool,
    next_id: AtomicU64,
    /// Pid the pool's connections belong to.
    pool_pid: AtomicU32,
}

fn pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

impl Link {
    /// A link with no connection yet.
    pub fn new(addr: SessionAddr, identity: Identity) -> Self {
        Self {
            addr,
            identity,
            pool: SpinLock::new(Vec::new()),
            dead: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            pool_pid: AtomicU32::new(pid()),
        }
    }

    /// The session address.
    pub fn addr(&self) -> &SessionAddr {
        &self.addr
    }

    /// Whether an earlier failure marked the session as gone.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    fn open(&self) -> Result<Stream, io::Error> {
        Ok(match &self.addr {
            SessionAddr::Unix(p) => {
                let s = protect(UnixStream::connect(p)?);
                s.set_read_timeout(Some(READ_TIMEOUT))?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Stream::Unix(s)
            }
            SessionAddr::Tcp(a) => {
                let s = protect(TcpStream::connect_timeout(a, CONNECT_TIMEOUT)?);
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(READ_TIMEOUT))?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Stream::Tcp(s)
            }
        })
    }

    /// Opens a connection and says hello; returns the daemon's hello.
    fn connect(&self) -> Result<(Conn, DaemonHello), LinkError> {
        let mut stream = self.open().map_err(LinkError::Connect)?;
        let me = pid();
        let hello = LayerHello {
            protocol_version: PROTOCOL_VERSION,
            token: self.identity.token.clone(),
            pid: me,
            // SAFETY: getppid has no preconditions.
            ppid: unsafe { libc::getppid() as u32 },
            exe: self.identity.exe.clone(),
            argv: self.identity.argv.clone(),
        };
        codec::write_frame(&mut stream, &LayerMessage::Hello(hello)).map_err(LinkError::Codec)?;
        match codec::read_frame(&mut stream).map_err(LinkError::Codec)? {
            DaemonMessage::Hello(h) if h.protocol_version >= MIN_PROTOCOL_VERSION => {
                Ok((Conn { stream, pid: me }, h))
            }
            DaemonMessage::Hello(h) => Err(LinkError::Protocol(format!(
                "the session speaks protocol {}, this layer needs at least {MIN_PROTOCOL_VERSION}",
                h.protocol_version
            ))),
            DaemonMessage::Refused(why) => Err(LinkError::Refused(why)),
            DaemonMessage::Response { .. } => {
                Err(LinkError::Protocol("a response before the hello".into()))
            }
        }
    }

    /// The first connection of the process: its hello brings the policy. The connection goes
    /// into the pool.
    pub fn handshake(&self) -> Result<DaemonHello, LinkError> {
        let (conn, hello) = self.connect()?;
        self.put(conn);
        Ok(hello)
    }

    fn take(&self) -> Option<Conn> {
        let me = pid();
        let stale = if self.pool_pid.load(Ordering::Relaxed) != me {
            // A fork the handler did not see (raw clone): the pool holds the parent's sockets.
            self.pool_pid.store(me, Ordering::Relaxed);
            std::mem::take(&mut *self.pool.lock())
        } else {
            Vec::new()
        };
        drop(stale);
        let mut pool = self.pool.lock();
        while let Some(c) = pool.pop() {
            if c.pid == me && c.intact() {
                return Some(c);
            }
            drop(pool);
            if c.intact() {
                drop(c);
            } else {
                c.abandon();
            }
            pool = self.pool.lock();
        }
        None
    }

    fn put(&self, conn: Conn) {
        if conn.pid != pid() {
            return;
        }
        let mut pool = self.pool.lock();
        if pool.len() < POOL_MAX {
            pool.push(conn);
            return;
        }
        drop(pool);
        drop(conn);
    }

    /// Whether an idle connection of this process exists.
    pub fn has_idle(&self) -> bool {
        let me = pid();
        self.pool.lock().iter().any(|c| c.pid == me)
    }

    /// Drops every pooled connection (the fork child handler, under the pool lock the prepare
    /// handler took).
    ///
    /// # Safety
    /// Only in a fork child, after [`Self::fork_prepare`], single-threaded.
    pub unsafe fn fork_child(&self) {
        // SAFETY: the prepare handler holds the lock in the parent; the child is the only thread.
        let conns = unsafe {
            self.pool.raw_unlock();
            std::mem::take(&mut *self.pool.lock())
        };
        self.pool_pid.store(pid(), Ordering::Relaxed);
        drop(conns);
    }

    /// Holds the pool lock across `fork` so the child never inherits it locked by a thread that
    /// does not exist there.
    pub fn fork_prepare(&self) {
        self.pool.raw_lock();
    }

    /// Releases the lock after `fork` in the parent.
    ///
    /// # Safety
    /// Only after [`Self::fork_prepare`] on this thread.
    pub unsafe fn fork_parent(&self) {
        // SAFETY: the prepare handler took it on this thread.
        unsafe { self.pool.raw_unlock() };
    }

    /// One request and its response.
    pub fn request(
        &self,
        body: LayerRequest,
    ) -> Result<Result<LayerResponse, RemoteError>, LinkError> {
        match self.exchange(body.clone()) {
            // The app closed the socket under us (close_range, closefrom): that is not the
            // session's death. One retry on a fresh connection.
            Err(LinkError::Codec(CodecError::Io(e))) if e.raw_os_error() == Some(libc::EBADF) => {
                crate::log::debug!("session socket closed under the layer ({e}); reconnecting");
                self.purge_closed();
                self.exchange(body)
            }
            r => r,
        }
    }

    /// Drops pooled connections whose fds the app closed behind the layer's back (without
    /// closing those numbers again).
    fn purge_closed(&self) {
        let conns = std::mem::take(&mut *self.pool.lock());
        for c in conns {
            // SAFETY: F_GETFD only queries the descriptor.
            if unsafe { libc::fcntl(c.stream.fd(), libc::F_GETFD) } >= 0 && c.intact() {
                self.put(c);
            } else {
                c.abandon();
            }
        }
    }

    fn exchange(
        &self,
        body: LayerRequest,
    ) -> Result<Result<LayerResponse, RemoteError>, LinkError> {
        if self.is_dead() {
            return Err(LinkError::Dead);
        }
        let mut conn = match self.take() {
            Some(c) => c,
            None => self.connect().map(|(c, _)| c).inspect_err(|e| {
                crate::log::debug!("connecting to the session failed: {e}");
                self.fail(e)
            })?,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let exchange = (|| {
            codec::write_frame(&mut conn.stream, &LayerMessage::Request { id, body })
                .map_err(LinkError::Codec)?;
            match codec::read_frame(&mut conn.stream).map_err(LinkError::Codec)? {
                DaemonMessage::Response { id: got, result } if got == id => Ok(result),
                DaemonMessage::Response { id: got, .. } => Err(LinkError::Protocol(format!(
                    "response to request {got} while waiting for {id}"
                ))),
                other => Err(LinkError::Protocol(format!("unexpected {other:?}"))),
            }
        })();
        match exchange {
            Ok(r) => {
                self.put(conn);
                Ok(r)
            }
            Err(LinkError::Codec(CodecError::Io(e))) if e.raw_os_error() == Some(libc::EBADF) => {
                conn.abandon();
                Err(LinkError::Codec(CodecError::Io(e)))
            }
            Err(e) => {
                // The connection is out of step or broken: never reuse it.
                drop(conn);
                self.fail(&e);
                Err(e)
            }
        }
    }

    fn fail(&self, e: &LinkError) {
        if e.is_timeout() {
            crate::log::error_line(&format!(
                "the session at {} did not answer within {}s; the call fails with ETIMEDOUT",
                self.addr,
                READ_TIMEOUT.as_secs()
            ));
            return;
        }
        if !self.dead.swap(true, Ordering::Relaxed) {
            crate::log::error_line(&format!(
                "lost the session at {}: {e}; hooked calls now fail",
                self.addr
            ));
        }
    }

    /// The errno a hooked call reports for a link failure.
    pub fn errno(e: &LinkError) -> i32 {
        if e.is_timeout() {
            libc::ETIMEDOUT
        } else {
            libc::EIO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_addresses_parse() {
        assert_eq!(
            SessionAddr::parse("unix:/run/t.sock").unwrap(),
            SessionAddr::Unix("/run/t.sock".into())
        );
        assert_eq!(
            SessionAddr::parse("tcp:127.0.0.1:4000").unwrap(),
            SessionAddr::Tcp("127.0.0.1:4000".parse().unwrap())
        );
        assert!(SessionAddr::parse("unix:").is_err());
        assert!(SessionAddr::parse("tcp:localhost:1").is_err());
        assert!(SessionAddr::parse("/run/t.sock").is_err());
        assert_eq!(
            SessionAddr::parse("tcp:127.0.0.1:4000")
                .unwrap()
                .to_string(),
            "tcp:127.0.0.1:4000"
        );
    }
}
