//! `session.events` and `session.list` report what the session router sees: processes connecting
//! and leaving through the layer, and traffic counters (a fake agent, a fake layer).

mod common;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{AGENT_TOKEN, FakeAgent, FakeLayer, standard_handler};
use serde_json::json;
use support::{Started, layer_stub, next_event, rpc, session_events};
use tether::server::rpc_module;
use tether_protocol::file::FileRequest;
use tether_protocol::layer::{LayerRequest, LayerResponse};

/// How long an event may take.
const SOON: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_and_traffic_reach_session_events_and_list() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::start(standard_handler()).await;
    let m = rpc_module(support::state(vec![]));
    let started = rpc(
        &m,
        "session.start",
        json!({
            "config": {"text": "{}", "cwd": dir.path()},
            "target": "pod/api",
            "namespace": "shop",
            "agent": {"address": agent.addr.to_string(), "token": AGENT_TOKEN},
            "layer": layer_stub(dir.path()),
            "linger_ms": 60_000,
        }),
    )
    .await
    .unwrap();
    let Started { id, address, token } = Started::from_result(&started);
    let mut sub = session_events(&m, &id).await;

    // A process connects: `layer_connected` with what its hello said, and its pid in the list.
    let mut hello = common::hello(&token, 4242, 77);
    hello.argv = vec!["app".into(), "--port=8080".into()];
    let (mut layer, _) = tokio::task::spawn_blocking(move || FakeLayer::connect(&address, hello))
        .await
        .unwrap()
        .unwrap();
    let ev = next_event(&mut sub, SOON, "layer_connected", |e| {
        e["type"] == "layer_connected"
    })
    .await;
    assert_eq!(
        ev,
        json!({"type": "layer_connected", "pid": 4242, "ppid": 77, "exe": "/usr/bin/app",
               "argv": ["app", "--port=8080"]})
    );
    let list = rpc(&m, "session.list", json!({})).await.unwrap();
    assert_eq!(list["sessions"][0]["pids"], json!([4242]), "{list}");

    // 100 KiB up through an outgoing interceptor, echoed back; one file request.
    const N: usize = 100 * 1024;
    let layer = tokio::task::spawn_blocking(move || {
        let remote: SocketAddr = "10.96.0.10:5432".parse().unwrap();
        let LayerResponse::Intercepted { interceptor, .. } = layer
            .request(1, LayerRequest::ConnectTcp { remote })
            .unwrap()
        else {
            panic!("not intercepted");
        };
        let mut s = TcpStream::connect(interceptor).unwrap();
        s.write_all(&vec![b'a'; N]).unwrap();
        let mut got = vec![0u8; N];
        s.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|b| *b == b'A'));
        let stat = FileRequest::Stat {
            path: "/etc/nope".into(),
            follow: true,
        };
        assert!(layer.request(2, LayerRequest::File(stat)).is_err());
        (layer, s)
    })
    .await
    .unwrap();
    let ev = next_event(&mut sub, SOON, "traffic", |e| {
        e["type"] == "traffic"
            && e["counters"]["outgoing_bytes_up"] == json!(N)
            && e["counters"]["outgoing_bytes_down"] == json!(N)
            && e["counters"]["file_requests"] == json!(1)
    })
    .await;
    let c = &ev["counters"];
    assert_eq!(c["outgoing_connections"], json!(1), "{ev}");
    assert_eq!(c["open_connections"], json!(1), "{ev}");
    assert_eq!(
        (ev["bytes_out"].clone(), ev["bytes_in"].clone()),
        (json!(N), json!(N))
    );
    assert_eq!(ev["connections"], json!(1));
    let list = rpc(&m, "session.list", json!({})).await.unwrap();
    assert_eq!(list["sessions"][0]["traffic"], ev["counters"], "{list}");

    // A late subscriber gets the newest counters right after the replay.
    let mut late = session_events(&m, &id).await;
    next_event(&mut late, SOON, "replayed traffic", |e| {
        e["type"] == "traffic" && e["counters"]["outgoing_bytes_up"] == json!(N)
    })
    .await;

    // The process goes away: `layer_disconnected`, and its pid leaves the list.
    let (layer, sock) = layer;
    drop(sock);
    drop(layer);
    let ev = next_event(&mut sub, SOON, "layer_disconnected", |e| {
        e["type"] == "layer_disconnected"
    })
    .await;
    assert_eq!(
        ev,
        json!({"type": "layer_disconnected", "pid": 4242, "reason": "closed", "message": null})
    );
    let list = rpc(&m, "session.list", json!({})).await.unwrap();
    assert_eq!(list["sessions"][0]["pids"], json!([]), "{list}");
    assert_eq!(list["sessions"][0]["state"], json!("lingering"), "{list}");
    rpc(&m, "session.stop", json!({"id": id})).await.unwrap();
}
