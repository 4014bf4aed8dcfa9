//! What the router reports about itself: processes connecting and going away, and traffic
//! counters. [`Session::subscribe`](super::Session::subscribe) hands out the stream; the daemon
//! forwards it to `session.events`.
//!
//! Counters are atomics bumped on the data path (no lock, no channel send per chunk); a sampler
//! task publishes a [`RouterEvent::Counters`] snapshot every [`SAMPLE_INTERVAL`] when they changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often changed counters are published.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Events a slow subscriber may fall behind by before it misses some.
pub(crate) const CHANNEL_CAPACITY: usize = 1024;

/// A process that connected through the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProcess {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// Its executable (`/proc/self/exe`).
    pub exe: String,
    /// Its arguments.
    pub argv: Vec<String>,
}

/// Why a process is no longer connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// It closed its last connection: it exited (or was killed).
    Closed,
    /// It announced an exec, but the new image never connected (not hooked, or it died first).
    ExecLost,
    /// Reading from it failed, or it broke the protocol; the router dropped the connection.
    Error(String),
}

/// One router event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// A process's first layer connection opened (also after an exec: same pid, new image).
    LayerConnected(LayerProcess),
    /// A process's last layer connection closed and the router released its remote state.
    LayerDisconnected {
        /// Its pid.
        pid: u32,
        /// Why.
        reason: DisconnectReason,
    },
    /// Counters since the session started, published when they changed.
    Counters(TrafficCounters),
    /// The agent link dropped and was re-established: requests in flight failed with EIO, open
    /// connections were closed, subscribed ports were subscribed again.
    AgentReconnected {
        /// Dial attempts it took.
        attempts: u32,
        /// Why the old transport dropped.
        cause: String,
        /// Ports subscribed again.
        resubscribed: Vec<u16>,
        /// Ports the agent refused this time (no longer delivered).
        lost: Vec<u16>,
    },
}

/// Counters since the session started. Bytes are payload bytes (no framing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    /// Outgoing connections: bytes from the debuggee to the remote peer.
    pub outgoing_bytes_up: u64,
    /// Outgoing connections: bytes from the remote peer to the debuggee.
    pub outgoing_bytes_down: u64,
    /// Outgoing TCP connections and UDP sockets opened in the target.
    pub outgoing_connections: u64,
    /// Incoming: bytes from the pod's clients to the debuggee (stolen or mirrored).
    pub incoming_bytes_in: u64,
    /// Incoming: bytes the debuggee answered (stolen traffic only; mirrored answers are dropped).
    pub incoming_bytes_out: u64,
    /// Incoming connections delivered to the debuggee.
    pub incoming_connections: u64,
    /// Incoming HTTP requests delivered by the HTTP filter.
    pub incoming_http_requests: u64,
    /// File requests forwarded to the target.
    pub file_requests: u64,
    /// DNS lookups forwarded to the target.
    pub dns_requests: u64,
    /// Relayed TCP connections open now (outgoing and incoming).
    pub open_connections: u64,
}

/// Bytes of one kind of relayed connection.
#[derive(Debug, Default)]
pub(crate) struct ByteMeter {
    /// From the local socket to the agent.
    pub(crate) up: AtomicU64,
    /// From the agent to the local socket.
    pub(crate) down: AtomicU64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Meters {
    pub(crate) outgoing: ByteMeter,
    pub(crate) incoming: ByteMeter,
    pub(crate) outgoing_connections: AtomicU64,
    pub(crate) incoming_connections: AtomicU64,
    pub(crate) incoming_http_requests: AtomicU64,
    pub(crate) file_requests: AtomicU64,
    pub(crate) dns_requests: AtomicU64,
    pub(crate) open_connections: AtomicU64,
}

/// Adds `n` (counters are only ever read as a snapshot, so relaxed is enough).
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Meters {
    pub(crate) fn snapshot(&self) -> TrafficCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TrafficCounters {
            outgoing_bytes_up: get(&self.outgoing.up),
            outgoing_bytes_down: get(&self.outgoing.down),
            outgoing_connections: get(&self.outgoing_connections),
            incoming_bytes_in: get(&self.incoming.down),
            incoming_bytes_out: get(&self.incoming.up),
            incoming_connections: get(&self.incoming_connections),
            incoming_http_requests: get(&self.incoming_http_requests),
            file_requests: get(&self.file_requests),
            dns_requests: get(&self.dns_requests),
            open_connections: get(&self.open_connections),
        }
    }
}

/// Counts a relayed connection as open until dropped.
pub(crate) struct OpenGuard<'a>(&'a AtomicU64);

impl<'a> OpenGuard<'a> {
    pub(crate) fn new(c: &'a AtomicU64) -> Self {
        add(c, 1);
        Self(c)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
