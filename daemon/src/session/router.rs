//! Routes every layer connection of one session onto that session's agent connection.
//! Owns per-session state (remote fds, sockets, port subscriptions); nothing else writes it.
//!
//! **Invariant:** request ids are unique per layer connection only; they never reach the agent.
//! Each forwarded request gets a fresh agent-link id ([`AgentClient::request`]) and its answer is
//! written back under the layer's id, so two processes (or two pooled connections of one
//! process) may use the same ids at once.
//!
//! Process lifetime: a process is alive while it has a layer connection open. When its last one
//! closes (and it did not announce an exec), the router closes the remote fds only it held,
//! releases the ports it subscribed and drops its UDP relays.
//!
//! Every process's first connection and its release are published as [`RouterEvent`]s.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tether_protocol::agent::{Request, Response};
use tether_protocol::codec::{CodecError, FrameCodec};
use tether_protocol::error::{AgentError, RemoteError};
use tether_protocol::file::{FileRequest, FileResponse};
use tether_protocol::layer::{
    DaemonHello, DaemonMessage, LayerHello, LayerMessage, LayerPolicy, LayerRequest, LayerResponse,
};
use tether_protocol::{PROTOCOL_VERSION, RemoteFd};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::events::{self, DisconnectReason, LayerProcess, Meters, RouterEvent, add};
use super::incoming::{self, Subscription};
use super::outgoing;
use crate::agent_link::{AgentClient, RequestError};

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-process state.
#[derive(Debug, Default)]
pub(crate) struct Process {
    /// Open layer connections.
    conns: usize,
    /// The process announced an exec: its connections closing do not mean it died.
    exec_pending: bool,
    /// Remote fds this process may hold (opened here or inherited through fork).
    fds: HashSet<RemoteFd>,
    /// UDP relays, dropped with the process.
    relays: Vec<AbortHandle>,
}

/// Everything the session owns, behind one lock held only for map updates.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) processes: HashMap<u32, Process>,
    /// Which processes hold each remote fd; the fd is closed at the agent when none does.
    fd_holders: HashMap<RemoteFd, HashSet<u32>>,
    /// Subscribed ports in the target, by remote port.
    pub(crate) subscriptions: HashMap<u16, Subscription>,
    /// Remote fds handed out before the agent link was re-established: the agent closed them
    /// with the old connection and may hand the same numbers out again, so a process using one it
    /// does not hold anew gets `EBADF` rather than someone else's file.
    stale_fds: HashSet<RemoteFd>,
}

impl State {
    /// The agent link was re-established: every remote fd is gone.
    pub(crate) fn forget_fds(&mut self) {
        self.stale_fds
            .extend(self.fd_holders.drain().map(|(fd, _)| fd));
        for p in self.processes.values_mut() {
            self.stale_fds.extend(p.fds.drain());
        }
    }

    /// `fd` is from before a reconnect and `pid` has not been handed it since.
    fn is_stale(&self, pid: u32, fd: RemoteFd) -> bool {
        self.stale_fds.contains(&fd)
            && !self
                .processes
                .get(&pid)
                .is_some_and(|p| p.fds.contains(&fd))
    }
}

/// What every connection handler shares.
pub(crate) struct Shared {
    pub(crate) agent: AgentClient,
    pub(crate) policy: LayerPolicy,
    /// Ports the HTTP filter applies to; empty: all.
    pub(crate) filter_ports: Vec<u16>,
    token: String,
    pub(crate) state: Mutex<State>,
    /// Number of open layer connections, for the session's end.
    pub(crate) live: watch::Sender<usize>,
    /// Keep-alive connections for stolen HTTP requests.
    pub(crate) http_pool: incoming::HttpPool,
    /// Traffic counters.
    pub(crate) meters: Meters,
    /// Processes coming and going, sampled counters.
    pub(crate) events: broadcast::Sender<RouterEvent>,
}

