//! Opening, reading, writing and closing remote files.
//!
//! Read-only opens fetch the whole file in one round trip ([`FileRequest::ReadWhole`]) into a
//! memfd: the app gets a real fd, so read, mmap, lseek, fstat's size, `FILE*` buffering and
//! glibc-internal reads all just work. Files over [`READ_WHOLE_MAX`] and writable opens get a
//! remote handle behind a placeholder memfd; the fd hooks serve those.

use std::sync::Arc;

use libc::{c_char, c_int, c_void, mode_t, off64_t, size_t, ssize_t};
use tether_protocol::RemoteError;
use tether_protocol::file::{FileRequest, FileResponse, Metadata, OpenOptions, SeekFrom};
use tether_protocol::layer::{FsAction, LayerRequest, LayerResponse};

use super::path::{self, Remote};
use super::{Detour, bypass_or};
use crate::fdtable::{self, Entry, Kind, RemoteHandle};
use crate::log::debug;
use crate::readahead::ReadAhead;
use crate::state;

/// Largest file fetched whole into a memfd (frames carry at most 16 MiB).
pub const READ_WHOLE_MAX: u64 = 8 * 1024 * 1024;

/// Sends a file request.
pub fn file_request(req: FileRequest) -> Result<FileResponse, RemoteError> {
    match state::request(LayerRequest::File(req))? {
        LayerResponse::File(r) => Ok(r),
        other => Err(RemoteError::new(
            libc::EIO,
            format!("unexpected answer {other:?}"),
        )),
    }
}

/// Like [`file_request`], with the error reduced to its errno.
pub fn file_op(req: FileRequest) -> Result<FileResponse, i32> {
    file_request(req).map_err(|e| e.errno)
}

fn unexpected<T>(r: FileResponse) -> Result<T, i32> {
    debug!("unexpected file response {r:?}");
    Err(libc::EIO)
}

const WRITE_FLAGS: c_int =
    libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND;

fn options(flags: c_int, mode: mode_t) -> OpenOptions {
    let acc = flags & libc::O_ACCMODE;
    OpenOptions {
        read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
        write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
        append: flags & libc::O_APPEND != 0,
        create: flags & libc::O_CREAT != 0,
        truncate: flags & libc::O_TRUNC != 0,
        exclusive: flags & libc::O_EXCL != 0,
        directory: flags & libc::O_DIRECTORY != 0,
        no_follow: flags & libc::O_NOFOLLOW != 0,
        mode: mode & 0o7777,
    }
}

/// A memfd with `data` in it, reopened read-only with the app's fd flags when /proc allows.
fn memfd_with(path: &str, data: &[u8], flags: c_int) -> Result<c_int, i32> {
    let name =
        std::ffi::CString::new(format!("tether:{path}")).unwrap_or_else(|_| c"tether".into());
    // SAFETY: valid name; memfd_create is not hooked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(super::errno());
    }
    let mut off = 0;
    while off < data.len() {
        // SAFETY: writes from the live buffer.
        let n = unsafe { libc::write(fd, data[off..].as_ptr().cast(), data.len() - off) };
        if n < 0 {
            let e = super::errno();
            if e == libc::EINTR {
                continue;
            }
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        off += n as usize;
    }
    // Reopen read-only so writes fail with EBADF like on a read-only file, with the app's
    // O_CLOEXEC / O_NONBLOCK.
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
    let keep = flags & (libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOATIME);
    // SAFETY: valid path; the guard keeps this open out of the hooks.
    let ro = unsafe { libc::open(proc_path.as_ptr(), libc::O_RDONLY | keep) };
    if ro >= 0 {
        // SAFETY: our memfd.
        unsafe { libc::close(fd) };
        return Ok(ro);
    }
    // No /proc: hand out the memfd itself, rewound, with the app's close-on-exec choice.
    // SAFETY: our fd.
    unsafe {
        libc::lseek(fd, 0, libc::SEEK_SET);
        if flags & libc::O_CLOEXEC == 0 {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
    }
    Ok(fd)
}

/// An empty memfd standing in for a remote handle or directory.
fn placeholder(flags: c_int) -> Result<c_int, i32> {
    let cloexec = if flags & libc::O_CLOEXEC != 0 {
        libc::MFD_CLOEXEC
    } else {
        0
    };
    // SAFETY: constant name; not hooked.
    let fd = unsafe { libc::memfd_create(c"tether-remote".as_ptr(), cloexec) };
    if fd < 0 { Err(super::errno()) } else { Ok(fd) }
}

fn open_dir(r: &Remote, flags: c_int, metadata: Option<Metadata>) -> Result<c_int, i32> {
    let metadata = match metadata {
        Some(m) => m,
        None => match file_op(FileRequest::Stat {
            path: r.path.clone(),
            follow: flags & libc::O_NOFOLLOW == 0,
        })? {
            FileResponse::Metadata(m) => m,
            other => return unexpected(other),
        },
    };
    if metadata.mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(libc::ENOTDIR);
    }
    let fd = placeholder(flags)?;
    fdtable::insert(
        fd,
        Entry::RemoteDir {
            path: r.path.clone(),
            metadata,
        },
    );
    Ok(fd)
}

