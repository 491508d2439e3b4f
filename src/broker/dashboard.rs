//! The broker's status page for operators (issue 18 item 3): `GET /` and `GET /status`.
//!
//! One server-rendered page, no script, built from the numbers `/metrics` serves. What it shows
//! depends on who asks:
//! - anyone: the version, the uptime, whether storage takes writes;
//! - whoever may read `/metrics` (loopback, or the `--metrics-token-file` token): meshes,
//!   connections, message rates with a chart of the last ten minutes, storage;
//! - whoever presents the admin token (`Authorization: Bearer`, or the page's form): each mesh
//!   by name with its members and who is online.
//!
//! Never any message content: the broker holds only ciphertext, and this page reads counters.

use std::collections::VecDeque;
use std::fmt::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};

use super::http::{Body, html_escape, respond};
use super::state::Broker;
use crate::protocol::time;

/// How often the message counter is sampled, and how many samples are kept (ten minutes).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const SAMPLES: usize = 61;
/// Meshes listed by name for the admin; the rest are counted.
const MESHES_LISTED: usize = 200;
/// Files looked at when adding up the data directory's size.
const MAX_FILES_COUNTED: usize = 20_000;
/// The admin form's body: `token=…`, nothing more.
const MAX_FORM_BYTES: usize = 4096;

/// Samples of `messages_stored`: (time in ms, counter), oldest first.
#[derive(Default)]
pub struct History(Mutex<VecDeque<(i64, u64)>>);

impl History {
    fn record(&self, at_ms: i64, stored: u64) {
        let mut samples = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((at_ms, stored));
    }

    fn samples(&self) -> Vec<(i64, u64)> {
        let samples = self.0.lock().unwrap_or_else(|p| p.into_inner());
        samples.iter().copied().collect()
    }
}

/// Samples the message counter for the page's rates, until the broker stops.
pub async fn run_sampler(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stored = broker
            .metrics
            .messages_stored
            .load(std::sync::atomic::Ordering::Relaxed);
        broker.metrics.history.record(time::now_ms(), stored);
    }
}

/// How much the page may show.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Public,
    Operator,
    Admin,
}

/// `GET /`, `GET /status`, and `POST /status` (the admin token typed into the page's form).
pub async fn page(broker: Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    // Not `metrics::refusal`: a public visit to the page is not an error to count.
    let operator = super::metrics::may_read(&broker, &req);
    let bearer = super::http::bearer(&req).map(str::to_string);
    let (presented, posted) = if req.method() == Method::POST {
        (form_token(req).await, true)
    } else {
        (bearer, false)
    };
    let admin = presented.as_deref().is_some_and(|t| {
        crate::crypto::constant_time_eq(t.as_bytes(), broker.admin_token.as_bytes())
    });
    if posted && !admin {
        broker.metrics.error("unauthorized");
    }
    let level = match (admin, operator) {
        (true, _) => Level::Admin,
        (false, true) => Level::Operator,
        (false, false) => Level::Public,
    };
    let body = render(&broker, level, posted && !admin).await;
    let mut resp = respond(StatusCode::OK, "text/html; charset=utf-8", body);
    let headers = resp.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    resp
}

/// The `token` field of an `application/x-www-form-urlencoded` body of at most 4 KiB.
async fn form_token(req: Request<Incoming>) -> Option<String> {
    let bytes = super::http::read_body(req, MAX_FORM_BYTES).await.ok()?;
    form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
}

async fn render(broker: &Arc<Broker>, level: Level, wrong_token: bool) -> String {
    let uptime = broker.started.elapsed().as_secs();
    let writable = broker.store.failure().is_none();
    let mut out = String::new();
    let _ = write!(
        out,
        "<table><tr><th>version</th><td>{}</td></tr>\
         <tr><th>up</th><td>{}</td></tr>\
         <tr><th>storage</th><td>{}</td></tr></table>",
        env!("CARGO_PKG_VERSION"),
        duration_text(uptime),
        if writable {
            "takes writes"
        } else {
            "<b>refuses writes</b> (see the broker's log)"
        },
    );
    if level >= Level::Operator {
        operator_part(broker, &mut out).await;
    } else {
        // Who may see them, as `metrics::may_read` decides.
        out.push_str(if broker.metrics_token.is_some() {
            "<p>Numbers are shown with the token of <code>--metrics-token-file</code> \
             (<code>Authorization: Bearer</code>).</p>"
        } else {
            "<p>Numbers are shown to loopback clients (a broker started with \
             <code>--metrics-token-file</code> shows them to whoever has its token).</p>"
        });
    }
    if level == Level::Admin {
        admin_part(broker, &mut out);
    } else {
        if wrong_token {
            out.push_str("<p role=\"alert\"><b>That is not this broker's admin token.</b></p>");
        }
        out.push_str(
            "<form method=\"post\" action=\"/status\"><label>Admin token (meshes and members) \
             <input type=\"password\" name=\"token\" autocomplete=\"off\"></label> \
             <button>Show</button></form>",
        );
    }
    page_html(&out)
}

