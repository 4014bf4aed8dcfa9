//! `session.start` with an explicit agent (a fake one speaking the agent protocol), the session
//! registry's view of it, its events, and its end.

mod common;
mod support;

use std::time::Duration;

use common::{AGENT_TOKEN, FakeAgent, FakeLayer, env_handler};
use serde_json::{Value, json};
use support::{Started, error_kind, layer_stub, rpc, session_events};
use tether::server::rpc_module;
use tether_protocol::{agent::ClientMessage, session_env};

/// The pod's env: one variable the config excludes, one never taken from a pod.
const POD_ENV: &[(&str, &str)] = &[
    ("DB_URL", "postgres://db"),
    ("SECRET", "s"),
    ("LD_LIBRARY_PATH", "/pod/lib"),
];

fn params(agent: &FakeAgent, token: &str, dir: &std::path::Path, linger_ms: u64) -> Value {
    json!({
        "config": {"text": "{\"feature\": {\"env\": {\"exclude\": [\"SECRET\"], \"unset\": [\"LOCAL_ONLY\"]}}}", "cwd": dir},
        "target": "pod/api",
        "namespace": "shop",
        "program": "/usr/bin/app",
        "agent": {"address": agent.addr.to_string(), "token": token},
        "layer": layer_stub(dir),
        "linger_ms": linger_ms,
    })
}