impl Shared {
    pub(crate) fn new(
        agent: AgentClient,
        policy: LayerPolicy,
        filter_ports: Vec<u16>,
        token: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            agent,
            policy,
            filter_ports,
            token,
            state: Mutex::new(State::default()),
            live: watch::channel(0).0,
            http_pool: incoming::HttpPool::default(),
            meters: Meters::default(),
            events: broadcast::channel(events::CHANNEL_CAPACITY).0,
        })
    }

    /// Publishes an event; nobody listening is fine.
    pub(crate) fn publish(&self, event: RouterEvent) {
        let _ = self.events.send(event);
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a UDP relay so it dies with its process.
    pub(crate) fn add_relay(&self, pid: u32, relay: AbortHandle) {
        let mut st = self.lock();
        match st.processes.get_mut(&pid) {
            Some(p) => p.relays.push(relay),
            None => relay.abort(),
        }
    }
}

/// Constant-time string comparison, so the token cannot be guessed byte by byte from timing.
pub fn token_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// Serves one layer connection until it closes.
pub(crate) async fn serve_connection<R, W>(shared: Arc<Shared>, r: R, w: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FramedRead::new(r, FrameCodec::<DaemonMessage, LayerMessage>::new());
    let mut writer = FramedWrite::new(w, FrameCodec::<DaemonMessage, LayerMessage>::new());
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
        Ok(Some(Ok(LayerMessage::Hello(h)))) => h,
        Ok(Some(Ok(LayerMessage::Request { .. }))) => {
            let _ = writer
                .send(DaemonMessage::Refused(
                    "the first message must be a hello".into(),
                ))
                .await;
            return;
        }
        Ok(Some(Err(e))) => {
            tracing::debug!("layer connection: bad hello: {e}");
            return;
        }
        Ok(None) | Err(_) => return,
    };
    let version = match check_hello(&shared, &hello) {
        Ok(v) => v,
        Err(why) => {
            tracing::warn!(pid = hello.pid, "layer refused: {why}");
            let _ = writer.send(DaemonMessage::Refused(why)).await;
            return;
        }
    };
    let pid = hello.pid;
    register(&shared, &hello);
    // Unregisters even if this task panics or is cancelled, so the session can still end.
    let mut registration = Registration {
        shared: shared.clone(),
        pid,
        reason: DisconnectReason::Closed,
    };
    let answer = DaemonMessage::Hello(DaemonHello {
        protocol_version: version,
        policy: shared.policy.clone(),
    });
    if writer.send(answer).await.is_ok() {
        tracing::debug!(pid, exe = %hello.exe, "layer connected");
        while let Some(msg) = reader.next().await {
            let (id, body) = match msg {
                Ok(LayerMessage::Request { id, body }) => (id, body),
                Ok(LayerMessage::Hello(_)) => {
                    tracing::warn!(pid, "second hello on a layer connection");
                    registration.reason =
                        DisconnectReason::Error("second hello on a layer connection".into());
                    break;
                }
                Err(e) => {
                    tracing::debug!(pid, "layer connection: {e}");
                    // A process dying mid-frame is an exit like any other.
                    if !matches!(e, CodecError::Truncated | CodecError::Closed) {
                        registration.reason = DisconnectReason::Error(e.to_string());
                    }
                    break;
                }
            };
            let result = handle_request(&shared, pid, body).await;
            if writer
                .send(DaemonMessage::Response { id, result })
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

struct Registration {
    shared: Arc<Shared>,
    pid: u32,
    /// Why the connection ended, if it was the process's last.
    reason: DisconnectReason,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let reason = std::mem::replace(&mut self.reason, DisconnectReason::Closed);
        unregister(&self.shared, self.pid, reason);
    }
}

/// Spawns background cleanup if a runtime is still there (not during runtime shutdown).
fn spawn_cleanup(f: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(f);
    }
}

fn check_hello(shared: &Shared, hello: &LayerHello) -> Result<u32, String> {
    if !token_eq(&hello.token, &shared.token) {
        return Err("wrong session token".into());
    }
    tether_protocol::negotiate(PROTOCOL_VERSION, hello.protocol_version).ok_or_else(|| {
        format!(
            "protocol version mismatch: layer speaks {}, daemon speaks {PROTOCOL_VERSION}",
            hello.protocol_version
        )
    })
}

