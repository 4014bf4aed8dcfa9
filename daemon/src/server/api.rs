//! Wire types of the daemon API: every method's params and result.
//!
//! These are the API boundary: internal types (config, kube objects, sessions) are converted to
//! these by hand, so compatibility lives here. Fields are only added, as `Option` or with a
//! default, never renamed. Params structs are read by name (`{"namespace": "shop"}`); a method
//! without params accepts no params, `null`, `{}` or `[]`.

use std::{collections::BTreeMap, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// No params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

// ---- daemon ----

/// Result of `daemon.info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DaemonInfo {
    /// tether version of the daemon.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// The daemon's WebSocket address, `ws://127.0.0.1:PORT` (empty when served in-process).
    pub address: String,
    /// Seconds since the Unix epoch when the daemon started.
    pub started_at: u64,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// The daemon's log file, when it writes one.
    pub log_file: Option<PathBuf>,
    /// Version of the layer and agent protocol this daemon speaks.
    pub protocol_version: u32,
}

/// Result of `daemon.capabilities`: what this daemon can do, for frontends to adapt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Capabilities {
    /// tether version of the daemon.
    pub version: String,
    /// Every method this daemon serves, subscriptions included.
    pub methods: Vec<String>,
    /// Subscription methods (notifications carry the same name).
    pub subscriptions: Vec<String>,
    /// Target kinds `targets.list` reports.
    pub target_kinds: Vec<TargetKind>,
    /// Config file formats `config.verify` reads.
    pub config_formats: Vec<ConfigFormat>,
    /// Whether `session.start` can start sessions with an explicit `agent`.
    pub sessions: bool,
    /// Whether `session.start` can start an agent next to the target by itself.
    pub agent_launcher: bool,
}

/// Result of `daemon.shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShutdownResult {
    /// Always true: the daemon stops right after answering.
    pub stopping: bool,
    /// Sessions that were running and get ended.
    pub sessions_ended: u32,
}

// ---- config ----

/// A config file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigFormat {
    /// JSON (comments allowed, as in mirrord).
    Json,
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

/// Params of `config.resolve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveParams {
    /// The project dir to look in (`.tether/`, `.mirrord/`). Unset: the daemon's cwd, which is
    /// rarely what a frontend wants.
    pub cwd: Option<PathBuf>,
    /// A file the user chose explicitly (a launch-config setting or `--config`); wins over the
    /// environment and the default locations. Relative paths are resolved against `cwd`.
    pub explicit: Option<PathBuf>,
    /// The frontend's value of `TETHER_CONFIG_FILE`, when it differs from the daemon's
    /// environment. Unset: the daemon's own `TETHER_CONFIG_FILE`.
    pub env_file: Option<PathBuf>,
}

/// Where the applying config file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    /// Named explicitly.
    Explicit,
    /// From `TETHER_CONFIG_FILE`.
    Env,
    /// `.tether/tether.{json,toml,yaml}`.
    TetherDir,
    /// `.mirrord/mirrord.json` (or .toml/.yaml).
    MirrordDir,
    /// No file: every key has its default.
    None,
}

/// Result of `config.resolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResolvedFile {
    /// The file that applies; unset when none does.
    pub path: Option<PathBuf>,
    /// Why this one.
    pub source: ConfigSource,
    /// Its format; unset when there is no file.
    pub format: Option<ConfigFormat>,
    /// Other config files that exist but are shadowed by `path`.
    pub shadowed: Vec<PathBuf>,
}

/// Which config to look at: a file on disk, or unsaved editor text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    /// A config file. Relative paths are resolved against `cwd`. With neither `path` nor `text`,
    /// the file `config.resolve` picks is used.
    pub path: Option<PathBuf>,
    /// Unsaved config text (an editor buffer). `path`, when also given, names the buffer in
    /// diagnostics and decides the format unless `format` is set.
    pub text: Option<String>,
    /// Format of `text`. Unset: from the extension of `path`, else JSON.
    pub format: Option<ConfigFormat>,
    /// Project dir for resolving relative paths and default locations.
    pub cwd: Option<PathBuf>,
    /// Apply the daemon's environment overrides (`TETHER_*`, `MIRRORD_*`). Default false: a
    /// frontend verifying a file wants the file's own meaning.
    #[serde(default)]
    pub apply_env: bool,
}

