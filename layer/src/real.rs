//! The real libc functions behind every hook, found with `dlsym(RTLD_NEXT, name)` once and
//! cached. [`resolve_all`] runs first thing in the constructor, so a hook that fires in a signal
//! handler never has to call `dlsym` (which is not async-signal-safe).

#![allow(clippy::missing_safety_doc)]

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    DIR, FILE, addrinfo, c_char, c_int, c_long, c_uint, c_ulong, c_void, dirent, dirent64, hostent,
    iovec, mode_t, msghdr, off_t, off64_t, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t,
    size_t, sockaddr, socklen_t, ssize_t, utsname,
};

/// One real symbol, resolved lazily.
pub struct RealSym {
    name: &'static str,
    addr: AtomicUsize,
}

impl RealSym {
    /// A symbol; `name` ends with NUL.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The real function's address. A missing symbol is fatal: the layer cannot forward the
    /// call, and returning garbage would corrupt the debuggee.
    pub fn get(&self) -> usize {
        let addr = self.addr.load(Ordering::Relaxed);
        if addr != 0 {
            return addr;
        }
        // SAFETY: the name is NUL-terminated; RTLD_NEXT looks past this library.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) } as usize;
        if found == 0 {
            let msg = format!(
                "tether: libc has no symbol {}; the layer cannot forward it\n",
                self.name.trim_end_matches('\0')
            );
            // SAFETY: writing a valid buffer to stderr, then aborting.
            unsafe {
                libc::syscall(libc::SYS_write, 2, msg.as_ptr(), msg.len());
                libc::abort();
            }
        }
        self.addr.store(found, Ordering::Relaxed);
        found
    }
}

macro_rules! reals {
    ($( fn $name:ident($($a:ident: $t:ty),* $(,)?) -> $r:ty; )*) => {
        #[allow(non_upper_case_globals)]
        mod syms {
            $( pub static $name: super::RealSym = super::RealSym::new(concat!(stringify!($name), "\0")); )*
        }
        $(
            /// The real libc function of the same name.
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name($($a: $t),*) -> $r {
                // SAFETY: the symbol has this C signature in glibc.
                let f: unsafe extern "C" fn($($t),*) -> $r =
                    unsafe { std::mem::transmute::<usize, _>(syms::$name.get()) };
                // SAFETY: the caller passes what the C function expects.
                unsafe { f($($a),*) }
            }
        )*
        /// Resolves every real symbol now.
        pub fn resolve_all() {
            $( syms::$name.get(); )*
        }
    };
}

type Filter = Option<unsafe extern "C" fn(*const dirent) -> c_int>;
type Compar = Option<unsafe extern "C" fn(*mut *const dirent, *mut *const dirent) -> c_int>;
type Filter64 = Option<unsafe extern "C" fn(*const dirent64) -> c_int>;
type Compar64 = Option<unsafe extern "C" fn(*mut *const dirent64, *mut *const dirent64) -> c_int>;

