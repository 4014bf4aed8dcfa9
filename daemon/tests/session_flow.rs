//! Per-stream flow control at the daemon: an app socket that never reads (a debuggee paused at a
//! breakpoint) stalls its own stream, not the session; a slow app gets every byte in order; an
//! agent that sends past a stream's window loses that stream, not the link.
//!
//! The first two run a real agent on a test pod (root, and the workspace's `tether-agent` built
//! next to this test's `tether`); the last one needs a misbehaving agent, so it is a fake.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::Arc;
use std::time::Duration;

use common::{AGENT_TOKEN, FakeAgent, FakeLayer, hello, router_session};
use support::artifact;
use tether::agent_link::{AgentClient, LinkOptions};
use tether::session::{ListenKind, SessionOptions};
use tether_protocol::agent::{AgentMessage, ClientMessage, Request, Response};
use tether_protocol::file::{FileRequest, FileResponse, Metadata};
use tether_protocol::flow::STREAM_WINDOW;
use tether_protocol::layer::{LayerRequest, LayerResponse};
use tether_protocol::outgoing::{OutgoingRequest, OutgoingResponse, StreamMessage};
use tether_protocol::{AGENT_CONN_ID_BIT, Payload};
use tether_testkit::{AgentProcess, Pod, TestCluster, TestServer, pattern};

/// Only there to turn a hang into a failure on a loaded machine; nothing here measures speed.
const HANG: Duration = Duration::from_secs(30);

const TOKEN: &str = "flow-agent-token";

/// A pod-side bytes source: every connection to port 7100 gets an endless stream whose byte at
/// offset `k` is `k % 251`, as fast as the connection takes it.
const SOURCE: &str = "import socket, threading\n\
    chunk = bytes(range(251)) * 261\n\
    def pour(c):\n\
    \x20   try:\n\
    \x20       while True: c.sendall(chunk)\n\
    \x20   except OSError: pass\n\
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
    s.bind(('0.0.0.0', 7100)); s.listen(8)\n\
    while True:\n\
    \x20   c, _ = s.accept(); threading.Thread(target=pour, args=(c,), daemon=True).start()\n";

/// A real agent on a pod with a file and a TCP echo server on 7000, and a source pod on 7100.
struct PodEnv {
    _cluster: TestCluster,
    api: Pod,
    source: Pod,
    agent: AgentProcess,
}

impl PodEnv {
    /// A router session with the pod's agent, and the address and token a layer uses.
    async fn session(&self) -> (tether::session::Session, String, String) {
        let session = router_session(
            &self.agent.addr,
            TOKEN,
            SessionOptions::default(),
            ListenKind::Unix,
        )
        .await;
        let (addr, token) = (session.address().to_owned(), session.token().to_owned());
        (session, addr, token)
    }

    fn start(label: &str) -> PodEnv {
        let cluster = TestCluster::new(label).unwrap();
        let api = cluster
            .pod("api")
            .file("/app/data.txt", "remote payload\n")
            .server(TestServer::TcpEcho { port: 7000 })
            .start()
            .unwrap();
        let source = cluster
            .pod("source")
            .command(["python3", "-c", SOURCE])
            .start()
            .unwrap();
        source
            .wait_listening(7100, tether_testkit::Proto::Tcp, HANG)
            .unwrap();
        let agent = AgentProcess::start(&artifact("tether-agent"), &api, TOKEN);
        PodEnv {
            _cluster: cluster,
            api,
            source,
            agent,
        }
    }
}

/// Asks the session for an outgoing connection to `remote` and connects the app's socket to it.
fn connect_through(layer: &mut FakeLayer, id: u64, remote: SocketAddr) -> StdStream {
    let LayerResponse::Intercepted { interceptor, .. } = layer
        .request(id, LayerRequest::ConnectTcp { remote })
        .unwrap_or_else(|e| panic!("connect {remote}: {e}"))
    else {
        panic!("not intercepted");
    };
    let s = StdStream::connect(interceptor).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    s.set_write_timeout(Some(HANG)).unwrap();
    s
}

