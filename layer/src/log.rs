//! Diagnostics. Errors go to stderr as one `tether: ...` line (and to the log file); debug lines
//! go only to the file named by `TETHER_LAYER_LOG`, when set. All writes use the raw `write`
//! syscall, so they never re-enter a hook and work in any state of the process.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use tether_protocol::session_env;

static LOG_FD: AtomicI32 = AtomicI32::new(-1);

/// Opens the log file named by `TETHER_LAYER_LOG`, if any. Called by the constructor.
pub fn init() {
    let Some(path) = std::env::var_os(session_env::LAYER_LOG) else {
        return;
    };
    let Ok(path) = std::ffi::CString::new(path.into_encoded_bytes()) else {
        return;
    };
    // SAFETY: a valid path; the raw syscall keeps this out of the hooks.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd >= 0 {
        // Out of the way of programs that close small fds, and marked as the layer's own so
        // the app's close of it is skipped.
        // SAFETY: duplicating our own fd, then closing the original.
        let high = unsafe { libc::fcntl(fd as i32, libc::F_DUPFD_CLOEXEC, 499) };
        let fd = if high >= 0 {
            // SAFETY: the original, ours.
            unsafe { libc::syscall(libc::SYS_close, fd) };
            high
        } else {
            fd as i32
        };
        crate::fdtable::mark_layer(fd);
        LOG_FD.store(fd, Ordering::Relaxed);
    }
}

/// Whether debug lines are written anywhere.
pub fn debug_enabled() -> bool {
    LOG_FD.load(Ordering::Relaxed) >= 0
}

fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writes from a valid buffer.
        let n = unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) };
        if n <= 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Writes one debug line to the log file.
pub fn debug_line(msg: &str) {
    let fd = LOG_FD.load(Ordering::Relaxed);
    // The app may have dup2'ed its own file over the log's number: then stop logging.
    if fd >= 0 && crate::fdtable::kind(fd) == crate::fdtable::Kind::Layer {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        write_all(fd, format!("tether[{pid}]: {msg}\n").as_bytes());
    }
}

/// Writes one error line to stderr (and the log file).
pub fn error_line(msg: &str) {
    let line = format!("tether: {msg}\n");
    write_all(2, line.as_bytes());
    debug_line(msg);
}

/// Writes an error line once per process for each `flag`.
pub fn error_once(flag: &AtomicBool, msg: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        error_line(msg);
    }
}

/// A debug line, formatted only when logging is on.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::debug_line(&format!($($arg)*));
        }
    };
}
pub(crate) use debug;
