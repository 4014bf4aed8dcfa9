//! Incoming traffic: port subscriptions shared by all sessions of this agent.
//!
//! # Design (the seam between the session loop and this module)
//! - One [`Incoming`] per agent, created in `main` with the [`Target`] and the agent id, shared by
//!   every session through an `Arc`.
//! - The session loop calls [`Incoming::subscribe`] / [`Incoming::unsubscribe`] for
//!   `Request::Incoming(..)` and answers the request with `IncomingResponse::Subscribed` /
//!   `Unsubscribed` on `Ok`, or `AgentMessage::Failed` with the returned [`AgentError`].
//! - Traffic for a session goes out through the `to_session` sender given at subscribe time, as
//!   `AgentMessage::Incoming(IncomingEvent::..)` and `AgentMessage::Stream(..)` with conn ids that
//!   have [`tether_protocol::AGENT_CONN_ID_BIT`] set. The sender is bounded: awaiting it is the
//!   backpressure towards the session's link.
//! - The session loop forwards every `ClientMessage::Stream` whose conn id has the agent bit set
//!   to [`Incoming::from_session`], and every `ClientMessage::HttpResponse` to
//!   [`Incoming::http_response`].
//! - When a session ends (Goodbye, link closed or broken), the loop calls
//!   [`Incoming::release_session`], which must drop its subscriptions and connections.
//! - Rules in the target's netns: iptables nat REDIRECT in chains named after the agent id, made
//!   through the target's [`crate::netns::NetNs`]; a guard removes them even when the agent dies.
//!
//! This placeholder answers every subscription with an error until the real module lands.

#![allow(dead_code)]

use std::sync::Arc;

use tether_protocol::AgentError;
use tether_protocol::agent::AgentMessage;
use tether_protocol::incoming::{HttpFilter, HttpResponse, IncomingMode};
use tether_protocol::outgoing::StreamMessage;
use tokio::sync::mpsc;

use crate::session::SessionId;
use crate::target::Target;

/// Port subscriptions of all sessions.
#[derive(Debug)]
pub struct Incoming {
    target: Arc<Target>,
    agent_id: String,
}

impl Incoming {
    /// Sets up incoming traffic for `target`; `agent_id` names the agent's iptables chains.
    pub fn new(target: Arc<Target>, agent_id: String) -> Result<Self, AgentError> {
        Ok(Self { target, agent_id })
    }

    /// Starts mirroring or stealing `port` for `session`.
    pub async fn subscribe(
        &self,
        _session: SessionId,
        _port: u16,
        _mode: IncomingMode,
        _filter: Option<HttpFilter>,
        _to_session: mpsc::Sender<AgentMessage>,
    ) -> Result<(), AgentError> {
        Err(AgentError::Other("incoming traffic not built yet".into()))
    }

    /// Stops `session`'s subscription of `port`.
    pub async fn unsubscribe(&self, _session: SessionId, _port: u16) -> Result<(), AgentError> {
        Err(AgentError::Other("incoming traffic not built yet".into()))
    }

    /// Data or lifecycle from the session for an incoming (agent-numbered) stream.
    #[allow(clippy::wrong_self_convention)] // "from the session", not a conversion
    pub async fn from_session(&self, _session: SessionId, _msg: StreamMessage) {}

    /// The session's answer to a stolen HTTP request.
    pub async fn http_response(&self, _session: SessionId, _resp: HttpResponse) {}

    /// Drops everything `session` had.
    pub async fn release_session(&self, _session: SessionId) {}
}
