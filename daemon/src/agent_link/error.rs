//! Errors of the agent link.

use std::sync::Arc;
use std::time::Duration;

use tether_protocol::{AgentError, RemoteError};
use thiserror::Error;

/// Connecting to the agent or the hello failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// Nothing accepts connections at the address.
    #[error(
        "cannot reach the agent at {addr}: {cause}\n  help: check that the agent runs and listens there (`tether-agent ... --listen ADDR` prints the address)"
    )]
    Unreachable {
        /// The address.
        addr: String,
        /// Why (in the message, not a separate source, so it prints once).
        cause: std::io::Error,
    },
    /// Connecting or the hello took too long.
    #[error("the agent at {addr} did not answer within {} s\n  help: check that the address is the agent's and not some other server", after.as_secs())]
    Timeout {
        /// The address.
        addr: String,
        /// The limit.
        after: Duration,
    },
    /// The agent refused the hello (wrong token, ...).
    #[error(
        "the agent at {addr} refused the session: {error}\n  help: pass the token the agent was started with (TETHER_AGENT_TOKEN)"
    )]
    Refused {
        /// The address.
        addr: String,
        /// The agent's reason.
        error: AgentError,
    },
    /// The agent speaks a protocol version this build does not.
    #[error(
        "the agent at {addr} speaks protocol version {agent}, this tether speaks {client}\n  help: use a tether and a tether-agent of the same release"
    )]
    VersionMismatch {
        /// The address.
        addr: String,
        /// The agent's version.
        agent: u32,
        /// Ours.
        client: u32,
    },
    /// The hello went wrong in another way (not an agent, closed early).
    #[error(
        "hello with the agent at {addr} failed: {detail}\n  help: check that the address is a tether agent's"
    )]
    Handshake {
        /// The address.
        addr: String,
        /// What happened.
        detail: String,
    },
}

/// Why the agent link is down. Cheap to clone: every pending request gets a copy.
#[derive(Debug, Clone, Error)]
#[error("{0}")]
pub struct LinkDown(Arc<str>);

impl LinkDown {
    /// A reason.
    pub fn new(why: impl Into<String>) -> Self {
        Self(Arc::from(why.into()))
    }
}

/// A request failed.
#[derive(Debug, Clone, Error)]
pub enum RequestError {
    /// The remote operation failed with an errno.
    #[error("{0}")]
    Remote(RemoteError),
    /// The agent could not do it at all.
    #[error("{0}")]
    Agent(AgentError),
    /// The agent link is down.
    #[error("agent link down: {0}")]
    LinkDown(LinkDown),
}
