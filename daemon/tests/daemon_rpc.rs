//! Every RPC method driven in-process through `rpc_module()`: no port, no token.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{error_kind, rpc};
use tether::server::{
    METHODS,
    api::{EndReason, SessionEvent, SessionInfo, SessionState},
    rpc_module,
    sessions::unix_now,
};

#[tokio::test]
async fn daemon_info_capabilities_and_registered_methods_agree() {
    let m = rpc_module(support::state(vec![]));
    let info = rpc(&m, "daemon.info", json!(null)).await.unwrap();
    assert_eq!(info["pid"], json!(std::process::id()));
    assert_eq!(info["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(info["protocol_version"].as_u64().unwrap() >= 1);

    let caps = rpc(&m, "daemon.capabilities", json!({})).await.unwrap();
    let advertised: BTreeSet<String> = caps["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let registered: BTreeSet<String> = m.method_names().map(str::to_owned).collect();
    assert_eq!(
        advertised, registered,
        "capabilities list exactly the registered methods"
    );
    assert_eq!(
        caps["subscriptions"],
        json!(["targets.watch", "session.events"])
    );
    assert_eq!(caps["sessions"], json!(true));
    assert_eq!(caps["agent_launcher"], json!(true));
    assert_eq!(METHODS.len(), 14);
    // `[]` params are accepted for methods without params.
    assert!(rpc(&m, "daemon.info", json!([])).await.is_ok());
}

#[tokio::test]
async fn shutdown_answers_then_requests_the_stop() {
    let state = support::state(vec![]);
    let m = rpc_module(state.clone());
    let r = rpc(&m, "daemon.shutdown", json!({})).await.unwrap();
    assert_eq!(r["stopping"], json!(true));
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.shutdown_requested(),
    )
    .await
    .expect("shutdown is requested");
}

#[tokio::test]
async fn unknown_method_and_invalid_params() {
    let m = rpc_module(support::state(vec![]));
    let e = rpc(&m, "daemon.nope", json!({})).await.unwrap_err();
    assert_eq!(e["code"], json!(-32601));

    // Missing required field.
    let e = rpc(&m, "session.stop", json!({})).await.unwrap_err();
    assert_eq!(e["code"], json!(-32602));
    assert_eq!(error_kind(&e), "invalid_params");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("missing field `id`"),
        "{e}"
    );
    // Wrong type.
    let e = rpc(&m, "config.verify", json!({"path": 7}))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), "invalid_params");
    // Unknown field.
    let e = rpc(&m, "kube.contexts", json!({"kubconfig": "/x"}))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), "invalid_params");
    assert!(e["message"].as_str().unwrap().contains("kubconfig"), "{e}");
    // Positional params other than one object.
    let e = rpc(&m, "session.stop", json!(["s-1"])).await.unwrap_err();
    assert_eq!(error_kind(&e), "invalid_params");
    // Extra params to a method without any.
    let e = rpc(&m, "daemon.info", json!({"x": 1})).await.unwrap_err();
    assert_eq!(error_kind(&e), "invalid_params");
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[tokio::test]
async fn config_resolve_order() {
    let m = rpc_module(support::state(vec![]));
    let dir = project(&[
        (".tether/tether.toml", "[target]\npath = \"pod/api\"\n"),
        (".mirrord/mirrord.json", "{}"),
    ]);
    let cwd = dir.path();
    let r = rpc(&m, "config.resolve", json!({"cwd": cwd}))
        .await
        .unwrap();
    assert_eq!(r["source"], json!("tether_dir"));
    assert_eq!(r["format"], json!("toml"));
    assert_eq!(r["path"], json!(cwd.join(".tether/tether.toml")));
    assert_eq!(r["shadowed"], json!([cwd.join(".mirrord/mirrord.json")]));

    let other = project(&[
        ("custom.yaml", "target: pod/x\n"),
        (".mirrord/mirrord.json", "{}"),
    ]);
    let r = rpc(
        &m,
        "config.resolve",
        json!({"cwd": other.path(), "env_file": "custom.yaml"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (r["source"].clone(), r["format"].clone()),
        (json!("env"), json!("yaml"))
    );
    let r = rpc(
        &m,
        "config.resolve",
        json!({"cwd": other.path(), "explicit": "custom.yaml", "env_file": "nope.json"}),
    )
    .await
    .unwrap();
    assert_eq!(r["source"], json!("explicit"));
    let r = rpc(&m, "config.resolve", json!({"cwd": other.path()}))
        .await
        .unwrap();
    assert_eq!(r["source"], json!("mirrord_dir"));

    let empty = tempfile::tempdir().unwrap();
    let r = rpc(&m, "config.resolve", json!({"cwd": empty.path()}))
        .await
        .unwrap();
    assert_eq!(
        (r["source"].clone(), r["path"].clone()),
        (json!("none"), Value::Null)
    );

    let e = rpc(
        &m,
        "config.resolve",
        json!({"cwd": empty.path(), "explicit": "missing.toml"}),
    )
    .await
    .unwrap_err();
    assert_eq!(error_kind(&e), "config_not_found");
    assert_eq!(e["code"], json!(-32010));
    let e = rpc(&m, "config.resolve", json!({"cwd": "relative/dir"}))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), "invalid_params");
}

