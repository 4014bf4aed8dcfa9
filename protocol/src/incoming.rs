//! Incoming traffic: the app listens on a port, the agent redirects that port in the target and
//! hands connections (mirror or steal) or single HTTP requests (filtered steal) to the session.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{ConnId, Payload};

/// Id of a stolen HTTP request; the response echoes it.
pub type HttpRequestId = u64;

/// What happens to the port's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum IncomingMode {
    /// The original server still answers; the session gets a copy of what clients send.
    Mirror,
    /// The session answers instead of the original server.
    Steal,
}

/// One HTTP request matcher. Patterns are regexes, matched as mirrord does: headers against
/// `Name: value` (case-insensitive), paths against the path or path+query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum HttpFilter {
    /// A header line `Name: value` matches the regex.
    Header(String),
    /// The path (or path and query) matches the regex.
    Path(String),
    /// The method matches exactly (case-insensitive).
    Method(String),
    /// Every inner filter matches.
    AllOf(#[cfg_attr(test, proptest(strategy = "leaf_filters()"))] Vec<HttpFilter>),
    /// At least one inner filter matches.
    AnyOf(#[cfg_attr(test, proptest(strategy = "leaf_filters()"))] Vec<HttpFilter>),
}

#[cfg(test)]
fn leaf_filters() -> impl proptest::strategy::Strategy<Value = Vec<HttpFilter>> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        any::<String>().prop_map(HttpFilter::Header),
        any::<String>().prop_map(HttpFilter::Path),
        any::<String>().prop_map(HttpFilter::Method),
    ];
    proptest::collection::vec(leaf, 0..4)
}

/// Subscribe to or release a port. Sent as requests; answered with [`IncomingResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum IncomingRequest {
    /// Start mirroring or stealing `port` in the target.
    Subscribe {
        /// Port in the target.
        port: u16,
        /// Mirror or steal.
        mode: IncomingMode,
        /// Steal only matching HTTP requests (steal mode only).
        filter: Option<HttpFilter>,
    },
    /// Stop.
    Unsubscribe {
        /// Port in the target.
        port: u16,
    },
}

/// The successful answer to an [`IncomingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum IncomingResponse {
    /// The port is subscribed.
    Subscribed {
        /// Port.
        port: u16,
    },
    /// The port is released.
    Unsubscribed {
        /// Port.
        port: u16,
    },
}

/// A header, as raw name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Header {
    /// Name as received.
    pub name: String,
    /// Value bytes.
    pub value: Payload,
}

/// HTTP version of a stolen request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum HttpVersion {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2.
    Http2,
}

/// A whole HTTP request that matched a steal filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HttpRequest {
    /// Echoed by the response.
    pub id: HttpRequestId,
    /// The subscribed port.
    pub port: u16,
    /// The client.
    #[serde(with = "crate::addr")]
    pub client: SocketAddr,
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Version the client spoke.
    pub version: HttpVersion,
    /// Headers in order.
    pub headers: Vec<Header>,
    /// Body, whole.
    pub body: Payload,
}

/// The session's answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct HttpResponse {
    /// The request answered.
    pub id: HttpRequestId,
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<Header>,
    /// Body, whole.
    pub body: Payload,
}

/// Agent -> daemon: traffic of subscribed ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum IncomingEvent {
    /// A client connected to a subscribed port. Its data follows as
    /// [`crate::outgoing::StreamMessage`]s with this `conn_id`. For a mirrored connection the
    /// session's replies are dropped.
    NewConnection {
        /// Id chosen by the agent.
        conn_id: ConnId,
        /// Port.
        port: u16,
        /// Mirror or steal.
        mode: IncomingMode,
        /// The client.
        #[serde(with = "crate::addr")]
        client: SocketAddr,
        /// The address the client connected to.
        #[serde(with = "crate::addr")]
        server: SocketAddr,
    },
    /// A request that matched the port's filter. Answer with [`HttpResponse`].
    Request(HttpRequest),
    /// The subscription ended on the agent's side (for example the target died).
    SubscriptionLost {
        /// Port.
        port: u16,
        /// Why.
        reason: String,
    },
}