async fn operator_part(broker: &Arc<Broker>, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &broker.metrics;
    let meshes = broker.store.meshes(0).map(|(n, _)| n).unwrap_or(0);
    let samples = m.history.samples();
    let stored = m.messages_stored.load(Relaxed);
    let per_minute = |span_ms: i64| -> Option<f64> {
        let (t1, n1) = *samples.last()?;
        let (t0, n0) = *samples.iter().find(|(t, _)| t1 - t <= span_ms)?;
        (t1 > t0).then(|| n1.saturating_sub(n0) as f64 * 60_000.0 / (t1 - t0) as f64)
    };
    let rate = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.0}/min"));
    let dir = broker.config.data_dir.clone();
    let (bytes, files, all) = tokio::task::spawn_blocking(move || dir_size(&dir))
        .await
        .unwrap_or((0, 0, false));
    let _ = write!(
        out,
        "<h2>Now</h2><table>\
         <tr><th>meshes</th><td>{meshes}</td></tr>\
         <tr><th>peers connected</th><td>{peers}</td></tr>\
         <tr><th>WebSocket connections</th><td>{ws}</td></tr>\
         <tr><th>TCP connections</th><td>{tcp}</td></tr>\
         <tr><th>messages stored since start</th><td>{stored}</td></tr>\
         <tr><th>messages per minute</th><td>{last} (last minute) · {ten} (last 10 minutes)</td></tr>\
         <tr><th>pushes acknowledged</th><td>{acked}</td></tr>\
         <tr><th>messages expired</th><td>{expired}</td></tr>\
         <tr><th>data directory</th><td>{size} in {files}{more} files</td></tr>\
         <tr><th>resident memory</th><td>{rss}</td></tr></table>",
        peers = broker.presence.total(),
        ws = m.connections_open.load(Relaxed),
        tcp = broker.connections.open(),
        last = rate(per_minute(60_000)),
        ten = rate(per_minute(600_000)),
        acked = m.pushes_acked.load(Relaxed),
        expired = m.messages_expired.load(Relaxed),
        size = bytes_text(bytes),
        more = if all { "" } else { "+" },
        rss = bytes_text(super::metrics::resident_bytes()),
    );
    out.push_str(&chart(&samples));
}

fn admin_part(broker: &Arc<Broker>, out: &mut String) {
    let (count, meshes) = match broker.store.meshes(MESHES_LISTED) {
        Ok(m) => m,
        Err(e) => {
            let _ = write!(
                out,
                "<p>Meshes cannot be read: {}</p>",
                html_escape(&e.to_string())
            );
            return;
        }
    };
    let _ = write!(
        out,
        "<h2>Meshes</h2><table><tr><th>name</th><th>slug</th><th>members</th>\
         <th>online</th><th>created</th></tr>"
    );
    for mesh in &meshes {
        let members = broker.store.members(&mesh.id).unwrap_or_default();
        let active = members.iter().filter(|m| m.revoked_at_ms.is_none()).count();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{active}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&mesh.name),
            html_escape(&mesh.slug),
            broker.presence.count(&mesh.id),
            time::iso(mesh.created_at_ms),
        );
    }
    out.push_str("</table>");
    if count > meshes.len() as u64 {
        let _ = write!(out, "<p>and {} more</p>", count - meshes.len() as u64);
    }
}

/// Messages per minute over the kept samples, as an inline SVG bar chart (no script).
fn chart(samples: &[(i64, u64)]) -> String {
    let bars: Vec<f64> = samples
        .windows(2)
        .map(|w| {
            let ((t0, n0), (t1, n1)) = (w[0], w[1]);
            n1.saturating_sub(n0) as f64 * 60_000.0 / (t1 - t0).max(1) as f64
        })
        .collect();
    if bars.is_empty() {
        return "<p>The chart of messages per minute starts after the first 20 seconds.</p>".into();
    }
    let top = bars.iter().copied().fold(1.0, f64::max);
    let (w, h) = (600.0, 120.0);
    let step = w / (SAMPLES - 1) as f64;
    let mut svg = format!(
        "<h2>Messages per minute, last 10 minutes</h2>\
         <svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" \
         aria-label=\"messages per minute, peak {top:.0}\">"
    );
    let offset = (SAMPLES - 1 - bars.len()) as f64 * step;
    for (i, v) in bars.iter().enumerate() {
        let bh = v / top * (h - 14.0);
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"><title>{v:.0}/min</title></rect>",
            offset + i as f64 * step,
            h - bh,
            step * 0.8,
        );
    }
    let _ = write!(svg, "<text x=\"2\" y=\"11\">peak {top:.0}/min</text></svg>");
    svg
}

/// The data directory's size, the files counted, and whether all were (at most
/// [`MAX_FILES_COUNTED`] are looked at).
fn dir_size(dir: &Path) -> (u64, usize, bool) {
    let (mut bytes, mut files) = (0u64, 0usize);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if files >= MAX_FILES_COUNTED {
                return (bytes, files, false);
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    (bytes, files, true)
}

fn bytes_text(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn duration_text(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}min {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn page_html(body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>claudemesh broker</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;\
         color:CanvasText;background:Canvas}}\
         table{{border-collapse:collapse;margin:.5em 0}}th,td{{text-align:left;padding:.25em .75em .25em 0;\
         border-bottom:1px solid color-mix(in srgb,CanvasText 15%,transparent)}}\
         th{{font-weight:600}}svg rect{{fill:#4a7fd4}}svg text{{font-size:10px;fill:currentColor}}\
         input,button{{font:inherit}}</style></head><body>\
         <h1>claudemesh broker</h1>{body}</body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_read_as_people_write_them() {
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(3 << 20), "3.0 MiB");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(3 * 3600 + 120), "3h 2min");
        assert_eq!(duration_text(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn the_chart_has_one_bar_per_interval() {
        let samples = [(0, 0), (10_000, 100), (20_000, 100)];
        let svg = chart(&samples);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("600/min"), "{svg}");
        assert!(chart(&samples[..1]).contains("starts after"));
    }

    #[test]
    fn history_keeps_ten_minutes() {
        let h = History::default();
        for i in 0..100 {
            h.record(i, i as u64);
        }
        let kept = h.samples();
        assert_eq!(kept.len(), SAMPLES);
        assert_eq!(kept[0], (39, 39));
    }
}
