//! Outgoing TCP and UDP from the pod's network namespace, to a cluster-only service the host
//! cannot reach.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Agent, Net, Pod, sleeper};
use tether_protocol::Payload;
use tether_protocol::agent::{ClientMessage, Request, Response};
use tether_protocol::outgoing::{OutgoingRequest, OutgoingResponse, StreamMessage};
use tether_testkit::net;

/// Waits until `addr` accepts TCP connections from inside `pod`'s netns (the echo server started).
async fn wait_listening(c: &mut common::Client, addr: SocketAddr, conn_id: u64) {
    for _ in 0..100 {
        match c
            .call(Request::Outgoing(OutgoingRequest::ConnectTcp {
                conn_id,
                remote: addr,
            }))
            .await
        {
            Ok(_) => {
                c.send(ClientMessage::Stream(StreamMessage::Close {
                    conn_id,
                    error: None,
                }))
                .await;
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{addr} never listened");
}

#[tokio::test]
async fn tcp_to_a_cluster_only_service_and_udp_echo() {
    let net = Net::up("out");
    let backend = Pod::run(&net, "echo", &["/testsrv", "tcp-echo", "--port", "7000"]);
    let udp = Pod::run(&net, "uecho", &["/testsrv", "udp-echo", "--port", "7001"]);
    let svc = net::service_add(net.name(), "echo", None, 80, backend.sandbox.ip, 7000).unwrap();
    let pod = sleeper(&net, "web", &[]);
    let agent = Agent::start(pod.pid(), &[]).await;
    let mut c = agent.client().await;
    let vip = SocketAddr::from((svc.ip, 80));

    // The host itself has no route to the service.
    let direct =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(vip)).await;
    assert!(
        !matches!(direct, Ok(Ok(_))),
        "the host must not reach {vip}"
    );

    wait_listening(&mut c, SocketAddr::from((backend.sandbox.ip, 7000)), 100).await;
    let Ok(Response::Outgoing(OutgoingResponse::Opened {
        conn_id,
        local,
        remote,
    })) = c
        .call(Request::Outgoing(OutgoingRequest::ConnectTcp {
            conn_id: 1,
            remote: vip,
        }))
        .await
    else {
        panic!("connect to the service failed")
    };
    assert_eq!(conn_id, 1);
    assert_eq!(remote, Some(vip));
    assert_eq!(
        local.ip(),
        std::net::IpAddr::V4(pod.sandbox.ip),
        "connected from the pod's IP"
    );

    // Echo, including a payload larger than one read buffer.
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    for chunk in payload.chunks(64 * 1024) {
        c.send(ClientMessage::Stream(StreamMessage::Data {
            conn_id: 1,
            data: Payload(chunk.to_vec()),
        }))
        .await;
    }
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        match c.stream_message().await {
            StreamMessage::Data { conn_id: 1, data } => echoed.extend(data.0),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(echoed, payload);
    // Half-close: the echo server sees EOF and closes its side, which comes back as Eof.
    c.send(ClientMessage::Stream(StreamMessage::Eof { conn_id: 1 }))
        .await;
    match c.stream_message().await {
        StreamMessage::Eof { conn_id: 1 } | StreamMessage::Close { conn_id: 1, .. } => {}
        other => panic!("{other:?}"),
    }
    c.send(ClientMessage::Stream(StreamMessage::Close {
        conn_id: 1,
        error: None,
    }))
    .await;

    // Refused connections carry the errno.
    let err = c
        .call(Request::Outgoing(OutgoingRequest::ConnectTcp {
            conn_id: 2,
            remote: SocketAddr::from((backend.sandbox.ip, 7999)),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.errno, libc::ECONNREFUSED);

    // UDP: unconnected (datagrams name their peer) and connected sockets.
    let uaddr = SocketAddr::from((udp.sandbox.ip, 7001));
    let Ok(Response::Outgoing(OutgoingResponse::Opened {
        local,
        remote: None,
        ..
    })) = c
        .call(Request::Outgoing(OutgoingRequest::OpenUdp {
            conn_id: 3,
            connect_to: None,
        }))
        .await
    else {
        panic!("open udp")
    };
    assert!(local.port() != 0);
    let mut answered = false;
    // UDP may be lost while the echo server starts: retry a few times.
    for i in 0..50u8 {
        c.send(ClientMessage::Stream(StreamMessage::Datagram {
            conn_id: 3,
            peer: uaddr,
            data: Payload(vec![b'u', i]),
        }))
        .await;
        if let Ok(msg) = tokio::time::timeout(Duration::from_millis(100), c.stream_message()).await
        {
            match msg {
                StreamMessage::Datagram {
                    conn_id: 3,
                    peer,
                    data,
                } => {
                    assert_eq!(peer, uaddr);
                    assert_eq!(data.0[0], b'u');
                    answered = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(answered, "udp echo never answered");
    let Ok(Response::Outgoing(OutgoingResponse::Opened { remote, .. })) = c
        .call(Request::Outgoing(OutgoingRequest::OpenUdp {
            conn_id: 4,
            connect_to: Some(uaddr),
        }))
        .await
    else {
        panic!("open connected udp")
    };
    assert_eq!(remote, Some(uaddr));
    c.send(ClientMessage::Stream(StreamMessage::Datagram {
        conn_id: 4,
        peer: uaddr,
        data: Payload(b"connected".to_vec()),
    }))
    .await;
    loop {
        match c.stream_message().await {
            StreamMessage::Datagram {
                conn_id: 4, data, ..
            } => {
                assert_eq!(data.0, b"connected");
                break;
            }
            // Late echoes of the retries above.
            StreamMessage::Datagram { conn_id: 3, .. } => {}
            other => panic!("{other:?}"),
        }
    }
}
