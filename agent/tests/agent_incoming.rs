//! Incoming traffic against real test pods: iptables REDIRECT in the pod's netns, mirror, whole
//! and filtered steal (HTTP/1.1 keep-alive and h2c), coexistence of sessions, cleanup after
//! SIGKILL and of a dead agent's rules, and the specific errors.
//!
//! Clients connect from the network's infra netns (the bridge side), so their traffic enters the
//! pod through PREROUTING as it does in a cluster.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{Agent, Client, Net, Pod};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether_protocol::agent::{AgentMessage, ClientMessage, Request as AgentRequest};
use tether_protocol::incoming::{
    Header, HttpFilter, HttpResponse, IncomingEvent, IncomingMode, IncomingRequest,
};
use tether_protocol::outgoing::StreamMessage;
use tether_protocol::{AgentError, is_agent_conn_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PORT: u16 = 8080;

/// A pod running `tether-testsrv http-echo` on [`PORT`], answering with instance `pod`.
fn http_pod(net: &Net, name: &str) -> Pod {
    let port = PORT.to_string();
    Pod::run(
        net,
        name,
        &["/testsrv", "http-echo", "--port", &port, "--name", "pod"],
    )
}

/// Runs `f` on a thread inside the netns at `path` (sockets keep the netns they are made in).
fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = File::open(path).expect("open netns");
    std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd; affects this short-lived thread only.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        f()
    })
    .join()
    .expect("netns thread")
}

/// A TCP connection from the netns at `netns` to `addr`.
async fn connect_from(netns: &Path, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = in_netns(netns, || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(s)
    })?;
    tokio::net::TcpSocket::from_std_stream(s.into())
        .connect(addr)
        .await
}

struct Env {
    net: Net,
    pod: Pod,
}

impl Env {
    async fn new(tag: &str) -> Env {
        let net = Net::up(tag);
        let pod = http_pod(&net, "web");
        let env = Env { net, pod };
        // Wait for the pod's server.
        for _ in 0..200 {
            if env.connect().await.is_ok() {
                return env;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the pod's http-echo never listened");
    }

    fn pod_addr(&self) -> SocketAddr {
        SocketAddr::from((self.pod.sandbox.ip, PORT))
    }

    /// A connection to the pod's port from the infra netns (outside the pod).
    async fn connect(&self) -> std::io::Result<TcpStream> {
        connect_from(&self.net.info.netns_path, self.pod_addr()).await
    }

    async fn http1(&self) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let (send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.connect().await.unwrap()))
                .await
                .unwrap();
        tokio::spawn(conn);
        send
    }

