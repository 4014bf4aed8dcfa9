//! The agent launcher: starts `tether-agent` next to a target through the Kubernetes API and
//! connects to it through an API-server port-forward.
//!
//! - [`resolve`]: a target path (pod, pod + container, deployment or statefulset) to one running
//!   pod, its node and the container id the node reports.
//! - [`spec`]: the Job (pinned to the target's node, hostPID, NET_ADMIN/SYS_ADMIN/SYS_PTRACE, the
//!   runtime socket) or the ephemeral container, and the Secret carrying the token.
//! - [`AgentPool`]: one running agent per (context, namespace, target), shared by every session
//!   on that target (a debug restart reuses the warm agent); removed with its last session, on
//!   daemon shutdown (sessions end first), and at once when its start fails.
//! - Start-up is watched step by step and fails early with a [`LaunchError`] naming the cause
//!   (image pull, admission, unschedulable, RBAC, runtime socket, agent exit) or, at
//!   `agent.startup_timeout`, the step it was still waiting on.
//!
//! Each session has its own agent connection (the agent serves several at once): a fresh
//! WebSocket port-forward over the context's shared HTTP client, which is also how a dropped
//! link is re-established.

pub mod error;
pub mod resolve;
pub mod spec;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Event, Pod, Secret},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, PropagationPolicy},
};
use tether_config::AgentConfig;
use tokio::sync::mpsc;

pub use self::error::LaunchError;
use self::{
    resolve::ResolvedTarget,
    spec::{AGENT_PORT, AgentSpec},
};
use crate::agent_link::{AgentClient, AgentEvent, DialError, LinkOptions, Redial, Transport};

/// Reports a start step: (step, message, done).
pub type Progress<'a> = &'a (dyn Fn(&str, String, bool) + Send + Sync);

/// How often start-up polls the API server.
const POLL: Duration = Duration::from_millis(100);
/// How long one port-forward + hello attempt may take during start-up.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(3);

/// Which agent serves a session: sessions with equal keys share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentKey {
    /// kube context.
    pub context: String,
    /// Target namespace.
    pub namespace: String,
    /// Target path as configured (`pod/x`, `deployment/y/container/z`).
    pub target: String,
    /// Agent namespace, image and mode: a changed config gets its own agent.
    pub flavour: String,
}

/// A running agent: where it is and how to reach it.
pub struct RunningAgent {
    client: Client,
    /// Namespace of the agent's pod (the target's for an ephemeral container).
    pub namespace: String,
    /// Name of the Job and Secret (or of the ephemeral container).
    pub name: String,
    /// The pod serving the agent port.
    pub pod: String,
    /// The pod the agent is attached to.
    pub target: ResolvedTarget,
    /// True for an ephemeral container (nothing to delete: it exits on its idle TTL).
    pub ephemeral: bool,
    token: String,
    sessions: AtomicUsize,
    /// A connection opened (and greeted) ahead of the next session on this agent: a port-forward
    /// costs a WebSocket upgrade through the API server and the node (about 50 ms here), which a
    /// debug restart then does not wait for.
    spare: tokio::sync::Mutex<Option<Link>>,
    /// Bumped by [`RunningAgent::cut_port_forwards`].
    cut: tokio::sync::watch::Sender<u64>,
}

type Link = (AgentClient, mpsc::Receiver<AgentEvent>);

