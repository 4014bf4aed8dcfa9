//! One session: one TCP connection from a daemon, from the hello to the goodbye.
//!
//! Owns the session's state (open files, outgoing streams) and hands its port subscriptions to
//! the shared [`crate::incoming::Incoming`]. Requests run concurrently as their own tasks, so a
//! slow DNS lookup or connect never holds up a file read; operations on one file handle run in
//! order. Everything the session sends goes through one bounded channel (`to_daemon`) drained by
//! a writer task that batches frames before flushing.
//!
//! Invariant: when the session ends, for any reason, its files are closed, its streams dropped and
//! its subscriptions released.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_protocol::agent::{
    AgentHello, AgentMessage, ClientMessage, Request, Response, TargetInfo,
};
use tether_protocol::codec::FrameCodec;
use tether_protocol::file::FileResponse;
use tether_protocol::incoming::{IncomingRequest, IncomingResponse};
use tether_protocol::outgoing::StreamMessage;
use tether_protocol::{
    AgentError, CodecError, PROTOCOL_VERSION, RemoteError, RequestId, is_agent_conn_id, negotiate,
};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::errors::{OpError, OpResult};
use crate::files::FileTable;
use crate::outgoing::Streams;
use crate::server::Shared;

/// Id of a session inside this agent (for incoming's bookkeeping and logs).
pub type SessionId = u64;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages queued towards the daemon before producers wait (backpressure on the link).
const TO_DAEMON_CAPACITY: usize = 256;

type Codec = FrameCodec<AgentMessage, ClientMessage>;
/// Reading half of the link. The halves are framed separately (not `Framed::split`) so that a
/// message the codec rejects fails its own `feed`, where the writer can still tell which it was.
type Frames = FramedRead<OwnedReadHalf, Codec>;
/// Writing half of the link.
type Sink = FramedWrite<OwnedWriteHalf, Codec>;

/// Runs a session on an accepted connection until it ends.
pub async fn run(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    // A daemon that vanished without closing (laptop suspended, network gone) must not keep the
    // session, and so the agent, alive forever: keepalive probes end the connection in ~1 min.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%peer, "cannot enable TCP keepalive: {e}");
    }
    let (rd, wr) = stream.into_split();
    let mut frames = Frames::new(rd, Codec::new());
    let mut sink = Sink::new(wr, Codec::new());
    // Frames up to this size are batched before the writer flushes.
    sink.set_backpressure_boundary(256 * 1024);
    let Some(client) = handshake(&shared, &mut frames, &mut sink, peer).await else {
        return;
    };
    let guard = shared.begin_session();
    let id = guard.id;
    tracing::info!(
        session = id,
        %peer,
        client = client.client,
        session_name = client.session_id,
        version = client.version,
        "session started"
    );
    let (to_daemon, from_session) = mpsc::channel::<AgentMessage>(TO_DAEMON_CAPACITY);
    let writer = tokio::spawn(write_loop(sink, from_session));
    let session = Session {
        id,
        shared: shared.clone(),
        files: FileTable::new(shared.target.clone(), to_daemon.clone()),
        streams: Streams::new(shared.target.clone(), to_daemon.clone()),
        to_daemon,
    };
    let mut tasks = JoinSet::new();
    let mut warned_gone = false;
    let end = loop {
        tokio::select! {
            frame = frames.next() => match frame {
                None => break "link closed".to_owned(),
                Some(Err(e)) => break format!("link failed: {e}"),
                Some(Ok(ClientMessage::Goodbye)) => break "goodbye".to_owned(),
                Some(Ok(msg)) => session.dispatch(msg, &mut tasks).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = shared.target.gone(), if !warned_gone => {
                warned_gone = true;
                session.send(AgentMessage::Warning(format!(
                    "target process {} exited; requests will fail", shared.target.pid()
                ))).await;
            }
        }
    };
    tracing::info!(session = id, "session ended: {end}");
    tasks.abort_all();
    session.streams.close_all();
    session.files.close_all();
    shared.incoming.release_session(id).await;
    drop(session);
    // The writer ends once every sender (streams, files, incoming) is gone and its queue drained.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    drop(guard);
}

struct ClientInfo {
    client: String,
    session_id: String,
    version: u32,
}