    /// The pod's nat tables, IPv4 then IPv6.
    fn nat_rules(&self) -> String {
        ["iptables-save", "ip6tables-save"]
            .iter()
            .map(|save| {
                let out = Command::new("ip")
                    .args(["netns", "exec", &self.pod.sandbox.netns, save, "-t", "nat"])
                    .output()
                    .expect("iptables-save");
                assert!(out.status.success(), "{out:?}");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect()
    }

    fn iptables(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.pod.sandbox.netns,
                "iptables",
                "-w",
                "-t",
                "nat",
            ])
            .args(args)
            .output()
            .expect("iptables");
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    /// Waits until no tether rule is left in the pod's nat table.
    async fn wait_rules_gone(&self) {
        for _ in 0..100 {
            if !self.nat_rules().contains("TETHER-") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tether rules left behind:\n{}", self.nat_rules());
    }
}

/// A request on an HTTP/1.1 connection; returns (answering instance, body).
async fn get(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "web");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    c.ready().await.expect("connection usable");
    let resp = c
        .send_request(req.body(Full::from("payload")).unwrap())
        .await
        .expect("response");
    let instance = resp
        .headers()
        .get("x-tether-instance")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (instance, String::from_utf8_lossy(&body).into_owned())
}

/// An agent on `pid` with extra `env`, started through `wrapper` (empty: directly).
async fn start_agent(pid: u32, env: &[(&str, &str)], wrapper: &[&str]) -> Agent {
    let pid = pid.to_string();
    Agent::spawn_wrapped(wrapper, &["--target-pid", &pid, "--agent-id", "it"], env).await
}

/// Sends an incoming request; Ok once the agent answered it, its error if it failed.
async fn incoming(s: &mut Client, req: IncomingRequest) -> Result<(), AgentError> {
    match s.request(AgentRequest::Incoming(req)).await {
        AgentMessage::Response { result, .. } => {
            result.expect("no errno for incoming requests");
            Ok(())
        }
        AgentMessage::Failed { error, .. } => Err(error),
        other => unreachable!("not an answer: {other:?}"),
    }
}

/// Subscribes to [`PORT`].
async fn subscribe(
    s: &mut Client,
    mode: IncomingMode,
    filter: Option<HttpFilter>,
) -> Result<(), AgentError> {
    incoming(
        s,
        IncomingRequest::Subscribe {
            port: PORT,
            mode,
            filter,
        },
    )
    .await
}

/// Answers every stolen request with `<name> <method> <uri>` from instance `name`, in the
/// background, until the returned task is aborted (which ends the session).
fn answer_requests(mut s: Client, name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = s.next_or_closed().await {
            if let AgentMessage::Incoming(IncomingEvent::Request(r)) = msg {
                let body = format!("{name} {} {} {}", r.method, r.uri, r.body.len());
                let resp = HttpResponse {
                    id: r.id,
                    status: 200,
                    headers: vec![Header {
                        name: "X-Tether-Instance".into(),
                        value: name.as_bytes().into(),
                    }],
                    body: body.into_bytes().into(),
                };
                s.send(ClientMessage::HttpResponse(resp)).await;
            }
        }
    })
}

