//! A session through the real launcher survives its port-forward dropping: the test cuts every
//! port-forward to the agent (as an API server or network failure would), the link redials a new
//! one through the API server, `session.events` says so, and the next file request of the same
//! layer connection is answered by the agent. Needs root and the test cluster (tests/cluster/up).

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{FakeLayer, hello};
use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{Api, api::ListParams};
use serde_json::{Value, json};
use support::rpc;
use tether::server::rpc_module;
use tether_protocol::file::FileRequest;
use tether_protocol::layer::{LayerRequest, LayerResponse};
use tether_protocol::session_env;

const SAMPLES: &str = "tether-samples";

/// Brings the cluster up (or reuses it) and returns its env file's variables.
fn cluster() -> std::collections::HashMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join("tests/cluster/up"))
        .output()
        .expect("running tests/cluster/up");
    assert!(
        out.status.success(),
        "tests/cluster/up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::env::var("TETHER_CLUSTER_DIR").unwrap_or_else(|_| "/run/tether-cluster".into());
    std::fs::read_to_string(Path::new(&dir).join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// An admin client once pod/multi is ready.
async fn admin(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), SAMPLES);
    let t = Instant::now();
    loop {
        let ready = pods.get_opt("multi").await.ok().flatten().is_some_and(|p| {
            p.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready {
            return client;
        }
        assert!(t.elapsed() < Duration::from_secs(90), "pod/multi not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn jobs_labelled(client: &kube::Client, case: &str) -> Vec<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), SAMPLES);
    let lp = ListParams::default().labels(&format!("tether.test/case={case}"));
    jobs.list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect()
}

fn stat_root() -> LayerRequest {
    LayerRequest::File(FileRequest::Stat {
        path: "/".into(),
        follow: true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_port_forward_is_redialled_and_the_session_goes_on() {
    common::init_tracing();
    let env = cluster();
    let kubeconfig = PathBuf::from(&env["TETHER_ADMIN_KUBECONFIG"]);
    let admin = admin(&kubeconfig).await;
    let state = support::state(vec![kubeconfig]);
    let m = rpc_module(state.clone());
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("libtether_layer.so");
    std::fs::write(&layer, b"not loaded by this test").unwrap();
    let case = format!("reconnect-{}", std::process::id());
    // No requests/limits: the test node reports every pod as BestEffort.
    let config = json!({"agent": {"labels": {"tether.test/case": case}, "resources": {}}});
    let started = rpc(
        &m,
        "session.start",
        json!({
            "config": {"text": config.to_string(), "cwd": dir.path()},
            "target": "pod/multi",
            "namespace": SAMPLES,
            "layer": layer,
            "linger_ms": 60_000,
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let id = started["id"].clone();
    let mut events = m
        .subscribe_unbounded("session.events", jsonrpsee::rpc_params![json!({"id": id})])
        .await
        .unwrap();
    let addr = started["env"][session_env::SESSION_ADDR]
        .as_str()
        .unwrap()
        .to_owned();
    let token = started["env"][session_env::SESSION_TOKEN]
        .as_str()
        .unwrap()
        .to_owned();
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
    let warning = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (ev, _) = events.next::<Value>().await.unwrap().unwrap();
            assert_ne!(ev["type"], "ended", "the session ended: {ev}");
            if ev["type"] == "warning"
                && ev["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("re-established"))
            {
                return ev;
            }
        }
    })
    .await
    .expect("no reconnect warning on session.events");
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
    let t = Instant::now();
    while !jobs_labelled(&admin, &case).await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "agent Job not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
