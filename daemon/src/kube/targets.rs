//! The targets watch cache: pods, deployments, statefulsets and Argo rollouts (where the CRD
//! exists) per (kubeconfig, context, namespace), kept current by kube-runtime reflectors.
//!
//! A namespace's watches start on the first `targets.list` or `targets.watch` for it and stop
//! after [`IDLE_TTL`] without use, so the pod picker answers from memory after the first call and
//! an idle daemon holds no watches. Each kind is watched on its own: a user whom RBAC lets list
//! pods but not deployments still gets the pods, with a warning.
//!
//! Invariant: the reflector stores are written only by their watch task; readers take snapshots.

use std::{
    collections::HashMap,
    fmt::Debug,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Container, Pod},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::{sync::watch, task::JoinHandle};

use super::{KubeManager, map_kube_error};
use crate::server::{
    api::{TargetContainer, TargetInfo, TargetKind, TargetList, TargetPort, TargetsParams},
    error::{ErrorKind, RpcError},
};

/// A namespace's watches stop after this long without a list or an open watch subscription.
pub const IDLE_TTL: Duration = Duration::from_secs(600);
/// How long the first list of a namespace may take.
pub const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(20);

/// State of one kind's watch.
#[derive(Debug, Clone)]
enum KindState {
    /// The initial list is running.
    Starting,
    /// The store holds the full list.
    Ready,
    /// The initial list failed (the watcher keeps retrying with backoff).
    Failed(RpcError),
    /// The kind does not exist in this cluster (no Argo Rollouts CRD): nothing to list.
    Absent,
}

struct KindWatch<K: Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    state: watch::Receiver<KindState>,
    task: JoinHandle<()>,
}

impl<K: Resource + 'static> KindWatch<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn state(&self) -> KindState {
        self.state.borrow().clone()
    }
}

impl<K: Resource + 'static> Drop for KindWatch<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start_kind<K>(
    api: Api<K>,
    changed: Arc<watch::Sender<u64>>,
    context: String,
    what: String,
) -> KindWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    start_kind_with(api, (), None, changed, context, what)
}

/// Starts a reflector for `api`. With `group_version`, the watch starts only once discovery
/// shows that the API group version exists (CRDs such as Argo Rollouts); otherwise the kind is
/// [`KindState::Absent`].
fn start_kind_with<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    group_version: Option<(Client, &'static str)>,
    changed: Arc<watch::Sender<u64>>,
    context: String,
    what: String,
) -> KindWatch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let writer = reflector::store::Writer::new(dyntype);
    let store = writer.as_reader();
    let (state_tx, state_rx) = watch::channel(KindState::Starting);
    let task = tokio::spawn(async move {
        if let Some((client, gv)) = group_version {
            match client.list_api_group_resources(gv).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    state_tx.send_replace(KindState::Absent);
                    changed.send_modify(|g| *g += 1);
                    return;
                }
                Err(e) => {
                    state_tx.send_replace(KindState::Failed(map_kube_error(e, &context, &what)));
                    changed.send_modify(|g| *g += 1);
                    return;
                }
            }
        }
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            // The picker needs none of these, and they are most of an object's size.
            .modify(|o: &mut K| {
                let meta = o.meta_mut();
                meta.managed_fields = None;
                meta.annotations = None;
            })
            .reflect(writer);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    state_tx.send_replace(KindState::Ready);
                    changed.send_modify(|g| *g += 1);
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    changed.send_modify(|g| *g += 1);
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Err(e) => {
                    tracing::warn!(%context, %what, error = %super::one_line_chain(&e), "watch failed; retrying");
                    if !matches!(*state_tx.borrow(), KindState::Ready) {
                        state_tx
                            .send_replace(KindState::Failed(map_watch_error(e, &context, &what)));
                        changed.send_modify(|g| *g += 1);
                    }
                }
            }
        }
    });
    KindWatch {
        store,
        state: state_rx,
        task,
    }
}

fn map_watch_error(e: watcher::Error, context: &str, what: &str) -> RpcError {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => map_kube_error(e, context, what),
        watcher::Error::WatchError(status) => {
            map_kube_error(kube::Error::Api(status), context, what)
        }
        other => RpcError::new(ErrorKind::KubeApi, format!("cannot watch {what}: {other}"))
            .target(context),
    }
}