#[tokio::test]
async fn two_mirror_sessions_get_copies_while_the_pod_answers() {
    let env = Env::new("mir").await;
    let agent = start_agent(env.pod.pid(), &[], &[]).await;
    let mut a = agent.client().await;
    let mut b = agent.client().await;
    subscribe(&mut a, IncomingMode::Mirror, None).await.unwrap();
    subscribe(&mut b, IncomingMode::Mirror, None).await.unwrap();
    assert!(
        env.nat_rules()
            .contains(&format!("--dport {PORT} -j REDIRECT"))
    );

    let mut c = env.http1().await;
    let (instance, body) = get(&mut c, "GET", "/mirrored", &[]).await;
    assert_eq!(instance, "pod", "{body}");
    for s in [&mut a, &mut b] {
        let AgentMessage::Incoming(IncomingEvent::NewConnection {
            conn_id,
            mode,
            port,
            server,
            ..
        }) = s.recv().await
        else {
            panic!("expected a new connection")
        };
        assert!(is_agent_conn_id(conn_id));
        assert_eq!(
            (mode, port, server),
            (IncomingMode::Mirror, PORT, env.pod_addr())
        );
        let mut copy = Vec::new();
        while !copy.ends_with(b"payload") {
            match s.recv().await {
                AgentMessage::Stream(StreamMessage::Data { conn_id: c, data }) => {
                    assert_eq!(c, conn_id);
                    copy.extend_from_slice(data.as_slice());
                }
                other => panic!("expected data, got {other:?}"),
            }
        }
        assert!(copy.starts_with(b"GET /mirrored HTTP/1.1\r\n"));
    }
    // A mirror does not keep others from stealing: an unfiltered steal joins it.
    let mut thief = agent.client().await;
    subscribe(&mut thief, IncomingMode::Steal, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn steal_whole_port_then_release() {
    let env = Env::new("whl").await;
    let agent = start_agent(env.pod.pid(), &[], &[]).await;
    let mut s = agent.client().await;
    subscribe(&mut s, IncomingMode::Steal, None).await.unwrap();
    // A second unfiltered steal, and a filtered one, overlap it.
    let mut other = agent.client().await;
    assert_eq!(
        subscribe(&mut other, IncomingMode::Steal, None).await,
        Err(AgentError::PortAlreadyStolen { port: PORT })
    );
    assert_eq!(
        subscribe(
            &mut other,
            IncomingMode::Steal,
            Some(HttpFilter::Path("/x".into()))
        )
        .await,
        Err(AgentError::PortAlreadyStolen { port: PORT })
    );

    let mut client = env.connect().await.unwrap();
    client.write_all(b"hello agent").await.unwrap();
    let AgentMessage::Incoming(IncomingEvent::NewConnection {
        conn_id,
        mode: IncomingMode::Steal,
        client: peer,
        ..
    }) = s.recv().await
    else {
        panic!("expected a stolen connection")
    };
    assert_eq!(peer.ip(), env.net.info.gateway);
    let AgentMessage::Stream(StreamMessage::Data { data, .. }) = s.recv().await else {
        panic!("expected data")
    };
    assert_eq!(data.as_slice(), b"hello agent");
    s.send(ClientMessage::Stream(StreamMessage::Data {
        conn_id,
        data: b"hello client".as_slice().into(),
    }))
    .await;
    let mut buf = [0u8; 12];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello client");
    s.send(ClientMessage::Stream(StreamMessage::Close {
        conn_id,
        error: None,
    }))
    .await;
    assert_eq!(
        client.read(&mut buf).await.unwrap(),
        0,
        "closed by the session"
    );

    // A client inside the pod connecting to the pod's own address (OUTPUT hook) is stolen too.
    let mut inner = connect_from(&env.pod.sandbox.netns_path, env.pod_addr())
        .await
        .unwrap();
    inner.write_all(b"from inside").await.unwrap();
    let AgentMessage::Incoming(IncomingEvent::NewConnection {
        mode: IncomingMode::Steal,
        client: peer,
        ..
    }) = next_non_close(&mut s).await
    else {
        panic!("expected a stolen connection from inside the pod")
    };
    assert_eq!(peer.ip(), env.pod.sandbox.ip);
    let AgentMessage::Stream(StreamMessage::Data { data, .. }) = s.recv().await else {
        panic!("expected data")
    };
    assert_eq!(data.as_slice(), b"from inside");
    drop(inner);

    // Released: the pod answers again and the rule is gone.
    incoming(&mut s, IncomingRequest::Unsubscribe { port: PORT })
        .await
        .unwrap();
    assert!(!env.nat_rules().contains("REDIRECT"), "{}", env.nat_rules());
    let (instance, _) = get(&mut env.http1().await, "GET", "/", &[]).await;
    assert_eq!(instance, "pod");
}

#[tokio::test]
async fn filtered_steals_split_keep_alive_connections() {
    let env = Env::new("flt").await;
    let agent = start_agent(env.pod.pid(), &[], &[]).await;
    let mut alice = agent.client().await;
    subscribe(
        &mut alice,
        IncomingMode::Steal,
        Some(HttpFilter::Header("^x-user: alice$".into())),
    )
    .await
    .unwrap();
    let mut bob = agent.client().await;
    subscribe(
        &mut bob,
        IncomingMode::Steal,
        Some(HttpFilter::AnyOf(vec![
            HttpFilter::Path(r"^/api/v2/.*\?debug=1$".into()),
            HttpFilter::Method("DELETE".into()),
        ])),
    )
    .await
    .unwrap();
    // An unfiltered steal overlaps the filtered ones.
    let mut carol = agent.client().await;
    assert_eq!(
        subscribe(&mut carol, IncomingMode::Steal, None).await,
        Err(AgentError::PortAlreadyStolen { port: PORT })
    );
    // A mirror coexists with filtered steals and sees every request's bytes.
    let mut mirror = agent.client().await;
    subscribe(&mut mirror, IncomingMode::Mirror, None)
        .await
        .unwrap();
    let alice = answer_requests(alice, "alice");
    let bob = answer_requests(bob, "bob");

    // One keep-alive connection: each request is matched on its own.
    let mut c = env.http1().await;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        ("GET", "/a", &[("X-User", "Alice")], "alice"),
        ("GET", "/a", &[("X-User", "bob")], "pod"),
        ("POST", "/api/v2/items?debug=1", &[], "bob"),
        ("POST", "/api/v2/items?debug=0", &[], "pod"),
        ("DELETE", "/anything", &[], "bob"),
        ("GET", "/b", &[], "pod"),
        ("PUT", "/c", &[("x-user", "alice")], "alice"),
    ];
    for (method, path, headers, want) in cases {
        let (instance, body) = get(&mut c, method, path, headers).await;
        assert_eq!(instance, want, "{method} {path}: {body}");
        if want != "pod" {
            assert_eq!(body, format!("{want} {method} {path} 7"));
        }
    }

    // HTTP/2 with prior knowledge, same filters.
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(env.connect().await.unwrap()),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (user, want) in [("alice", "alice"), ("dave", "pod"), ("alice", "alice")] {
        let req = Request::get(format!("http://{}/h2", env.pod_addr()))
            .header("x-user", user)
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.headers()["x-tether-instance"], want);
    }

    let AgentMessage::Incoming(IncomingEvent::NewConnection {
        mode: IncomingMode::Mirror,
        ..
    }) = mirror.recv().await
    else {
        panic!("expected a mirrored connection")
    };
    let mut copy = Vec::new();
    while !copy.ends_with(b"PUT /c HTTP/1.1\r\n") && copy.len() < 100_000 {
        if let AgentMessage::Stream(StreamMessage::Data { data, .. }) = mirror.recv().await {
            copy.extend_from_slice(data.as_slice());
            if let Some(i) = copy.windows(5).position(|w| w == b"PUT /") {
                copy.truncate(i + 5);
                copy.extend_from_slice(b"c HTTP/1.1\r\n");
            }
        }
    }
    let copy = String::from_utf8_lossy(&copy);
    assert!(copy.starts_with("GET /a HTTP/1.1\r\n"), "{copy}");
    assert!(copy.contains("DELETE /anything HTTP/1.1\r\n"), "{copy}");

    // Alice's session ends: her requests reach the pod, on the same connection.
    alice.abort();
    let mut passed = false;
    for _ in 0..50 {
        if get(&mut c, "GET", "/a", &[("x-user", "alice")]).await.0 == "pod" {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        passed,
        "alice's requests still stolen after her session ended"
    );
    assert_eq!(get(&mut c, "DELETE", "/x", &[]).await.0, "bob");
    bob.abort();
}

/// The next message that is not the close of an earlier connection.
async fn next_non_close(s: &mut Client) -> AgentMessage {
    loop {
        match s.recv().await {
            AgentMessage::Stream(StreamMessage::Close { .. }) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn two_agents_on_one_pod_keep_their_own_rules() {
    let env = Env::new("two").await;
    let mut first = start_agent(env.pod.pid(), &[], &[]).await;
    let second = start_agent(env.pod.pid(), &[], &[]).await;
    let mut a = first.client().await;
    subscribe(&mut a, IncomingMode::Mirror, None).await.unwrap();
    let mut b = second.client().await;
    subscribe(&mut b, IncomingMode::Steal, None).await.unwrap();
    let chains = |rules: &str| {
        rules
            .lines()
            .filter_map(|l| l.strip_prefix(":TETHER-"))
            .count()
    };
    // One chain per agent in each of the IPv4 and IPv6 nat tables.
    assert_eq!(chains(&env.nat_rules()), 4, "{}", env.nat_rules());
    // The first agent dies: its guard removes its chain only; the second still steals.
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    for _ in 0..100 {
        if chains(&env.nat_rules()) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chains(&env.nat_rules()), 2, "{}", env.nat_rules());
    let mut client = env.connect().await.unwrap();
    client.write_all(b"x").await.unwrap();
    assert!(matches!(
        b.recv().await,
        AgentMessage::Incoming(IncomingEvent::NewConnection {
            mode: IncomingMode::Steal,
            ..
        })
    ));
}

#[tokio::test]
async fn agent_sigkill_leaves_no_rule() {
    let env = Env::new("kil").await;
    let mut agent = start_agent(env.pod.pid(), &[], &[]).await;
    let mut s = agent.client().await;
    subscribe(&mut s, IncomingMode::Steal, None).await.unwrap();
    let rules = env.nat_rules();
    assert!(rules.contains("-j TETHER-"), "{rules}");
    assert!(rules.contains("REDIRECT"), "{rules}");
    agent.child.start_kill().unwrap();
    agent.child.wait().await.unwrap();
    env.wait_rules_gone().await;
    // The pod's server answers again.
    let (instance, _) = get(&mut env.http1().await, "GET", "/", &[]).await;
    assert_eq!(instance, "pod");
}

#[tokio::test]
async fn stale_rules_of_a_dead_agent_are_removed_on_start() {
    let env = Env::new("stl").await;
    // A dead agent's chain: its owner pid no longer runs.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = format!("TETHER-{dead_pid}-old");
    let comment = format!("tether-owner:{dead_pid}:1");
    env.iptables(&["-N", &stale]);
    env.iptables(&[
        "-A",
        &stale,
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-j",
        "REDIRECT",
        "--to-ports",
        "1",
    ]);
    env.iptables(&[
        "-I",
        "PREROUTING",
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        &stale,
    ]);
    // A live agent's chain (this test process owns it) must stay.
    let me = std::process::id();
    let live = format!("TETHER-{me}-live");
    env.iptables(&["-N", &live]);
    let start = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start = start[start.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    let live_comment = format!("tether-owner:{me}:{start}");
    env.iptables(&[
        "-I",
        "PREROUTING",
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        &live_comment,
        "-j",
        &live,
    ]);

    let _agent = start_agent(env.pod.pid(), &[], &[]).await;
    let mut gone = false;
    for _ in 0..100 {
        if !env.nat_rules().contains(&stale) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "stale chain left:\n{}", env.nat_rules());
    assert!(env.nat_rules().contains(&live), "live chain removed");
    env.iptables(&[
        "-D",
        "PREROUTING",
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        &live_comment,
        "-j",
        &live,
    ]);
    env.iptables(&["-X", &live]);
}

#[tokio::test]
async fn missing_iptables_and_capability_are_reported() {
    let env = Env::new("err").await;
    let agent = start_agent(
        env.pod.pid(),
        &[("TETHER_IPTABLES", "/nonexistent/iptables")],
        &[],
    )
    .await;
    let err = subscribe(&mut agent.client().await, IncomingMode::Mirror, None)
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::IptablesMissing { .. }), "{err:?}");

    // Without CAP_NET_ADMIN (kept: the rest a root agent has, so it can still enter the netns).
    let agent = start_agent(
        env.pod.pid(),
        &[],
        &[
            "setpriv",
            "--bounding-set=-net_admin",
            "--inh-caps=-net_admin",
            "--",
        ],
    )
    .await;
    let err = subscribe(&mut agent.client().await, IncomingMode::Steal, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AgentError::MissingCapability { capability, .. } if capability == "CAP_NET_ADMIN"),
        "{err:?}"
    );
    env.wait_rules_gone().await;
}

#[tokio::test]
async fn target_gone_is_reported() {
    let mut env = Env::new("gon").await;
    let agent = start_agent(env.pod.pid(), &[], &[]).await;
    let mut s = agent.client().await;
    subscribe(&mut s, IncomingMode::Mirror, None).await.unwrap();
    env.pod.kill();
    // The subscription is lost, and new ones fail with TargetGone.
    let mut lost = false;
    for _ in 0..20 {
        match s.recv().await {
            AgentMessage::Incoming(IncomingEvent::SubscriptionLost { port, .. }) => {
                assert_eq!(port, PORT);
                lost = true;
                break;
            }
            _ => continue,
        }
    }
    assert!(lost);
    let err = subscribe(&mut s, IncomingMode::Mirror, None)
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::TargetGone { .. }), "{err:?}");
}
