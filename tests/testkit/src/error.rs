//! The one error type of the testkit.
//!
//! Every message is one lowercase `context: cause` line, and most add a `help:` line with the next
//! step. `Debug` prints the same text as `Display`, so `.unwrap()` in a test shows a readable error.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result alias for the testkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while building or tearing down test networks and pods.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process does not run as root (effective uid 0).
    #[error(
        "tether-testkit needs root, effective uid is {euid}\n  help: run the tests as root, as CI does: \
         network namespaces, veth pairs and mounts need CAP_NET_ADMIN and CAP_SYS_ADMIN"
    )]
    NotRoot {
        /// The effective uid found.
        euid: u32,
    },
    /// A program the testkit shells out to is not in `PATH`.
    #[error("required tool `{tool}` not found in PATH\n  help: apt-get install -y {package}")]
    MissingTool {
        /// Program name, e.g. `ip`.
        tool: &'static str,
        /// Debian package that ships it.
        package: &'static str,
    },
    /// The `tether-testsrv` binary could not be found or built.
    #[error(
        "cannot find the tether-testsrv binary: {reason}\n  help: run `cargo build -p tether-testkit --bins` \
         or set TETHER_TESTSRV=/path/to/tether-testsrv"
    )]
    TestServerBinary {
        /// Why the lookup failed.
        reason: String,
    },
    /// An external command (`ip`, `iptables`) failed.
    #[error("{context}: `{command}` failed ({status}): {stderr}")]
    Command {
        /// What the testkit was doing.
        context: String,
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the testkit was doing, naming the path or object.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A network, sandbox or pod with that name does not exist.
    #[error("{kind} `{name}` not found\n  help: {help}")]
    NotFound {
        /// `network`, `sandbox`, ...
        kind: &'static str,
        /// The name looked up.
        name: String,
        /// Next step.
        help: String,
    },
    /// The name is in use by an object that differs from the request.
    #[error("{kind} `{name}` already exists: {reason}\n  help: {help}")]
    Conflict {
        /// `network`, `sandbox`, ...
        kind: &'static str,
        /// The name.
        name: String,
        /// How the existing object differs.
        reason: String,
        /// Next step.
        help: String,
    },
    /// An argument is malformed (a name with bad characters, a bad `K=V` pair, ...).
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        /// What was being parsed.
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// All subnet indexes (10.244.N.0/24, N in 1..=254) are taken.
    #[error(
        "no free test network: all 254 subnets 10.244.N.0/24 are in use\n  help: run \
         `tether-testnet cleanup` to remove leftovers of dead test processes"
    )]
    SubnetsExhausted,
    /// All addresses of a network's subnet are taken.
    #[error("network `{network}` has no free address left in {subnet}")]
    AddressesExhausted {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: String,
    },
    /// Something did not become ready in time.
    #[error("timed out after {timeout:?} waiting for {what}{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the testkit waited.
        timeout: Duration,
        /// Extra lines, e.g. the tail of a log file.
        detail: String,
    },
    /// A process the testkit started exited before it was ready.
    #[error("{what} exited early ({status}){detail}")]
    Exited {
        /// Which process.
        what: String,
        /// Its exit status.
        status: String,
        /// Extra lines, e.g. the tail of its log file.
        detail: String,
    },
    /// A state file under the testkit directory is unreadable.
    #[error(
        "state file {path}: {reason}\n  help: run `tether-testnet cleanup --all` if no test is running"
    )]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Adds context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