#[tokio::test]
async fn config_verify_file_and_unsaved_text() {
    let m = rpc_module(support::state(vec![]));
    let dir = project(&[(".tether/tether.toml", "[target]\npood = \"api\"\n")]);
    let r = rpc(&m, "config.verify", json!({"cwd": dir.path()}))
        .await
        .unwrap();
    assert_eq!(r["ok"], json!(false), "{r}");
    let err = &r["errors"][0];
    assert_eq!(err["severity"], json!("error"));
    assert_eq!(
        (err["line"].clone(), err["column"].clone()),
        (json!(2), json!(1)),
        "{err}"
    );
    assert!(err["message"].as_str().unwrap().contains("pood"), "{err}");
    assert_eq!(r["compatible_target_types"], json!([]));

    // Unsaved buffer text wins over the file on disk; the path names it.
    let r = rpc(
        &m,
        "config.verify",
        json!({"cwd": dir.path(), "path": ".tether/tether.toml", "text": "[target]\npath = \"deployment/api\"\nnamespace = \"shop\"\n"}),
    )
    .await
    .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    assert_eq!(r["target"], json!("deployment/api"));
    assert_eq!(r["namespace"], json!("shop"));
    assert_eq!(r["compatible_target_types"], json!(["deployment"]));

    // Text without a path, format given.
    let r = rpc(
        &m,
        "config.verify",
        json!({"text": "feature:\n  env: true\n", "format": "yaml", "cwd": dir.path()}),
    )
    .await
    .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    assert!(r["compatible_target_types"].as_array().unwrap().len() > 1);

    // A JSON syntax error has a position and does not crash anything.
    let r = rpc(
        &m,
        "config.verify",
        json!({"text": "{\n  \"target\": ", "cwd": dir.path()}),
    )
    .await
    .unwrap();
    assert_eq!(r["ok"], json!(false));
    assert!(r["errors"][0]["line"].is_number(), "{r}");

    let e = rpc(
        &m,
        "config.verify",
        json!({"cwd": dir.path(), "path": "nope.json"}),
    )
    .await
    .unwrap_err();
    assert_eq!(error_kind(&e), "config_not_found");
}

#[tokio::test]
async fn config_resolved_fills_defaults() {
    let m = rpc_module(support::state(vec![]));
    let dir = project(&[(
        ".mirrord/mirrord.json",
        "{\"target\": \"pod/api\", \"feature\": {\"hostname\": false}}",
    )]);
    let r = rpc(&m, "config.resolved", json!({"cwd": dir.path()}))
        .await
        .unwrap();
    assert_eq!(r["path"], json!(dir.path().join(".mirrord/mirrord.json")));
    assert_eq!(r["config"]["feature"]["hostname"], json!(false));
    assert!(
        r["config"]["feature"]["network"].is_object(),
        "defaults are filled in: {r}"
    );

    let bad = project(&[(".tether/tether.json", "{\"feature\": {\"envv\": true}}")]);
    let e = rpc(&m, "config.resolved", json!({"cwd": bad.path()}))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), "config_invalid");
    assert_eq!(e["code"], json!(-32011));
    assert!(
        e["data"]["hint"]
            .as_str()
            .unwrap()
            .contains("config.verify")
    );
}

