//! In-place reconnect of the agent link: the transport drops (the fake agent closes its first
//! connection), the link redials through its [`Redial`], says hello again with the same token and
//! the session carries on: requests in flight fail with EIO, open streams end, subscriptions are
//! sent again, later requests succeed, and the session's link never reports itself closed.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{AGENT_TOKEN, FakeLayer, handshake, hello};
use futures::{SinkExt, StreamExt};
use tether::agent_link::{
    AgentClient, AgentEvent, DialError, LinkOptions, Redial, RequestError, Transport,
};
use tether::session::{
    ListenKind, LocalContext, RouterEvent, Session, SessionOptions, SessionParams,
};
use tether_protocol::PROTOCOL_VERSION;
use tether_protocol::agent::{AgentMessage, ClientMessage, Request, Response};
use tether_protocol::file::{FileRequest, FileResponse, Metadata};
use tether_protocol::incoming::{IncomingMode, IncomingRequest, IncomingResponse};
use tether_protocol::layer::{LayerRequest, LayerResponse};
use tokio::net::{TcpListener, TcpStream};

/// Reading this fd on the first connection makes the fake agent close that connection unanswered.
const DROP_FD: u64 = 13;

/// Every client message, with the index of the connection it came on.
type Log = Arc<Mutex<Vec<(usize, ClientMessage)>>>;

/// A fake agent that accepts any number of connections (the real agent serves several).
async fn multi_agent() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(n, sock, log2.clone()));
        }
    });
    (addr, log)
}

