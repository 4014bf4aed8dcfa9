//! The daemon's JSON-RPC 2.0 API over WebSocket (and plain HTTP POST) on 127.0.0.1.
//!
//! - [`rpc_module`] builds every method on a [`DaemonState`]; tests drive it in-process.
//! - [`serve`] puts it behind the HTTP middleware ([`auth`]: Origin refused, bearer token
//!   required; jsonrpsee's host filter: only `127.0.0.1`/`localhost` hosts) on a random port.
//! - [`run_daemon`] is the whole daemon lifecycle: lock, serve, discovery file, shutdown.
//! - [`METHODS`] is the one list of methods: registration, `daemon.capabilities` and the OpenRPC
//!   document ([`openrpc`]) all come from it, and a test checks they agree.
//!
//! Params are by name (an object); a one-element array holding that object is accepted too.
//! Errors follow [`error`]: `code`, one-line `message`, `data: { kind, target, hint }`.
//!
#![doc = include_str!("API.md")]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod openrpc;
pub mod session_start;
pub mod sessions;

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use jsonrpsee::{
    PendingSubscriptionSink, RpcModule, SubscriptionMessage,
    server::{
        PingConfig, ServerBuilder, ServerConfig, ServerHandle, middleware::http::HostFilterLayer,
    },
    types::{ErrorObjectOwned, Params},
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{broadcast, watch};

use self::{
    api::*,
    error::{ErrorKind, RpcError},
    sessions::SessionRegistry,
};
use crate::{
    discovery::{self, DiscoveryInfo, Paths},
    kube::{
        KubeManager, KubeconfigSource,
        targets::{IDLE_TTL, TargetCache},
    },
};

/// Everything the handlers share.
#[derive(Debug)]
pub struct DaemonState {
    /// tether version.
    pub version: String,
    /// Token every connection must present.
    pub token: String,
    /// The daemon's log file, when it writes one.
    pub log_file: Option<PathBuf>,
    /// Kubernetes clients.
    pub kube: KubeManager,
    /// Targets watch cache.
    pub targets: TargetCache,
    /// Sessions.
    pub sessions: SessionRegistry,
    /// Agents started in the cluster, shared by sessions on the same target.
    pub agents: crate::kube::agent::AgentPool,
    address: OnceLock<String>,
    started: Instant,
    started_at: u64,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Session tasks still running (they say goodbye to their agent on the way out).
    pub(crate) session_tasks: watch::Sender<usize>,
}

/// How to build a [`DaemonState`].
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The token; unset: a fresh random one.
    pub token: Option<String>,
    /// Where kubeconfig comes from when a request names no file.
    pub kubeconfig: KubeconfigSource,
    /// The log file to report in `daemon.info`.
    pub log_file: Option<PathBuf>,
}

impl DaemonState {
    /// A fresh state. Must run inside a tokio runtime (it starts the cache sweeper).
    pub fn new(options: DaemonOptions) -> Arc<Self> {
        let state = Arc::new(Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            token: options.token.unwrap_or_else(discovery::new_token),
            log_file: options.log_file,
            kube: KubeManager::new(options.kubeconfig),
            targets: TargetCache::new(),
            sessions: SessionRegistry::new(),
            agents: Default::default(),
            address: OnceLock::new(),
            started: Instant::now(),
            started_at: sessions::unix_now(),
            shutdown: watch::channel(false).0,
            session_tasks: watch::channel(0).0,
        });
        let weak = Arc::downgrade(&state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(state) = weak.upgrade() else { break };
                let evicted = state.targets.evict_idle(IDLE_TTL);
                if evicted > 0 {
                    tracing::info!(evicted, "stopped idle target watches");
                }
            }
        });
        state
    }

    /// Asks the daemon to stop (as `daemon.shutdown` does).
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves when shutdown was requested.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    fn info(&self) -> DaemonInfo {
        DaemonInfo {
            version: self.version.clone(),
            pid: std::process::id(),
            address: self.address.get().cloned().unwrap_or_default(),
            started_at: self.started_at,
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            log_file: self.log_file.clone(),
            protocol_version: tether_protocol::PROTOCOL_VERSION,
        }
    }
}

