//! The daemon <-> agent link.
//!
//! The daemon opens one TCP connection per session and sends [`ClientMessage::Hello`] first; the
//! agent answers [`AgentMessage::Hello`] or [`AgentMessage::Refused`] and closes. After that,
//! requests carry ids and are answered by [`AgentMessage::Response`] in any order; streams and
//! incoming events flow independently of requests.

use serde::{Deserialize, Serialize};

use crate::RequestId;
use crate::dns::{DnsRequest, DnsResponse};
use crate::error::{AgentError, RemoteError};
use crate::file::{FileRequest, FileResponse};
use crate::incoming::{HttpResponse, IncomingEvent, IncomingRequest, IncomingResponse};
use crate::outgoing::{OutgoingRequest, OutgoingResponse, StreamMessage};

/// The first message of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClientHello {
    /// The highest protocol version the client speaks.
    pub protocol_version: u32,
    /// The session token the agent was started with.
    pub token: String,
    /// Client name and version, for logs (`tether 0.1.0`).
    pub client: String,
    /// Session id, for logs.
    pub session_id: String,
}

/// What the agent knows about its target, sent once after a successful hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TargetInfo {
    /// The target process as the agent sees it.
    pub pid: u32,
    /// The pod's hostname (from its UTS namespace).
    pub hostname: String,
}

/// The agent's answer to a good hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AgentHello {
    /// The version both sides now speak.
    pub protocol_version: u32,
    /// Agent name and version, for logs.
    pub agent: String,
    /// The target.
    pub target: TargetInfo,
}

/// A request from the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// The target's environment. Answered with [`Response::Env`].
    Env,
    /// A file operation.
    File(FileRequest),
    /// Name resolution.
    Dns(DnsRequest),
    /// Open an outgoing stream.
    Outgoing(OutgoingRequest),
    /// Subscribe or release an incoming port.
    Incoming(IncomingRequest),
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Response {
    /// The target's environment, in its order.
    Env(Vec<(String, String)>),
    /// File.
    File(FileResponse),
    /// DNS.
    Dns(DnsResponse),
    /// Outgoing.
    Outgoing(OutgoingResponse),
    /// Incoming.
    Incoming(IncomingResponse),
}

/// Daemon -> agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ClientMessage {
    /// Must be first.
    Hello(ClientHello),
    /// A request; answered by [`AgentMessage::Response`] with the same id.
    Request {
        /// Id, unique on this connection.
        id: RequestId,
        /// What to do.
        body: Request,
    },
    /// Data or lifecycle of a stream (outgoing, or the session's side of a stolen connection).
    Stream(StreamMessage),
    /// The session's answer to a stolen HTTP request.
    HttpResponse(HttpResponse),
    /// Liveness probe; answered by [`AgentMessage::Pong`].
    Ping(u64),
    /// The session ends; the agent releases its ports and files.
    Goodbye,
}

/// Agent -> daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum AgentMessage {
    /// Answer to a good hello.
    Hello(AgentHello),
    /// Answer to a bad hello; the agent closes the connection after it.
    Refused(AgentError),
    /// The answer to [`ClientMessage::Request`].
    Response {
        /// The request's id.
        id: RequestId,
        /// Result.
        result: Result<Response, RemoteError>,
    },
    /// A request failed at the agent level (not an errno): port already stolen, missing
    /// capability, target gone.
    Failed {
        /// The request's id.
        id: RequestId,
        /// Why.
        error: AgentError,
    },
    /// Data or lifecycle of a stream.
    Stream(StreamMessage),
    /// Traffic of a subscribed port.
    Incoming(IncomingEvent),
    /// Answer to [`ClientMessage::Ping`].
    Pong(u64),
    /// Something the user should see, not tied to a request (for example a rule cleanup that
    /// failed).
    Warning(String),
}
