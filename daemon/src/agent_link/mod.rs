//! The daemon's client of the agent protocol: one connection to one agent, shared by every task of
//! a session.
//!
//! ```text
//! callers --ClientMessage--> writer task --frames--> agent
//! agent --frames--> reader task --Response--> pending request (by id)
//!                               --StreamMessage--> stream inbox (by conn_id), never waits
//!                               --IncomingEvent--> event receiver (one per link)
//! ```
//!
//! **Flow control:** every TCP stream has a credit window per direction
//! ([`tether_protocol::flow`]). The reader puts a stream's data into its inbox without waiting
//! (the window bounds it) and hands the agent's credit to the stream's sender, so a local socket
//! that does not drain its stream (a debuggee paused at a breakpoint) stalls that stream only,
//! never the link. An agent that sends past a window gets that stream closed, not the link.
//!
//! Request ids are allocated here, so callers (the session router) never put their own ids on the
//! wire. Outgoing stream ids are allocated here too, with [`AGENT_CONN_ID_BIT`] clear; incoming
//! ones come from the agent with the bit set and are registered the moment their
//! `NewConnection` event is read, so no data that follows it can be lost.
//!
//! **Invariant:** once the link is down (read or write error, the agent's close, a missed pong),
//! every pending request fails at once, every stream receiver ends, and new requests fail without
//! waiting. Nothing that waits on the agent hangs after it died.
//!
//! **Reconnect:** with a [`Redial`] set ([`AgentClient::set_redial`]), a dropped transport is not
//! the end: requests in flight fail and open streams end as above, but the link then dials a new
//! transport, says hello again with the same token and carries on under the same handle and event
//! channel ([`AgentEvent::Reconnected`] tells the router to re-subscribe its ports). Requests made
//! while it redials wait for the outcome. Only when every attempt failed is the link down for good
//! ([`AgentClient::closed`] resolves).

mod error;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tether_protocol::agent::{
    AgentHello, AgentMessage, ClientHello, ClientMessage, Request, Response,
};
use tether_protocol::codec::FrameCodec;
use tether_protocol::flow::{self, StreamCredit, StreamInbox, StreamTx};
use tether_protocol::incoming::{HttpRequest, IncomingEvent, IncomingMode};
use tether_protocol::outgoing::StreamMessage;
use tether_protocol::{AGENT_CONN_ID_BIT, ConnId, PROTOCOL_VERSION, RequestId, is_agent_conn_id};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, FramedWrite};

pub use self::error::{ConnectError, LinkDown, RequestError};

/// Tuning of one agent link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// How long connecting and the hello may take.
    pub connect_timeout: Duration,
    /// How often to ping the agent.
    pub ping_interval: Duration,
    /// The link is declared dead when nothing arrived from the agent for this long.
    pub dead_after: Duration,
    /// Session id sent in the hello, for the agent's logs.
    pub session_id: String,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(15),
            session_id: String::new(),
        }
    }
}

/// One side of a transport to the agent.
pub type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
/// The other side.
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// A fresh transport to the same agent (a new port-forward, a new TCP connection).
pub struct Transport {
    /// Agent to daemon.
    pub reader: BoxRead,
    /// Daemon to agent.
    pub writer: BoxWrite,
    /// Names the agent in errors.
    pub peer: String,
}

/// Opens a new transport to the agent after the old one dropped.
pub type DialFn = dyn Fn() -> BoxFuture<'static, Result<Transport, DialError>> + Send + Sync;

/// Why one redial attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// This attempt failed; the link tries again while attempts remain.
    #[error("{0}")]
    Failed(String),
    /// The agent is gone (its pod deleted or finished): no point in trying again.
    #[error("{0}")]
    AgentGone(String),
}