/// A subscription's extra names.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionSpec {
    /// Method name of the notifications.
    pub notification: &'static str,
    /// Method that ends the subscription (param: the subscription id).
    pub unsubscribe: &'static str,
    /// Schema of each notification's `result`.
    pub item: fn(&mut SchemaGenerator) -> Schema,
}

/// One API method, as documented.
#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    /// Method name.
    pub name: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Params struct schema; `None` for methods without params.
    pub params: Option<fn(&mut SchemaGenerator) -> Schema>,
    /// Result schema (for subscriptions: the subscription id).
    pub result: fn(&mut SchemaGenerator) -> Schema,
    /// Set for subscriptions.
    pub subscription: Option<SubscriptionSpec>,
    /// Error kinds the method returns besides invalid params and internal.
    pub errors: &'static [ErrorKind],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

const KUBE_ERRORS: &[ErrorKind] = &[
    ErrorKind::Kubeconfig,
    ErrorKind::KubeApi,
    ErrorKind::KubeForbidden,
    ErrorKind::KubeNotFound,
    ErrorKind::KubeTimeout,
];
const CONFIG_ERRORS: &[ErrorKind] = &[ErrorKind::ConfigNotFound, ErrorKind::ConfigIo];

/// Every method of the API. Registration, capabilities and the OpenRPC document come from here.
pub const METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: "daemon.info",
        summary: "Version, pid, address, uptime and log file of the daemon",
        params: None,
        result: schema::<DaemonInfo>,
        subscription: None,
        errors: &[],
    },
    MethodSpec {
        name: "daemon.capabilities",
        summary: "What this daemon can do: methods, target kinds, config formats, sessions",
        params: None,
        result: schema::<Capabilities>,
        subscription: None,
        errors: &[],
    },
    MethodSpec {
        name: "daemon.shutdown",
        summary: "End every session and stop the daemon right after answering",
        params: None,
        result: schema::<ShutdownResult>,
        subscription: None,
        errors: &[],
    },
    MethodSpec {
        name: "config.resolve",
        summary: "Which config file applies: explicit, then TETHER_CONFIG_FILE, then .tether/, then .mirrord/, then none",
        params: Some(schema::<ResolveParams>),
        result: schema::<ResolvedFile>,
        subscription: None,
        errors: &[ErrorKind::ConfigNotFound],
    },
    MethodSpec {
        name: "config.verify",
        summary: "Errors and warnings with positions, and the target kinds a picker may offer, for a file or unsaved text",
        params: Some(schema::<ConfigInput>),
        result: schema::<VerifyResult>,
        subscription: None,
        errors: CONFIG_ERRORS,
    },
    MethodSpec {
        name: "config.resolved",
        summary: "The fully resolved config as JSON (defaults filled in)",
        params: Some(schema::<ConfigInput>),
        result: schema::<ResolvedConfig>,
        subscription: None,
        errors: &[
            ErrorKind::ConfigNotFound,
            ErrorKind::ConfigIo,
            ErrorKind::ConfigInvalid,
        ],
    },
    MethodSpec {
        name: "kube.contexts",
        summary: "kubeconfig contexts and the current one, as kubectl reads them",
        params: Some(schema::<KubeParams>),
        result: schema::<KubeContexts>,
        subscription: None,
        errors: &[ErrorKind::Kubeconfig],
    },
    MethodSpec {
        name: "kube.namespaces",
        summary: "Namespaces of a context (only its own when RBAC forbids listing)",
        params: Some(schema::<KubeParams>),
        result: schema::<KubeNamespaces>,
        subscription: None,
        errors: KUBE_ERRORS,
    },
    MethodSpec {
        name: "targets.list",
        summary: "Pods, deployments, statefulsets and rollouts of a namespace, from the watch cache",
        params: Some(schema::<TargetsParams>),
        result: schema::<TargetList>,
        subscription: None,
        errors: KUBE_ERRORS,
    },
    MethodSpec {
        name: "targets.watch",
        summary: "Subscribe to a namespace's targets: the full list now and after every change",
        params: Some(schema::<TargetsParams>),
        result: schema::<String>,
        subscription: Some(SubscriptionSpec {
            notification: "targets.changed",
            unsubscribe: "targets.unwatch",
            item: schema::<TargetList>,
        }),
        errors: KUBE_ERRORS,
    },
    MethodSpec {
        name: "session.start",
        summary: "Start (or reuse) an agent for the target and return the env the debugger must add",
        params: Some(schema::<SessionStartParams>),
        result: schema::<SessionStarted>,
        subscription: None,
        errors: &[
            ErrorKind::ConfigNotFound,
            ErrorKind::ConfigInvalid,
            ErrorKind::Kubeconfig,
            ErrorKind::KubeApi,
            ErrorKind::KubeForbidden,
            ErrorKind::AgentUnavailable,
            ErrorKind::Unavailable,
            ErrorKind::ShuttingDown,
        ],
    },
    MethodSpec {
        name: "session.list",
        summary: "Sessions of this daemon, oldest first",
        params: None,
        result: schema::<SessionList>,
        subscription: None,
        errors: &[],
    },
    MethodSpec {
        name: "session.stop",
        summary: "End a session (its agent connection closes; layers still connected fail loudly)",
        params: Some(schema::<SessionIdParams>),
        result: schema::<SessionStopped>,
        subscription: None,
        errors: &[ErrorKind::SessionNotFound],
    },
    MethodSpec {
        name: "session.events",
        summary: "Subscribe to a session: its events so far, then progress, warnings, ready, layers, traffic, ended",
        params: Some(schema::<SessionIdParams>),
        result: schema::<String>,
        subscription: Some(SubscriptionSpec {
            notification: "session.event",
            unsubscribe: "session.unwatch_events",
            item: schema::<SessionEvent>,
        }),
        errors: &[ErrorKind::SessionNotFound],
    },
];

