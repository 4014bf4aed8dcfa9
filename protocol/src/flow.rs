//! Per-stream flow control: the credit windows of TCP streams multiplexed on one link.
//!
//! Each direction of a TCP stream has a window of [`STREAM_WINDOW`] bytes. The sender starts
//! with that much credit, reads from its socket only while it has credit, and never sends more
//! [`StreamMessage::Data`](crate::outgoing::StreamMessage::Data) than its credit. The receiver returns credit with
//! [`StreamMessage::Credit`](crate::outgoing::StreamMessage::Credit) as its own socket accepts the bytes (in batches of
//! [`CREDIT_BATCH`]). So a receiver never queues more than one window per stream, and the link's
//! reader never waits for a stream: a socket nobody reads (a debuggee paused at a breakpoint)
//! stalls its own stream, not every stream, file operation and lookup of the session.
//!
//! A peer that sends past the window, or returns more credit than it could owe, breaks the
//! protocol: the receiver closes that stream (and says why), never the link.
//!
//! UDP streams ([`StreamMessage::Datagram`](crate::outgoing::StreamMessage::Datagram)) carry no credit: a receiver queues at most
//! [`DATAGRAM_QUEUE`] datagrams per stream and drops the rest, as a full socket buffer would.
//!
//! The accounting ([`RecvWindow`], [`SendWindow`]) is plain data; with the `tokio` feature,
//! [`stream`] makes the queues both the daemon and the agent use, so both ends follow the same
//! rules by construction.

use thiserror::Error;

use crate::ConnId;

/// The protocol version that introduced flow control. Both ends of a link need it: an older
/// peer would stall once its credit ran out, so it is refused at the hello.
pub const CREDIT_VERSION: u32 = 2;

/// Bytes one direction of a TCP stream may have in flight (sent, not yet credited back).
///
/// 2 MiB. A stream's throughput is at most window / round trip of the credit loop (agent, kube
/// port-forward, daemon, local socket, and back). That loop takes a few milliseconds on a local
/// cluster and tens over a WAN: 2 MiB / 10 ms = 200 MB/s per stream, about what `kubectl
/// port-forward` itself carried in this repo's quick benchmark (90 to 300 MB/s, debug builds,
/// noisy), where a 1 MiB window reached only about 65% of it. The window is also the most a
/// stalled stream (a debuggee at a breakpoint) pins at each end, so larger windows buy little
/// speed for a lot of memory.
pub const STREAM_WINDOW: u64 = 2 << 20;

/// Credit is returned once this much was consumed: a quarter of the window keeps the sender busy
/// (3/4 of the window is still its to send) without a credit message per small read.
pub const CREDIT_BATCH: u64 = STREAM_WINDOW / 4;

/// Datagrams queued per UDP stream before new ones are dropped.
pub const DATAGRAM_QUEUE: usize = 256;

/// Bytes of datagrams queued per UDP stream before new ones are dropped.
pub const DATAGRAM_QUEUE_BYTES: usize = 1 << 20;

/// A peer broke the flow-control rules of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlowError {
    /// The peer sent more data than its credit.
    #[error(
        "flow control violation on stream {conn_id}: {in_flight} bytes in flight exceed the {window}-byte window"
    )]
    WindowExceeded {
        /// The stream.
        conn_id: ConnId,
        /// Bytes the peer would have in flight with this message.
        in_flight: u64,
        /// The window.
        window: u64,
    },
    /// The peer returned more credit than it could owe.
    #[error(
        "flow control violation on stream {conn_id}: credit would raise the send window to {total} bytes, over the {window}-byte window"
    )]
    CreditOverflow {
        /// The stream.
        conn_id: ConnId,
        /// The credit the sender would hold.
        total: u64,
        /// The window.
        window: u64,
    },
}

/// The receiving side's account of one stream direction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecvWindow {
    /// Received and not yet credited back.
    in_flight: u64,
    /// Of those, consumed by the local socket (credit owed to the peer).
    consumed: u64,
}

impl RecvWindow {
    /// `n` bytes arrived. An error means the peer exceeded the window; nothing was counted.
    pub fn on_data(&mut self, conn_id: ConnId, n: u64) -> Result<(), FlowError> {
        let in_flight = self.in_flight.saturating_add(n);
        if in_flight > STREAM_WINDOW {
            return Err(FlowError::WindowExceeded {
                conn_id,
                in_flight,
                window: STREAM_WINDOW,
            });
        }
        self.in_flight = in_flight;
        Ok(())
    }