/// How a link re-establishes a dropped transport.
#[derive(Clone)]
pub struct Redial {
    /// Opens the transport.
    pub dial: Arc<DialFn>,
    /// Attempts before the link is declared down.
    pub attempts: u32,
    /// Wait before the first attempt; doubles after each failure up to `max_backoff`.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Redial {
    /// `dial` with the default schedule: 6 attempts, 200 ms doubling up to 5 s (about 12 s).
    pub fn new(dial: Arc<DialFn>) -> Self {
        Self {
            dial,
            attempts: 6,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for Redial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redial")
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// Messages queued for the writer task. Bounded: a caller that outpaces the agent link waits.
const WRITE_QUEUE: usize = 256;
/// Incoming events waiting for the session router.
const EVENT_QUEUE: usize = 1024;

/// Something the agent sent that is not the answer to a request.
#[derive(Debug)]
pub enum AgentEvent {
    /// A client connected to a subscribed port; its data arrives on `stream`.
    Connection {
        /// The port in the target.
        port: u16,
        /// Mirror or steal.
        mode: IncomingMode,
        /// The client.
        client: SocketAddr,
        /// The address the client connected to.
        server: SocketAddr,
        /// The connection's stream (id allocated by the agent).
        stream: StreamRx,
    },
    /// A filtered HTTP request to answer with [`ClientMessage::HttpResponse`].
    HttpRequest(HttpRequest),
    /// The agent dropped a subscription.
    SubscriptionLost {
        /// The port.
        port: u16,
        /// Why.
        reason: String,
    },
    /// A message for the user.
    Warning(String),
    /// The transport dropped; a new one is dialled once `handled` is dropped (or after a second),
    /// so the consumer can forget per-connection state before anything new is asked.
    Dropped {
        /// Why.
        cause: LinkDown,
        /// Drop it when done.
        handled: oneshot::Sender<()>,
    },
    /// The transport dropped and a new one is up: requests in flight then failed, open streams
    /// ended, and the agent forgot this client's subscriptions (re-subscribe them).
    Reconnected {
        /// Dial attempts it took.
        attempts: u32,
        /// Why the old transport dropped.
        cause: LinkDown,
    },
}

type Pending = oneshot::Sender<Result<Response, RequestError>>;

struct State {
    /// `Some` once the link is down for good; then nothing is added to the maps.
    down: Option<LinkDown>,
    /// The transport now; replaced on reconnect.
    current: Arc<Generation>,
    /// The transport dropped and a new one is being dialled.
    reconnecting: bool,
    pending: HashMap<RequestId, Pending>,
    /// What the agent sends on each stream goes here; dropping one ends that stream.
    streams: HashMap<ConnId, StreamTx>,
}

/// One transport's tasks: its write queue and the switch that stops them.
struct Generation {
    id: u64,
    tx: mpsc::Sender<ClientMessage>,
    /// Flips to `true` once when this transport is finished.
    dead: watch::Sender<bool>,
}

impl Generation {
    fn kill(&self) {
        self.dead.send_replace(true);
    }
}

struct Inner {
    hello: AgentHello,
    state: Mutex<State>,
    next_request: AtomicU64,
    next_conn: AtomicU64,
    /// Flips to `true` once when the link goes down for good.
    down_tx: watch::Sender<bool>,
    /// Bumped when a reconnect ends (either way), to wake requests waiting for it.
    settled: watch::Sender<u64>,
    /// We said goodbye: the agent closing the connection now is expected.
    closing: std::sync::atomic::AtomicBool,
    /// The one event channel of the link, across transports.
    events: mpsc::Sender<AgentEvent>,
    token: String,
    opts: LinkOptions,
    redial: Mutex<Option<Redial>>,
}

/// A handle to one agent link. Cheap to clone; the link lives until [`AgentClient::shutdown`] or
/// until the agent side goes away.
#[derive(Clone)]
pub struct AgentClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("agent", &self.inner.hello.agent)
            .field("down", &self.down_reason())
            .finish()
    }
}

/// The local end of one stream: what the agent sends on it, and the credit to send to it.
/// Dropping it unregisters the stream; later messages for it from the agent are discarded.
#[derive(Debug)]
pub struct StreamRx {
    conn_id: ConnId,
    /// The transport it belongs to: ids are reused on a new one.
    generation: u64,
    inbox: StreamInbox,
    credit: StreamCredit,
    link: Weak<Inner>,
}

impl StreamRx {
    /// The stream's id.
    pub fn conn_id(&self) -> ConnId {
        self.conn_id
    }

    /// The next message, or `None` when the link went down (treat as a reset). Never yields
    /// [`StreamMessage::Credit`]: the link hands that to [`StreamRx::credit`].
    pub async fn recv(&mut self) -> Option<StreamMessage> {
        self.inbox.recv().await
    }

    /// `n` bytes of Data from [`StreamRx::recv`] reached the local socket (or were dropped on
    /// purpose). Returns the credit message to send to the agent when one is due.
    pub fn consumed(&self, n: usize) -> Option<ClientMessage> {
        self.inbox.consumed(n).map(ClientMessage::Stream)
    }

