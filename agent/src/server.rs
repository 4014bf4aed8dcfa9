//! The listener: accepts connections, runs one session task per connection, and exits after the
//! idle TTL with no session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::dns::Resolver;
use crate::incoming::Incoming;
use crate::session::{self, SessionId};
use crate::target::Target;

/// State shared by all sessions.
#[derive(Debug)]
pub struct Shared {
    /// The target.
    pub target: Arc<Target>,
    /// Port subscriptions of all sessions.
    pub incoming: Arc<Incoming>,
    /// Name resolution in the target.
    pub resolver: Arc<Resolver>,
    token: String,
    next_session: AtomicU64,
    active: watch::Sender<usize>,
}

impl Shared {
    /// Shared state for the agent's sessions.
    pub fn new(target: Arc<Target>, incoming: Arc<Incoming>, token: String) -> Self {
        Self {
            resolver: Arc::new(Resolver::new(target.clone())),
            target,
            incoming,
            token,
            next_session: AtomicU64::new(1),
            active: watch::channel(0).0,
        }
    }

    /// Whether `token` is the session token, compared in constant time.
    pub fn token_matches(&self, token: &str) -> bool {
        let (a, b) = (self.token.as_bytes(), token.as_bytes());
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        diff == 0 && a.len() == b.len()
    }

    /// Registers a new session; the guard unregisters it when dropped.
    pub fn begin_session(self: &Arc<Self>) -> SessionGuard {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.active.send_modify(|n| *n += 1);
        SessionGuard {
            shared: self.clone(),
            id,
        }
    }
}

/// Counts a live session for the idle TTL.
#[derive(Debug)]
pub struct SessionGuard {
    shared: Arc<Shared>,
    /// The session's id.
    pub id: SessionId,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.shared.active.send_modify(|n| *n -= 1);
    }
}

/// Accepts sessions until the agent was idle (no session) for `ttl`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, ttl: Duration) {
    let idle = idle_for(shared.active.subscribe(), ttl);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            () = &mut idle => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(session::run(shared.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Resolves once the session count stayed at zero for `ttl`; never for a zero `ttl`.
async fn idle_for(mut active: watch::Receiver<usize>, ttl: Duration) {
    if ttl.is_zero() {
        return std::future::pending().await;
    }
    loop {
        if active.wait_for(|n| *n == 0).await.is_err() {
            return;
        }
        if tokio::time::timeout(ttl, active.wait_for(|n| *n > 0))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_last_session_then_the_ttl() {
        let (tx, rx) = watch::channel(1usize);
        let idle = tokio::spawn(idle_for(rx, Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!idle.is_finished(), "a live session keeps the agent up");
        tx.send_replace(0);
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send_replace(1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send_replace(0);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!idle.is_finished(), "a new session restarts the TTL");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(idle.is_finished());
    }
}
