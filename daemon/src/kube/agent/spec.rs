//! The agent's Kubernetes objects: a Job pinned to the target's node (or an ephemeral container
//! in the target pod) and the Secret holding its session token.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{EphemeralContainer, Secret},
};
use serde_json::{Value, json};
use tether_config::AgentConfig;

/// The image used when `agent.image` is unset. The test cluster's node maps every image whose
/// name contains `tether-agent` to the freshly built agent binary.
pub const DEFAULT_IMAGE: &str = "ghcr.io/tether-dev/tether-agent:latest";
/// The port the agent serves on inside its pod (the Job's pod has its own network namespace;
/// an ephemeral container shares the target's, where this port is unlikely to be taken).
pub const AGENT_PORT: u16 = 47011;
/// Label on every object the launcher makes.
pub const MANAGED_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label value of [`MANAGED_LABEL`].
pub const MANAGED_VALUE: &str = "tether";
/// Label naming the component.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Upper bound on an agent Job's life, a safety net should both the daemon and the agent's own
/// idle TTL fail to end it.
pub const ACTIVE_DEADLINE_SECS: i64 = 24 * 3600;
/// Secret key holding the token.
pub const TOKEN_KEY: &str = "token";

/// Where a runtime's socket lives on the node, from the prefix of a container id.
pub fn runtime_socket(container_id: &str) -> Option<(&'static str, &'static str)> {
    let (prefix, _) = container_id.split_once("://")?;
    Some(match prefix {
        "containerd" => ("/run/containerd/containerd.sock", "Socket"),
        "cri-o" => ("/var/run/crio/crio.sock", "Socket"),
        "docker" => ("/var/run/docker.sock", "Socket"),
        // The test node: the agent reads its state files (see tests/cluster).
        "tether-test" => ("/run/tether-cluster/containers", "Directory"),
        _ => return None,
    })
}

/// What the objects are made from.
#[derive(Debug, Clone)]
pub struct AgentSpec<'a> {
    /// Object name (Job, Secret, ephemeral container).
    pub name: String,
    /// The agent config.
    pub config: &'a AgentConfig,
    /// The target's node.
    pub node: String,
    /// The target container's id as the node reports it.
    pub container_id: String,
    /// The target container's name (ephemeral containers attach to it).
    pub container: String,
    /// Agent id (iptables chain names).
    pub agent_id: String,
}

