//! The session router against a fake agent and fake layer connections.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{AGENT_TOKEN, FakeAgent, FakeLayer, POD_HOSTNAME, hello, standard_handler};
use tether::agent_link::{AgentClient, LinkOptions};
use tether::session::{ListenKind, SessionOptions};
use tether_protocol::AGENT_CONN_ID_BIT;
use tether_protocol::agent::{AgentMessage, ClientMessage, Request, Response};
use tether_protocol::file::{FileRequest, FileResponse};
use tether_protocol::incoming::{
    Header, HttpFilter, HttpRequest, HttpVersion, IncomingEvent, IncomingMode, IncomingRequest,
};
use tether_protocol::layer::{LayerRequest, LayerResponse};
use tether_protocol::outgoing::StreamMessage;

/// A port subscription or its end.
fn is_incoming_request(m: &ClientMessage) -> bool {
    matches!(
        m,
        ClientMessage::Request {
            body: Request::Incoming(_),
            ..
        }
    )
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_refused_and_good_token_gets_policy() {
    common::init_tracing();
    let agent = FakeAgent::start(standard_handler()).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Unix)
        .await;
    let addr = session.address().to_owned();
    assert!(addr.starts_with("unix:"), "{addr}");
    // The socket's directory is private to the user.
    let dir = std::path::Path::new(addr.strip_prefix("unix:").unwrap())
        .parent()
        .unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    let token = session.token().to_owned();
    let (refused, policy) = blocking(move || {
        let refused = FakeLayer::connect(&addr, hello("not-the-token", 10, 1)).err();
        let (_l, h) = FakeLayer::connect(&addr, hello(&token, 10, 1)).unwrap();
        (refused, h.policy)
    })
    .await
    .unwrap();
    assert_eq!(refused.as_deref(), Some("wrong session token"));
    assert_eq!(policy.hostname.as_deref(), Some(POD_HOSTNAME));
    assert!(policy.ignore_ports.contains(&9229));
    assert!(!policy.fs_rules.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_remapped_across_concurrent_connections() {
    common::init_tracing();
    // Hold reads until both have arrived, then answer them in reverse order.
    let held: Arc<std::sync::Mutex<Vec<(u64, u64)>>> = Arc::default();
    let h2 = held.clone();
    let handler: common::Handler = Arc::new(move |m| {
        let ClientMessage::Request {
            id,
            body: Request::File(FileRequest::Read { fd, .. }),
        } = m
        else {
            return vec![];
        };
        let mut held = h2.lock().unwrap();
        held.push((*id, *fd));
        if held.len() < 2 {
            return vec![];
        }
        held.iter()
            .rev()
            .map(|(id, fd)| AgentMessage::Response {
                id: *id,
                result: Ok(Response::File(FileResponse::Data(
                    format!("fd {fd}").into_bytes().into(),
                ))),
            })
            .collect()
    });
    let agent = FakeAgent::start(handler).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Tcp)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let read = |fd| LayerRequest::File(FileRequest::Read { fd, len: 10 });
    let mut joins = Vec::new();
    for (pid, fd) in [(100, 1), (200, 2)] {
        let (addr, token) = (addr.clone(), token.clone());
        joins.push(blocking(move || {
            let (mut l, _) = FakeLayer::connect(&addr, hello(&token, pid, 1)).unwrap();
            // Both connections use the same request id.
            l.request(7, read(fd))
        }));
    }
    for (j, fd) in joins.into_iter().zip([1, 2]) {
        let r = j.await.unwrap().unwrap();
        assert_eq!(
            r,
            LayerResponse::File(FileResponse::Data(format!("fd {fd}").into_bytes().into()))
        );
    }
    let ids: Vec<u64> = held.lock().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "agent-side ids must be unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_tcp_goes_through_an_interceptor() {
    common::init_tracing();
    let mut agent = FakeAgent::start(standard_handler()).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Unix)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let remote: SocketAddr = "10.96.0.10:5432".parse().unwrap();
    let echoed = blocking(move || {
        let (mut l, _) = FakeLayer::connect(&addr, hello(&token, 300, 1)).unwrap();
        let LayerResponse::Intercepted {
            interceptor,
            remote_local,
        } = l.request(1, LayerRequest::ConnectTcp { remote }).unwrap()
        else {
            panic!("not intercepted");
        };
        assert_eq!(remote_local, "10.1.2.3:40000".parse().unwrap());
        assert!(interceptor.ip().is_loopback());
        let mut s = StdStream::connect(interceptor).unwrap();
        // 4 MiB each way through the agent stream, then a half-close.
        let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| b"abcdefgh"[i % 8]).collect();
        let mut reader = s.try_clone().unwrap();
        let rd = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        s.write_all(&payload).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let got = rd.join().unwrap();
        (payload, got)
    });
    let (sent, got) = echoed.await.unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent.to_ascii_uppercase());
    let m = agent
        .wait_for(|m| matches!(m, ClientMessage::Stream(StreamMessage::Close { .. })))
        .await;
    let ClientMessage::Stream(StreamMessage::Close { error, .. }) = m else {
        unreachable!()
    };
    assert_eq!(error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_steal_delivers_into_the_local_listener() {
    common::init_tracing();
    let mut agent = FakeAgent::start(standard_handler()).await;
    let options = SessionOptions {
        incoming: Some(IncomingMode::Steal),
        ..SessionOptions::default()
    };
    let session = agent.session(options, ListenKind::Unix).await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let app = StdListener::bind("127.0.0.1:0").unwrap();
    let local = app.local_addr().unwrap();
    // The app listens on a wildcard address, as servers usually do.
    let announced: SocketAddr = format!("0.0.0.0:{}", local.port()).parse().unwrap();
    let layer = blocking(move || FakeLayer::listening(&addr, &token, 400, announced, 8080))
        .await
        .unwrap();
    let sub = agent.wait_for(is_incoming_request).await;
    assert!(matches!(
        sub,
        ClientMessage::Request {
            body: Request::Incoming(IncomingRequest::Subscribe {
                port: 8080,
                mode: IncomingMode::Steal,
                filter: None
            }),
            ..
        }
    ));

    let conn_id = AGENT_CONN_ID_BIT | 1;
    agent.push(AgentMessage::Incoming(IncomingEvent::NewConnection {
        conn_id,
        port: 8080,
        mode: IncomingMode::Steal,
        client: "10.0.0.9:51000".parse().unwrap(),
        server: "10.1.2.3:8080".parse().unwrap(),
    }));
    agent.push(AgentMessage::Stream(StreamMessage::Data {
        conn_id,
        data: b"ping".as_slice().into(),
    }));
    let server = std::thread::spawn(move || {
        let (mut s, _) = app.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong").unwrap();
        buf
    });
    let data = agent
        .wait_for(|m| matches!(m, ClientMessage::Stream(StreamMessage::Data { .. })))
        .await;
    assert_eq!(server.join().unwrap(), *b"ping");
    assert_eq!(
        data,
        ClientMessage::Stream(StreamMessage::Data {
            conn_id,
            data: b"pong".as_slice().into()
        })
    );

    // The process exits: the port is released.
    drop(layer);
    agent
        .wait_for(|m| {
            matches!(
                m,
                ClientMessage::Request {
                    body: Request::Incoming(IncomingRequest::Unsubscribe { port: 8080 }),
                    ..
                }
            )
        })
        .await;
}

/// A minimal HTTP/1.1 server: answers each request with its method and path. With `keep_alive`
/// it serves many requests per connection, else it closes after one. Counts connections.
fn spawn_http_app(keep_alive: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = conns.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                loop {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        req.extend_from_slice(&buf[..n]);
                    }
                    let text = String::from_utf8_lossy(&req).to_string();
                    let head = text.split("\r\n\r\n").next().unwrap().to_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = req[head.len() + 4..].to_vec();
                    while body.len() < len {
                        let n = s.read(&mut buf).unwrap();
                        body.extend_from_slice(&buf[..n]);
                    }
                    let first = head.lines().next().unwrap();
                    let has_trace = head.to_ascii_lowercase().contains("x-trace: t1");
                    let answer = format!(
                        "{first} trace={has_trace} body={}",
                        String::from_utf8_lossy(&body)
                    );
                    let resp = format!(
                        "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nX-App: local\r\n\r\n{answer}",
                        answer.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() || !keep_alive {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

fn stolen(id: u64, path: &str) -> AgentMessage {
    AgentMessage::Incoming(IncomingEvent::Request(HttpRequest {
        id,
        port: 80,
        client: "10.0.0.9:51000".parse().unwrap(),
        method: "GET".into(),
        uri: path.into(),
        version: HttpVersion::Http11,
        headers: vec![Header {
            name: "Host".into(),
            value: b"api".as_slice().into(),
        }],
        body: Default::default(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_requests_reuse_or_replace_local_connections() {
    common::init_tracing();
    for keep_alive in [true, false] {
        let mut agent = FakeAgent::start(standard_handler()).await;
        let options = SessionOptions {
            incoming: Some(IncomingMode::Steal),
            http_filter: Some(HttpFilter::Path("/".into())),
            ..SessionOptions::default()
        };
        let session = agent.session(options, ListenKind::Unix).await;
        let (addr, token) = (session.address().to_owned(), session.token().to_owned());
        let (app, conns) = spawn_http_app(keep_alive);
        let _layer = blocking(move || FakeLayer::listening(&addr, &token, 1200, app, 80))
            .await
            .unwrap();
        for (id, path) in [(1, "/a"), (2, "/b"), (3, "/c")] {
            agent.push(stolen(id, path));
            let m = agent
                .wait_for(|m| matches!(m, ClientMessage::HttpResponse(_)))
                .await;
            let ClientMessage::HttpResponse(r) = m else {
                unreachable!()
            };
            assert_eq!((r.id, r.status), (id, 201));
            assert!(
                String::from_utf8_lossy(r.body.as_slice()).starts_with(&format!("GET {path} ")),
                "keep_alive={keep_alive}"
            );
        }
        let n = conns.load(std::sync::atomic::Ordering::SeqCst);
        if keep_alive {
            assert_eq!(n, 1, "requests did not share a connection");
        } else {
            assert_eq!(n, 3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_http_request_is_answered_by_the_local_server() {
    common::init_tracing();
    let mut agent = FakeAgent::start(standard_handler()).await;
    let filter = HttpFilter::Header("x-trace: t1".into());
    let options = SessionOptions {
        incoming: Some(IncomingMode::Steal),
        http_filter: Some(filter.clone()),
        ..SessionOptions::default()
    };
    let session = agent.session(options, ListenKind::Unix).await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let (app, _) = spawn_http_app(false);
    let _layer = blocking(move || FakeLayer::listening(&addr, &token, 500, app, 80))
        .await
        .unwrap();
    let sub = agent.wait_for(is_incoming_request).await;
    let ClientMessage::Request {
        body: Request::Incoming(IncomingRequest::Subscribe { filter: f, .. }),
        ..
    } = sub
    else {
        panic!("{sub:?}")
    };
    assert_eq!(f, Some(filter));

    agent.push(AgentMessage::Incoming(IncomingEvent::Request(
        HttpRequest {
            id: 99,
            port: 80,
            client: "10.0.0.9:51000".parse().unwrap(),
            method: "POST".into(),
            uri: "/orders?x=1".into(),
            version: HttpVersion::Http11,
            headers: vec![
                Header {
                    name: "Host".into(),
                    value: b"api".as_slice().into(),
                },
                Header {
                    name: "X-Trace".into(),
                    value: b"t1".as_slice().into(),
                },
                Header {
                    name: "Transfer-Encoding".into(),
                    value: b"chunked".as_slice().into(),
                },
            ],
            body: b"{\"n\":1}".as_slice().into(),
        },
    )));
    let resp = agent
        .wait_for(|m| matches!(m, ClientMessage::HttpResponse(_)))
        .await;
    let ClientMessage::HttpResponse(resp) = resp else {
        unreachable!()
    };
    assert_eq!(resp.id, 99);
    assert_eq!(resp.status, 201);
    assert_eq!(
        String::from_utf8_lossy(resp.body.as_slice()),
        "POST /orders?x=1 HTTP/1.1 trace=true body={\"n\":1}"
    );
    assert!(
        resp.headers
            .iter()
            .any(|h| h.name == "x-app" && h.value.as_slice() == b"local")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_death_fails_pending_and_new_requests_promptly() {
    common::init_tracing();
    // Reads are never answered.
    let handler: common::Handler = Arc::new(|_| vec![]);
    let mut agent = FakeAgent::start(handler).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Unix)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let layer = blocking(move || {
        let (mut l, _) = FakeLayer::connect(&addr, hello(&token, 600, 1)).unwrap();
        l.send(1, LayerRequest::File(FileRequest::Read { fd: 3, len: 1 }));
        let (_, first) = l.recv();
        let started = Instant::now();
        let second = l.request(
            2,
            LayerRequest::ConnectTcp {
                remote: "10.0.0.1:80".parse().unwrap(),
            },
        );
        (first, second, started.elapsed())
    });
    agent
        .wait_for(|m| matches!(m, ClientMessage::Request { .. }))
        .await;
    let killed = Instant::now();
    agent.kill();
    let (first, second, second_took) = layer.await.unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        killed.elapsed()
    );
    assert_eq!(first.unwrap_err().errno, libc::EIO);
    assert_eq!(second.unwrap_err().errno, libc::ECONNRESET);
    assert!(second_took < Duration::from_millis(500));
    assert!(session.agent().down_reason().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_fds_are_closed_when_their_last_holder_exits() {
    common::init_tracing();
    let mut agent = FakeAgent::start(standard_handler()).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Unix)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let open = LayerRequest::File(FileRequest::Open {
        path: "/etc/app.yaml".into(),
        options: Default::default(),
    });
    let (parent, child) = blocking(move || {
        let (mut parent, _) = FakeLayer::connect(&addr, hello(&token, 700, 1)).unwrap();
        let r = parent.request(1, open).unwrap();
        assert!(matches!(
            r,
            LayerResponse::File(FileResponse::Opened { fd: 42, .. })
        ));
        // A forked child inherits fd 42; its close must not reach the agent.
        let (mut child, _) = FakeLayer::connect(&addr, hello(&token, 701, 700)).unwrap();
        let r = child.request(1, LayerRequest::File(FileRequest::Close { fd: 42 }));
        assert_eq!(r.unwrap(), LayerResponse::File(FileResponse::Done));
        // Inherit again through a second child that never closes it.
        let (grandchild, _) = FakeLayer::connect(&addr, hello(&token, 702, 700)).unwrap();
        (parent, (child, grandchild))
    })
    .await
    .unwrap();
    drop(child.0);
    drop(parent);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = |m: &ClientMessage| {
        matches!(
            m,
            ClientMessage::Request {
                body: Request::File(FileRequest::Close { fd: 42 }),
                ..
            }
        )
    };
    assert!(
        !agent.received.lock().unwrap().iter().any(closed),
        "closed while the grandchild still holds it"
    );
    drop(child.1);
    agent.wait_for(closed).await;
    session.wait_idle(Duration::from_millis(50)).await;
    assert_eq!(session.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_is_detected_by_pings() {
    common::init_tracing();
    let handler: common::Handler = Arc::new(|_| vec![]);
    let agent = FakeAgent::start_with(
        handler,
        common::AgentBehavior {
            answer_pings: false,
            ..Default::default()
        },
    )
    .await;
    let opts = LinkOptions {
        ping_interval: Duration::from_millis(50),
        dead_after: Duration::from_millis(300),
        ..LinkOptions::default()
    };
    let (client, _events) = AgentClient::connect(&agent.addr.to_string(), AGENT_TOKEN, opts)
        .await
        .unwrap();
    let started = Instant::now();
    let err = client.request(Request::Env).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("did not answer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_udp_goes_through_a_relay_that_dies_with_the_process() {
    common::init_tracing();
    let mut agent = FakeAgent::start(standard_handler()).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Unix)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let remote: SocketAddr = "10.96.0.10:53".parse().unwrap();
    let (layer, answer) = blocking(move || {
        let (mut l, _) = FakeLayer::connect(&addr, hello(&token, 800, 1)).unwrap();
        let LayerResponse::Intercepted {
            interceptor,
            remote_local,
        } = l.request(1, LayerRequest::ConnectUdp { remote }).unwrap()
        else {
            panic!("not intercepted");
        };
        assert_eq!(remote_local, "10.1.2.3:40001".parse().unwrap());
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.connect(interceptor).unwrap();
        s.send(b"query").unwrap();
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).unwrap();
        (l, buf[..n].to_vec())
    })
    .await
    .unwrap();
    assert_eq!(answer, b"QUERY");
    let sent = agent
        .wait_for(|m| matches!(m, ClientMessage::Stream(StreamMessage::Datagram { .. })))
        .await;
    let ClientMessage::Stream(StreamMessage::Datagram { conn_id, peer, .. }) = sent else {
        unreachable!()
    };
    assert_eq!(peer, remote);
    drop(layer);
    agent
        .wait_for(|m| {
            m == &ClientMessage::Stream(StreamMessage::Close {
                conn_id,
                error: None,
            })
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_connection_copies_to_the_app_and_drops_its_replies() {
    common::init_tracing();
    let agent = FakeAgent::start(standard_handler()).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Unix)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let app = StdListener::bind("127.0.0.1:0").unwrap();
    let local = app.local_addr().unwrap();
    let _layer = blocking(move || FakeLayer::listening(&addr, &token, 900, local, 9000))
        .await
        .unwrap();
    let conn_id = AGENT_CONN_ID_BIT | 7;
    agent.push(AgentMessage::Incoming(IncomingEvent::NewConnection {
        conn_id,
        port: 9000,
        mode: IncomingMode::Mirror,
        client: "10.0.0.9:51000".parse().unwrap(),
        server: "10.1.2.3:9000".parse().unwrap(),
    }));
    agent.push(AgentMessage::Stream(StreamMessage::Data {
        conn_id,
        data: b"copy".as_slice().into(),
    }));
    agent.push(AgentMessage::Stream(StreamMessage::Close {
        conn_id,
        error: None,
    }));
    let (got, rest) = blocking(move || {
        let (mut s, _) = app.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        let _ = s.write_all(b"reply that must be dropped");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (buf, rest)
    })
    .await
    .unwrap();
    assert_eq!(&got, b"copy");
    assert!(rest.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let leaked = agent.received.lock().unwrap().iter().any(|m| {
        matches!(m, ClientMessage::Stream(StreamMessage::Data { conn_id: c, .. }) if *c == conn_id)
    });
    assert!(!leaked, "a mirrored connection's reply reached the agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_that_stops_reading_does_not_hang_senders() {
    common::init_tracing();
    use futures::{SinkExt, StreamExt};
    use tether_protocol::agent::{AgentHello, TargetInfo};
    use tether_protocol::codec::FrameCodec;
    use tokio_util::codec::Framed;
    // Says hello, then never reads again: the connection stays open but stops draining.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stuck = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut f = Framed::new(sock, FrameCodec::<AgentMessage, ClientMessage>::new());
        let _hello = f.next().await;
        f.send(AgentMessage::Hello(AgentHello {
            protocol_version: tether_protocol::PROTOCOL_VERSION,
            agent: "stuck".into(),
            target: TargetInfo {
                pid: 1,
                hostname: "h".into(),
            },
        }))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(f);
    });
    let opts = LinkOptions {
        ping_interval: Duration::from_millis(50),
        dead_after: Duration::from_millis(500),
        ..LinkOptions::default()
    };
    let (client, _events) = AgentClient::connect(&addr.to_string(), AGENT_TOKEN, opts)
        .await
        .unwrap();
    let stream = client.open_stream().unwrap();
    let sender = client.clone();
    let flood = tokio::spawn(async move {
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..2000 {
            let msg = ClientMessage::Stream(StreamMessage::Data {
                conn_id: stream.conn_id(),
                data: chunk.clone().into(),
            });
            if sender.send(msg).await.is_err() {
                return true;
            }
        }
        false
    });
    let started = Instant::now();
    let failed = tokio::time::timeout(Duration::from_secs(10), flood)
        .await
        .expect("a sender hung on a stuck agent")
        .unwrap();
    assert!(failed, "2 GB went into a peer that reads nothing");
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = client.request(Request::Env).await.unwrap_err();
    assert!(err.to_string().contains("did not answer"), "{err}");
    stuck.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_destinations_get_an_ipv6_interceptor() {
    common::init_tracing();
    let agent = FakeAgent::start(standard_handler()).await;
    let session = agent
        .session(SessionOptions::default(), ListenKind::Tcp)
        .await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    let got = blocking(move || {
        let (mut l, _) = FakeLayer::connect(&addr, hello(&token, 1000, 1)).unwrap();
        let remote: SocketAddr = "[fd00::5]:443".parse().unwrap();
        let LayerResponse::Intercepted { interceptor, .. } =
            l.request(1, LayerRequest::ConnectTcp { remote }).unwrap()
        else {
            panic!("not intercepted");
        };
        // An AF_INET6 socket must be able to connect there (::1, or v4-mapped 127.0.0.1).
        assert!(interceptor.is_ipv6(), "{interceptor}");
        let mut s = StdStream::connect(interceptor).unwrap();
        s.write_all(b"v6").unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).unwrap();
        buf
    })
    .await
    .unwrap();
    assert_eq!(&got, b"V6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debugger_ignored_and_unlisted_ports_are_never_subscribed() {
    common::init_tracing();
    let agent = FakeAgent::start(standard_handler()).await;
    let options = SessionOptions {
        ignore_ports: vec![7000],
        only_ports: vec![8080],
        ..SessionOptions::default()
    };
    let session = agent.session(options, ListenKind::Unix).await;
    let (addr, token) = (session.address().to_owned(), session.token().to_owned());
    blocking(move || {
        let (mut l, _) = FakeLayer::connect(&addr, hello(&token, 1100, 1)).unwrap();
        for (i, port) in [9229u16, 5678, 7000, 9090].into_iter().enumerate() {
            let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let r = l.request(
                i as u64,
                LayerRequest::Listen {
                    local,
                    remote_port: port,
                },
            );
            assert_eq!(r.unwrap(), LayerResponse::Done, "port {port}");
        }
        // 8080 is listed: it is subscribed.
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        l.request(
            9,
            LayerRequest::Listen {
                local,
                remote_port: 8080,
            },
        )
        .unwrap();
    })
    .await
    .unwrap();
    let subscribed: Vec<u16> = agent
        .received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            ClientMessage::Request {
                body: Request::Incoming(IncomingRequest::Subscribe { port, .. }),
                ..
            } => Some(*port),
            _ => None,
        })
        .collect();
    assert_eq!(subscribed, vec![8080]);
}
