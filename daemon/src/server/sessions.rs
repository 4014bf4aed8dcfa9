//! The session registry: which sessions exist, their state, and their event streams.
//!
//! The session router (`crate::session`, another component) creates entries here and emits
//! events; the JSON-RPC handlers read them (`session.list`, `session.events`) and end them
//! (`session.stop`, `daemon.shutdown`). Ending is signalled through [`SessionEntry::cancelled`],
//! which the router awaits.
//!
//! Invariant: an entry's event history and its broadcast are updated under one lock, so a
//! subscriber that replays the history and then follows the broadcast sees every event exactly
//! once. Traffic events are not kept in the history; a new subscriber gets the newest one right
//! after the replay (and before `ended`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::{broadcast, watch};

use super::api::{
    EndReason, LayerDisconnectReason, SessionEvent, SessionInfo, SessionState, TrafficCounters,
};
use crate::session::{self as router, DisconnectReason, RouterEvent};

/// Events kept for replay per session (traffic counters are not kept: only the newest matters).
const HISTORY_LIMIT: usize = 256;

/// An entry's events: the replay history, the newest traffic event, the live broadcast.
#[derive(Debug)]
struct Events {
    history: Vec<SessionEvent>,
    traffic: Option<SessionEvent>,
    tx: broadcast::Sender<SessionEvent>,
}

/// One session.
#[derive(Debug)]
pub struct SessionEntry {
    info: Mutex<SessionInfo>,
    events: Mutex<Events>,
    cancel: watch::Sender<Option<EndReason>>,
}

impl SessionEntry {
    /// A snapshot of the session's info.
    pub fn info(&self) -> SessionInfo {
        self.info.lock().expect("session info poisoned").clone()
    }

    /// Updates the session's info.
    pub fn update(&self, f: impl FnOnce(&mut SessionInfo)) {
        f(&mut self.info.lock().expect("session info poisoned"));
    }

    /// Publishes an event to subscribers and the replay history.
    pub fn emit(&self, event: SessionEvent) {
        let mut guard = self.events.lock().expect("session events poisoned");
        let Events {
            history,
            traffic,
            tx,
        } = &mut *guard;
        if matches!(event, SessionEvent::Traffic { .. }) {
            *traffic = Some(event.clone());
        } else {
            if history.len() == HISTORY_LIMIT {
                // Keep the first events (progress of the start), drop the oldest of the rest.
                history.remove(HISTORY_LIMIT / 2);
            }
            history.push(event.clone());
        }
        match &event {
            SessionEvent::Ready => self.update(|i| i.state = SessionState::Ready),
            // `layers` counts connections; the session's owner keeps it exact, this is a guess
            // for registries without a router.
            SessionEvent::LayerConnected { pid, .. } => self.update(|i| {
                if let Err(at) = i.pids.binary_search(pid) {
                    i.pids.insert(at, *pid);
                    i.layers += 1;
                }
                i.state = SessionState::Ready;
            }),
            SessionEvent::LayerDisconnected { pid, .. } => self.update(|i| {
                if let Ok(at) = i.pids.binary_search(pid) {
                    i.pids.remove(at);
                    i.layers = i.layers.saturating_sub(1);
                }
                if i.layers == 0 && i.state == SessionState::Ready {
                    i.state = SessionState::Lingering;
                }
            }),
            SessionEvent::Traffic { counters, .. } => self.update(|i| i.traffic = *counters),
            SessionEvent::Ended { .. } => self.update(|i| i.state = SessionState::Ended),
            _ => {}
        }
        // No receivers is fine: nobody is subscribed right now.
        let _ = tx.send(event);
    }

    /// The history so far (with the newest traffic event) and a receiver for what follows.
    pub fn subscribe(&self) -> (Vec<SessionEvent>, broadcast::Receiver<SessionEvent>) {
        let guard = self.events.lock().expect("session events poisoned");
        let mut history = guard.history.clone();
        if let Some(t) = &guard.traffic {
            let at = match history.last() {
                Some(SessionEvent::Ended { .. }) => history.len() - 1,
                _ => history.len(),
            };
            history.insert(at, t.clone());
        }
        (history, guard.tx.subscribe())
    }