/// Writes `payload` through `s` (an echo) from another thread and reads it back, `pause` after
/// each read of at most `step` bytes; panics at the first byte that differs.
fn echo_checked(s: StdStream, payload: Vec<u8>, step: usize, pause: Duration) {
    let mut w = s.try_clone().unwrap();
    let up = payload.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&up).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut r = s;
    let mut buf = vec![0u8; step];
    let mut got = 0;
    while got < payload.len() {
        let n = r
            .read(&mut buf)
            .expect("echo read (a timeout here is a hang)");
        assert!(n > 0, "echo ended after {got} of {} bytes", payload.len());
        assert!(
            buf[..n] == payload[got..got + n],
            "echo differs at byte {got}"
        );
        got += n;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    writer.join().unwrap();
}

/// This process's resident memory (the daemon runs in the test process).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn read_pod_file(layer: &mut FakeLayer, id: u64) -> Vec<u8> {
    match layer.request(
        id,
        LayerRequest::File(FileRequest::ReadWhole {
            path: "/app/data.txt".into(),
            max_len: 1 << 20,
        }),
    ) {
        Ok(LayerResponse::File(FileResponse::Contents { data, .. })) => data.0,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_socket_that_never_reads_stalls_only_its_own_stream() {
    common::init_tracing();
    let env = PodEnv::start("flow-stall");
    let (_session, addr, token) = env.session().await;
    let source = SocketAddr::from((env.source.ip(), 7100));
    let echo = SocketAddr::from((env.api.ip(), 7000));
    let outcome = tokio::task::spawn_blocking(move || {
        let (mut layer, _) = FakeLayer::connect(&addr, hello(&token, 500, 1)).unwrap();
        // The paused debuggee: its socket gets an endless stream and reads none of it.
        let mut paused = connect_through(&mut layer, 1, source);
        let rss_before = rss_kib();
        // Long enough for the source to fill every buffer on the way many times over.
        std::thread::sleep(Duration::from_secs(3));
        // The paused stream pins about a window here, not whatever the source could pour.
        let grown = rss_kib().saturating_sub(rss_before);
        assert!(grown < 128 * 1024, "the daemon grew by {grown} KiB");
        // The rest of the session goes on: a file read, and 4 MiB through another stream.
        assert_eq!(read_pod_file(&mut layer, 2), b"remote payload\n");
        let other = connect_through(&mut layer, 3, echo);
        echo_checked(other, pattern(4 << 20, 9), 64 * 1024, Duration::ZERO);
        assert_eq!(read_pod_file(&mut layer, 4), b"remote payload\n");
        // The stalled stream lost nothing: 16 MiB from where it started, every byte in place.
        let mut buf = vec![0u8; 64 * 1024];
        let mut offset = 0usize;
        while offset < 16 << 20 {
            let n = paused.read(&mut buf).expect("stalled stream resumes");
            assert!(n > 0, "the stalled stream ended at byte {offset}");
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    *b as usize,
                    (offset + i) % 251,
                    "byte {} of the stalled stream",
                    offset + i
                );
            }
            offset += n;
        }
    });
    tokio::time::timeout(Duration::from_secs(120), outcome)
        .await
        .expect("the session hung")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_gets_every_byte_in_order_through_the_agent() {
    common::init_tracing();
    let env = PodEnv::start("flow-slow");
    let (_session, addr, token) = env.session().await;
    let echo = SocketAddr::from((env.api.ip(), 7000));
    let outcome = tokio::task::spawn_blocking(move || {
        let (mut layer, _) = FakeLayer::connect(&addr, hello(&token, 600, 1)).unwrap();
        let s = connect_through(&mut layer, 1, echo);
        // 16 MiB up and back through both windows of the stream, read in small steps with
        // pauses so the credit runs out over and over.
        echo_checked(
            s,
            pattern(16 << 20, 77),
            16 * 1024,
            Duration::from_micros(300),
        );
    });
    tokio::time::timeout(Duration::from_secs(180), outcome)
        .await
        .expect("the session hung")
        .unwrap();
}

