//! File descriptors the layer fakes, and the directory streams it fakes.
//!
//! Every fd op hook first reads [`kind`]: one atomic load, lock-free and async-signal-safe. Only
//! fds with a kind other than [`Kind::None`] reach the table behind the spin lock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use libc::c_int;
use tether_protocol::RemoteFd;
use tether_protocol::file::Metadata;

use crate::lock::SpinLock;

/// Fds at or above this are never faked (the layer's own fds are handed out low, like any fd).
pub const MAX_FD: usize = 1 << 16;

/// What an fd is to the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A plain fd: every hook passes it through.
    None = 0,
    /// A memfd holding a whole remote file: I/O is real; fstat reports the remote metadata.
    MemFile = 1,
    /// A placeholder for a remote handle: every op goes to the session.
    RemoteFile = 2,
    /// A placeholder for a remote directory (`open(O_DIRECTORY)`, then `fdopendir`/`*at`).
    RemoteDir = 3,
    /// A socket the layer intercepted or subscribed.
    Socket = 4,
    /// The layer's own session socket: the app's `close` of it is a no-op.
    Layer = 5,
}

static KINDS: [AtomicU8; MAX_FD] = [const { AtomicU8::new(0) }; MAX_FD];

/// The kind of `fd`.
#[inline]
pub fn kind(fd: c_int) -> Kind {
    let Ok(i) = usize::try_from(fd) else {
        return Kind::None;
    };
    if i >= MAX_FD {
        return Kind::None;
    }
    match KINDS[i].load(Ordering::Acquire) {
        1 => Kind::MemFile,
        2 => Kind::RemoteFile,
        3 => Kind::RemoteDir,
        4 => Kind::Socket,
        5 => Kind::Layer,
        _ => Kind::None,
    }
}

fn set_kind(fd: c_int, k: Kind) {
    if let Ok(i) = usize::try_from(fd)
        && i < MAX_FD
    {
        KINDS[i].store(k as u8, Ordering::Release);
    }
}

/// Marks one of the layer's own session sockets (no table entry: the kind says it all).
pub fn mark_layer(fd: c_int) {
    set_kind(fd, Kind::Layer);
}

/// Unmarks a session socket the layer is about to close.
pub fn unmark_layer(fd: c_int) {
    if kind(fd) == Kind::Layer {
        set_kind(fd, Kind::None);
    }
}

/// A remote handle, shared by `dup`s; closed remotely when the last fd goes.
#[derive(Debug)]
pub struct RemoteHandle {
    /// The agent's handle.
    pub fd: RemoteFd,
    /// For read-only handles: the layer's own position and read-ahead (reads go by offset).
    pub ahead: Option<crate::readahead::ReadAhead>,
}

/// State of an intercepted socket.
#[derive(Debug, Clone, Default)]
pub struct SocketInfo {
    /// The peer as the app asked for it (`getpeername`).
    pub remote: Option<SocketAddr>,
    /// The connection's address in the target (`getsockname`).
    pub remote_local: Option<SocketAddr>,
    /// `(remote peer, local interceptor)` pairs of UDP relays, for rewriting sources.
    pub udp: Vec<(SocketAddr, SocketAddr)>,
    /// The listening address subscribed in the target.
    pub listening: Option<SocketAddr>,
}

/// One faked fd.
#[derive(Debug, Clone)]
pub enum Entry {
    /// See [`Kind::MemFile`].
    MemFile {
        /// Remote metadata (size is the real one).
        metadata: Metadata,
    },
    /// See [`Kind::RemoteFile`].
    RemoteFile {
        /// Shared handle.
        handle: Arc<RemoteHandle>,
        /// Path in the target.
        path: String,
    },
    /// See [`Kind::RemoteDir`].
    RemoteDir {
        /// Path in the target.
        path: String,
        /// Metadata at open.
        metadata: Metadata,
    },
    /// See [`Kind::Socket`].
    Socket(SocketInfo),
}

impl Entry {
    fn kind(&self) -> Kind {
        match self {
            Self::MemFile { .. } => Kind::MemFile,
            Self::RemoteFile { .. } => Kind::RemoteFile,
            Self::RemoteDir { .. } => Kind::RemoteDir,
            Self::Socket(_) => Kind::Socket,
        }
    }
}

static TABLE: SpinLock<BTreeMap<c_int, Entry>> = SpinLock::new(BTreeMap::new());

/// Records `fd` (replacing whatever it was).
pub fn insert(fd: c_int, entry: Entry) {
    if usize::try_from(fd).map_or(true, |i| i >= MAX_FD) {
        return;
    }
    let k = entry.kind();
    TABLE.lock().insert(fd, entry);
    set_kind(fd, k);
}