    /// Resolves when the session is asked to end, with the reason.
    pub async fn cancelled(&self) -> EndReason {
        let mut rx = self.cancel.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(EndReason::Stopped),
            // The sender lives in self, so this cannot close while self is borrowed.
            Err(_) => EndReason::Stopped,
        }
    }

    /// Whether the session was asked to end.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.borrow().is_some()
    }
}

/// Every session of this daemon.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    sessions: Mutex<BTreeMap<String, Arc<SessionEntry>>>,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a session in state `starting`; its id is `info.id` (see [`new_session_id`]).
    pub fn insert(&self, mut info: SessionInfo) -> Arc<SessionEntry> {
        info.state = SessionState::Starting;
        let entry = Arc::new(SessionEntry {
            info: Mutex::new(info.clone()),
            events: Mutex::new(Events {
                history: Vec::new(),
                traffic: None,
                tx: broadcast::channel(1024).0,
            }),
            cancel: watch::channel(None).0,
        });
        self.sessions
            .lock()
            .expect("session registry poisoned")
            .insert(info.id, entry.clone());
        entry
    }

    /// The session with this id.
    pub fn get(&self, id: &str) -> Option<Arc<SessionEntry>> {
        self.sessions
            .lock()
            .expect("session registry poisoned")
            .get(id)
            .cloned()
    }

    /// Every session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .sessions
            .lock()
            .expect("session registry poisoned")
            .values()
            .map(|e| e.info())
            .collect();
        v.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        v
    }

    /// Asks the session to end, emits `ended`, and removes it. None when there is no such session.
    pub fn end(
        &self,
        id: &str,
        reason: EndReason,
        message: Option<String>,
    ) -> Option<Arc<SessionEntry>> {
        let entry = self
            .sessions
            .lock()
            .expect("session registry poisoned")
            .remove(id)?;
        entry.cancel.send_replace(Some(reason));
        entry.emit(SessionEvent::Ended { reason, message });
        Some(entry)
    }

    /// Ends every session; returns how many there were.
    pub fn end_all(&self, reason: EndReason) -> usize {
        let ids: Vec<String> = self
            .sessions
            .lock()
            .expect("session registry poisoned")
            .keys()
            .cloned()
            .collect();
        ids.iter()
            .filter(|id| self.end(id, reason, None).is_some())
            .count()
    }
}

impl From<router::TrafficCounters> for TrafficCounters {
    fn from(c: router::TrafficCounters) -> Self {
        Self {
            outgoing_bytes_up: c.outgoing_bytes_up,
            outgoing_bytes_down: c.outgoing_bytes_down,
            outgoing_connections: c.outgoing_connections,
            incoming_bytes_in: c.incoming_bytes_in,
            incoming_bytes_out: c.incoming_bytes_out,
            incoming_connections: c.incoming_connections,
            incoming_http_requests: c.incoming_http_requests,
            file_requests: c.file_requests,
            dns_requests: c.dns_requests,
            open_connections: c.open_connections,
        }
    }
}

impl SessionEvent {
    /// The `traffic` event for these counters.
    pub fn traffic(counters: TrafficCounters) -> Self {
        Self::Traffic {
            bytes_in: counters
                .outgoing_bytes_down
                .saturating_add(counters.incoming_bytes_in),
            bytes_out: counters
                .outgoing_bytes_up
                .saturating_add(counters.incoming_bytes_out),
            connections: u32::try_from(counters.open_connections).unwrap_or(u32::MAX),
            counters,
        }
    }
}