reals! {
    fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    fn __open_2(path: *const c_char, flags: c_int) -> c_int;
    fn __open64_2(path: *const c_char, flags: c_int) -> c_int;
    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fn creat(path: *const c_char, mode: mode_t) -> c_int;
    fn creat64(path: *const c_char, mode: mode_t) -> c_int;
    fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE;
    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE;
    fn freopen(path: *const c_char, mode: *const c_char, stream: *mut FILE) -> *mut FILE;
    fn freopen64(path: *const c_char, mode: *const c_char, stream: *mut FILE) -> *mut FILE;
    fn stat(path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn stat64(path: *const c_char, buf: *mut libc::stat64) -> c_int;
    fn lstat(path: *const c_char, buf: *mut libc::stat) -> c_int;
    fn lstat64(path: *const c_char, buf: *mut libc::stat64) -> c_int;
    fn fstat(fd: c_int, buf: *mut libc::stat) -> c_int;
    fn fstat64(fd: c_int, buf: *mut libc::stat64) -> c_int;
    fn fstatat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int;
    fn fstatat64(dirfd: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) -> c_int;
    fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int;
    fn access(path: *const c_char, mode: c_int) -> c_int;
    fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int;
    fn eaccess(path: *const c_char, mode: c_int) -> c_int;
    fn euidaccess(path: *const c_char, mode: c_int) -> c_int;
    fn opendir(path: *const c_char) -> *mut DIR;
    fn fdopendir(fd: c_int) -> *mut DIR;
    fn readdir(dir: *mut DIR) -> *mut dirent;
    fn readdir64(dir: *mut DIR) -> *mut dirent64;
    fn closedir(dir: *mut DIR) -> c_int;
    fn rewinddir(dir: *mut DIR) -> ();
    fn scandir(path: *const c_char, list: *mut *mut *mut dirent, filter: Filter, compar: Compar) -> c_int;
    fn scandir64(path: *const c_char, list: *mut *mut *mut dirent64, filter: Filter64, compar: Compar64) -> c_int;
    fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char;
    fn mkdir(path: *const c_char, mode: mode_t) -> c_int;
    fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int;
    fn unlink(path: *const c_char) -> c_int;
    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fn rmdir(path: *const c_char) -> c_int;
    fn remove(path: *const c_char) -> c_int;
    fn rename(from: *const c_char, to: *const c_char) -> c_int;
    fn renameat(olddir: c_int, from: *const c_char, newdir: c_int, to: *const c_char) -> c_int;
    fn renameat2(olddir: c_int, from: *const c_char, newdir: c_int, to: *const c_char, flags: c_uint) -> c_int;
    fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    fn symlinkat(target: *const c_char, dirfd: c_int, link: *const c_char) -> c_int;
    fn chdir(path: *const c_char) -> c_int;
    fn fchdir(fd: c_int) -> c_int;
    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t;
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t;
    fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: off64_t) -> ssize_t;
    fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t;
    fn pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> ssize_t;
    fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t;
    fn preadv(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t;
    fn preadv64(fd: c_int, iov: *const iovec, n: c_int, off: off64_t) -> ssize_t;
    fn pwritev(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t;
    fn pwritev64(fd: c_int, iov: *const iovec, n: c_int, off: off64_t) -> ssize_t;
    fn copy_file_range(fd_in: c_int, off_in: *mut off64_t, fd_out: c_int, off_out: *mut off64_t, len: size_t, flags: c_uint) -> ssize_t;
    fn sendfile(out: c_int, fd_in: c_int, off: *mut off_t, n: size_t) -> ssize_t;
    fn sendfile64(out: c_int, fd_in: c_int, off: *mut off64_t, n: size_t) -> ssize_t;
    fn lseek(fd: c_int, off: off_t, whence: c_int) -> off_t;
    fn lseek64(fd: c_int, off: off64_t, whence: c_int) -> off64_t;
    fn close(fd: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(fd: c_int, to: c_int) -> c_int;
    fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int;
    fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int;
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> ssize_t;
    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t;
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int;
    fn freeaddrinfo(ai: *mut addrinfo) -> ();
    fn gethostbyname(name: *const c_char) -> *mut hostent;
    fn gethostbyname2(name: *const c_char, af: c_int) -> *mut hostent;
    fn gethostbyname_r(name: *const c_char, ret: *mut hostent, buf: *mut c_char, len: size_t, result: *mut *mut hostent, herr: *mut c_int) -> c_int;
    fn gethostbyname2_r(name: *const c_char, af: c_int, ret: *mut hostent, buf: *mut c_char, len: size_t, result: *mut *mut hostent, herr: *mut c_int) -> c_int;
    fn getnameinfo(addr: *const sockaddr, len: socklen_t, host: *mut c_char, hostlen: socklen_t, serv: *mut c_char, servlen: socklen_t, flags: c_int) -> c_int;
    fn gethostname(name: *mut c_char, len: size_t) -> c_int;
    fn uname(buf: *mut utsname) -> c_int;
    fn fork() -> pid_t;
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    fn execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
    fn posix_spawn(pid: *mut pid_t, path: *const c_char, fa: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    fn posix_spawnp(pid: *mut pid_t, file: *const c_char, fa: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    fn syscall(n: c_long, a1: c_long, a2: c_long, a3: c_long, a4: c_long, a5: c_long, a6: c_long) -> c_long;
}
