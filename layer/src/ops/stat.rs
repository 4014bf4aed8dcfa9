//! Path metadata and mutations: the stat family, access, readlink, realpath, mkdir, unlink,
//! rmdir, remove, rename, symlink.

use libc::{c_char, c_int, mode_t};
use tether_protocol::file::{FileRequest, FileResponse, Metadata};

use super::files::file_op;
use super::path::{self, Remote};
use super::{Detour, bypass_or};

/// Metadata of a remote path (`follow` = stat, else lstat).
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn stat_path(dirfd: c_int, path: *const c_char, follow: bool) -> Detour<Metadata> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::remote_visible(dirfd, path) });
    Detour::from_result(stat_remote(&r, follow))
}

fn stat_remote(r: &Remote, follow: bool) -> Result<Metadata, i32> {
    match file_op(FileRequest::Stat {
        path: r.path.clone(),
        follow,
    })? {
        FileResponse::Metadata(m) => Ok(m),
        _ => Err(libc::EIO),
    }
}

/// Fills a `struct stat`.
pub fn fill_stat(buf: &mut libc::stat, m: &Metadata) {
    // SAFETY: all-zero is a valid `struct stat`.
    *buf = unsafe { std::mem::zeroed() };
    buf.st_dev = m.dev as _;
    buf.st_ino = m.ino as _;
    buf.st_mode = m.mode as _;
    buf.st_nlink = m.nlink as _;
    buf.st_uid = m.uid;
    buf.st_gid = m.gid;
    buf.st_rdev = m.rdev as _;
    buf.st_size = m.size as _;
    buf.st_blksize = m.blksize as _;
    buf.st_blocks = m.blocks as _;
    buf.st_atime = m.atime.sec as _;
    buf.st_atime_nsec = m.atime.nsec as _;
    buf.st_mtime = m.mtime.sec as _;
    buf.st_mtime_nsec = m.mtime.nsec as _;
    buf.st_ctime = m.ctime.sec as _;
    buf.st_ctime_nsec = m.ctime.nsec as _;
}

/// Fills a `struct stat64`.
pub fn fill_stat64(buf: &mut libc::stat64, m: &Metadata) {
    // SAFETY: all-zero is a valid `struct stat64`.
    *buf = unsafe { std::mem::zeroed() };
    buf.st_dev = m.dev as _;
    buf.st_ino = m.ino as _;
    buf.st_mode = m.mode as _;
    buf.st_nlink = m.nlink as _;
    buf.st_uid = m.uid;
    buf.st_gid = m.gid;
    buf.st_rdev = m.rdev as _;
    buf.st_size = m.size as _;
    buf.st_blksize = m.blksize as _;
    buf.st_blocks = m.blocks as _;
    buf.st_atime = m.atime.sec as _;
    buf.st_atime_nsec = m.atime.nsec as _;
    buf.st_mtime = m.mtime.sec as _;
    buf.st_mtime_nsec = m.mtime.nsec as _;
    buf.st_ctime = m.ctime.sec as _;
    buf.st_ctime_nsec = m.ctime.nsec as _;
}

/// Fills a `struct statx` with the basic fields.
pub fn fill_statx(buf: &mut libc::statx, m: &Metadata) {
    // SAFETY: all-zero is a valid `struct statx`.
    *buf = unsafe { std::mem::zeroed() };
    let ts = |t: &tether_protocol::file::Timespec| {
        // SAFETY: all-zero is a valid timestamp (its padding included).
        let mut x: libc::statx_timestamp = unsafe { std::mem::zeroed() };
        x.tv_sec = t.sec;
        x.tv_nsec = t.nsec;
        x
    };
    buf.stx_mask = libc::STATX_BASIC_STATS;
    buf.stx_blksize = m.blksize as u32;
    buf.stx_nlink = m.nlink as u32;
    buf.stx_uid = m.uid;
    buf.stx_gid = m.gid;
    buf.stx_mode = m.mode as u16;
    buf.stx_ino = m.ino;
    buf.stx_size = m.size;
    buf.stx_blocks = m.blocks;
    buf.stx_atime = ts(&m.atime);
    buf.stx_mtime = ts(&m.mtime);
    buf.stx_ctime = ts(&m.ctime);
    buf.stx_rdev_major = libc::major(m.rdev as libc::dev_t);
    buf.stx_rdev_minor = libc::minor(m.rdev as libc::dev_t);
    buf.stx_dev_major = libc::major(m.dev as libc::dev_t);
    buf.stx_dev_minor = libc::minor(m.dev as libc::dev_t);
}

/// `access` family.
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn access(dirfd: c_int, path: *const c_char, mode: c_int) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::remote_visible(dirfd, path) });
    if mode & libc::W_OK != 0 {
        bypass_or!(path::writable(&r));
    }
    Detour::from_result(
        file_op(FileRequest::Access {
            path: r.path,
            mode: mode as u32,
        })
        .map(|_| 0),
    )
}

