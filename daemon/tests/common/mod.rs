//! Test doubles for the session router: a fake agent (tokio, speaks the agent protocol from a
//! scripted handler), the scripted pods most tests want, and a fake layer (blocking, speaks
//! LayerMessages like the real layer).

#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_protocol::agent::{
    AgentHello, AgentMessage, ClientMessage, Request, Response, TargetInfo,
};
use tether_protocol::codec::{FrameCodec, read_frame, write_frame};
use tether_protocol::error::{AgentError, RemoteError};
use tether_protocol::file::{FileRequest, FileResponse, Metadata};
use tether_protocol::incoming::{IncomingRequest, IncomingResponse};
use tether_protocol::layer::{
    DaemonHello, DaemonMessage, LayerHello, LayerMessage, LayerRequest, LayerResponse,
};
use tether_protocol::outgoing::{OutgoingRequest, OutgoingResponse, StreamMessage};
use tether_protocol::{AGENT_CONN_ID_BIT, PROTOCOL_VERSION, RequestId};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream as TokioStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

pub const AGENT_TOKEN: &str = "agent-secret";
pub const POD_HOSTNAME: &str = "api-7d9f-xk2";

/// Decides the agent's answers to each client message (after the hello).
pub type Handler = Arc<dyn Fn(&ClientMessage) -> Vec<AgentMessage> + Send + Sync>;

/// The pod env that [`standard_handler`] reports.
pub const POD_ENV: &[(&str, &str)] = &[("DB_URL", "pg://db")];

