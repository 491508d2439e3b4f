//! Counters for `GET /metrics`, rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Frames of a type this broker does not know, sent without `_reqId`, and ignored.
    pub frames_ignored: AtomicU64,
    pub http_requests: AtomicU64,
    pub messages_stored: AtomicU64,
    pub messages_expired: AtomicU64,
    pub pushes_acked: AtomicU64,
    /// Ephemeral pushes not sent because the connection's budget for them was spent.
    pub events_dropped: AtomicU64,
    /// `messages_stored` over the last ten minutes, for the status page's rates.
    pub history: super::dashboard::History,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    claims: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

impl Metrics {
    pub fn error(&self, code: &'static str) {
        bump(&self.errors, code);
    }

    pub fn claim(&self, result: &'static str) {
        bump(&self.claims, result);
    }

    pub fn expired(&self, n: u64) {
        self.messages_expired.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of every counter, plus the live values passed in.
    pub fn render(&self, extra: &[(&str, &str, &str, u64)]) -> String {
        let mut out = String::new();
        let mut scalar = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        scalar(
            "claudemesh_connections",
            "gauge",
            "Open WebSocket connections.",
            load(&self.connections_open),
        );
        scalar(
            "claudemesh_connections_total",
            "counter",
            "WebSocket connections accepted since start.",
            load(&self.connections_total),
        );
        scalar(
            "claudemesh_frames_received_total",
            "counter",
            "WebSocket frames received.",
            load(&self.frames_in),
        );
        scalar(
            "claudemesh_frames_sent_total",
            "counter",
            "WebSocket frames sent.",
            load(&self.frames_out),
        );
        scalar(
            "claudemesh_frames_ignored_total",
            "counter",
            "WebSocket frames of an unknown type, without _reqId, ignored (as the original does).",
            load(&self.frames_ignored),
        );
        scalar(
            "claudemesh_http_requests_total",
            "counter",
            "HTTP requests served.",
            load(&self.http_requests),
        );
        scalar(
            "claudemesh_messages_stored_total",
            "counter",
            "Messages durably stored.",
            load(&self.messages_stored),
        );
        scalar(
            "claudemesh_messages_expired_total",
            "counter",
            "Queued messages dropped after the retention period.",
            load(&self.messages_expired),
        );
        scalar(
            "claudemesh_pushes_acknowledged_total",
            "counter",
            "Pushes acknowledged by clients.",
            load(&self.pushes_acked),
        );
        scalar(
            "claudemesh_events_dropped_total",
            "counter",
            "Ephemeral pushes (presence events, clock ticks) dropped over a connection's budget.",
            load(&self.events_dropped),
        );
        for (name, kind, help, value) in extra {
            scalar(name, kind, help, *value);
        }
        let mut labelled =
            |name: &str, help: &str, label: &str, map: &Mutex<BTreeMap<&'static str, u64>>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, v) in map.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
                }
            };
        labelled(
            "claudemesh_errors_total",
            "Error frames and refusals sent, by code.",
            "code",
            &self.errors,
        );
        labelled(
            "claudemesh_invite_claims_total",
            "Invite claims, by result.",
            "result",
            &self.claims,
        );
        out
    }
}

/// Appends a Prometheus histogram: `bounds` in seconds, `counts` per bucket (not cumulative)
/// with one more than `bounds` for everything above the last, and the sum in seconds.
pub fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut seen = 0;
    for (i, count) in counts.iter().enumerate() {
        seen += count;
        match bounds.get(i) {
            Some(le) => {
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {seen}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {seen}");
            }
        }
    }
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {seen}");
}

/// The process's resident set size (`VmRSS`), or 0 where /proc is unavailable.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The bearer token of `--metrics-token-file`, kept as its SHA-256 so it is never printed and
/// compares in constant time.
pub struct MetricsToken([u8; 32]);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(…)")
    }
}

/// Reads the token file (its first line, trimmed); `None` without a file.
pub fn load_token(path: Option<&std::path::Path>) -> Result<Option<MetricsToken>, String> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.len() < 16 {
        return Err(format!(
            "{} must hold a token of at least 16 characters",
            path.display()
        ));
    }
    Ok(Some(MetricsToken(crate::crypto::sha256(token.as_bytes()))))
}

/// Who may read `GET /metrics` (and the status page's numbers): with a token configured,
/// whoever presents it as `Authorization: Bearer <token>`; without one, loopback clients only,
/// so a broker listening publicly does not show its numbers to the world.
pub fn may_read<B>(broker: &super::state::Broker, req: &hyper::Request<B>) -> bool {
    match &broker.metrics_token {
        Some(MetricsToken(expected)) => super::http::bearer(req).is_some_and(|t| {
            crate::crypto::constant_time_eq(&crate::crypto::sha256(t.as_bytes()), expected)
        }),
        None => req
            .extensions()
            .get::<std::net::SocketAddr>()
            .is_some_and(|a| a.ip().to_canonical().is_loopback()),
    }
}

/// The answer to a `GET /metrics` that [`may_read`] refuses (counted as an error), if it does.
pub fn refusal<B>(
    broker: &super::state::Broker,
    req: &hyper::Request<B>,
) -> Option<hyper::Response<super::http::Body>> {
    use hyper::StatusCode;
    if may_read(broker, req) {
        return None;
    }
    let (status, code, message) = if broker.metrics_token.is_some() {
        (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "GET /metrics needs Authorization: Bearer <the token in --metrics-token-file>",
        )
    } else {
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            "metrics are served to loopback clients only; start the broker with --metrics-token-file to read them remotely",
        )
    };
    broker.metrics.error(code);
    let mut r = super::http::error_response(status, code, message);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    Some(r)
}