    /// The credit the agent returned for this stream: send Data only within it.
    pub fn credit(&self) -> StreamCredit {
        self.credit.clone()
    }
}

impl Drop for StreamRx {
    fn drop(&mut self) {
        if let Some(inner) = self.link.upgrade() {
            let mut st = inner.lock();
            if st.current.id == self.generation {
                st.streams.remove(&self.conn_id);
            }
        }
    }
}

impl Drop for Inner {
    // The last handle is gone: stop the transport's tasks (they hold its write queue open).
    fn drop(&mut self) {
        self.lock().current.kill();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain maps behind; keep using them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the link down for good and fails everything waiting on it. Idempotent.
    fn go_down(&self, why: LinkDown) {
        let (pending, streams, current) = {
            let mut st = self.lock();
            if st.down.is_some() {
                return;
            }
            if self.closing.load(Ordering::Relaxed) {
                tracing::debug!("agent link closed: {why}");
            } else {
                tracing::warn!("agent link down: {why}");
            }
            st.down = Some(why.clone());
            st.reconnecting = false;
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.streams),
                st.current.clone(),
            )
        };
        for (_, tx) in pending {
            let _ = tx.send(Err(RequestError::LinkDown(why.clone())));
        }
        drop(streams);
        current.kill();
        self.down_tx.send_replace(true);
        self.settled.send_modify(|n| *n += 1);
    }

    /// Transport `generation` failed: redial if a [`Redial`] is set, else go down for good.
    fn transport_lost(self: &Arc<Self>, generation: u64, why: LinkDown) {
        let redial = self
            .redial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(redial) = redial.filter(|_| !self.closing.load(Ordering::Relaxed)) else {
            return self.go_down(why);
        };
        let (pending, streams, current) = {
            let mut st = self.lock();
            if st.down.is_some() || st.reconnecting || st.current.id != generation {
                return;
            }
            tracing::warn!("agent link dropped: {why}; reconnecting");
            st.reconnecting = true;
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.streams),
                st.current.clone(),
            )
        };
        current.kill();
        // What was in flight may or may not have happened in the target: the caller sees EIO.
        for (_, tx) in pending {
            let _ = tx.send(Err(RequestError::LinkDown(why.clone())));
        }
        drop(streams);
        tokio::spawn(reconnect(Arc::downgrade(self), redial, why));
    }
}

/// Dials new transports until one says hello, then swaps it in; gives up after the attempts.
async fn reconnect(inner: Weak<Inner>, redial: Redial, cause: LinkDown) {
    let events = match inner.upgrade() {
        Some(i) => i.events.clone(),
        None => return,
    };
    let (handled, done) = oneshot::channel();
    let dropped = AgentEvent::Dropped {
        cause: cause.clone(),
        handled,
    };
    if events.try_send(dropped).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
    }
    drop(events);
    let mut wait = redial.backoff;
    let mut last = String::new();
    for attempt in 1..=redial.attempts.max(1) {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(redial.max_backoff);
        let Some(i) = inner.upgrade() else { return };
        if i.lock().down.is_some() {
            return;
        }
        let (token, opts) = (i.token.clone(), i.opts.clone());
        drop(i);
        let dialled = tokio::time::timeout(opts.connect_timeout, (redial.dial)()).await;
        let t = match dialled {
            Ok(Ok(t)) => t,
            Ok(Err(DialError::AgentGone(e))) => {
                last = e;
                break;
            }
            Ok(Err(DialError::Failed(e))) => {
                tracing::debug!(attempt, "redialling the agent failed: {e}");
                last = e;
                continue;
            }
            Err(_) => {
                last = format!("dialling took over {} s", opts.connect_timeout.as_secs());
                continue;
            }
        };
        let (reader, writer) =
            match hello_exchange(t.reader, t.writer, &t.peer, &token, &opts).await {
                Ok((_, r, w)) => (r, w),
                Err(e) => {
                    last = e.to_string();
                    tracing::debug!(attempt, "hello after redialling failed: {e}");
                    continue;
                }
            };
        let Some(i) = inner.upgrade() else { return };
        {
            let mut st = i.lock();
            if st.down.is_some() {
                return;
            }
            let generation = st.current.id + 1;
            st.current = start_tasks(&i, generation, reader, writer);
            st.reconnecting = false;
        }
        tracing::info!(attempt, "agent link re-established after: {cause}");
        i.settled.send_modify(|n| *n += 1);
        let events = i.events.clone();
        drop(i);
        let _ = events
            .send(AgentEvent::Reconnected {
                attempts: attempt,
                cause,
            })
            .await;
        return;
    }
    if let Some(i) = inner.upgrade() {
        i.go_down(LinkDown::new(format!(
            "{cause}; re-establishing the link failed: {last}"
        )));
    }
}

