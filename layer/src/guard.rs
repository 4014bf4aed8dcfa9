//! The re-entrancy guard: while a thread runs layer code, every hook it reaches calls the real
//! function. This keeps the layer's own I/O (the session link, memfds, logs) out of its hooks.
//!
//! The flag is a const-initialised `Cell<bool>` with no destructor, so reading it never registers
//! a TLS destructor and stays valid during TLS teardown. A signal handler that interrupts layer
//! code on the same thread sees the flag set and goes straight to the real function, so it never
//! waits on a lock its own thread holds.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static IN_LAYER: Cell<bool> = const { Cell::new(false) };
}

/// Set once the constructor has a session and the process is not skipped.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Turns the hooks on (after a good hello) or off.
pub fn set_active(on: bool) {
    ACTIVE.store(on, Ordering::Release);
}

/// Whether hooks act at all.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Proof that this thread is inside layer code; dropping it leaves.
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = IN_LAYER.try_with(|f| f.set(false));
    }
}

/// Enters layer code if the hooks are active and this thread is not already inside; `None`
/// means the caller must call the real function.
pub fn enter() -> Option<Guard> {
    if !is_active() {
        return None;
    }
    force_enter()
}

/// Enters layer code whether or not hooks are active (the constructor, fork handlers).
pub fn force_enter() -> Option<Guard> {
    IN_LAYER
        .try_with(|f| {
            if f.get() {
                None
            } else {
                f.set(true);
                Some(Guard(()))
            }
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_enter_is_refused_until_the_outer_guard_drops() {
        let outer = force_enter().expect("first enter");
        assert!(force_enter().is_none());
        drop(outer);
        assert!(force_enter().is_some());
    }

    #[test]
    fn enter_needs_active_hooks() {
        // Tests never activate the hooks.
        assert!(enter().is_none());
    }
}