fn open_handle(r: &Remote, flags: c_int, mode: mode_t) -> Result<c_int, i32> {
    let opts = options(flags, mode);
    let (handle, _metadata) = match file_op(FileRequest::Open {
        path: r.path.clone(),
        options: opts,
    })? {
        FileResponse::Opened { fd, metadata } => (fd, metadata),
        other => return unexpected(other),
    };
    let fd = match placeholder(flags) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = file_op(FileRequest::Close { fd: handle });
            return Err(e);
        }
    };
    fdtable::insert(
        fd,
        Entry::RemoteFile {
            handle: Arc::new(RemoteHandle {
                fd: handle,
                // Nothing else moves a read-only handle's position, so the layer can own it.
                ahead: (flags & WRITE_FLAGS == 0).then(ReadAhead::new),
            }),
            path: r.path.clone(),
        },
    );
    Ok(fd)
}

/// Opens a remote path with `open(2)` flags; returns a real fd.
pub fn open_remote(r: &Remote, flags: c_int, mode: mode_t) -> Result<c_int, i32> {
    let writes = flags & WRITE_FLAGS != 0;
    match r.action {
        FsAction::Local => unreachable!("classify never returns local paths"),
        FsAction::NotFound => return Err(libc::ENOENT),
        FsAction::RemoteReadOnly if writes => return Err(libc::EROFS),
        _ => {}
    }
    if writes {
        return open_handle(r, flags, mode);
    }
    if flags & libc::O_DIRECTORY != 0 {
        return open_dir(r, flags, None);
    }
    match file_request(FileRequest::ReadWhole {
        path: r.path.clone(),
        max_len: READ_WHOLE_MAX,
    }) {
        Ok(FileResponse::Contents { data, metadata }) => {
            if metadata.mode & libc::S_IFMT == libc::S_IFDIR {
                return open_dir(r, flags, Some(metadata));
            }
            let fd = memfd_with(&r.path, data.as_slice(), flags)?;
            let mut metadata = metadata;
            metadata.size = data.len() as u64;
            fdtable::insert(fd, Entry::MemFile { metadata });
            debug!("open {} -> memfd {fd} ({} bytes)", r.path, data.len());
            Ok(fd)
        }
        Ok(other) => unexpected(other),
        Err(e) if e.errno == libc::EISDIR => open_dir(r, flags, None),
        Err(e) if e.errno == libc::EFBIG => open_handle(r, flags, mode),
        Err(e) => Err(e.errno),
    }
}

/// `open`/`openat` and friends.
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn open(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::classify(dirfd, path) });
    Detour::from_result(open_remote(&r, flags, mode))
}

fn handle_of(fd: c_int) -> Option<tether_protocol::RemoteFd> {
    remote_handle(fd).map(|h| h.fd)
}

fn remote_handle(fd: c_int) -> Option<Arc<RemoteHandle>> {
    match fdtable::get(fd) {
        Some(Entry::RemoteFile { handle, .. }) => Some(handle),
        _ => None,
    }
}

