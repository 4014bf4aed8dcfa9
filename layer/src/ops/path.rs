//! Turning a hooked call's path argument into an absolute path and its fs action.

use std::borrow::Cow;
use std::ffi::CStr;

use libc::{c_char, c_int};
use tether_protocol::layer::FsAction;

use crate::fdtable::{self, Entry, Kind};
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

/// The current directory, from the real `getcwd`.
fn cwd() -> Option<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: buf is PATH_MAX bytes.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0)?;
    buf.truncate(len);
    Some(buf)
}

/// The path a directory fd stands for: its remote path if the layer fakes it, else the local
/// path from `/proc/self/fd`.
fn dir_path(dirfd: c_int) -> Option<Vec<u8>> {
    if dirfd == libc::AT_FDCWD {
        return cwd();
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
        let Some(base) = dir_path(dirfd) else {
            return Err(None);
        };
        Cow::Owned(policy::join(&base, raw))
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
