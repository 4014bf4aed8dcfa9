//! The file operations themselves: blocking syscalls on paths resolved inside the target root.
//! Run them on blocking threads.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use tether_protocol::file::{DirEntry, FileType, Metadata, OpenOptions, SeekFrom, Timespec};

use super::resolve::{open_in_root, open_parent, path_bytes, readlinkat};
use crate::errors::{OpError, OpResult};

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn err(op: &str, path: &str, e: io::Error) -> OpError {
    OpError::io(format_args!("{op} {path}"), &e)
}

/// `open(2)` flags for `options`.
pub fn open_flags(o: &OpenOptions) -> i32 {
    let mut f = match (o.read, o.write) {
        (_, false) => libc::O_RDONLY,
        (false, true) => libc::O_WRONLY,
        (true, true) => libc::O_RDWR,
    };
    if o.append {
        f |= libc::O_APPEND;
    }
    if o.create {
        f |= libc::O_CREAT;
    }
    if o.truncate {
        f |= libc::O_TRUNC;
    }
    if o.exclusive {
        f |= libc::O_EXCL;
    }
    if o.directory {
        f |= libc::O_DIRECTORY;
    }
    if o.no_follow {
        f |= libc::O_NOFOLLOW;
    }
    f
}

/// Opens `path` in the root.
pub fn open(root: RawFd, path: &str, options: &OpenOptions) -> OpResult<(OwnedFd, Metadata)> {
    let fd = open_in_root(root, path_bytes(path), open_flags(options), options.mode)
        .map_err(|e| err("open", path, e))?;
    let md = fstat(fd.as_raw_fd()).map_err(|e| err("fstat", path, e))?;
    Ok((fd, md))
}

/// `fstat(2)`.
pub fn fstat(fd: RawFd) -> io::Result<Metadata> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and stat buffer.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(metadata(&st))
}

fn metadata(st: &libc::stat) -> Metadata {
    let ts = |sec: i64, nsec: i64| Timespec {
        sec,
        nsec: nsec as u32,
    };
    Metadata {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size as u64,
        blksize: st.st_blksize as u64,
        blocks: st.st_blocks as u64,
        atime: ts(st.st_atime, st.st_atime_nsec),
        mtime: ts(st.st_mtime, st.st_mtime_nsec),
        ctime: ts(st.st_ctime, st.st_ctime_nsec),
    }
}

/// `stat` or `lstat`.
pub fn stat(root: RawFd, path: &str, follow: bool) -> OpResult<Metadata> {
    let op = if follow { "stat" } else { "lstat" };
    let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
    // O_PATH|O_NOFOLLOW opens the symlink itself, so fstat on it is lstat.
    let fd = open_in_root(root, path_bytes(path), flags, 0).map_err(|e| err(op, path, e))?;
    fstat(fd.as_raw_fd()).map_err(|e| err(op, path, e))
}

/// `access(2)`, checked with the agent's credentials on the resolved file.
pub fn access(root: RawFd, path: &str, mode: u32) -> OpResult<()> {
    let fd = open_in_root(root, path_bytes(path), libc::O_PATH, 0)
        .map_err(|e| err("access", path, e))?;
    if mode == libc::F_OK as u32 {
        return Ok(());
    }
    let empty = c"";
    // SAFETY: valid fd and C string; faccessat2 (Linux 5.8) accepts AT_EMPTY_PATH. AT_EACCESS:
    // check with the thread's filesystem ids (the target's, see `creds`), not the agent's uid.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            empty.as_ptr(),
            mode as libc::c_int,
            libc::AT_EMPTY_PATH | libc::AT_EACCESS,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err("access", path, e));
    }
    // Older kernels: check the magic link of the O_PATH fd, which names exactly this file.
    let proc_path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| OpError::errno(libc::EINVAL, "bad path"))?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::access(proc_path.as_ptr(), mode as libc::c_int) })
        .map(drop)
        .map_err(|e| err("access", path, e))
}