/// `readlink` family: copies the target without a NUL, truncated to `size`.
///
/// # Safety
/// `path` is null or a valid C string; `buf` holds `size` bytes.
pub unsafe fn readlink(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: usize,
) -> Detour<isize> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::remote_visible(dirfd, path) });
    Detour::from_result(match file_op(FileRequest::ReadLink { path: r.path }) {
        Ok(FileResponse::Path(target)) => {
            let n = target.len().min(size);
            // SAFETY: the caller's buffer holds `size` bytes.
            unsafe { std::ptr::copy_nonoverlapping(target.as_ptr(), buf.cast(), n) };
            Ok(n as isize)
        }
        Ok(_) => Err(libc::EIO),
        Err(e) => Err(e),
    })
}

/// `realpath` of a remote path: the lexically normalised path, once it is known to exist.
///
/// # Safety
/// `path` is null or a valid C string; `resolved` is null or holds `PATH_MAX` bytes.
pub unsafe fn realpath(path: *const c_char, resolved: *mut c_char) -> Detour<*mut c_char> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::remote_visible(libc::AT_FDCWD, path) });
    if let Err(e) = stat_remote(&r, true) {
        return Detour::Fail(e);
    }
    let bytes = r.path.as_bytes();
    if bytes.len() >= libc::PATH_MAX as usize {
        return Detour::Fail(libc::ENAMETOOLONG);
    }
    let out = if resolved.is_null() {
        // SAFETY: malloc, freed by the caller with free().
        let p = unsafe { libc::malloc(bytes.len() + 1) }.cast::<c_char>();
        if p.is_null() {
            return Detour::Fail(libc::ENOMEM);
        }
        p
    } else {
        resolved
    };
    // SAFETY: `out` holds at least len+1 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast(), bytes.len());
        *out.add(bytes.len()) = 0;
    }
    Detour::Done(out)
}

fn done(r: Result<FileResponse, i32>) -> Detour<c_int> {
    Detour::from_result(r.map(|_| 0))
}

/// `mkdir` family.
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn mkdir(dirfd: c_int, path: *const c_char, mode: mode_t) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::classify(dirfd, path) });
    bypass_or!(path::writable(&r));
    done(file_op(FileRequest::Mkdir {
        path: r.path,
        mode: mode & 0o7777,
    }))
}

/// `unlink`, `unlinkat` (with `AT_REMOVEDIR` = rmdir).
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn unlink(dirfd: c_int, path: *const c_char, flags: c_int) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::classify(dirfd, path) });
    bypass_or!(path::writable(&r));
    if flags & libc::AT_REMOVEDIR != 0 {
        done(file_op(FileRequest::Rmdir { path: r.path }))
    } else {
        done(file_op(FileRequest::Unlink { path: r.path }))
    }
}

/// `remove`: unlink, or rmdir for a directory.
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn remove(path: *const c_char) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::classify(libc::AT_FDCWD, path) });
    bypass_or!(path::writable(&r));
    let is_dir = match stat_remote(&r, false) {
        Ok(m) => m.mode & libc::S_IFMT == libc::S_IFDIR,
        Err(e) => return Detour::Fail(e),
    };
    if is_dir {
        done(file_op(FileRequest::Rmdir { path: r.path }))
    } else {
        done(file_op(FileRequest::Unlink { path: r.path }))
    }
}

/// `rename` family. Both sides remote: renamed in the target; one side local: `EXDEV`, as
/// between two file systems (callers like `mv` then copy).
///
/// # Safety
/// Paths are null or valid C strings.
pub unsafe fn rename(
    olddir: c_int,
    from: *const c_char,
    newdir: c_int,
    to: *const c_char,
) -> Detour<c_int> {
    // SAFETY: forwarded.
    let a = unsafe { path::classify(olddir, from) };
    // SAFETY: forwarded.
    let b = unsafe { path::classify(newdir, to) };
    match (a, b) {
        (Err(None), Err(None)) => Detour::Bypass,
        (Err(Some(e)), _) | (_, Err(Some(e))) => Detour::Fail(e),
        (Ok(a), Ok(b)) => {
            bypass_or!(path::writable(&a));
            bypass_or!(path::writable(&b));
            done(file_op(FileRequest::Rename {
                from: a.path,
                to: b.path,
            }))
        }
        (Ok(r), Err(None)) | (Err(None), Ok(r)) => {
            bypass_or!(path::writable(&r));
            Detour::Fail(libc::EXDEV)
        }
    }
}

/// `symlink` family: a link in a remote (writable) directory is created in the pod, with its
/// content as given.
///
/// # Safety
/// `target` and `link` are null or valid C strings.
pub unsafe fn symlink(target: *const c_char, dirfd: c_int, link: *const c_char) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::classify(dirfd, link) });
    bypass_or!(path::writable(&r));
    if target.is_null() {
        return Detour::Fail(libc::EFAULT);
    }
    // SAFETY: non-null, and the caller's C string.
    let target = unsafe { std::ffi::CStr::from_ptr(target) };
    let Ok(target) = target.to_str() else {
        return Detour::Fail(libc::EINVAL);
    };
    done(file_op(FileRequest::Symlink {
        target: target.to_owned(),
        link: r.path,
    }))
}
