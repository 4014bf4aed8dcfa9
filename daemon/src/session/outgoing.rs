//! Outgoing connections: the agent connects from the target, the app's own socket connects to a
//! local interceptor, and the daemon relays between the two. The app keeps a real kernel socket,
//! so epoll, non-blocking IO and TLS work unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_protocol::agent::{ClientMessage, Request, Response};
use tether_protocol::error::RemoteError;
use tether_protocol::layer::LayerResponse;
use tether_protocol::outgoing::{OutgoingRequest, OutgoingResponse, StreamMessage};
use tokio::net::{TcpListener, UdpSocket};

use super::events::add;
use super::pipe::{Direction, pipe};
use super::router::{Shared, loopback_like, to_remote_error, unexpected};

/// How long the app has to connect to its interceptor after the layer got the address.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds a loopback address in `remote`'s family; falls back to IPv4 (reported v4-mapped, which
/// an IPv6 socket can connect to) on hosts without `::1`.
async fn bind_tcp(remote: &SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    match TcpListener::bind(loopback_like(remote)).await {
        Ok(l) => {
            let a = l.local_addr()?;
            Ok((l, a))
        }
        Err(_) if remote.is_ipv6() => {
            let l = TcpListener::bind(("127.0.0.1", 0)).await?;
            let a = l.local_addr()?;
            Ok((l, v4_mapped(a)))
        }
        Err(e) => Err(e),
    }
}

fn v4_mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        v6 => v6,
    }
}

fn local_error(what: &str, e: std::io::Error) -> RemoteError {
    RemoteError::new(
        e.raw_os_error().unwrap_or(libc::EIO),
        format!("{what}: {e}"),
    )
}

/// `LayerRequest::ConnectTcp`: opens the stream at the agent, then the interceptor.
pub(crate) async fn connect_tcp(
    shared: &Arc<Shared>,
    remote: SocketAddr,
) -> Result<LayerResponse, RemoteError> {
    let agent = shared.agent.clone();
    let stream = agent
        .open_stream()
        .map_err(|e| to_remote_error(crate::agent_link::RequestError::LinkDown(e), true))?;
    let conn_id = stream.conn_id();
    let opened = agent
        .request(Request::Outgoing(OutgoingRequest::ConnectTcp {
            conn_id,
            remote,
        }))
        .await;
    let remote_local = match opened {
        Ok(Response::Outgoing(OutgoingResponse::Opened { local, .. })) => local,
        Ok(other) => return Err(unexpected("connect", &other)),
        Err(e) => return Err(to_remote_error(e, true)),
    };
    let (listener, interceptor) = match bind_tcp(&remote).await {
        Ok(x) => x,
        Err(e) => {
            let _ = agent
                .send(ClientMessage::Stream(StreamMessage::Close {
                    conn_id,
                    error: Some("interceptor failed".into()),
                }))
                .await;
            return Err(local_error("binding the interceptor", e));
        }
    };
    add(&shared.meters.outgoing_connections, 1);
    let shared = shared.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(ACCEPT_TIMEOUT, listener.accept()).await {
            Ok(Ok((sock, _))) => {
                drop(listener);
                let m = &shared.meters;
                pipe(
                    agent,
                    sock,
                    stream,
                    Direction::Both,
                    &m.outgoing,
                    &m.open_connections,
                )
                .await;
            }
            _ => {
                tracing::debug!(conn_id, %remote, "the app never connected to its interceptor");
                let _ = agent
                    .send(ClientMessage::Stream(StreamMessage::Close {
                        conn_id,
                        error: Some("the local app never connected".into()),
                    }))
                    .await;
            }
        }
    });
    Ok(LayerResponse::Intercepted {
        interceptor,
        remote_local,
    })
}

/// `LayerRequest::ConnectUdp`: a UDP socket in the target and a local relay socket the app's
/// socket talks to. The relay lives as long as the process. Datagrams carry no flow-control
/// credit: the stream's inbox drops them once [`tether_protocol::flow::DATAGRAM_QUEUE`] wait, as
/// a full socket buffer would, so a relay nobody drains never holds up the agent link.
pub(crate) async fn connect_udp(
    shared: &Arc<Shared>,
    pid: u32,
    remote: SocketAddr,
) -> Result<LayerResponse, RemoteError> {
    let agent = shared.agent.clone();
    let mut stream = agent
        .open_stream()
        .map_err(|e| to_remote_error(crate::agent_link::RequestError::LinkDown(e), true))?;
    let conn_id = stream.conn_id();
    let opened = agent
        .request(Request::Outgoing(OutgoingRequest::OpenUdp {
            conn_id,
            connect_to: Some(remote),
        }))
        .await;
    let remote_local = match opened {
        Ok(Response::Outgoing(OutgoingResponse::Opened { local, .. })) => local,
        Ok(other) => return Err(unexpected("udp", &other)),
        Err(e) => return Err(to_remote_error(e, true)),
    };
    let (sock, relay_addr) = match UdpSocket::bind(loopback_like(&remote)).await {
        Ok(s) => {
            let a = s.local_addr().map_err(|e| local_error("udp relay", e))?;
            (s, a)
        }
        Err(_) if remote.is_ipv6() => {
            let s = UdpSocket::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| local_error("binding the udp relay", e))?;
            let a = s.local_addr().map_err(|e| local_error("udp relay", e))?;
            (s, v4_mapped(a))
        }
        Err(e) => return Err(local_error("binding the udp relay", e)),
    };
    add(&shared.meters.outgoing_connections, 1);
    let relay_agent = agent.clone();
    let relay_shared = shared.clone();
    let task = tokio::spawn(async move {
        let agent = relay_agent;
        let meter = &relay_shared.meters.outgoing;
        let mut app: Option<SocketAddr> = None;
        let mut buf = vec![0u8; 65536];
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { break };
                    app = Some(from);
                    add(&meter.up, n as u64);
                    let msg = StreamMessage::Datagram { conn_id, peer: remote, data: buf[..n].to_vec().into() };
                    if agent.send(ClientMessage::Stream(msg)).await.is_err() {
                        break;
                    }
                }
                m = stream.recv() => match m {
                    Some(StreamMessage::Datagram { data, .. }) => {
                        if let Some(a) = app
                            && sock.send_to(data.as_slice(), a).await.is_ok()
                        {
                            add(&meter.down, data.as_slice().len() as u64);
                        }
                    }
                    Some(StreamMessage::Close { .. }) | None => return,
                    Some(_) => {}
                },
            }
        }
        let _ = agent
            .send(ClientMessage::Stream(StreamMessage::Close {
                conn_id,
                error: None,
            }))
            .await;
    });
    // When the process goes away the relay is aborted; tell the agent then, too.
    let abort = task.abort_handle();
    let closer_agent = agent.clone();
    tokio::spawn(async move {
        if let Err(e) = task.await
            && e.is_cancelled()
        {
            let _ = closer_agent
                .send(ClientMessage::Stream(StreamMessage::Close {
                    conn_id,
                    error: None,
                }))
                .await;
        }
    });
    shared.add_relay(pid, abort);
    Ok(LayerResponse::Intercepted {
        interceptor: relay_addr,
        remote_local,
    })
}
