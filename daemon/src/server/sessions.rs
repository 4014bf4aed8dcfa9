//! The session registry: which sessions exist, their state, and their event streams.
//!
//! The session router (`crate::session`, another component) creates entries here and emits
//! events; the JSON-RPC handlers read them (`session.list`, `session.events`) and end them
//! (`session.stop`, `daemon.shutdown`). Ending is signalled through [`SessionEntry::cancelled`],
//! which the router awaits.
//!
//! Invariant: an entry's event history and its broadcast are updated under one lock, so a
//! subscriber that replays the history and then follows the broadcast sees every event exactly
//! once.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::{broadcast, watch};

use super::api::{EndReason, SessionEvent, SessionInfo, SessionState};

/// Events kept for replay per session (traffic counters are not kept: only the newest matters).
const HISTORY_LIMIT: usize = 256;

/// One session.
#[derive(Debug)]
pub struct SessionEntry {
    info: Mutex<SessionInfo>,
    events: Mutex<(Vec<SessionEvent>, broadcast::Sender<SessionEvent>)>,
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
        let (history, tx) = &mut *guard;
        if !matches!(event, SessionEvent::Traffic { .. }) {
            if history.len() == HISTORY_LIMIT {
                // Keep the first events (progress of the start), drop the oldest of the rest.
                history.remove(HISTORY_LIMIT / 2);
            }
            history.push(event.clone());
        }
        match &event {
            SessionEvent::Ready => self.update(|i| i.state = SessionState::Ready),
            SessionEvent::LayerConnected { .. } => self.update(|i| {
                i.layers += 1;
                i.state = SessionState::Ready;
            }),
            SessionEvent::LayerDisconnected { .. } => self.update(|i| {
                i.layers = i.layers.saturating_sub(1);
                if i.layers == 0 && i.state == SessionState::Ready {
                    i.state = SessionState::Lingering;
                }
            }),
            SessionEvent::Ended { .. } => self.update(|i| i.state = SessionState::Ended),
            _ => {}
        }
        // No receivers is fine: nobody is subscribed right now.
        let _ = tx.send(event);
    }

    /// The history so far and a receiver for what follows.
    pub fn subscribe(&self) -> (Vec<SessionEvent>, broadcast::Receiver<SessionEvent>) {
        let guard = self.events.lock().expect("session events poisoned");
        (guard.0.clone(), guard.1.subscribe())
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
            events: Mutex::new((Vec::new(), broadcast::channel(1024).0)),
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
        e.emit(SessionEvent::LayerConnected { pid: 7, exe: None });
        assert_eq!(
            rx.recv().await.unwrap(),
            SessionEvent::LayerConnected { pid: 7, exe: None }
        );
        assert_eq!(reg.list()[0].layers, 1);
        e.emit(SessionEvent::LayerDisconnected { pid: 7 });
        assert_eq!(e.info().state, SessionState::Lingering);
        assert!(!e.is_cancelled());
        reg.end("s-1", EndReason::Stopped, None).unwrap();
        assert!(e.is_cancelled());
        assert_eq!(e.cancelled().await, EndReason::Stopped);
        assert!(reg.get("s-1").is_none());
        assert!(reg.end("s-1", EndReason::Stopped, None).is_none());
    }
}