/// A sequential read of a read-only handle, through its read-ahead.
fn read_ahead(h: &RemoteHandle, ahead: &ReadAhead, n: usize) -> Result<Vec<u8>, i32> {
    ahead.read(n, |offset, len| {
        match file_op(FileRequest::ReadAt {
            fd: h.fd,
            offset,
            len: len as u64,
        })? {
            FileResponse::Data(d) => Ok(d.0),
            other => unexpected(other),
        }
    })
}

fn read_into(req: FileRequest, buf: *mut c_void, n: size_t) -> Result<ssize_t, i32> {
    match file_op(req)? {
        FileResponse::Data(d) => {
            let len = d.len().min(n);
            // SAFETY: the caller's buffer holds `n` bytes; we copy at most that.
            unsafe { std::ptr::copy_nonoverlapping(d.as_slice().as_ptr(), buf.cast(), len) };
            Ok(len as ssize_t)
        }
        other => unexpected(other),
    }
}

/// `read` on a remote handle.
pub fn read(fd: c_int, buf: *mut c_void, n: size_t) -> Detour<ssize_t> {
    let Some(h) = remote_handle(fd) else {
        return Detour::Bypass;
    };
    if let Some(ahead) = &h.ahead {
        return Detour::from_result(read_ahead(&h, ahead, n).map(|d| {
            // SAFETY: the caller's buffer holds `n` bytes; `d` has at most `n`.
            unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), buf.cast(), d.len()) };
            d.len() as ssize_t
        }));
    }
    Detour::from_result(read_into(
        FileRequest::Read {
            fd: h.fd,
            len: n as u64,
        },
        buf,
        n,
    ))
}

/// `pread` on a remote handle.
pub fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: off64_t) -> Detour<ssize_t> {
    let Some(h) = handle_of(fd) else {
        return Detour::Bypass;
    };
    if off < 0 {
        return Detour::Fail(libc::EINVAL);
    }
    Detour::from_result(read_into(
        FileRequest::ReadAt {
            fd: h,
            offset: off as u64,
            len: n as u64,
        },
        buf,
        n,
    ))
}

fn written(r: Result<FileResponse, i32>) -> Result<ssize_t, i32> {
    match r? {
        FileResponse::Written(n) => Ok(n as ssize_t),
        other => unexpected(other),
    }
}

/// `write` on a remote handle.
///
/// # Safety
/// `buf` holds `n` bytes.
pub unsafe fn write(fd: c_int, buf: *const c_void, n: size_t) -> Detour<ssize_t> {
    let Some(h) = handle_of(fd) else {
        return Detour::Bypass;
    };
    // SAFETY: the caller's buffer.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) }.to_vec();
    Detour::from_result(written(file_op(FileRequest::Write {
        fd: h,
        data: data.into(),
    })))
}

/// `pwrite` on a remote handle.
///
/// # Safety
/// `buf` holds `n` bytes.
pub unsafe fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> Detour<ssize_t> {
    let Some(h) = handle_of(fd) else {
        return Detour::Bypass;
    };
    if off < 0 {
        return Detour::Fail(libc::EINVAL);
    }
    // SAFETY: the caller's buffer.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) }.to_vec();
    Detour::from_result(written(file_op(FileRequest::WriteAt {
        fd: h,
        offset: off as u64,
        data: data.into(),
    })))
}

