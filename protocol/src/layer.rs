//! The layer <-> daemon link.
//!
//! Each layer connection is a blocking request/response channel: the layer sends
//! [`LayerMessage::Hello`], gets [`DaemonMessage::Hello`] (with the policy it applies locally), and
//! then sends one [`LayerMessage::Request`] at a time and reads its [`DaemonMessage::Response`]. A
//! multi-threaded process opens several connections (a small pool) instead of multiplexing one,
//! so no reader thread has to live inside the debuggee.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::RequestId;
use crate::dns::{DnsRequest, DnsResponse};
use crate::error::RemoteError;
use crate::file::{FileRequest, FileResponse};
use crate::incoming::{HttpFilter, IncomingMode};

/// Who is connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LayerHello {
    /// The highest protocol version the layer speaks.
    pub protocol_version: u32,
    /// The session token from the environment.
    pub token: String,
    /// The process.
    pub pid: u32,
    /// Its parent.
    pub ppid: u32,
    /// `/proc/self/exe`.
    pub exe: String,
    /// Arguments.
    pub argv: Vec<String>,
}

/// What the layer does with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FsAction {
    /// Use the local file system.
    Local,
    /// Read from the target; opening for write fails with `EROFS`.
    RemoteReadOnly,
    /// Read and write in the target.
    RemoteReadWrite,
    /// Pretend the path does not exist (`ENOENT`).
    NotFound,
}

/// One path rule: the first rule whose regex matches decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FsRule {
    /// Regex over the absolute path.
    pub pattern: String,
    /// What to do.
    pub action: FsAction,
}

/// Which side a network destination goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Side {
    /// The user's machine.
    Local,
    /// The target.
    Remote,
}

/// Filter items for outgoing traffic and DNS, in mirrord's `[proto://][host|ip|cidr][:port]` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct NetFilter {
    /// Where matching destinations go; non-matching ones go to the other side.
    pub matching: Side,
    /// Items.
    pub items: Vec<String>,
}

/// The session policy the layer applies locally, so local calls never cost a round trip.
/// Computed by the daemon from the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LayerPolicy {
    /// Path rules, config rules first, then tether's defaults.
    pub fs_rules: Vec<FsRule>,
    /// What happens to a path no rule matches.
    pub fs_default: FsAction,
    /// Route outgoing TCP through the target.
    pub outgoing_tcp: bool,
    /// Route outgoing UDP through the target.
    pub outgoing_udp: bool,
    /// Outgoing filter, if any.
    pub outgoing_filter: Option<NetFilter>,
    /// Resolve names in the target.
    pub dns: bool,
    /// DNS filter, if any.
    pub dns_filter: Option<NetFilter>,
    /// Mirror, steal, or nothing for listening ports.
    pub incoming: Option<IncomingMode>,
    /// Only steal requests matching this filter.
    pub http_filter: Option<HttpFilter>,
    /// Ports that are never subscribed (debugger ports, `ignore_ports`).
    pub ignore_ports: Vec<u16>,
    /// Only these ports are subscribed, when not empty.
    pub only_ports: Vec<u16>,
    /// `(local, remote)` port pairs: listening on `local` subscribes `remote`.
    pub port_mapping: Vec<(u16, u16)>,
    /// The hostname `gethostname` reports, when the hostname feature is on.
    pub hostname: Option<String>,
    /// Process names (basename of argv\[0\] or exe) that run unhooked.
    pub skip_processes: Vec<String>,
}

/// The daemon's answer to a good hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DaemonHello {
    /// The version both sides speak.
    pub protocol_version: u32,
    /// The policy.
    pub policy: LayerPolicy,
}

/// A layer request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LayerRequest {
    /// A file operation, forwarded to the agent.
    File(FileRequest),
    /// Name resolution, forwarded to the agent.
    Dns(DnsRequest),
    /// Open a TCP connection to `remote` from the target. The daemon answers with
    /// [`LayerResponse::Intercepted`]: a local address the app's own socket connects to instead,
    /// behind which the daemon relays to the agent's stream.
    ConnectTcp {
        /// Destination as the app asked for it.
        #[serde(with = "crate::addr")]
        remote: SocketAddr,
    },
    /// Relay a UDP socket through the target: answered with [`LayerResponse::Intercepted`], a local
    /// UDP address the app's socket sends to; the daemon forwards to `remote`.
    ConnectUdp {
        /// Destination.
        #[serde(with = "crate::addr")]
        remote: SocketAddr,
    },
    /// The app listens on `local`; subscribe `remote_port` in the target. Answered with
    /// [`LayerResponse::Done`].
    Listen {
        /// The app's real listening address, where the daemon delivers connections.
        #[serde(with = "crate::addr")]
        local: SocketAddr,
        /// Port in the target.
        remote_port: u16,
    },
    /// The app closed its listener.
    Unlisten {
        /// The app's listening address.
        #[serde(with = "crate::addr")]
        local: SocketAddr,
    },
    /// The process is about to exec; lets the daemon keep the session alive across it.
    Exec {
        /// Path being executed.
        path: String,
    },
}

/// A successful answer to a [`LayerRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LayerResponse {
    /// File.
    File(FileResponse),
    /// DNS.
    Dns(DnsResponse),
    /// Connect the app's socket here instead.
    Intercepted {
        /// Local interceptor address.
        #[serde(with = "crate::addr")]
        interceptor: SocketAddr,
        /// The connection's address inside the target (`getsockname` there).
        #[serde(with = "crate::addr")]
        remote_local: SocketAddr,
    },
    /// Success without data.
    Done,
}

/// Layer -> daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LayerMessage {
    /// Must be first.
    Hello(LayerHello),
    /// A request.
    Request {
        /// Id, unique on this connection.
        id: RequestId,
        /// What to do.
        body: LayerRequest,
    },
}

/// Daemon -> layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DaemonMessage {
    /// Answer to a good hello.
    Hello(DaemonHello),
    /// Answer to a bad hello, with the reason; the daemon closes the connection after it.
    Refused(String),
    /// Answer to a request.
    Response {
        /// The request's id.
        id: RequestId,
        /// Result: an errno-carrying error for the hooked call to return.
        result: Result<LayerResponse, RemoteError>,
    },
}