/// Reads the hello, answers it, or refuses and closes.
async fn handshake(
    shared: &Shared,
    frames: &mut Frames,
    link: &mut Sink,
    peer: SocketAddr,
) -> Option<ClientInfo> {
    let first = match tokio::time::timeout(HELLO_TIMEOUT, frames.next()).await {
        Err(_) => {
            tracing::warn!(%peer, "refused connection: no hello within {HELLO_TIMEOUT:?}");
            return None;
        }
        Ok(None) => {
            tracing::debug!(%peer, "connection closed before hello");
            return None;
        }
        Ok(Some(Err(e))) => {
            tracing::warn!(%peer, "refused connection: unreadable first frame: {e}");
            let _ = link
                .send(AgentMessage::Refused(AgentError::Protocol(format!(
                    "unreadable first frame: {e}"
                ))))
                .await;
            return None;
        }
        Ok(Some(Ok(msg))) => msg,
    };
    let refusal = match first {
        ClientMessage::Hello(hello) => {
            if !shared.token_matches(&hello.token) {
                Err(AgentError::Unauthorized)
            } else {
                match negotiate(PROTOCOL_VERSION, hello.protocol_version) {
                    Some(version) => Ok(ClientInfo {
                        client: hello.client,
                        session_id: hello.session_id,
                        version,
                    }),
                    None => Err(AgentError::VersionMismatch {
                        agent: PROTOCOL_VERSION,
                        client: hello.protocol_version,
                    }),
                }
            }
        }
        other => Err(AgentError::Protocol(format!(
            "the first message must be Hello, got {}",
            message_kind(&other)
        ))),
    };
    match refusal {
        Ok(info) => {
            let hello = AgentMessage::Hello(AgentHello {
                protocol_version: info.version,
                agent: format!("tether-agent {}", env!("CARGO_PKG_VERSION")),
                target: TargetInfo {
                    pid: shared.target.pid(),
                    hostname: shared.target.hostname().to_owned(),
                },
            });
            link.send(hello).await.ok()?;
            Some(info)
        }
        Err(why) => {
            tracing::warn!(%peer, "refused connection: {why}");
            let _ = link.send(AgentMessage::Refused(why)).await;
            None
        }
    }
}

fn message_kind(msg: &ClientMessage) -> &'static str {
    match msg {
        ClientMessage::Hello(_) => "Hello",
        ClientMessage::Request { .. } => "Request",
        ClientMessage::Stream(_) => "Stream",
        ClientMessage::HttpResponse(_) => "HttpResponse",
        ClientMessage::Ping(_) => "Ping",
        ClientMessage::Goodbye => "Goodbye",
    }
}

/// Drains the queue into the link, flushing only when the queue is empty so bursts share
/// syscalls.
async fn write_loop(mut sink: Sink, mut queue: mpsc::Receiver<AgentMessage>) {
    while let Some(msg) = queue.recv().await {
        if feed(&mut sink, msg).await.is_err() {
            return;
        }
        while let Ok(msg) = queue.try_recv() {
            if feed(&mut sink, msg).await.is_err() {
                return;
            }
        }
        if let Err(e) = sink.flush().await {
            tracing::warn!("cannot write to the daemon: {e}");
            return;
        }
    }
    let _ = sink.close().await;
}

/// Queues one message. A message over the frame limit (a huge directory listing, say) must not
/// end the session: an answer is replaced by `EOVERFLOW` for its request, anything else by a
/// warning. The codec leaves nothing of a rejected frame in the buffer.
async fn feed(sink: &mut Sink, msg: AgentMessage) -> Result<(), ()> {
    let answer_to = match &msg {
        AgentMessage::Response { id, .. } | AgentMessage::Failed { id, .. } => Some(*id),
        _ => None,
    };
    // Reserve room for a large payload up front: the encoder would otherwise grow the buffer in
    // steps, copying megabytes several times.
    let payload = match &msg {
        AgentMessage::Response {
            result:
                Ok(Response::File(FileResponse::Data(d) | FileResponse::Contents { data: d, .. })),
            ..
        } => d.len(),
        AgentMessage::Stream(
            StreamMessage::Data { data, .. } | StreamMessage::Datagram { data, .. },
        ) => data.len(),
        _ => 0,
    };
    if payload > 64 * 1024 {
        sink.write_buffer_mut().reserve(payload + 64);
    }
    let e = match sink.feed(msg).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let CodecError::FrameTooLarge { len, max } = e else {
        tracing::warn!("cannot write to the daemon: {e}");
        return Err(());
    };
    tracing::warn!(
        ?answer_to,
        "dropped a message of {len} bytes: over the {max}-byte frame limit"
    );
    let replacement = match answer_to {
        Some(id) => AgentMessage::Response {
            id,
            result: Err(RemoteError::new(
                libc::EOVERFLOW,
                format!("the answer ({len} bytes) exceeds the {max}-byte frame limit"),
            )),
        },
        None => AgentMessage::Warning(format!(
            "the agent dropped a message of {len} bytes: over the {max}-byte frame limit"
        )),
    };
    sink.feed(replacement).await.map_err(|e| {
        tracing::warn!("cannot write to the daemon: {e}");
    })
}

