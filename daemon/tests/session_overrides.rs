//! `session.start`'s `overrides`: the CLI's config flags sent over the API, applied over the
//! config file, and refused when malformed.

mod common;
mod support;

use std::sync::Arc;

use common::{AGENT_TOKEN, FakeAgent};
use serde_json::{Value, json};
use support::{error_kind, rpc};
use tether::server::rpc_module;
use tether_protocol::agent::{AgentMessage, ClientMessage, Request, Response};

/// An agent whose pod has one variable.
async fn agent_with_pod_env() -> FakeAgent {
    FakeAgent::start(Arc::new(|m| match m {
        ClientMessage::Request {
            id,
            body: Request::Env,
        } => vec![AgentMessage::Response {
            id: *id,
            result: Ok(Response::Env(vec![(
                "DB_URL".into(),
                "postgres://db".into(),
            )])),
        }],
        _ => vec![],
    }))
    .await
}

fn params(dir: &std::path::Path, agent: Option<&FakeAgent>, overrides: Value) -> Value {
    let layer = dir.join("libtether_layer.so");
    std::fs::write(&layer, b"not loaded by these tests").unwrap();
    let mut p = json!({
        "config": {"text": "{}", "cwd": dir},
        "target": "pod/api",
        "namespace": "shop",
        "layer": layer,
        "linger_ms": 0,
        "overrides": overrides,
    });
    if let Some(a) = agent {
        p["agent"] = json!({"address": a.addr.to_string(), "token": AGENT_TOKEN});
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_env_override_keeps_the_pods_variables_out() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_with_pod_env().await;
    let m = rpc_module(support::state(vec![]));

    let with_env = rpc(
        &m,
        "session.start",
        params(dir.path(), Some(&agent), json!({})),
    )
    .await
    .unwrap();
    assert_eq!(with_env["env"]["DB_URL"], json!("postgres://db"));

    // The fake agent serves one connection: a second one for the second session.
    let agent = agent_with_pod_env().await;
    let without = rpc(
        &m,
        "session.start",
        params(dir.path(), Some(&agent), json!({"no_env": true})),
    )
    .await
    .unwrap();
    assert!(
        without["env"].get("DB_URL").is_none(),
        "no_env must drop the pod's variables: {}",
        without["env"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_override_is_the_file_the_daemon_reads() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    // The daemon's own kubeconfig source is empty: only the override names a file.
    let m = rpc_module(support::state(vec![]));
    let e = rpc(
        &m,
        "session.start",
        params(dir.path(), None, json!({"kubeconfig": missing})),
    )
    .await
    .unwrap_err();
    assert_eq!(error_kind(&e), "kubeconfig", "{e}");
    assert!(
        e.to_string().contains("no-such-kubeconfig"),
        "the error names the overriding file: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_overrides_are_invalid_params() {
    let dir = tempfile::tempdir().unwrap();
    let m = rpc_module(support::state(vec![]));
    for bad in [
        json!({"incoming": "bogus"}),
        json!({"fs_mode": "everything"}),
        json!({"no_env": "yes"}),
        json!({"agent_imag": "x"}),
    ] {
        let e = rpc(&m, "session.start", params(dir.path(), None, bad.clone()))
            .await
            .unwrap_err();
        assert_eq!(e["code"], json!(-32602), "{bad} -> {e}");
    }
    assert!(
        rpc(&m, "session.list", json!({})).await.unwrap()["sessions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a refused start leaves no session"
    );
}