/// The agent's answer to `Request::Env`: `vars` in order.
pub fn env_response(vars: &[(&str, &str)]) -> Response {
    Response::Env(
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// A pod that only answers `Request::Env`, with `vars`; other messages go unanswered.
pub fn env_handler(vars: &'static [(&'static str, &'static str)]) -> Handler {
    Arc::new(move |m| match m {
        ClientMessage::Request {
            id,
            body: Request::Env,
        } => vec![AgentMessage::Response {
            id: *id,
            result: Ok(env_response(vars)),
        }],
        _ => vec![],
    })
}

/// Answers what most tests need: the env ([`POD_ENV`]), opens (fd 42), reads (echoing the fd and
/// the agent-side request id), closes, port subscriptions, outgoing connects (local address
/// 10.1.2.3:40000 for TCP, :40001 for UDP), and echoes the data of streams the daemon opened
/// upper-cased. Any other request fails with ENOSYS.
pub fn standard_handler() -> Handler {
    Arc::new(|m| match m {
        ClientMessage::Request { id, body } => {
            let result = match body {
                Request::Env => Ok(env_response(POD_ENV)),
                Request::File(FileRequest::Open { .. }) => {
                    Ok(Response::File(FileResponse::Opened {
                        fd: 42,
                        metadata: Metadata::default(),
                    }))
                }
                Request::File(FileRequest::Read { fd, .. }) => {
                    Ok(Response::File(FileResponse::Data(
                        format!("read fd {fd} as agent id {id}").into_bytes().into(),
                    )))
                }
                Request::File(FileRequest::Close { .. }) => Ok(Response::File(FileResponse::Done)),
                Request::Incoming(IncomingRequest::Subscribe { port, .. }) => {
                    Ok(Response::Incoming(IncomingResponse::Subscribed {
                        port: *port,
                    }))
                }
                Request::Incoming(IncomingRequest::Unsubscribe { port }) => {
                    Ok(Response::Incoming(IncomingResponse::Unsubscribed {
                        port: *port,
                    }))
                }
                Request::Outgoing(OutgoingRequest::OpenUdp { conn_id, .. }) => {
                    Ok(Response::Outgoing(OutgoingResponse::Opened {
                        conn_id: *conn_id,
                        local: "10.1.2.3:40001".parse().unwrap(),
                        remote: None,
                    }))
                }
                Request::Outgoing(OutgoingRequest::ConnectTcp { conn_id, .. }) => {
                    Ok(Response::Outgoing(OutgoingResponse::Opened {
                        conn_id: *conn_id,
                        local: "10.1.2.3:40000".parse().unwrap(),
                        remote: None,
                    }))
                }
                _ => Err(RemoteError::new(libc::ENOSYS, "not scripted")),
            };
            vec![AgentMessage::Response { id: *id, result }]
        }
        ClientMessage::Stream(StreamMessage::Data { conn_id, data })
            if *conn_id & AGENT_CONN_ID_BIT == 0 =>
        {
            vec![AgentMessage::Stream(StreamMessage::Data {
                conn_id: *conn_id,
                data: data.as_slice().to_ascii_uppercase().into(),
            })]
        }
        ClientMessage::Stream(StreamMessage::Datagram {
            conn_id,
            peer,
            data,
        }) => vec![AgentMessage::Stream(StreamMessage::Datagram {
            conn_id: *conn_id,
            peer: *peer,
            data: data.as_slice().to_ascii_uppercase().into(),
        })],
        ClientMessage::Stream(StreamMessage::Eof { conn_id })
            if *conn_id & AGENT_CONN_ID_BIT == 0 =>
        {
            vec![AgentMessage::Stream(StreamMessage::Eof {
                conn_id: *conn_id,
            })]
        }
        // The echo sends back what it got: the daemon's credit for the echo is the echo's own
        // credit, so this agent never has more in flight than the daemon allows.
        ClientMessage::Stream(StreamMessage::Credit { conn_id, bytes })
            if *conn_id & AGENT_CONN_ID_BIT == 0 =>
        {
            vec![AgentMessage::Stream(StreamMessage::Credit {
                conn_id: *conn_id,
                bytes: *bytes,
            })]
        }
        _ => vec![],
    })
}

/// A session router (id `test`) on a link to the agent at `agent_addr`, opened with `token`.
pub async fn router_session(
    agent_addr: &str,
    token: &str,
    options: tether::session::SessionOptions,
    listen: tether::session::ListenKind,
) -> tether::session::Session {
    let (client, events) = tether::agent_link::AgentClient::connect(
        agent_addr,
        token,
        tether::agent_link::LinkOptions::default(),
    )
    .await
    .unwrap();
    tether::session::Session::start(
        client,
        events,
        tether::session::SessionParams {
            id: "test".into(),
            options,
            local: tether::session::LocalContext::default(),
            listen,
        },
    )
    .await
    .unwrap()
}

/// The agent's end of one connection, as read and write halves.
pub type AgentRead = FramedRead<OwnedReadHalf, FrameCodec<AgentMessage, ClientMessage>>;
/// See [`AgentRead`].
pub type AgentWrite = FramedWrite<OwnedWriteHalf, FrameCodec<AgentMessage, ClientMessage>>;

/// Answers a client's hello as the agent does: a token other than [`AGENT_TOKEN`] is refused,
/// else the agent says hello with protocol `version` for a pod named [`POD_HOSTNAME`]. None when
/// the connection was refused or ended before its hello.
pub async fn handshake(sock: TokioStream, version: u32) -> Option<(AgentRead, AgentWrite)> {
    let (r, w) = sock.into_split();
    let mut rd = FramedRead::new(r, FrameCodec::new());
    let mut wr = FramedWrite::new(w, FrameCodec::new());
    let Some(Ok(ClientMessage::Hello(h))) = rd.next().await else {
        return None;
    };
    if h.token != AGENT_TOKEN {
        let _ = wr
            .send(AgentMessage::Refused(AgentError::Unauthorized))
            .await;
        return None;
    }
    let hello = AgentHello {
        protocol_version: version,
        agent: "fake-agent".into(),
        target: TargetInfo {
            pid: 4242,
            hostname: POD_HOSTNAME.into(),
        },
    };
    wr.send(AgentMessage::Hello(hello)).await.unwrap();
    Some((rd, wr))
}

/// A fake agent on 127.0.0.1. Every client message (the hello excluded) is logged and passed to
/// the handler; `push` sends unsolicited messages (events, stream data).
pub struct FakeAgent {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<ClientMessage>>>,
    pub seen: mpsc::UnboundedReceiver<ClientMessage>,
    push: mpsc::UnboundedSender<AgentMessage>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
pub struct AgentBehavior {
    pub version: u32,
    pub answer_pings: bool,
}

impl Default for AgentBehavior {
    fn default() -> Self {
        Self {
            version: PROTOCOL_VERSION,
            answer_pings: true,
        }
    }
}

impl FakeAgent {
    pub async fn start(handler: Handler) -> Self {
        Self::start_with(handler, AgentBehavior::default()).await
    }

    pub async fn start_with(handler: Handler, behavior: AgentBehavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (push, mut push_rx) = mpsc::unbounded_channel::<AgentMessage>();
        let rec = received.clone();
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let Some((mut rd, mut wr)) = handshake(sock, behavior.version).await else {
                return;
            };
            loop {
                tokio::select! {
                    m = rd.next() => {
                        let Some(Ok(m)) = m else { return };
                        if let ClientMessage::Ping(n) = m {
                            if behavior.answer_pings {
                                let _ = wr.send(AgentMessage::Pong(n)).await;
                            }
                            continue;
                        }
                        rec.lock().unwrap().push(m.clone());
                        let _ = seen_tx.send(m.clone());
                        for out in handler(&m) {
                            if wr.send(out).await.is_err() {
                                return;
                            }
                        }
                    }
                    p = push_rx.recv() => {
                        let Some(p) = p else { return };
                        if wr.send(p).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Self {
            addr,
            received,
            seen,
            push,
            task,
        }
    }

    /// A session router on a link to this agent.
    pub async fn session(
        &self,
        options: tether::session::SessionOptions,
        listen: tether::session::ListenKind,
    ) -> tether::session::Session {
        router_session(&self.addr.to_string(), AGENT_TOKEN, options, listen).await
    }

    /// Sends a message to the daemon.
    pub fn push(&self, m: AgentMessage) {
        self.push.send(m).unwrap();
    }

    /// Kills the agent: the connection closes.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Waits for the first client message matching `pred`.
    pub async fn wait_for<F: Fn(&ClientMessage) -> bool>(&mut self, pred: F) -> ClientMessage {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let m = self.seen.recv().await.expect("agent connection ended");
                if pred(&m) {
                    return m;
                }
            }
        })
        .await
        .expect("timed out waiting for a client message")
    }
}

/// A blocking layer connection, as the real layer opens them.
pub struct FakeLayer {
    stream: Box<dyn ReadWrite>,
}

pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

pub fn hello(token: &str, pid: u32, ppid: u32) -> LayerHello {
    LayerHello {
        protocol_version: PROTOCOL_VERSION,
        token: token.into(),
        pid,
        ppid,
        exe: "/usr/bin/app".into(),
        argv: vec!["app".into()],
    }
}

impl FakeLayer {
    /// Connects to a session address (`unix:/path` or `tcp:ADDR`) and says hello.
    pub fn connect(address: &str, hello: LayerHello) -> Result<(Self, DaemonHello), String> {
        let stream: Box<dyn ReadWrite> = if let Some(p) = address.strip_prefix("unix:") {
            Box::new(UnixStream::connect(p).unwrap())
        } else {
            let a = address.strip_prefix("tcp:").unwrap();
            Box::new(TcpStream::connect(a).unwrap())
        };
        let mut l = Self { stream };
        write_frame(&mut l.stream, &LayerMessage::Hello(hello)).unwrap();
        match read_frame(&mut l.stream).unwrap() {
            DaemonMessage::Hello(h) => Ok((l, h)),
            DaemonMessage::Refused(why) => Err(why),
            other => panic!("unexpected answer to hello: {other:?}"),
        }
    }

    /// A process (`pid`, parent 1) whose app listens on `local`: connects with `token` and
    /// announces the listener for the pod's `remote_port` (request id 1).
    pub fn listening(
        address: &str,
        token: &str,
        pid: u32,
        local: SocketAddr,
        remote_port: u16,
    ) -> Self {
        let (mut l, _) = Self::connect(address, hello(token, pid, 1)).unwrap();
        l.request(1, LayerRequest::Listen { local, remote_port })
            .unwrap();
        l
    }

    pub fn send(&mut self, id: RequestId, body: LayerRequest) {
        write_frame(&mut self.stream, &LayerMessage::Request { id, body }).unwrap();
    }

    pub fn recv(&mut self) -> (RequestId, Result<LayerResponse, RemoteError>) {
        match read_frame(&mut self.stream).unwrap() {
            DaemonMessage::Response { id, result } => (id, result),
            other => panic!("unexpected message: {other:?}"),
        }
    }

    pub fn request(
        &mut self,
        id: RequestId,
        body: LayerRequest,
    ) -> Result<LayerResponse, RemoteError> {
        self.send(id, body);
        let (rid, result) = self.recv();
        assert_eq!(rid, id, "the daemon answered another request id");
        result
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}
