//! End-to-end tests of [`Incoming`] in real network namespaces (root only): a "pod" netns with
//! servers, a "client" netns joined to it by a veth pair, so client traffic enters the pod through
//! PREROUTING as it does in a cluster. Sessions are plain channels driven by the test.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as Body;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether_protocol::agent::AgentMessage;
use tether_protocol::incoming::{HttpFilter, HttpResponse, IncomingEvent, IncomingMode};
use tether_protocol::outgoing::StreamMessage;
use tether_protocol::{AgentError, is_agent_conn_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::Incoming;
use super::iptables::tests::TestNetns;
use crate::netns::NetNs;
use crate::target::Target;

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const POD_IP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1);
const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 2);

/// A pod netns and a client netns joined by a veth pair.
struct Net {
    pod: TestNetns,
    pod_ns: NetNs,
    client_ns: NetNs,
    _client: TestNetns,
}

impl Net {
    fn new() -> Self {
        let pod = TestNetns::new();
        let client = TestNetns::new();
        let out = std::process::Command::new("ip")
            .args(["link", "add", "eth0", "netns", &pod.pid.to_string()])
            .args(["type", "veth", "peer", "name", "eth0", "netns"])
            .arg(client.pid.to_string())
            .output()
            .expect("ip");
        assert!(out.status.success(), "{out:?}");
        for (ns, ip, ip6) in [(&pod, POD_IP, POD_IP6), (&client, CLIENT_IP, CLIENT_IP6)] {
            ns.run("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            let ip6 = format!("{ip6}/64");
            ns.run("ip", &["-6", "addr", "add", &ip6, "dev", "eth0", "nodad"]);
            ns.run("ip", &["link", "set", "eth0", "up"]);
        }
        Self {
            pod_ns: NetNs::enter(pod.pid).unwrap(),
            client_ns: NetNs::enter(client.pid).unwrap(),
            pod,
            _client: client,
        }
    }

    async fn listen_in_pod(&self, port: u16) -> TcpListener {
        self.listen_in_pod_on(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
            .await
    }

    async fn listen_in_pod_on(&self, ip: IpAddr, port: u16) -> TcpListener {
        let l = self
            .pod_ns
            .run(move || {
                let l = std::net::TcpListener::bind((ip, port))?;
                l.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(l)
            })
            .await
            .unwrap()
            .unwrap();
        TcpListener::from_std(l).unwrap()
    }

    /// A connection from the client netns to the pod's port.
    async fn connect(&self, port: u16) -> TcpStream {
        self.connect_to(SocketAddr::from((POD_IP, port))).await
    }

    async fn connect_to(&self, addr: SocketAddr) -> TcpStream {
        let domain = socket2::Domain::for_address(addr);
        let s = self
            .client_ns
            .run(move || {
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(s)
            })
            .await
            .unwrap()
            .unwrap();
        tokio::net::TcpSocket::from_std_stream(s.into())
            .connect(addr)
            .await
            .unwrap()
    }

    fn nat_rules(&self) -> String {
        self.pod.run("iptables-save", &["-t", "nat"])
    }
}

/// The pod's HTTP server: answers `pod <method> <path>`, over HTTP/1.1 or HTTP/2.
fn http_server(listener: TcpListener) {
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Body>| async move {
                    let text = format!("pod {} {}", req.method(), req.uri().path());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

/// The pod's TCP echo server.
fn echo_server(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

async fn incoming(net: &Net) -> Incoming {
    let target = Arc::new(Target::open(net.pod.pid).unwrap());
    Incoming::build(target, "test", None)
}

/// A fake session answering stolen requests with `<name> <method> <uri>`.
fn answering_session(
    incoming: Arc<Incoming>,
    id: u64,
    name: &'static str,
) -> mpsc::Sender<AgentMessage> {
    let (tx, mut rx) = mpsc::channel::<AgentMessage>(64);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let AgentMessage::Incoming(IncomingEvent::Request(r)) = msg {
                let body = format!("{name} {} {}", r.method, r.uri);
                incoming
                    .http_response(
                        id,
                        HttpResponse {
                            id: r.id,
                            status: 200,
                            headers: vec![],
                            body: body.into_bytes().into(),
                        },
                    )
                    .await;
            }
        }
    });
    tx
}

/// An HTTP/1.1 client connection from the client netns.
async fn http1_client(
    net: &Net,
    port: u16,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(net.connect(port).await))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut req = Request::get(path).header("host", "pod");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send.ready().await.unwrap();
    let resp = send
        .send_request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

async fn next_event(rx: &mut mpsc::Receiver<AgentMessage>) -> AgentMessage {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event within 5 s")
        .expect("channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_while_the_pod_answers() {
    let net = Net::new();
    http_server(net.listen_in_pod(8080).await);
    let inc = incoming(&net).await;
    let (tx1, mut rx1) = mpsc::channel(64);
    let (tx2, mut rx2) = mpsc::channel(64);
    inc.subscribe(1, 8080, IncomingMode::Mirror, None, tx1)
        .await
        .unwrap();
    inc.subscribe(2, 8080, IncomingMode::Mirror, None, tx2)
        .await
        .unwrap();
    assert!(net.nat_rules().contains("--dport 8080 -j REDIRECT"));
    let mut c = http1_client(&net, 8080).await;
    assert_eq!(get(&mut c, "/m", &[]).await, "pod GET /m");
    for rx in [&mut rx1, &mut rx2] {
        let AgentMessage::Incoming(IncomingEvent::NewConnection {
            conn_id,
            mode,
            port,
            client,
            server,
        }) = next_event(rx).await
        else {
            panic!("expected a new connection");
        };
        assert!(is_agent_conn_id(conn_id));
        assert_eq!((mode, port), (IncomingMode::Mirror, 8080));
        assert_eq!(client.ip(), CLIENT_IP);
        assert_eq!(server, SocketAddr::from((POD_IP, 8080)));
        let AgentMessage::Stream(StreamMessage::Data { data, .. }) = next_event(rx).await else {
            panic!("expected data");
        };
        assert!(
            data.as_slice().starts_with(b"GET /m HTTP/1.1\r\n"),
            "{data:?}"
        );
    }
    inc.release_session(1).await;
    inc.release_session(2).await;
    assert!(!net.nat_rules().contains("REDIRECT"), "{}", net.nat_rules());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steal_whole_port() {
    let net = Net::new();
    echo_server(net.listen_in_pod(7000).await);
    let inc = Arc::new(incoming(&net).await);
    let (tx, mut rx) = mpsc::channel(64);
    inc.subscribe(1, 7000, IncomingMode::Steal, None, tx)
        .await
        .unwrap();
    let mut client = net.connect(7000).await;
    client.write_all(b"ping").await.unwrap();
    let AgentMessage::Incoming(IncomingEvent::NewConnection { conn_id, mode, .. }) =
        next_event(&mut rx).await
    else {
        panic!("expected a new connection")
    };
    assert_eq!(mode, IncomingMode::Steal);
    let AgentMessage::Stream(StreamMessage::Data { data, .. }) = next_event(&mut rx).await else {
        panic!("expected data")
    };
    assert_eq!(data.as_slice(), b"ping");
    inc.from_session(
        1,
        StreamMessage::Data {
            conn_id,
            data: b"stolen".as_slice().into(),
        },
    );
    let mut buf = [0u8; 6];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"stolen");
    // Client half-close reaches the session; the session's close ends the connection.
    client.shutdown().await.unwrap();
    assert!(matches!(
        next_event(&mut rx).await,
        AgentMessage::Stream(StreamMessage::Eof { .. })
    ));
    inc.from_session(
        1,
        StreamMessage::Close {
            conn_id,
            error: None,
        },
    );
    assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    // Another session cannot steal the port, not even with a filter; a mirror can join.
    let (tx2, _rx2) = mpsc::channel(64);
    let err = inc
        .subscribe(
            2,
            7000,
            IncomingMode::Steal,
            Some(HttpFilter::Path("/".into())),
            tx2.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(err, AgentError::PortAlreadyStolen { port: 7000 });
    inc.subscribe(2, 7000, IncomingMode::Mirror, None, tx2)
        .await
        .unwrap();
    // Once released, the pod's own server answers again.
    inc.release_session(1).await;
    inc.release_session(2).await;
    let mut client = net.connect(7000).await;
    client.write_all(b"echo").await.unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_steals_split_a_keep_alive_connection() {
    let net = Net::new();
    http_server(net.listen_in_pod(8081).await);
    let inc = Arc::new(incoming(&net).await);
    let s1 = answering_session(inc.clone(), 1, "alice");
    let s2 = answering_session(inc.clone(), 2, "bob");
    inc.subscribe(
        1,
        8081,
        IncomingMode::Steal,
        Some(HttpFilter::Header("^x-user: alice$".into())),
        s1,
    )
    .await
    .unwrap();
    let filter2 = HttpFilter::AllOf(vec![
        HttpFilter::Method("post".into()),
        HttpFilter::Path("^/api/".into()),
    ]);
    inc.subscribe(2, 8081, IncomingMode::Steal, Some(filter2), s2.clone())
        .await
        .unwrap();
    // An unfiltered steal overlaps both.
    let (tx3, _rx3) = mpsc::channel(4);
    assert_eq!(
        inc.subscribe(3, 8081, IncomingMode::Steal, None, tx3)
            .await
            .unwrap_err(),
        AgentError::PortAlreadyStolen { port: 8081 }
    );
    let mut c = http1_client(&net, 8081).await;
    assert_eq!(
        get(&mut c, "/a", &[("X-User", "Alice")]).await,
        "alice GET /a"
    );
    assert_eq!(
        get(&mut c, "/b", &[("x-user", "carol")]).await,
        "pod GET /b"
    );
    assert_eq!(
        get(&mut c, "/c?q=1", &[("x-user", "alice")]).await,
        "alice GET /c?q=1"
    );
    assert_eq!(get(&mut c, "/api/x", &[]).await, "pod GET /api/x");
    let req = Request::post("/api/x")
        .header("host", "pod")
        .body(Full::from("data"))
        .unwrap();
    c.ready().await.unwrap();
    let body = c
        .send_request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "bob POST /api/x");
    assert_eq!(get(&mut c, "/d", &[]).await, "pod GET /d");

    // HTTP/2 with prior knowledge, same filters.
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(net.connect(8081).await),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (user, want) in [("alice", "alice GET /h2"), ("dave", "pod GET /h2")] {
        let req = Request::get("http://pod/h2")
            .header("x-user", user)
            .body(Full::<Bytes>::default())
            .unwrap();
        let body = h2
            .send_request(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, want);
    }
    // After alice leaves, her requests reach the pod on the same connection.
    inc.unsubscribe(1, 8081).await.unwrap();
    assert_eq!(
        get(&mut c, "/a", &[("x-user", "alice")]).await,
        "pod GET /a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_mirror_never_slows_the_connection() {
    let net = Net::new();
    echo_server(net.listen_in_pod(7001).await);
    let inc = incoming(&net).await;
    // A mirror session that reads nothing until the transfer is over.
    let (tx, mut rx) = mpsc::channel(1);
    inc.subscribe(1, 7001, IncomingMode::Mirror, None, tx)
        .await
        .unwrap();
    let client = net.connect(7001).await;
    let (mut r, mut w) = client.into_split();
    const LEN: usize = 24 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..LEN / chunk.len() {
            w.write_all(&chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
    })
    .await
    .expect("echo done while the mirror is stuck");
    writer.await.unwrap();
    assert_eq!(got, LEN);
    // The mirror lost the connection with a reason instead of buffering it all.
    let mut copied = 0;
    loop {
        match next_event(&mut rx).await {
            AgentMessage::Stream(StreamMessage::Data { data, .. }) => copied += data.len(),
            AgentMessage::Stream(StreamMessage::Close { error, .. }) => {
                assert!(error.unwrap().contains("fell more than"));
                break;
            }
            _ => {}
        }
    }
    assert!(copied < LEN, "{copied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_connection_is_read_within_the_sessions_credit() {
    use tether_protocol::flow::STREAM_WINDOW;
    let net = Net::new();
    let inc = Arc::new(incoming(&net).await);
    let (tx, mut rx) = mpsc::channel(4096);
    inc.subscribe(1, 7003, IncomingMode::Steal, None, tx)
        .await
        .unwrap();
    let (mut cr, mut cw) = net.connect(7003).await.into_split();
    // More than the window plus what the sockets on the way can buffer.
    const LEN: usize = 32 << 20;
    let payload: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        cw.write_all(&sent).await.unwrap();
        cw.shutdown().await.unwrap();
    });
    let AgentMessage::Incoming(IncomingEvent::NewConnection { conn_id, .. }) =
        next_event(&mut rx).await
    else {
        panic!("expected a new connection")
    };
    // The session returns no credit: the agent stops reading the client after one window.
    let mut got = Vec::new();
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        match m {
            Some(AgentMessage::Stream(StreamMessage::Data { data, .. })) => got.extend(data.0),
            other => panic!("{other:?}"),
        }
    }
    assert!(!got.is_empty());
    assert!(got.len() as u64 <= STREAM_WINDOW, "{} bytes", got.len());
    assert!(!writer.is_finished(), "the client was not pushed back");
    // Credit as the session consumes: every byte arrives, in order.
    let mut owed = got.len() as u64;
    while got.len() < LEN {
        inc.from_session(
            1,
            StreamMessage::Credit {
                conn_id,
                bytes: std::mem::take(&mut owed),
            },
        );
        match next_event(&mut rx).await {
            AgentMessage::Stream(StreamMessage::Data { data, .. }) => {
                owed += data.len() as u64;
                got.extend(data.0);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(got == payload, "the stolen bytes differ");
    writer.await.unwrap();
    assert!(matches!(
        next_event(&mut rx).await,
        AgentMessage::Stream(StreamMessage::Eof { .. })
    ));
    // A session that sends past its window loses the connection, with the reason.
    inc.from_session(
        1,
        StreamMessage::Data {
            conn_id,
            data: vec![0u8; STREAM_WINDOW as usize + 1].into(),
        },
    );
    let error = loop {
        match next_event(&mut rx).await {
            AgentMessage::Stream(StreamMessage::Close { error, .. }) => break error,
            AgentMessage::Stream(StreamMessage::Credit { .. }) => {}
            other => panic!("{other:?}"),
        }
    };
    let error = error.expect("the close says why");
    assert!(error.contains("flow control violation"), "{error}");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), cr.read_to_end(&mut rest))
        .await
        .expect("the client's connection ends")
        .unwrap();
}

/// The pod's server that switches `Upgrade: echo` requests to a byte echo.
fn upgrade_echo_server(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|mut req: Request<Body>| async move {
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(up) = on.await {
                            let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                    });
                    let resp = Response::builder()
                        .status(101)
                        .header("connection", "upgrade")
                        .header("upgrade", "echo")
                        .body(Full::<Bytes>::default())
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through_a_filtered_port() {
    let net = Net::new();
    upgrade_echo_server(net.listen_in_pod(8082).await);
    let inc = Arc::new(incoming(&net).await);
    let s1 = answering_session(inc.clone(), 1, "alice");
    let filter = HttpFilter::Header("^x-user: alice$".into());
    inc.subscribe(1, 8082, IncomingMode::Steal, Some(filter), s1)
        .await
        .unwrap();
    let mut c = net.connect(8082).await;
    c.write_all(b"GET /ws HTTP/1.1\r\nhost: pod\r\nconnection: upgrade\r\nupgrade: echo\r\nx-user: alice\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).await.unwrap(), 1, "{head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    c.write_all(b"over the upgrade").await.unwrap();
    let mut buf = [0u8; 16];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"over the upgrade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_stolen_and_mirrored() {
    let net = Net::new();
    echo_server(
        net.listen_in_pod_on(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 7002)
            .await,
    );
    let inc = Arc::new(incoming(&net).await);
    let (tx, mut rx) = mpsc::channel(64);
    inc.subscribe(1, 7002, IncomingMode::Steal, None, tx)
        .await
        .unwrap();
    assert!(
        net.pod
            .run("ip6tables-save", &["-t", "nat"])
            .contains("--dport 7002 -j REDIRECT"),
        "{}",
        net.pod.run("ip6tables-save", &["-t", "nat"])
    );
    let pod6 = SocketAddr::from((POD_IP6, 7002));
    let mut client = net.connect_to(pod6).await;
    client.write_all(b"six").await.unwrap();
    let AgentMessage::Incoming(IncomingEvent::NewConnection {
        conn_id,
        client: peer,
        server,
        ..
    }) = next_event(&mut rx).await
    else {
        panic!("expected a new connection")
    };
    assert_eq!((peer.ip(), server), (IpAddr::V6(CLIENT_IP6), pod6));
    inc.from_session(
        1,
        StreamMessage::Data {
            conn_id,
            data: b"stolen six".as_slice().into(),
        },
    );
    let mut buf = [0u8; 10];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"stolen six");

    // Mirror over IPv6: the pod's echo answers, the session gets the copy.
    inc.release_session(1).await;
    let (tx, mut rx) = mpsc::channel(64);
    inc.subscribe(2, 7002, IncomingMode::Mirror, None, tx)
        .await
        .unwrap();
    let mut client = net.connect_to(pod6).await;
    client.write_all(b"mirror").await.unwrap();
    let mut buf = [0u8; 6];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"mirror");
    assert!(matches!(
        next_event(&mut rx).await,
        AgentMessage::Incoming(IncomingEvent::NewConnection { .. })
    ));
    let AgentMessage::Stream(StreamMessage::Data { data, .. }) = next_event(&mut rx).await else {
        panic!("expected the copy")
    };
    assert_eq!(data.as_slice(), b"mirror");
    inc.release_session(2).await;
    assert!(
        !net.pod
            .run("ip6tables-save", &["-t", "nat"])
            .contains("REDIRECT")
    );
}