impl From<RouterEvent> for SessionEvent {
    fn from(ev: RouterEvent) -> Self {
        match ev {
            RouterEvent::LayerConnected(p) => SessionEvent::LayerConnected {
                pid: p.pid,
                exe: Some(p.exe),
                ppid: Some(p.ppid),
                argv: p.argv,
            },
            RouterEvent::LayerDisconnected { pid, reason } => {
                let (reason, message) = match reason {
                    DisconnectReason::Closed => (LayerDisconnectReason::Closed, None),
                    DisconnectReason::ExecLost => (LayerDisconnectReason::ExecLost, None),
                    DisconnectReason::Error(m) => (LayerDisconnectReason::Error, Some(m)),
                };
                SessionEvent::LayerDisconnected {
                    pid,
                    reason: Some(reason),
                    message,
                }
            }
            RouterEvent::Counters(c) => SessionEvent::traffic(c.into()),
            // A warning, not a new event kind: the session goes on, clients need no change.
            RouterEvent::AgentReconnected {
                attempts,
                cause,
                resubscribed,
                lost,
            } => {
                let mut message = format!(
                    "agent link re-established after {attempts} attempt(s) (it dropped: {cause}); \
                     requests in flight failed with EIO and open connections were closed"
                );
                if !resubscribed.is_empty() {
                    message += &format!("; ports subscribed again: {resubscribed:?}");
                }
                if !lost.is_empty() {
                    message += &format!("; ports no longer delivered: {lost:?}");
                }
                SessionEvent::Warning { message }
            }
        }
    }
}

/// A new session id: `s-` and 12 hex digits.
pub fn new_session_id() -> String {
    use rand::RngCore;
    format!("s-{:012x}", rand::rng().next_u64() & 0xffff_ffff_ffff)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            target: "pod/api".into(),
            namespace: None,
            context: None,
            state: SessionState::Ready,
            started_at: unix_now(),
            layers: 0,
            program: None,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn replay_then_follow_then_end() {
        let reg = SessionRegistry::new();
        let e = reg.insert(info("s-1"));
        assert_eq!(e.info().state, SessionState::Starting);
        e.emit(SessionEvent::Progress {
            step: "agent".into(),
            message: "starting agent".into(),
            done: false,
        });
        e.emit(SessionEvent::Ready);
        let (history, mut rx) = e.subscribe();
        assert_eq!(history.len(), 2);
        let connected = SessionEvent::LayerConnected {
            pid: 7,
            exe: None,
            ppid: Some(1),
            argv: vec![],
        };
        e.emit(connected.clone());
        assert_eq!(rx.recv().await.unwrap(), connected);
        assert_eq!(reg.list()[0].layers, 1);
        assert_eq!(reg.list()[0].pids, [7]);
        let counters = TrafficCounters {
            outgoing_bytes_up: 5,
            outgoing_bytes_down: 7,
            incoming_bytes_in: 1,
            ..Default::default()
        };
        e.emit(SessionEvent::traffic(counters));
        assert_eq!(e.info().traffic, counters);
        // Traffic is not history, but a late subscriber gets the newest one after the replay.
        let (history, _) = e.subscribe();
        assert_eq!(history.len(), 4);
        let SessionEvent::Traffic {
            bytes_in,
            bytes_out,
            ..
        } = history[3]
        else {
            panic!("{history:?}")
        };
        assert_eq!((bytes_in, bytes_out), (8, 5));
        e.emit(SessionEvent::LayerDisconnected {
            pid: 7,
            reason: Some(LayerDisconnectReason::Closed),
            message: None,
        });
        assert_eq!(e.info().state, SessionState::Lingering);
        assert!(e.info().pids.is_empty());
        assert!(!e.is_cancelled());
        reg.end("s-1", EndReason::Stopped, None).unwrap();
        assert!(e.is_cancelled());
        assert_eq!(e.cancelled().await, EndReason::Stopped);
        assert!(reg.get("s-1").is_none());
        assert!(reg.end("s-1", EndReason::Stopped, None).is_none());
    }
}