    /// `n` bytes left the queue for the local socket. Returns the credit to send now, if any.
    pub fn on_consumed(&mut self, n: u64) -> Option<u64> {
        self.consumed = (self.consumed + n).min(self.in_flight);
        if self.consumed < CREDIT_BATCH {
            return None;
        }
        let credit = std::mem::take(&mut self.consumed);
        self.in_flight -= credit;
        Some(credit)
    }

    /// Bytes received and not yet credited back.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }
}

/// The sending side's account of one stream direction: the credit it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    available: u64,
}

impl Default for SendWindow {
    fn default() -> Self {
        Self {
            available: STREAM_WINDOW,
        }
    }
}

impl SendWindow {
    /// Credit the sender may spend now.
    pub fn available(&self) -> u64 {
        self.available
    }

    /// Takes up to `max` bytes of credit (0 when there is none).
    pub fn take(&mut self, max: u64) -> u64 {
        let n = self.available.min(max);
        self.available -= n;
        n
    }

    /// Gives back credit taken and not spent.
    pub fn give_back(&mut self, n: u64) {
        self.available = (self.available + n).min(STREAM_WINDOW);
    }

    /// Credit from the peer. An error means the peer returned more than it could owe.
    pub fn grant(&mut self, conn_id: ConnId, n: u64) -> Result<(), FlowError> {
        let total = self.available.saturating_add(n);
        if total > STREAM_WINDOW {
            return Err(FlowError::CreditOverflow {
                conn_id,
                total,
                window: STREAM_WINDOW,
            });
        }
        self.available = total;
        Ok(())
    }
}

#[cfg(feature = "tokio")]
pub use self::queues::{StreamCredit, StreamInbox, StreamTx, stream};

