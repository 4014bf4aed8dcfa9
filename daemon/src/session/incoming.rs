//! Incoming traffic: the app listens, the agent subscribes the port in the target, and the
//! router delivers each remote connection (or filtered HTTP request) to the app's real listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tether_protocol::agent::{ClientMessage, Request, Response};
use tether_protocol::error::RemoteError;
use tether_protocol::incoming::{
    Header, HttpRequest, HttpResponse, IncomingMode, IncomingRequest, IncomingResponse,
};
use tether_protocol::layer::LayerResponse;
use tether_protocol::outgoing::StreamMessage;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::events::{RouterEvent, add};
use super::pipe::{Direction, pipe};
use super::router::{Shared, to_remote_error, unexpected};
use crate::agent_link::{AgentClient, AgentEvent, StreamRx};

/// One subscribed port.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// Where the app listens.
    pub(crate) local: SocketAddr,
    /// The process that listens.
    pub(crate) pid: u32,
}

/// `LayerRequest::Listen`: subscribes `remote_port` unless the policy says not to.
pub(crate) async fn listen(
    shared: &Arc<Shared>,
    pid: u32,
    local: SocketAddr,
    remote_port: u16,
) -> Result<LayerResponse, RemoteError> {
    let policy = &shared.policy;
    let Some(mode) = policy.incoming else {
        return Ok(LayerResponse::Done);
    };
    if policy.ignore_ports.contains(&remote_port)
        || policy.ignore_ports.contains(&local.port())
        || (!policy.only_ports.is_empty()
            && !policy.only_ports.contains(&remote_port)
            && !policy.only_ports.contains(&local.port()))
    {
        return Ok(LayerResponse::Done);
    }
    {
        let mut st = shared.lock();
        if let Some(sub) = st.subscriptions.get_mut(&remote_port) {
            // Already subscribed (a second listener, or a re-listen): deliver to the newest.
            sub.local = local;
            sub.pid = pid;
            return Ok(LayerResponse::Done);
        }
        // Reserve the port first, so deliveries racing the answer find it.
        st.subscriptions
            .insert(remote_port, Subscription { local, pid });
    }
    match shared
        .agent
        .request(subscribe_request(shared, mode, remote_port))
        .await
    {
        Ok(Response::Incoming(IncomingResponse::Subscribed { .. })) => {
            tracing::info!(port = remote_port, ?mode, %local, "subscribed");
            Ok(LayerResponse::Done)
        }
        other => {
            shared.lock().subscriptions.remove(&remote_port);
            match other {
                Ok(o) => Err(unexpected("subscribe", &o)),
                Err(e) => Err(to_remote_error(e, true)),
            }
        }
    }
}

/// The agent request subscribing `port` in `mode`, with the HTTP filter when it applies.
fn subscribe_request(shared: &Shared, mode: IncomingMode, port: u16) -> Request {
    let filtered_port = shared.filter_ports.is_empty() || shared.filter_ports.contains(&port);
    let filter = match mode {
        IncomingMode::Steal if filtered_port => shared.policy.http_filter.clone(),
        _ => None,
    };
    Request::Incoming(IncomingRequest::Subscribe { port, mode, filter })
}

/// After the agent link was re-established: the agent forgot this client's subscriptions, so
/// subscribe every port again. Ports the agent now refuses are dropped (as if it had lost them).
async fn resubscribe(shared: &Shared, attempts: u32, cause: String) {
    let ports: Vec<u16> = shared.lock().subscriptions.keys().copied().collect();
    let mut resubscribed = Vec::new();
    let mut lost = Vec::new();
    if let Some(mode) = shared.policy.incoming {
        for port in ports {
            match shared
                .agent
                .request(subscribe_request(shared, mode, port))
                .await
            {
                Ok(Response::Incoming(IncomingResponse::Subscribed { .. })) => {
                    resubscribed.push(port)
                }
                other => {
                    tracing::warn!(port, "re-subscribing after a reconnect failed: {other:?}");
                    shared.lock().subscriptions.remove(&port);
                    lost.push(port);
                }
            }
        }
    }
    resubscribed.sort_unstable();
    lost.sort_unstable();
    shared.publish(RouterEvent::AgentReconnected {
        attempts,
        cause,
        resubscribed,
        lost,
    });
}

