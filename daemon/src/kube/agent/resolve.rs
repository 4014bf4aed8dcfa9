//! From a target path to one running pod: its node and the target container's id.

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::Pod,
};
use kube::{Api, Client, api::ListParams};
use tether_config::{Target, TargetType};

use super::LaunchError;

/// The pod an agent attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Node the pod runs on.
    pub node: String,
    /// Container name.
    pub container: String,
    /// Container id as the node reports it (`containerd://...`).
    pub container_id: String,
}

/// Resolves `target` in `namespace`: a pod as it is, a workload to its first ready pod (by name).
pub async fn resolve(
    client: &Client,
    namespace: &str,
    target: &Target,
) -> Result<ResolvedTarget, LaunchError> {
    let Target::Resource {
        kind,
        name,
        container,
    } = target
    else {
        return Err(LaunchError::Unsupported {
            target: "targetless".into(),
            detail: "the agent needs a target pod; targetless sessions are not supported by the launcher yet".into(),
        });
    };
    let path = target.to_string();
    let not_found = || LaunchError::TargetNotFound {
        target: path.clone(),
        namespace: namespace.to_owned(),
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = match kind {
        TargetType::Pod => pods
            .get_opt(name)
            .await
            .map_err(|e| LaunchError::from_kube(e, "get", "pods", namespace))?
            .ok_or_else(not_found)?,
        TargetType::Deployment | TargetType::StatefulSet => {
            let selector = match kind {
                TargetType::Deployment => {
                    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                    api.get_opt(name)
                        .await
                        .map_err(|e| {
                            LaunchError::from_kube(e, "get", "deployments.apps", namespace)
                        })?
                        .ok_or_else(not_found)?
                        .spec
                        .selector
                }
                _ => {
                    let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
                    api.get_opt(name)
                        .await
                        .map_err(|e| {
                            LaunchError::from_kube(e, "get", "statefulsets.apps", namespace)
                        })?
                        .ok_or_else(not_found)?
                        .spec
                        .selector
                }
            };
            let labels = selector
                .match_labels
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            if labels.is_empty() {
                return Err(LaunchError::Unsupported {
                    target: path,
                    detail: "its selector has no matchLabels".into(),
                });
            }
            let mut list = pods
                .list(&ListParams::default().labels(&labels))
                .await
                .map_err(|e| LaunchError::from_kube(e, "list", "pods", namespace))?
                .items;
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            list.into_iter()
                .find(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
                .ok_or_else(|| LaunchError::TargetNotReady {
                    target: path.clone(),
                    detail: "none of its pods is ready".into(),
                })?
        }
        TargetType::Rollout | TargetType::Targetless => {
            return Err(LaunchError::Unsupported {
                target: path,
                detail: format!("{kind} targets are not supported by the launcher yet"),
            });
        }
    };
    pod_target(&pod, container.as_deref(), &path)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The container (named, else the first) of a running pod.
fn pod_target(
    pod: &Pod,
    container: Option<&str>,
    path: &str,
) -> Result<ResolvedTarget, LaunchError> {
    let not_ready = |detail: String| LaunchError::TargetNotReady {
        target: path.to_owned(),
        detail,
    };
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| not_ready("the pod has no spec".into()))?;
    let name = match container {
        Some(c) => {
            if !spec.containers.iter().any(|x| x.name == c) {
                let known: Vec<&str> = spec.containers.iter().map(|x| x.name.as_str()).collect();
                return Err(not_ready(format!(
                    "it has no container `{c}` (containers: {})",
                    known.join(", ")
                )));
            }
            c.to_owned()
        }
        None => spec
            .containers
            .first()
            .map(|c| c.name.clone())
            .ok_or_else(|| not_ready("the pod has no containers".into()))?,
    };
    let node = spec
        .node_name
        .clone()
        .ok_or_else(|| not_ready("the pod is not scheduled on a node yet".into()))?;
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
    let cs = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == name));
    let running = cs
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    let id = cs.and_then(|c| c.container_id.clone()).unwrap_or_default();
    if !running || id.is_empty() {
        return Err(not_ready(format!(
            "container `{name}` is not running (pod phase {phase})"
        )));
    }
    Ok(ResolvedTarget {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        pod: pod.metadata.name.clone().unwrap_or_default(),
        node,
        container: name,
        container_id: id,
    })
}