async fn serve(n: usize, sock: TcpStream, log: Log) {
    let Some((mut rd, mut wr)) = handshake(sock, PROTOCOL_VERSION).await else {
        return;
    };
    while let Some(Ok(m)) = rd.next().await {
        if let ClientMessage::Ping(p) = m {
            let _ = wr.send(AgentMessage::Pong(p)).await;
            continue;
        }
        log.lock().unwrap().push((n, m.clone()));
        let ClientMessage::Request { id, body } = m else {
            continue;
        };
        let result = match body {
            Request::File(FileRequest::Read { fd, .. }) => {
                if n == 0 && fd == DROP_FD {
                    // The port-forward drops mid-request.
                    return;
                }
                Ok(Response::File(FileResponse::Data(
                    format!("conn {n} fd {fd}").into_bytes().into(),
                )))
            }
            // Every connection numbers its handles from the same start, as the agent does.
            Request::File(FileRequest::Open { .. }) => Ok(Response::File(FileResponse::Opened {
                fd: 7,
                metadata: Metadata::default(),
            })),
            Request::Incoming(IncomingRequest::Subscribe { port, .. }) => {
                Ok(Response::Incoming(IncomingResponse::Subscribed { port }))
            }
            _ => continue,
        };
        if wr
            .send(AgentMessage::Response { id, result })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Redials `addr` over TCP with a short schedule.
fn tcp_redial(addr: SocketAddr, attempts: u32) -> Redial {
    let dial = move || {
        Box::pin(async move {
            let s = TcpStream::connect(addr)
                .await
                .map_err(|e| DialError::Failed(format!("connecting to {addr}: {e}")))?;
            let (r, w) = s.into_split();
            Ok(Transport {
                reader: Box::new(r),
                writer: Box::new(w),
                peer: addr.to_string(),
            })
        }) as futures::future::BoxFuture<'static, _>
    };
    Redial {
        attempts,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..Redial::new(Arc::new(dial))
    }
}

fn read(fd: u64) -> Request {
    Request::File(FileRequest::Read { fd, len: 8 })
}

fn data(r: Result<Response, RequestError>) -> String {
    match r {
        Ok(Response::File(FileResponse::Data(d))) => String::from_utf8(d.0.to_vec()).unwrap(),
        other => panic!("expected data, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_link_is_redialled_in_flight_requests_fail_and_streams_end() {
    common::init_tracing();
    let (addr, log) = multi_agent().await;
    let (client, mut events) =
        AgentClient::connect(&addr.to_string(), AGENT_TOKEN, LinkOptions::default())
            .await
            .unwrap();
    client.set_redial(tcp_redial(addr, 5));
    assert_eq!(data(client.request(read(1)).await), "conn 0 fd 1");
    let mut stream = client.open_stream().unwrap();

    // The agent side drops the transport while this request is in flight.
    let err = client.request(read(DROP_FD)).await.unwrap_err();
    assert!(matches!(err, RequestError::LinkDown(_)), "{err:?}");
    // The stream of the old transport ends (a reset for its local socket).
    let end = tokio::time::timeout(Duration::from_secs(5), stream.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");

    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no dropped event")
        .unwrap();
    assert!(matches!(ev, AgentEvent::Dropped { .. }), "{ev:?}");
    // Dropping `handled` lets the redial go on.
    drop(ev);
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no reconnected event")
        .unwrap();
    assert!(
        matches!(&ev, AgentEvent::Reconnected { attempts: 1, cause } if cause.to_string().contains("closed the connection")),
        "{ev:?}"
    );
    // Same handle, new transport: the next request is served by the second connection.
    assert_eq!(data(client.request(read(2)).await), "conn 1 fd 2");
    assert!(client.down_reason().is_none());
    let on_second = log.lock().unwrap().iter().filter(|(n, _)| *n == 1).count();
    assert_eq!(
        on_second, 1,
        "the second connection carried that one request"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_ends_when_every_redial_fails() {
    common::init_tracing();
    let (addr, _log) = multi_agent().await;
    let (client, _events) =
        AgentClient::connect(&addr.to_string(), AGENT_TOKEN, LinkOptions::default())
            .await
            .unwrap();
    // Nothing listens here: every attempt fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    client.set_redial(tcp_redial(dead, 3));
    assert!(client.request(read(DROP_FD)).await.is_err());
    tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("the link must end after its attempts");
    let why = client.down_reason().unwrap().to_string();
    assert!(why.contains("re-establishing the link failed"), "{why}");
    assert!(why.contains("connecting to"), "{why}");
    // Requests fail at once now.
    assert!(matches!(
        client.request(read(1)).await,
        Err(RequestError::LinkDown(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_resubscribes_its_ports_and_goes_on_after_a_reconnect() {
    common::init_tracing();
    let (addr, log) = multi_agent().await;
    let (client, events) =
        AgentClient::connect(&addr.to_string(), AGENT_TOKEN, LinkOptions::default())
            .await
            .unwrap();
    client.set_redial(tcp_redial(addr, 5));
    let session = Session::start(
        client,
        events,
        SessionParams {
            id: "reconnect".into(),
            options: SessionOptions {
                incoming: Some(IncomingMode::Steal),
                ..SessionOptions::default()
            },
            local: LocalContext::default(),
            listen: ListenKind::Unix,
        },
    )
    .await
    .unwrap();
    let mut router_events = session.subscribe();
    let (address, token) = (session.address().to_owned(), session.token().to_owned());
    let layer = tokio::task::spawn_blocking(move || {
        let (mut l, _) = FakeLayer::connect(&address, hello(&token, 900, 1)).unwrap();
        let listen = LayerRequest::Listen {
            local: "127.0.0.1:18080".parse().unwrap(),
            remote_port: 8080,
        };
        assert_eq!(l.request(1, listen).unwrap(), LayerResponse::Done);
        let open = LayerRequest::File(FileRequest::Open {
            path: "/etc/app.yaml".into(),
            options: Default::default(),
        });
        let r = l.request(10, open).unwrap();
        assert!(
            matches!(r, LayerResponse::File(FileResponse::Opened { fd: 7, .. })),
            "{r:?}"
        );
        // In flight when the transport drops: the hooked call gets EIO.
        let file = |fd| LayerRequest::File(FileRequest::Read { fd, len: 8 });
        let err = l.request(2, file(DROP_FD)).unwrap_err();
        assert_eq!(err.errno, libc::EIO, "{err:?}");
        l
    })
    .await
    .unwrap();

    // The router reports the reconnect with the port it subscribed again.
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match router_events.recv().await.unwrap() {
                ev @ RouterEvent::AgentReconnected { .. } => return ev,
                _ => continue,
            }
        }
    })
    .await
    .expect("no reconnected event");
    let RouterEvent::AgentReconnected {
        resubscribed, lost, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(resubscribed, vec![8080]);
    assert!(lost.is_empty());
    let resent = log.lock().unwrap().iter().any(|(n, m)| {
        *n == 1
            && matches!(
                m,
                ClientMessage::Request {
                    body: Request::Incoming(IncomingRequest::Subscribe {
                        port: 8080,
                        mode: IncomingMode::Steal,
                        ..
                    }),
                    ..
                }
            )
    });
    assert!(resent, "the second connection got the subscription again");

    // Later requests of the same layer connection succeed through the new transport.
    let r = tokio::task::spawn_blocking(move || {
        let mut l = layer;
        let file = |fd| LayerRequest::File(FileRequest::Read { fd, len: 8 });
        let r = l.request(3, file(5));
        // fd 7 died with the old connection; the new one may hand out 7 again, but not to a
        // process that still uses the old one.
        let stale = l.request(4, file(7)).unwrap_err();
        assert_eq!(stale.errno, libc::EBADF, "{stale:?}");
        let open = LayerRequest::File(FileRequest::Open {
            path: "/etc/app.yaml".into(),
            options: Default::default(),
        });
        assert!(l.request(5, open).is_ok());
        let fresh = l.request(6, file(7));
        assert_eq!(
            fresh,
            Ok(LayerResponse::File(FileResponse::Data(
                b"conn 1 fd 7".to_vec().into()
            )))
        );
        r
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        r,
        LayerResponse::File(FileResponse::Data(b"conn 1 fd 5".to_vec().into()))
    );
    assert!(session.agent().down_reason().is_none());
    session.shutdown().await;
}