/// `LayerRequest::Unlisten`: releases the port(s) delivering to `local`.
pub(crate) async fn unlisten(
    shared: &Arc<Shared>,
    local: SocketAddr,
) -> Result<LayerResponse, RemoteError> {
    let ports: Vec<u16> = {
        let mut st = shared.lock();
        let ports: Vec<u16> = st
            .subscriptions
            .iter()
            .filter(|(_, s)| s.local == local)
            .map(|(p, _)| *p)
            .collect();
        for p in &ports {
            st.subscriptions.remove(p);
        }
        ports
    };
    for port in ports {
        unsubscribe_remote(&shared.agent, port).await;
    }
    Ok(LayerResponse::Done)
}

/// Tells the agent to release `port`; failures are only logged (the agent also releases
/// everything when the session ends).
pub(crate) async fn unsubscribe_remote(agent: &AgentClient, port: u16) {
    match agent
        .request(Request::Incoming(IncomingRequest::Unsubscribe { port }))
        .await
    {
        Ok(_) => tracing::info!(port, "unsubscribed"),
        Err(e) => tracing::debug!(port, "unsubscribe failed: {e}"),
    }
}

/// Where to connect to reach an app listening on `local` (a wildcard address means loopback).
fn dial_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

fn local_for(shared: &Shared, port: u16) -> Option<SocketAddr> {
    shared
        .lock()
        .subscriptions
        .get(&port)
        .map(|s| dial_addr(s.local))
}

/// Consumes the agent's events for the session's lifetime.
pub(crate) async fn event_loop(shared: Arc<Shared>, mut events: mpsc::Receiver<AgentEvent>) {
    while let Some(ev) = events.recv().await {
        match ev {
            AgentEvent::Connection {
                port, mode, stream, ..
            } => {
                add(&shared.meters.incoming_connections, 1);
                let shared = shared.clone();
                tokio::spawn(async move { deliver_connection(&shared, port, mode, stream).await });
            }
            AgentEvent::HttpRequest(req) => {
                add(&shared.meters.incoming_http_requests, 1);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let resp = serve_http(&shared, req).await;
                    let _ = shared.agent.send(ClientMessage::HttpResponse(resp)).await;
                });
            }
            AgentEvent::SubscriptionLost { port, reason } => {
                tracing::warn!(port, "the agent dropped the subscription: {reason}");
                shared.lock().subscriptions.remove(&port);
            }
            AgentEvent::Warning(_) => {}
            AgentEvent::Dropped { cause, handled } => {
                // The agent closes the old connection's files: their numbers mean nothing now.
                tracing::debug!("agent link dropped ({cause}): remote fds are stale");
                shared.lock().forget_fds();
                drop(handled);
            }
            AgentEvent::Reconnected { attempts, cause } => {
                let shared = shared.clone();
                tokio::spawn(
                    async move { resubscribe(&shared, attempts, cause.to_string()).await },
                );
            }
        }
    }
}

async fn deliver_connection(shared: &Shared, port: u16, mode: IncomingMode, stream: StreamRx) {
    let conn_id = stream.conn_id();
    let sock = match local_for(shared, port) {
        Some(addr) => TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to the local app at {addr}: {e}")),
        None => Err(format!("port {port} is not subscribed by this session")),
    };
    match sock {
        Ok(sock) => {
            let dir = match mode {
                IncomingMode::Steal => Direction::Both,
                IncomingMode::Mirror => Direction::DiscardLocal,
            };
            let m = &shared.meters;
            pipe(
                shared.agent.clone(),
                sock,
                stream,
                dir,
                &m.incoming,
                &m.open_connections,
            )
            .await;
        }
        Err(error) => {
            tracing::warn!(port, "incoming connection dropped: {error}");
            let _ = shared
                .agent
                .send(ClientMessage::Stream(StreamMessage::Close {
                    conn_id,
                    error: Some(error),
                }))
                .await;
        }
    }
}

