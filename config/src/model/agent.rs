//! `agent`: how tether starts its agent next to the target.

use std::{borrow::Cow, collections::BTreeMap, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

/// The agent tether starts next to the target (a Job pod on the target's node, or an ephemeral
/// container in the target pod). Defaults work for most clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Namespace the agent Job runs in. Unset: the target's namespace.
    /// Env: `TETHER_AGENT_NAMESPACE` (or `MIRRORD_AGENT_NAMESPACE`).
    pub namespace: Option<String>,

    /// Agent image, as `repo/name:tag` or `{ "registry": ..., "tag": ... }`. Unset: the image
    /// matching this tether version. Env: `TETHER_AGENT_IMAGE` (or `MIRRORD_AGENT_IMAGE`).
    #[schemars(with = "Option<AgentImageFile>")]
    pub image: Option<String>,

    /// When the agent image is pulled: `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: ImagePullPolicy,

    /// Secrets for pulling the agent image: `[{ "name": "regcred" }]`.
    pub image_pull_secrets: Vec<ImagePullSecret>,

    /// Seconds the finished agent pod is kept (the Job's `ttlSecondsAfterFinished`), e.g. to
    /// read its logs. Env: `TETHER_AGENT_TTL` (or `MIRRORD_AGENT_TTL`).
    pub ttl: u16,

    /// Seconds the agent stays up with no session connected, so that a debug restart finds it
    /// warm. Env: `TETHER_AGENT_COMMUNICATION_TIMEOUT` (or `MIRRORD_AGENT_COMMUNICATION_TIMEOUT`).
    pub communication_timeout: u16,

    /// Seconds to wait for the agent to start before giving up with the reason it did not.
    /// Env: `TETHER_AGENT_STARTUP_TIMEOUT` (or `MIRRORD_AGENT_STARTUP_TIMEOUT`).
    pub startup_timeout: u64,

    /// Run the agent as an ephemeral container inside the target pod instead of a Job; needs a
    /// target pod. Env: `TETHER_AGENT_EPHEMERAL` (or `MIRRORD_EPHEMERAL_CONTAINER`).
    pub ephemeral: bool,

    /// Run the agent container privileged (some runtimes need it to enter the target's
    /// namespaces). Env: `TETHER_AGENT_PRIVILEGED` (or `MIRRORD_AGENT_PRIVILEGED`).
    pub privileged: bool,

    /// Agent log filter, in `RUST_LOG` syntax, e.g. `"debug"` or `"tether_agent=trace,info"`.
    /// Env: `TETHER_AGENT_LOG_LEVEL` (or `MIRRORD_AGENT_RUST_LOG`).
    pub log_level: String,

    /// Resource requests and limits of the agent container, as in a pod spec:
    /// `{ "requests": { "cpu": "10m", "memory": "32Mi" }, "limits": { ... } }`.
    /// Unset: small requests and limits chosen by tether.
    pub resources: Option<AgentResources>,

    /// Tolerations of the agent pod, as in a pod spec. Default: tolerate every taint
    /// (`[{ "operator": "Exists" }]`), so the agent can run on the target's node.
    pub tolerations: Vec<Toleration>,

    /// Extra labels on the agent Job and pod.
    pub labels: BTreeMap<String, String>,

    /// Extra annotations on the agent Job and pod (e.g. to keep a service mesh out).
    pub annotations: BTreeMap<String, String>,

    /// Node selector of the agent pod (targetless only; with a target it runs on the target's node).
    pub node_selector: BTreeMap<String, String>,

    /// Service account of the agent pod. Unset: the namespace's default.
    pub service_account: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            image: None,
            image_pull_policy: ImagePullPolicy::IfNotPresent,
            image_pull_secrets: Vec::new(),
            ttl: 1,
            communication_timeout: 30,
            startup_timeout: 60,
            ephemeral: false,
            privileged: false,
            log_level: "info".into(),
            resources: None,
            tolerations: vec![Toleration {
                operator: Some("Exists".into()),
                ..Toleration::default()
            }],
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            node_selector: BTreeMap::new(),
            service_account: None,
        }
    }
}

/// Schema shape of `agent.image`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum AgentImageFile {
    Full(String),
    Parts {
        /// Image repository, e.g. `registry.example.com/tether-agent`.
        registry: String,
        /// Image tag.
        tag: String,
    },
}

/// Kubernetes image pull policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull when the node does not have the image.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The names Kubernetes accepts.
    pub const NAMES: [&'static str; 3] = ["Always", "IfNotPresent", "Never"];
}

impl FromStr for ImagePullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "Always" => Self::Always,
            "IfNotPresent" => Self::IfNotPresent,
            "Never" => Self::Never,
            _ => return Err(format!("unknown image pull policy `{s}`")),
        })
    }
}

impl fmt::Display for ImagePullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        })
    }
}

/// A reference to a secret holding registry credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePullSecret {
    /// Secret name, in the agent's namespace.
    pub name: String,
}

/// Requests and limits: resource name (`cpu`, `memory`, ...) to quantity (`"10m"`, `"64Mi"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AgentResources {
    /// Requested resources.
    #[schemars(with = "BTreeMap<String, Quantity>")]
    pub requests: BTreeMap<String, String>,
    /// Resource limits.
    #[schemars(with = "BTreeMap<String, Quantity>")]
    pub limits: BTreeMap<String, String>,
}

/// A Kubernetes quantity (`"100m"`, `"64Mi"`, `1`).
pub(crate) struct Quantity;

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A Kubernetes quantity such as `\"100m\"`, `\"64Mi\"` or `1`.",
            "anyOf": [{ "type": "string", "pattern": QUANTITY_PATTERN }, { "type": "number", "minimum": 0 }]
        })
    }
}

pub(crate) const QUANTITY_PATTERN: &str =
    r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][0-9]+)?$";

/// A pod toleration, with the Kubernetes field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    /// Taint key; unset with `Exists` matches every taint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Exists` or `Equal` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Taint value, for `Equal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; unset matches all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// For `NoExecute`: how long the pod stays bound after the taint appears.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}
