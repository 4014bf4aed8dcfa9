//! Errors carried on the wire.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A failed remote operation, as the remote side's OS reported it. The layer turns `errno` into
/// the hooked call's `errno`, so the debuggee sees the same failure it would inside the pod.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{message} (errno {errno})")]
pub struct RemoteError {
    /// A Linux errno value (`ENOENT` = 2, ...).
    pub errno: i32,
    /// What failed, for logs.
    pub message: String,
}

impl RemoteError {
    /// An error with the given errno and message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Self {
            errno,
            message: message.into(),
        }
    }
}

/// Errors of the agent link as a whole, as opposed to one operation's errno.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum AgentError {
    /// The first message did not carry the right session token.
    #[error("agent refused the session: wrong or missing session token")]
    Unauthorized,
    /// The peers share no protocol version.
    #[error("protocol version mismatch: agent speaks {agent}, client speaks {client}")]
    VersionMismatch {
        /// The agent's version.
        agent: u32,
        /// The client's version.
        client: u32,
    },
    /// The target process exited or never existed.
    #[error("target process {pid} is gone")]
    TargetGone {
        /// The target's PID as the agent sees it.
        pid: u32,
    },
    /// The agent lacks a Linux capability it needs for the requested operation.
    #[error("agent lacks capability {capability} needed to {needed_for}")]
    MissingCapability {
        /// For example `CAP_NET_ADMIN`.
        capability: String,
        /// What it was needed for.
        needed_for: String,
    },
    /// The iptables binary is not available where the agent runs.
    #[error("iptables is not available to the agent: {detail}")]
    IptablesMissing {
        /// What running it said.
        detail: String,
    },
    /// Another session already steals this port without a filter, or this unfiltered steal
    /// overlaps another session's steal.
    #[error("port {port} is already stolen by another session")]
    PortAlreadyStolen {
        /// The port in the target.
        port: u16,
    },
    /// The request needs a newer protocol version than was negotiated.
    #[error("{what} needs protocol version {needs}, the link negotiated {negotiated}")]
    Unsupported {
        /// The feature.
        what: String,
        /// The version that introduced it.
        needs: u32,
        /// What the link speaks.
        negotiated: u32,
    },
    /// The peer sent something that makes no sense in the current state.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Anything else, with its cause.
    #[error("agent error: {0}")]
    Other(String),
}
