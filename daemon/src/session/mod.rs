//! Sessions: one debuggee (with its forks and exec'd children) bound to one agent link.
//!
//! - [`Session::start`]: the session router's listener (a unix socket in a private 0700 runtime
//!   dir, or 127.0.0.1 TCP) and its tasks; [`router`] serves each layer connection.
//! - [`events`]: what the router publishes (processes connecting and leaving, traffic counters).
//! - [`policy`]: the [`LayerPolicy`](tether_protocol::layer::LayerPolicy) sent to every layer.
//! - [`env`]: the pod env a debuggee gets; `config` turns a `TetherConfig` into [`SessionOptions`].
//! - [`launch`]: `tether exec`'s code path (checks, spawning with the layer, exit status), reusable
//!   by the daemon.
//!
//! **Architecture invariant:** the router depends on protocol types and [`SessionOptions`], never
//! on config file types; callers convert.

mod config;
pub mod env;
pub mod events;
mod incoming;
pub mod launch;
mod outgoing;
mod pipe;
pub mod policy;
pub mod router;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tether_protocol::session_env;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use self::events::{DisconnectReason, LayerProcess, RouterEvent, TrafficCounters};
pub use self::policy::{LocalContext, SessionOptions, build_policy};
use crate::agent_link::{AgentClient, AgentEvent};

/// Where the session router listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenKind {
    /// A unix socket in a fresh 0700 directory under `$XDG_RUNTIME_DIR` (or the temp dir).
    #[default]
    Unix,
    /// 127.0.0.1 on a random port (for sandboxes that cannot share a unix socket).
    Tcp,
}

/// Everything needed to start a session router.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Session id, for logs and the layer's env.
    pub id: String,
    /// From the config.
    pub options: SessionOptions,
    /// Local facts for the default fs rules.
    pub local: LocalContext,
    /// Listener kind.
    pub listen: ListenKind,
}

/// A running session router.
pub struct Session {
    shared: Arc<router::Shared>,
    id: String,
    address: String,
    token: String,
    tasks: Vec<JoinHandle<()>>,
    // Removed (with the socket in it) when the session is dropped.
    _runtime_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// A random session token (256 bits, hex).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short random session id.
pub fn new_session_id() -> String {
    let bytes: [u8; 6] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn runtime_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

impl Session {
    /// Starts the router for `agent`; `events` are the link's incoming events.
    pub async fn start(
        agent: AgentClient,
        events: mpsc::Receiver<AgentEvent>,
        params: SessionParams,
    ) -> std::io::Result<Self> {
        let policy = build_policy(
            &params.options,
            &params.local,
            &agent.hello().target.hostname,
        );
        let token = new_token();
        let shared = router::Shared::new(
            agent,
            policy,
            params.options.http_filter_ports.clone(),
            token.clone(),
        );
        let mut tasks = Vec::new();
        let (address, runtime_dir) = match params.listen {
            ListenKind::Unix => {
                // Only this user may reach the socket: the directory is 0700 from its creation.
                let dir = tempfile::Builder::new()
                    .prefix("tether-")
                    .permissions(std::fs::Permissions::from_mode(0o700))
                    .tempdir_in(runtime_base())?;
                let path = dir.path().join("session.sock");
                let listener = UnixListener::bind(&path)?;
                let sh = shared.clone();
                tasks.push(tokio::spawn(async move {
                    while let Ok((s, _)) = listener.accept().await {
                        let (r, w) = s.into_split();
                        tokio::spawn(router::serve_connection(sh.clone(), r, w));
                    }
                }));
                (format!("unix:{}", path.display()), Some(dir))
            }
            ListenKind::Tcp => {
                let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
                let addr = listener.local_addr()?;
                let sh = shared.clone();
                tasks.push(tokio::spawn(async move {
                    while let Ok((s, _)) = listener.accept().await {
                        let _ = s.set_nodelay(true);
                        let (r, w) = s.into_split();
                        tokio::spawn(router::serve_connection(sh.clone(), r, w));
                    }
                }));
                (format!("tcp:{addr}"), None)
            }
        };
        tasks.push(tokio::spawn(incoming::event_loop(shared.clone(), events)));
        tasks.push(tokio::spawn(sample_counters(shared.clone())));
        Ok(Self {
            shared,
            id: params.id,
            address,
            token,
            tasks,
            _runtime_dir: runtime_dir,
        })
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The listener address as the layer reads it: `unix:/path` or `tcp:127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The token layers must present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The agent link.
    pub fn agent(&self) -> &AgentClient {
        &self.shared.agent
    }

    /// The policy every layer gets.
    pub fn policy(&self) -> &tether_protocol::layer::LayerPolicy {
        &self.shared.policy
    }

    /// The session variables a debuggee needs (besides `LD_PRELOAD`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (session_env::SESSION_ADDR.into(), self.address.clone()),
            (session_env::SESSION_TOKEN.into(), self.token.clone()),
            (session_env::SESSION_ID.into(), self.id.clone()),
        ]
    }

    /// Router events from now on: processes connecting and leaving, counters when they change.
    /// Subscribe before handing out [`Session::env`] to see every process.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RouterEvent> {
        self.shared.events.subscribe()
    }

    /// The traffic counters now.
    pub fn counters(&self) -> TrafficCounters {
        self.shared.meters.snapshot()
    }

    /// Pids of the processes connected now (or between an exec and the new image's hello), sorted.
    pub fn processes(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.shared.lock().processes.keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// Number of open layer connections.
    pub fn connections(&self) -> usize {
        *self.shared.live.borrow()
    }

    /// Resolves once no layer connection has been open for `linger` in a row.
    pub async fn wait_idle(&self, linger: Duration) {
        let mut rx = self.shared.live.subscribe();
        loop {
            let _ = rx.wait_for(|n| *n == 0).await;
            tokio::select! {
                _ = tokio::time::sleep(linger) => return,
                r = rx.wait_for(|n| *n > 0) => {
                    if r.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Ends the session: stops accepting, says goodbye to the agent.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.agent.shutdown().await;
    }
}

/// Publishes the counters every [`events::SAMPLE_INTERVAL`] when they changed.
async fn sample_counters(shared: Arc<router::Shared>) {
    let mut last = TrafficCounters::default();
    let mut tick = tokio::time::interval(events::SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = shared.meters.snapshot();
        if now != last {
            last = now;
            shared.publish(RouterEvent::Counters(now));
        }
    }
}

impl Drop for Session {
    // A session dropped without `shutdown` still stops accepting (its socket file is removed
    // with the runtime dir); the agent link ends when its last handle goes.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
