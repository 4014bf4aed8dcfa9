//! Remote directory streams: `opendir`/`fdopendir` of a remote directory return a fake `DIR*`
//! that `readdir`/`readdir64`/`rewinddir`/`closedir` serve from one [`FileRequest::ReadDir`].
//! `scandir` builds its `malloc`ed list the way glibc does.

use libc::{DIR, c_char, c_int, dirent64};
use tether_protocol::file::{DirEntry, FileRequest, FileResponse, FileType};

use super::files::file_op;
use super::path;
use super::{Detour, bypass_or};
use crate::fdtable::{self, Entry};

/// A fake `DIR`. Starts like glibc's `struct __dirstream` (fd, lock, sizes), so `dirfd()` and
/// other unhooked glibc readers of the header see sane values.
#[repr(C)]
struct FakeDir {
    fd: c_int,
    lock: c_int,
    allocation: usize,
    size: usize,
    offset: usize,
    filepos: i64,
    errcode: c_int,
    // Ours from here.
    entries: Vec<DirEntry>,
    pos: usize,
    ent: dirent64,
}

fn d_type(t: FileType) -> u8 {
    match t {
        FileType::File => libc::DT_REG,
        FileType::Dir => libc::DT_DIR,
        FileType::Symlink => libc::DT_LNK,
        FileType::Other => libc::DT_UNKNOWN,
    }
}

fn fill_dirent(ent: &mut dirent64, e: &DirEntry, off: i64) {
    // SAFETY: all-zero is a valid dirent64.
    *ent = unsafe { std::mem::zeroed() };
    ent.d_ino = e.ino;
    ent.d_off = off;
    ent.d_type = d_type(e.file_type);
    let name = e.name.as_bytes();
    let n = name.len().min(ent.d_name.len() - 1);
    for (dst, src) in ent.d_name.iter_mut().zip(&name[..n]) {
        *dst = *src as c_char;
    }
    ent.d_reclen = std::mem::size_of::<dirent64>() as u16;
}

/// Entries of a remote directory, with `.` and `..` first as the kernel lists them.
fn list(path: &str) -> Result<Vec<DirEntry>, i32> {
    match file_op(FileRequest::ReadDir {
        path: path.to_string(),
    })? {
        FileResponse::Entries(mut e) => {
            let dot = |n: &str| DirEntry {
                name: n.into(),
                ino: 0,
                file_type: FileType::Dir,
            };
            e.insert(0, dot(".."));
            e.insert(0, dot("."));
            Ok(e)
        }
        _ => Err(libc::EIO),
    }
}

fn make_dir(fd: c_int, entries: Vec<DirEntry>) -> Result<*mut DIR, i32> {
    let dir = Box::new(FakeDir {
        fd,
        lock: 0,
        allocation: 0,
        size: 0,
        offset: 0,
        filepos: 0,
        errcode: 0,
        entries,
        pos: 0,
        // SAFETY: all-zero is a valid dirent64.
        ent: unsafe { std::mem::zeroed() },
    });
    let p = Box::into_raw(dir);
    if !fdtable::add_dir(p as usize) {
        // SAFETY: just leaked above, never shared.
        drop(unsafe { Box::from_raw(p) });
        return Err(libc::EMFILE);
    }
    Ok(p.cast())
}

/// `opendir` of a remote directory.
///
/// # Safety
/// `path` is null or a valid C string.
pub unsafe fn opendir(path: *const c_char) -> Detour<*mut DIR> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::remote_visible(libc::AT_FDCWD, path) });
    let fd = match super::files::open_remote(
        &r,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) => return Detour::Fail(e),
    };
    match list(&r.path) {
        Ok(entries) => match make_dir(fd, entries) {
            Ok(d) => Detour::Done(d),
            Err(e) => {
                super::files::forget(fd);
                // SAFETY: our placeholder.
                unsafe { libc::close(fd) };
                Detour::Fail(e)
            }
        },
        Err(e) => {
            super::files::forget(fd);
            // SAFETY: our placeholder.
            unsafe { libc::close(fd) };
            Detour::Fail(e)
        }
    }
}

/// `fdopendir` of a remote directory placeholder.
pub fn fdopendir(fd: c_int) -> Detour<*mut DIR> {
    let Some(Entry::RemoteDir { path, .. }) = fdtable::get(fd) else {
        return Detour::Bypass;
    };
    Detour::from_result(list(&path).and_then(|e| make_dir(fd, e)))
}

