//! What the hooks do. Each op returns a [`Detour`]: pass the call to libc, or its result, or an
//! errno. Ops run inside the re-entrancy guard; they never hold a lock across a real call or a
//! session exchange.

pub mod dirs;
pub mod dns;
pub mod exec;
pub mod files;
pub mod net;
pub mod path;
pub mod stat;

/// The outcome of an op.
#[derive(Debug)]
pub enum Detour<T> {
    /// Not the layer's business: call the real function with the original arguments.
    Bypass,
    /// Handled: return this.
    Done(T),
    /// Handled and failed: set errno and return the call's failure value.
    Fail(i32),
}

impl<T> Detour<T> {
    /// Maps a `Result` into a handled outcome.
    pub fn from_result(r: Result<T, i32>) -> Self {
        match r {
            Ok(v) => Self::Done(v),
            Err(e) => Self::Fail(e),
        }
    }
}

/// The current errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets errno.
pub fn set_errno(e: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}

/// Early-returns `Detour::Bypass` / `Detour::Fail` from an op.
macro_rules! bypass_or {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(None) => return $crate::ops::Detour::Bypass,
            Err(Some(errno)) => return $crate::ops::Detour::Fail(errno),
        }
    };
}
pub(crate) use bypass_or;
