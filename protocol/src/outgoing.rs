//! Outgoing connections made from the target's network namespace on the app's behalf.
//!
//! The daemon numbers outgoing streams ([`ConnId`]); data flows as [`StreamMessage`]s in both
//! directions until either side sends [`StreamMessage::Close`]. TCP data is flow-controlled per
//! stream and direction ([`crate::flow`]).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{ConnId, Payload};

/// Open an outgoing stream. Sent as a request; answered with [`OutgoingResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum OutgoingRequest {
    /// TCP connect to `remote` from the target netns, as stream `conn_id`.
    ConnectTcp {
        /// Id chosen by the daemon.
        conn_id: ConnId,
        /// Destination as the app asked for it.
        #[serde(with = "crate::addr")]
        remote: SocketAddr,
    },
    /// A UDP socket in the target netns, as stream `conn_id`; datagrams travel as
    /// [`StreamMessage::Datagram`].
    OpenUdp {
        /// Id chosen by the daemon.
        conn_id: ConnId,
        /// Connect the socket to this peer, as the app's `connect` on a UDP socket does.
        #[serde(with = "crate::addr::option")]
        connect_to: Option<SocketAddr>,
    },
}

/// The successful answer to an [`OutgoingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum OutgoingResponse {
    /// The stream is open.
    Opened {
        /// The stream.
        conn_id: ConnId,
        /// The socket's own address inside the target (what `getsockname` would say there).
        #[serde(with = "crate::addr")]
        local: SocketAddr,
        /// The peer, when connected.
        #[serde(with = "crate::addr::option")]
        remote: Option<SocketAddr>,
    },
}

/// Data and lifecycle of a stream, both directions. Used for outgoing and incoming streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum StreamMessage {
    /// Bytes of a TCP stream.
    Data {
        /// The stream.
        conn_id: ConnId,
        /// Bytes.
        data: Payload,
    },
    /// A UDP datagram: to `peer` when sent by the daemon, from `peer` when sent by the agent.
    Datagram {
        /// The stream.
        conn_id: ConnId,
        /// The other end.
        #[serde(with = "crate::addr")]
        peer: SocketAddr,
        /// Bytes.
        data: Payload,
    },
    /// The sender will write no more (TCP half-close, `shutdown(SHUT_WR)`).
    Eof {
        /// The stream.
        conn_id: ConnId,
    },
    /// The stream is gone; the receiver drops its side.
    Close {
        /// The stream.
        conn_id: ConnId,
        /// Why, when it failed.
        error: Option<String>,
    },
    /// Window update (since [`crate::flow::CREDIT_VERSION`]): the sender of this message
    /// consumed `bytes` more of the stream's data, so the peer may send that many more. See
    /// [`crate::flow`].
    Credit {
        /// The stream.
        conn_id: ConnId,
        /// Bytes of credit returned.
        bytes: u64,
    },
}

impl StreamMessage {
    /// The stream this message belongs to.
    pub fn conn_id(&self) -> ConnId {
        match self {
            Self::Data { conn_id, .. }
            | Self::Datagram { conn_id, .. }
            | Self::Eof { conn_id }
            | Self::Close { conn_id, .. }
            | Self::Credit { conn_id, .. } => *conn_id,
        }
    }
}