impl std::fmt::Debug for RunningAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAgent")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("pod", &self.pod)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl RunningAgent {
    /// Opens a new agent connection: a port-forward to the agent's port and the hello.
    pub async fn connect(
        &self,
        opts: LinkOptions,
    ) -> Result<(AgentClient, mpsc::Receiver<AgentEvent>), LaunchError> {
        let t = self.open_transport().await?;
        AgentClient::handshake(t.reader, t.writer, &t.peer, &self.token, opts)
            .await
            .map_err(|e| LaunchError::Connect {
                pod: self.pod.clone(),
                detail: e.to_string(),
            })
    }

    /// Makes `link` re-establish a dropped port-forward to this agent (same token) while its pod
    /// runs; the link ends when the pod is gone or finished.
    pub fn redial_for(self: &Arc<Self>, link: &AgentClient) {
        let agent = Arc::downgrade(self);
        let dial = move || {
            let agent = agent.clone();
            Box::pin(async move {
                let Some(a) = agent.upgrade() else {
                    return Err(DialError::AgentGone("the agent was removed".into()));
                };
                a.check_running().await?;
                a.open_transport()
                    .await
                    .map_err(|e| DialError::Failed(e.to_string()))
            }) as futures::future::BoxFuture<'static, _>
        };
        link.set_redial(Redial::new(Arc::new(dial)));
    }

    /// Fails with [`DialError::AgentGone`] unless the agent's pod is running and not deleted.
    async fn check_running(&self) -> Result<(), DialError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = match pods.get_opt(&self.pod).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err(DialError::AgentGone(format!(
                    "agent pod {}/{} is gone",
                    self.namespace, self.pod
                )));
            }
            // The API server itself may be what dropped: try again later.
            Err(e) => return Err(DialError::Failed(format!("reading the agent pod: {e}"))),
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if pod.metadata.deletion_timestamp.is_some()
            || matches!(phase, Some("Succeeded" | "Failed"))
        {
            return Err(DialError::AgentGone(format!(
                "agent pod {}/{} is {}",
                self.namespace,
                self.pod,
                if pod.metadata.deletion_timestamp.is_some() {
                    "being deleted"
                } else {
                    "finished"
                }
            )));
        }
        Ok(())
    }

    /// A new port-forward stream to the agent's port.
    async fn open_transport(&self) -> Result<Transport, LaunchError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut pf = pods
            .portforward(&self.pod, &[AGENT_PORT])
            .await
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("403") || text.to_lowercase().contains("forbidden") {
                    LaunchError::Forbidden {
                        verb: "create".into(),
                        resource: "pods/portforward".into(),
                        namespace: self.namespace.clone(),
                        message: text,
                    }
                } else {
                    LaunchError::Connect {
                        pod: self.pod.clone(),
                        detail: format!("port-forward: {text}"),
                    }
                }
            })?;
        let stream = pf
            .take_stream(AGENT_PORT)
            .ok_or_else(|| LaunchError::Connect {
                pod: self.pod.clone(),
                detail: "port-forward gave no stream".into(),
            })?;
        // The forwarder's task carries the stream; it ends when either side closes. This task
        // only keeps the handle to cut it (it ends with the agent).
        let mut cut = self.cut.subscribe();
        tokio::spawn(async move {
            if cut.changed().await.is_ok() {
                pf.abort();
            }
            if let Err(e) = pf.join().await {
                tracing::debug!("agent port-forward ended: {e}");
            }
        });
        let (r, w) = tokio::io::split(stream);
        Ok(Transport {
            reader: Box::new(r),
            writer: Box::new(w),
            peer: format!("{}/{}:{AGENT_PORT}", self.namespace, self.pod),
        })
    }

    /// A live spare connection, if one is ready.
    async fn take_spare(&self) -> Option<Link> {
        let spare = self.spare.lock().await.take()?;
        spare.0.down_reason().is_none().then_some(spare)
    }

    /// Opens the spare connection for the next session, in the background.
    fn refill_spare(self: &Arc<Self>, link: LinkOptions) {
        let agent = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(a) = agent.upgrade() else { return };
            let opts = LinkOptions {
                session_id: format!("{}-spare", a.name),
                ..link
            };
            match a.connect(opts).await {
                Ok(l) => {
                    let old = a.spare.lock().await.replace(l);
                    if let Some((c, _)) = old {
                        c.shutdown().await;
                    }
                }
                Err(e) => tracing::debug!(agent = %a.name, "no spare connection: {e}"),
            }
        });
    }

    /// Aborts every port-forward open to this agent now, as a network failure would: sessions
    /// redial theirs (for tests of reconnect, and to shake off a wedged API server path).
    pub fn cut_port_forwards(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Sessions using this agent now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Deletes the Job (foreground, so its pod goes too) and the Secret. Best effort.
    async fn remove(&self) {
        if let Some((c, _)) = self.spare.lock().await.take() {
            c.shutdown().await;
        }
        if self.ephemeral {
            return;
        }
        remove_objects(&self.client, &self.namespace, &self.name).await;
    }
}

