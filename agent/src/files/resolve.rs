//! Path resolution that never leaves the target's root.
//!
//! Every path is resolved beneath an `O_PATH` fd of `/proc/PID/root`, as if that directory were
//! `/`: `..` stops at it, absolute symlinks restart at it, and magic links (`/proc/N/root`,
//! `/proc/N/fd/*`), which would jump anywhere, are refused. On Linux >= 5.6 the kernel does this
//! with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`; older kernels get [`walk`], the same
//! rules one component at a time in user space (magic links are then read as plain symlinks and
//! followed inside the root, which is just as contained).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU8, Ordering};

/// Most symlinks followed in one resolution, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// 0 = unknown, 1 = openat2 works, 2 = use the user-space walk.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Forces the user-space walk (tests of the fallback).
#[cfg(test)]
pub fn force_walk(on: bool) {
    OPENAT2.store(if on { 2 } else { 0 }, Ordering::SeqCst);
}

/// Opens `path` beneath `root` with `open(2)` `flags` and `mode`. `O_CLOEXEC` is always added.
pub fn open_in_root(root: RawFd, path: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC;
    let rel = relative(path);
    if OPENAT2.load(Ordering::Relaxed) != 2 {
        match openat2(root, rel, flags, mode) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                tracing::info!("openat2 is not available; resolving paths in user space");
                OPENAT2.store(2, Ordering::Relaxed);
            }
            other => {
                OPENAT2.store(1, Ordering::Relaxed);
                return other;
            }
        }
    }
    walk_open(root, rel, flags, mode)
}

/// The path without leading slashes: `RESOLVE_IN_ROOT` treats both the same, and the user-space
/// walk wants a relative path.
fn relative(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    &path[start..]
}

