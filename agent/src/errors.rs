//! The failure of one operation, before it goes on the wire: an errno for the app
//! ([`RemoteError`], sent as `Response { result: Err }`) or an agent-level problem
//! ([`AgentError`], sent as `AgentMessage::Failed`).

use std::io;

use tether_protocol::{AgentError, RemoteError};

/// Why one request failed.
#[derive(Debug)]
pub enum OpError {
    /// An errno the app should see.
    Remote(RemoteError),
    /// Not an errno: target gone, missing capability, not supported.
    Agent(AgentError),
}

impl OpError {
    /// An errno with a message naming what failed.
    pub fn errno(errno: i32, message: impl Into<String>) -> Self {
        Self::Remote(RemoteError::new(errno, message))
    }

    /// An `io::Error` with context; keeps the OS errno (EIO when there is none).
    pub fn io(context: impl std::fmt::Display, e: &io::Error) -> Self {
        Self::errno(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("{context}: {e}"),
        )
    }
}

impl From<RemoteError> for OpError {
    fn from(e: RemoteError) -> Self {
        Self::Remote(e)
    }
}

impl From<AgentError> for OpError {
    fn from(e: AgentError) -> Self {
        Self::Agent(e)
    }
}

/// The result of one operation.
pub type OpResult<T> = Result<T, OpError>;

/// The capability error for a failed `setns`/namespace open.
pub fn missing_capability(capability: &str, needed_for: &str) -> AgentError {
    AgentError::MissingCapability {
        capability: capability.to_owned(),
        needed_for: needed_for.to_owned(),
    }
}