/// Watches of one namespace.
pub struct NamespaceWatch {
    /// The context's name.
    pub context: String,
    /// The namespace.
    pub namespace: String,
    pods: KindWatch<Pod>,
    deployments: KindWatch<Deployment>,
    statefulsets: KindWatch<StatefulSet>,
    rollouts: KindWatch<DynamicObject>,
    changed: Arc<watch::Sender<u64>>,
    last_used: Mutex<Instant>,
}

impl NamespaceWatch {
    fn start(client: Client, context: String, namespace: String) -> Self {
        let changed = Arc::new(watch::channel(0u64).0);
        let what = |kind: &str| format!("{kind} in namespace {namespace}");
        Self {
            pods: start_kind(
                Api::namespaced(client.clone(), &namespace),
                changed.clone(),
                context.clone(),
                what("pods"),
            ),
            deployments: start_kind(
                Api::namespaced(client.clone(), &namespace),
                changed.clone(),
                context.clone(),
                what("deployments"),
            ),
            statefulsets: start_kind(
                Api::namespaced(client.clone(), &namespace),
                changed.clone(),
                context.clone(),
                what("statefulsets"),
            ),
            rollouts: {
                let ar = rollout_resource();
                start_kind_with(
                    Api::namespaced_with(client.clone(), &namespace, &ar),
                    ar,
                    Some((client, ROLLOUT_GROUP_VERSION)),
                    changed.clone(),
                    context.clone(),
                    what("rollouts"),
                )
            },
            changed,
            context,
            namespace,
            last_used: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self) {
        *self.last_used.lock().expect("last_used poisoned") = Instant::now();
    }

    /// A receiver that changes whenever any kind changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn settled(&self) -> bool {
        ![
            self.pods.state(),
            self.deployments.state(),
            self.statefulsets.state(),
            self.rollouts.state(),
        ]
        .iter()
        .any(|s| matches!(s, KindState::Starting))
    }

    /// Waits until every kind has either listed or failed, up to `timeout`.
    pub async fn wait_settled(&self, timeout: Duration) -> Result<(), RpcError> {
        let mut rx = self.subscribe();
        let wait = async {
            while !self.settled() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            RpcError::new(
                ErrorKind::KubeTimeout,
                format!(
                    "listing targets in namespace {} of context `{}` timed out after {}s",
                    self.namespace,
                    self.context,
                    timeout.as_secs()
                ),
            )
            .target(format!("{}/{}", self.context, self.namespace))
            .hint(format!(
                "check that the cluster answers: `kubectl --context {} get pods -n {}`",
                self.context, self.namespace
            ))
        })
    }

    /// The current list, filtered to `kinds`. Fails only when pods cannot be listed; other kinds
    /// that failed become warnings.
    pub fn snapshot(&self, kinds: Option<&[TargetKind]>) -> Result<TargetList, RpcError> {
        let wanted = |k: TargetKind| kinds.is_none_or(|ks| ks.contains(&k));
        let mut targets = Vec::new();
        let mut warnings = Vec::new();
        let mut pod_error = None;
        if wanted(TargetKind::Pod) {
            match self.pods.state() {
                KindState::Ready => {
                    let mut v: Vec<TargetInfo> = self
                        .pods
                        .store
                        .state()
                        .iter()
                        .map(|p| pod_target(p, &self.namespace))
                        .collect();
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    targets.extend(v);
                }
                KindState::Failed(e) => pod_error = Some(e),
                KindState::Absent => {}
                KindState::Starting => warnings.push("pods are still being listed".to_owned()),
            }
        }
        for (kind, state, list) in [
            (
                TargetKind::Deployment,
                self.deployments.state(),
                self.deployments
                    .store
                    .state()
                    .iter()
                    .map(|d| deployment_target(d, &self.namespace))
                    .collect::<Vec<_>>(),
            ),
            (
                TargetKind::StatefulSet,
                self.statefulsets.state(),
                self.statefulsets
                    .store
                    .state()
                    .iter()
                    .map(|s| statefulset_target(s, &self.namespace))
                    .collect::<Vec<_>>(),
            ),
            (
                TargetKind::Rollout,
                self.rollouts.state(),
                self.rollouts
                    .store
                    .state()
                    .iter()
                    .map(|r| rollout_target(r, &self.namespace))
                    .collect::<Vec<_>>(),
            ),
        ] {
            if !wanted(kind) {
                continue;
            }
            match state {
                KindState::Ready => {
                    let mut v = list;
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    targets.extend(v);
                }
                KindState::Failed(e) => warnings.push(e.message),
                KindState::Absent => {}
                KindState::Starting => {
                    warnings.push(format!("{}s are still being listed", kind.as_str()))
                }
            }
        }
        if let Some(e) = pod_error {
            // Without pods there is nothing to pick, unless only workloads were asked for and listed.
            if targets.is_empty() {
                return Err(e);
            }
            warnings.insert(0, e.message);
        }
        Ok(TargetList {
            context: self.context.clone(),
            namespace: self.namespace.clone(),
            targets,
            warnings,
        })
    }
}

