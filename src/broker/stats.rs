//! What the broker counts per presence (issue 13, `mesh_stats`): plain atomics bumped on the
//! hot path, never stored.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::messages::PeerStats;

#[derive(Debug, Default)]
pub struct PeerCounters {
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    errors: AtomicU64,
}

impl PeerCounters {
    /// A message was pushed to this presence (the first time).
    pub fn pushed(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// A message this presence sent was stored.
    pub fn sent(&self) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
    }

    /// This presence was refused something.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, connected_at_ms: i64, now_ms: i64) -> PeerStats {
        PeerStats {
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            uptime: (now_ms.saturating_sub(connected_at_ms) / 1000).max(0) as u64,
        }
    }
}
