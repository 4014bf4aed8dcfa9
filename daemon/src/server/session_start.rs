//! `session.start`: from a config and a picked target to the env the debugger must add.
//!
//! Steps, each reported as a `progress` event of the session: verify the config (with the
//! picker's target, namespace and context on top), connect the agent, fetch the pod's env, start
//! the session router ([`crate::session::Session`]). Then a task owns the session until it is
//! stopped, its agent link drops, or no layer has been connected for the linger time.
//!
//! The agent comes from `agent` (address and token of a running `tether-agent`, as
//! `tether exec --agent` takes them) or, without it, from the agent launcher
//! ([`crate::kube::agent`]): a Job next to the target (or the running one another session on that
//! target started), reached through an API-server port-forward. The session gives its agent back
//! when it ends; the last session of an agent removes the agent's Job.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    agent_link::{AgentClient, LinkOptions},
    kube::agent::{AgentKey, AgentLease, LaunchRequest},
    session::{
        ListenKind, LocalContext, RouterEvent, Session, SessionOptions, SessionParams,
        env::env_changes,
        launch::{debuggee_env, direct_redial, fetch_pod_env, find_layer},
        policy::kubeconfig_files,
    },
};

use super::{
    DaemonState,
    api::{
        EndReason, FsModeParam, IncomingModeParam, SessionEvent, SessionInfo, SessionStartParams,
        SessionStarted, SessionState, TrafficCounters,
    },
    blocking, config,
    error::{ErrorKind, RpcError},
    sessions::{SessionEntry, new_session_id, unix_now},
};

/// How long a new session waits for its first layer (the IDE may build before it launches).
pub const FIRST_LAYER_WAIT: Duration = Duration::from_secs(600);
/// How long a session outlives its last layer by default, so a debug restart reuses it.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// Splits a `message\n  help: hint` error text into the daemon's error shape.
fn from_text(kind: ErrorKind, text: &str) -> RpcError {
    let (message, hint) = match text.split_once("\n  help: ") {
        Some((m, h)) => (m, Some(h)),
        None => (text, None),
    };
    let e = RpcError::new(kind, message);
    match hint {
        Some(h) => e.hint(h),
        None => e,
    }
}

/// The request's overrides as the config crate applies them.
fn config_overrides(p: &SessionStartParams) -> tether_config::Overrides {
    use tether_config::{FsMode, IncomingMode};
    let o = &p.overrides;
    tether_config::Overrides {
        target: p.target.clone(),
        namespace: p.namespace.clone(),
        kube_context: p.context.clone(),
        kubeconfig: o.kubeconfig.clone(),
        agent_image: o.agent_image.clone(),
        agent_namespace: o.agent_namespace.clone(),
        incoming_mode: o.incoming.map(|m| match m {
            IncomingModeParam::Mirror => IncomingMode::Mirror,
            IncomingModeParam::Steal => IncomingMode::Steal,
            IncomingModeParam::Off => IncomingMode::Off,
        }),
        fs_mode: o.fs_mode.map(|m| match m {
            FsModeParam::Local => FsMode::Local,
            FsModeParam::Localwithoverrides => FsMode::LocalWithOverrides,
            FsModeParam::Read => FsMode::Read,
            FsModeParam::Write => FsMode::Write,
        }),
        no_env: o.no_env,
    }
}