/// Answers connects and file reads; echoes stream data, returning the daemon's credit for the
/// echo as its own (so it never has more in flight than the daemon allows).
fn echo_handler() -> common::Handler {
    Arc::new(|m| match m {
        ClientMessage::Request { id, body } => {
            let result = match body {
                Request::Outgoing(OutgoingRequest::ConnectTcp { conn_id, .. }) => {
                    Ok(Response::Outgoing(OutgoingResponse::Opened {
                        conn_id: *conn_id,
                        local: "10.1.2.3:40000".parse().unwrap(),
                        remote: None,
                    }))
                }
                Request::File(FileRequest::ReadWhole { .. }) => {
                    Ok(Response::File(FileResponse::Contents {
                        data: b"remote payload\n".as_slice().into(),
                        metadata: Metadata::default(),
                    }))
                }
                _ => Err(tether_protocol::RemoteError::new(
                    libc::ENOSYS,
                    "not scripted",
                )),
            };
            vec![AgentMessage::Response { id: *id, result }]
        }
        ClientMessage::Stream(StreamMessage::Data { conn_id, data }) => {
            vec![AgentMessage::Stream(StreamMessage::Data {
                conn_id: *conn_id,
                data: data.clone(),
            })]
        }
        ClientMessage::Stream(StreamMessage::Credit { conn_id, bytes }) => {
            vec![AgentMessage::Stream(StreamMessage::Credit {
                conn_id: *conn_id,
                bytes: *bytes,
            })]
        }
        _ => vec![],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sending_past_the_window_loses_that_stream_not_the_link() {
    common::init_tracing();
    let mut agent = FakeAgent::start(echo_handler()).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Unix)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let (mut layer, paused) = tokio::task::spawn_blocking(move || {
        let (mut layer, _) = FakeLayer::connect(&addr, hello(&token, 700, 1)).unwrap();
        let paused = connect_through(&mut layer, 1, "10.96.0.1:80".parse().unwrap());
        (layer, paused)
    })
    .await
    .unwrap();
    let opened = agent
        .wait_for(|m| {
            matches!(
                m,
                ClientMessage::Request {
                    body: Request::Outgoing(OutgoingRequest::ConnectTcp { .. }),
                    ..
                }
            )
        })
        .await;
    let ClientMessage::Request {
        body: Request::Outgoing(OutgoingRequest::ConnectTcp { conn_id, .. }),
        ..
    } = opened
    else {
        unreachable!()
    };
    assert_eq!(conn_id & AGENT_CONN_ID_BIT, 0);
    // 64 MiB at an app that reads nothing, ignoring credit: far past the window and whatever
    // the local socket buffers.
    let chunk = Payload(vec![0x5a; 256 * 1024]);
    for _ in 0..256 {
        agent.push(AgentMessage::Stream(StreamMessage::Data {
            conn_id,
            data: chunk.clone(),
        }));
    }
    let closed = agent
        .wait_for(|m| matches!(m, ClientMessage::Stream(StreamMessage::Close { conn_id: c, .. }) if *c == conn_id))
        .await;
    let ClientMessage::Stream(StreamMessage::Close { error, .. }) = closed else {
        unreachable!()
    };
    let error = error.expect("the close says why");
    assert!(error.contains("flow control violation"), "{error}");
    assert!(error.contains(&format!("stream {conn_id}")), "{error}");
    let outcome = tokio::task::spawn_blocking(move || {
        // The app's socket was closed: what it can still read ends, never hangs.
        let mut paused = paused;
        let mut sink = Vec::new();
        let _ = paused.read_to_end(&mut sink);
        assert!(
            sink.len() as u64 <= 64 << 20,
            "{} bytes reached the app",
            sink.len()
        );
        // The link and the session's other streams live on.
        assert_eq!(read_pod_file(&mut layer, 2), b"remote payload\n");
        let other = connect_through(&mut layer, 3, "10.96.0.2:80".parse().unwrap());
        echo_checked(
            other,
            pattern(2 * STREAM_WINDOW as usize, 5),
            64 * 1024,
            Duration::ZERO,
        );
    });
    tokio::time::timeout(Duration::from_secs(120), outcome)
        .await
        .expect("the session hung")
        .unwrap();
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_flow_control_is_refused_at_the_hello() {
    common::init_tracing();
    // Protocol 1 had no credit: such an agent would stall every stream after one window.
    let behavior = common::AgentBehavior {
        version: tether_protocol::flow::CREDIT_VERSION - 1,
        ..Default::default()
    };
    let agent = FakeAgent::start_with(echo_handler(), behavior).await;
    let err = AgentClient::connect(&agent.addr.to_string(), AGENT_TOKEN, LinkOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tether::agent_link::ConnectError::VersionMismatch { agent: 1, .. }
        ),
        "{err}"
    );
}
