//! The bench pod: its own namespace (other tests steal ports and restart the samples; nothing
//! else touches this one), three containers of the test server, and the files the file rows read.
//! Kept between runs (apply is idempotent); `tests/cluster/down` removes it with the cluster.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use crate::peer::Kubectl;

/// Namespace of the bench pod (and of its agent Job).
pub const NAMESPACE: &str = "tether-bench";
/// Name prefix of the bench pod; the rest names the build of its server (see
/// [`BenchPod::ensure`]).
const POD_PREFIX: &str = "bench";
/// The container the agent targets (its root holds the files).
pub const CONTAINER: &str = "source";
/// `tether-testsrv bench-source` port.
pub const SOURCE_PORT: u16 = 17100;
/// The pod's HTTP server that the steal row takes over.
pub const HTTP_STOLEN_PORT: u16 = 18080;
/// The same server on a port never stolen: the direct side of the steal row.
pub const HTTP_DIRECT_PORT: u16 = 18081;
/// Where the files live inside the pod (not under any of the layer's local defaults).
pub const FILE_DIR: &str = "/bench";
/// The probe's copy inside the pod (its libraries come from the host's /usr, as every test
/// container's do).
pub const POD_PROBE: &str = "/bench/tether-bench-probe";

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: tether-bench
---
apiVersion: v1
kind: Pod
metadata:
  name: POD_NAME
  namespace: tether-bench
  labels: {app: tether-bench}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: source
    image: tether.test/testsrv:latest
    args: ["bench-source", "--port", "17100"]
    readinessProbe: {tcpSocket: {port: 17100}, periodSeconds: 1}
  - name: http
    image: tether.test/http-echo:latest
    args: ["--port", "18080", "--name", "pod"]
    readinessProbe: {tcpSocket: {port: 18080}, periodSeconds: 1}
  - name: http-direct
    image: tether.test/http-echo:latest
    args: ["--port", "18081", "--name", "pod-direct"]
    readinessProbe: {tcpSocket: {port: 18081}, periodSeconds: 1}
"#;

/// The running bench pod as the node runs it.
#[derive(Debug, Clone)]
pub struct BenchPod {
    /// Pod name.
    pub name: String,
    /// Pod IP.
    pub ip: IpAddr,
    /// Host pid of the `source` container's process (its netns and root are the pod's).
    pub pid: u32,
}

impl BenchPod {
    /// Applies the manifest and waits until the pod is ready. The pod's name carries the
    /// modification time of `testsrv` (the program the node maps its images to), so a rebuilt
    /// server gets a new pod: the node runs what is built, and a name is never reused right
    /// after its deletion (the node would take the new pod for an update of the old one).
    /// Bench pods of other builds are deleted.
    pub async fn ensure(
        kubectl: &Kubectl,
        client: &kube::Client,
        state_dir: &Path,
        testsrv: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let name = match testsrv.and_then(mtime_secs) {
            Some(t) => format!("{POD_PREFIX}-{t:x}"),
            None => POD_PREFIX.to_owned(),
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let selector = ListParams::default().labels("app=tether-bench");
        let stale: Vec<String> = match pods.list(&selector).await {
            Ok(l) => l
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect(),
            Err(_) => Vec::new(), // the namespace does not exist yet
        };
        for old in stale.iter().filter(|n| **n != name) {
            eprintln!("tether-bench: deleting bench pod {old} (another build of tether-testsrv)");
            kubectl
                .run(
                    &["-n", NAMESPACE, "delete", "pod", old, "--wait=false"],
                    None,
                )
                .context("bench pod: deleting a stale one")?;
        }
        kubectl
            .run(
                &["apply", "-f", "-"],
                Some(&MANIFEST.replace("POD_NAME", &name)),
            )
            .context("bench pod: applying its manifest")?;
        let t = Instant::now();
        loop {
            let pod = pods.get_opt(&name).await.context("bench pod: reading it")?;
            if let Some(found) = pod.as_ref().and_then(|p| ready(&name, p, state_dir)) {
                return found;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(90),
                "bench pod: {name} not ready after 90 s\n  help: {} --kubeconfig {} -n {NAMESPACE} describe pod {name}",
                kubectl.bin.display(),
                kubectl.kubeconfig.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An address of the pod.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, port)
    }

    /// The host path of `pod_path` in the `source` container (what the agent reads too).
    pub fn host_path(&self, pod_path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{pod_path}", self.pid))
    }

    /// Copies the probe into the pod, for [`crate::runner::Side::Pod`].
    pub fn install_probe(&self, probe: &Path) -> anyhow::Result<()> {
        let dir = self.host_path(FILE_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("bench pod: creating {}", dir.display()))?;
        let dst = self.host_path(POD_PROBE);
        // Through a new file: the old copy may be running (ETXTBSY) in a leftover probe.
        let tmp = self.host_path(&format!("{POD_PROBE}.new"));
        std::fs::copy(probe, &tmp)
            .with_context(|| format!("bench pod: copying {} into the pod", probe.display()))?;
        std::fs::rename(&tmp, &dst)
            .with_context(|| format!("bench pod: installing {}", dst.display()))
    }

    /// Makes `FILE_DIR/NAME` of `size` bytes in the pod unless it is there; returns its pod path.
    pub fn file(&self, name: &str, size: u64) -> anyhow::Result<String> {
        let pod_path = format!("{FILE_DIR}/{name}");
        let host = self.host_path(&pod_path);
        if std::fs::metadata(&host).is_ok_and(|m| m.len() == size) {
            return Ok(pod_path);
        }
        let dir = self.host_path(FILE_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("bench pod: creating {}", dir.display()))?;
        let data = pattern(size);
        std::fs::write(&host, data)
            .with_context(|| format!("bench pod: writing {}", host.display()))?;
        Ok(pod_path)
    }
}

impl BenchPod {
    /// Removes a file made by [`BenchPod::file`] (the big ones hold memory: the root is a tmpfs).
    pub fn remove_file(&self, pod_path: &str) -> anyhow::Result<()> {
        let host = self.host_path(pod_path);
        match std::fs::remove_file(&host) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("bench pod: removing {}", host.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Modification time of a file, in seconds since the epoch.
fn mtime_secs(path: &Path) -> Option<u64> {
    let m = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

/// `Some(Ok)` once every container is ready and the node's state file names the target pid;
/// `None` while starting.
fn ready(name: &str, pod: &Pod, state_dir: &Path) -> Option<anyhow::Result<BenchPod>> {
    let status = pod.status.as_ref()?;
    let all_ready = status
        .container_statuses
        .as_ref()
        .is_some_and(|cs| cs.len() == 3 && cs.iter().all(|c| c.ready));
    if !all_ready || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_ref()?.parse().ok()?;
    let id = status
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)?
        .container_id
        .clone()?;
    Some(container_pid(state_dir, &id).map(|pid| BenchPod {
        name: name.to_owned(),
        ip,
        pid,
    }))
}

/// The host pid of a container, from the test node's state file
/// (`$TETHER_CONTAINER_STATE_DIR/<id>.json`).
fn container_pid(state_dir: &Path, container_id: &str) -> anyhow::Result<u32> {
    let id = container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id);
    let path = state_dir.join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "bench pod: reading the node's state file {}",
            path.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("bench pod: parsing {}", path.display()))?;
    v["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .with_context(|| format!("bench pod: {} has no pid", path.display()))
}

/// Bytes that no layer of the path could compress or dedupe by accident.
fn pattern(size: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
