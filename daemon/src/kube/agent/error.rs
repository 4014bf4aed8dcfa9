//! Why an agent could not be started or reached, one variant per cause a user can act on.

use std::time::Duration;

use crate::server::error::{ErrorKind, RpcError};

/// An agent start failure. `Display` is `message`; [`LaunchError::help`] is the next step.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LaunchError {
    /// The API server refused a call (RBAC): which verb on which resource.
    #[error("not allowed to {verb} {resource} in namespace `{namespace}`: {message}")]
    Forbidden {
        /// `create`, `get`, ...
        verb: String,
        /// `jobs.batch`, `pods/portforward`, ...
        resource: String,
        /// Namespace of the call.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// The target (or the workload's pods) does not exist.
    #[error("target {target} not found in namespace `{namespace}`")]
    TargetNotFound {
        /// The target path.
        target: String,
        /// Its namespace.
        namespace: String,
    },
    /// The target exists but has no running container to attach to.
    #[error("target {target} is not running: {detail}")]
    TargetNotReady {
        /// The target path.
        target: String,
        /// What is missing.
        detail: String,
    },
    /// The target kind or setup is not supported by the launcher.
    #[error("cannot start an agent for {target}: {detail}")]
    Unsupported {
        /// The target path.
        target: String,
        /// Why.
        detail: String,
    },
    /// The node could not pull the agent image.
    #[error("the agent image `{image}` could not be pulled ({reason}): {message}")]
    ImagePull {
        /// The image.
        image: String,
        /// `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`.
        reason: String,
        /// The kubelet's message.
        message: String,
    },
    /// An admission controller (Pod Security) refused the agent pod.
    #[error("the agent pod was refused by admission in namespace `{namespace}`: {message}")]
    Admission {
        /// The agent's namespace.
        namespace: String,
        /// The Job controller's event message.
        message: String,
    },
    /// The scheduler found no node for the agent pod.
    #[error("the agent pod cannot be scheduled: {message}")]
    Unschedulable {
        /// The scheduler's message.
        message: String,
    },
    /// The container runtime socket is not on the node at the expected path.
    #[error("the container runtime socket is missing on the node: {message}")]
    RuntimeSocketMissing {
        /// The path looked for.
        path: String,
        /// The kubelet's message.
        message: String,
    },
    /// The agent container ended before serving (its last log lines).
    #[error("the agent exited before it was ready ({reason}): {logs}")]
    AgentExited {
        /// Container termination reason and exit code.
        reason: String,
        /// Last log lines.
        logs: String,
    },
    /// Start-up took longer than `agent.startup_timeout`.
    #[error("the agent did not start within {} s: still waiting for {step}", after.as_secs())]
    Timeout {
        /// The step it was waiting on.
        step: String,
        /// The timeout.
        after: Duration,
    },
    /// The port-forward to the agent failed or the agent refused the session.
    #[error("cannot connect to the agent in pod {pod}: {detail}")]
    Connect {
        /// Agent pod.
        pod: String,
        /// Why.
        detail: String,
    },
    /// Any other API server error.
    #[error("kubernetes API: {what}: {message}")]
    Api {
        /// The call.
        what: String,
        /// The error.
        message: String,
    },
}

impl LaunchError {
    /// One line telling the user what to do next.
    pub fn help(&self) -> String {
        match self {
            LaunchError::Forbidden { verb, resource, namespace, .. } => format!(
                "ask an admin to grant `{verb}` on `{resource}` in `{namespace}` (docs/RBAC.md has the minimal Role); check with `kubectl auth can-i {verb} {resource} -n {namespace}`"
            ),
            LaunchError::TargetNotFound { namespace, .. } => format!(
                "check the target's name and namespace: `kubectl get pods -n {namespace}`"
            ),
            LaunchError::TargetNotReady { .. } => {
                "wait until the target pod is Running, or pick another pod".to_owned()
            }
            LaunchError::Unsupported { .. } => {
                "target a pod, deployment or statefulset; or run `tether-agent` yourself and pass its address as `agent`".to_owned()
            }
            LaunchError::ImagePull { image, .. } => format!(
                "check `agent.image` ({image}) exists and the node can pull it; set `agent.image_pull_secrets` for a private registry"
            ),
            LaunchError::Admission { namespace, .. } => format!(
                "the agent needs a privileged pod (hostPID, NET_ADMIN/SYS_ADMIN/SYS_PTRACE): set `agent.namespace` to a namespace whose Pod Security level is privileged, or ask an admin to label `{namespace}` pod-security.kubernetes.io/enforce=privileged"
            ),
            LaunchError::Unschedulable { .. } => {
                "the agent runs on the target's node: remove `agent.node_selector` entries that node lacks, or add `agent.tolerations` for its taints".to_owned()
            }
            LaunchError::RuntimeSocketMissing { path, .. } => format!(
                "the node has no container runtime socket at {path}: run the agent as an ephemeral container (`agent.ephemeral: true`)"
            ),
            LaunchError::AgentExited { .. } => {
                "see the agent's logs above; `agent.log_level: \"debug\"` says more".to_owned()
            }
            LaunchError::Timeout { .. } => {
                "raise `agent.startup_timeout` if the cluster is slow; `kubectl describe` of the agent's Job and pod shows what it waits for".to_owned()
            }
            LaunchError::Connect { .. } => {
                "check that `kubectl port-forward` works against this cluster (pods/portforward access, a reachable kubelet)".to_owned()
            }
            LaunchError::Api { .. } => "check that the cluster is reachable: `kubectl get --raw /readyz`".to_owned(),
        }
    }