/// `session.start`.
pub async fn start(p: SessionStartParams, s: Arc<DaemonState>) -> Result<SessionStarted, RpcError> {
    if *s.shutdown.borrow() {
        return Err(
            RpcError::new(ErrorKind::ShuttingDown, "the daemon is shutting down")
                .hint("start it again: `tether daemon start`"),
        );
    }
    let input = p.config.clone();
    let overrides = config_overrides(&p);
    let verified = blocking(move || config::load(&input, &overrides)).await?;
    let verified = verified.map_err(|e| {
        let first = e.errors.first().map(|d| match d.location() {
            Some(loc) => format!("{loc}: {}", d.message),
            None => d.message.clone(),
        });
        RpcError::new(
            ErrorKind::ConfigInvalid,
            format!("cannot start session: {}", first.unwrap_or_default()),
        )
        .hint("config.verify lists every error with its position")
    })?;
    let cfg = verified.config;
    let target = cfg
        .target()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "targetless".to_owned());

    let layer = find_layer(p.layer.as_deref())
        .map_err(|e| from_text(ErrorKind::Unavailable, &e.to_string()))?;

    let id = new_session_id();
    let entry = s.sessions.insert(SessionInfo {
        id: id.clone(),
        target: target.clone(),
        namespace: cfg.target.namespace.clone(),
        context: cfg.kube_context.clone(),
        state: SessionState::Starting,
        started_at: unix_now(),
        layers: 0,
        program: p.program.clone(),
        ..Default::default()
    });
    let fail = |e: RpcError| {
        s.sessions
            .end(&id, EndReason::StartFailed, Some(e.message.clone()));
        e.target(id.clone())
    };

    let step = Instant::now();
    let link = LinkOptions {
        session_id: id.clone(),
        ..LinkOptions::default()
    };
    let (client, events, lease) = match p.agent.clone() {
        Some(agent) => {
            entry.emit(SessionEvent::Progress {
                step: "agent".into(),
                message: format!("connecting to the agent at {}", agent.address),
                done: false,
            });
            let (client, events) = AgentClient::connect(&agent.address, &agent.token, link)
                .await
                .map_err(|e| fail(from_text(ErrorKind::AgentUnavailable, &e.to_string())))?;
            client.set_redial(direct_redial(&agent.address));
            entry.emit(SessionEvent::Progress {
                step: "agent".into(),
                message: format!(
                    "connected to {} in {} ms",
                    client.hello().agent,
                    step.elapsed().as_millis()
                ),
                done: true,
            });
            (client, events, None)
        }
        None => {
            // No agent given: start one next to the target (or reuse the running one).
            let kube = s
                .kube
                .target(cfg.kubeconfig.as_deref(), cfg.kube_context.as_deref())
                .await
                .map_err(fail)?;
            let namespace = cfg
                .target
                .namespace
                .clone()
                .unwrap_or_else(|| kube.namespace.clone());
            let key = AgentKey {
                context: kube.context.clone(),
                namespace,
                target: target.clone(),
                flavour: format!(
                    "{:?}|{:?}|{}",
                    cfg.agent.namespace, cfg.agent.image, cfg.agent.ephemeral
                ),
            };
            let path = cfg
                .target()
                .cloned()
                .unwrap_or(tether_config::Target::Targetless);
            let emit = |step: &str, message: String, done: bool| {
                entry.emit(SessionEvent::Progress {
                    step: step.to_owned(),
                    message,
                    done,
                });
            };
            let req = LaunchRequest {
                client: kube.client.clone(),
                key,
                target: &path,
                config: &cfg.agent,
                link,
            };
            let (lease, client, events) = s
                .agents
                .acquire(req, &emit)
                .await
                .map_err(|e| fail(e.into_rpc(&target)))?;
            tracing::info!(
                session = %id,
                agent = %lease.agent.name,
                reused = !lease.started,
                ms = step.elapsed().as_millis() as u64,
                "agent connected"
            );
            (client, events, Some(lease))
        }
    };
    let prepared = prepare(&p, &cfg, &entry, &fail, client, events, &id, &layer).await;
    let (session, env, unset, warnings) = match prepared {
        Ok(v) => v,
        Err(e) => {
            if let Some(l) = lease {
                s.agents.release(l).await;
            }
            return Err(e);
        }
    };
    entry.emit(SessionEvent::Ready);
    let linger = p
        .linger_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_LINGER);
    // Counted before the task runs, so a shutdown right now still waits for it.
    s.session_tasks.send_modify(|n| *n += 1);
    // Subscribed before the env goes out, so the first process's events are not missed.
    let router_events = session.subscribe();
    tokio::spawn(own_session(
        s.clone(),
        entry,
        session,
        router_events,
        linger,
        lease,
    ));
    tracing::info!(session = %id, %target, "session started");
    Ok(SessionStarted {
        id,
        env,
        unset,
        warnings,
    })
}

type Prepared = (Session, BTreeMap<String, String>, Vec<String>, Vec<String>);

