//! Test doubles for the session router: a fake agent (tokio, speaks the agent protocol from a
//! scripted handler) and a fake layer (blocking, speaks LayerMessages like the real layer).

#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_protocol::agent::{AgentHello, AgentMessage, ClientMessage, TargetInfo};
use tether_protocol::codec::{FrameCodec, read_frame, write_frame};
use tether_protocol::error::{AgentError, RemoteError};
use tether_protocol::layer::{
    DaemonHello, DaemonMessage, LayerHello, LayerMessage, LayerRequest, LayerResponse,
};
use tether_protocol::{PROTOCOL_VERSION, RequestId};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

pub const AGENT_TOKEN: &str = "agent-secret";
pub const POD_HOSTNAME: &str = "api-7d9f-xk2";

/// Decides the agent's answers to each client message (after the hello).
pub type Handler = Arc<dyn Fn(&ClientMessage) -> Vec<AgentMessage> + Send + Sync>;

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
            let (r, w) = sock.into_split();
            let mut rd = FramedRead::new(r, FrameCodec::<AgentMessage, ClientMessage>::new());
            let mut wr = FramedWrite::new(w, FrameCodec::<AgentMessage, ClientMessage>::new());
            let Some(Ok(ClientMessage::Hello(h))) = rd.next().await else {
                return;
            };
            if h.token != AGENT_TOKEN {
                let _ = wr
                    .send(AgentMessage::Refused(AgentError::Unauthorized))
                    .await;
                return;
            }
            let hello = AgentHello {
                protocol_version: behavior.version,
                agent: "fake-agent".into(),
                target: TargetInfo {
                    pid: 4242,
                    hostname: POD_HOSTNAME.into(),
                },
            };
            wr.send(AgentMessage::Hello(hello)).await.unwrap();
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
