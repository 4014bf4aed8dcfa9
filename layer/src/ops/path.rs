//! Turning a hooked call's path argument into an absolute path and its fs action.

use std::borrow::Cow;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_char, c_int};
use tether_protocol::layer::FsAction;

use crate::fdtable::{self, Entry, Kind};
use crate::lock::SpinLock;
use crate::policy;
use crate::state;

/// A path argument that the policy sends to the target (or hides).
#[derive(Debug)]
pub struct Remote {
    /// Absolute, normalised path (as the target sees it).
    pub path: String,
    /// The action: never `Local`.
    pub action: FsAction,
}

/// The current directory, cached: `getcwd` is a syscall, and relative paths are common. The
/// `chdir`/`fchdir` hooks invalidate it.
/// The cache is tagged with the generation it was read in; chdir bumps the generation without
/// a lock (it runs outside the guard, where a signal handler could interrupt it).
static CWD: SpinLock<Option<(u64, Vec<u8>)>> = SpinLock::new(None);
static CWD_GEN: AtomicU64 = AtomicU64::new(0);

/// Invalidates the cached current directory (after a successful chdir).
pub fn cwd_changed() {
    CWD_GEN.fetch_add(1, Ordering::AcqRel);
}

/// Holds the cwd lock across fork.
pub fn fork_prepare() {
    CWD.raw_lock();
}

/// Releases it after fork.
///
/// # Safety
/// Only after [`fork_prepare`] on this thread.
pub unsafe fn fork_release() {
    // SAFETY: fork_prepare took it on this thread.
    unsafe { CWD.raw_unlock() };
}

/// Runs `f` on the current directory (cached, see [`CWD`]).
fn with_cwd<R>(f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let generation = CWD_GEN.load(Ordering::Acquire);
    {
        let c = CWD.lock();
        if let Some((g, dir)) = c.as_ref()
            && *g == generation
        {
            return Some(f(dir));
        }
    }
    let mut buf = [0u8; libc::PATH_MAX as usize];
    // SAFETY: buf is PATH_MAX bytes.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0)?;
    let dir = &buf[..len];
    *CWD.lock() = Some((generation, dir.to_vec()));
    Some(f(dir))
}

/// The path a directory fd stands for: its remote path if the layer fakes it, else the local
/// path from `/proc/self/fd`.
fn dir_path(dirfd: c_int) -> Option<Vec<u8>> {
    if dirfd == libc::AT_FDCWD {
        return with_cwd(|d| d.to_vec());
    }
    if fdtable::kind(dirfd) == Kind::RemoteDir
        && let Some(Entry::RemoteDir { path, .. }) = fdtable::get(dirfd)
    {
        return Some(path.into_bytes());
    }
    std::fs::read_link(format!("/proc/self/fd/{dirfd}"))
        .ok()
        .map(|p| p.into_os_string().into_encoded_bytes())
}

/// Classifies `path` (relative to `dirfd`). `Err(None)` means local (bypass), `Err(Some(errno))`
/// a failure to report; `Ok` a path the layer handles.
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn classify(dirfd: c_int, path: *const c_char) -> Result<Remote, Option<i32>> {
    if path.is_null() {
        return Err(None);
    }
    let st = state::get();
    if st.fs.all_local() {
        return Err(None);
    }
    // SAFETY: non-null C string from the caller.
    let raw = unsafe { CStr::from_ptr(path) }.to_bytes();
    if raw.is_empty() {
        return Err(None);
    }
    let abs: Cow<'_, [u8]> = if raw[0] == b'/' {
        policy::normalize(raw)
    } else {
        // A relative path under a real local directory fd stays with that fd unless the rules
        // say otherwise for the joined path.
        let joined = if dirfd == libc::AT_FDCWD {
            // The common case (a relative path under the cwd that needs no normalising) is
            // decided on a stack buffer: no allocation on the local fast path.
            let fast = with_cwd(|base| {
                let mut buf = [0u8; 512];
                let n = base.len() + 1 + raw.len();
                if n > buf.len() || base.len() <= 1 {
                    return None;
                }
                buf[..base.len()].copy_from_slice(base);
                buf[base.len()] = b'/';
                buf[base.len() + 1..n].copy_from_slice(raw);
                let joined = &buf[..n];
                if !matches!(policy::normalize(joined), Cow::Borrowed(_)) {
                    return None;
                }
                Some(
                    (st.fs.action(joined) == FsAction::Local)
                        .then_some(())
                        .ok_or_else(|| joined.to_vec()),
                )
            })
            .flatten();
            match fast {
                Some(Ok(())) => return Err(None),
                Some(Err(joined)) => Some(joined),
                None => with_cwd(|base| policy::join(base, raw)),
            }
        } else {
            dir_path(dirfd).map(|base| policy::join(&base, raw))
        };
        let Some(joined) = joined else {
            return Err(None);
        };
        Cow::Owned(joined)
    };
    let action = st.fs.action(&abs);
    if action == FsAction::Local {
        return Err(None);
    }
    match String::from_utf8(abs.into_owned()) {
        Ok(path) => Ok(Remote { path, action }),
        // The protocol carries UTF-8 paths: a non-UTF-8 remote path cannot exist there.
        Err(_) => Err(Some(libc::ENOENT)),
    }
}

/// Classifies a path and requires it to be remote and visible (not `NotFound`).
///
/// # Safety
/// As [`classify`].
pub unsafe fn remote_visible(dirfd: c_int, path: *const c_char) -> Result<Remote, Option<i32>> {
    // SAFETY: forwarded.
    let r = unsafe { classify(dirfd, path) }?;
    if r.action == FsAction::NotFound {
        return Err(Some(libc::ENOENT));
    }
    Ok(r)
}

/// Requires write access under the rule.
pub fn writable(r: &Remote) -> Result<(), Option<i32>> {
    match r.action {
        FsAction::RemoteReadWrite => Ok(()),
        FsAction::NotFound => Err(Some(libc::ENOENT)),
        _ => Err(Some(libc::EROFS)),
    }
}