/// After the agent answered: the pod's env, the session router, the debuggee's env.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    p: &SessionStartParams,
    cfg: &tether_config::TetherConfig,
    entry: &Arc<SessionEntry>,
    fail: &(dyn Fn(RpcError) -> RpcError + Send + Sync),
    client: AgentClient,
    events: tokio::sync::mpsc::Receiver<crate::agent_link::AgentEvent>,
    id: &str,
    layer: &std::path::Path,
) -> Result<Prepared, RpcError> {
    let mut warnings = Vec::new();
    let pod_env = if cfg.feature.env.is_disabled() {
        Vec::new()
    } else {
        entry.emit(SessionEvent::Progress {
            step: "env".into(),
            message: "fetching the pod's environment".into(),
            done: false,
        });
        fetch_pod_env(&client)
            .await
            .map_err(|e| fail(from_text(ErrorKind::AgentUnavailable, &e.to_string())))?
    };
    let changes = env_changes(&cfg.feature.env, &pod_env).map_err(|e| {
        fail(
            RpcError::new(ErrorKind::ConfigIo, e.to_string())
                .hint("fix or remove `feature.env.env_file`"),
        )
    })?;
    if !cfg.feature.env.is_disabled() {
        entry.emit(SessionEvent::Progress {
            step: "env".into(),
            message: format!("{} variables from the pod", changes.set.len()),
            done: true,
        });
        if pod_env.is_empty() {
            warnings.push("the pod's environment is empty".to_owned());
        }
    }

    let program = p.program.as_ref().map(PathBuf::from);
    let local = LocalContext {
        cwd: p.config.cwd.clone(),
        exe: program
            .clone()
            .and_then(|p| std::fs::canonicalize(&p).ok().or(Some(p))),
        home: std::env::var_os("HOME").map(PathBuf::from),
        temp_dirs: std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .into_iter()
            .collect(),
        credential_files: kubeconfig_files(cfg.kubeconfig.as_deref()),
    };
    let session = Session::start(
        client,
        events,
        SessionParams {
            id: id.to_owned(),
            options: SessionOptions::from_config(cfg),
            local,
            listen: ListenKind::Unix,
        },
    )
    .await
    .map_err(|e| {
        fail(RpcError::new(
            ErrorKind::Internal,
            format!("cannot start the session router: {e}"),
        ))
    })?;

    let mut env = BTreeMap::new();
    let mut unset = Vec::new();
    for (k, v) in debuggee_env(&session, &changes, layer, None) {
        match v {
            Some(v) => {
                env.insert(k, v.to_string_lossy().into_owned());
            }
            None => unset.push(k),
        }
    }
    Ok((session, env, unset, warnings))
}

/// Owns a running session until it ends, keeping the registry's view of it current.
async fn own_session(
    s: Arc<DaemonState>,
    entry: Arc<SessionEntry>,
    session: Session,
    mut router_events: tokio::sync::broadcast::Receiver<RouterEvent>,
    linger: Duration,
    lease: Option<AgentLease>,
) {
    let id = entry.info().id;
    let started = Instant::now();
    let mut seen_layer = false;
    let mut idle_since: Option<Instant> = Some(Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (reason, message) = loop {
        tokio::select! {
            reason = entry.cancelled() => break (reason, None),
            _ = session.agent().closed() => {
                let why = session.agent().down_reason().map(|r| r.to_string());
                break (EndReason::AgentLost, why);
            }
            ev = router_events.recv() => {
                use tokio::sync::broadcast::error::RecvError;
                match ev {
                    Ok(ev) => {
                        // A process too short-lived for the tick to see still counts.
                        if matches!(ev, RouterEvent::LayerConnected(_)) {
                            seen_layer = true;
                            idle_since = None;
                        }
                        entry.emit(ev.into());
                    }
                    Err(RecvError::Lagged(n)) => entry.emit(SessionEvent::Warning {
                        message: format!("{n} router events were dropped: the daemon is overloaded"),
                    }),
                    // The router lives in `session`, so its sender outlives this loop.
                    Err(RecvError::Closed) => {}
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let n = u32::try_from(session.connections()).unwrap_or(u32::MAX);
        if entry.info().layers != n {
            entry.update(|i| {
                i.layers = n;
                if n > 0 {
                    i.state = SessionState::Ready;
                } else if i.state == SessionState::Ready {
                    i.state = SessionState::Lingering;
                }
            });
        }
        if n > 0 {
            seen_layer = true;
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if seen_layer && since.elapsed() >= linger {
            break (EndReason::ProcessExited, None);
        }
        if !seen_layer && started.elapsed() >= FIRST_LAYER_WAIT {
            break (
                EndReason::ProcessExited,
                Some(format!(
                    "no process connected within {} s",
                    FIRST_LAYER_WAIT.as_secs()
                )),
            );
        }
    };
    // `end` emits `ended` unless `session.stop` or shutdown already did.
    if !entry.is_cancelled() {
        // The last counters, which the sampler may not have published yet.
        let last: TrafficCounters = session.counters().into();
        if last != entry.info().traffic {
            entry.emit(SessionEvent::traffic(last));
        }
        s.sessions.end(&id, reason, message);
    }
    session.shutdown().await;
    if let Some(l) = lease {
        s.agents.release(l).await;
    }
    s.session_tasks.send_modify(|n| *n = n.saturating_sub(1));
    tracing::info!(session = %id, ?reason, "session ended");
}
