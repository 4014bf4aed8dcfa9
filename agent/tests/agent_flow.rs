//! Per-stream flow control at the agent, against a real agent process and real pod sockets: a pod
//! socket that never reads stalls only its own stream, a slow reader gets every byte in order,
//! and a session that sends past its window loses that stream, not the link.
//!
//! The test client plays the daemon with the flow rules of `tether_protocol::flow`, and checks
//! that the agent keeps to them too (never more than one window in flight per stream).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Agent, Link, Net, Pod, TOKEN, open_link, sleeper};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tether_protocol::agent::{AgentMessage, ClientMessage, Request, Response};
use tether_protocol::file::{FileRequest, FileResponse};
use tether_protocol::flow::{CREDIT_BATCH, STREAM_WINDOW};
use tether_protocol::outgoing::{OutgoingRequest, StreamMessage};
use tether_protocol::{ConnId, PROTOCOL_VERSION, Payload, RequestId};
use tether_testkit::pattern;
use tokio::sync::{Notify, mpsc, oneshot};

/// Long enough for a loaded CI machine; only there to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(30);

/// Bytes per Data message the client sends.
const CHUNK: usize = 256 * 1024;

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<RequestId, oneshot::Sender<AgentMessage>>>,
    streams: Mutex<HashMap<ConnId, mpsc::UnboundedSender<StreamMessage>>>,
    /// Credit the agent gave us, per stream.
    credit: Mutex<HashMap<ConnId, u64>>,
    credited: Notify,
    /// Data the agent sent and we did not credit back yet, per stream.
    in_flight: Mutex<HashMap<ConnId, u64>>,
    /// Most bytes the agent ever had in flight on one stream.
    max_in_flight: AtomicU64,
}

/// A daemon stand-in that keeps to the flow rules and routes the agent's messages by stream.
#[derive(Clone)]
struct FlowClient {
    sink: Arc<tokio::sync::Mutex<SplitSink<Link, ClientMessage>>>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
}