/// Headers that describe one hop's framing, not the message: the body travels whole, so they
/// are recomputed on each side.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Answers a stolen HTTP request with the local app's response (or a 502 that says why).
pub(crate) async fn serve_http(shared: &Shared, req: HttpRequest) -> HttpResponse {
    let id = req.id;
    let port = req.port;
    add(
        &shared.meters.incoming.down,
        req.body.as_slice().len() as u64,
    );
    let result = match local_for(shared, port) {
        Some(addr) => forward_http(&shared.http_pool, addr, req).await,
        None => Err(format!("port {port} is not subscribed by this session")),
    };
    if let Ok(r) = &result {
        add(&shared.meters.incoming.up, r.body.as_slice().len() as u64);
    }
    result.unwrap_or_else(|e| {
        tracing::warn!(port, "stolen request failed: {e}");
        HttpResponse {
            id,
            status: 502,
            headers: vec![Header {
                name: "content-type".into(),
                value: b"text/plain".as_slice().into(),
            }],
            body: format!("tether: {e}\n").into_bytes().into(),
        }
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Keep-alive HTTP/1.1 connections to the local app, per address, so a stolen request does not
/// pay for a connect and a handshake each time.
#[derive(Default)]
pub(crate) struct HttpPool {
    idle: std::sync::Mutex<std::collections::HashMap<SocketAddr, Vec<Sender>>>,
}

/// Idle connections kept per address.
const POOL_PER_ADDR: usize = 16;

impl HttpPool {
    fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, s: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < POOL_PER_ADDR {
            list.push(s);
        }
    }
}

async fn connect_http(addr: SocketAddr) -> Result<Sender, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to the local app at {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| format!("http handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn build_request(
    addr: SocketAddr,
    req: &HttpRequest,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(req.uri.as_str());
    let mut has_host = false;
    for h in &req.headers {
        if hop_by_hop(&h.name) || h.name.starts_with(':') {
            continue;
        }
        has_host |= h.name.eq_ignore_ascii_case("host");
        builder = builder.header(h.name.as_str(), h.value.as_slice());
    }
    if !has_host {
        builder = builder.header("host", addr.to_string());
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(req.body.as_slice())))
        .map_err(|e| format!("invalid stolen request: {e}"))
}

async fn forward_http(
    pool: &HttpPool,
    addr: SocketAddr,
    req: HttpRequest,
) -> Result<HttpResponse, String> {
    let req = &req;
    let fresh = |addr| async move {
        let mut s = connect_http(addr).await?;
        let r = s
            .send_request(build_request(addr, req)?)
            .await
            .map_err(|e| format!("http request to {addr}: {e}"))?;
        Ok::<_, String>((s, r))
    };
    let (mut sender, resp) = match pool.take(addr) {
        Some(mut s) => match s.try_send_request(build_request(addr, req)?).await {
            Ok(r) => (s, r),
            // The app closed the idle connection. Resend when the request never left, or when
            // sending it twice is harmless (idempotent methods), as browsers do.
            Err(mut e) => {
                let unsent = e.take_message().is_some();
                let idempotent = matches!(
                    req.method.to_ascii_uppercase().as_str(),
                    "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
                );
                if !(unsent || idempotent) {
                    return Err(format!("http request to {addr}: {}", e.error()));
                }
                tracing::debug!(
                    "pooled connection to {addr} failed ({}), reconnecting",
                    e.error()
                );
                fresh(addr).await?
            }
        },
        None => fresh(addr).await?,
    };
    let status = resp.status().as_u16();
    let mut headers: Vec<Header> = resp
        .headers()
        .iter()
        .filter(|(n, _)| !hop_by_hop(n.as_str()))
        .map(|(n, v)| Header {
            name: n.as_str().to_owned(),
            value: v.as_bytes().into(),
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the response body from {addr}: {e}"))?
        .to_bytes();
    headers.push(Header {
        name: "content-length".into(),
        value: body.len().to_string().into_bytes().into(),
    });
    // Back to the pool once hyper has the connection idle again (not if the app closes it).
    if sender.ready().await.is_ok() {
        pool.put(addr, sender);
    }
    Ok(HttpResponse {
        id: req.id,
        status,
        headers,
        body: body.to_vec().into(),
    })
}