/// `readv` (`off` = None) or `preadv` on a remote handle: one read, scattered.
///
/// # Safety
/// `iov` holds `cnt` valid iovecs.
pub unsafe fn readv(
    fd: c_int,
    iov: *const libc::iovec,
    cnt: c_int,
    off: Option<off64_t>,
) -> Detour<ssize_t> {
    let Some(handle) = remote_handle(fd) else {
        return Detour::Bypass;
    };
    let h = handle.fd;
    // SAFETY: the caller's iovec array.
    let iovs = unsafe { std::slice::from_raw_parts(iov, cnt.max(0) as usize) };
    let total: usize = iovs.iter().map(|v| v.iov_len).sum();
    let req = match off {
        None if handle.ahead.is_some() => {
            let ahead = handle.ahead.as_ref().expect("checked");
            return match read_ahead(&handle, ahead, total) {
                // SAFETY: forwarded.
                Ok(d) => Detour::Done(unsafe { scatter(&d, iovs) }),
                Err(e) => Detour::Fail(e),
            };
        }
        None => FileRequest::Read {
            fd: h,
            len: total as u64,
        },
        Some(o) if o >= 0 => FileRequest::ReadAt {
            fd: h,
            offset: o as u64,
            len: total as u64,
        },
        Some(_) => return Detour::Fail(libc::EINVAL),
    };
    let data = match file_op(req) {
        Ok(FileResponse::Data(d)) => d,
        Ok(other) => return Detour::from_result(unexpected(other)),
        Err(e) => return Detour::Fail(e),
    };
    // SAFETY: forwarded.
    Detour::Done(unsafe { scatter(data.as_slice(), iovs) })
}

/// Copies `data` into the iovecs in order; returns the bytes copied.
///
/// # Safety
/// Each iovec points to `iov_len` writable bytes.
unsafe fn scatter(data: &[u8], iovs: &[libc::iovec]) -> ssize_t {
    let mut src = data;
    let mut done = 0usize;
    for v in iovs {
        if src.is_empty() {
            break;
        }
        let n = v.iov_len.min(src.len());
        // SAFETY: each iovec points to iov_len writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), v.iov_base.cast(), n) };
        src = &src[n..];
        done += n;
    }
    done as ssize_t
}

/// `writev` (`off` = None) or `pwritev` on a remote handle: gathered into one write.
///
/// # Safety
/// `iov` holds `cnt` valid iovecs.
pub unsafe fn writev(
    fd: c_int,
    iov: *const libc::iovec,
    cnt: c_int,
    off: Option<off64_t>,
) -> Detour<ssize_t> {
    let Some(h) = handle_of(fd) else {
        return Detour::Bypass;
    };
    // SAFETY: the caller's iovec array.
    let iovs = unsafe { std::slice::from_raw_parts(iov, cnt.max(0) as usize) };
    let mut data = Vec::new();
    for v in iovs {
        // SAFETY: each iovec points to iov_len readable bytes.
        data.extend_from_slice(unsafe {
            std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len)
        });
    }
    let req = match off {
        None => FileRequest::Write {
            fd: h,
            data: data.into(),
        },
        Some(o) if o >= 0 => FileRequest::WriteAt {
            fd: h,
            offset: o as u64,
            data: data.into(),
        },
        Some(_) => return Detour::Fail(libc::EINVAL),
    };
    Detour::from_result(written(file_op(req)))
}

/// `lseek` on a remote handle.
pub fn lseek(fd: c_int, off: off64_t, whence: c_int) -> Detour<off64_t> {
    let Some(handle) = remote_handle(fd) else {
        return Detour::Bypass;
    };
    let h = handle.fd;
    if let Some(ahead) = &handle.ahead {
        let size = || match file_op(FileRequest::Fstat { fd: h })? {
            FileResponse::Metadata(m) => Ok(m.size),
            other => unexpected(other),
        };
        return Detour::from_result(ahead.seek(off, whence, size).map(|p| p as off64_t));
    }
    let from = match whence {
        libc::SEEK_SET if off >= 0 => SeekFrom::Start(off as u64),
        libc::SEEK_CUR => SeekFrom::Current(off),
        libc::SEEK_END => SeekFrom::End(off),
        _ => return Detour::Fail(libc::EINVAL),
    };
    Detour::from_result(match file_op(FileRequest::Seek { fd: h, from }) {
        Ok(FileResponse::Offset(o)) => Ok(o as off64_t),
        Ok(other) => unexpected(other),
        Err(e) => Err(e),
    })
}

