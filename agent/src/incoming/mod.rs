//! Incoming traffic: port subscriptions shared by all sessions of this agent.
//!
//! # The seam with the session loop
//! - One [`Incoming`] per agent, created in `main` with the [`Target`] and the agent id, shared by
//!   every session through an `Arc`.
//! - The session loop calls [`Incoming::subscribe`] / [`Incoming::unsubscribe`] for
//!   `Request::Incoming(..)`, forwards every `ClientMessage::Stream` with an agent conn id to
//!   [`Incoming::from_session`] and every `ClientMessage::HttpResponse` to
//!   [`Incoming::http_response`], and calls [`Incoming::release_session`] when a session ends.
//! - Traffic goes to a session through the `to_session` sender given at subscribe time, as
//!   `AgentMessage::Incoming(..)` and `AgentMessage::Stream(..)` with conn ids that have
//!   [`tether_protocol::AGENT_CONN_ID_BIT`] set. Connections hold only weak senders, so a released
//!   session's link can close while its old connections still run.
//!
//! # How traffic flows
//! The first subscription of a port creates a listener inside the target's netns and a nat
//! `REDIRECT` of the port to it in this agent's chain ([`iptables`], and ip6tables when present);
//! the last one removes the rule. Each redirected connection ([`conn`]) goes, by the port's subscriptions at accept time:
//! - to the session that steals the whole port, or
//! - with filtered steals, through the HTTP splitter ([`http`]), which hands matching requests to
//!   their session and passes the rest to the original server, or
//! - to the original server (mirror only).
//!
//! Mirror sessions get a copy of what the client sends in every case.
//!
//! Stolen and mirrored connections are flow-controlled streams ([`tether_protocol::flow`]):
//! client data goes to a session only within the credit that session returned, so a session
//! that stops draining one connection holds up nothing else. A stolen connection then stops
//! being read (TCP pushes back on the client); a mirror copy is queued apart from the real
//! connection and dropped for that session once it falls too far behind.
//!
//! Coexistence: any number of mirrors; any number of filtered steals from different sessions (the
//! first subscribed filter that matches a request wins); an unfiltered steal excludes every other
//! session's steal of the port ([`AgentError::PortAlreadyStolen`]).
//!
//! The chain is removed by the [`guard`] process once the agent is gone, and chains of dead agents
//! are removed when an agent starts.
//!
//! # Limits
//! - IPv6 is best effort: with ip6tables of the same backend installed, the chain and redirects
//!   are made in the IPv6 nat table too, with a second listener on `[::]`; without it, IPv4 only.
//! - The original server sees passed-through connections coming from the pod's own address, not
//!   from the client (REDIRECT, not TPROXY).
//! - Two agents on one pod keep separate chains and never remove each other's rules, but on a port
//!   both subscribe only the agent hooked last sees the traffic: its pass-through connections carry
//!   the bypass mark every tether chain skips.
//! - A stolen HTTP request and its response travel whole, in one frame each (bodies up to
//!   15 MiB); HTTP upgrades (WebSocket) are passed through, never stolen by a filter.