type CacheKey = (Option<PathBuf>, String, String);

/// Namespace watches by (kubeconfig, context, namespace).
#[derive(Default)]
pub struct TargetCache {
    entries: Mutex<HashMap<CacheKey, Arc<NamespaceWatch>>>,
}

impl Debug for TargetCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("TargetCache")
            .field("namespaces", &n)
            .finish()
    }
}

impl TargetCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The watch of the namespace `params` names, started if needed and settled.
    pub async fn namespace(
        &self,
        kube: &KubeManager,
        params: &TargetsParams,
    ) -> Result<Arc<NamespaceWatch>, RpcError> {
        let t = kube
            .target(params.kubeconfig.as_deref(), params.context.as_deref())
            .await?;
        let namespace = params
            .namespace
            .clone()
            .unwrap_or_else(|| t.namespace.clone());
        let key = (
            params.kubeconfig.clone(),
            t.context.clone(),
            namespace.clone(),
        );
        let entry = {
            let mut entries = self.entries.lock().expect("target cache poisoned");
            entries
                .entry(key)
                .or_insert_with(|| {
                    tracing::info!(context = %t.context, %namespace, "starting target watches");
                    Arc::new(NamespaceWatch::start(
                        t.client.clone(),
                        t.context.clone(),
                        namespace.clone(),
                    ))
                })
                .clone()
        };
        entry.touch();
        entry.wait_settled(FIRST_LIST_TIMEOUT).await?;
        Ok(entry)
    }

    /// `targets.list`.
    pub async fn list(
        &self,
        kube: &KubeManager,
        params: &TargetsParams,
    ) -> Result<TargetList, RpcError> {
        let ns = self.namespace(kube, params).await?;
        ns.snapshot(params.kinds.as_deref())
    }

    /// Stops watches unused for `ttl` that no subscription holds.
    pub fn evict_idle(&self, ttl: Duration) -> usize {
        let mut entries = self.entries.lock().expect("target cache poisoned");
        let before = entries.len();
        entries.retain(|_, w| {
            Arc::strong_count(w) > 1
                || w.last_used.lock().expect("last_used poisoned").elapsed() < ttl
        });
        before - entries.len()
    }

    /// Number of namespaces watched.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("target cache poisoned").len()
    }

    /// Whether no namespace is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn container_ports(c: &Container) -> Vec<TargetPort> {
    c.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(TargetPort {
                port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                name: p.name.clone(),
            })
        })
        .collect()
}

fn union_ports(containers: &[TargetContainer]) -> Vec<TargetPort> {
    let mut ports: Vec<TargetPort> = Vec::new();
    for p in containers.iter().flat_map(|c| &c.ports) {
        if !ports
            .iter()
            .any(|q| q.port == p.port && q.protocol == p.protocol)
        {
            ports.push(p.clone());
        }
    }
    ports
}

fn template_containers(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Vec<TargetContainer> {
    spec.map(|s| {
        s.containers
            .iter()
            .map(|c| TargetContainer {
                name: c.name.clone(),
                ready: None,
                image: c.image.clone(),
                ports: container_ports(c),
            })
            .collect()
    })
    .unwrap_or_default()
}

/// A pod as the picker shows it.
pub fn pod_target(pod: &Pod, namespace: &str) -> TargetInfo {
    let status = pod.status.as_ref();
    let statuses = status.and_then(|s| s.container_statuses.as_ref());
    let containers: Vec<TargetContainer> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| TargetContainer {
                    name: c.name.clone(),
                    ready: statuses
                        .and_then(|ss| ss.iter().find(|cs| cs.name == c.name))
                        .map(|cs| cs.ready),
                    image: c.image.clone(),
                    ports: container_ports(c),
                })
                .collect()
        })
        .unwrap_or_default();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let ready_count = containers.iter().filter(|c| c.ready == Some(true)).count();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_owned());
    let name = pod.name_any();
    TargetInfo {
        kind: TargetKind::Pod,
        path: format!("pod/{name}"),
        namespace: pod.namespace().unwrap_or_else(|| namespace.to_owned()),
        name,
        ready: ready_condition && !terminating,
        ready_text: format!("{ready_count}/{}", containers.len()),
        ports: union_ports(&containers),
        containers,
        status: if terminating {
            "Terminating".to_owned()
        } else {
            phase
        },
    }
}

