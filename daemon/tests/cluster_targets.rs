//! kube.* and targets.* against the real test control plane (`tests/cluster/up`: kube-apiserver,
//! controller-manager, scheduler, and a virtual-kubelet node running pods as network
//! namespaces). Needs root, as the cluster does (CI runs as root).

mod support;

use std::{path::PathBuf, process::Command, time::Duration};

use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace, core::v1::Pod};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::cluster::{cluster, unique};
use support::rpc;
use tether::server::rpc_module;

/// A namespace of this test, deleted on drop (also when the test fails).
struct TestNamespace {
    name: String,
    kubectl: String,
    kubeconfig: String,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new(&self.kubectl)
            .args([
                "--kubeconfig",
                &self.kubeconfig,
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
            ])
            .output();
    }
}

async fn next_matching(sub: &mut Subscription<Value>, pred: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let v = sub.next().await.expect("subscription open").unwrap();
            if pred(&v) {
                return v;
            }
        }
    })
    .await
    .expect("the watch reported the change in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_of_a_real_cluster() {
    let test_cluster = tokio::task::spawn_blocking(cluster).await.unwrap();
    let env = &test_cluster.env;
    let admin = env["TETHER_ADMIN_KUBECONFIG"].clone();
    let restricted = env["TETHER_RESTRICTED_KUBECONFIG"].clone();
    let ns = TestNamespace {
        name: unique("tether-daemon"),
        kubectl: env["TETHER_KUBECTL"].clone(),
        kubeconfig: admin.clone(),
    };
    let client = test_cluster.client("TETHER_ADMIN_KUBECONFIG").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns.name}})).unwrap(),
        )
        .await
        .unwrap();

    let state = support::state(vec![PathBuf::from(&admin)]);
    let srv = tether::server::serve(state.clone(), 0).await.unwrap();
    let m = rpc_module(state);

    // Contexts and namespaces as kubectl sees them.
    let ctx = rpc(&m, "kube.contexts", json!({})).await.unwrap();
    let current = ctx["current"].as_str().unwrap().to_owned();
    let nss = rpc(&m, "kube.namespaces", json!({})).await.unwrap();
    assert_eq!(nss["context"], json!(current));
    assert!(
        nss["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!(ns.name)),
        "{nss}"
    );

    // Watch the empty namespace, then create a pod and a deployment in it.
    let c = support::ws_client(&srv.url, support::TOKEN).await.unwrap();
    let mut sub = c
        .subscribe::<Value, _>(
            "targets.watch",
            jsonrpsee::rpc_params![json!({"namespace": ns.name})],
            "targets.unwatch",
        )
        .await
        .unwrap();
    let first = next_matching(&mut sub, |_| true).await;
    assert_eq!(first["targets"], json!([]), "{first}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "echo"},
            "spec": {"containers": [{"name": "tcp", "image": "tether.test/tcp-echo:latest", "args": ["--port", "7000"], "ports": [{"containerPort": 7000}]}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "api"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                    "template": {"metadata": {"labels": {"app": "api"}},
                        "spec": {"containers": [{"name": "app", "image": "tether.test/tcp-echo:latest", "args": ["--port", "7100"], "ports": [{"containerPort": 7100}]}]}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    // The node runs the pod; the watch reports it ready, with the deployment listed too.
    let ready = next_matching(&mut sub, |v| {
        let t = v["targets"].as_array().unwrap();
        t.iter()
            .any(|t| t["path"] == "pod/echo" && t["ready"] == json!(true))
            && t.iter().any(|t| t["path"] == "deployment/api")
    })
    .await;
    let echo = ready["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == "pod/echo")
        .unwrap()
        .clone();
    assert_eq!(echo["ready_text"], json!("1/1"));
    assert_eq!(
        echo["ports"],
        json!([{"port": 7000, "protocol": "TCP", "name": null}])
    );
    assert_eq!(echo["namespace"], json!(ns.name));

    // targets.list answers from the same cache.
    let list = rpc(
        &m,
        "targets.list",
        json!({"namespace": ns.name, "kinds": ["deployment"]}),
    )
    .await
    .unwrap();
    assert_eq!(list["targets"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["targets"][0]["containers"][0]["name"], json!("app"));

    // The restricted user may list pods but not workloads: pods plus warnings, not an error.
    let m2 = rpc_module(support::state(vec![PathBuf::from(&restricted)]));
    let r = rpc(&m2, "targets.list", json!({})).await;
    match r {
        Ok(list) => {
            let warnings = list["warnings"].as_array().unwrap();
            assert!(
                warnings
                    .iter()
                    .any(|w| w.as_str().unwrap().contains("forbidden")),
                "{list}"
            );
        }
        Err(e) => assert_eq!(support::error_kind(&e), "kube_forbidden", "{e}"),
    }
}
