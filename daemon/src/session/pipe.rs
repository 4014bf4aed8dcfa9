//! Relays bytes between a local TCP socket and an agent stream, both ways, with half-close and
//! per-stream flow control: the local socket is read only while the agent has room for the
//! bytes (its credit), and credit goes back to the agent as the local socket takes its bytes.

use std::sync::atomic::Ordering;

use tether_protocol::agent::ClientMessage;
use tether_protocol::outgoing::StreamMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::events::{ByteMeter, OpenGuard, add};
use crate::agent_link::{AgentClient, StreamRx};

/// Read size from local sockets: big reads mean few frames on the agent link. Well under the
/// flow-control window, so a stream keeps several reads in flight.
const CHUNK: usize = 256 * 1024;

/// How the local side of a piped connection behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Bytes flow both ways (outgoing connections, stolen ones).
    Both,
    /// Mirror: the app's replies are read and dropped; the original server answers the client.
    DiscardLocal,
}

/// Pipes until both sides are done or either fails; always ends the stream at the agent.
/// Relayed bytes go to `meter`; `open` counts the connection while it lasts.
pub(crate) async fn pipe(
    agent: AgentClient,
    sock: TcpStream,
    mut stream: StreamRx,
    dir: Direction,
    meter: &ByteMeter,
    open: &std::sync::atomic::AtomicU64,
) {
    let _open = OpenGuard::new(open);
    let conn_id = stream.conn_id();
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();

    let up_agent = agent.clone();
    let credit = stream.credit();
    let up = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            // Read only what the agent has room for. No credit for good means the stream ended
            // (the link dropped, or the agent broke the flow rules): the other half says how.
            let room = match dir {
                Direction::Both => match credit.reserve(CHUNK).await {
                    Some(room) => room,
                    None => return Ok(()),
                },
                Direction::DiscardLocal => CHUNK,
            };
            let n = rd.read(&mut buf[..room]).await?;
            if dir == Direction::Both {
                credit.unreserve(room - n);
            }
            if n == 0 {
                if dir == Direction::Both {
                    up_agent
                        .send(ClientMessage::Stream(StreamMessage::Eof { conn_id }))
                        .await
                        .map_err(std::io::Error::other)?;
                }
                return Ok::<_, std::io::Error>(());
            }
            if dir == Direction::Both {
                add(&meter.up, n as u64);
                let data = buf[..n].to_vec().into();
                up_agent
                    .send(ClientMessage::Stream(StreamMessage::Data { conn_id, data }))
                    .await
                    .map_err(std::io::Error::other)?;
            }
        }
    };
    // The agent's half-close is signalled here; the stream is still read afterwards so its
    // Close (or the link's end) is noticed while the app keeps writing.
    let remote_eof = std::sync::atomic::AtomicBool::new(false);
    let eof_notify = tokio::sync::Notify::new();
    let down = async {
        while let Some(m) = stream.recv().await {
            match m {
                StreamMessage::Data { data, .. } => {
                    if !remote_eof.load(Ordering::Relaxed) {
                        wr.write_all(data.as_slice()).await?;
                        add(&meter.down, data.as_slice().len() as u64);
                    }
                    // The local socket took the bytes: the agent may send that much more.
                    if let Some(credit) = stream.consumed(data.len()) {
                        let _ = agent.send(credit).await;
                    }
                }
                StreamMessage::Eof { .. } => {
                    wr.shutdown().await?;
                    remote_eof.store(true, Ordering::Relaxed);
                    eof_notify.notify_one();
                }
                StreamMessage::Close { error, .. } => {
                    if let Some(e) = error {
                        tracing::debug!(conn_id, "stream closed by the agent: {e}");
                    }
                    return Ok::<_, std::io::Error>(());
                }
                StreamMessage::Datagram { .. } | StreamMessage::Credit { .. } => {}
            }
        }
        Ok(())
    };
    tokio::pin!(up, down);

    let mut up_done = false;
    let error: Option<String> = loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                up_done = true;
                if let Err(e) = r {
                    break Some(format!("local socket: {e}"));
                }
                if remote_eof.load(Ordering::Relaxed) {
                    break None;
                }
            }
            r = &mut down => match r {
                // The agent is done with the stream (or the link is gone): nothing to tell it.
                Ok(()) => return,
                Err(e) => break Some(format!("local socket: {e}")),
            },
            _ = eof_notify.notified(), if up_done => break None,
        }
    };
    let _ = agent
        .send(ClientMessage::Stream(StreamMessage::Close {
            conn_id,
            error,
        }))
        .await;
}