/// One problem in a config, with its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigDiagnostic {
    /// `error` or `warning`.
    pub severity: DiagnosticSeverity,
    /// One lowercase line, e.g. ``unknown key `feature.envv` ``.
    pub message: String,
    /// The next step, e.g. ``did you mean `feature.env`?``.
    pub help: Option<String>,
    /// The file, when the problem is in one.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column, in characters.
    pub column: Option<u32>,
    /// Dotted key path, e.g. `feature.network.incoming.mode`.
    pub key_path: Option<String>,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiagnosticSeverity {
    /// The config cannot be used.
    Error,
    /// The config works, but something in it is ignored or deprecated.
    Warning,
}

/// Result of `config.verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyResult {
    /// True when there are no errors (warnings allowed).
    pub ok: bool,
    /// The file verified; unset for text without a path or when no file applies.
    pub path: Option<PathBuf>,
    /// Errors, in file order.
    pub errors: Vec<ConfigDiagnostic>,
    /// Warnings, in file order.
    pub warnings: Vec<ConfigDiagnostic>,
    /// Target kinds a picker may offer for this config (empty when there are errors).
    pub compatible_target_types: Vec<TargetKind>,
    /// The configured target path (`pod/api/container/app`), when set.
    pub target: Option<String>,
    /// The configured target namespace, when set.
    pub namespace: Option<String>,
}

/// Result of `config.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResolvedConfig {
    /// The file read; unset for text without a path or when no file applies (all defaults).
    pub path: Option<PathBuf>,
    /// The fully resolved config: every key, defaults filled in.
    pub config: serde_json::Value,
    /// Warnings found while reading it.
    pub warnings: Vec<ConfigDiagnostic>,
}

// ---- kube ----

/// Which cluster: a kubeconfig and a context in it, as kubectl picks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeParams {
    /// kubeconfig file. Unset: `$KUBECONFIG` of the daemon (a list, merged), then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Context. Unset: the kubeconfig's current context.
    pub context: Option<String>,
}

/// One kubeconfig context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KubeContext {
    /// Context name.
    pub name: String,
    /// Cluster it points at.
    pub cluster: String,
    /// User it authenticates as.
    pub user: Option<String>,
    /// Its default namespace.
    pub namespace: Option<String>,
}

/// Result of `kube.contexts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KubeContexts {
    /// The kubeconfig's current context.
    pub current: Option<String>,
    /// Every context, in kubeconfig order.
    pub contexts: Vec<KubeContext>,
}

/// Result of `kube.namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KubeNamespaces {
    /// The context used.
    pub context: String,
    /// The context's default namespace (`default` when it names none).
    pub default: String,
    /// Namespace names, sorted. Only the default one when the user may not list namespaces.
    pub namespaces: Vec<String>,
    /// Why the list may be incomplete (e.g. RBAC forbids listing namespaces).
    pub warnings: Vec<String>,
}

/// Kinds of target the daemon lists.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// No target pod (never listed; offered by pickers).
    Targetless,
    /// A pod.
    Pod,
    /// A Deployment.
    Deployment,
    /// A StatefulSet.
    #[serde(rename = "statefulset")]
    StatefulSet,
    /// An Argo Rollout.
    Rollout,
}

impl TargetKind {
    /// The name used in target paths.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Targetless => "targetless",
            TargetKind::Pod => "pod",
            TargetKind::Deployment => "deployment",
            TargetKind::StatefulSet => "statefulset",
            TargetKind::Rollout => "rollout",
        }
    }
}

/// Params of `targets.list` and `targets.watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsParams {
    /// kubeconfig file. Unset: `$KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Context. Unset: the current context.
    pub context: Option<String>,
    /// Namespace. Unset: the context's namespace.
    pub namespace: Option<String>,
    /// Only these kinds (e.g. `config.verify`'s `compatible_target_types`). Unset: all.
    /// Rollouts are listed only where the Argo Rollouts CRD exists.
    pub kinds: Option<Vec<TargetKind>>,
}

/// A port a container declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetPort {
    /// Port number.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Port name, when declared.
    pub name: Option<String>,
}

/// A container of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetContainer {
    /// Container name.
    pub name: String,
    /// Readiness (pods only; unset for workload templates or before the first status).
    pub ready: Option<bool>,
    /// Image.
    pub image: Option<String>,
    /// Declared ports.
    pub ports: Vec<TargetPort>,
}

