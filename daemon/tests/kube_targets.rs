//! kube.* and targets.* against a fake API server (kube-rs and kube-runtime reflectors talk real
//! HTTP to it), in-process and over WebSocket.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{
    error_kind,
    fake_kube::{FakeKube, deployment, pod},
    rpc,
};
use tether::server::rpc_module;

#[tokio::test]
async fn namespaces_and_forbidden_fallback() {
    let kube = FakeKube::start().await;
    let m = rpc_module(support::state(vec![kube.kubeconfig.clone()]));
    let r = rpc(&m, "kube.namespaces", json!({})).await.unwrap();
    assert_eq!(
        r,
        json!({"context": "fake", "default": "shop", "namespaces": ["default", "shop"], "warnings": []})
    );
    let r = rpc(&m, "kube.namespaces", json!({"context": "other"}))
        .await
        .unwrap();
    assert_eq!(r["default"], json!("default"));

    kube.forbid("namespaces");
    let r = rpc(&m, "kube.namespaces", json!({})).await.unwrap();
    assert_eq!(r["namespaces"], json!(["shop"]));
    assert!(
        r["warnings"][0].as_str().unwrap().contains("forbidden"),
        "{r}"
    );
}

#[tokio::test]
async fn targets_list_from_the_watch_cache() {
    let kube = FakeKube::start().await;
    kube.apply("pods", "shop", pod("api-2", true));
    kube.apply("pods", "shop", pod("api-1", false));
    kube.apply("deployments", "shop", deployment("api", 1, 2));
    kube.apply("pods", "default", pod("other", true));
    let m = rpc_module(support::state(vec![kube.kubeconfig.clone()]));

    let r = rpc(&m, "targets.list", json!({})).await.unwrap();
    assert_eq!(
        (r["context"].clone(), r["namespace"].clone()),
        (json!("fake"), json!("shop"))
    );
    let paths: Vec<&str> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["pod/api-1", "pod/api-2", "deployment/api"]);
    let api2 = &r["targets"][1];
    assert_eq!(api2["ready"], json!(true));
    assert_eq!(api2["ready_text"], json!("1/1"));
    assert_eq!(api2["containers"][0]["name"], json!("app"));
    assert_eq!(
        api2["ports"],
        json!([{"port": 8080, "protocol": "TCP", "name": null}])
    );
    assert_eq!(r["targets"][0]["ready"], json!(false));
    assert_eq!(r["targets"][2]["ready_text"], json!("1/2"));
    assert_eq!(r["warnings"], json!([]));

    // Filtered by kind, other namespace.
    let r = rpc(
        &m,
        "targets.list",
        json!({"namespace": "default", "kinds": ["pod"]}),
    )
    .await
    .unwrap();
    assert_eq!(r["targets"].as_array().unwrap().len(), 1);
    assert_eq!(r["targets"][0]["path"], json!("pod/other"));

    // Served from the cache: a second list makes no new list request, and sees watch updates.
    let lists_before = kube
        .requests()
        .iter()
        .filter(|r| !r.contains("watch="))
        .count();
    kube.apply("pods", "shop", pod("api-3", true));
    let mut seen = false;
    for _ in 0..100 {
        let r = rpc(&m, "targets.list", json!({"kinds": ["pod"]}))
            .await
            .unwrap();
        if r["targets"].as_array().unwrap().len() == 3 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "watch event reached the cache");
    let lists_after = kube
        .requests()
        .iter()
        .filter(|r| !r.contains("watch="))
        .count();
    assert_eq!(lists_before, lists_after, "{:?}", kube.requests());
}

#[tokio::test]
async fn forbidden_kinds_become_warnings_and_forbidden_pods_an_error() {
    let kube = FakeKube::start().await;
    kube.apply("pods", "shop", pod("api-1", true));
    kube.forbid("deployments");
    let m = rpc_module(support::state(vec![kube.kubeconfig.clone()]));
    let r = rpc(&m, "targets.list", json!({})).await.unwrap();
    assert_eq!(r["targets"].as_array().unwrap().len(), 1);
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{r}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("deployments in namespace shop"),
        "{r}"
    );

    let kube2 = FakeKube::start().await;
    kube2.forbid("pods");
    let m2 = rpc_module(support::state(vec![kube2.kubeconfig.clone()]));
    let e = rpc(&m2, "targets.list", json!({"kinds": ["pod"]}))
        .await
        .unwrap_err();
    assert_eq!(error_kind(&e), "kube_forbidden");
    assert_eq!(e["code"], json!(-32022));
    assert_eq!(e["data"]["target"], json!("fake"));
}