/// A copy of `fd`'s entry.
pub fn get(fd: c_int) -> Option<Entry> {
    if kind(fd) == Kind::None {
        return None;
    }
    TABLE.lock().get(&fd).cloned()
}

/// Changes `fd`'s socket info in place; inserts a socket entry if there is none.
pub fn with_socket<R>(fd: c_int, f: impl FnOnce(&mut SocketInfo) -> R) -> R {
    let mut t = TABLE.lock();
    let entry = t
        .entry(fd)
        .or_insert_with(|| Entry::Socket(SocketInfo::default()));
    if !matches!(entry, Entry::Socket(_)) {
        *entry = Entry::Socket(SocketInfo::default());
    }
    let Entry::Socket(info) = entry else {
        unreachable!("just made a socket entry")
    };
    let r = f(info);
    drop(t);
    set_kind(fd, Kind::Socket);
    r
}

/// Forgets `fd` and returns what it was.
pub fn remove(fd: c_int) -> Option<Entry> {
    if kind(fd) == Kind::None {
        return None;
    }
    set_kind(fd, Kind::None);
    TABLE.lock().remove(&fd)
}

/// Forgets a stale entry for an fd number the kernel just handed out again.
#[inline]
pub fn fresh(fd: c_int) {
    if kind(fd) != Kind::None {
        remove(fd);
    }
}

/// Copies `from`'s entry to `to` (`dup` family). Returns the entry `to` had before.
pub fn duplicate(from: c_int, to: c_int) -> Option<Entry> {
    let old = remove(to);
    if let Some(e) = get(from) {
        insert(to, e);
    }
    old
}

/// Drops every entry (fork child of nothing, exec failure paths never need it); used by tests.
#[cfg(test)]
pub fn clear() {
    let mut t = TABLE.lock();
    for fd in t.keys() {
        set_kind(*fd, Kind::None);
    }
    t.clear();
}

/// Holds the table lock across fork (see [`crate::link::Link::fork_prepare`]).
pub fn fork_prepare() {
    TABLE.raw_lock();
}

/// Releases the locks after fork, in parent and child.
///
/// # Safety
/// Only after [`fork_prepare`] on this thread.
pub unsafe fn fork_release() {
    // SAFETY: fork_prepare took it on this thread.
    unsafe { TABLE.raw_unlock() };
}

// ---- fake directory streams ----

/// Most fake `DIR*`s open at once.
const DIR_SLOTS: usize = 256;

/// Live fake `DIR*` pointers, lock-free: `readdir` and `closedir` of a fake stream must be
/// recognised even in a signal handler that interrupted layer code.
static DIRS: [AtomicUsize; DIR_SLOTS] = [const { AtomicUsize::new(0) }; DIR_SLOTS];
static DIR_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Registers a fake `DIR*`; false when every slot is taken.
pub fn add_dir(p: usize) -> bool {
    for slot in &DIRS {
        if slot
            .compare_exchange(0, p, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            DIR_COUNT.fetch_add(1, Ordering::Release);
            return true;
        }
    }
    false
}

/// Whether `p` is a fake `DIR*` (a single load when there are none).
#[inline]
pub fn is_dir(p: usize) -> bool {
    p != 0
        && DIR_COUNT.load(Ordering::Acquire) != 0
        && DIRS.iter().any(|s| s.load(Ordering::Acquire) == p)
}

/// Unregisters a fake `DIR*`; false if it was not one.
pub fn remove_dir(p: usize) -> bool {
    if p == 0 {
        return false;
    }
    for slot in &DIRS {
        if slot
            .compare_exchange(p, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            DIR_COUNT.fetch_sub(1, Ordering::Release);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_table() {
        clear();
        assert_eq!(kind(40), Kind::None);
        insert(
            40,
            Entry::MemFile {
                metadata: Metadata::default(),
            },
        );
        assert_eq!(kind(40), Kind::MemFile);
        assert!(duplicate(40, 41).is_none());
        assert_eq!(kind(41), Kind::MemFile);
        with_socket(41, |s| s.remote = Some("10.0.0.1:80".parse().unwrap()));
        assert_eq!(kind(41), Kind::Socket);
        assert!(matches!(remove(40), Some(Entry::MemFile { .. })));
        assert_eq!(kind(40), Kind::None);
        fresh(41);
        assert_eq!(kind(41), Kind::None);
        assert!(!is_dir(0x1000));
        assert!(add_dir(0x1000));
        assert!(is_dir(0x1000));
        assert!(remove_dir(0x1000));
        assert!(!remove_dir(0x1000));
        assert!(!is_dir(0x1000));
        assert_eq!(kind(-1), Kind::None);
        assert_eq!(kind(MAX_FD as c_int), Kind::None);
    }
}