/// The entries of a directory, without `.` and `..`.
pub fn read_dir(root: RawFd, path: &str) -> OpResult<Vec<DirEntry>> {
    let fd = open_in_root(
        root,
        path_bytes(path),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| err("opendir", path, e))?;
    let raw = fd.as_raw_fd();
    // SAFETY: fdopendir takes ownership of the fd on success.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        return Err(err("opendir", path, io::Error::last_os_error()));
    }
    std::mem::forget(fd);
    let mut out = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; readdir distinguishes end from error only through it.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: dir is a valid DIR* until closedir below.
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break match e.raw_os_error() {
                Some(0) | None => Ok(()),
                _ => Err(err("readdir", path, e)),
            };
        }
        // SAFETY: readdir returned a valid entry with a NUL-terminated name.
        let ent = unsafe { &*ent };
        let name = unsafe { std::ffi::CStr::from_ptr(ent.d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let file_type = match ent.d_type {
            libc::DT_REG => FileType::File,
            libc::DT_DIR => FileType::Dir,
            libc::DT_LNK => FileType::Symlink,
            libc::DT_UNKNOWN => {
                // Some filesystems leave d_type unset: ask lstat.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: valid dir fd, C string and stat buffer.
                let rc = unsafe {
                    libc::fstatat(
                        libc::dirfd(dir),
                        name.as_ptr(),
                        &mut st,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                match (rc, st.st_mode & libc::S_IFMT) {
                    (0, libc::S_IFREG) => FileType::File,
                    (0, libc::S_IFDIR) => FileType::Dir,
                    (0, libc::S_IFLNK) => FileType::Symlink,
                    _ => FileType::Other,
                }
            }
            _ => FileType::Other,
        };
        out.push(DirEntry {
            name: String::from_utf8_lossy(bytes).into_owned(),
            ino: ent.d_ino,
            file_type,
        });
    };
    // SAFETY: dir is valid and closed once.
    unsafe { libc::closedir(dir) };
    result.map(|()| out)
}

/// `readlink(2)`: the link's text, unchanged (an absolute target means the target's root).
pub fn read_link(root: RawFd, path: &str) -> OpResult<String> {
    let (parent, name) =
        open_parent(root, path_bytes(path)).map_err(|e| err("readlink", path, e))?;
    let target = readlinkat(parent.as_raw_fd(), &name).map_err(|e| err("readlink", path, e))?;
    Ok(String::from_utf8_lossy(&target).into_owned())
}

/// `mkdir(2)`.
pub fn mkdir(root: RawFd, path: &str, mode: u32) -> OpResult<()> {
    let (parent, name) = open_parent(root, path_bytes(path)).map_err(|e| err("mkdir", path, e))?;
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), mode) })
        .map(drop)
        .map_err(|e| err("mkdir", path, e))
}

/// `unlink(2)` (`dir == false`) or `rmdir(2)`.
pub fn remove(root: RawFd, path: &str, dir: bool) -> OpResult<()> {
    let op = if dir { "rmdir" } else { "unlink" };
    let (parent, name) = open_parent(root, path_bytes(path)).map_err(|e| err(op, path, e))?;
    let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), flags) })
        .map(drop)
        .map_err(|e| err(op, path, e))
}

/// `rename(2)`.
pub fn rename(root: RawFd, from: &str, to: &str) -> OpResult<()> {
    let (pf, nf) = open_parent(root, path_bytes(from)).map_err(|e| err("rename", from, e))?;
    let (pt, nt) = open_parent(root, path_bytes(to)).map_err(|e| err("rename", to, e))?;
    // SAFETY: valid fds and C strings.
    cvt(unsafe { libc::renameat(pf.as_raw_fd(), nf.as_ptr(), pt.as_raw_fd(), nt.as_ptr()) })
        .map(drop)
        .map_err(|e| err("rename", &format!("{from} -> {to}"), e))
}

/// `symlinkat`: the link is created inside the root; its content is stored as given.
pub fn symlink(root: RawFd, target: &str, link: &str) -> OpResult<()> {
    let (parent, name) =
        open_parent(root, path_bytes(link)).map_err(|e| err("symlink", link, e))?;
    let target = CString::new(target)
        .map_err(|_| OpError::errno(libc::EINVAL, format!("symlink {link}: NUL in target")))?;
    // SAFETY: valid fd and C strings.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), parent.as_raw_fd(), name.as_ptr()) })
        .map(drop)
        .map_err(|e| err("symlink", link, e))
}

/// Opens, reads at most `max_len` bytes and closes; `EFBIG` for larger files.
pub fn read_whole(root: RawFd, path: &str, max_len: u64) -> OpResult<(Vec<u8>, Metadata)> {
    let fd = open_in_root(root, path_bytes(path), libc::O_RDONLY, 0)
        .map_err(|e| err("open", path, e))?;
    let md = fstat(fd.as_raw_fd()).map_err(|e| err("fstat", path, e))?;
    if md.mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(OpError::errno(
            libc::EISDIR,
            format!("read {path}: is a directory"),
        ));
    }
    if md.size > max_len {
        return Err(too_big(path, max_len));
    }
    // Files like /proc/* report size 0: read to the end, but never past max_len + 1.
    let cap = max_len.min(crate::files::MAX_READ as u64) as usize;
    let mut data = Vec::with_capacity((md.size as usize).min(cap) + 1);
    let mut file = std::fs::File::from(fd);
    use std::io::Read;
    (&mut file)
        .take(cap as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| err("read", path, e))?;
    if data.len() as u64 > max_len || data.len() > cap {
        return Err(too_big(path, max_len));
    }
    Ok((data, md))
}

fn too_big(path: &str, max_len: u64) -> OpError {
    OpError::errno(
        libc::EFBIG,
        format!("read {path}: larger than {max_len} bytes, open it instead"),
    )
}

/// An open remote file with its read-ahead buffer.
///
/// The kernel's file offset stays the source of truth, as in `std::io::BufReader`: bytes read
/// ahead sit in `buf[pos..]`, and before anything that depends on the offset (write, seek) the
/// unread part is given back with `lseek(-remaining, SEEK_CUR)`.
#[derive(Debug)]
pub struct OpenFile {
    file: std::fs::File,
    path: String,
    regular: bool,
    buf: Vec<u8>,
    pos: usize,
}