/// One entry of the pod picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetInfo {
    /// Kind.
    pub kind: TargetKind,
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Target path for the config, e.g. `pod/api-7d9f` or `deployment/api`.
    pub path: String,
    /// Containers (of the pod, or of the workload's pod template).
    pub containers: Vec<TargetContainer>,
    /// Pods: the Ready condition and not terminating. Workloads: at least one ready replica.
    pub ready: bool,
    /// `ready/total`: containers for pods, replicas for workloads.
    pub ready_text: String,
    /// Every declared port, over all containers.
    pub ports: Vec<TargetPort>,
    /// Pods: phase, or `Terminating`. Workloads: `Available`, `Progressing` or `Unavailable`.
    pub status: String,
}

/// Result of `targets.list`, and each notification of `targets.watch` (the full current list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TargetList {
    /// The context used.
    pub context: String,
    /// The namespace listed.
    pub namespace: String,
    /// Targets: pods, then deployments, statefulsets and rollouts, each sorted by name.
    pub targets: Vec<TargetInfo>,
    /// Kinds that could not be listed and why (e.g. RBAC forbids listing deployments).
    pub warnings: Vec<String>,
}

// ---- sessions ----

/// Params of `session.start`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStartParams {
    /// The config (file or unsaved text) of this run.
    #[serde(default)]
    pub config: ConfigInput,
    /// Target path chosen in the picker, overriding the config's `target`.
    pub target: Option<String>,
    /// Namespace chosen in the picker, overriding the config's.
    pub namespace: Option<String>,
    /// kubeconfig context, overriding the config's `kube_context`.
    pub context: Option<String>,
    /// The program the debugger will start: shown in the session list, and kept local by the
    /// default fs rules.
    pub program: Option<String>,
    /// A running agent to use, as `tether exec --agent` takes it. Unset: the daemon starts one
    /// next to the target (needs the agent launcher, see `daemon.capabilities`).
    pub agent: Option<AgentEndpoint>,
    /// The layer library. Unset: `$TETHER_LAYER_PATH`, else next to the daemon's executable.
    pub layer: Option<PathBuf>,
    /// How long the session outlives its last process, in ms, so a debug restart reuses it.
    /// Default 30000.
    pub linger_ms: Option<u64>,
    /// Further settings over the config (what the CLI's flags set), below `target`, `namespace`
    /// and `context` above.
    #[serde(default)]
    pub overrides: SessionOverrides,
}

/// Config keys a run sets over its config file and the daemon's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionOverrides {
    /// `kubeconfig`: the kubeconfig file the daemon reads for this run (never shown to the
    /// debuggee).
    pub kubeconfig: Option<PathBuf>,
    /// `agent.image`.
    pub agent_image: Option<String>,
    /// `agent.namespace`.
    pub agent_namespace: Option<String>,
    /// `feature.network.incoming.mode`.
    pub incoming: Option<IncomingModeParam>,
    /// `feature.fs.mode`.
    pub fs_mode: Option<FsModeParam>,
    /// Take none of the pod's environment variables (`feature.env = false`).
    #[serde(default)]
    pub no_env: bool,
}

/// `feature.network.incoming.mode` as an override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncomingModeParam {
    /// Copy traffic to the local process; the pod still answers.
    Mirror,
    /// Take traffic: the local process answers instead of the pod.
    Steal,
    /// Leave incoming traffic alone.
    Off,
}

/// `feature.fs.mode` as an override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsModeParam {
    /// Everything local.
    Local,
    /// Local, except paths in `read_write`/`read_only`.
    Localwithoverrides,
    /// Read from the pod; files opened for writing are local.
    Read,
    /// Read and write in the pod.
    Write,
}

/// Where a running agent listens and the token it wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentEndpoint {
    /// `HOST:PORT`.
    pub address: String,
    /// The agent's token (`TETHER_AGENT_TOKEN`).
    pub token: String,
}

/// Result of `session.start`: what the debugger must add to the debuggee's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStarted {
    /// Session id, for `session.events` and `session.stop`.
    pub id: String,
    /// Variables to add: `LD_PRELOAD`, the session address and token, the pod's variables.
    /// `LD_PRELOAD` holds only the layer: prepend it to any `LD_PRELOAD` the launch config has.
    pub env: BTreeMap<String, String>,
    /// Variables to remove from the debuggee's environment (`feature.env.unset`).
    pub unset: Vec<String>,
    /// Warnings worth showing (e.g. skipped env vars).
    pub warnings: Vec<String>,
}

/// Lifecycle state of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Agent and connection being set up.
    #[default]
    Starting,
    /// Ready for the debuggee.
    Ready,
    /// No layer connected; kept warm for a debug restart.
    Lingering,
    /// Over.
    Ended,
}