#[tokio::test]
async fn kube_contexts_from_kubeconfig_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(&a, "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: one\n  context:\n    cluster: c1\n    user: u\n    namespace: shop\ncurrent-context: one\nusers:\n- name: u\n  user:\n    token: t\n").unwrap();
    std::fs::write(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: c2\n  cluster:\n    server: https://127.0.0.1:2\ncontexts:\n- name: two\n  context:\n    cluster: c2\ncurrent-context: two\nusers: []\n").unwrap();
    let m = rpc_module(support::state(vec![a.clone(), b.clone()]));
    // Merged as kubectl merges a KUBECONFIG list: the first file's current-context wins.
    let r = rpc(&m, "kube.contexts", json!({})).await.unwrap();
    assert_eq!(r["current"], json!("one"));
    assert_eq!(
        r["contexts"],
        json!([{"name": "one", "cluster": "c1", "user": "u", "namespace": "shop"}, {"name": "two", "cluster": "c2", "user": null, "namespace": null}])
    );
    // An explicit file wins over the daemon's source.
    let r = rpc(&m, "kube.contexts", json!({"kubeconfig": b}))
        .await
        .unwrap();
    assert_eq!(r["current"], json!("two"));

    let e = rpc(
        &m,
        "kube.contexts",
        json!({"kubeconfig": dir.path().join("missing")}),
    )
    .await
    .unwrap_err();
    assert_eq!(error_kind(&e), "kubeconfig");
    // An unknown context names the known ones.
    let e = rpc(&m, "kube.namespaces", json!({"context": "three"}))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), "kubeconfig");
    assert!(
        e["data"]["hint"].as_str().unwrap().contains("one, two"),
        "{e}"
    );
}

#[tokio::test]
async fn session_methods_without_the_router() {
    let state = support::state(vec![]);
    let m = rpc_module(state.clone());
    assert_eq!(
        rpc(&m, "session.list", json!({})).await.unwrap(),
        json!({"sessions": []})
    );
    let e = rpc(&m, "session.stop", json!({"id": "s-nope"}))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), "session_not_found");
    assert_eq!(e["data"]["target"], json!("s-nope"));

    // Config problems come first.
    let e = rpc(
        &m,
        "session.start",
        json!({"config": {"text": "{\"feature\": {\"envv\": 1}}"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(error_kind(&e), "config_invalid");
    // A valid config without an agent: the launcher needs a kubeconfig, and says so.
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("libtether_layer.so");
    std::fs::write(&layer, b"not loaded").unwrap();
    let e = rpc(
        &m,
        "session.start",
        json!({"config": {"text": "{}"}, "target": "pod/api", "layer": layer}),
    )
    .await
    .unwrap_err();
    assert_eq!(error_kind(&e), "kubeconfig", "{e}");
    assert_eq!(
        rpc(&m, "session.list", json!({})).await.unwrap(),
        json!({"sessions": []})
    );

    // The registry as the router will use it: list, events (replayed then live), stop.
    let entry = state.sessions.insert(SessionInfo {
        id: "s-1".into(),
        target: "pod/api".into(),
        namespace: Some("shop".into()),
        context: None,
        state: SessionState::Starting,
        started_at: unix_now(),
        layers: 0,
        program: Some("/bin/app".into()),
        ..Default::default()
    });
    entry.emit(SessionEvent::Progress {
        step: "agent".into(),
        message: "agent started".into(),
        done: true,
    });
    let list = rpc(&m, "session.list", json!({})).await.unwrap();
    assert_eq!(list["sessions"][0]["id"], json!("s-1"));
    assert_eq!(list["sessions"][0]["state"], json!("starting"));

    let mut sub = m
        .subscribe_unbounded(
            "session.events",
            jsonrpsee::rpc_params![json!({"id": "s-1"})],
        )
        .await
        .unwrap();
    let (ev, _) = sub.next::<Value>().await.unwrap().unwrap();
    assert_eq!(ev["type"], json!("progress"));
    entry.emit(SessionEvent::Ready);
    let (ev, _) = sub.next::<Value>().await.unwrap().unwrap();
    assert_eq!(ev, json!({"type": "ready"}));
    assert_eq!(
        rpc(&m, "session.stop", json!({"id": "s-1"})).await.unwrap(),
        json!({"id": "s-1"})
    );
    let (ev, _) = sub.next::<Value>().await.unwrap().unwrap();
    assert_eq!(
        ev,
        json!({"type": "ended", "reason": "stopped", "message": null})
    );
    assert_eq!(entry.cancelled().await, EndReason::Stopped);
    assert_eq!(
        rpc(&m, "session.list", json!({})).await.unwrap(),
        json!({"sessions": []})
    );

    let e = m
        .subscribe_unbounded(
            "session.events",
            jsonrpsee::rpc_params![json!({"id": "s-1"})],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no session"), "{e}");
}