impl OpenFile {
    /// Wraps an opened file.
    pub fn new(fd: OwnedFd, path: String, md: &Metadata) -> Self {
        Self {
            file: std::fs::File::from(fd),
            path,
            regular: md.mode & libc::S_IFMT == libc::S_IFREG,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Gives unread read-ahead back to the kernel offset.
    fn unbuffer(&mut self) -> OpResult<()> {
        let rem = self.remaining();
        if rem > 0 {
            // SAFETY: valid fd.
            let rc = unsafe { libc::lseek(self.fd(), -(rem as libc::off_t), libc::SEEK_CUR) };
            if rc < 0 {
                return Err(err("lseek", &self.path, io::Error::last_os_error()));
            }
        }
        self.buf.clear();
        self.pos = 0;
        Ok(())
    }

    /// Appends up to `want` bytes from one `read(2)` to `out`. Reads into spare capacity: zeroing
    /// megabytes first would cost as much as the read.
    fn read_raw(&self, out: &mut Vec<u8>, want: usize) -> io::Result<usize> {
        out.reserve(want);
        loop {
            let spare = out.spare_capacity_mut();
            // SAFETY: `spare` has at least `want` writable bytes; read(2) writes at most that.
            let n = unsafe { libc::read(self.fd(), spare.as_mut_ptr().cast(), want) };
            if n >= 0 {
                // SAFETY: the kernel initialized the first `n` spare bytes.
                unsafe { out.set_len(out.len() + n as usize) };
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Reads up to `len` bytes at the current offset. Small reads of regular files fill a
    /// read-ahead buffer of [`super::READ_AHEAD`] bytes and are served from it; large reads are
    /// filled completely (until `len` or end of file) so they cost one response.
    pub fn read(&mut self, len: usize) -> OpResult<Vec<u8>> {
        let len = len.min(super::MAX_READ);
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if self.remaining() > 0 {
            let take = self.remaining().min(len);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
            }
            if out.len() == len || !self.regular {
                return Ok(out);
            }
        }
        if !self.regular {
            self.read_raw(&mut out, len)
                .map_err(|e| err("read", &self.path, e))?;
            return Ok(out);
        }
        let want = len - out.len();
        if want < super::READ_AHEAD {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            self.read_raw(&mut buf, super::READ_AHEAD)
                .map_err(|e| err("read", &self.path, e))?;
            let take = buf.len().min(want);
            out.extend_from_slice(&buf[..take]);
            self.buf = buf;
            self.pos = take;
            return Ok(out);
        }
        while out.len() < len {
            let want = len - out.len();
            match self.read_raw(&mut out, want) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if out.is_empty() => return Err(err("read", &self.path, e)),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// `pread(2)`, filled until `len` or end of file.
    pub fn read_at(&mut self, offset: u64, len: usize) -> OpResult<Vec<u8>> {
        let len = len.min(super::MAX_READ);
        let mut out = vec![0u8; len];
        let mut got = 0;
        while got < len {
            // SAFETY: the destination has `len - got` writable bytes.
            let n = unsafe {
                libc::pread(
                    self.fd(),
                    out[got..].as_mut_ptr().cast(),
                    len - got,
                    (offset + got as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if got == 0 {
                    return Err(err("pread", &self.path, e));
                }
                break;
            }
            if n == 0 {
                break;
            }
            got += n as usize;
            if !self.regular {
                break;
            }
        }
        out.truncate(got);
        Ok(out)
    }

    /// `write(2)` at the current offset (all of `data`, as the layer expects from a regular file).
    pub fn write(&mut self, data: &[u8]) -> OpResult<u64> {
        if self.regular {
            self.unbuffer()?;
        }
        use std::io::Write;
        let mut done = 0;
        while done < data.len() {
            match self.file.write(&data[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if done == 0 => return Err(err("write", &self.path, e)),
                Err(_) => break,
            }
        }
        Ok(done as u64)
    }

    /// `pwrite(2)`; drops read-ahead that may now be stale.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> OpResult<u64> {
        if self.regular {
            self.unbuffer()?;
        }
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| err("pwrite", &self.path, e))?;
        Ok(data.len() as u64)
    }

    /// `lseek(2)`.
    pub fn seek(&mut self, from: SeekFrom) -> OpResult<u64> {
        let (off, whence) = match from {
            SeekFrom::Start(o) => (o as i64, libc::SEEK_SET),
            // The kernel offset is ahead of the app's by the unread read-ahead.
            SeekFrom::Current(o) => (o - self.remaining() as i64, libc::SEEK_CUR),
            SeekFrom::End(o) => (o, libc::SEEK_END),
        };
        // SAFETY: valid fd.
        let rc = unsafe { libc::lseek(self.fd(), off as libc::off_t, whence) };
        if rc < 0 {
            return Err(err("lseek", &self.path, io::Error::last_os_error()));
        }
        self.buf.clear();
        self.pos = 0;
        Ok(rc as u64)
    }

    /// `fstat(2)`.
    pub fn fstat(&self) -> OpResult<Metadata> {
        fstat(self.fd()).map_err(|e| err("fstat", &self.path, e))
    }
}