/// Metadata of a faked fd, for the fstat family.
pub fn fstat(fd: c_int) -> Detour<Metadata> {
    match fdtable::get(fd) {
        Some(Entry::MemFile { metadata }) => Detour::Done(metadata),
        Some(Entry::RemoteDir { metadata, .. }) => Detour::Done(metadata),
        Some(Entry::RemoteFile { handle, .. }) => {
            Detour::from_result(match file_op(FileRequest::Fstat { fd: handle.fd }) {
                Ok(FileResponse::Metadata(m)) => Ok(m),
                Ok(other) => unexpected(other),
                Err(e) => Err(e),
            })
        }
        _ => Detour::Bypass,
    }
}

/// Forgets a faked fd before the real close; closes the remote handle with its last fd and
/// releases a subscribed port. Never fails the close.
pub fn forget(fd: c_int) {
    if fdtable::kind(fd) == Kind::None {
        return;
    }
    match fdtable::remove(fd) {
        Some(Entry::RemoteFile { handle, path }) => {
            if Arc::strong_count(&handle) == 1
                && let Err(e) = file_op(FileRequest::Close { fd: handle.fd })
            {
                debug!("remote close of {path} failed: errno {e}");
            }
        }
        Some(Entry::Socket(info)) => super::net::forget_socket(&info),
        _ => {}
    }
}

/// `open(2)` flags for an `fopen` mode string; `None` for an invalid mode.
pub fn fopen_flags(mode: &[u8]) -> Option<c_int> {
    let mut flags = match mode.first()? {
        b'r' => libc::O_RDONLY,
        b'w' => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        b'a' => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        _ => return None,
    };
    for c in &mode[1..] {
        match c {
            b'+' => flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR,
            b'e' => flags |= libc::O_CLOEXEC,
            b'x' => flags |= libc::O_EXCL,
            b',' => break,
            _ => {}
        }
    }
    Some(flags)
}

#[repr(C)]
struct CookieIo {
    read: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, size_t) -> ssize_t>,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, size_t) -> ssize_t>,
    seek: Option<unsafe extern "C" fn(*mut c_void, *mut off64_t, c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
}

unsafe extern "C" {
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, io: CookieIo) -> *mut libc::FILE;
}

/// Runs a cookie callback inside the guard; stdio calls these from the app's own frames.
fn cookie_call<T>(fail: T, f: impl FnOnce() -> Detour<T>) -> T {
    let Some(_g) = crate::guard::force_enter() else {
        super::set_errno(libc::EIO);
        return fail;
    };
    match f() {
        Detour::Done(v) => v,
        Detour::Fail(e) => {
            super::set_errno(e);
            fail
        }
        Detour::Bypass => {
            super::set_errno(libc::EBADF);
            fail
        }
    }
}

unsafe extern "C" fn cookie_read(c: *mut c_void, buf: *mut c_char, n: size_t) -> ssize_t {
    cookie_call(-1, || read(c as usize as c_int, buf.cast(), n))
}

unsafe extern "C" fn cookie_write(c: *mut c_void, buf: *const c_char, n: size_t) -> ssize_t {
    // SAFETY: stdio passes its buffer of n bytes.
    cookie_call(-1, || unsafe { write(c as usize as c_int, buf.cast(), n) })
}

unsafe extern "C" fn cookie_seek(c: *mut c_void, off: *mut off64_t, whence: c_int) -> c_int {
    cookie_call(-1, || {
        // SAFETY: stdio passes a valid offset slot.
        match lseek(c as usize as c_int, unsafe { *off }, whence) {
            Detour::Done(o) => {
                // SAFETY: as above.
                unsafe { *off = o };
                Detour::Done(0)
            }
            Detour::Fail(e) => Detour::Fail(e),
            Detour::Bypass => Detour::Bypass,
        }
    })
}

unsafe extern "C" fn cookie_close(c: *mut c_void) -> c_int {
    cookie_call(-1, || {
        let fd = c as usize as c_int;
        forget(fd);
        // SAFETY: the placeholder belongs to this stream.
        Detour::Done(unsafe { libc::close(fd) })
    })
}