/// Spawns one transport's reader, writer and pinger.
fn start_tasks<R, W>(
    inner: &Arc<Inner>,
    id: u64,
    reader: FramedRead<R, FrameCodec<ClientMessage, AgentMessage>>,
    writer: FramedWrite<W, FrameCodec<ClientMessage, AgentMessage>>,
) -> Arc<Generation>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let generation = Arc::new(Generation {
        id,
        tx,
        dead: watch::channel(false).0,
    });
    let live = Arc::new(Liveness {
        last_rx: Mutex::new(Instant::now()),
        blocked: false.into(),
    });
    let weak = Arc::downgrade(inner);
    tokio::spawn(write_loop(
        writer,
        rx,
        weak.clone(),
        generation.clone(),
        live.clone(),
    ));
    tokio::spawn(read_loop(
        reader,
        weak.clone(),
        generation.clone(),
        inner.events.clone(),
        live.clone(),
    ));
    tokio::spawn(ping_loop(
        weak,
        generation.clone(),
        live,
        inner.opts.clone(),
    ));
    generation
}

/// Sends the hello and reads the agent's.
async fn hello_exchange<R, W>(
    r: R,
    w: W,
    peer: &str,
    token: &str,
    opts: &LinkOptions,
) -> Result<
    (
        AgentHello,
        FramedRead<R, FrameCodec<ClientMessage, AgentMessage>>,
        FramedWrite<W, FrameCodec<ClientMessage, AgentMessage>>,
    ),
    ConnectError,
>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FramedRead::with_capacity(
        r,
        FrameCodec::<ClientMessage, AgentMessage>::new(),
        256 * 1024,
    );
    let mut writer = FramedWrite::new(w, FrameCodec::<ClientMessage, AgentMessage>::new());
    let hello = ClientHello {
        protocol_version: PROTOCOL_VERSION,
        token: token.to_owned(),
        client: format!("tether {}", env!("CARGO_PKG_VERSION")),
        session_id: opts.session_id.clone(),
    };
    let exchange = async {
        writer
            .send(ClientMessage::Hello(hello))
            .await
            .map_err(|e| ConnectError::Handshake {
                addr: peer.to_owned(),
                detail: format!("sending hello: {e}"),
            })?;
        match reader.next().await {
            Some(Ok(AgentMessage::Hello(h))) => Ok(h),
            Some(Ok(AgentMessage::Refused(e))) => Err(ConnectError::Refused {
                addr: peer.to_owned(),
                error: e,
            }),
            Some(Ok(other)) => Err(ConnectError::Handshake {
                addr: peer.to_owned(),
                detail: format!("expected a hello, got {}", message_kind(&other)),
            }),
            Some(Err(e)) => Err(ConnectError::Handshake {
                addr: peer.to_owned(),
                detail: e.to_string(),
            }),
            None => Err(ConnectError::Handshake {
                addr: peer.to_owned(),
                detail: "the agent closed the connection during the hello".into(),
            }),
        }
    };
    let agent_hello = tokio::time::timeout(opts.connect_timeout, exchange)
        .await
        .map_err(|_| ConnectError::Timeout {
            addr: peer.to_owned(),
            after: opts.connect_timeout,
        })??;
    if tether_protocol::negotiate(PROTOCOL_VERSION, agent_hello.protocol_version).is_none()
        || agent_hello.protocol_version > PROTOCOL_VERSION
    {
        return Err(ConnectError::VersionMismatch {
            addr: peer.to_owned(),
            agent: agent_hello.protocol_version,
            client: PROTOCOL_VERSION,
        });
    }
    Ok((agent_hello, reader, writer))
}

