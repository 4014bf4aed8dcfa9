//! A session through the real launcher survives its port-forward dropping: the test cuts every
//! port-forward to the agent (as an API server or network failure would), the link redials a new
//! one through the API server, `session.events` says so, and the next file request of the same
//! layer connection is answered by the agent. Needs root and the test cluster (tests/cluster/up).

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{FakeLayer, hello};
use serde_json::json;
use support::cluster::{SAMPLES, cluster, unique, wait_jobs_gone};
use support::{Started, layer_stub, next_event, rpc, session_events};
use tether::server::rpc_module;
use tether_protocol::file::FileRequest;
use tether_protocol::layer::{LayerRequest, LayerResponse};

fn stat_root() -> LayerRequest {
    LayerRequest::File(FileRequest::Stat {
        path: "/".into(),
        follow: true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_port_forward_is_redialled_and_the_session_goes_on() {
    common::init_tracing();
    let c = tokio::task::spawn_blocking(cluster).await.unwrap();
    let admin = c.admin().await;
    let state = support::state(vec![c.var("TETHER_ADMIN_KUBECONFIG")]);
    let m = rpc_module(state.clone());
    let dir = tempfile::tempdir().unwrap();
    let case = unique("reconnect");
    // No requests/limits: the test node reports every pod as BestEffort.
    let config = json!({"agent": {"labels": {"tether.test/case": case}, "resources": {}}});
    let started = rpc(
        &m,
        "session.start",
        json!({
            "config": {"text": config.to_string(), "cwd": dir.path()},
            "target": "pod/multi",
            "namespace": SAMPLES,
            "layer": layer_stub(dir.path()),
            "linger_ms": 60_000,
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let Started {
        id,
        address: addr,
        token,
    } = Started::from_result(&started);
    let mut events = session_events(&m, &id).await;
    let mut l = tokio::task::spawn_blocking(move || {
        let (mut l, _) = FakeLayer::connect(&addr, hello(&token, 4100, 1)).unwrap();
        let r = l.request(1, stat_root());
        assert!(matches!(r, Ok(LayerResponse::File(_))), "{r:?}");
        l
    })
    .await
    .unwrap();

    // The port-forward through the API server drops.
    let agents = state.agents.running().await;
    assert_eq!(agents.len(), 1);
    let t = Instant::now();
    agents[0].cut_port_forwards();
    let warning = next_event(
        &mut events,
        Duration::from_secs(30),
        "reconnect warning",
        |ev| {
            assert_ne!(ev["type"], "ended", "the session ended: {ev}");
            ev["type"] == "warning"
                && ev["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("re-established"))
        },
    )
    .await;
    eprintln!("reconnected in {:?}: {warning}", t.elapsed());

    // The same layer connection goes on through the new port-forward.
    let (l2, r) = tokio::task::spawn_blocking(move || {
        let r = l.request(2, stat_root());
        (l, r)
    })
    .await
    .unwrap();
    l = l2;
    assert!(matches!(r, Ok(LayerResponse::File(_))), "{r:?}");
    let list = rpc(&m, "session.list", json!({})).await.unwrap();
    let s = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("session gone: {list}"));
    assert_ne!(s["state"], "ended", "{s}");
    drop(l);

    rpc(&m, "session.stop", json!({"id": id})).await.unwrap();
    wait_jobs_gone(&admin, SAMPLES, &case).await;
}
