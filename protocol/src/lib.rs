//! Wire types and framing for tether's two links.
//!
//! ```text
//! debuggee + layer --[layer link: LayerMessage / DaemonMessage]--> daemon (session router)
//! daemon           --[agent link: ClientMessage / AgentMessage]--> agent (in the target's namespaces)
//! ```
//!
//! Modules:
//! - [`codec`]: length-prefixed frames (u32 big-endian length + bincode 2 payload), blocking and
//!   (feature `tokio`) async; decoders reject oversize or malformed frames with an error.
//! - [`agent`] and [`layer`]: the top-level messages of each link.
//! - [`file`](mod@file), [`dns`], [`outgoing`], [`incoming`]: operations shared by both links, so the daemon
//!   forwards most layer requests to the agent without translating them.
//! - [`flow`]: per-stream flow control (credit windows) and, with `tokio`, the stream queues
//!   that enforce it at both ends of the agent link.
//! - [`error`]: typed errors carried on the wire.
//! - [`session_env`]: names of the environment variables that hand a session to the debuggee.
//!
//! **Architecture invariant:** this crate does no IO but framing, and knows nothing of config files
//! or Kubernetes. Config types never go on the wire; the daemon converts them into the wire twins
//! here (for example [`layer::LayerPolicy`]).
//!
//! # Compatibility rules
//! Safe changes: append a variant at the end of an enum; add a new message kind guarded by a
//! `*_VERSION` constant that senders check against the negotiated version.
//! Breaking changes (never do these): reorder or remove variants, add or reorder fields of an
//! existing struct or variant, switch `T` to `Option<T>`. bincode encodes positionally, so any of
//! these silently corrupts what an older peer reads.

mod addr;
pub mod agent;
pub mod codec;
pub mod dns;
pub mod error;
pub mod file;
pub mod flow;
pub mod incoming;
pub mod layer;
pub mod outgoing;
mod payload;
pub mod session_env;

pub use codec::{CodecError, MAX_FRAME_LEN};
pub use error::{AgentError, RemoteError};
pub use payload::Payload;

/// The protocol version this build speaks. Both links negotiate `min(ours, theirs)`.
///
/// Changelog:
/// - 2: per-stream flow control ([`flow`], [`outgoing::StreamMessage::Credit`]) and
///   [`file::FileRequest::Symlink`]. A version 1 peer sends without credit and never returns
///   any, so it is refused, not talked down to.
/// - 1: first version.
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest peer version this build still talks to.
pub const MIN_PROTOCOL_VERSION: u32 = flow::CREDIT_VERSION;

/// Picks the version two peers speak, or `None` when they share none.
pub fn negotiate(ours: u32, theirs: u32) -> Option<u32> {
    let v = ours.min(theirs);
    (v >= MIN_PROTOCOL_VERSION).then_some(v)
}

/// Id of a request on one connection; responses echo it.
pub type RequestId = u64;

/// Id of a TCP/UDP stream multiplexed on a link. Outgoing streams are numbered by the daemon
/// (high bit clear), incoming ones by the agent (high bit set, see [`AGENT_CONN_ID_BIT`]), so a
/// [`outgoing::StreamMessage`] names its stream unambiguously in both directions.
pub type ConnId = u64;

/// Set in every [`ConnId`] the agent allocates (incoming connections); clear in the daemon's.
pub const AGENT_CONN_ID_BIT: ConnId = 1 << 63;

/// Whether a stream id was allocated by the agent (an incoming connection).
pub fn is_agent_conn_id(id: ConnId) -> bool {
    id & AGENT_CONN_ID_BIT != 0
}

/// Id of a remote file handle, scoped to one agent session.
pub type RemoteFd = u64;

#[cfg(test)]
mod roundtrip_tests;