impl AgentClient {
    /// Connects to an agent over TCP and says hello.
    pub async fn connect(
        addr: &str,
        token: &str,
        opts: LinkOptions,
    ) -> Result<(Self, mpsc::Receiver<AgentEvent>), ConnectError> {
        let stream = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr: addr.to_owned(),
                after: opts.connect_timeout,
            })?
            .map_err(|cause| ConnectError::Unreachable {
                addr: addr.to_owned(),
                cause,
            })?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Self::handshake(r, w, addr, token, opts).await
    }

    /// Says hello over an already open connection (TCP, a port-forward, an in-memory pipe in
    /// tests) and starts the link's tasks. `peer` names the agent in errors.
    pub async fn handshake<R, W>(
        r: R,
        w: W,
        peer: &str,
        token: &str,
        opts: LinkOptions,
    ) -> Result<(Self, mpsc::Receiver<AgentEvent>), ConnectError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (agent_hello, reader, writer) = hello_exchange(r, w, peer, token, &opts).await?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let placeholder = Arc::new(Generation {
            id: 0,
            tx: mpsc::channel(1).0,
            dead: watch::channel(true).0,
        });
        let inner = Arc::new(Inner {
            hello: agent_hello,
            state: Mutex::new(State {
                down: None,
                current: placeholder,
                reconnecting: false,
                pending: HashMap::new(),
                streams: HashMap::new(),
            }),
            next_request: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            down_tx: watch::channel(false).0,
            settled: watch::channel(0).0,
            closing: false.into(),
            events: events_tx,
            token: token.to_owned(),
            opts,
            redial: Mutex::new(None),
        });
        // Under the lock: a transport failing at once must find itself current.
        {
            let mut st = inner.lock();
            st.current = start_tasks(&inner, 1, reader, writer);
        }
        Ok((Self { inner }, events_rx))
    }

    /// From now on, re-establish a dropped transport with `redial` instead of going down.
    pub fn set_redial(&self, redial: Redial) {
        *self.inner.redial.lock().unwrap_or_else(|p| p.into_inner()) = Some(redial);
    }

    /// The agent's hello: its version and the target.
    pub fn hello(&self) -> &AgentHello {
        &self.inner.hello
    }

    /// Why the link is down for good, or `None` while it is up or reconnecting.
    pub fn down_reason(&self) -> Option<LinkDown> {
        self.inner.lock().down.clone()
    }

    /// Resolves once the link is down for good (not when a transport drops and is redialled).
    pub async fn closed(&self) {
        let mut rx = self.inner.down_tx.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }

    /// Sends a request and waits for its answer. Many requests may be in flight at once; answers
    /// come back in any order.
    pub async fn request(&self, body: Request) -> Result<Response, RequestError> {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut settled = self.inner.settled.subscribe();
        loop {
            {
                let mut st = self.inner.lock();
                if let Some(why) = &st.down {
                    return Err(RequestError::LinkDown(why.clone()));
                }
                if !st.reconnecting {
                    st.pending.insert(id, tx);
                    break;
                }
            }
            // A redial is under way: wait for its outcome (bounded by its attempts).
            if settled.changed().await.is_err() {
                return Err(RequestError::LinkDown(LinkDown::new("agent link closed")));
            }
        }
        if let Err(why) = self.send(ClientMessage::Request { id, body }).await {
            self.inner.lock().pending.remove(&id);
            return Err(RequestError::LinkDown(why));
        }
        match rx.await {
            Ok(result) => result,
            // The sender is only dropped without a value if the link task itself vanished.
            Err(_) => Err(RequestError::LinkDown(
                self.down_reason()
                    .unwrap_or_else(|| LinkDown::new("agent link closed")),
            )),
        }
    }

    /// Queues one message for the agent (stream data, an HTTP response, ...). Waits while the
    /// write queue is full.
    pub async fn send(&self, msg: ClientMessage) -> Result<(), LinkDown> {
        let current = {
            let st = self.inner.lock();
            if let Some(why) = &st.down {
                return Err(why.clone());
            }
            if st.reconnecting {
                return Err(LinkDown::new("agent link dropped, reconnecting"));
            }
            st.current.clone()
        };
        let closed = || {
            self.down_reason()
                .unwrap_or_else(|| LinkDown::new("agent link dropped"))
        };
        // Fast path: room in the queue.
        let msg = match current.tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
            Err(mpsc::error::TrySendError::Full(m)) => m,
        };
        // A writer stuck on a dead connection never drains the queue: give up when the link is
        // declared down (by the ping loop) rather than wait forever.
        let mut down = current.dead.subscribe();
        tokio::select! {
            r = current.tx.send(msg) => r.map_err(|_| closed()),
            _ = down.wait_for(|d| *d) => Err(closed()),
        }
    }

    /// Allocates an outgoing stream id (high bit clear) and registers its receiver. Register
    /// before asking the agent to open it, so no early data is lost.
    pub fn open_stream(&self) -> Result<StreamRx, LinkDown> {
        let conn_id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed) & !AGENT_CONN_ID_BIT;
        register_stream(&self.inner, conn_id)
    }

    /// Ends the session politely: says goodbye, then closes the link.
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Relaxed);
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.send(ClientMessage::Goodbye)).await;
        // Give the writer a moment to flush the goodbye before tearing the link down.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.inner.go_down(LinkDown::new("session ended"));
    }
}