fn openat2(root: RawFd, rel: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let p = cstr(if rel.is_empty() { b"." } else { rel })?;
    let how = OpenHow {
        flags: flags as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            mode as u64
        } else {
            0
        },
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: valid C string and open_how struct of the size we pass.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                p.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh fd we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the resolution; the kernel asks us to retry.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

/// Opens the parent directory of `path` beneath `root` and returns it with the final component.
/// A path whose final component is `.` or `..`, or that names the root itself, has no such split:
/// `EINVAL` (or `EBUSY` for the root), as `rmdir`/`unlink` would say in the pod.
pub fn open_parent(root: RawFd, path: &[u8]) -> io::Result<(OwnedFd, CString)> {
    let mut rel = relative(path);
    while rel.last() == Some(&b'/') {
        rel = &rel[..rel.len() - 1];
    }
    if rel.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    };
    if name == b"." || name == b".." {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let parent = open_in_root(root, dir, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    Ok((parent, cstr(name)?))
}

/// The user-space walk: resolves `rel` component by component below `root`, following symlinks
/// inside the root, and opens the result with `flags`.
fn walk_open(root: RawFd, rel: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let follow_last = flags & libc::O_NOFOLLOW == 0;
    // Directories from the root down to the current one; `..` pops, never past the root.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut pending: Vec<Vec<u8>> = components(rel);
    pending.reverse(); // pop() yields the next component
    let mut links = 0usize;
    let cur = |stack: &Vec<OwnedFd>| stack.last().map_or(root, |f| f.as_raw_fd());
    while let Some(comp) = pending.pop() {
        let last = pending.is_empty();
        if comp == b"." {
            if last {
                return reopen(cur(&stack), flags);
            }
            continue;
        }
        if comp == b".." {
            stack.pop();
            if last {
                return reopen(cur(&stack), flags);
            }
            continue;
        }
        let name = cstr(&comp)?;
        let dir = cur(&stack);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, C string and stat buffer.
        let rc = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        let exists = if rc == 0 {
            true
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) && last {
                false
            } else {
                return Err(e);
            }
        };
        let is_link = exists && st.st_mode & libc::S_IFMT == libc::S_IFLNK;
        if is_link && (!last || follow_last) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = readlinkat(dir, &name)?;
            if target.first() == Some(&b'/') {
                stack.clear();
            }
            let mut more = components(&target);
            more.reverse();
            pending.extend(more);
            if pending.is_empty() {
                // A link to "/" as the last component.
                return reopen(cur(&stack), flags);
            }
            continue;
        }
        if last {
            // SAFETY: valid fd and C string; the kernel resolves only this one name.
            let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_NOFOLLOW, mode) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh fd we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        // SAFETY: as above.
        let fd = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        stack.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    reopen(cur(&stack), flags)
}

/// Opens the directory `dir` itself with `flags`.
fn reopen(dir: RawFd, flags: i32) -> io::Result<OwnedFd> {
    if flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL {
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    let dot = c".";
    // SAFETY: valid fd and C string.
    let fd = unsafe { libc::openat(dir, dot.as_ptr(), flags & !libc::O_CREAT) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// `readlinkat(dir, name)`.
pub fn readlinkat(dir: RawFd, name: &CString) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, C string, and a writable buffer of the given length.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Bytes of a path given as a string.
pub fn path_bytes(path: &str) -> &[u8] {
    OsStr::new(path).as_bytes()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fake root with an outside sibling and every kind of escape attempt.
    fn fixture() -> (tempfile::TempDir, OwnedFd) {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::write(root.join("etc/passwd"), "inside").unwrap();
        fs::write(top.path().join("secret"), "outside").unwrap();
        fs::create_dir_all(top.path().join("etc")).unwrap();
        fs::write(top.path().join("etc/passwd"), "outside").unwrap();
        symlink("/etc/passwd", root.join("data/abs")).unwrap();
        symlink("../../../../secret", root.join("data/rel")).unwrap();
        symlink("/", root.join("data/toroot")).unwrap();
        symlink("sub", root.join("data/tosub")).unwrap();
        symlink("loop", root.join("data/loop")).unwrap();
        let fd = fs::File::options()
            .read(true)
            .custom_flags_for_test()
            .open(&root)
            .unwrap();
        (top, fd.into())
    }

    trait Flags {
        fn custom_flags_for_test(&mut self) -> &mut Self;
    }
    impl Flags for fs::OpenOptions {
        fn custom_flags_for_test(&mut self) -> &mut Self {
            use std::os::unix::fs::OpenOptionsExt;
            self.custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        }
    }

    fn read(root: &OwnedFd, path: &str) -> io::Result<String> {
        let fd = open_in_root(root.as_raw_fd(), path.as_bytes(), libc::O_RDONLY, 0)?;
        fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    fn check_contained() {
        let (_top, root) = fixture();
        assert_eq!(read(&root, "/etc/passwd").unwrap(), "inside");
        assert_eq!(read(&root, "/../../etc/passwd").unwrap(), "inside");
        assert_eq!(
            read(&root, "/data/sub/../../../etc/passwd").unwrap(),
            "inside"
        );
        assert_eq!(read(&root, "/data/abs").unwrap(), "inside");
        assert_eq!(read(&root, "/data/toroot/etc/passwd").unwrap(), "inside");
        assert_eq!(
            read(&root, "data/tosub/../../etc/passwd").unwrap(),
            "inside"
        );
        let e = read(&root, "/data/rel").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        let e = read(&root, "/secret").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        let e = read(&root, "/data/loop").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        let e = open_in_root(
            root.as_raw_fd(),
            b"/data/abs",
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        let e = read(&root, "/etc/passwd/x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
        // Creating through a dangling-outside symlink stays inside too.
        let fd = open_in_root(
            root.as_raw_fd(),
            b"/data/new",
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .unwrap();
        drop(fd);
        assert!(_top.path().join("root/data/new").exists());
        let (parent, name) = open_parent(root.as_raw_fd(), b"/data/../../x/").unwrap();
        assert_eq!(name.as_bytes(), b"x");
        drop(parent);
        assert_eq!(
            open_parent(root.as_raw_fd(), b"/")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EBUSY)
        );
        assert_eq!(
            open_parent(root.as_raw_fd(), b"/data/..")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    // One test for both modes: the mode is a process-wide switch.
    #[test]
    fn both_resolvers_stay_inside_the_root() {
        force_walk(false);
        check_contained();
        force_walk(true);
        check_contained();
        force_walk(false);
    }
}
