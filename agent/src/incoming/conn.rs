//! One redirected connection: where it goes (original server, stealing session, HTTP splitter)
//! and the copies mirror sessions get.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Socket, Type};
use tether_protocol::ConnId;
use tether_protocol::agent::AgentMessage;
use tether_protocol::flow::{self, StreamCredit};
use tether_protocol::incoming::{IncomingEvent, IncomingMode};
use tether_protocol::outgoing::StreamMessage;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use super::iptables::BYPASS_MARK;
use super::{Inner, MirrorConn, PortSubs, SessionTx, StolenConn};
use crate::netns::NetNs;

/// Bytes read from a client at once.
const READ_CHUNK: usize = 64 * 1024;

/// How long a client on a filtered port may stay silent before it is taken for a non-HTTP
/// protocol and passed through.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP/2 client preface (prior knowledge).
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where a client meant to go before REDIRECT, or loopback:port when that is unknown.
pub(super) fn original_dst(stream: &TcpStream, port: u16) -> SocketAddr {
    let sock = socket2::SockRef::from(stream);
    if stream.local_addr().is_ok_and(|a| a.is_ipv6()) {
        sock.original_dst_v6()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
    } else {
        sock.original_dst_v4()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

/// Connects to the original server from inside the target's netns. The connection carries
/// [`BYPASS_MARK`], so no tether chain (ours or another agent's) redirects it again.
pub(super) async fn connect_original(netns: &NetNs, addr: SocketAddr) -> io::Result<TcpStream> {
    let domain = Domain::for_address(addr);
    let socket = netns
        .run(move || -> io::Result<Socket> {
            let s = Socket::new(domain, Type::STREAM, None)?;
            s.set_mark(BYPASS_MARK)?;
            s.set_nonblocking(true)?;
            s.set_tcp_nodelay(true)?;
            Ok(s)
        })
        .await
        .map_err(io::Error::other)??;
    TcpSocket::from_std_stream(std::net::TcpStream::from(socket))
        .connect(addr)
        .await
}

/// What the first bytes of a connection on a filtered port look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sniffed {
    /// An HTTP/1.x request line.
    Http1,
    /// The HTTP/2 prior-knowledge preface.
    Http2,
    /// Anything else: passed through untouched.
    Other,
}

/// Classifies a prefix of a connection, or `None` when more bytes are needed.
pub(super) fn classify(buf: &[u8]) -> Option<Sniffed> {
    if buf.is_empty() {
        return None;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Sniffed::Http2);
    }
    // A request line starts with a method token (uppercase letters in practice) and a space.
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b' ' if i > 0 => return Some(Sniffed::Http1),
            b'A'..=b'Z' | b'-' | b'_' if i < 20 => {}
            _ => return Some(Sniffed::Other),
        }
    }
    if buf.len() >= 20 {
        return Some(Sniffed::Other);
    }
    None
}

