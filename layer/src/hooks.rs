//! The interposition mechanism, and nothing else: every libc symbol the layer exports, as a
//! thin detour into [`crate::ops`]. Swapping the mechanism (for inline hooks, say) means
//! rewriting this file only.
//!
//! Each detour: fast path for calls that cannot concern the layer (an fd it does not fake, a
//! syscall number it does not serve); then the re-entrancy guard; then the op, whose
//! [`Detour`] picks the real call, a result, or an errno. Panics in ops become `EIO`.
//!
//! Deliberately not exported (see shared/notes/layer-symbols.md): dlopen (breaks the caller's
//! RUNPATH lookups), getenv, clone, _Fork, system, popen, readdir_r, getdents64.

#![allow(clippy::missing_safety_doc)]

use libc::{
    DIR, FILE, addrinfo, c_char, c_int, c_long, c_uint, c_void, dirent, dirent64, hostent, iovec,
    mode_t, msghdr, off_t, off64_t, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, size_t,
    sockaddr, socklen_t, ssize_t, utsname,
};

use crate::fdtable::{self, Kind};
use crate::guard;
use crate::ops::{Detour, dirs, dns, exec, files, net, set_errno, stat};
use crate::real;

/// Runs `$op` inside the guard; `$real` when not the layer's business; `$fail` with errno set
/// when the op fails.
macro_rules! detour {
    ($fail:expr, $op:expr, $real:expr) => {{
        match guard::enter() {
            None => $real,
            Some(g) => {
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $op));
                match out {
                    Ok(Detour::Bypass) => {
                        drop(g);
                        $real
                    }
                    Ok(Detour::Done(v)) => v,
                    Ok(Detour::Fail(e)) => {
                        drop(g);
                        set_errno(e);
                        $fail
                    }
                    Err(_) => {
                        drop(g);
                        set_errno(libc::EIO);
                        $fail
                    }
                }
            }
        }
    }};
}

/// A new fd from a real call: forget whatever a stale table entry said about its number.
/// Table changes outside a detour take the guard first; when it is taken (a signal handler
/// interrupted layer code that may hold the table lock) they are skipped rather than risk a
/// deadlock.
#[inline]
fn new_fd(fd: c_int) -> c_int {
    if fd >= 0
        && fdtable::kind(fd) != Kind::None
        && let Some(_g) = guard::force_enter()
    {
        fdtable::fresh(fd);
    }
    fd
}

/// Copies a faked fd's entry to its duplicate (see [`new_fd`] for the guard).
fn duplicated(from: c_int, to: c_int) {
    if to < 0 || from == to {
        return;
    }
    if fdtable::kind(from) != Kind::None
        && let Some(_g) = guard::force_enter()
    {
        fdtable::duplicate(from, to);
    } else {
        new_fd(to);
    }
}

// ---------------------------------------------------------------- open family

