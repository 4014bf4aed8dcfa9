//! libtether_layer.so: loaded into the debuggee with `LD_PRELOAD`, it routes the process's file,
//! network, DNS and process calls to its tether session (the daemon's session router), which
//! forwards them to the agent in the target pod.
//!
//! Code map:
//! - [`hooks`]: the interposition mechanism. Every exported libc symbol, as a thin detour. The
//!   only file that knows how calls are caught.
//! - [`ops`]: what each call does: bypass to libc, a result, or an errno.
//! - [`link`]: the blocking session link with its per-process connection pool.
//! - [`state`]: what the constructor set up (policy, link, env to keep in children).
//! - [`policy`], [`netpolicy`]: pure decisions (fs rules, outgoing/DNS filters, ports).
//! - [`fdtable`]: fds and `DIR*`s the layer fakes; [`guard`]: the re-entrancy guard;
//!   [`lock`]: a fork-safe spin lock; [`real`]: the real libc functions; [`log`].
//!
//! **Architecture invariants:** the layer never lets the process run unhooked silently (no
//! session: one `tether:` line and exit 1; `skip_processes` is the only, logged, exception). No
//! tokio, no reader thread: every exchange is a blocking request/response on a pooled socket.
//! No lock is held across a real libc call or a session exchange.

// Unit tests build without the exports (they would interpose the test binary's own libc calls),
// so code only the hooks reach looks dead there.
#![cfg_attr(test, allow(dead_code))]

#[cfg(not(test))]
mod hooks;

mod fdtable;
mod guard;
mod link;
mod lock;
mod log;
mod netpolicy;
mod ops;
mod policy;
mod readahead;
mod real;
mod state;

use libc::{c_char, c_int};

/// Runs before `main` (glibc passes argc/argv/envp to init_array functions).
#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = tether_init;

#[cfg_attr(test, allow(dead_code))]
extern "C" fn tether_init(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    real::resolve_all();
    log::init();
    let Some(_g) = guard::force_enter() else {
        return;
    };
    // SAFETY: glibc passes the program's argc/argv to init functions.
    let args = unsafe { state::argv_from(argc, argv) };
    match state::start(args) {
        Ok(state::Started::Hooked) => {
            // SAFETY: handlers with no preconditions, registered once.
            unsafe {
                libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child))
            };
            state::mark_loaded();
            guard::set_active(true);
            log::debug!("hooked, session {}", state::get().link.addr());
        }
        Ok(state::Started::Skipped(name)) => {
            log::debug!("`{name}` is in skip_processes: it runs unhooked by design");
        }
        Err(state::StartError(msg)) => {
            log::error_line(&msg);
            // SAFETY: ending the process before main, as promised: never run unhooked silently.
            unsafe { libc::_exit(1) };
        }
    }
}

// Fork handlers: hold every layer lock across fork so the child never inherits one locked by a
// thread that does not exist there; the child drops the parent's session connections.

extern "C" fn fork_prepare() {
    if let Some(st) = state::try_get() {
        st.link.fork_prepare();
    }
    fdtable::fork_prepare();
    ops::dns::fork_prepare();
    ops::path::fork_prepare();
}

extern "C" fn fork_parent() {
    // SAFETY: fork_prepare took these locks on this thread.
    unsafe {
        ops::path::fork_release();
        ops::dns::fork_release();
        fdtable::fork_release();
        if let Some(st) = state::try_get() {
            st.link.fork_parent();
        }
    }
}

extern "C" fn fork_child() {
    let _g = guard::force_enter();
    // SAFETY: as in fork_parent; the child is single-threaded here.
    unsafe {
        ops::path::fork_release();
        ops::dns::fork_release();
        fdtable::fork_release();
        if let Some(st) = state::try_get() {
            st.link.fork_child();
        }
    }
}