/// Peeks at a new connection until it is classified, EOF, or the client stays silent too long.
pub(super) async fn sniff(stream: &TcpStream) -> Sniffed {
    let mut buf = [0u8; 32];
    let deadline = tokio::time::Instant::now() + SNIFF_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return Sniffed::Other,
        };
        if n == 0 {
            return Sniffed::Other;
        }
        if let Some(s) = classify(&buf[..n]) {
            return s;
        }
        // More bytes are on their way; peek returns at once with what is there, so wait a bit.
        if tokio::time::Instant::now() >= deadline {
            return Sniffed::Other;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What a [`Tee`] saw the client send.
#[derive(Debug)]
pub(super) enum TeeMsg {
    /// Bytes.
    Data(Bytes),
    /// The client half-closed.
    Eof,
    /// The copy fell more than [`MIRROR_BACKLOG`] bytes behind: copying stopped.
    Overflow,
}

/// Bytes of one connection's copy that may wait for a slow mirror session (one that returns no
/// credit, say its app is paused). The copy never slows the real connection down; past this, that
/// mirror session loses the connection instead. Each mirror session has its own backlog.
const MIRROR_BACKLOG: usize = 8 * 1024 * 1024;

/// The tee's end of the mirror fan-out.
pub(super) struct MirrorTx {
    tx: mpsc::UnboundedSender<TeeMsg>,
    backlog: Arc<AtomicUsize>,
}

/// A stream that hands a copy of everything read from it to the mirror fan-out.
pub(super) struct Tee<S> {
    inner: S,
    copy: Option<MirrorTx>,
}

impl<S> Tee<S> {
    /// Wraps `inner`; with `copy` `None` it is a plain pass-through.
    pub(super) fn new(inner: S, copy: Option<MirrorTx>) -> Self {
        Self { inner, copy }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tee<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res
            && let Some(copy) = &self.copy
        {
            let new = &buf.filled()[before..];
            let msg = if new.is_empty() {
                TeeMsg::Eof
            } else if copy.backlog.fetch_add(new.len(), Ordering::Relaxed) + new.len()
                > MIRROR_BACKLOG
            {
                TeeMsg::Overflow
            } else {
                TeeMsg::Data(Bytes::copy_from_slice(new))
            };
            let overflow = matches!(msg, TeeMsg::Overflow);
            // The mirrors' task may be gone (all mirror sessions left): stop copying.
            if copy.tx.send(msg).is_err() || overflow {
                self.copy = None;
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tee<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Identity of one redirected connection, as the sessions see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnInfo {
    pub conn_id: ConnId,
    pub port: u16,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

impl ConnInfo {
    fn new_connection(&self, mode: IncomingMode) -> AgentMessage {
        AgentMessage::Incoming(IncomingEvent::NewConnection {
            conn_id: self.conn_id,
            port: self.port,
            mode,
            client: self.client,
            server: self.server,
        })
    }
}

/// Starts copying a connection's client data to the mirror sessions; returns the sender a
/// [`Tee`] feeds, or `None` without mirrors. A fan-out task hands every piece to one task per
/// mirror session, which sends it as that session's credit allows; the fan-out itself never
/// waits, so a slow mirror session holds up neither the connection nor the other mirrors.
fn start_mirrors(inner: &Arc<Inner>, info: ConnInfo, mirrors: Vec<SessionTx>) -> Option<MirrorTx> {
    if mirrors.is_empty() {
        return None;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<TeeMsg>();
    let backlog = Arc::new(AtomicUsize::new(0));
    let queued = backlog.clone();
    let mut copies: Vec<MirrorCopy> = mirrors
        .into_iter()
        .map(|m| {
            let (tx, copy_rx) = mpsc::unbounded_channel();
            let behind = Arc::new(AtomicUsize::new(0));
            let (overflow, overflowed) = watch::channel(false);
            let copy = mirror_copy(inner.clone(), info, m, copy_rx, behind.clone(), overflowed);
            tokio::spawn(copy);
            MirrorCopy {
                tx,
                behind,
                overflow,
            }
        })
        .collect();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let TeeMsg::Data(data) = &msg {
                queued.fetch_sub(data.len(), Ordering::Relaxed);
            }
            copies.retain(|copy| {
                let msg = match &msg {
                    TeeMsg::Data(data) => {
                        let n = data.len();
                        if copy.behind.fetch_add(n, Ordering::Relaxed) + n > MIRROR_BACKLOG {
                            // The copy task may be waiting for credit or for its session.
                            copy.overflow.send_replace(true);
                            return false;
                        }
                        TeeMsg::Data(data.clone())
                    }
                    TeeMsg::Eof => TeeMsg::Eof,
                    TeeMsg::Overflow => TeeMsg::Overflow,
                };
                copy.tx.send(msg).is_ok()
            });
            if copies.is_empty() {
                // Dropping rx makes the tee stop copying.
                return;
            }
        }
    });
    Some(MirrorTx { tx, backlog })
}

/// The fan-out's end of one mirror session's copy.
struct MirrorCopy {
    tx: mpsc::UnboundedSender<TeeMsg>,
    /// Bytes handed to the copy task and not sent yet.
    behind: Arc<AtomicUsize>,
    /// Set once the copy fell more than [`MIRROR_BACKLOG`] behind.
    overflow: watch::Sender<bool>,
}

/// Sends one mirror session its copy of a connection, within the credit it returns, until the
/// connection ends or the copy falls more than [`MIRROR_BACKLOG`] behind (`overflowed`).
async fn mirror_copy(
    inner: Arc<Inner>,
    info: ConnInfo,
    session: SessionTx,
    mut rx: mpsc::UnboundedReceiver<TeeMsg>,
    behind: Arc<AtomicUsize>,
    mut overflowed: watch::Receiver<bool>,
) {
    let conn_id = info.conn_id;
    let key = (session.session, conn_id);
    let (tx, mut inbox, credit) = flow::stream(conn_id);
    inner.mirrors.lock().expect("mirrors lock").insert(
        key,
        MirrorConn {
            port: info.port,
            tx,
        },
    );
    let forget = || {
        inner
            .mirrors
            .lock()
            .expect("mirrors lock")
            .remove(&key)
            .is_some()
    };
    let overflow_error =
        || format!("the mirror copy fell more than {MIRROR_BACKLOG} bytes behind; copy stopped");
    let new_connection = session.send(info.new_connection(IncomingMode::Mirror));
    let announced = tokio::select! {
        ok = new_connection => ok,
        _ = overflowed.wait_for(|o| *o) => false,
    };
    if !announced {
        forget();
        return;
    }
    let mut error = None;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = overflowed.wait_for(|o| *o) => Some(TeeMsg::Overflow),
        };
        let Some(msg) = msg else { break };
        let msg = match msg {
            TeeMsg::Data(data) => {
                let sent = tokio::select! {
                    sent = send_within_credit(&session, &credit, conn_id, &data) => sent,
                    _ = overflowed.wait_for(|o| *o) => Sent::Overflow,
                };
                behind.fetch_sub(data.len(), Ordering::Relaxed);
                match sent {
                    Sent::All => continue,
                    Sent::Overflow => {
                        error = Some(overflow_error());
                        break;
                    }
                    Sent::SessionGone => {
                        forget();
                        return;
                    }
                    Sent::NoCredit => {
                        // The session closed its copy (nothing to say), or broke the flow
                        // rules: the inbox then holds a Close with the violation.
                        if !forget() {
                            return;
                        }
                        error = match inbox.recv().await {
                            Some(StreamMessage::Close { error, .. }) => error,
                            _ => None,
                        };
                        break;
                    }
                }
            }
            TeeMsg::Eof => StreamMessage::Eof { conn_id },
            TeeMsg::Overflow => {
                error = Some(overflow_error());
                break;
            }
        };
        if !session.send(AgentMessage::Stream(msg)).await {
            forget();
            return;
        }
    }
    forget();
    session
        .send(AgentMessage::Stream(StreamMessage::Close {
            conn_id,
            error,
        }))
        .await;
}

/// How [`send_within_credit`] ended.
enum Sent {
    All,
    /// The copy fell too far behind (the fan-out decides; only the caller sees this).
    Overflow,
    /// The session unsubscribed or its link is gone.
    SessionGone,
    /// No more credit will come: the stream was closed or failed.
    NoCredit,
}

/// Sends `data` as Data messages, each within the credit the session returned.
async fn send_within_credit(
    session: &SessionTx,
    credit: &StreamCredit,
    conn_id: ConnId,
    data: &[u8],
) -> Sent {
    let mut off = 0;
    while off < data.len() {
        let Some(n) = credit.reserve(data.len() - off).await else {
            return Sent::NoCredit;
        };
        let msg = StreamMessage::Data {
            conn_id,
            data: data[off..off + n].to_vec().into(),
        };
        if !session.send(AgentMessage::Stream(msg)).await {
            return Sent::SessionGone;
        }
        off += n;
    }
    Sent::All
}

/// Handles one connection accepted on the redirect listener of `port`.
pub(super) async fn handle(
    inner: Arc<Inner>,
    port: u16,
    live: Arc<RwLock<PortSubs>>,
    client: TcpStream,
    peer: SocketAddr,
) {
    let subs = live.read().expect("subscribers lock").clone();
    let _ = client.set_nodelay(true);
    let info = ConnInfo {
        conn_id: inner.next_conn_id(),
        port,
        client: peer,
        server: original_dst(&client, port),
    };
    let tee = start_mirrors(&inner, info, subs.mirrors.clone());
    if let Some(stealer) = subs.steal_all.clone() {
        steal_whole(inner, info, stealer, Tee::new(client, tee)).await;
        return;
    }
    if !subs.filtered.is_empty() {
        let sniffed = sniff(&client).await;
        if sniffed != Sniffed::Other {
            let h2 = sniffed == Sniffed::Http2;
            super::http::serve(inner, info, live, Tee::new(client, tee), h2).await;
            return;
        }
    }
    passthrough(&inner, info, Tee::new(client, tee)).await;
}

/// Pipes the client to the original server both ways.
async fn passthrough(inner: &Inner, info: ConnInfo, mut client: Tee<TcpStream>) {
    match connect_original(inner.target.netns(), info.server).await {
        Ok(mut upstream) => {
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(port = info.port, "passed-through connection ended: {e}");
            }
        }
        Err(e) => {
            tracing::warn!(
                port = info.port,
                server = %info.server,
                "cannot reach the original server: {e}"
            );
        }
    }
}

/// Hands the whole connection to `stealer`: client data goes to the session within the credit
/// it returns, the session's [`StreamMessage`]s (through [`super::Incoming::from_session`]) go to
/// the client, and credit goes back as the client's socket takes them.
async fn steal_whole(
    inner: Arc<Inner>,
    info: ConnInfo,
    stealer: SessionTx,
    client: Tee<TcpStream>,
) {
    let conn_id = info.conn_id;
    let (tx, mut from_session, credit) = flow::stream(conn_id);
    inner.conns.lock().expect("conns lock").insert(
        conn_id,
        StolenConn {
            session: stealer.session,
            port: info.port,
            tx,
        },
    );
    if !stealer.send(info.new_connection(IncomingMode::Steal)).await {
        inner.conns.lock().expect("conns lock").remove(&conn_id);
        return;
    }
    let (mut rd, mut wr) = tokio::io::split(client);
    let reader = async {
        let mut buf = vec![0u8; READ_CHUNK];
        // Without credit the client is not read: TCP pushes back on it, nothing queues here.
        // No credit for good means the stream ended: the writer's side tells why.
        while let Some(room) = credit.reserve(READ_CHUNK).await {
            match rd.read(&mut buf[..room]).await {
                Ok(0) => {
                    credit.unreserve(room);
                    stealer
                        .send(AgentMessage::Stream(StreamMessage::Eof { conn_id }))
                        .await;
                    return None;
                }
                Ok(n) => {
                    credit.unreserve(room - n);
                    let msg = StreamMessage::Data {
                        conn_id,
                        data: buf[..n].to_vec().into(),
                    };
                    if !stealer.send(AgentMessage::Stream(msg)).await {
                        return Some("session gone".to_owned());
                    }
                }
                Err(e) => return Some(e.to_string()),
            }
        }
        None
    };
    let writer = async {
        while let Some(msg) = from_session.recv().await {
            match msg {
                StreamMessage::Data { data, .. } => {
                    if let Err(e) = wr.write_all(data.as_slice()).await {
                        return Err(e.to_string());
                    }
                    if let Some(credit) = from_session.consumed(data.len()) {
                        stealer.send(AgentMessage::Stream(credit)).await;
                    }
                }
                StreamMessage::Eof { .. } => {
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
                // From the session (already unregistered: nothing goes back), or a flow-control
                // violation (still registered: the session is told why).
                StreamMessage::Close { error, .. } => return Err(error.unwrap_or_default()),
                StreamMessage::Datagram { .. } | StreamMessage::Credit { .. } => {}
            }
        }
        // The session let go of the connection (unsubscribed or gone).
        Err(String::new())
    };
    tokio::pin!(reader, writer);
    let mut reader_done = false;
    let mut writer_done = false;
    // Ends when both directions finished cleanly, or on the first failure or close.
    let error: Option<String> = loop {
        tokio::select! {
            r = &mut reader, if !reader_done => match r {
                None => reader_done = true,
                Some(e) => break Some(e),
            },
            w = &mut writer, if !writer_done => match w {
                Ok(()) => writer_done = true,
                Err(e) if e.is_empty() => break None,
                Err(e) => break Some(e),
            },
        }
        if reader_done && writer_done {
            break None;
        }
    };
    let still_registered = inner
        .conns
        .lock()
        .expect("conns lock")
        .remove(&conn_id)
        .is_some();
    if still_registered {
        stealer
            .send(AgentMessage::Stream(StreamMessage::Close {
                conn_id,
                error,
            }))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_http1_http2_and_others() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Some(Sniffed::Http1));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"PRI * HTTP/2.0"), None);
        assert_eq!(classify(H2_PREFACE), Some(Sniffed::Http2));
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
            Some(Sniffed::Http1)
        );
        assert_eq!(classify(b"\x16\x03\x01\x02"), Some(Sniffed::Other));
        assert_eq!(classify(b"get / HTTP/1.1"), Some(Sniffed::Other));
        assert_eq!(classify(b"AAAAAAAAAAAAAAAAAAAAAAAA"), Some(Sniffed::Other));
    }
}