/// `readdir`/`readdir64` of a fake stream; null at the end.
pub fn readdir(dir: *mut DIR) -> Detour<*mut dirent64> {
    if !fdtable::is_dir(dir as usize) {
        return Detour::Bypass;
    }
    // SAFETY: registered fake dirs are live boxes until closedir.
    let d = unsafe { &mut *dir.cast::<FakeDir>() };
    let Some(e) = d.entries.get(d.pos) else {
        return Detour::Done(std::ptr::null_mut());
    };
    d.pos += 1;
    let e = e.clone();
    fill_dirent(&mut d.ent, &e, d.pos as i64);
    Detour::Done(&mut d.ent)
}

/// `rewinddir` of a fake stream.
pub fn rewinddir(dir: *mut DIR) -> Detour<()> {
    if !fdtable::is_dir(dir as usize) {
        return Detour::Bypass;
    }
    // SAFETY: as in readdir.
    unsafe { (*dir.cast::<FakeDir>()).pos = 0 };
    Detour::Done(())
}

/// `closedir` of a fake stream: frees it and closes its placeholder fd.
pub fn closedir(dir: *mut DIR) -> Detour<c_int> {
    if !fdtable::remove_dir(dir as usize) {
        return Detour::Bypass;
    }
    // SAFETY: it was a registered Box<FakeDir>, now unregistered: we own it.
    let d = unsafe { Box::from_raw(dir.cast::<FakeDir>()) };
    super::files::forget(d.fd);
    // SAFETY: the placeholder fd belongs to the stream.
    unsafe { libc::close(d.fd) };
    Detour::Done(0)
}

type Filter64 = Option<unsafe extern "C" fn(*const dirent64) -> c_int>;
type Compar64 = Option<unsafe extern "C" fn(*mut *const dirent64, *mut *const dirent64) -> c_int>;

/// `scandir`/`scandir64` of a remote directory: a `malloc`ed array of `malloc`ed entries that
/// the caller frees with `free`.
///
/// # Safety
/// `path` is null or a valid C string; `list_out` is writable; the callbacks are valid.
pub unsafe fn scandir(
    path: *const c_char,
    list_out: *mut *mut *mut dirent64,
    filter: Filter64,
    compar: Compar64,
) -> Detour<c_int> {
    // SAFETY: forwarded.
    let r = bypass_or!(unsafe { path::remote_visible(libc::AT_FDCWD, path) });
    let entries = match list(&r.path) {
        Ok(e) => e,
        Err(e) => return Detour::Fail(e),
    };
    let mut out: Vec<*mut dirent64> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        // SAFETY: malloc of one dirent64; freed by the caller.
        let p = unsafe { libc::malloc(std::mem::size_of::<dirent64>()) }.cast::<dirent64>();
        if p.is_null() {
            for q in out {
                // SAFETY: our allocations.
                unsafe { libc::free(q.cast()) };
            }
            return Detour::Fail(libc::ENOMEM);
        }
        // SAFETY: p is a fresh allocation of the right size.
        unsafe { fill_dirent(&mut *p, e, i as i64 + 1) };
        // SAFETY: the app's filter takes a dirent.
        if let Some(f) = filter
            && unsafe { f(p) } == 0
        {
            // SAFETY: ours.
            unsafe { libc::free(p.cast()) };
            continue;
        }
        out.push(p);
    }
    let n = out.len();
    // SAFETY: malloc for the pointer array (at least one slot so it is never null).
    let arr = unsafe { libc::malloc(n.max(1) * std::mem::size_of::<*mut dirent64>()) }
        .cast::<*mut dirent64>();
    if arr.is_null() {
        for q in out {
            // SAFETY: our allocations.
            unsafe { libc::free(q.cast()) };
        }
        return Detour::Fail(libc::ENOMEM);
    }
    // SAFETY: arr holds n pointers.
    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), arr, n) };
    if let Some(c) = compar {
        // SAFETY: qsort over n pointer elements with the app's comparator, which receives
        // pointers to elements exactly as glibc's scandir passes them.
        unsafe {
            libc::qsort(
                arr.cast(),
                n,
                std::mem::size_of::<*mut dirent64>(),
                Some(std::mem::transmute::<
                    unsafe extern "C" fn(*mut *const dirent64, *mut *const dirent64) -> c_int,
                    unsafe extern "C" fn(*const libc::c_void, *const libc::c_void) -> c_int,
                >(c)),
            )
        };
    }
    // SAFETY: the caller's out pointer.
    unsafe { *list_out = arr };
    Detour::Done(n as c_int)
}