#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    detour!(
        -1,
        unsafe { files::open(libc::AT_FDCWD, path, flags, mode) },
        new_fd(unsafe { real::open(path, flags, mode) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    detour!(
        -1,
        unsafe { files::open(libc::AT_FDCWD, path, flags, mode) },
        new_fd(unsafe { real::open64(path, flags, mode) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    detour!(
        -1,
        unsafe { files::open(dirfd, path, flags, mode) },
        new_fd(unsafe { real::openat(dirfd, path, flags, mode) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    detour!(
        -1,
        unsafe { files::open(dirfd, path, flags, mode) },
        new_fd(unsafe { real::openat64(dirfd, path, flags, mode) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    detour!(
        -1,
        unsafe { files::open(libc::AT_FDCWD, path, flags, 0) },
        new_fd(unsafe { real::__open_2(path, flags) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    detour!(
        -1,
        unsafe { files::open(libc::AT_FDCWD, path, flags, 0) },
        new_fd(unsafe { real::__open64_2(path, flags) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    detour!(
        -1,
        unsafe { files::open(dirfd, path, flags, 0) },
        new_fd(unsafe { real::__openat_2(dirfd, path, flags) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    detour!(
        -1,
        unsafe { files::open(dirfd, path, flags, 0) },
        new_fd(unsafe { real::__openat64_2(dirfd, path, flags) })
    )
}

const CREAT: c_int = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;

#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
    detour!(
        -1,
        unsafe { files::open(libc::AT_FDCWD, path, CREAT, mode) },
        new_fd(unsafe { real::creat(path, mode) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
    detour!(
        -1,
        unsafe { files::open(libc::AT_FDCWD, path, CREAT, mode) },
        new_fd(unsafe { real::creat64(path, mode) })
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE {
    detour!(
        std::ptr::null_mut(),
        unsafe { files::fopen(path, mode) },
        unsafe { real::fopen(path, mode) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE {
    detour!(
        std::ptr::null_mut(),
        unsafe { files::fopen(path, mode) },
        unsafe { real::fopen64(path, mode) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    s: *mut FILE,
) -> *mut FILE {
    detour!(
        std::ptr::null_mut(),
        unsafe { files::freopen(path, mode, s) },
        unsafe { real::freopen(path, mode, s) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    s: *mut FILE,
) -> *mut FILE {
    detour!(
        std::ptr::null_mut(),
        unsafe { files::freopen(path, mode, s) },
        unsafe { real::freopen64(path, mode, s) }
    )
}

// ---------------------------------------------------------------- stat family

fn st<T>(
    buf: *mut T,
    m: Detour<tether_protocol::file::Metadata>,
    fill: fn(&mut T, &tether_protocol::file::Metadata),
) -> Detour<c_int> {
    match m {
        Detour::Done(m) => {
            // SAFETY: the caller's stat buffer.
            fill(unsafe { &mut *buf }, &m);
            Detour::Done(0)
        }
        Detour::Fail(e) => Detour::Fail(e),
        Detour::Bypass => Detour::Bypass,
    }
}

fn empty(path: *const c_char) -> bool {
    // SAFETY: non-null path points to at least one byte.
    !path.is_null() && unsafe { *path } == 0
}

/// fstatat-style lookup: `AT_EMPTY_PATH` with "" is fstat of `dirfd`.
unsafe fn meta_at(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
) -> Detour<tether_protocol::file::Metadata> {
    if flags & libc::AT_EMPTY_PATH != 0 && empty(path) {
        return files::fstat(dirfd);
    }
    // SAFETY: forwarded.
    unsafe { stat::stat_path(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    detour!(
        -1,
        st(
            buf,
            unsafe { stat::stat_path(libc::AT_FDCWD, path, true) },
            stat::fill_stat
        ),
        unsafe { real::stat(path, buf) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat64(path: *const c_char, buf: *mut libc::stat64) -> c_int {
    detour!(
        -1,
        st(
            buf,
            unsafe { stat::stat_path(libc::AT_FDCWD, path, true) },
            stat::fill_stat64
        ),
        unsafe { real::stat64(path, buf) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat(path: *const c_char, buf: *mut libc::stat) -> c_int {
    detour!(
        -1,
        st(
            buf,
            unsafe { stat::stat_path(libc::AT_FDCWD, path, false) },
            stat::fill_stat
        ),
        unsafe { real::lstat(path, buf) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat64(path: *const c_char, buf: *mut libc::stat64) -> c_int {
    detour!(
        -1,
        st(
            buf,
            unsafe { stat::stat_path(libc::AT_FDCWD, path, false) },
            stat::fill_stat64
        ),
        unsafe { real::lstat64(path, buf) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstatat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    detour!(
        -1,
        st(buf, unsafe { meta_at(dirfd, path, flags) }, stat::fill_stat),
        unsafe { real::fstatat(dirfd, path, buf, flags) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstatat64(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat64,
    flags: c_int,
) -> c_int {
    detour!(
        -1,
        st(
            buf,
            unsafe { meta_at(dirfd, path, flags) },
            stat::fill_stat64
        ),
        unsafe { real::fstatat64(dirfd, path, buf, flags) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut libc::statx,
) -> c_int {
    if path.is_null() {
        // SAFETY: forwarded (Rust's availability probe passes null).
        return unsafe { real::statx(dirfd, path, flags, mask, buf) };
    }
    detour!(
        -1,
        st(
            buf,
            unsafe { meta_at(dirfd, path, flags) },
            stat::fill_statx
        ),
        unsafe { real::statx(dirfd, path, flags, mask, buf) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat(fd: c_int, buf: *mut libc::stat) -> c_int {
    if fdtable::kind(fd) == Kind::None || fdtable::kind(fd) == Kind::Socket {
        // SAFETY: forwarded.
        return unsafe { real::fstat(fd, buf) };
    }
    detour!(-1, st(buf, files::fstat(fd), stat::fill_stat), unsafe {
        real::fstat(fd, buf)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat64(fd: c_int, buf: *mut libc::stat64) -> c_int {
    if fdtable::kind(fd) == Kind::None || fdtable::kind(fd) == Kind::Socket {
        // SAFETY: forwarded.
        return unsafe { real::fstat64(fd, buf) };
    }
    detour!(-1, st(buf, files::fstat(fd), stat::fill_stat64), unsafe {
        real::fstat64(fd, buf)
    })
}

// Pre-2.33 glibc ABI (NodeSource's node imports these). `ver` is _STAT_VER_LINUX on x86_64,
// whose struct is glibc's struct stat, so the real calls are the modern ones.

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xstat(_ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int {
    // SAFETY: forwarded.
    unsafe { stat(path, buf) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __xstat64(
    _ver: c_int,
    path: *const c_char,
    buf: *mut libc::stat64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { stat64(path, buf) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __lxstat(_ver: c_int, path: *const c_char, buf: *mut libc::stat) -> c_int {
    // SAFETY: forwarded.
    unsafe { lstat(path, buf) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __lxstat64(
    _ver: c_int,
    path: *const c_char,
    buf: *mut libc::stat64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { lstat64(path, buf) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstat(_ver: c_int, fd: c_int, buf: *mut libc::stat) -> c_int {
    // SAFETY: forwarded.
    unsafe { fstat(fd, buf) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstat64(_ver: c_int, fd: c_int, buf: *mut libc::stat64) -> c_int {
    // SAFETY: forwarded.
    unsafe { fstat64(fd, buf) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstatat(
    _ver: c_int,
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { fstatat(dirfd, path, buf, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __fxstatat64(
    _ver: c_int,
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat64,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { fstatat64(dirfd, path, buf, flags) }
}

// ---------------------------------------------------------------- access

#[unsafe(no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, mode: c_int) -> c_int {
    detour!(
        -1,
        unsafe { stat::access(libc::AT_FDCWD, path, mode) },
        unsafe { real::access(path, mode) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn faccessat(
    dirfd: c_int,
    path: *const c_char,
    mode: c_int,
    flags: c_int,
) -> c_int {
    detour!(-1, unsafe { stat::access(dirfd, path, mode) }, unsafe {
        real::faccessat(dirfd, path, mode, flags)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn eaccess(path: *const c_char, mode: c_int) -> c_int {
    detour!(
        -1,
        unsafe { stat::access(libc::AT_FDCWD, path, mode) },
        unsafe { real::eaccess(path, mode) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn euidaccess(path: *const c_char, mode: c_int) -> c_int {
    detour!(
        -1,
        unsafe { stat::access(libc::AT_FDCWD, path, mode) },
        unsafe { real::euidaccess(path, mode) }
    )
}

// ---------------------------------------------------------------- directories

#[unsafe(no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut DIR {
    detour!(
        std::ptr::null_mut(),
        unsafe { dirs::opendir(path) },
        unsafe { real::opendir(path) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut DIR {
    if fdtable::kind(fd) != Kind::RemoteDir {
        // SAFETY: forwarded.
        return unsafe { real::fdopendir(fd) };
    }
    detour!(std::ptr::null_mut(), dirs::fdopendir(fd), unsafe {
        real::fdopendir(fd)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir(dir: *mut DIR) -> *mut dirent {
    if !fdtable::is_dir(dir as usize) {
        // SAFETY: forwarded.
        return unsafe { real::readdir(dir) };
    }
    detour!(std::ptr::null_mut(), dirs::readdir(dir), unsafe {
        real::readdir(dir).cast()
    })
    .cast()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(dir: *mut DIR) -> *mut dirent64 {
    if !fdtable::is_dir(dir as usize) {
        // SAFETY: forwarded.
        return unsafe { real::readdir64(dir) };
    }
    detour!(std::ptr::null_mut(), dirs::readdir(dir), unsafe {
        real::readdir64(dir)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rewinddir(dir: *mut DIR) {
    if !fdtable::is_dir(dir as usize) {
        // SAFETY: forwarded.
        return unsafe { real::rewinddir(dir) };
    }
    detour!((), dirs::rewinddir(dir), unsafe { real::rewinddir(dir) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(dir: *mut DIR) -> c_int {
    if !fdtable::is_dir(dir as usize) {
        // SAFETY: forwarded.
        return unsafe { real::closedir(dir) };
    }
    // A fake stream must never reach glibc's closedir, guard or not (the registry is
    // lock-free).
    let _g = guard::force_enter();
    match dirs::closedir(dir) {
        Detour::Done(v) => v,
        // SAFETY: not ours after all.
        _ => unsafe { real::closedir(dir) },
    }
}

type Filter = Option<unsafe extern "C" fn(*const dirent) -> c_int>;
type Compar = Option<unsafe extern "C" fn(*mut *const dirent, *mut *const dirent) -> c_int>;
type Filter64 = Option<unsafe extern "C" fn(*const dirent64) -> c_int>;
type Compar64 = Option<unsafe extern "C" fn(*mut *const dirent64, *mut *const dirent64) -> c_int>;

#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandir(
    path: *const c_char,
    list: *mut *mut *mut dirent,
    filter: Filter,
    compar: Compar,
) -> c_int {
    // SAFETY: dirent and dirent64 have the same layout on 64-bit Linux.
    let (f64, c64): (Filter64, Compar64) = unsafe {
        (
            std::mem::transmute::<Filter, Filter64>(filter),
            std::mem::transmute::<Compar, Compar64>(compar),
        )
    };
    detour!(
        -1,
        unsafe { dirs::scandir(path, list.cast(), f64, c64) },
        unsafe { real::scandir(path, list, filter, compar) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandir64(
    path: *const c_char,
    list: *mut *mut *mut dirent64,
    filter: Filter64,
    compar: Compar64,
) -> c_int {
    detour!(
        -1,
        unsafe { dirs::scandir(path, list, filter, compar) },
        unsafe { real::scandir64(path, list, filter, compar) }
    )
}

// ---------------------------------------------------------------- links, mutations

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    detour!(
        -1,
        unsafe { stat::readlink(libc::AT_FDCWD, path, buf, size) },
        unsafe { real::readlink(path, buf, size) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
) -> ssize_t {
    detour!(
        -1,
        unsafe { stat::readlink(dirfd, path, buf, size) },
        unsafe { real::readlinkat(dirfd, path, buf, size) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    detour!(
        std::ptr::null_mut(),
        unsafe { stat::realpath(path, resolved) },
        unsafe { real::realpath(path, resolved) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    detour!(
        -1,
        unsafe { stat::mkdir(libc::AT_FDCWD, path, mode) },
        unsafe { real::mkdir(path, mode) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    detour!(-1, unsafe { stat::mkdir(dirfd, path, mode) }, unsafe {
        real::mkdirat(dirfd, path, mode)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    detour!(
        -1,
        unsafe { stat::unlink(libc::AT_FDCWD, path, 0) },
        unsafe { real::unlink(path) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    detour!(-1, unsafe { stat::unlink(dirfd, path, flags) }, unsafe {
        real::unlinkat(dirfd, path, flags)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    detour!(
        -1,
        unsafe { stat::unlink(libc::AT_FDCWD, path, libc::AT_REMOVEDIR) },
        unsafe { real::rmdir(path) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
    detour!(-1, unsafe { stat::remove(path) }, unsafe {
        real::remove(path)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(from: *const c_char, to: *const c_char) -> c_int {
    detour!(
        -1,
        unsafe { stat::rename(libc::AT_FDCWD, from, libc::AT_FDCWD, to) },
        unsafe { real::rename(from, to) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat(
    olddir: c_int,
    from: *const c_char,
    newdir: c_int,
    to: *const c_char,
) -> c_int {
    detour!(
        -1,
        unsafe { stat::rename(olddir, from, newdir, to) },
        unsafe { real::renameat(olddir, from, newdir, to) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat2(
    olddir: c_int,
    from: *const c_char,
    newdir: c_int,
    to: *const c_char,
    flags: c_uint,
) -> c_int {
    let op = || {
        // SAFETY: forwarded.
        match unsafe { stat::rename(olddir, from, newdir, to) } {
            // The protocol's rename has no NOREPLACE/EXCHANGE: refuse rather than clobber.
            Detour::Done(_) | Detour::Fail(_) if flags != 0 => Detour::Fail(libc::EINVAL),
            d => d,
        }
    };
    detour!(-1, op(), unsafe {
        real::renameat2(olddir, from, newdir, to, flags)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, link: *const c_char) -> c_int {
    detour!(
        -1,
        unsafe { stat::symlink(target, libc::AT_FDCWD, link) },
        unsafe { real::symlink(target, link) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlinkat(
    target: *const c_char,
    dirfd: c_int,
    link: *const c_char,
) -> c_int {
    detour!(-1, unsafe { stat::symlink(target, dirfd, link) }, unsafe {
        real::symlinkat(target, dirfd, link)
    })
}

// ---------------------------------------------------------------- current directory

#[unsafe(no_mangle)]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    // SAFETY: forwarded.
    let r = unsafe { real::chdir(path) };
    if r == 0 {
        crate::ops::path::cwd_changed();
    }
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    // SAFETY: forwarded.
    let r = unsafe { real::fchdir(fd) };
    if r == 0 {
        crate::ops::path::cwd_changed();
    }
    r
}

// ---------------------------------------------------------------- fd ops (faked fds only)

#[inline]
fn remote(fd: c_int) -> bool {
    fdtable::kind(fd) == Kind::RemoteFile
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::read(fd, buf, n) };
    }
    detour!(-1, files::read(fd, buf, n), unsafe {
        real::read(fd, buf, n)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::write(fd, buf, n) };
    }
    detour!(-1, unsafe { files::write(fd, buf, n) }, unsafe {
        real::write(fd, buf, n)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::pread(fd, buf, n, off) };
    }
    detour!(-1, files::pread(fd, buf, n, off), unsafe {
        real::pread(fd, buf, n, off)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: off64_t) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::pread64(fd, buf, n, off) };
    }
    detour!(-1, files::pread(fd, buf, n, off), unsafe {
        real::pread64(fd, buf, n, off)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::pwrite(fd, buf, n, off) };
    }
    detour!(-1, unsafe { files::pwrite(fd, buf, n, off) }, unsafe {
        real::pwrite(fd, buf, n, off)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    off: off64_t,
) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::pwrite64(fd, buf, n, off) };
    }
    detour!(-1, unsafe { files::pwrite(fd, buf, n, off) }, unsafe {
        real::pwrite64(fd, buf, n, off)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::readv(fd, iov, cnt) };
    }
    detour!(-1, unsafe { files::readv(fd, iov, cnt, None) }, unsafe {
        real::readv(fd, iov, cnt)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::writev(fd, iov, cnt) };
    }
    detour!(-1, unsafe { files::writev(fd, iov, cnt, None) }, unsafe {
        real::writev(fd, iov, cnt)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lseek(fd: c_int, off: off_t, whence: c_int) -> off_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::lseek(fd, off, whence) };
    }
    detour!(-1, files::lseek(fd, off, whence), unsafe {
        real::lseek(fd, off, whence)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn lseek64(fd: c_int, off: off64_t, whence: c_int) -> off64_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::lseek64(fd, off, whence) };
    }
    detour!(-1, files::lseek(fd, off, whence), unsafe {
        real::lseek64(fd, off, whence)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn preadv(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::preadv(fd, iov, cnt, off) };
    }
    detour!(
        -1,
        unsafe { files::readv(fd, iov, cnt, Some(off)) },
        unsafe { real::preadv(fd, iov, cnt, off) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn preadv64(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off64_t,
) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::preadv64(fd, iov, cnt, off) };
    }
    detour!(
        -1,
        unsafe { files::readv(fd, iov, cnt, Some(off)) },
        unsafe { real::preadv64(fd, iov, cnt, off) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::pwritev(fd, iov, cnt, off) };
    }
    detour!(
        -1,
        unsafe { files::writev(fd, iov, cnt, Some(off)) },
        unsafe { real::pwritev(fd, iov, cnt, off) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev64(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off64_t,
) -> ssize_t {
    if !remote(fd) {
        // SAFETY: forwarded.
        return unsafe { real::pwritev64(fd, iov, cnt, off) };
    }
    detour!(
        -1,
        unsafe { files::writev(fd, iov, cnt, Some(off)) },
        unsafe { real::pwritev64(fd, iov, cnt, off) }
    )
}

// In-kernel copies cannot see a remote handle behind its placeholder: refuse with EINVAL, on
// which callers (coreutils, Python's shutil, libuv) fall back to read/write, which are hooked.

#[unsafe(no_mangle)]
pub unsafe extern "C" fn copy_file_range(
    fd_in: c_int,
    off_in: *mut off64_t,
    fd_out: c_int,
    off_out: *mut off64_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    if remote(fd_in) || remote(fd_out) {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: forwarded.
    unsafe { real::copy_file_range(fd_in, off_in, fd_out, off_out, len, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile(out: c_int, fd_in: c_int, off: *mut off_t, n: size_t) -> ssize_t {
    if remote(fd_in) || remote(out) {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: forwarded.
    unsafe { real::sendfile(out, fd_in, off, n) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile64(
    out: c_int,
    fd_in: c_int,
    off: *mut off64_t,
    n: size_t,
) -> ssize_t {
    if remote(fd_in) || remote(out) {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: forwarded.
    unsafe { real::sendfile64(out, fd_in, off, n) }
}

/// Forgets a faked fd before it is closed or replaced.
fn forget(fd: c_int) {
    match fdtable::kind(fd) {
        Kind::None | Kind::Layer => return,
        _ => {}
    }
    // Layer code closing an fd it faked (closedir, cookie close) already forgot it. A signal
    // handler that interrupted layer code leaves a stale entry, which the next real call that
    // returns this fd number clears.
    if let Some(_g) = guard::force_enter() {
        let _ = std::panic::catch_unwind(|| files::forget(fd));
    }
}

/// Whether the app (not layer code) is closing one of the layer's session sockets: that close
/// is skipped, or the next exchange would write into whatever reused the number.
fn app_closes_layer_fd(fd: c_int) -> bool {
    fdtable::kind(fd) == Kind::Layer && guard::force_enter().is_some()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if app_closes_layer_fd(fd) {
        return 0;
    }
    forget(fd);
    // SAFETY: forwarded.
    unsafe { real::close(fd) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: forwarded.
    let r = unsafe { real::dup(fd) };
    duplicated(fd, r);
    r
}

/// The app is about to replace fd `to`: forget a faked fd there, and if it is one of the
/// layer's session sockets, give the number up (the pool then drops that connection without
/// closing what the app put there).
fn replacing(fd: c_int, to: c_int) {
    if fd == to {
        return;
    }
    if fdtable::kind(to) == Kind::Layer {
        if guard::force_enter().is_some() {
            fdtable::unmark_layer(to);
        }
        return;
    }
    forget(to);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(fd: c_int, to: c_int) -> c_int {
    replacing(fd, to);
    // SAFETY: forwarded.
    let r = unsafe { real::dup2(fd, to) };
    duplicated(fd, r);
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int {
    replacing(fd, to);
    // SAFETY: forwarded.
    let r = unsafe { real::dup3(fd, to, flags) };
    duplicated(fd, r);
    r
}

// `fcntl` is variadic; its one optional argument is an int or a pointer, passed like a
// `c_ulong` on the 64-bit ABIs tether supports, so it is forwarded as one. Only the duplicating
// commands matter here (CPython's `os.dup` is `fcntl(F_DUPFD_CLOEXEC)`): everything else acts on
// the real fd, placeholders included.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    // SAFETY: forwarded.
    let r = unsafe { real::fcntl(fd, cmd, arg) };
    if matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
        duplicated(fd, r);
    }
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    // SAFETY: forwarded.
    let r = unsafe { real::fcntl64(fd, cmd, arg) };
    if matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
        duplicated(fd, r);
    }
    r
}

// ---------------------------------------------------------------- sockets

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    // SAFETY: forwarded.
    new_fd(unsafe { real::socket(domain, ty, proto) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    detour!(-1, unsafe { net::connect(fd, addr, len) }, unsafe {
        real::connect(fd, addr, len)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    detour!(-1, unsafe { net::bind(fd, addr, len) }, unsafe {
        real::bind(fd, addr, len)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    detour!(-1, net::listen(fd, backlog), unsafe {
        real::listen(fd, backlog)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // Accepted connections come from the daemon's relay: their addresses stay local.
    // SAFETY: forwarded.
    new_fd(unsafe { real::accept(fd, addr, len) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded.
    new_fd(unsafe { real::accept4(fd, addr, len, flags) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if fdtable::kind(fd) != Kind::Socket {
        // SAFETY: forwarded.
        return unsafe { real::getsockname(fd, addr, len) };
    }
    detour!(-1, unsafe { net::getsockname(fd, addr, len) }, unsafe {
        real::getsockname(fd, addr, len)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if fdtable::kind(fd) != Kind::Socket {
        // SAFETY: forwarded.
        return unsafe { real::getpeername(fd, addr, len) };
    }
    detour!(-1, unsafe { net::getpeername(fd, addr, len) }, unsafe {
        real::getpeername(fd, addr, len)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    if addr.is_null() {
        // SAFETY: forwarded.
        return unsafe { real::sendto(fd, buf, n, flags, addr, len) };
    }
    detour!(
        -1,
        unsafe { net::sendto(fd, buf, n, flags, addr, len) },
        unsafe { real::sendto(fd, buf, n, flags, addr, len) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    if addr.is_null() || !net::has_relays(fd) {
        // SAFETY: forwarded.
        return unsafe { real::recvfrom(fd, buf, n, flags, addr, len) };
    }
    detour!(
        -1,
        unsafe { net::recvfrom(fd, buf, n, flags, addr, len) },
        unsafe { real::recvfrom(fd, buf, n, flags, addr, len) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: a non-null msghdr is the caller's.
    if msg.is_null() || unsafe { (*msg).msg_name.is_null() } {
        // SAFETY: forwarded.
        return unsafe { real::sendmsg(fd, msg, flags) };
    }
    detour!(-1, unsafe { net::sendmsg(fd, msg, flags) }, unsafe {
        real::sendmsg(fd, msg, flags)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if !net::has_relays(fd) {
        // SAFETY: forwarded.
        return unsafe { real::recvmsg(fd, msg, flags) };
    }
    detour!(-1, unsafe { net::recvmsg(fd, msg, flags) }, unsafe {
        real::recvmsg(fd, msg, flags)
    })
}

// ---------------------------------------------------------------- DNS and identity

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    detour!(
        libc::EAI_SYSTEM,
        unsafe { dns::getaddrinfo(node, service, hints, res) },
        unsafe { real::getaddrinfo(node, service, hints, res) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn freeaddrinfo(ai: *mut addrinfo) {
    // Outside the guard only (the list registry has a lock); a list the layer built has
    // glibc's layout, so glibc's free is right for it too when the guard is taken.
    if let Some(_g) = guard::force_enter()
        && let Detour::Done(()) = dns::freeaddrinfo(ai)
    {
        return;
    }
    // SAFETY: forwarded.
    unsafe { real::freeaddrinfo(ai) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    detour!(
        std::ptr::null_mut(),
        unsafe { dns::gethostbyname2(name, libc::AF_INET) },
        unsafe { real::gethostbyname(name) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname2(name: *const c_char, af: c_int) -> *mut hostent {
    detour!(
        std::ptr::null_mut(),
        unsafe { dns::gethostbyname2(name, af) },
        unsafe { real::gethostbyname2(name, af) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname_r(
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut hostent,
    herr: *mut c_int,
) -> c_int {
    detour!(
        libc::EIO,
        unsafe { dns::gethostbyname2_r(name, libc::AF_INET, ret, buf, len, result, herr) },
        unsafe { real::gethostbyname_r(name, ret, buf, len, result, herr) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname2_r(
    name: *const c_char,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut hostent,
    herr: *mut c_int,
) -> c_int {
    detour!(
        libc::EIO,
        unsafe { dns::gethostbyname2_r(name, af, ret, buf, len, result, herr) },
        unsafe { real::gethostbyname2_r(name, af, ret, buf, len, result, herr) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getnameinfo(
    addr: *const sockaddr,
    len: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> c_int {
    detour!(
        libc::EAI_SYSTEM,
        unsafe { dns::getnameinfo(addr, len, host, hostlen, serv, servlen, flags) },
        unsafe { real::getnameinfo(addr, len, host, hostlen, serv, servlen, flags) }
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostname(name: *mut c_char, len: size_t) -> c_int {
    detour!(-1, unsafe { dns::gethostname(name, len) }, unsafe {
        real::gethostname(name, len)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn uname(buf: *mut utsname) -> c_int {
    detour!(-1, unsafe { dns::uname(buf) }, unsafe { real::uname(buf) })
}

// ---------------------------------------------------------------- processes

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fork() -> pid_t {
    // The pthread_atfork handlers (see lib.rs) hand the child fresh link and table state; the
    // child reconnects lazily, with its own hello.
    // SAFETY: forwarded.
    unsafe { real::fork() }
}

/// `vfork` runs as `fork`: a vfork child shares the parent's memory, and layer code in it
/// (close and exec hooks run there) would corrupt the parent's state.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vfork() -> pid_t {
    // SAFETY: forwarded.
    unsafe { real::fork() }
}

unsafe extern "C" {
    static mut environ: *mut *mut c_char;
}

fn env_for(envp: *const *const c_char, path: *const c_char) -> Option<exec::Envp> {
    let _g = guard::enter()?;
    std::panic::catch_unwind(|| {
        // SAFETY: the caller's path and env.
        unsafe {
            exec::announce(path);
            exec::child_env(envp)
        }
    })
    .ok()
    .flatten()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let env = env_for(envp, path);
    let e = env.as_ref().map_or(envp, |e| e.as_ptr());
    // SAFETY: forwarded, with a complete env.
    unsafe { real::execve(path, argv, e) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: environ is the process env.
    let envp = unsafe { environ }.cast_const().cast::<*const c_char>();
    // SAFETY: forwarded.
    unsafe { execve(path, argv, envp) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let env = env_for(envp, file);
    let e = env.as_ref().map_or(envp, |e| e.as_ptr());
    // SAFETY: forwarded, with a complete env.
    unsafe { real::execvpe(file, argv, e) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: environ is the process env.
    let envp = unsafe { environ }.cast_const().cast::<*const c_char>();
    // SAFETY: forwarded.
    unsafe { execvpe(file, argv, envp) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    fa: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let env = if envp.is_null() {
        None
    } else {
        env_for(envp.cast(), std::ptr::null())
    };
    let e = env.as_ref().map_or(envp, |e| e.as_ptr().cast());
    // SAFETY: forwarded, with a complete env.
    unsafe { real::posix_spawn(pid, path, fa, attr, argv, e) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    fa: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let env = if envp.is_null() {
        None
    } else {
        env_for(envp.cast(), std::ptr::null())
    };
    let e = env.as_ref().map_or(envp, |e| e.as_ptr().cast());
    // SAFETY: forwarded, with a complete env.
    unsafe { real::posix_spawnp(pid, file, fa, attr, argv, e) }
}

// ---------------------------------------------------------------- syscall()

/// `syscall` is variadic in C; on x86_64 and aarch64 Linux variadic integer arguments travel
/// exactly like fixed ones, so six fixed `long`s read whatever the caller passed (unused slots
/// are harmless garbage) and forward it unchanged.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    match n {
        // libuv closes every fd this way.
        libc::SYS_close => {
            if app_closes_layer_fd(a1 as c_int) {
                return 0;
            }
            forget(a1 as c_int);
        }
        // libuv stats only this way (AT_EMPTY_PATH = fstat, AT_SYMLINK_NOFOLLOW = lstat).
        libc::SYS_statx => {
            let (dirfd, path, flags, buf) = (
                a1 as c_int,
                a2 as *const c_char,
                a3 as c_int,
                a5 as *mut libc::statx,
            );
            if !path.is_null() && !buf.is_null() {
                let r: c_int = detour!(
                    -1,
                    st(
                        buf,
                        unsafe { meta_at(dirfd, path, flags) },
                        stat::fill_statx
                    ),
                    -2
                );
                if r != -2 {
                    return r as c_long;
                }
            }
        }
        // io_uring would bypass every file hook; libuv falls back to its thread pool on ENOSYS.
        libc::SYS_io_uring_setup if guard::is_active() => {
            set_errno(libc::ENOSYS);
            return -1;
        }
        _ => {}
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::syscall(n, a1, a2, a3, a4, a5, a6) }
}