fn spec(name: &str) -> &'static MethodSpec {
    METHODS
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not in METHODS"))
}

/// Parses by-name params. Absent, `null`, `[]` mean `{}`; `[obj]` means `obj`.
pub fn parse_params<P: DeserializeOwned>(method: &str, params: &Params<'_>) -> Result<P, RpcError> {
    let raw = params.as_str().map(str::trim).unwrap_or("");
    let value: serde_json::Value = match raw {
        "" | "null" => serde_json::Value::Object(Default::default()),
        _ => serde_json::from_str(raw).map_err(|e| RpcError::invalid_params(method, e))?,
    };
    let value = match value {
        serde_json::Value::Array(items) if items.is_empty() => {
            serde_json::Value::Object(Default::default())
        }
        serde_json::Value::Array(mut items) if items.len() == 1 && items[0].is_object() => {
            items.remove(0)
        }
        serde_json::Value::Array(_) => {
            return Err(RpcError::invalid_params(
                method,
                "params are by name: send an object",
            ));
        }
        other => other,
    };
    serde_json::from_value(value).map_err(|e| RpcError::invalid_params(method, e))
}

fn register<P, R, F, Fut>(module: &mut RpcModule<DaemonState>, name: &'static str, handler: F)
where
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Clone + Send + 'static,
    F: Fn(P, Arc<DaemonState>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
{
    let spec = spec(name);
    assert!(spec.subscription.is_none(), "{name} is a subscription");
    module
        .register_async_method(name, move |params, state, _| {
            let handler = handler.clone();
            async move {
                let p: P = parse_params(name, &params).map_err(ErrorObjectOwned::from)?;
                let result = handler(p, state).await;
                if let Err(e) = &result {
                    tracing::debug!(method = name, error = %e.message, "request failed");
                }
                result.map_err(ErrorObjectOwned::from)
            }
        })
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
}

/// Builds the whole API on `state`. No port is bound: serve it with [`serve`] or call it directly.
pub fn rpc_module(state: Arc<DaemonState>) -> RpcModule<DaemonState> {
    let mut m = RpcModule::from_arc(state);

    register(&mut m, "daemon.info", |_: NoParams, s| async move {
        Ok(s.info())
    });
    register(&mut m, "daemon.capabilities", |_: NoParams, s| async move {
        Ok(capabilities(&s))
    });
    register(&mut m, "daemon.shutdown", |_: NoParams, s| async move {
        let ended = s.sessions.end_all(EndReason::DaemonShutdown);
        tracing::info!(sessions_ended = ended, "shutdown requested over RPC");
        // Answer first: the server stops after this response is written.
        let s2 = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s2.request_shutdown();
        });
        Ok(ShutdownResult {
            stopping: true,
            sessions_ended: u32::try_from(ended).unwrap_or(u32::MAX),
        })
    });

    register(&mut m, "config.resolve", |p: ResolveParams, _| async move {
        config::resolve(&p)
    });
    register(&mut m, "config.verify", |p: ConfigInput, _| async move {
        blocking(move || config::verify(&p)).await
    });
    register(&mut m, "config.resolved", |p: ConfigInput, _| async move {
        blocking(move || config::resolved(&p)).await
    });

    register(&mut m, "kube.contexts", |p: KubeParams, s| async move {
        s.kube.contexts(p.kubeconfig.as_deref())
    });
    register(&mut m, "kube.namespaces", |p: KubeParams, s| async move {
        s.kube
            .namespaces(p.kubeconfig.as_deref(), p.context.as_deref())
            .await
    });
    register(&mut m, "targets.list", |p: TargetsParams, s| async move {
        s.targets.list(&s.kube, &p).await
    });
    subscribe(
        &mut m,
        "targets.watch",
        |p: TargetsParams, pending, s| async move { watch_targets(p, pending, s).await },
    );

    register(
        &mut m,
        "session.start",
        |p: SessionStartParams, s| async move { session_start::start(p, s).await },
    );
    register(&mut m, "session.list", |_: NoParams, s| async move {
        Ok(SessionList {
            sessions: s.sessions.list(),
        })
    });
    register(&mut m, "session.stop", |p: SessionIdParams, s| async move {
        s.sessions
            .end(&p.id, EndReason::Stopped, None)
            .map(|_| SessionStopped { id: p.id.clone() })
            .ok_or_else(|| session_not_found(&p.id))
    });
    subscribe(
        &mut m,
        "session.events",
        |p: SessionIdParams, pending, s| async move { session_events(p, pending, s).await },
    );

    m
}

pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, RpcError> + Send + 'static,
) -> Result<R, RpcError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(RpcError::internal)?
}

fn capabilities(_s: &DaemonState) -> Capabilities {
    let mut methods = Vec::new();
    let mut subscriptions = Vec::new();
    for m in METHODS {
        methods.push(m.name.to_owned());
        if let Some(sub) = m.subscription {
            subscriptions.push(m.name.to_owned());
            methods.push(sub.unsubscribe.to_owned());
        }
    }
    Capabilities {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        methods,
        subscriptions,
        target_kinds: vec![
            TargetKind::Pod,
            TargetKind::Deployment,
            TargetKind::StatefulSet,
            TargetKind::Rollout,
        ],
        config_formats: vec![ConfigFormat::Json, ConfigFormat::Toml, ConfigFormat::Yaml],
        sessions: SESSIONS_AVAILABLE,
        agent_launcher: AGENT_LAUNCHER_AVAILABLE,
    }
}

fn subscribe<P, F, Fut>(module: &mut RpcModule<DaemonState>, name: &'static str, handler: F)
where
    P: DeserializeOwned + Send + 'static,
    F: Fn(P, PendingSubscriptionSink, Arc<DaemonState>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let sub = spec(name)
        .subscription
        .unwrap_or_else(|| panic!("{name} is not a subscription"));
    module
        .register_subscription(
            name,
            sub.notification,
            sub.unsubscribe,
            move |params, pending, state, _| {
                let handler = handler.clone();
                async move {
                    match parse_params::<P>(name, &params) {
                        Ok(p) => handler(p, pending, state).await,
                        Err(e) => pending.reject(ErrorObjectOwned::from(e)).await,
                    }
                }
            },
        )
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
}

fn message(
    sink: &jsonrpsee::SubscriptionSink,
    value: &impl Serialize,
) -> Option<SubscriptionMessage> {
    match serde_json::value::to_raw_value(value) {
        Ok(raw) => Some(raw.into()),
        Err(e) => {
            tracing::error!(method = sink.method_name(), error = %e, "cannot serialize a notification");
            None
        }
    }
}

/// Debounce for `targets.watch`: a rollout changes many objects at once.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);

async fn watch_targets(p: TargetsParams, pending: PendingSubscriptionSink, s: Arc<DaemonState>) {
    let ns = match s.targets.namespace(&s.kube, &p).await {
        Ok(ns) => ns,
        Err(e) => return pending.reject(ErrorObjectOwned::from(e)).await,
    };
    let first = match ns.snapshot(p.kinds.as_deref()) {
        Ok(list) => list,
        Err(e) => return pending.reject(ErrorObjectOwned::from(e)).await,
    };
    let mut changes = ns.subscribe();
    changes.mark_unchanged();
    let Ok(sink) = pending.accept().await else {
        return;
    };
    let mut last = first;
    if let Some(msg) = message(&sink, &last)
        && sink.send(msg).await.is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            _ = sink.closed() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        tokio::time::sleep(WATCH_DEBOUNCE).await;
        changes.mark_unchanged();
        // A kind failing after the first list only shows as a warning; pods failing keeps the last list.
        let Ok(list) = ns.snapshot(p.kinds.as_deref()) else {
            continue;
        };
        if list == last {
            continue;
        }
        last = list;
        let Some(msg) = message(&sink, &last) else {
            return;
        };
        if sink.send(msg).await.is_err() {
            return;
        }
    }
}