#[tokio::test]
async fn unreachable_cluster_is_a_kube_api_error() {
    // A kubeconfig pointing at a port nobody listens on.
    let port = tether_testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    std::fs::write(&kc, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: dead\n  context:\n    cluster: c\ncurrent-context: dead\nusers: []\n")).unwrap();
    let m = rpc_module(support::state(vec![kc]));
    let e = rpc(&m, "kube.namespaces", json!({})).await.unwrap_err();
    assert_eq!(error_kind(&e), "kube_api", "{e}");
    let e = rpc(&m, "targets.list", json!({})).await.unwrap_err();
    assert_eq!(error_kind(&e), "kube_api", "{e}");
}

#[tokio::test]
async fn targets_watch_sends_the_list_then_changes() {
    let kube = FakeKube::start().await;
    kube.apply("pods", "shop", pod("api-1", true));
    let state = support::state(vec![kube.kubeconfig.clone()]);
    let srv = tether::server::serve(state, 0).await.unwrap();
    let c = support::ws_client(&srv.url, support::TOKEN).await.unwrap();
    use jsonrpsee::core::client::SubscriptionClientT;
    let mut sub = c
        .subscribe::<Value, _>(
            "targets.watch",
            jsonrpsee::rpc_params![json!({"kinds": ["pod", "deployment"]})],
            "targets.unwatch",
        )
        .await
        .unwrap();
    let next = async |sub: &mut jsonrpsee::core::client::Subscription<Value>| {
        tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("update in time")
            .unwrap()
            .unwrap()
    };
    let first = next(&mut sub).await;
    assert_eq!(first["targets"].as_array().unwrap().len(), 1, "{first}");

    kube.apply("deployments", "shop", deployment("web", 0, 1));
    let update = next(&mut sub).await;
    let paths: Vec<&str> = update["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["pod/api-1", "deployment/web"]);

    kube.delete("pods", "shop", "api-1");
    let update = next(&mut sub).await;
    assert_eq!(update["targets"].as_array().unwrap().len(), 1, "{update}");
    assert_eq!(update["targets"][0]["status"], json!("Unavailable"));

    // A failing namespace rejects the subscription with the daemon's error.
    kube.forbid("pods");
    let e = c
        .subscribe::<Value, _>(
            "targets.watch",
            jsonrpsee::rpc_params![json!({"namespace": "default", "kinds": ["pod"]})],
            "targets.unwatch",
        )
        .await
        .unwrap_err();
    let jsonrpsee::core::ClientError::Call(obj) = e else {
        panic!("{e}")
    };
    assert_eq!(obj.code(), -32022);
}

#[tokio::test]
async fn rollouts_are_listed_where_the_crd_exists() {
    let rollout = json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]}}},
        "status": {"readyReplicas": 2}
    });
    // Without the CRD: no rollouts, and no warning about them.
    let plain = FakeKube::start().await;
    plain.apply("pods", "shop", pod("api-1", true));
    let m = rpc_module(support::state(vec![plain.kubeconfig.clone()]));
    let r = rpc(&m, "targets.list", json!({})).await.unwrap();
    assert_eq!(r["warnings"], json!([]), "{r}");
    assert!(
        r["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["kind"] != "rollout")
    );

    let argo = FakeKube::start().await;
    argo.install_rollouts_crd();
    argo.apply("rollouts", "shop", rollout);
    let m = rpc_module(support::state(vec![argo.kubeconfig.clone()]));
    let r = rpc(&m, "targets.list", json!({"kinds": ["rollout"]}))
        .await
        .unwrap();
    assert_eq!(r["warnings"], json!([]), "{r}");
    let t = &r["targets"][0];
    assert_eq!(
        (
            t["path"].clone(),
            t["ready_text"].clone(),
            t["status"].clone()
        ),
        (json!("rollout/web"), json!("2/2"), json!("Available"))
    );
    assert_eq!(t["containers"][0]["name"], json!("app"));
    assert_eq!(t["ports"][0]["port"], json!(8080));
}

#[tokio::test]
async fn an_edited_kubeconfig_gets_a_new_client() {
    let a = FakeKube::start().await;
    let b = FakeKube::start().await;
    a.forbid("namespaces");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::copy(&a.kubeconfig, &kc).unwrap();
    let m = rpc_module(support::state(vec![kc.clone()]));
    let r = rpc(&m, "kube.namespaces", json!({})).await.unwrap();
    assert_eq!(
        r["warnings"].as_array().unwrap().len(),
        1,
        "cluster a forbids: {r}"
    );
    // Same file, same context name, another server.
    std::fs::copy(&b.kubeconfig, &kc).unwrap();
    let r = rpc(&m, "kube.namespaces", json!({})).await.unwrap();
    assert_eq!(r["warnings"], json!([]), "cluster b answers: {r}");
    assert!(
        b.requests()
            .iter()
            .any(|r| r.starts_with("/api/v1/namespaces"))
    );
}