async fn remove_objects(client: &Client, namespace: &str, name: &str) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    if let Err(e) = jobs.delete(name, &dp).await
        && !matches!(&e, kube::Error::Api(s) if s.code == 404)
    {
        tracing::warn!("removing agent Job {namespace}/{name}: {e}");
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = secrets.delete(name, &DeleteParams::default()).await
        && !matches!(&e, kube::Error::Api(s) if s.code == 404)
    {
        tracing::warn!("removing agent Secret {namespace}/{name}: {e}");
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<RunningAgent>>>>;

/// The daemon's running agents, one per [`AgentKey`].
#[derive(Debug, Default)]
pub struct AgentPool {
    slots: std::sync::Mutex<HashMap<AgentKey, Slot>>,
}

/// A session's use of a running agent; give it back with [`AgentPool::release`].
#[derive(Debug)]
pub struct AgentLease {
    key: AgentKey,
    /// The agent.
    pub agent: Arc<RunningAgent>,
    /// True when this session started the agent, false when it reused a running one.
    pub started: bool,
}

/// What a launch needs besides the target.
pub struct LaunchRequest<'a> {
    /// API client of the context.
    pub client: Client,
    /// Sessions sharing an agent have equal keys.
    pub key: AgentKey,
    /// The target path.
    pub target: &'a tether_config::Target,
    /// The agent config.
    pub config: &'a AgentConfig,
    /// Link options of the session's connection.
    pub link: LinkOptions,
}

impl AgentPool {
    fn slot(&self, key: &AgentKey) -> Slot {
        self.slots
            .lock()
            .expect("agent pool poisoned")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// An agent connection for a session: the running agent of `req.key` when it still answers,
    /// else a new one.
    pub async fn acquire(
        &self,
        req: LaunchRequest<'_>,
        progress: Progress<'_>,
    ) -> Result<(AgentLease, AgentClient, mpsc::Receiver<AgentEvent>), LaunchError> {
        let slot = self.slot(&req.key);
        let mut guard = slot.lock().await;
        if let Some(agent) = guard.clone() {
            progress(
                "agent",
                format!("reusing agent {}/{}", agent.namespace, agent.name),
                false,
            );
            let t = Instant::now();
            let link = match agent.take_spare().await {
                Some(l) => Ok(l),
                None => agent.connect(req.link.clone()).await,
            };
            match link {
                Ok((c, ev)) => {
                    agent.redial_for(&c);
                    agent.sessions.fetch_add(1, Ordering::SeqCst);
                    progress(
                        "agent",
                        format!(
                            "connected to agent {} in {} ms",
                            agent.name,
                            t.elapsed().as_millis()
                        ),
                        true,
                    );
                    agent.refill_spare(req.link.clone());
                    let lease = AgentLease {
                        key: req.key,
                        agent,
                        started: false,
                    };
                    return Ok((lease, c, ev));
                }
                Err(e) => {
                    tracing::warn!(
                        "running agent {} does not answer ({e}): starting a new one",
                        agent.name
                    );
                    *guard = None;
                    if agent.sessions() == 0 {
                        agent.remove().await;
                    }
                }
            }
        }
        let (agent, c, ev) = launch(&req, progress).await?;
        agent.redial_for(&c);
        agent.sessions.fetch_add(1, Ordering::SeqCst);
        agent.refill_spare(req.link.clone());
        *guard = Some(agent.clone());
        Ok((
            AgentLease {
                key: req.key,
                agent,
                started: true,
            },
            c,
            ev,
        ))
    }

    /// Ends a session's use of its agent; the last one removes the agent's objects.
    pub async fn release(&self, lease: AgentLease) {
        let slot = self.slot(&lease.key);
        let mut guard = slot.lock().await;
        let left = lease.agent.sessions.fetch_sub(1, Ordering::SeqCst) - 1;
        if left > 0 {
            return;
        }
        if guard.as_ref().is_some_and(|a| Arc::ptr_eq(a, &lease.agent)) {
            *guard = None;
        }
        drop(guard);
        tracing::info!(agent = %lease.agent.name, "last session ended: removing the agent");
        lease.agent.remove().await;
    }

    /// Running agents (for tests and `daemon.info`).
    pub async fn running(&self) -> Vec<Arc<RunningAgent>> {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .expect("agent pool poisoned")
            .values()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for s in slots {
            if let Some(a) = s.lock().await.clone() {
                out.push(a);
            }
        }
        out
    }
}

fn short_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn launch(
    req: &LaunchRequest<'_>,
    progress: Progress<'_>,
) -> Result<(Arc<RunningAgent>, AgentClient, mpsc::Receiver<AgentEvent>), LaunchError> {
    progress("target", format!("resolving {}", req.key.target), false);
    let target = resolve::resolve(&req.client, &req.key.namespace, req.target).await?;
    progress(
        "target",
        format!(
            "{} is pod {}/{} (container {}) on node {}",
            req.key.target, target.namespace, target.pod, target.container, target.node
        ),
        true,
    );
    let id = short_id();
    let name = format!("tether-agent-{id}");
    let spec = AgentSpec {
        name: name.clone(),
        config: req.config,
        node: target.node.clone(),
        container_id: target.container_id.clone(),
        container: target.container.clone(),
        agent_id: id,
    };
    let token = crate::session::new_token();
    if req.config.ephemeral {
        return launch_ephemeral(req, spec, target, token, progress).await;
    }
    let namespace = req
        .config
        .namespace
        .clone()
        .unwrap_or_else(|| target.namespace.clone());
    let agent = RunningAgent {
        client: req.client.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        pod: String::new(),
        target,
        ephemeral: false,
        token,
        sessions: AtomicUsize::new(0),
        spare: Default::default(),
        cut: tokio::sync::watch::channel(0).0,
    };
    progress(
        "job",
        format!("creating agent Job {namespace}/{name} ({})", spec.image()),
        false,
    );
    let secrets: Api<Secret> = Api::namespaced(req.client.clone(), &namespace);
    secrets
        .create(&PostParams::default(), &spec.secret(&agent.token))
        .await
        .map_err(|e| LaunchError::from_kube(e, "create", "secrets", &namespace))?;
    let jobs: Api<Job> = Api::namespaced(req.client.clone(), &namespace);
    if let Err(e) = jobs.create(&PostParams::default(), &spec.job()).await {
        remove_objects(&req.client, &namespace, &name).await;
        return Err(LaunchError::from_kube(
            e,
            "create",
            "jobs.batch",
            &namespace,
        ));
    }
    progress("job", format!("created agent Job {namespace}/{name}"), true);
    match watch_start(req, agent, &spec.image(), progress).await {
        Ok(ok) => Ok(ok),
        Err(e) => {
            // Nothing left behind on failure.
            remove_objects(&req.client, &namespace, &name).await;
            Err(e)
        }
    }
}

async fn launch_ephemeral(
    req: &LaunchRequest<'_>,
    spec: AgentSpec<'_>,
    target: ResolvedTarget,
    token: String,
    progress: Progress<'_>,
) -> Result<(Arc<RunningAgent>, AgentClient, mpsc::Receiver<AgentEvent>), LaunchError> {
    let ns = target.namespace.clone();
    // The token has to be in the pod spec (ephemeral containers cannot be removed, and a Secret
    // would outlive the session): readable only by those who can read the pod.
    let mut container = serde_json::to_value(spec.ephemeral()).expect("ephemeral container");
    container["env"][0] = serde_json::json!({"name": "TETHER_AGENT_TOKEN", "value": token});
    progress(
        "job",
        format!(
            "adding ephemeral container {} to pod {ns}/{}",
            spec.name, target.pod
        ),
        false,
    );
    let pods: Api<Pod> = Api::namespaced(req.client.clone(), &ns);
    let patch = serde_json::json!({"spec": {"ephemeralContainers": [container]}});
    pods.patch_ephemeral_containers(
        &target.pod,
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
    .map_err(|e| LaunchError::from_kube(e, "patch", "pods/ephemeralcontainers", &ns))?;
    progress(
        "job",
        format!("added ephemeral container {}", spec.name),
        true,
    );
    let agent = RunningAgent {
        client: req.client.clone(),
        namespace: ns,
        name: spec.name.clone(),
        pod: target.pod.clone(),
        target,
        ephemeral: true,
        token,
        sessions: AtomicUsize::new(0),
        spare: Default::default(),
        cut: tokio::sync::watch::channel(0).0,
    };
    watch_start(req, agent, &spec.image(), progress).await
}

/// Follows the agent from its Job to an answered hello.
async fn watch_start(
    req: &LaunchRequest<'_>,
    mut agent: RunningAgent,
    image: &str,
    progress: Progress<'_>,
) -> Result<(Arc<RunningAgent>, AgentClient, mpsc::Receiver<AgentEvent>), LaunchError> {
    let ns = agent.namespace.clone();
    let name = agent.name.clone();
    let pods: Api<Pod> = Api::namespaced(req.client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(req.client.clone(), &ns);
    let timeout = Duration::from_secs(req.config.startup_timeout.max(1));
    let started = Instant::now();
    let mut step = if agent.ephemeral {
        "the ephemeral container to start"
    } else {
        "the Job controller to create the agent pod"
    };
    progress("pod", format!("waiting for {step}"), false);
    let mut last_step = step;
    loop {
        if started.elapsed() > timeout {
            return Err(LaunchError::Timeout {
                step: step.to_owned(),
                after: timeout,
            });
        }
        if step != last_step {
            progress("pod", format!("waiting for {step}"), false);
            last_step = step;
        }
        let pod = if agent.ephemeral {
            Some(
                pods.get(&agent.pod)
                    .await
                    .map_err(|e| LaunchError::from_kube(e, "get", "pods", &ns))?,
            )
        } else {
            let lp = ListParams::default().labels(&format!("job-name={name}"));
            let list = pods
                .list(&lp)
                .await
                .map_err(|e| LaunchError::from_kube(e, "list", "pods", &ns))?;
            list.items.into_iter().next()
        };
        let Some(pod) = pod else {
            // No pod yet: the Job controller reports refusals (Pod Security, quotas, webhooks) as
            // FailedCreate events on the Job.
            let lp = ListParams::default().fields(&format!(
                "involvedObject.kind=Job,involvedObject.name={name}"
            ));
            let evs = events
                .list(&lp)
                .await
                .map_err(|e| LaunchError::from_kube(e, "list", "events", &ns))?;
            if let Some(ev) = evs
                .items
                .iter()
                .find(|e| e.reason.as_deref() == Some("FailedCreate"))
            {
                return Err(LaunchError::Admission {
                    namespace: ns,
                    message: ev.message.clone().unwrap_or_default(),
                });
            }
            tokio::time::sleep(POLL).await;
            continue;
        };
        if !agent.ephemeral {
            agent.pod = pod.metadata.name.clone().unwrap_or_default();
        }
        if let Some(e) = pod_failure(&pod, &agent, image, &pods, &events).await? {
            return Err(e);
        }
        let status = pod.status.as_ref();
        let scheduled = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "True")
        });
        let running = agent_container_running(&pod, &agent);
        step = if running {
            "the agent to answer through the port-forward"
        } else if scheduled || agent.ephemeral {
            "the agent container to start (image pull, volumes)"
        } else {
            "the scheduler to place the agent pod"
        };
        if running {
            let attempt =
                tokio::time::timeout(CONNECT_ATTEMPT, agent.connect(req.link.clone())).await;
            match attempt {
                Ok(Ok((c, ev))) => {
                    progress(
                        "pod",
                        format!(
                            "agent {} ready in {} ms",
                            agent.pod,
                            started.elapsed().as_millis()
                        ),
                        true,
                    );
                    return Ok((Arc::new(agent), c, ev));
                }
                Ok(Err(e @ LaunchError::Forbidden { .. })) => return Err(e),
                Ok(Err(e)) => tracing::debug!("agent not answering yet: {e}"),
                Err(_) => tracing::debug!("agent connect attempt timed out"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn agent_status(
    pod: &Pod,
    agent: &RunningAgent,
) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    let s = pod.status.as_ref()?;
    let list = if agent.ephemeral {
        s.ephemeral_container_statuses.as_ref()?
    } else {
        s.container_statuses.as_ref()?
    };
    let want = if agent.ephemeral {
        agent.name.as_str()
    } else {
        "tether-agent"
    };
    list.iter().find(|c| c.name == want).cloned()
}

fn agent_container_running(pod: &Pod, agent: &RunningAgent) -> bool {
    agent_status(pod, agent)
        .and_then(|c| c.state)
        .is_some_and(|s| s.running.is_some())
}

/// A start failure visible on the agent pod, if any.
async fn pod_failure(
    pod: &Pod,
    agent: &RunningAgent,
    image: &str,
    pods: &Api<Pod>,
    events: &Api<Event>,
) -> Result<Option<LaunchError>, LaunchError> {
    let ns = &agent.namespace;
    let socket = spec::runtime_socket(&agent.target.container_id)
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        && c.reason.as_deref() == Some("Unschedulable")
    {
        return Ok(Some(LaunchError::Unschedulable {
            message: c.message.clone().unwrap_or_default(),
        }));
    }
    let hostpath =
        |m: &str| m.contains("hostPath type check failed") || m.contains("is not a socket");
    if let Some(c) = agent_status(pod, agent) {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            let message = w.message.clone().unwrap_or_default();
            if matches!(
                reason.as_str(),
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
            ) {
                return Ok(Some(LaunchError::ImagePull {
                    image: image.to_owned(),
                    reason,
                    message,
                }));
            }
            if hostpath(&message) {
                return Ok(Some(LaunchError::RuntimeSocketMissing {
                    path: socket,
                    message,
                }));
            }
        }
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            let logs = agent_logs(pods, agent).await;
            return Ok(Some(LaunchError::AgentExited {
                reason: format!(
                    "{}, exit code {}",
                    t.reason.clone().unwrap_or_else(|| "terminated".into()),
                    t.exit_code
                ),
                logs,
            }));
        }
    }
    let message = status.message.clone().unwrap_or_default();
    if hostpath(&message) {
        return Ok(Some(LaunchError::RuntimeSocketMissing {
            path: socket,
            message,
        }));
    }
    if status.phase.as_deref() == Some("Failed") {
        return Ok(Some(LaunchError::AgentExited {
            reason: status.reason.clone().unwrap_or_else(|| "pod failed".into()),
            logs: message,
        }));
    }
    // A real kubelet reports a missing socket as a FailedMount event on the pod.
    if status.phase.as_deref() == Some("Pending") && !agent.ephemeral {
        let lp = ListParams::default().fields(&format!(
            "involvedObject.kind=Pod,involvedObject.name={}",
            agent.pod
        ));
        if let Ok(evs) = events.list(&lp).await
            && let Some(ev) = evs.items.iter().find(|e| {
                e.reason.as_deref() == Some("FailedMount")
                    && e.message.as_deref().is_some_and(hostpath)
            })
        {
            return Ok(Some(LaunchError::RuntimeSocketMissing {
                path: socket,
                message: ev.message.clone().unwrap_or_default(),
            }));
        }
    }
    let _ = ns;
    Ok(None)
}

async fn agent_logs(pods: &Api<Pod>, agent: &RunningAgent) -> String {
    let lp = LogParams {
        container: Some(if agent.ephemeral {
            agent.name.clone()
        } else {
            "tether-agent".into()
        }),
        tail_lines: Some(10),
        ..LogParams::default()
    };
    match pods.logs(&agent.pod, &lp).await {
        Ok(l) if !l.trim().is_empty() => l.trim().replace('\n', " | "),
        Ok(_) => "no output".into(),
        Err(e) => format!("(logs unavailable: {e})"),
    }
}
