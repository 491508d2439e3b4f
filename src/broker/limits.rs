//! Rate limits: a token bucket per key (member for sends, member+pid+cwd for hooks), and caps
//! on open connections in total and per IP address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state::Broker;
use crate::HashMap;

// --- What one member may make others store, list and download (issue 10, "lists cannot be
// poisoned"). Sizes are UTF-8 bytes. Each bounds one entry of a list; paging bounds the list.

/// `cwd` of a hello (PATH_MAX on Linux).
pub const MAX_CWD_BYTES: usize = 4096;
/// The other short hello fields: `sessionId`, `hostname`, `peerType`, `channel`, `model`,
/// `peerRole`.
pub const MAX_PEER_FIELD_BYTES: usize = 256;
/// `set_summary`.
pub const MAX_SUMMARY_BYTES: usize = 1024;
/// `set_profile` fields. An avatar is an emoji (a ZWJ family sequence is 25 bytes).
pub const MAX_AVATAR_BYTES: usize = 32;
pub const MAX_ROLE_TAG_BYTES: usize = 64;
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
    /// Most keys tracked; past it the least recently used are forgotten.
    max_keys: usize,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        RateLimiter::bounded(rate_per_sec, burst, 100_000)
    }

    /// A limiter that tracks at most `max_keys` keys.
    pub fn bounded(rate_per_sec: f64, burst: f64, max_keys: usize) -> Self {
        RateLimiter {
            rate: rate_per_sec,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::default()),
            max_keys: max_keys.max(1),
        }
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Brings the map under its bound: full buckets are forgotten first (an idle bucket is
    /// full anyway, so nothing changes), then the least recently used eighth.
    fn make_room(&self, buckets: &mut HashMap<String, (f64, Instant)>, now: Instant) {
        let (burst, rate) = (self.burst, self.rate);
        buckets.retain(|_, (tokens, at)| {
            *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
        });
        if buckets.len() < self.max_keys {
            return;
        }
        let mut ages: Vec<Instant> = buckets.values().map(|(_, at)| *at).collect();
        let evict = (self.max_keys / 8).max(1).min(ages.len() - 1);
        let (_, cutoff, _) = ages.select_nth_unstable(evict);
        let cutoff = *cutoff;
        buckets.retain(|_, (_, at)| *at > cutoff);
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            self.make_room(&mut buckets, now);
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

/// Open TCP connections, in total and per IP address (`--max-connections`,
/// `--max-connections-per-ip`), counted from accept to close (a WebSocket's whole life).
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    /// Refusals still being written to their sockets.
    refusing: AtomicUsize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    PerIp(usize),
}

/// One admitted connection; dropping it frees its place.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            open: Mutex::default(),
            total: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
        })
    }

    /// A place for a new connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Arc<ConnectionSlot>, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let n = open.entry(ip).or_default();
        if *n >= self.max_per_ip {
            return Err(Refused::PerIp(self.max_per_ip));
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(ConnectionSlot {
            limits: self.clone(),
            ip,
        }))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// Refusals written at once; past this a refused socket is just closed.
const MAX_REFUSING: usize = 256;
/// How long a refusal may take (reading the request head, writing the answer).
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Answers a connection over a cap with `429` (per IP) or `503` (all clients) and a sentence,
/// then closes it. The request head is read first, so the client is not reset before it
/// reads the answer; a WebSocket client sees the status in its failed handshake. On a TLS port
/// the answer goes over TLS, within the same time.
pub fn refuse_connection(
    broker: &Arc<Broker>,
    stream: TcpStream,
    tls: Option<super::tls::TlsAcceptor>,
    refused: Refused,
) {
    let (status, code, message) = match refused {
        Refused::PerIp(n) => (
            "429 Too Many Requests",
            "too_many_connections",
            format!(
                "this IP address already has the maximum of {n} open connections to this broker; close some and retry"
            ),
        ),
        Refused::Total(n) => (
            "503 Service Unavailable",
            "broker_full",
            format!("the broker has the maximum of {n} open connections; retry later"),
        ),
    };
    broker.metrics.error(code);
    let limits = broker.connections.clone();
    if limits.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        limits.refusing.fetch_sub(1, Ordering::Relaxed);
        return; // dropped: closed without an answer
    }
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 5\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            match tls {
                None => write_refusal(stream, &answer).await,
                Some(acceptor) => {
                    if let Ok(Some(stream)) = acceptor.accept(stream).await {
                        write_refusal(stream, &answer).await;
                    }
                }
            }
        })
        .await;
        limits.refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

async fn write_refusal<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &str) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
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

    #[test]
    fn keys_stay_bounded() {
        let l = RateLimiter::bounded(0.001, 3.0, 100);
        for i in 0..10_000 {
            assert!(l.allow(&format!("k{i}")));
            assert!(l.keys() <= 100);
        }
        // A new key still gets its burst, then is refused.
        assert!(l.allow("held") && l.allow("held") && l.allow("held"));
        assert!(!l.allow("held"));
    }
}
