//! The real test cluster of `tests/cluster`: bringing it up (or reusing the running one), its env
//! file, kube clients, and the agent Jobs a test case left. Needs root, as the cluster does.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Pod, Secret},
};
use kube::{Api, api::ListParams};

/// The namespace of the sample targets (`tests/cluster/samples`).
pub const SAMPLES: &str = "tether-samples";

/// The running test cluster, as its env file describes it.
pub struct Cluster {
    /// Key/value pairs of the env file (`TETHER_ADMIN_KUBECONFIG`, `TETHER_KUBECTL`, ...).
    pub env: HashMap<String, String>,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Brings the cluster up with `tests/cluster/up` (which reuses a running one) and reads its env
/// file. Blocks while `up` runs.
pub fn cluster() -> Cluster {
    let out = std::process::Command::new(repo_root().join("tests/cluster/up"))
        .output()
        .expect("running tests/cluster/up");
    assert!(
        out.status.success(),
        "tests/cluster/up failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::env::var("TETHER_CLUSTER_DIR").unwrap_or_else(|_| "/run/tether-cluster".into());
    let text = std::fs::read_to_string(Path::new(&dir).join("env")).expect("cluster env file");
    Cluster {
        env: text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

impl Cluster {
    /// A path from the env file.
    pub fn var(&self, k: &str) -> PathBuf {
        PathBuf::from(&self.env[k])
    }

    /// A client for the kubeconfig the env file names under `key`.
    pub async fn client(&self, key: &str) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.var(key)).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(cfg).unwrap()
    }

    /// An admin client, once the sample targets the tests use are ready (a fresh cluster is
    /// still starting them): a pod of deployment/http-echo, pod/multi and statefulset/echo's
    /// echo-0. Panics after 90 s.
    pub async fn admin(&self) -> kube::Client {
        let client = self.client("TETHER_ADMIN_KUBECONFIG").await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), SAMPLES);
        let t = Instant::now();
        loop {
            let list = pods.list(&ListParams::default()).await.unwrap().items;
            let ready = |p: &Pod| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            };
            let named = |pred: &dyn Fn(&str) -> bool| {
                list.iter()
                    .any(|p| p.metadata.name.as_deref().is_some_and(pred) && ready(p))
            };
            if named(&|n| n.starts_with("http-echo-"))
                && named(&|n| n == "multi")
                && named(&|n| n == "echo-0")
            {
                return client;
            }
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "sample targets not ready after 90 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A name no other test or run uses: `prefix-PID-NANOS`.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

/// The agent Jobs in `ns` labelled `tether.test/case=case`, those being deleted left out.
pub async fn jobs_labelled(client: &kube::Client, ns: &str, case: &str) -> Vec<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.list(&ListParams::default().labels(&format!("tether.test/case={case}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| j.metadata.name)
        .collect()
}

/// How many agent Secrets in `ns` are labelled `tether.test/case=case`.
pub async fn secrets_labelled(client: &kube::Client, ns: &str, case: &str) -> usize {
    let s: Api<Secret> = Api::namespaced(client.clone(), ns);
    s.list(&ListParams::default().labels(&format!("tether.test/case={case}")))
        .await
        .unwrap()
        .items
        .len()
}

/// Waits until the agent Jobs and Secrets of `case` in `ns` are gone; panics after 30 s.
pub async fn wait_jobs_gone(client: &kube::Client, ns: &str, case: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if jobs_labelled(client, ns, case).await.is_empty()
            && secrets_labelled(client, ns, case).await == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("agent Job/Secret of case {case} still there after 30 s");
}