mod conn;
mod filter;
pub mod guard;
mod http;
mod iptables;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use socket2::{Domain, Socket, Type};
use tether_protocol::agent::AgentMessage;
use tether_protocol::flow::StreamTx;
use tether_protocol::incoming::{
    HttpFilter, HttpRequestId, HttpResponse, IncomingEvent, IncomingMode,
};
use tether_protocol::outgoing::StreamMessage;
use tether_protocol::{AGENT_CONN_ID_BIT, AgentError, ConnId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::filter::Matcher;
use self::guard::Guard;
use self::iptables::{Iptables, IptablesError};
use crate::session::SessionId;
use crate::target::Target;

/// Port subscriptions of all sessions.
#[derive(Debug)]
pub struct Incoming {
    inner: Arc<Inner>,
}

/// State shared with connection tasks.
pub(crate) struct Inner {
    target: Arc<Target>,
    chain: String,
    /// The binary started as the guard; `None` in unit tests (the test binary is no agent).
    guard_exe: Option<PathBuf>,
    rules: tokio::sync::Mutex<Rules>,
    ports: tokio::sync::Mutex<HashMap<u16, Port>>,
    /// Stolen whole connections, by id.
    conns: std::sync::Mutex<HashMap<ConnId, StolenConn>>,
    /// Mirror copies, by session and connection id (every mirror session of a connection gets
    /// the same id): where the sessions' credit for them goes.
    mirrors: std::sync::Mutex<HashMap<(SessionId, ConnId), MirrorConn>>,
    /// Stolen HTTP requests waiting for their session's answer.
    pending: std::sync::Mutex<HashMap<HttpRequestId, Pending>>,
    next_conn: AtomicU64,
    next_request: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("target", &self.target.pid())
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// The agent's iptables state, set up on the first subscription.
#[derive(Debug, Default)]
struct Rules {
    ipt: Option<Iptables>,
    /// ip6tables of the same backend, when installed and usable in the target's netns.
    ipt6: Option<Iptables>,
    chain_created: bool,
    guard: Option<Guard>,
}

/// A redirected port.
struct Port {
    listen_port: u16,
    /// The IPv6 listener's port, when the chain exists in ip6tables too.
    listen_port6: Option<u16>,
    subs: Vec<Sub>,
    /// What connection tasks read; rebuilt from `subs` on every change.
    live: Arc<RwLock<PortSubs>>,
    accept: Vec<JoinHandle<()>>,
}

impl Drop for Port {
    fn drop(&mut self) {
        for a in &self.accept {
            a.abort();
        }
    }
}

impl Port {
    fn refresh(&self) {
        let mut live = PortSubs::default();
        for s in &self.subs {
            let tx = s.weak();
            match (s.mode, &s.matcher) {
                (IncomingMode::Mirror, _) => live.mirrors.push(tx),
                (IncomingMode::Steal, None) => live.steal_all = Some(tx),
                (IncomingMode::Steal, Some(m)) => live.filtered.push((tx, m.clone())),
            }
        }
        *self.live.write().expect("subscribers lock") = live;
    }
}

/// One session's subscription of a port.
struct Sub {
    session: SessionId,
    mode: IncomingMode,
    matcher: Option<Arc<Matcher>>,
    tx: mpsc::Sender<AgentMessage>,
    active: Arc<AtomicBool>,
}

impl Sub {
    fn weak(&self) -> SessionTx {
        SessionTx {
            session: self.session,
            tx: self.tx.downgrade(),
            active: self.active.clone(),
        }
    }
}

/// How connection tasks reach a subscribed session: weakly, and only while subscribed.
#[derive(Debug, Clone)]
pub(crate) struct SessionTx {
    session: SessionId,
    tx: mpsc::WeakSender<AgentMessage>,
    active: Arc<AtomicBool>,
}

impl SessionTx {
    /// Sends `msg`, waiting for room; `false` once the session unsubscribed or is gone.
    async fn send(&self, msg: AgentMessage) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        let Some(tx) = self.tx.upgrade() else {
            return false;
        };
        tx.send(msg).await.is_ok()
    }
}

/// A port's subscribers as connection tasks see them.
#[derive(Debug, Clone, Default)]
pub(crate) struct PortSubs {
    mirrors: Vec<SessionTx>,
    steal_all: Option<SessionTx>,
    filtered: Vec<(SessionTx, Arc<Matcher>)>,
}

/// A connection stolen whole: where `from_session` sends the session's side. Dropping it ends
/// the connection's task.
pub(crate) struct StolenConn {
    session: SessionId,
    port: u16,
    tx: StreamTx,
}

/// One session's copy of a mirrored connection: the session only returns credit (and may close
/// it). Dropping it stops the copy to that session.
pub(crate) struct MirrorConn {
    port: u16,
    tx: StreamTx,
}

/// A stolen request waiting for the session's response.
pub(crate) struct Pending {
    session: SessionId,
    port: u16,
    tx: oneshot::Sender<HttpResponse>,
}

impl Inner {
    fn next_conn_id(&self) -> ConnId {
        AGENT_CONN_ID_BIT | self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn next_request_id(&self) -> HttpRequestId {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// The iptables runner, found on first use.
    fn iptables(&self, rules: &mut Rules) -> Result<Iptables, AgentError> {
        if let Some(ipt) = &rules.ipt {
            return Ok(ipt.clone());
        }
        let program = iptables::find_program()?;
        rules.ipt6 = iptables::ip6_program(&program).map(|p| Iptables::new(p, self.target.pid()));
        let ipt = Iptables::new(program, self.target.pid());
        rules.ipt = Some(ipt.clone());
        Ok(ipt)
    }

    /// Removes the chains of dead agents (run at start, errors only logged).
    async fn remove_stale(&self) {
        let (ipt, ipt6) = {
            let mut rules = self.rules.lock().await;
            match self.iptables(&mut rules) {
                Ok(ipt) => (ipt, rules.ipt6.clone()),
                Err(e) => {
                    tracing::debug!("no stale rule check: {e}");
                    return;
                }
            }
        };
        let own = self.chain.clone();
        let task = move || {
            let mut removed = ipt.remove_stale_chains(&own)?;
            if let Some(ipt6) = ipt6 {
                match ipt6.remove_stale_chains(&own) {
                    Ok(r) => removed.extend(r),
                    Err(e) => tracing::debug!("no stale ip6tables check: {e}"),
                }
            }
            Ok::<_, IptablesError>(removed)
        };
        match tokio::task::spawn_blocking(task).await {
            Ok(Ok(removed)) if !removed.is_empty() => {
                tracing::info!(?removed, "removed iptables chains of dead agents");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cannot check for stale iptables chains: {e}"),
            Err(e) => tracing::warn!("stale rule check panicked: {e}"),
        }
    }

    /// Creates this agent's chain (once), with its guard running first so that no rule can
    /// outlive the agent.
    async fn ensure_chain(&self) -> Result<(Iptables, Option<Iptables>), AgentError> {
        let mut rules = self.rules.lock().await;
        let ipt = self.iptables(&mut rules)?;
        if rules.chain_created {
            return Ok((ipt, rules.ipt6.clone()));
        }
        if rules.guard.is_none()
            && let Some(exe) = &self.guard_exe
        {
            let ip6 = rules.ipt6.as_ref().map(|i| i.program());
            let guard = Guard::spawn(exe, &self.chain, self.target.pid(), ipt.program(), ip6)
                .map_err(|e| {
                    AgentError::Other(format!(
                        "cannot start the iptables guard {}: {e}",
                        exe.display()
                    ))
                })?;
            tracing::debug!(pid = guard.pid(), chain = self.chain, "guard started");
            rules.guard = Some(guard);
        }
        let (i, chain) = (ipt.clone(), self.chain.clone());
        let comment = iptables::owner_comment(std::process::id());
        let res = tokio::task::spawn_blocking(move || {
            if let Err(e) = i.remove_stale_chains(&chain) {
                tracing::warn!("cannot check for stale iptables chains: {e}");
            }
            let res = i.create_chain(&chain, &comment);
            // Undo a half-made chain; the first error is the one worth reporting. Without the
            // binary or the capability nothing was made (the first call already failed).
            let undone = match &res {
                Ok(()) => false,
                Err(IptablesError::Missing(_) | IptablesError::PermissionDenied { .. }) => true,
                Err(_) => i.remove_chain(&chain).is_ok(),
            };
            (res, undone)
        })
        .await
        .map_err(|e| AgentError::Other(format!("iptables task failed: {e}")))?;
        if let (Err(e), undone) = res {
            // Nothing left to guard; a half-made chain that could not be undone stays guarded.
            if undone && let Some(guard) = rules.guard.take() {
                guard.disarm();
            }
            return Err(e.into());
        }
        tracing::info!(chain = self.chain, "iptables chain created");
        rules.chain_created = true;
        // IPv6 is best effort: a pod without IPv6 (or without ip6tables) still works on IPv4.
        if let Some(ipt6) = rules.ipt6.clone() {
            let (chain, comment) = (
                self.chain.clone(),
                iptables::owner_comment(std::process::id()),
            );
            let res = tokio::task::spawn_blocking(move || {
                let _ = ipt6.remove_stale_chains(&chain);
                let res = ipt6.create_chain(&chain, &comment);
                if res.is_err() {
                    let _ = ipt6.remove_chain(&chain);
                }
                res
            })
            .await;
            match res {
                Ok(Ok(())) => tracing::info!(chain = self.chain, "ip6tables chain created"),
                Ok(Err(e)) => {
                    tracing::warn!("no IPv6 redirects: {e}");
                    rules.ipt6 = None;
                }
                Err(e) => {
                    tracing::warn!("no IPv6 redirects: ip6tables task failed: {e}");
                    rules.ipt6 = None;
                }
            }
        }
        Ok((ipt, rules.ipt6.clone()))
    }

    /// Redirects `port` to a new listener in the target's netns and starts accepting.
    async fn open_port(self: &Arc<Self>, port: u16) -> Result<Port, AgentError> {
        let (ipt, ipt6) = self.ensure_chain().await?;
        let listener = self
            .target
            .netns()
            .run(|| -> std::io::Result<std::net::TcpListener> {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
                s.listen(1024)?;
                s.set_nonblocking(true)?;
                Ok(s.into())
            })
            .await
            .map_err(AgentError::from)?
            .and_then(TcpListener::from_std)
            .map_err(|e| {
                AgentError::Other(format!(
                    "cannot listen in the target's network namespace: {e}"
                ))
            })?;
        let listen_port = listener
            .local_addr()
            .map_err(|e| AgentError::Other(format!("redirect listener address: {e}")))?
            .port();
        let chain = self.chain.clone();
        tokio::task::spawn_blocking(move || ipt.add_redirect(&chain, port, listen_port))
            .await
            .map_err(|e| AgentError::Other(format!("iptables task failed: {e}")))??;
        tracing::info!(port, listen_port, "port redirected");
        let live = Arc::new(RwLock::new(PortSubs::default()));
        let mut accept = vec![tokio::spawn(accept_loop(
            self.clone(),
            port,
            listener,
            live.clone(),
        ))];
        let mut listen_port6 = None;
        if let Some(ipt6) = ipt6 {
            match self.open_port6(ipt6, port).await {
                Ok((listener6, p6)) => {
                    tracing::info!(port, listen_port = p6, "IPv6 port redirected");
                    listen_port6 = Some(p6);
                    accept.push(tokio::spawn(accept_loop(
                        self.clone(),
                        port,
                        listener6,
                        live.clone(),
                    )));
                }
                Err(e) => tracing::warn!(port, "no IPv6 redirect: {e}"),
            }
        }
        Ok(Port {
            listen_port,
            listen_port6,
            subs: Vec::new(),
            live,
            accept,
        })
    }

    /// The IPv6 half of [`Inner::open_port`].
    async fn open_port6(&self, ipt6: Iptables, port: u16) -> Result<(TcpListener, u16), String> {
        let listener = self
            .target
            .netns()
            .run(|| -> std::io::Result<std::net::TcpListener> {
                let s = Socket::new(Domain::IPV6, Type::STREAM, None)?;
                s.set_only_v6(true)?;
                s.set_reuse_address(true)?;
                s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)).into())?;
                s.listen(1024)?;
                s.set_nonblocking(true)?;
                Ok(s.into())
            })
            .await
            .map_err(|e| e.to_string())?
            .and_then(TcpListener::from_std)
            .map_err(|e| format!("cannot listen on IPv6 in the target's network namespace: {e}"))?;
        let p6 = listener.local_addr().map_err(|e| e.to_string())?.port();
        let chain = self.chain.clone();
        tokio::task::spawn_blocking(move || ipt6.add_redirect(&chain, port, p6))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok((listener, p6))
    }

    /// Stops redirecting a port with no subscriber left. Its connections go on.
    async fn close_port(&self, port: u16, p: Port) {
        let (ipt, ipt6) = {
            let rules = self.rules.lock().await;
            (rules.ipt.clone(), rules.ipt6.clone())
        };
        let Some(ipt) = ipt else { return };
        let (chain, listen_port, listen_port6) =
            (self.chain.clone(), p.listen_port, p.listen_port6);
        drop(p);
        let task = move || {
            if let (Some(ipt6), Some(p6)) = (ipt6, listen_port6)
                && let Err(e) = ipt6.remove_redirect(&chain, port, p6)
            {
                tracing::warn!(port, "cannot remove the IPv6 redirect: {e}");
            }
            ipt.remove_redirect(&chain, port, listen_port)
        };
        match tokio::task::spawn_blocking(task).await {
            Ok(Ok(())) => tracing::info!(port, "port released"),
            Ok(Err(e)) => tracing::warn!(port, "cannot remove the redirect: {e}"),
            Err(e) => tracing::warn!(port, "iptables task failed: {e}"),
        }
    }

    /// Drops `session`'s stolen connections and pending requests (of one port, or all).
    fn drop_traffic(&self, session: SessionId, port: Option<u16>) {
        let hit = |s: SessionId, p: u16| s == session && port.is_none_or(|port| port == p);
        // Dropping a connection's sender ends it; dropping a pending answer sends 502.
        self.conns
            .lock()
            .expect("conns lock")
            .retain(|_, c| !hit(c.session, c.port));
        self.mirrors
            .lock()
            .expect("mirrors lock")
            .retain(|(s, _), m| !hit(*s, m.port));
        self.pending
            .lock()
            .expect("pending lock")
            .retain(|_, p| !hit(p.session, p.port));
    }

    /// Removes `session` from `port`; closes the port when it was the last subscriber.
    async fn remove_sub(&self, ports: &mut HashMap<u16, Port>, session: SessionId, port: u16) {
        let Some(p) = ports.get_mut(&port) else {
            return;
        };
        p.subs.retain(|s| {
            let keep = s.session != session;
            if !keep {
                s.active.store(false, Ordering::Relaxed);
            }
            keep
        });
        if p.subs.is_empty() {
            if let Some(p) = ports.remove(&port) {
                self.close_port(port, p).await;
            }
        } else {
            p.refresh();
        }
    }
}

async fn accept_loop(
    inner: Arc<Inner>,
    port: u16,
    listener: TcpListener,
    live: Arc<RwLock<PortSubs>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(conn::handle(
                    inner.clone(),
                    port,
                    live.clone(),
                    stream,
                    peer,
                ));
            }
            Err(e) => {
                // Out of fds or similar: back off instead of spinning.
                tracing::warn!(port, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Refuses a subscription that overlaps another session's steal of the port.
fn check_conflict(
    existing: &[Sub],
    session: SessionId,
    mode: IncomingMode,
    filtered: bool,
    port: u16,
) -> Result<(), AgentError> {
    if mode != IncomingMode::Steal {
        return Ok(());
    }
    let clash = existing.iter().any(|s| {
        s.session != session && s.mode == IncomingMode::Steal && (!filtered || s.matcher.is_none())
    });
    if clash {
        Err(AgentError::PortAlreadyStolen { port })
    } else {
        Ok(())
    }
}

impl Incoming {
    /// Sets up incoming traffic for `target`; `agent_id` names the agent's iptables chain.
    /// Starts the removal of stale chains in the background. Must run inside a tokio runtime.
    pub fn new(target: Arc<Target>, agent_id: String) -> Result<Self, AgentError> {
        // /proc/self/exe still runs when the binary was replaced or deleted since the start.
        let exe = PathBuf::from("/proc/self/exe");
        Ok(Self::build(target, &agent_id, Some(exe)))
    }

    fn build(target: Arc<Target>, agent_id: &str, guard_exe: Option<PathBuf>) -> Self {
        let inner = Arc::new(Inner {
            chain: iptables::chain_name(std::process::id(), agent_id),
            target,
            guard_exe,
            rules: Default::default(),
            ports: Default::default(),
            conns: Default::default(),
            mirrors: Default::default(),
            pending: Default::default(),
            next_conn: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
        });
        let i = inner.clone();
        tokio::spawn(async move { i.remove_stale().await });
        let i = Arc::downgrade(&inner);
        let target = inner.target.clone();
        tokio::spawn(async move {
            target.gone().await;
            if let Some(i) = i.upgrade() {
                lose_all(&i, &format!("target process {} exited", i.target.pid())).await;
            }
        });
        Self { inner }
    }

    /// Starts mirroring or stealing `port` for `session`. A session that subscribes a port again
    /// replaces its subscription. `filter` only applies to steal.
    pub async fn subscribe(
        &self,
        session: SessionId,
        port: u16,
        mode: IncomingMode,
        filter: Option<HttpFilter>,
        to_session: mpsc::Sender<AgentMessage>,
    ) -> Result<(), AgentError> {
        self.inner.target.ensure_alive()?;
        let matcher = match (mode, filter) {
            (IncomingMode::Steal, Some(f)) => Some(Arc::new(
                Matcher::compile(&f).map_err(|e| AgentError::Other(e.to_string()))?,
            )),
            _ => None,
        };
        let mut ports = self.inner.ports.lock().await;
        if let Some(p) = ports.get(&port) {
            check_conflict(&p.subs, session, mode, matcher.is_some(), port)?;
        } else {
            let p = self.inner.open_port(port).await?;
            ports.insert(port, p);
        }
        let p = ports.get_mut(&port).expect("inserted above");
        for old in p.subs.iter().filter(|s| s.session == session) {
            old.active.store(false, Ordering::Relaxed);
        }
        p.subs.retain(|s| s.session != session);
        p.subs.push(Sub {
            session,
            mode,
            matcher,
            tx: to_session,
            active: Arc::new(AtomicBool::new(true)),
        });
        p.refresh();
        tracing::info!(session, port, ?mode, "subscribed");
        Ok(())
    }

    /// Stops `session`'s subscription of `port`; its stolen connections there are closed.
    /// Unsubscribing a port that is not subscribed is not an error.
    pub async fn unsubscribe(&self, session: SessionId, port: u16) -> Result<(), AgentError> {
        let mut ports = self.inner.ports.lock().await;
        self.inner.remove_sub(&mut ports, session, port).await;
        drop(ports);
        self.inner.drop_traffic(session, Some(port));
        tracing::info!(session, port, "unsubscribed");
        Ok(())
    }

    /// Data, credit or lifecycle from the session for a stolen connection, or credit and close
    /// for its copy of a mirrored one. Messages for connections the session does not own (closed
    /// ones, another session's) are dropped. Never waits: a session that sends past its window
    /// gets that connection closed.
    #[allow(clippy::wrong_self_convention)] // named for the data's direction: from the session
    pub fn from_session(&self, session: SessionId, msg: StreamMessage) {
        let conn_id = msg.conn_id();
        let closing = matches!(msg, StreamMessage::Close { .. });
        let pushed = {
            let mut conns = self.inner.conns.lock().expect("conns lock");
            match conns.get(&conn_id) {
                Some(c) if c.session == session => {
                    let pushed = c.tx.push(msg);
                    if closing {
                        // Closed by the session: no Close goes back.
                        conns.remove(&conn_id);
                    }
                    pushed
                }
                Some(_) => return,
                None => {
                    drop(conns);
                    let mut mirrors = self.inner.mirrors.lock().expect("mirrors lock");
                    let Some(m) = mirrors.get(&(session, conn_id)) else {
                        return;
                    };
                    let pushed = m.tx.push(msg);
                    if closing {
                        mirrors.remove(&(session, conn_id));
                    }
                    pushed
                }
            }
        };
        if let Err(violation) = pushed {
            tracing::warn!(
                session,
                conn_id,
                "closing the connection's stream: {violation}"
            );
            // The connection's task sees a Close carrying the violation and tells the session.
            let conns = self.inner.conns.lock().expect("conns lock");
            if let Some(c) = conns.get(&conn_id) {
                c.tx.fail(violation.to_string());
            } else if let Some(m) = self
                .inner
                .mirrors
                .lock()
                .expect("mirrors lock")
                .get(&(session, conn_id))
            {
                m.tx.fail(violation.to_string());
            }
        }
    }

    /// The session's answer to a stolen HTTP request.
    pub async fn http_response(&self, session: SessionId, resp: HttpResponse) {
        let mut pending = self.inner.pending.lock().expect("pending lock");
        if pending.get(&resp.id).is_some_and(|p| p.session == session)
            && let Some(p) = pending.remove(&resp.id)
        {
            let _ = p.tx.send(resp);
        }
    }

    /// Drops everything `session` had: subscriptions, stolen connections, pending requests.
    pub async fn release_session(&self, session: SessionId) {
        let mut ports = self.inner.ports.lock().await;
        let mine: Vec<u16> = ports
            .iter()
            .filter(|(_, p)| p.subs.iter().any(|s| s.session == session))
            .map(|(port, _)| *port)
            .collect();
        for port in mine {
            self.inner.remove_sub(&mut ports, session, port).await;
        }
        drop(ports);
        self.inner.drop_traffic(session, None);
    }
}

/// Ends every subscription, telling each session why (the target died).
async fn lose_all(inner: &Inner, reason: &str) {
    let ports: Vec<(u16, Port)> = inner.ports.lock().await.drain().collect();
    for (port, p) in ports {
        for s in &p.subs {
            let _ =
                s.tx.send(AgentMessage::Incoming(IncomingEvent::SubscriptionLost {
                    port,
                    reason: reason.to_owned(),
                }))
                .await;
            s.active.store(false, Ordering::Relaxed);
        }
        inner.close_port(port, p).await;
    }
    inner.conns.lock().expect("conns lock").clear();
    inner.mirrors.lock().expect("mirrors lock").clear();
    inner.pending.lock().expect("pending lock").clear();
}

#[cfg(test)]
mod tests;