fn register_stream(inner: &Arc<Inner>, conn_id: ConnId) -> Result<StreamRx, LinkDown> {
    let (tx, inbox, credit) = flow::stream(conn_id);
    let mut st = inner.lock();
    if let Some(why) = &st.down {
        return Err(why.clone());
    }
    if st.reconnecting {
        return Err(LinkDown::new("agent link dropped, reconnecting"));
    }
    st.streams.insert(conn_id, tx);
    Ok(StreamRx {
        conn_id,
        generation: st.current.id,
        inbox,
        credit,
        link: Arc::downgrade(inner),
    })
}

fn message_kind(m: &AgentMessage) -> &'static str {
    match m {
        AgentMessage::Hello(_) => "Hello",
        AgentMessage::Refused(_) => "Refused",
        AgentMessage::Response { .. } => "Response",
        AgentMessage::Failed { .. } => "Failed",
        AgentMessage::Stream(_) => "Stream",
        AgentMessage::Incoming(_) => "Incoming",
        AgentMessage::Pong(_) => "Pong",
        AgentMessage::Warning(_) => "Warning",
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FramedWrite<W, FrameCodec<ClientMessage, AgentMessage>>,
    mut rx: mpsc::Receiver<ClientMessage>,
    inner: Weak<Inner>,
    generation: Arc<Generation>,
    live: Arc<Liveness>,
) {
    let mut down_rx = generation.dead.subscribe();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = down_rx.wait_for(|d| *d) => None,
        };
        let Some(msg) = msg else { break };
        let write = async {
            // Batch whatever is already queued into one flush: fewer syscalls under load.
            writer.feed(msg).await?;
            while writer.write_buffer().len() < 1024 * 1024 {
                match rx.try_recv() {
                    Ok(m) => writer.feed(m).await?,
                    Err(_) => break,
                }
            }
            let batch = writer.write_buffer().len();
            writer.flush().await.map(|()| batch)
        };
        // A dead peer can block a flush forever: the ping loop's verdict cancels it.
        let res = tokio::select! {
            r = write => r,
            _ = down_rx.wait_for(|d| *d) => return,
        };
        match res {
            // The agent's TCP stack keeps taking bulk data: it is alive even if it has nothing to
            // say (a long upload). Small writes prove nothing: a dead peer's kernel buffer takes
            // pings for ever.
            Ok(batch) if batch >= 64 * 1024 => live.touch(),
            Ok(_) => {}
            Err(e) => {
                if let Some(i) = inner.upgrade() {
                    i.transport_lost(
                        generation.id,
                        LinkDown::new(format!("writing to the agent failed: {e}")),
                    );
                }
                return;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.close()).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FramedRead<R, FrameCodec<ClientMessage, AgentMessage>>,
    inner: Weak<Inner>,
    generation: Arc<Generation>,
    events: mpsc::Sender<AgentEvent>,
    live: Arc<Liveness>,
) {
    let mut down_rx = generation.dead.subscribe();
    let why = loop {
        let next = tokio::select! {
            n = reader.next() => n,
            _ = down_rx.wait_for(|d| *d) => return,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => break LinkDown::new(format!("reading from the agent failed: {e}")),
            None => break LinkDown::new("the agent closed the connection"),
        };
        live.touch();
        let Some(inner) = inner.upgrade() else { return };
        match msg {
            AgentMessage::Response { id, result } => {
                let tx = inner.lock().pending.remove(&id);
                match tx {
                    Some(tx) => {
                        let _ = tx.send(result.map_err(RequestError::Remote));
                    }
                    None => tracing::debug!(id, "response to an unknown request"),
                }
            }
            AgentMessage::Failed { id, error } => {
                let tx = inner.lock().pending.remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(Err(RequestError::Agent(error)));
                }
            }
            AgentMessage::Stream(m) => {
                let conn_id = m.conn_id();
                // Never waits: the stream's window bounds what its inbox holds.
                let mut st = inner.lock();
                let violation = match st.streams.get(&conn_id) {
                    Some(tx) => tx.push(m).err(),
                    None => {
                        tracing::trace!(conn_id, "data for a closed stream");
                        None
                    }
                };
                if let Some(v) = violation {
                    let tx = st.streams.remove(&conn_id);
                    drop(st);
                    close_violating_stream(&generation, tx, conn_id, v);
                }
            }
            AgentMessage::Incoming(ev) => {
                let ev = match ev {
                    IncomingEvent::NewConnection {
                        conn_id,
                        port,
                        mode,
                        client,
                        server,
                    } => {
                        if !is_agent_conn_id(conn_id) {
                            break LinkDown::new(format!(
                                "protocol violation: incoming connection id {conn_id} lacks the agent bit"
                            ));
                        }
                        match register_stream(&inner, conn_id) {
                            Ok(stream) => AgentEvent::Connection {
                                port,
                                mode,
                                client,
                                server,
                                stream,
                            },
                            Err(_) => return,
                        }
                    }
                    IncomingEvent::Request(r) => AgentEvent::HttpRequest(r),
                    IncomingEvent::SubscriptionLost { port, reason } => {
                        AgentEvent::SubscriptionLost { port, reason }
                    }
                };
                let mut d = generation.dead.subscribe();
                drop(inner);
                live.blocked.store(true, Ordering::Relaxed);
                tokio::select! {
                    _ = events.send(ev) => {}
                    _ = d.wait_for(|d| *d) => return,
                }
                live.blocked.store(false, Ordering::Relaxed);
                live.touch();
            }
            AgentMessage::Warning(w) => {
                tracing::warn!("agent: {w}");
                // Warnings are informational: never stall the link for them.
                let _ = events.try_send(AgentEvent::Warning(w));
            }
            AgentMessage::Pong(_) => {}
            AgentMessage::Hello(_) | AgentMessage::Refused(_) => {
                break LinkDown::new("protocol violation: a second hello from the agent");
            }
        }
    };
    if let Some(i) = inner.upgrade() {
        i.transport_lost(generation.id, why);
    }
}