async fn session_events(p: SessionIdParams, pending: PendingSubscriptionSink, s: Arc<DaemonState>) {
    let Some(entry) = s.sessions.get(&p.id) else {
        return pending
            .reject(ErrorObjectOwned::from(session_not_found(&p.id)))
            .await;
    };
    let (history, mut rx) = entry.subscribe();
    drop(entry);
    let Ok(sink) = pending.accept().await else {
        return;
    };
    for event in history {
        let ended = matches!(event, SessionEvent::Ended { .. });
        let Some(msg) = message(&sink, &event) else {
            return;
        };
        if sink.send(msg).await.is_err() {
            return;
        }
        if ended {
            return;
        }
    }
    loop {
        let event = tokio::select! {
            _ = sink.closed() => return,
            event = rx.recv() => event,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => SessionEvent::Warning {
                message: format!("{n} session events were dropped: the client reads too slowly"),
            },
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let ended = matches!(event, SessionEvent::Ended { .. });
        let Some(msg) = message(&sink, &event) else {
            return;
        };
        if sink.send(msg).await.is_err() {
            return;
        }
        if ended {
            return;
        }
    }
}

fn session_not_found(id: &str) -> RpcError {
    RpcError::new(ErrorKind::SessionNotFound, format!("no session `{id}`"))
        .target(id)
        .hint("session.list shows the sessions of this daemon; ended sessions are removed")
}

/// Whether `session.start` works with an explicit agent (the session router is wired).
pub const SESSIONS_AVAILABLE: bool = true;
/// Whether `session.start` can start an agent in the cluster (the agent launcher is wired).
pub const AGENT_LAUNCHER_AVAILABLE: bool = true;

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Stops it.
    pub handle: ServerHandle,
}