fn workload_target(
    kind: TargetKind,
    name: String,
    namespace: String,
    containers: Vec<TargetContainer>,
    ready_replicas: i32,
    replicas: i32,
) -> TargetInfo {
    let status = if ready_replicas > 0 && ready_replicas >= replicas {
        "Available"
    } else if ready_replicas > 0 {
        "Progressing"
    } else {
        "Unavailable"
    };
    TargetInfo {
        kind,
        path: format!("{}/{name}", kind.as_str()),
        name,
        namespace,
        ready: ready_replicas > 0,
        ready_text: format!("{ready_replicas}/{replicas}"),
        ports: union_ports(&containers),
        containers,
        status: status.to_owned(),
    }
}

/// API group version of Argo Rollouts.
pub const ROLLOUT_GROUP_VERSION: &str = "argoproj.io/v1alpha1";

fn rollout_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
        "rollouts",
    )
}

/// An Argo Rollout as the picker shows it. Its pod template is inline (`spec.template`) or in a
/// referenced Deployment (`spec.workloadRef`), in which case no containers are known here.
pub fn rollout_target(r: &DynamicObject, namespace: &str) -> TargetInfo {
    let spec = r.data.get("spec");
    let template: Option<k8s_openapi::api::core::v1::PodSpec> = spec
        .and_then(|s| s.pointer("/template/spec"))
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let int = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
    };
    workload_target(
        TargetKind::Rollout,
        r.name_any(),
        r.namespace().unwrap_or_else(|| namespace.to_owned()),
        template_containers(template.as_ref()),
        int(r.data.pointer("/status/readyReplicas")).unwrap_or(0),
        int(spec.and_then(|s| s.get("replicas"))).unwrap_or(1),
    )
}

/// A deployment as the picker shows it.
pub fn deployment_target(d: &Deployment, namespace: &str) -> TargetInfo {
    let spec = Some(&d.spec);
    workload_target(
        TargetKind::Deployment,
        d.name_any(),
        d.namespace().unwrap_or_else(|| namespace.to_owned()),
        template_containers(spec.and_then(|s| s.template.spec.as_ref())),
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        spec.and_then(|s| s.replicas).unwrap_or(1),
    )
}

/// A statefulset as the picker shows it.
pub fn statefulset_target(s: &StatefulSet, namespace: &str) -> TargetInfo {
    let spec = Some(&s.spec);
    workload_target(
        TargetKind::StatefulSet,
        s.name_any(),
        s.namespace().unwrap_or_else(|| namespace.to_owned()),
        template_containers(spec.and_then(|s| s.template.spec.as_ref())),
        s.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        spec.and_then(|s| s.replicas).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_readiness_ports_and_terminating() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-1", "namespace": "shop"},
            "spec": {"containers": [
                {"name": "app", "image": "api:1", "ports": [{"containerPort": 8080}, {"containerPort": 9090, "protocol": "UDP", "name": "m"}]},
                {"name": "sidecar", "ports": [{"containerPort": 8080}]}
            ]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "image": "api:1", "imageID": ""},
                    {"name": "sidecar", "ready": false, "restartCount": 0, "image": "s", "imageID": ""}
                ]}
        }))
        .unwrap();
        let t = pod_target(&pod, "x");
        assert_eq!(t.path, "pod/api-1");
        assert_eq!(t.namespace, "shop");
        assert!(t.ready);
        assert_eq!(t.ready_text, "1/2");
        assert_eq!(t.status, "Running");
        assert_eq!(t.ports.len(), 2, "8080/TCP once, 9090/UDP: {:?}", t.ports);
        assert_eq!(t.containers[1].ready, Some(false));

        let mut gone = pod.clone();
        gone.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        let t = pod_target(&gone, "x");
        assert!(!t.ready);
        assert_eq!(t.status, "Terminating");
    }

    #[test]
    fn deployment_replicas() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api"},
            "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [{"name": "app"}]}}},
            "status": {"readyReplicas": 1}
        }))
        .unwrap();
        let t = deployment_target(&d, "shop");
        assert_eq!(
            (
                t.path.as_str(),
                t.namespace.as_str(),
                t.ready,
                t.ready_text.as_str()
            ),
            ("deployment/api", "shop", true, "1/3")
        );
        assert_eq!(t.status, "Progressing");
        assert_eq!(t.containers[0].ready, None);
    }
}