impl AgentSpec<'_> {
    /// The image to run.
    pub fn image(&self) -> String {
        self.config
            .image
            .clone()
            .unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.config.labels.clone();
        l.insert(NAME_LABEL.into(), "tether-agent".into());
        l.insert(MANAGED_LABEL.into(), MANAGED_VALUE.into());
        l
    }

    fn args(&self, target: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = target.iter().map(|s| (*s).to_owned()).collect();
        a.extend([
            "--listen".into(),
            format!("0.0.0.0:{AGENT_PORT}"),
            "--ttl".into(),
            self.config.communication_timeout.max(1).to_string(),
            "--agent-id".into(),
            self.agent_id.clone(),
        ]);
        a
    }

    fn env(&self) -> Value {
        json!([
            {"name": "TETHER_AGENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": self.name, "key": TOKEN_KEY}}},
            {"name": "TETHER_AGENT_LOG", "value": self.config.log_level},
        ])
    }

    fn security(&self) -> Value {
        json!({
            "privileged": self.config.privileged,
            "runAsUser": 0,
            "capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]},
        })
    }

    fn resources(&self) -> Value {
        match &self.config.resources {
            Some(r) => json!({"requests": r.requests, "limits": r.limits}),
            None => json!({
                "requests": {"cpu": "10m", "memory": "32Mi"},
                "limits": {"cpu": "1", "memory": "256Mi"},
            }),
        }
    }

    /// The Secret with the token, readable only by pods of its namespace that name it.
    pub fn secret(&self, token: &str) -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": self.name, "labels": self.labels()},
            "type": "Opaque",
            "immutable": true,
            "stringData": {TOKEN_KEY: token},
        }))
        .expect("agent Secret shape")
    }

    /// The Job: one pod, never restarted, on the target's node, in the host's PID namespace, with
    /// the runtime socket mounted.
    pub fn job(&self) -> Job {
        let mut mounts = vec![];
        let mut volumes = vec![];
        if let Some((path, kind)) = runtime_socket(&self.container_id) {
            mounts.push(
                json!({"name": "runtime", "mountPath": path, "readOnly": kind == "Directory"}),
            );
            volumes.push(json!({"name": "runtime", "hostPath": {"path": path, "type": kind}}));
        }
        let pull_secrets: Vec<Value> = self
            .config
            .image_pull_secrets
            .iter()
            .map(|s| json!({"name": s.name}))
            .collect();
        let container = json!({
            "name": "tether-agent",
            "image": self.image(),
            "imagePullPolicy": self.config.image_pull_policy.to_string(),
            "args": self.args(&["--container-id", &self.container_id]),
            "env": self.env(),
            "ports": [{"name": "agent", "containerPort": AGENT_PORT}],
            "securityContext": self.security(),
            "resources": self.resources(),
            "volumeMounts": mounts,
        });
        let mut pod_spec = json!({
            "restartPolicy": "Never",
            "hostPID": true,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 2,
            // Pinned through the scheduler rather than `nodeName`, so a node selector or taint
            // that rules the node out is reported as Unschedulable instead of a silent kubelet
            // rejection.
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [self.node]}
                ]}]
            }}},
            "nodeSelector": self.config.node_selector,
            "tolerations": self.config.tolerations,
            "imagePullSecrets": pull_secrets,
            "containers": [container],
            "volumes": volumes,
        });
        if let Some(sa) = &self.config.service_account {
            pod_spec["serviceAccountName"] = json!(sa);
        }
        serde_json::from_value(json!({
            "metadata": {
                "name": self.name,
                "labels": self.labels(),
                "annotations": self.config.annotations,
            },
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": i32::from(self.config.ttl),
                "activeDeadlineSeconds": ACTIVE_DEADLINE_SECS,
                "template": {
                    "metadata": {"labels": self.labels(), "annotations": self.config.annotations},
                    "spec": pod_spec,
                },
            },
        }))
        .expect("agent Job shape")
    }

    /// The ephemeral container: in the target pod, sharing the target container's PID namespace
    /// (so the target is PID 1 there).
    pub fn ephemeral(&self) -> EphemeralContainer {
        serde_json::from_value(json!({
            "name": self.name,
            "image": self.image(),
            "imagePullPolicy": self.config.image_pull_policy.to_string(),
            "targetContainerName": self.container,
            "args": self.args(&["--target-pid", "1"]),
            "env": self.env(),
            "securityContext": self.security(),
        }))
        .expect("agent ephemeral container shape")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cfg: &AgentConfig) -> AgentSpec<'_> {
        AgentSpec {
            name: "tether-agent-abc".into(),
            config: cfg,
            node: "node-1".into(),
            container_id: "containerd://0123".into(),
            container: "app".into(),
            agent_id: "abc".into(),
        }
    }

    #[test]
    fn job_is_pinned_privileged_enough_and_takes_the_token_from_the_secret() {
        let mut cfg = AgentConfig::default();
        cfg.labels.insert("team".into(), "a".into());
        cfg.node_selector.insert("disk".into(), "ssd".into());
        let job = serde_json::to_value(spec(&cfg).job()).unwrap();
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["hostPID"], true);
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchFields"][0]["values"][0],
            "node-1"
        );
        assert_eq!(pod["nodeSelector"]["disk"], "ssd");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], DEFAULT_IMAGE);
        assert_eq!(
            c["securityContext"]["capabilities"]["add"],
            json!(["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"])
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"]["name"],
            "tether-agent-abc"
        );
        assert!(!c.to_string().contains("--token"));
        assert_eq!(
            pod["volumes"][0]["hostPath"]["path"],
            "/run/containerd/containerd.sock"
        );
        assert_eq!(pod["volumes"][0]["hostPath"]["type"], "Socket");
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 1);
        assert_eq!(job["metadata"]["labels"]["team"], "a");
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"][MANAGED_LABEL],
            "tether"
        );
        let args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
        assert_eq!(args[..2], ["--container-id", "containerd://0123"]);
        assert!(args.contains(&format!("0.0.0.0:{AGENT_PORT}")));
    }

    #[test]
    fn runtime_sockets_by_prefix() {
        assert_eq!(
            runtime_socket("cri-o://x").unwrap().0,
            "/var/run/crio/crio.sock"
        );
        assert_eq!(
            runtime_socket("docker://x").unwrap().0,
            "/var/run/docker.sock"
        );
        assert!(runtime_socket("bare").is_none());
    }

    #[test]
    fn ephemeral_container_targets_the_container() {
        let cfg = AgentConfig::default();
        let e = serde_json::to_value(spec(&cfg).ephemeral()).unwrap();
        assert_eq!(e["targetContainerName"], "app");
        assert_eq!(e["args"][1], "1");
    }
}