async fn wait_list(
    m: &jsonrpsee::RpcModule<tether::server::DaemonState>,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..200 {
        let l = rpc(m, "session.list", json!({})).await.unwrap();
        if pred(&l) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "session.list never matched: {}",
        rpc(m, "session.list", json!({})).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_returns_the_debuggee_env_and_ends_after_the_last_process() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::start(env_handler(POD_ENV)).await;
    let m = rpc_module(support::state(vec![]));
    let r = rpc(
        &m,
        "session.start",
        params(&agent, AGENT_TOKEN, dir.path(), 300),
    )
    .await
    .unwrap();
    let Started { id, address, token } = Started::from_result(&r);
    let env = &r["env"];
    assert_eq!(env["DB_URL"], json!("postgres://db"));
    assert!(env.get("SECRET").is_none(), "excluded by the config: {env}");
    assert!(
        env.get("LD_LIBRARY_PATH").is_none(),
        "never taken from the pod: {env}"
    );
    assert_eq!(
        env[session_env::LD_PRELOAD],
        json!(dir.path().join("libtether_layer.so"))
    );
    assert_eq!(env[session_env::SESSION_ID], json!(id));
    let unset = r["unset"].as_array().unwrap();
    assert_eq!(unset[0], json!("LOCAL_ONLY"));
    for k in ["KUBECONFIG", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            unset.contains(&json!(k)),
            "local credentials removed: {unset:?}"
        );
    }

    let l = rpc(&m, "session.list", json!({})).await.unwrap();
    let s = &l["sessions"][0];
    assert_eq!(
        (s["id"].as_str(), s["target"].as_str(), s["state"].as_str()),
        (Some(id.as_str()), Some("pod/api"), Some("ready"))
    );
    assert_eq!(s["namespace"], json!("shop"));
    assert_eq!(s["program"], json!("/usr/bin/app"));

    let mut sub = session_events(&m, &id).await;
    let mut replay = Vec::new();
    loop {
        let (ev, _) = sub.next::<Value>().await.unwrap().unwrap();
        let ready = ev["type"] == "ready";
        replay.push(ev);
        if ready {
            break;
        }
    }
    let steps: Vec<(String, bool)> = replay
        .iter()
        .filter(|e| e["type"] == "progress")
        .map(|e| {
            (
                e["step"].as_str().unwrap().to_owned(),
                e["done"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("agent".into(), false),
            ("agent".into(), true),
            ("env".into(), false),
            ("env".into(), true)
        ]
    );

    // A process connects through the layer protocol, then goes away.
    let (layer, _hello) = tokio::task::spawn_blocking(move || {
        FakeLayer::connect(&address, common::hello(&token, 4242, 1)).unwrap()
    })
    .await
    .unwrap();
    wait_list(&m, |l| l["sessions"][0]["layers"] == json!(1)).await;
    drop(layer);
    wait_list(&m, |l| {
        l["sessions"][0]["state"] == json!("lingering")
            || l["sessions"].as_array().unwrap().is_empty()
    })
    .await;
    let mut next = async || {
        let (ev, _) = tokio::time::timeout(Duration::from_secs(10), sub.next::<Value>())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        ev
    };
    let ev = next().await;
    assert_eq!(
        (&ev["type"], &ev["pid"]),
        (&json!("layer_connected"), &json!(4242))
    );
    let ev = next().await;
    assert_eq!(
        (&ev["type"], &ev["pid"], &ev["reason"]),
        (&json!("layer_disconnected"), &json!(4242), &json!("closed"))
    );
    let ev = next().await;
    assert_eq!(ev["type"], json!("ended"), "{ev}");
    assert_eq!(ev["reason"], json!("process_exited"));
    wait_list(&m, |l| l["sessions"].as_array().unwrap().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_live_session_and_says_goodbye_to_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(env_handler(POD_ENV)).await;
    let m = rpc_module(support::state(vec![]));
    let r = rpc(
        &m,
        "session.start",
        params(&agent, AGENT_TOKEN, dir.path(), 60_000),
    )
    .await
    .unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(
        rpc(&m, "session.stop", json!({"id": id})).await.unwrap(),
        json!({"id": id})
    );
    agent
        .wait_for(|m| matches!(m, ClientMessage::Goodbye))
        .await;
    assert_eq!(
        rpc(&m, "session.list", json!({})).await.unwrap(),
        json!({"sessions": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refusal_is_reported_and_leaves_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeAgent::start(env_handler(POD_ENV)).await;
    let m = rpc_module(support::state(vec![]));
    let e = rpc(
        &m,
        "session.start",
        params(&agent, "wrong-token", dir.path(), 100),
    )
    .await
    .unwrap_err();
    assert_eq!(error_kind(&e), "agent_unavailable", "{e}");
    assert_eq!(e["code"], json!(-32032));
    assert!(e["data"]["hint"].as_str().unwrap().contains("token"), "{e}");
    assert_eq!(
        rpc(&m, "session.list", json!({})).await.unwrap(),
        json!({"sessions": []})
    );

    // Nothing listening.
    let mut p = params(&agent, AGENT_TOKEN, dir.path(), 100);
    let port = tether_testkit::free_port();
    p["agent"]["address"] = json!(format!("127.0.0.1:{port}"));
    let e = rpc(&m, "session.start", p).await.unwrap_err();
    assert_eq!(error_kind(&e), "agent_unavailable", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the agent"),
        "{e}"
    );

    // A missing layer library is named.
    let mut p = params(&agent, AGENT_TOKEN, dir.path(), 100);
    p["layer"] = json!(dir.path().join("nope.so"));
    let e = rpc(&m, "session.start", p).await.unwrap_err();
    assert_eq!(error_kind(&e), "unavailable", "{e}");
    assert!(e["message"].as_str().unwrap().contains("nope.so"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_shutdown_ends_sessions_and_their_agents_hear_goodbye() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = FakeAgent::start(env_handler(POD_ENV)).await;
    let paths = tether::discovery::Paths::in_dir(dir.path());
    let p2 = paths.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn(async move {
        tether::server::run_daemon(&p2, Default::default(), std::future::pending(), |i| {
            ready_tx.send(i.clone()).unwrap()
        })
        .await
        .unwrap()
    });
    let info = ready_rx.await.unwrap();
    let client = tether::discovery::connect(&info).await.unwrap();
    let started: Value = tether::discovery::call(
        &client,
        "session.start",
        params(&agent, AGENT_TOKEN, dir.path(), 60_000),
    )
    .await
    .unwrap();
    assert!(started["id"].is_string());
    let r: Value = tether::discovery::call(&client, "daemon.shutdown", json!({}))
        .await
        .unwrap();
    assert_eq!(r["sessions_ended"], json!(1));
    agent
        .wait_for(|m| matches!(m, ClientMessage::Goodbye))
        .await;
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .unwrap()
        .unwrap();
}
