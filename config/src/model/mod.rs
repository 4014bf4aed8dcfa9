//! The typed config. Every key has a default; doc comments become the schema's descriptions
//! (and LSP hover text).

pub(crate) mod agent;
pub(crate) mod env;
pub(crate) mod fs;
pub(crate) mod network;
pub(crate) mod target;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use self::{
    agent::AgentConfig,
    env::EnvConfig,
    fs::{FsConfig, FsMode},
    network::{IncomingMode, NetworkConfig},
    target::{Target, TargetConfig, TargetString, TargetType},
};

/// tether's configuration: which pod a local process runs as if inside, and which of its
/// environment, files and traffic it gets. Read from `.tether/tether.{json,toml,yaml}` or an
/// existing `.mirrord/mirrord.json` (same keys and meanings as mirrord).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "tether config")]
pub struct TetherConfig {
    /// The pod (or deployment, statefulset, rollout, or `targetless`) to run as if inside:
    /// `"pod/api"`, `"deployment/api/container/app"`, or `{ "path": ..., "namespace": ... }`.
    #[schemars(with = "TargetFile")]
    pub target: TargetConfig,

    /// kubeconfig context to use. Unset: the current context.
    /// Env: `TETHER_KUBE_CONTEXT` (or `MIRRORD_KUBE_CONTEXT`).
    pub kube_context: Option<String>,

    /// kubeconfig file. Unset: `$KUBECONFIG`, then `~/.kube/config`, as kubectl does.
    /// Env: `TETHER_KUBECONFIG` (or `MIRRORD_KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,

    /// What the local process gets from the pod: environment, files, network, hostname.
    pub feature: FeatureConfig,

    /// The agent tether starts next to the target.
    pub agent: AgentConfig,

    /// Process names (`;`-separated string or array) that run without tether, e.g. build tools
    /// a launch script starts before the app. Env: `TETHER_SKIP_PROCESSES` (or
    /// `MIRRORD_SKIP_PROCESSES`).
    #[schemars(with = "StringOrList")]
    pub skip_processes: Vec<String>,
}

/// What the local process gets from the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// The pod's environment variables: `true` (all but machine-specific ones), `false`, or an
    /// object with `include`/`exclude`/`override`/`unset`/`env_file`.
    #[schemars(with = "BoolOr<EnvConfig>")]
    pub env: EnvConfig,

    /// File operations: a mode (`"local"`, `"localwithoverrides"`, `"read"`, `"write"`) or an
    /// object with `mode` and path regex lists. Default `"read"`.
    #[schemars(with = "FsFile")]
    pub fs: FsConfig,

    /// Incoming traffic, outgoing connections and DNS. `false` turns all three off.
    #[schemars(with = "BoolOr<NetworkConfig>")]
    pub network: NetworkConfig,

    /// `gethostname` returns the pod's hostname. Env: `TETHER_HOSTNAME`.
    pub hostname: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            env: EnvConfig::default(),
            fs: FsConfig::default(),
            network: NetworkConfig::default(),
            hostname: true,
        }
    }
}

impl TetherConfig {
    /// Target types a picker may offer for this config: only the configured one when `target`
    /// is set, otherwise every type the other settings allow (stealing needs a pod, so
    /// `targetless` is left out in steal mode; so it is with `agent.ephemeral`).
    pub fn compatible_target_types(&self) -> Vec<TargetType> {
        if let Some(t) = &self.target.path {
            return vec![t.target_type()];
        }
        let needs_pod =
            self.feature.network.incoming.mode == IncomingMode::Steal || self.agent.ephemeral;
        TargetType::ALL
            .into_iter()
            .filter(|t| !(needs_pod && *t == TargetType::Targetless))
            .collect()
    }

    /// The configured target, if any.
    pub fn target(&self) -> Option<&Target> {
        self.target.path.as_ref()
    }

    /// The fs mode, for a quick look without building a policy.
    pub fn fs_mode(&self) -> FsMode {
        self.feature.fs.mode
    }
}

// Schema-only shapes for keys that take several forms.

/// A string or an object.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum TargetFile {
    /// `"pod/NAME[/container/C]"`, `"deployment/NAME"`, ..., or `"targetless"`.
    Path(TargetString),
    /// `{ "path": ..., "namespace": ... }`.
    Full(TargetConfig),
}

/// `true`/`false`, or the object.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum BoolOr<T> {
    Bool(bool),
    Full(T),
}

/// A mode string or the object.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum FsFile {
    Mode(FsMode),
    Full(FsConfig),
}

/// One string (for name lists: `;`-separated) or an array of strings.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// One port or an array of ports.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only describes the schema
enum PortOrList {
    One(u16),
    Many(Vec<u16>),
}