/// The agent broke the flow-control rules of one stream: close that stream at both ends (the
/// link and every other stream go on). Never waits.
fn close_violating_stream(
    generation: &Generation,
    tx: Option<StreamTx>,
    conn_id: ConnId,
    violation: flow::FlowError,
) {
    tracing::warn!(conn_id, "closing the stream: {violation}");
    let error = violation.to_string();
    if let Some(tx) = tx {
        tx.fail(error.clone());
    }
    let close = ClientMessage::Stream(StreamMessage::Close {
        conn_id,
        error: Some(error),
    });
    if let Err(mpsc::error::TrySendError::Full(close)) = generation.tx.try_send(close) {
        let queue = generation.tx.clone();
        tokio::spawn(async move {
            let _ = queue.send(close).await;
        });
    }
}

/// What the ping loop needs to know about the reader.
struct Liveness {
    /// When the last message arrived from the agent.
    last_rx: Mutex<Instant>,
    /// The reader is waiting for the session router to take an event, so silence proves
    /// nothing.
    blocked: std::sync::atomic::AtomicBool,
}

impl Liveness {
    fn touch(&self) {
        *self.last_rx.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

async fn ping_loop(
    inner: Weak<Inner>,
    generation: Arc<Generation>,
    live: Arc<Liveness>,
    opts: LinkOptions,
) {
    let mut n = 0u64;
    let mut tick = tokio::time::interval(opts.ping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(i) = inner.upgrade() else { return };
        if *generation.dead.borrow() {
            return;
        }
        let quiet = live
            .last_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if quiet > opts.dead_after && !live.blocked.load(Ordering::Relaxed) {
            i.transport_lost(
                generation.id,
                LinkDown::new(format!(
                    "the agent did not answer for {} s",
                    quiet.as_secs()
                )),
            );
            return;
        }
        n += 1;
        // try_send: a full write queue means traffic is flowing, no ping needed.
        let _ = generation.tx.try_send(ClientMessage::Ping(n));
    }
}
