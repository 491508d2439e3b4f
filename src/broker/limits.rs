//! Rate limits: a token bucket per key (member for sends, pid+cwd for hooks).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

// --- What one member may make others store, list and download (issue 10, "lists cannot be
// poisoned"). Sizes are UTF-8 bytes. Each bounds one entry of a list; paging bounds the list.

/// `cwd` of a hello (PATH_MAX on Linux).
pub const MAX_CWD_BYTES: usize = 4096;
/// The other short hello fields: `sessionId`, `hostname`, `peerType`, `channel`, `model`,
/// `peerRole`.
pub const MAX_PEER_FIELD_BYTES: usize = 256;
/// `set_summary`.
pub const MAX_SUMMARY_BYTES: usize = 1024;
/// `set_profile` fields.
pub const MAX_AVATAR_BYTES: usize = 1024;
pub const MAX_TITLE_BYTES: usize = 256;
pub const MAX_BIO_BYTES: usize = 1024;
pub const MAX_CAPABILITIES: usize = 32;
pub const MAX_CAPABILITY_BYTES: usize = 64;
/// A group name (`[A-Za-z0-9-_.]`, `/` between subgroups) and a group role.
pub const MAX_GROUP_NAME: usize = 64;
/// Groups one member (or one hello) may be in.
pub const MAX_GROUPS_PER_MEMBER: usize = 32;
/// A state key, and a state value as JSON text.
pub const MAX_STATE_KEY_BYTES: usize = 256;
pub const MAX_STATE_VALUE_BYTES: usize = 32 * 1024;

// --- Pages of list replies (`list_state`, `list_peers`, `list_tasks`, `list_files`, `recall`,
// `list_contexts`): a page stops at whichever bound comes first.

/// Entries in a page when the request gives no `limit`.
pub const DEFAULT_PAGE_ITEMS: usize = 100;
/// Largest `limit` honoured.
pub const MAX_PAGE_ITEMS: usize = 500;
/// Encoded (JSON) bytes of a page's entries: half of `MAX_MESSAGE_BYTES`, so a page fits any
/// client's frame limit with room to spare. A single larger entry still goes, alone.
pub const PAGE_BYTES: usize = 32 * 1024;
/// Rows a filtered list reads for one page; a page may come back short (even empty) with a
/// `nextCursor` when few rows match, so no request reads a whole table.
pub const PAGE_SCAN_ROWS: usize = 2000;

/// Disconnected sessions kept for their 90 s lease, per mesh: at most this share of the
/// connection cap (1/4), oldest evicted first, so hello-and-close cycles cannot fill the cap.
pub const LINGERING_SHARE: usize = 4;

/// Token buckets that refill at `rate` per second up to `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate_per_sec,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Idle buckets are full anyway; forgetting them changes nothing.
            let burst = self.burst;
            let rate = self.rate;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn burst(&self) -> f64 {
        self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal() {
        let l = RateLimiter::new(0.001, 3.0);
        assert!(l.allow("a") && l.allow("a") && l.allow("a"));
        assert!(!l.allow("a"));
        assert!(l.allow("b"));
    }
}