impl FlowClient {
    async fn connect(addr: SocketAddr) -> FlowClient {
        let (link, hello) = open_link(addr, TOKEN, PROTOCOL_VERSION).await;
        assert!(matches!(hello, AgentMessage::Hello(_)), "{hello:?}");
        let (sink, mut stream) = link.split();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    AgentMessage::Response { id, .. } | AgentMessage::Failed { id, .. } => {
                        if let Some(tx) = s.pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(m);
                        }
                    }
                    AgentMessage::Stream(StreamMessage::Credit { conn_id, bytes }) => {
                        *s.credit.lock().unwrap().entry(conn_id).or_default() += bytes;
                        s.credited.notify_waiters();
                    }
                    AgentMessage::Stream(msg) => {
                        let conn_id = msg.conn_id();
                        if let StreamMessage::Data { data, .. } = &msg {
                            let mut f = s.in_flight.lock().unwrap();
                            let n = f.entry(conn_id).or_default();
                            *n += data.len() as u64;
                            s.max_in_flight.fetch_max(*n, Ordering::Relaxed);
                        }
                        if let Some(tx) = s.streams.lock().unwrap().get(&conn_id) {
                            let _ = tx.send(msg);
                        }
                    }
                    _ => {}
                }
            }
        });
        FlowClient {
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
            shared,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    async fn send(&self, m: ClientMessage) {
        self.sink.lock().await.send(m).await.unwrap();
    }

    async fn request(&self, body: Request) -> AgentMessage {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap().insert(id, tx);
        self.send(ClientMessage::Request { id, body }).await;
        tokio::time::timeout(HANG, rx)
            .await
            .expect("the agent answered a request (the link is not stalled)")
            .unwrap()
    }

    /// Opens a TCP stream from the pod; retries while the server starts.
    async fn open_tcp(
        &self,
        conn_id: ConnId,
        remote: SocketAddr,
    ) -> mpsc::UnboundedReceiver<StreamMessage> {
        for _ in 0..200 {
            let (tx, rx) = mpsc::unbounded_channel();
            self.shared.streams.lock().unwrap().insert(conn_id, tx);
            self.shared
                .credit
                .lock()
                .unwrap()
                .insert(conn_id, STREAM_WINDOW);
            let answer = self
                .request(Request::Outgoing(OutgoingRequest::ConnectTcp {
                    conn_id,
                    remote,
                }))
                .await;
            if let AgentMessage::Response { result: Ok(_), .. } = answer {
                return rx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{remote} never accepted a connection");
    }

    /// Sends `data` as Data messages within the agent's credit, waiting for more as needed.
    /// `sent` counts what went out.
    async fn send_within_credit(&self, conn_id: ConnId, data: &[u8], sent: &AtomicU64) {
        let mut off = 0;
        while off < data.len() {
            let n = loop {
                let credited = self.shared.credited.notified();
                tokio::pin!(credited);
                credited.as_mut().enable();
                {
                    let mut c = self.shared.credit.lock().unwrap();
                    let avail = c.entry(conn_id).or_default();
                    let n = (*avail).min((data.len() - off).min(CHUNK) as u64);
                    if n > 0 {
                        *avail -= n;
                        break n as usize;
                    }
                }
                credited.await;
            };
            self.send(ClientMessage::Stream(StreamMessage::Data {
                conn_id,
                data: Payload(data[off..off + n].to_vec()),
            }))
            .await;
            off += n;
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// We consumed `n` bytes of the agent's data on `conn_id`: return credit in batches, as
    /// the daemon does.
    async fn consumed(&self, conn_id: ConnId, owed: &mut u64, n: usize) {
        *owed += n as u64;
        if *owed >= CREDIT_BATCH {
            *self
                .shared
                .in_flight
                .lock()
                .unwrap()
                .entry(conn_id)
                .or_default() -= *owed;
            let bytes = std::mem::take(owed);
            self.send(ClientMessage::Stream(StreamMessage::Credit {
                conn_id,
                bytes,
            }))
            .await;
        }
    }

    fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::Relaxed)
    }

    async fn read_file(&self, path: &str) -> Vec<u8> {
        let answer = self
            .request(Request::File(FileRequest::ReadWhole {
                path: path.into(),
                max_len: 1 << 20,
            }))
            .await;
        match answer {
            AgentMessage::Response {
                result: Ok(Response::File(FileResponse::Contents { data, .. })),
                ..
            } => data.0,
            other => panic!("{other:?}"),
        }
    }
}

/// A pod whose server accepts connections on 7002 and never reads from them.
fn sink_pod(net: &Net) -> Pod {
    Pod::run(
        net,
        "sink",
        &[
            "/usr/bin/python3",
            "-c",
            "import socket,time\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('0.0.0.0', 7002)); s.listen(8)\n\
             held=[]\n\
             while True:\n    c, _ = s.accept(); held.append(c)",
        ],
    )
}

fn echo_pod(net: &Net) -> Pod {
    Pod::run(net, "echo", &["/testsrv", "tcp-echo", "--port", "7000"])
}

/// Echoes `payload` on `conn_id` and checks it comes back whole and in order.
async fn echo_round_trip(
    c: &FlowClient,
    conn_id: ConnId,
    rx: &mut mpsc::UnboundedReceiver<StreamMessage>,
    payload: Vec<u8>,
) {
    let sender = c.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let expected = payload.clone();
    let counted = sent.clone();
    let up =
        tokio::spawn(async move { sender.send_within_credit(conn_id, &payload, &counted).await });
    let mut got = 0usize;
    let mut owed = 0;
    while got < expected.len() {
        match rx.recv().await.expect("stream open") {
            StreamMessage::Data { data, .. } => {
                assert_eq!(
                    data.as_slice(),
                    &expected[got..got + data.len()],
                    "echo differs at byte {got}"
                );
                got += data.len();
                c.consumed(conn_id, &mut owed, data.len()).await;
            }
            other => panic!("{other:?}"),
        }
    }
    up.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_socket_that_never_reads_stalls_only_its_own_stream() {
    let net = Net::up("fls");
    let sink = sink_pod(&net);
    let echo = echo_pod(&net);
    let pod = sleeper(&net, "web", &[]);
    let agent = Agent::start(pod.pid(), &[]).await;
    let c = FlowClient::connect(agent.addr).await;

    // Stream 1: offer 64 MiB to a server that reads nothing.
    let _stalled = c
        .open_tcp(1, SocketAddr::from((sink.sandbox.ip, 7002)))
        .await;
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (c, sent) = (c.clone(), sent.clone());
        tokio::spawn(async move {
            let data = vec![0x5a; 64 << 20];
            c.send_within_credit(1, &data, &sent).await;
        })
    };
    // Wait until the stream is stalled: nothing more sent for a while.
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last && now >= STREAM_WINDOW {
            break;
        }
        last = now;
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream 1 never stalled"
        );
    }
    assert!(
        !flood.is_finished(),
        "a server that reads nothing took 64 MiB"
    );

    // Meanwhile the same session's other streams and requests go on.
    let mut rx = c
        .open_tcp(2, SocketAddr::from((echo.sandbox.ip, 7000)))
        .await;
    tokio::time::timeout(HANG, echo_round_trip(&c, 2, &mut rx, pattern(4 << 20, 7)))
        .await
        .expect("an echo on another stream of the session completed");
    assert_eq!(
        c.read_file("/data/hello.txt").await,
        b"hello from the pod\n"
    );
    assert!(
        !flood.is_finished(),
        "a server that reads nothing took 64 MiB"
    );
    assert!(c.max_in_flight() <= STREAM_WINDOW, "{}", c.max_in_flight());
    flood.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_byte_in_order_both_ways() {
    let net = Net::up("flo");
    let echo = echo_pod(&net);
    let pod = sleeper(&net, "web", &[]);
    let agent = Agent::start(pod.pid(), &[]).await;
    let c = FlowClient::connect(agent.addr).await;
    let mut rx = c
        .open_tcp(1, SocketAddr::from((echo.sandbox.ip, 7000)))
        .await;
    let payload = pattern(24 << 20, 42);
    let sender = c.clone();
    let up_payload = payload.clone();
    let up = tokio::spawn(async move {
        sender
            .send_within_credit(1, &up_payload, &AtomicU64::new(0))
            .await
    });
    // Consume slowly: small steps with pauses, so the agent runs out of credit over and over.
    let mut got = 0usize;
    let mut owed = 0;
    let slow = async {
        while got < payload.len() {
            let StreamMessage::Data { data, .. } = rx.recv().await.expect("stream open") else {
                panic!("unexpected end of the echo at byte {got}");
            };
            for piece in data.as_slice().chunks(64 * 1024) {
                assert!(
                    piece == &payload[got..got + piece.len()],
                    "echo differs at byte {got}"
                );
                got += piece.len();
                c.consumed(1, &mut owed, piece.len()).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), slow)
        .await
        .expect("24 MiB echoed through a slow reader");
    up.await.unwrap();
    assert_eq!(got, payload.len());
    assert!(
        c.max_in_flight() <= STREAM_WINDOW,
        "the agent sent {} bytes past our credit",
        c.max_in_flight()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_past_the_window_closes_that_stream_and_the_link_lives_on() {
    let net = Net::up("flv");
    let sink = sink_pod(&net);
    let echo = echo_pod(&net);
    let pod = sleeper(&net, "web", &[]);
    let agent = Agent::start(pod.pid(), &[]).await;
    let agent_pid = agent.child.id().unwrap();
    let c = FlowClient::connect(agent.addr).await;
    let mut stream = c
        .open_tcp(1, SocketAddr::from((sink.sandbox.ip, 7002)))
        .await;
    // Ignore credit: 64 MiB at a server that reads nothing is far past the window plus what the
    // sockets buffer.
    let chunk = Payload(vec![0x5a; CHUNK]);
    let flood = async {
        for _ in 0..256 {
            c.send(ClientMessage::Stream(StreamMessage::Data {
                conn_id: 1,
                data: chunk.clone(),
            }))
            .await;
        }
    };
    tokio::time::timeout(HANG, flood)
        .await
        .expect("the agent kept reading its link");
    let closed = tokio::time::timeout(HANG, async {
        loop {
            match stream.recv().await.expect("stream routed") {
                StreamMessage::Close { error, .. } => return error,
                StreamMessage::Credit { .. } | StreamMessage::Data { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .expect("the agent closed the violating stream");
    let error = closed.expect("the close says why");
    assert!(error.contains("flow control violation"), "{error}");
    assert!(error.contains("stream 1"), "{error}");

    // The link and the session's other streams live on.
    assert_eq!(
        c.read_file("/data/hello.txt").await,
        b"hello from the pod\n"
    );
    let mut rx = c
        .open_tcp(2, SocketAddr::from((echo.sandbox.ip, 7000)))
        .await;
    tokio::time::timeout(HANG, echo_round_trip(&c, 2, &mut rx, pattern(2 << 20, 3)))
        .await
        .expect("an echo on another stream after the violation");
    // Nothing of the refused data piled up in the agent.
    let status = std::fs::read_to_string(format!("/proc/{agent_pid}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(
        rss_kib < 200 * 1024,
        "agent RSS {rss_kib} KiB after 64 MiB past the window"
    );
}

#[tokio::test]
async fn a_daemon_without_flow_control_is_refused_at_the_hello() {
    let net = Net::up("flr");
    let pod = sleeper(&net, "web", &[]);
    let agent = Agent::start(pod.pid(), &[]).await;
    // Protocol 1 had no credit: such a daemon would stall every stream after one window.
    let old = tether_protocol::flow::CREDIT_VERSION - 1;
    let Err(err) = common::Client::connect_with(agent.addr, TOKEN, old).await else {
        panic!("a protocol {old} daemon was accepted");
    };
    assert!(
        matches!(err, tether_protocol::AgentError::VersionMismatch { client: 1, agent } if agent == PROTOCOL_VERSION),
        "{err}"
    );
}