fn register(shared: &Shared, hello: &LayerHello) {
    let mut st = shared.lock();
    let State {
        processes,
        fd_holders,
        ..
    } = &mut *st;
    let is_new = !processes.contains_key(&hello.pid);
    // A forked child holds copies of its parent's remote fds, as the kernel would give it.
    let inherited: Vec<RemoteFd> = match processes.get(&hello.ppid) {
        Some(parent) if is_new => parent.fds.iter().copied().collect(),
        _ => Vec::new(),
    };
    let p = processes.entry(hello.pid).or_default();
    p.conns += 1;
    p.exec_pending = false;
    let first = p.conns == 1;
    for fd in inherited {
        p.fds.insert(fd);
        fd_holders.entry(fd).or_default().insert(hello.pid);
    }
    drop(st);
    if first {
        shared.publish(RouterEvent::LayerConnected(LayerProcess {
            pid: hello.pid,
            ppid: hello.ppid,
            exe: hello.exe.clone(),
            argv: hello.argv.clone(),
        }));
    }
    shared.live.send_modify(|n| *n += 1);
}

fn unregister(shared: &Arc<Shared>, pid: u32, reason: DisconnectReason) {
    let gone = {
        let mut st = shared.lock();
        let Some(p) = st.processes.get_mut(&pid) else {
            return;
        };
        p.conns -= 1;
        p.conns == 0 && !p.exec_pending
    };
    if gone {
        release_process(shared, pid, reason);
    } else {
        // An exec'd image reconnects with the same pid; if it never does, release after a while.
        let shared2 = shared.clone();
        spawn_cleanup(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let gone = shared2
                .lock()
                .processes
                .get(&pid)
                .is_some_and(|p| p.conns == 0);
            if gone {
                release_process(&shared2, pid, DisconnectReason::ExecLost);
            }
        });
    }
    shared.live.send_modify(|n| *n -= 1);
}

/// The process is gone: close what only it held, and say so.
fn release_process(shared: &Arc<Shared>, pid: u32, reason: DisconnectReason) {
    let (fds, ports, relays) = {
        let mut st = shared.lock();
        let Some(p) = st.processes.remove(&pid) else {
            return;
        };
        let mut orphaned = Vec::new();
        for fd in p.fds {
            if let Some(h) = st.fd_holders.get_mut(&fd) {
                h.remove(&pid);
                if h.is_empty() {
                    st.fd_holders.remove(&fd);
                    orphaned.push(fd);
                }
            }
        }
        let ports: Vec<u16> = st
            .subscriptions
            .iter()
            .filter(|(_, s)| s.pid == pid)
            .map(|(port, _)| *port)
            .collect();
        for port in &ports {
            st.subscriptions.remove(port);
        }
        (orphaned, ports, p.relays)
    };
    shared.publish(RouterEvent::LayerDisconnected { pid, reason });
    for r in relays {
        r.abort();
    }
    if fds.is_empty() && ports.is_empty() {
        return;
    }
    tracing::debug!(
        pid,
        ?fds,
        ?ports,
        "process gone: releasing its remote state"
    );
    let agent = shared.agent.clone();
    spawn_cleanup(async move {
        for fd in fds {
            let _ = agent
                .request(Request::File(FileRequest::Close { fd }))
                .await;
        }
        for port in ports {
            incoming::unsubscribe_remote(&agent, port).await;
        }
    });
}

/// errno values the router produces itself.
pub(crate) mod errno {
    pub(crate) const EIO: i32 = libc::EIO;
    pub(crate) const EPROTO: i32 = libc::EPROTO;
    pub(crate) const ECONNRESET: i32 = libc::ECONNRESET;
}

/// A failed agent request as the errno the hooked call returns. `network` picks `ECONNRESET`
/// over `EIO` when the link is down.
pub(crate) fn to_remote_error(e: RequestError, network: bool) -> RemoteError {
    match e {
        RequestError::Remote(r) => r,
        RequestError::Agent(a) => {
            let errno = match &a {
                AgentError::PortAlreadyStolen { .. } => libc::EADDRINUSE,
                AgentError::MissingCapability { .. } | AgentError::Unauthorized => libc::EPERM,
                AgentError::IptablesMissing { .. } => libc::ENOSYS,
                AgentError::Unsupported { .. } => libc::ENOSYS,
                AgentError::TargetGone { .. } => libc::ECONNRESET,
                AgentError::VersionMismatch { .. } | AgentError::Protocol(_) => libc::EPROTO,
                AgentError::Other(_) => libc::EIO,
            };
            RemoteError::new(errno, a.to_string())
        }
        RequestError::LinkDown(why) => RemoteError::new(
            if network {
                errno::ECONNRESET
            } else {
                errno::EIO
            },
            format!("agent link down: {why}"),
        ),
    }
}