    /// A stable short name of the cause, for events and tests.
    pub fn cause(&self) -> &'static str {
        match self {
            LaunchError::Forbidden { .. } => "forbidden",
            LaunchError::TargetNotFound { .. } => "target_not_found",
            LaunchError::TargetNotReady { .. } => "target_not_ready",
            LaunchError::Unsupported { .. } => "unsupported",
            LaunchError::ImagePull { .. } => "image_pull",
            LaunchError::Admission { .. } => "admission",
            LaunchError::Unschedulable { .. } => "unschedulable",
            LaunchError::RuntimeSocketMissing { .. } => "runtime_socket_missing",
            LaunchError::AgentExited { .. } => "agent_exited",
            LaunchError::Timeout { .. } => "timeout",
            LaunchError::Connect { .. } => "connect",
            LaunchError::Api { .. } => "api",
        }
    }

    /// A kube-rs error of `verb` on `resource` in `namespace`: 403 becomes [`Self::Forbidden`].
    pub fn from_kube(e: kube::Error, verb: &str, resource: &str, namespace: &str) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 403 => LaunchError::Forbidden {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                namespace: namespace.to_owned(),
                message: s.message,
            },
            other => LaunchError::Api {
                what: format!("{verb} {resource} in `{namespace}`"),
                message: other.to_string(),
            },
        }
    }

    /// The daemon's error shape: RBAC is `kube_forbidden`, a missing target `kube_not_found`,
    /// every other start failure `agent_unavailable`; the message starts with the cause.
    pub fn into_rpc(self, target: &str) -> RpcError {
        let kind = match self {
            LaunchError::Forbidden { .. } => ErrorKind::KubeForbidden,
            LaunchError::TargetNotFound { .. } => ErrorKind::KubeNotFound,
            LaunchError::Api { .. } => ErrorKind::KubeApi,
            _ => ErrorKind::AgentUnavailable,
        };
        // Cluster messages often end in a period; the daemon's messages do not.
        let text = self.to_string();
        let text = text.trim_end().trim_end_matches('.');
        RpcError::new(
            kind,
            format!("agent start failed [{}]: {text}", self.cause()),
        )
        .target(target.to_owned())
        .hint(self.help())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<LaunchError> {
        let s = || "x".to_owned();
        vec![
            LaunchError::Forbidden {
                verb: "create".into(),
                resource: "jobs.batch".into(),
                namespace: "ns".into(),
                message: s(),
            },
            LaunchError::TargetNotFound {
                target: s(),
                namespace: s(),
            },
            LaunchError::TargetNotReady {
                target: s(),
                detail: s(),
            },
            LaunchError::Unsupported {
                target: s(),
                detail: s(),
            },
            LaunchError::ImagePull {
                image: "img".into(),
                reason: "ErrImagePull".into(),
                message: "not found.".into(),
            },
            LaunchError::Admission {
                namespace: s(),
                message: s(),
            },
            LaunchError::Unschedulable { message: s() },
            LaunchError::RuntimeSocketMissing {
                path: "/run/containerd/containerd.sock".into(),
                message: s(),
            },
            LaunchError::AgentExited {
                reason: s(),
                logs: s(),
            },
            LaunchError::Timeout {
                step: "the scheduler to place the agent pod".into(),
                after: Duration::from_secs(60),
            },
            LaunchError::Connect {
                pod: s(),
                detail: s(),
            },
            LaunchError::Api {
                what: s(),
                message: s(),
            },
        ]
    }

    #[test]
    fn every_cause_has_its_own_name_and_a_help_line() {
        let errs = all();
        let mut causes: Vec<_> = errs.iter().map(LaunchError::cause).collect();
        causes.sort();
        causes.dedup();
        assert_eq!(causes.len(), errs.len());
        for e in errs {
            let rpc = e.clone().into_rpc("pod/x");
            assert!(
                rpc.message
                    .starts_with(&format!("agent start failed [{}]: ", e.cause()))
            );
            assert!(!rpc.message.ends_with('.'), "{}", rpc.message);
            let hint = rpc.hint.unwrap_or_default();
            assert!(!hint.is_empty() && !hint.contains('\n'), "{hint}");
        }
    }

    #[test]
    fn timeout_names_the_step_and_rbac_the_verb_and_resource() {
        let e = &all()[9];
        assert!(
            e.to_string()
                .contains("still waiting for the scheduler to place the agent pod")
        );
        let f = all()[0].clone().into_rpc("pod/x");
        assert_eq!(f.kind, ErrorKind::KubeForbidden);
        assert!(
            f.message
                .contains("not allowed to create jobs.batch in namespace `ns`")
        );
        assert!(
            f.hint
                .unwrap()
                .contains("kubectl auth can-i create jobs.batch -n ns")
        );
    }
}