struct Session {
    id: SessionId,
    shared: Arc<Shared>,
    files: FileTable,
    streams: Streams,
    to_daemon: mpsc::Sender<AgentMessage>,
}

/// The wire message for a finished request.
pub fn reply(id: RequestId, result: OpResult<Response>) -> AgentMessage {
    match result {
        Ok(r) => AgentMessage::Response { id, result: Ok(r) },
        Err(OpError::Remote(e)) => AgentMessage::Response { id, result: Err(e) },
        Err(OpError::Agent(error)) => AgentMessage::Failed { id, error },
    }
}

impl Session {
    async fn send(&self, msg: AgentMessage) {
        let _ = self.to_daemon.send(msg).await;
    }

    async fn dispatch(&self, msg: ClientMessage, tasks: &mut JoinSet<()>) {
        match msg {
            ClientMessage::Request { id, body } => self.request(id, body, tasks),
            // Never waits: stream data is bounded by its window, not by stalling this loop,
            // so one socket the target does not drain holds up nothing else of the session.
            ClientMessage::Stream(msg) => {
                if is_agent_conn_id(msg.conn_id()) {
                    self.shared.incoming.from_session(self.id, msg);
                } else {
                    self.streams.send_to_target(msg);
                }
            }
            ClientMessage::HttpResponse(resp) => {
                self.shared.incoming.http_response(self.id, resp).await;
            }
            ClientMessage::Ping(n) => self.send(AgentMessage::Pong(n)).await,
            ClientMessage::Hello(_) => {
                tracing::warn!(session = self.id, "second hello ignored");
                self.send(AgentMessage::Warning(
                    "protocol violation: Hello after the session started (ignored)".into(),
                ))
                .await;
            }
            ClientMessage::Goodbye => unreachable!("handled by the session loop"),
        }
    }

    fn request(&self, id: RequestId, body: Request, tasks: &mut JoinSet<()>) {
        if let Err(error) = self.shared.target.ensure_alive() {
            let tx = self.to_daemon.clone();
            tasks.spawn(async move {
                let _ = tx.send(AgentMessage::Failed { id, error }).await;
            });
            return;
        }
        let tx = self.to_daemon.clone();
        match body {
            Request::File(req) => self.files.dispatch(id, req),
            Request::Env => {
                let pid = self.shared.target.pid();
                tasks.spawn(async move {
                    let res = crate::env::read(pid).await.map(Response::Env);
                    let _ = tx.send(reply(id, res)).await;
                });
            }
            Request::Dns(req) => {
                let resolver = self.shared.resolver.clone();
                tasks.spawn(async move {
                    let res = resolver.handle(req).await.map(Response::Dns);
                    let _ = tx.send(reply(id, res)).await;
                });
            }
            Request::Outgoing(req) => {
                let streams = self.streams.clone();
                tasks.spawn(async move {
                    let res = streams.open(req).await.map(Response::Outgoing);
                    let _ = tx.send(reply(id, res)).await;
                });
            }
            Request::Incoming(req) => {
                let incoming = self.shared.incoming.clone();
                let session = self.id;
                let to_session = self.to_daemon.clone();
                tasks.spawn(async move {
                    let res = match req {
                        IncomingRequest::Subscribe { port, mode, filter } => incoming
                            .subscribe(session, port, mode, filter, to_session)
                            .await
                            .map(|()| IncomingResponse::Subscribed { port }),
                        IncomingRequest::Unsubscribe { port } => incoming
                            .unsubscribe(session, port)
                            .await
                            .map(|()| IncomingResponse::Unsubscribed { port }),
                    };
                    let res = res.map(Response::Incoming).map_err(OpError::Agent);
                    let _ = tx.send(reply(id, res)).await;
                });
            }
        }
    }
}