#[cfg(feature = "tokio")]
mod queues {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, MutexGuard};

    use tokio::sync::Notify;

    use super::{
        DATAGRAM_QUEUE, DATAGRAM_QUEUE_BYTES, FlowError, RecvWindow, STREAM_WINDOW, SendWindow,
    };
    use crate::ConnId;
    use crate::outgoing::StreamMessage;

    /// Small Data messages are merged into the one queued before them up to this size, so a
    /// peer writing a byte at a time cannot make a window's worth of messages.
    const COALESCE: usize = 16 * 1024;

    #[derive(Debug, Default)]
    struct State {
        queue: VecDeque<StreamMessage>,
        recv: RecvWindow,
        datagrams: usize,
        datagram_bytes: usize,
        /// Datagrams dropped because the queue was full.
        dropped_datagrams: u64,
        /// The peer half-closed: later Data is dropped.
        eof: bool,
        /// A Close is queued (from the peer or for a violation): later messages are dropped.
        closed: bool,
        /// The link side is gone: `recv` ends once the queue is empty.
        ended: bool,
        send: SendWindow,
        /// No more credit will come (the link side is gone or the stream failed).
        send_closed: bool,
    }

    #[derive(Debug)]
    struct Shared {
        conn_id: ConnId,
        state: Mutex<State>,
        /// Wakes the consumer of the queue.
        queued: Notify,
        /// Wakes the sender waiting for credit.
        credited: Notify,
    }

    impl Shared {
        fn lock(&self) -> MutexGuard<'_, State> {
            // The state is plain counters and a queue: usable after a panic elsewhere.
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    /// A new stream's three ends: the link's ([`StreamTx`]), the consumer of what the peer sends
    /// ([`StreamInbox`]) and the sender of what goes to the peer ([`StreamCredit`]).
    pub fn stream(conn_id: ConnId) -> (StreamTx, StreamInbox, StreamCredit) {
        let shared = Arc::new(Shared {
            conn_id,
            state: Mutex::default(),
            queued: Notify::new(),
            credited: Notify::new(),
        });
        (
            StreamTx {
                shared: shared.clone(),
            },
            StreamInbox {
                shared: shared.clone(),
            },
            StreamCredit { shared },
        )
    }

    /// The link's end of a stream: takes every message the peer sends for it, never waits.
    /// Dropping it ends the stream: the inbox yields what is queued, then `None`; the sender's
    /// credit runs dry for good.
    #[derive(Debug)]
    pub struct StreamTx {
        shared: Arc<Shared>,
    }

    impl StreamTx {
        /// The stream's id.
        pub fn conn_id(&self) -> ConnId {
            self.shared.conn_id
        }

        /// A message from the peer. [`StreamMessage::Credit`] feeds the sender; the others are
        /// queued for the consumer (datagrams past [`DATAGRAM_QUEUE`] are dropped). An error is
        /// a flow-control violation: the caller closes the stream ([`StreamTx::fail`]).
        pub fn push(&self, msg: StreamMessage) -> Result<(), FlowError> {
            let conn_id = self.shared.conn_id;
            let mut st = self.shared.lock();
            if let StreamMessage::Credit { bytes, .. } = msg {
                st.send.grant(conn_id, bytes)?;
                drop(st);
                self.shared.credited.notify_one();
                return Ok(());
            }
            if st.closed {
                return Ok(());
            }
            match msg {
                StreamMessage::Data { data, .. } => {
                    if st.eof || data.is_empty() {
                        return Ok(());
                    }
                    st.recv.on_data(conn_id, data.len() as u64)?;
                    if let Some(StreamMessage::Data { data: last, .. }) = st.queue.back_mut()
                        && last.len() < COALESCE
                        && data.len() < COALESCE
                    {
                        last.0.extend_from_slice(data.as_slice());
                    } else {
                        st.queue.push_back(StreamMessage::Data { conn_id, data });
                    }
                }
                StreamMessage::Datagram { peer, data, .. } => {
                    if st.datagrams >= DATAGRAM_QUEUE
                        || st.datagram_bytes + data.len() > DATAGRAM_QUEUE_BYTES
                    {
                        st.dropped_datagrams += 1;
                        return Ok(());
                    }
                    st.datagrams += 1;
                    st.datagram_bytes += data.len();
                    st.queue.push_back(StreamMessage::Datagram {
                        conn_id,
                        peer,
                        data,
                    });
                }
                StreamMessage::Eof { .. } => {
                    if st.eof {
                        return Ok(());
                    }
                    st.eof = true;
                    st.queue.push_back(StreamMessage::Eof { conn_id });
                }
                StreamMessage::Close { error, .. } => {
                    st.closed = true;
                    st.queue.push_back(StreamMessage::Close { conn_id, error });
                }
                StreamMessage::Credit { .. } => unreachable!("handled above"),
            }
            drop(st);
            self.shared.queued.notify_one();
            Ok(())
        }

        /// Closes the stream locally: the consumer gets a `Close` with `error` after what is
        /// queued, the sender gets no more credit.
        pub fn fail(&self, error: String) {
            let conn_id = self.shared.conn_id;
            let mut st = self.shared.lock();
            if !st.closed {
                st.closed = true;
                st.queue.push_back(StreamMessage::Close {
                    conn_id,
                    error: Some(error),
                });
            }
            st.send_closed = true;
            drop(st);
            self.shared.queued.notify_one();
            self.shared.credited.notify_one();
        }
    }

    impl Drop for StreamTx {
        fn drop(&mut self) {
            let mut st = self.shared.lock();
            st.ended = true;
            st.send_closed = true;
            drop(st);
            self.shared.queued.notify_one();
            self.shared.credited.notify_one();
        }
    }

    /// What the peer sent on a stream, in order, for the one task that writes it to a socket.
    #[derive(Debug)]
    pub struct StreamInbox {
        shared: Arc<Shared>,
    }

    impl StreamInbox {
        /// The stream's id.
        pub fn conn_id(&self) -> ConnId {
            self.shared.conn_id
        }

        /// The next message; `None` once the stream is closed or the link side is gone and
        /// everything queued was taken.
        pub async fn recv(&mut self) -> Option<StreamMessage> {
            loop {
                {
                    let mut st = self.shared.lock();
                    if let Some(m) = st.queue.pop_front() {
                        if let StreamMessage::Datagram { data, .. } = &m {
                            st.datagrams -= 1;
                            st.datagram_bytes -= data.len();
                        }
                        return Some(m);
                    }
                    if st.ended || st.closed {
                        return None;
                    }
                }
                self.shared.queued.notified().await;
            }
        }

        /// `n` bytes of Data taken from this inbox were written to the local socket (or dropped
        /// on purpose). Returns the [`StreamMessage::Credit`] to send to the peer, if one is due.
        pub fn consumed(&self, n: usize) -> Option<StreamMessage> {
            let bytes = self.shared.lock().recv.on_consumed(n as u64)?;
            Some(StreamMessage::Credit {
                conn_id: self.shared.conn_id,
                bytes,
            })
        }

        /// Bytes the peer has in flight on this stream (received, not credited back).
        pub fn in_flight(&self) -> u64 {
            self.shared.lock().recv.in_flight()
        }

        /// Datagrams dropped so far because the queue was full.
        pub fn dropped_datagrams(&self) -> u64 {
            self.shared.lock().dropped_datagrams
        }
    }

    /// The credit to send on a stream. Clones share it; one task should spend it.
    #[derive(Debug, Clone)]
    pub struct StreamCredit {
        shared: Arc<Shared>,
    }

    impl StreamCredit {
        /// Waits for credit and takes up to `max` bytes of it; `None` once no more credit can
        /// come (the link side is gone or the stream failed). Give back what was not sent with
        /// [`StreamCredit::unreserve`].
        pub async fn reserve(&self, max: usize) -> Option<usize> {
            loop {
                {
                    let mut st = self.shared.lock();
                    if st.send_closed {
                        return None;
                    }
                    let n = st.send.take(max as u64);
                    if n > 0 {
                        return Some(n as usize);
                    }
                }
                self.shared.credited.notified().await;
            }
        }

        /// Returns reserved credit that was not spent.
        pub fn unreserve(&self, n: usize) {
            if n > 0 {
                self.shared.lock().send.give_back(n as u64);
                self.shared.credited.notify_one();
            }
        }

        /// Credit available now (for tests and logs).
        pub fn available(&self) -> u64 {
            self.shared.lock().send.available()
        }

        /// The window a fresh stream starts with.
        pub fn window() -> u64 {
            STREAM_WINDOW
        }
    }

    #[cfg(test)]
    mod tests {
        use std::time::Duration;

        use super::*;
        use crate::Payload;

        fn data(n: usize, byte: u8) -> StreamMessage {
            StreamMessage::Data {
                conn_id: 7,
                data: Payload(vec![byte; n]),
            }
        }

        #[tokio::test]
        async fn data_beyond_the_window_is_a_violation_and_nothing_blocks() {
            let (tx, mut inbox, _credit) = stream(7);
            let chunk = 256 * 1024;
            for _ in 0..STREAM_WINDOW as usize / chunk {
                tx.push(data(chunk, 1)).unwrap();
            }
            let err = tx.push(data(1, 2)).unwrap_err();
            assert!(
                matches!(err, FlowError::WindowExceeded { conn_id: 7, in_flight, .. } if in_flight == STREAM_WINDOW + 1),
                "{err}"
            );
            tx.fail(err.to_string());
            let mut got = 0;
            loop {
                match inbox.recv().await {
                    Some(StreamMessage::Data { data, .. }) => got += data.len(),
                    Some(StreamMessage::Close { error: Some(e), .. }) => {
                        assert!(e.contains("flow control violation"), "{e}");
                        break;
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(got as u64, STREAM_WINDOW, "queued data survives the close");
            assert_eq!(inbox.recv().await, None);
        }

        #[tokio::test]
        async fn consumption_returns_credit_in_batches_and_reopens_the_window() {
            let (tx, mut inbox, _credit) = stream(7);
            tx.push(data(STREAM_WINDOW as usize, 1)).unwrap();
            let Some(StreamMessage::Data { data: d, .. }) = inbox.recv().await else {
                panic!()
            };
            assert!(inbox.consumed(1000).is_none(), "credit is batched");
            let Some(StreamMessage::Credit { conn_id: 7, bytes }) = inbox.consumed(d.len() - 1000)
            else {
                panic!("credit due")
            };
            assert_eq!(bytes, STREAM_WINDOW);
            tx.push(data(STREAM_WINDOW as usize, 2)).unwrap();
        }

        #[tokio::test]
        async fn small_writes_coalesce_in_order() {
            let (tx, mut inbox, _credit) = stream(7);
            for i in 0..1000u32 {
                tx.push(StreamMessage::Data {
                    conn_id: 7,
                    data: Payload(i.to_be_bytes().to_vec()),
                })
                .unwrap();
            }
            tx.push(StreamMessage::Eof { conn_id: 7 }).unwrap();
            tx.push(data(10, 9)).unwrap(); // after Eof: dropped
            drop(tx);
            let mut bytes = Vec::new();
            let mut messages = 0;
            while let Some(m) = inbox.recv().await {
                messages += 1;
                match m {
                    StreamMessage::Data { data, .. } => bytes.extend(data.0),
                    StreamMessage::Eof { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
            let want: Vec<u8> = (0..1000u32).flat_map(|i| i.to_be_bytes()).collect();
            assert_eq!(bytes, want);
            assert!(messages < 10, "{messages} messages for 4000 bytes");
        }

        #[tokio::test]
        async fn credit_waits_grows_and_rejects_overflow() {
            let (tx, _inbox, credit) = stream(7);
            assert_eq!(
                credit.reserve(usize::MAX).await,
                Some(STREAM_WINDOW as usize)
            );
            let waiter = {
                let c = credit.clone();
                tokio::spawn(async move { c.reserve(4096).await })
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!waiter.is_finished(), "no credit: the sender waits");
            tx.push(StreamMessage::Credit {
                conn_id: 7,
                bytes: 1000,
            })
            .unwrap();
            assert_eq!(waiter.await.unwrap(), Some(1000));
            credit.unreserve(500);
            let err = tx
                .push(StreamMessage::Credit {
                    conn_id: 7,
                    bytes: STREAM_WINDOW,
                })
                .unwrap_err();
            assert!(matches!(err, FlowError::CreditOverflow { .. }), "{err}");
            assert_eq!(credit.available(), 500);
            drop(tx);
            assert_eq!(
                credit.reserve(10).await,
                None,
                "no link, nothing to send on"
            );
        }

        #[tokio::test]
        async fn dropping_the_link_side_ends_both_ends() {
            let (tx, mut inbox, credit) = stream(7);
            let c = credit.clone();
            let _ = c.reserve(STREAM_WINDOW as usize).await;
            let waiter = tokio::spawn(async move { c.reserve(1).await });
            tx.push(data(3, 1)).unwrap();
            drop(tx);
            assert!(matches!(
                inbox.recv().await,
                Some(StreamMessage::Data { .. })
            ));
            assert_eq!(inbox.recv().await, None);
            assert_eq!(waiter.await.unwrap(), None);
            assert_eq!(credit.reserve(1).await, None);
        }

        #[tokio::test]
        async fn datagrams_beyond_the_queue_are_dropped() {
            let (tx, mut inbox, _credit) = stream(7);
            let peer = "10.0.0.1:53".parse().unwrap();
            for i in 0..(DATAGRAM_QUEUE + 10) {
                tx.push(StreamMessage::Datagram {
                    conn_id: 7,
                    peer,
                    data: Payload(vec![i as u8; 8]),
                })
                .unwrap();
            }
            drop(tx);
            let mut n = 0;
            while let Some(StreamMessage::Datagram { .. }) = inbox.recv().await {
                n += 1;
            }
            assert_eq!(n, DATAGRAM_QUEUE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_window_counts_in_flight_until_credited() {
        let mut w = RecvWindow::default();
        w.on_data(1, STREAM_WINDOW).unwrap();
        assert!(w.on_data(1, 1).is_err());
        assert_eq!(w.on_consumed(CREDIT_BATCH - 1), None);
        assert_eq!(w.on_consumed(1), Some(CREDIT_BATCH));
        assert_eq!(w.in_flight(), STREAM_WINDOW - CREDIT_BATCH);
        w.on_data(1, CREDIT_BATCH).unwrap();
        assert!(w.on_data(1, 1).is_err());
        // Consuming more than arrived never credits bytes the peer did not send.
        assert_eq!(w.on_consumed(10 * STREAM_WINDOW), Some(STREAM_WINDOW));
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn send_window_spends_and_refills_within_the_window() {
        let mut w = SendWindow::default();
        assert_eq!(w.take(100), 100);
        assert_eq!(w.take(u64::MAX), STREAM_WINDOW - 100);
        assert_eq!(w.take(1), 0);
        w.grant(1, 50).unwrap();
        w.give_back(10);
        assert_eq!(w.available(), 60);
        assert!(w.grant(1, STREAM_WINDOW).is_err());
        assert_eq!(w.available(), 60, "a rejected grant changes nothing");
    }
}
