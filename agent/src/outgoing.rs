//! Outgoing TCP and UDP streams of one session, opened from the target's network namespace.
//!
//! Sockets are created on the [`crate::netns::NetNs`] thread and then driven by tokio. Each TCP
//! stream is flow-controlled per direction ([`tether_protocol::flow`]):
//! - target -> daemon: a task reads only while it holds credit from the daemon, at most
//!   [`READ_BUF`] at a time, and sends `StreamMessage::Data` into the session's queue. A daemon
//!   that stops draining the stream stops the reads (and TCP flow control pushes back on the
//!   peer) without holding up the session's other streams.
//! - daemon -> target: messages go into the stream's inbox, which the session loop fills without
//!   ever waiting; a writer task drains it into the socket and returns credit to the daemon as
//!   the socket accepts the bytes. A daemon that sends past its credit gets the stream closed.
//!
//! UDP streams carry datagrams without credit; a full inbox drops them.
//!
//! Either side's `Close` drops the stream; the daemon's `Eof` half-closes the TCP socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tether_protocol::agent::AgentMessage;
use tether_protocol::flow::{self, StreamTx};
use tether_protocol::outgoing::{OutgoingRequest, OutgoingResponse, StreamMessage};
use tether_protocol::{ConnId, Payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::errors::{OpError, OpResult};
use crate::target::Target;

/// Read buffer of a stream's target -> daemon half (well under the flow-control window, so
/// several reads are in flight).
pub const READ_BUF: usize = 256 * 1024;

/// How long a TCP connect may take, as a typical connect timeout in a pod.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct StreamHandle {
    /// Dropping it ends the writer once it wrote what is queued.
    to_target: StreamTx,
    /// The reader first, then the writer.
    tasks: Vec<AbortHandle>,
}

/// The outgoing streams of one session. Clones share the table.
#[derive(Debug, Clone)]
pub struct Streams {
    target: Arc<Target>,
    to_daemon: mpsc::Sender<AgentMessage>,
    table: Arc<Mutex<HashMap<ConnId, StreamHandle>>>,
}

impl Streams {
    /// An empty table whose data goes to `to_daemon`.
    pub fn new(target: Arc<Target>, to_daemon: mpsc::Sender<AgentMessage>) -> Self {
        Self {
            target,
            to_daemon,
            table: Arc::default(),
        }
    }

    /// Opens a stream.
    pub async fn open(&self, req: OutgoingRequest) -> OpResult<OutgoingResponse> {
        match req {
            OutgoingRequest::ConnectTcp { conn_id, remote } => {
                self.check_free(conn_id)?;
                let stream = self.connect_tcp(remote).await?;
                let local = stream
                    .local_addr()
                    .map_err(|e| OpError::io("getsockname", &e))?;
                self.start_tcp(conn_id, stream);
                Ok(OutgoingResponse::Opened {
                    conn_id,
                    local,
                    remote: Some(remote),
                })
            }
            OutgoingRequest::OpenUdp {
                conn_id,
                connect_to,
            } => {
                self.check_free(conn_id)?;
                let (sock, local) = self.open_udp(connect_to).await?;
                self.start_udp(conn_id, sock, connect_to);
                Ok(OutgoingResponse::Opened {
                    conn_id,
                    local,
                    remote: connect_to,
                })
            }
        }
    }

    fn check_free(&self, conn_id: ConnId) -> OpResult<()> {
        if self
            .table
            .lock()
            .expect("stream table")
            .contains_key(&conn_id)
        {
            return Err(OpError::errno(
                libc::EEXIST,
                format!("stream {conn_id} is already open"),
            ));
        }
        Ok(())
    }