/// One session, as `session.list` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// Target path, or `targetless`.
    pub target: String,
    /// Namespace of the target.
    pub namespace: Option<String>,
    /// kubeconfig context.
    pub context: Option<String>,
    /// State.
    pub state: SessionState,
    /// Seconds since the Unix epoch when it started.
    pub started_at: u64,
    /// Layer connections now open (the process and its children).
    pub layers: u32,
    /// The program, when the frontend said.
    pub program: Option<String>,
    /// Pids of the processes connected through the layer now, sorted.
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Traffic counters since the start (as of the last `traffic` event).
    #[serde(default)]
    pub traffic: TrafficCounters,
}

/// Traffic counters of a session since its start. Bytes are payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TrafficCounters {
    /// Outgoing connections: bytes from the debuggee to the remote peer.
    pub outgoing_bytes_up: u64,
    /// Outgoing connections: bytes from the remote peer to the debuggee.
    pub outgoing_bytes_down: u64,
    /// Outgoing TCP connections and UDP sockets opened in the target.
    pub outgoing_connections: u64,
    /// Incoming: bytes from the pod's clients to the debuggee (stolen or mirrored).
    pub incoming_bytes_in: u64,
    /// Incoming: bytes the debuggee answered (stolen traffic only).
    pub incoming_bytes_out: u64,
    /// Incoming connections delivered to the debuggee.
    pub incoming_connections: u64,
    /// Incoming HTTP requests delivered by the HTTP filter.
    pub incoming_http_requests: u64,
    /// File requests forwarded to the target.
    pub file_requests: u64,
    /// DNS lookups forwarded to the target.
    pub dns_requests: u64,
    /// Relayed TCP connections open now.
    pub open_connections: u64,
}

/// Why a layer (a process) disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerDisconnectReason {
    /// It closed its last connection: it exited or was killed.
    Closed,
    /// It announced an exec but the new image never connected (not hooked, or it died first).
    ExecLost,
    /// Reading from it failed or it broke the protocol (see `message`).
    Error,
}

/// Result of `session.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionList {
    /// Sessions, oldest first.
    pub sessions: Vec<SessionInfo>,
}

/// Params of `session.stop` and `session.events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionIdParams {
    /// Session id from `session.start` or `session.list`.
    pub id: String,
}

/// Result of `session.stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStopped {
    /// The session id.
    pub id: String,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `session.stop` was called.
    Stopped,
    /// The debuggee and its children exited and the linger time passed.
    ProcessExited,
    /// The agent connection failed and could not be resumed.
    AgentLost,
    /// Start failed.
    StartFailed,
    /// The daemon shut down.
    DaemonShutdown,
}

/// A notification of `session.events`. Earlier events of the session are replayed first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// A start step began or finished.
    Progress {
        /// Step name, e.g. `agent`, `port-forward`, `env`.
        step: String,
        /// One line for a progress bar.
        message: String,
        /// True when the step is finished.
        done: bool,
    },
    /// Something worth showing.
    Warning {
        /// One line.
        message: String,
    },
    /// The session is ready for the debuggee.
    Ready,
    /// A process (the debuggee or a child) connected through the layer; again with the same pid
    /// after an exec (new `exe` and `argv`).
    LayerConnected {
        /// Its pid.
        pid: u32,
        /// Its executable.
        exe: Option<String>,
        /// Its parent's pid.
        #[serde(default)]
        ppid: Option<u32>,
        /// Its arguments.
        #[serde(default)]
        argv: Vec<String>,
    },
    /// A process's last layer connection closed.
    LayerDisconnected {
        /// Its pid.
        pid: u32,
        /// Why.
        #[serde(default)]
        reason: Option<LayerDisconnectReason>,
        /// Details for `error`.
        #[serde(default)]
        message: Option<String>,
    },
    /// Traffic counters since the start; sent at most every second, when they changed.
    Traffic {
        /// Bytes from the pod to the debuggee (outgoing down plus incoming in).
        bytes_in: u64,
        /// Bytes from the debuggee to the pod (outgoing up plus incoming out).
        bytes_out: u64,
        /// Relayed connections now open.
        connections: u32,
        /// Every counter.
        #[serde(default)]
        counters: TrafficCounters,
    },
    /// The session is over; the subscription ends after this.
    Ended {
        /// Why.
        reason: EndReason,
        /// Details, e.g. the error that ended it.
        message: Option<String>,
    },
}
