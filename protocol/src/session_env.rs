//! Environment variables that hand a session to the debuggee. Defined once here: the daemon
//! sets them, the layer reads them.

/// Address of the daemon's session listener: `unix:/path` or `tcp:127.0.0.1:PORT`.
pub const SESSION_ADDR: &str = "TETHER_SESSION_ADDR";
/// Secret that authenticates the layer to the session. Never logged.
pub const SESSION_TOKEN: &str = "TETHER_SESSION_TOKEN";
/// Session id, for logs and for the daemon to tell sessions apart.
pub const SESSION_ID: &str = "TETHER_SESSION_ID";
/// Set by the layer in processes it runs in, so a child can tell it was launched inside a session.
pub const LAYER_LOADED: &str = "TETHER_LAYER_LOADED";
/// Optional: a file the layer appends its diagnostics to instead of stderr.
pub const LAYER_LOG: &str = "TETHER_LAYER_LOG";
/// The preload variable itself.
pub const LD_PRELOAD: &str = "LD_PRELOAD";

/// Every variable the layer needs a child process to inherit, in the order they are re-added to a
/// replaced environment by the exec and spawn hooks.
pub const INHERITED: &[&str] = &[
    LD_PRELOAD,
    SESSION_ADDR,
    SESSION_TOKEN,
    SESSION_ID,
    LAYER_LOG,
];