    async fn connect_tcp(&self, remote: SocketAddr) -> OpResult<TcpStream> {
        let domain = Domain::for_address(remote);
        let sock = self
            .target
            .netns()
            .run(move || -> std::io::Result<Socket> {
                let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .await
            .map_err(|e| OpError::Agent(e.into()))?
            .map_err(|e| OpError::io(format_args!("socket for {remote}"), &e))?;
        let std_stream: std::net::TcpStream = sock.into();
        let sock = TcpSocket::from_std_stream(std_stream);
        let _ = sock.set_nodelay(true);
        match tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(remote)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(OpError::io(format_args!("connect {remote}"), &e)),
            Err(_) => Err(OpError::errno(
                libc::ETIMEDOUT,
                format!("connect {remote}: timed out after {CONNECT_TIMEOUT:?}"),
            )),
        }
    }

    async fn open_udp(&self, connect_to: Option<SocketAddr>) -> OpResult<(UdpSocket, SocketAddr)> {
        let v6 = connect_to.is_some_and(|a| a.is_ipv6());
        let sock = self
            .target
            .netns()
            .run(move || -> std::io::Result<Socket> {
                let (domain, any): (Domain, SocketAddr) = if v6 {
                    (Domain::IPV6, "[::]:0".parse().expect("literal"))
                } else {
                    (Domain::IPV4, "0.0.0.0:0".parse().expect("literal"))
                };
                let s = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
                s.set_nonblocking(true)?;
                s.bind(&SockAddr::from(any))?;
                if let Some(peer) = connect_to {
                    s.connect(&SockAddr::from(peer))?;
                }
                Ok(s)
            })
            .await
            .map_err(|e| OpError::Agent(e.into()))?
            .map_err(|e| OpError::io("udp socket", &e))?;
        let std_sock: std::net::UdpSocket = sock.into();
        let sock = UdpSocket::from_std(std_sock).map_err(|e| OpError::io("udp socket", &e))?;
        let local = sock
            .local_addr()
            .map_err(|e| OpError::io("getsockname", &e))?;
        Ok((sock, local))
    }

    fn start_tcp(&self, conn_id: ConnId, stream: TcpStream) {
        let (mut rd, mut wr) = stream.into_split();
        let (to_target, mut inbox, credit) = flow::stream(conn_id);
        let to_daemon = self.to_daemon.clone();
        let table = self.table.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            // Read only what the daemon has room for: without credit the socket is left alone.
            while let Some(room) = credit.reserve(READ_BUF).await {
                match rd.read(&mut buf[..room]).await {
                    Ok(0) => {
                        credit.unreserve(room);
                        let _ = to_daemon
                            .send(AgentMessage::Stream(StreamMessage::Eof { conn_id }))
                            .await;
                        return;
                    }
                    Ok(n) => {
                        credit.unreserve(room - n);
                        let data = Payload(buf[..n].to_vec());
                        let msg = AgentMessage::Stream(StreamMessage::Data { conn_id, data });
                        if to_daemon.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        close_from_target(&table, &to_daemon, conn_id, Some(e.to_string())).await;
                        return;
                    }
                }
            }
        });
        let to_daemon = self.to_daemon.clone();
        let table = self.table.clone();
        let writer = tokio::spawn(async move {
            while let Some(msg) = inbox.recv().await {
                match msg {
                    StreamMessage::Data { data, .. } => {
                        if let Err(e) = wr.write_all(data.as_slice()).await {
                            close_from_target(&table, &to_daemon, conn_id, Some(e.to_string()))
                                .await;
                            return;
                        }
                        // The socket took the bytes: the daemon may send that much more.
                        if let Some(credit) = inbox.consumed(data.len()) {
                            let _ = to_daemon.send(AgentMessage::Stream(credit)).await;
                        }
                    }
                    StreamMessage::Eof { .. } => {
                        let _ = wr.shutdown().await;
                    }
                    StreamMessage::Datagram { .. } => {
                        tracing::debug!(conn_id, "datagram on a TCP stream dropped");
                    }
                    StreamMessage::Close { .. } => return,
                    StreamMessage::Credit { .. } => {}
                }
            }
        });
        self.insert(
            conn_id,
            to_target,
            vec![reader.abort_handle(), writer.abort_handle()],
        );
    }

    fn start_udp(&self, conn_id: ConnId, sock: UdpSocket, connected: Option<SocketAddr>) {
        let sock = Arc::new(sock);
        // Datagrams carry no credit: the inbox drops them when full, as a socket buffer would.
        let (to_target, mut queue, _) = flow::stream(conn_id);
        let to_daemon = self.to_daemon.clone();
        let table = self.table.clone();
        let rx_sock = sock.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match rx_sock.recv_from(&mut buf).await {
                    Ok((n, peer)) => {
                        let msg = AgentMessage::Stream(StreamMessage::Datagram {
                            conn_id,
                            peer,
                            data: Payload(buf[..n].to_vec()),
                        });
                        if to_daemon.send(msg).await.is_err() {
                            return;
                        }
                    }
                    // ICMP port unreachable on a connected socket: the app would see it on its
                    // next recv; tell it by closing.
                    Err(e) => {
                        close_from_target(&table, &to_daemon, conn_id, Some(e.to_string())).await;
                        return;
                    }
                }
            }
        });
        let writer = tokio::spawn(async move {
            while let Some(msg) = queue.recv().await {
                match msg {
                    StreamMessage::Datagram { peer, data, .. } => {
                        let res = match connected {
                            Some(_) => sock.send(data.as_slice()).await,
                            None => sock.send_to(data.as_slice(), peer).await,
                        };
                        if let Err(e) = res {
                            tracing::debug!(conn_id, "udp send to {peer} failed: {e}");
                        }
                    }
                    StreamMessage::Data { data, .. } if connected.is_some() => {
                        if let Err(e) = sock.send(data.as_slice()).await {
                            tracing::debug!(conn_id, "udp send failed: {e}");
                        }
                    }
                    StreamMessage::Close { .. } => return,
                    _ => {}
                }
            }
        });
        self.insert(
            conn_id,
            to_target,
            vec![reader.abort_handle(), writer.abort_handle()],
        );
    }

    fn insert(&self, conn_id: ConnId, to_target: StreamTx, tasks: Vec<AbortHandle>) {
        self.table
            .lock()
            .expect("stream table")
            .insert(conn_id, StreamHandle { to_target, tasks });
    }

    /// A stream message from the daemon. Never waits: data goes into the stream's inbox, which
    /// its window bounds; a daemon that sends past the window gets the stream closed.
    pub fn send_to_target(&self, msg: StreamMessage) {
        let conn_id = msg.conn_id();
        let mut table = self.table.lock().expect("stream table");
        if let StreamMessage::Close { .. } = msg {
            if let Some(h) = table.remove(&conn_id) {
                // Queued data still reaches the socket; the writer ends at the Close (or when
                // the handle, dropped here, ends the inbox). Nothing more is read.
                let _ = h.to_target.push(msg);
                if let Some(reader) = h.tasks.first() {
                    reader.abort();
                }
            }
            return;
        }
        let Some(h) = table.get(&conn_id) else {
            tracing::debug!(conn_id, "message for an unknown stream dropped");
            return;
        };
        let Err(violation) = h.to_target.push(msg) else {
            return;
        };
        tracing::warn!(conn_id, "closing the stream: {violation}");
        if let Some(h) = table.remove(&conn_id) {
            h.to_target.fail(violation.to_string());
            h.tasks.iter().for_each(AbortHandle::abort);
        }
        drop(table);
        let to_daemon = self.to_daemon.clone();
        tokio::spawn(async move {
            let close = StreamMessage::Close {
                conn_id,
                error: Some(violation.to_string()),
            };
            let _ = to_daemon.send(AgentMessage::Stream(close)).await;
        });
    }

    /// Drops every stream (the session ended).
    pub fn close_all(&self) {
        for (_, h) in self.table.lock().expect("stream table").drain() {
            h.tasks.iter().for_each(AbortHandle::abort);
        }
    }
}

/// The target side failed: forget the stream and tell the daemon.
async fn close_from_target(
    table: &Mutex<HashMap<ConnId, StreamHandle>>,
    to_daemon: &mpsc::Sender<AgentMessage>,
    conn_id: ConnId,
    error: Option<String>,
) {
    let handle = table.lock().expect("stream table").remove(&conn_id);
    let _ = to_daemon
        .send(AgentMessage::Stream(StreamMessage::Close {
            conn_id,
            error,
        }))
        .await;
    if let Some(h) = handle {
        h.tasks.iter().for_each(AbortHandle::abort);
    }
}