/// `fopen` of a remote path: a stdio stream over the memfd, or over the remote handle through
/// `fopencookie` (stdio's internal reads never reach the fd hooks).
///
/// # Safety
/// `path` and `mode` are null or valid C strings.
pub unsafe fn fopen(path: *const c_char, mode: *const c_char) -> Detour<*mut libc::FILE> {
    if mode.is_null() {
        return Detour::Bypass;
    }
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::classify(libc::AT_FDCWD, path) });
    // SAFETY: non-null C string.
    let Some(flags) = fopen_flags(unsafe { std::ffi::CStr::from_ptr(mode) }.to_bytes()) else {
        return Detour::Fail(libc::EINVAL);
    };
    let fd = match open_remote(&r, flags, 0o666) {
        Ok(fd) => fd,
        Err(e) => return Detour::Fail(e),
    };
    let stream = if fdtable::kind(fd) == Kind::RemoteFile {
        let io = CookieIo {
            read: Some(cookie_read),
            write: Some(cookie_write),
            seek: Some(cookie_seek),
            close: Some(cookie_close),
        };
        // SAFETY: the cookie is the fd number; the callbacks match glibc's signatures.
        unsafe { fopencookie(fd as usize as *mut c_void, mode, io) }
    } else {
        // SAFETY: a real fd we own; fdopen is not hooked.
        unsafe { libc::fdopen(fd, mode) }
    };
    if stream.is_null() {
        let e = super::errno();
        forget(fd);
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        return Detour::Fail(e);
    }
    Detour::Done(stream)
}

/// `freopen` onto a remote path: reopens the stream on the memfd through /proc. A remote
/// handle cannot back an existing stream, so writable remote reopen fails with `ENOTSUP`.
///
/// # Safety
/// Arguments as for `freopen`.
pub unsafe fn freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> Detour<*mut libc::FILE> {
    if mode.is_null() {
        return Detour::Bypass;
    }
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::classify(libc::AT_FDCWD, path) });
    // SAFETY: non-null C string.
    let Some(flags) = fopen_flags(unsafe { std::ffi::CStr::from_ptr(mode) }.to_bytes()) else {
        return Detour::Fail(libc::EINVAL);
    };
    let fd = match open_remote(&r, flags, 0o666) {
        Ok(fd) => fd,
        Err(e) => return Detour::Fail(e),
    };
    let out = if fdtable::kind(fd) == Kind::MemFile {
        let p = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
        // SAFETY: valid arguments; the real freopen.
        unsafe { crate::real::freopen(p.as_ptr(), mode, stream) }
    } else {
        super::set_errno(libc::ENOTSUP);
        std::ptr::null_mut()
    };
    let e = super::errno();
    forget(fd);
    // SAFETY: our fd; the stream has its own now.
    unsafe { libc::close(fd) };
    if out.is_null() {
        Detour::Fail(e)
    } else {
        Detour::Done(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fopen_modes_map_to_open_flags() {
        assert_eq!(fopen_flags(b"r"), Some(libc::O_RDONLY));
        assert_eq!(fopen_flags(b"rb"), Some(libc::O_RDONLY));
        assert_eq!(fopen_flags(b"re"), Some(libc::O_RDONLY | libc::O_CLOEXEC));
        assert_eq!(
            fopen_flags(b"w"),
            Some(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        );
        assert_eq!(
            fopen_flags(b"a+"),
            Some(libc::O_RDWR | libc::O_CREAT | libc::O_APPEND)
        );
        assert_eq!(fopen_flags(b"r+"), Some(libc::O_RDWR));
        assert_eq!(
            fopen_flags(b"wx"),
            Some(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL)
        );
        assert_eq!(fopen_flags(b"q"), None);
        assert_eq!(fopen_flags(b""), None);
    }

    #[test]
    fn open_flags_become_remote_options() {
        let o = options(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o100644);
        assert!(o.read && o.write && o.create && o.exclusive && !o.truncate);
        assert_eq!(o.mode, 0o644);
        let o = options(libc::O_WRONLY | libc::O_APPEND, 0);
        assert!(!o.read && o.write && o.append);
    }
}