/// Serves the API on `127.0.0.1:port` (0: a random port) behind the Origin, token and host checks.
pub async fn serve(state: Arc<DaemonState>, port: u16) -> std::io::Result<RunningServer> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let hosts = [
        format!("127.0.0.1:{}", addr.port()),
        format!("localhost:{}", addr.port()),
    ];
    let host_filter = HostFilterLayer::new(hosts)
        .map_err(|e| std::io::Error::other(format!("host filter: {e}")))?;
    let http = tower::ServiceBuilder::new()
        .layer(auth::AuthLayer::new(&state.token))
        .layer(host_filter);
    let config = ServerConfig::builder()
        .max_connections(256)
        .max_subscriptions_per_connection(1024)
        .max_request_body_size(16 * 1024 * 1024)
        // A frontend that vanished without closing (IDE killed) releases its subscriptions.
        .enable_ws_ping(
            PingConfig::new()
                .ping_interval(Duration::from_secs(20))
                .inactive_limit(Duration::from_secs(60))
                .max_failures(2),
        )
        .build();
    let server = ServerBuilder::with_config(config)
        .set_http_middleware(http)
        .build_from_tcp(listener)?;
    let url = format!("ws://{addr}");
    let _ = state.address.set(url.clone());
    let handle = server.start(rpc_module(state));
    Ok(RunningServer { addr, url, handle })
}

/// Outcome of [`run_daemon`].
#[derive(Debug)]
pub enum RunOutcome {
    /// This process was the daemon and has stopped.
    Stopped,
    /// Another daemon is already running.
    AlreadyRunning(DiscoveryInfo),
}

/// Runs the daemon until `daemon.shutdown` or `stop` resolves: takes the lock, serves, writes the
/// discovery file, and removes it on the way out.
pub async fn run_daemon(
    paths: &Paths,
    options: DaemonOptions,
    stop: impl Future<Output = ()>,
    on_ready: impl FnOnce(&DiscoveryInfo),
) -> anyhow::Result<RunOutcome> {
    use anyhow::Context as _;
    paths
        .create_dirs()
        .with_context(|| format!("cannot create {}", paths.runtime_dir.display()))?;
    let Some(lock) = discovery::try_lock(paths)? else {
        // Another daemon holds the lock: it is running or just starting.
        let (info, _) = discovery::wait_live(paths, discovery::START_TIMEOUT)
            .await
            .context("another tether daemon holds the lock but does not answer")?;
        return Ok(RunOutcome::AlreadyRunning(info));
    };
    match discovery::find(paths).await? {
        discovery::Found::Live(info, _) => {
            // A daemon from a build without the lock; leave it be.
            return Ok(RunOutcome::AlreadyRunning(info));
        }
        discovery::Found::Stale(old, why) => {
            tracing::info!(old_pid = old.pid, %why, "replacing stale discovery file")
        }
        discovery::Found::Missing => {}
    }
    let state = DaemonState::new(options);
    let server = serve(state.clone(), 0)
        .await
        .context("cannot listen on 127.0.0.1")?;
    let info = DiscoveryInfo {
        pid: std::process::id(),
        version: state.version.clone(),
        address: server.url.clone(),
        token: state.token.clone(),
    };
    discovery::write_atomic(&paths.discovery_file(), &info)?;
    tracing::info!(address = %info.address, pid = info.pid, "daemon ready");
    on_ready(&info);
    tokio::select! {
        _ = state.shutdown_requested() => tracing::info!("stopping: daemon.shutdown"),
        _ = stop => tracing::info!("stopping: signal"),
    }
    state.sessions.end_all(EndReason::DaemonShutdown);
    // Let ended sessions say goodbye to their agents, so agents do not wait for a dead link.
    let mut tasks = state.session_tasks.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(3), tasks.wait_for(|n| *n == 0)).await;
    // Remove the file first so that no client connects to a daemon on its way out.
    discovery::remove_if_ours(&paths.discovery_file(), info.pid);
    let _ = server.handle.stop();
    let _ = tokio::time::timeout(Duration::from_secs(5), server.handle.stopped()).await;
    drop(lock);
    tracing::info!("daemon stopped");
    Ok(RunOutcome::Stopped)
}