pub(crate) fn unexpected(what: &str, got: &Response) -> RemoteError {
    RemoteError::new(
        errno::EPROTO,
        format!("agent answered a {what} request with {got:?}"),
    )
}

async fn handle_request(
    shared: &Arc<Shared>,
    pid: u32,
    body: LayerRequest,
) -> Result<LayerResponse, RemoteError> {
    match body {
        LayerRequest::File(req) => {
            add(&shared.meters.file_requests, 1);
            file_request(shared, pid, req)
                .await
                .map(LayerResponse::File)
        }
        LayerRequest::Dns(req) => {
            add(&shared.meters.dns_requests, 1);
            match shared.agent.request(Request::Dns(req)).await {
                Ok(Response::Dns(r)) => Ok(LayerResponse::Dns(r)),
                Ok(other) => Err(unexpected("dns", &other)),
                Err(e) => Err(to_remote_error(e, false)),
            }
        }
        LayerRequest::ConnectTcp { remote } => outgoing::connect_tcp(shared, remote).await,
        LayerRequest::ConnectUdp { remote } => outgoing::connect_udp(shared, pid, remote).await,
        LayerRequest::Listen { local, remote_port } => {
            incoming::listen(shared, pid, local, remote_port).await
        }
        LayerRequest::Unlisten { local } => incoming::unlisten(shared, local).await,
        LayerRequest::Exec { path } => {
            tracing::debug!(pid, %path, "exec");
            if let Some(p) = shared.lock().processes.get_mut(&pid) {
                p.exec_pending = true;
            }
            Ok(LayerResponse::Done)
        }
    }
}

async fn file_request(
    shared: &Arc<Shared>,
    pid: u32,
    req: FileRequest,
) -> Result<FileResponse, RemoteError> {
    if let Some(fd) = req.fd()
        && shared.lock().is_stale(pid, fd)
    {
        if matches!(req, FileRequest::Close { .. }) {
            // Already closed with the old agent connection: nothing left to do.
            return Ok(FileResponse::Done);
        }
        return Err(RemoteError::new(
            libc::EBADF,
            format!("remote fd {fd} was lost when the agent link was re-established"),
        ));
    }
    if let FileRequest::Close { fd } = req {
        // A fork shares the handle: only the last holder's close reaches the agent.
        let mut st = shared.lock();
        if let Some(p) = st.processes.get_mut(&pid) {
            p.fds.remove(&fd);
        }
        if let Some(h) = st.fd_holders.get_mut(&fd) {
            h.remove(&pid);
            if !h.is_empty() {
                return Ok(FileResponse::Done);
            }
            st.fd_holders.remove(&fd);
        }
    }
    let resp = match shared.agent.request(Request::File(req)).await {
        Ok(Response::File(r)) => r,
        Ok(other) => return Err(unexpected("file", &other)),
        Err(e) => return Err(to_remote_error(e, false)),
    };
    if let FileResponse::Opened { fd, .. } = &resp {
        let mut st = shared.lock();
        match st.processes.get_mut(&pid) {
            Some(p) => {
                p.fds.insert(*fd);
                st.fd_holders.entry(*fd).or_default().insert(pid);
            }
            None => {
                // The process vanished while opening: nobody will close the fd but us.
                let (agent, fd) = (shared.agent.clone(), *fd);
                tokio::spawn(async move {
                    let _ = agent
                        .request(Request::File(FileRequest::Close { fd }))
                        .await;
                });
            }
        }
    }
    Ok(resp)
}

/// A local loopback address in the family of `addr`, port 0.
pub(crate) fn loopback_like(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::token_eq;

    #[test]
    fn token_compare() {
        assert!(token_eq("abc", "abc"));
        assert!(!token_eq("abc", "abd"));
        assert!(!token_eq("abc", "abcd"));
        assert!(!token_eq("", "a"));
        assert!(token_eq("", ""));
    }
}
