//! URL watches (PROTOCOL.md §21): one polling task per watch, started when the watch is made
//! and, for every stored watch, when the broker starts (from its last check, so a restart
//! resumes the schedule and compares against the last value kept). A poll that finds the
//! value changed (or matching, or no longer matching) sends a `subtype:"watch"` message from
//! the watch's member to its target, carrying the old and the new value.

pub mod fetch;
pub mod ssrf;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json_path::JsonPath;
use tokio::task::AbortHandle;

use super::on_behalf::{self, Outgoing};
use super::state::Broker;
use crate::crypto;
use crate::protocol::messages::{Permission, WatchTriggered};
use crate::protocol::time;
use crate::store::{PollOutcome, WatchRecord};

/// Most watches one mesh may have.
pub const MAX_PER_MESH: usize = 100;
/// The longest back-off after failures (unless the interval itself is longer).
const MAX_BACKOFF_MS: u64 = 3600 * 1000;
/// Longest value kept and sent (a JSON value can be a large object).
const MAX_VALUE_CHARS: usize = 4096;

/// What a watch compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SHA-256 of the body, hex.
    Hash,
    /// The value at a JSONPath.
    Json,
    /// The HTTP status code.
    Status,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "hash" => Mode::Hash,
            "json" => Mode::Json,
            "status" => Mode::Status,
            _ => return None,
        })
    }
}

/// When a watch tells its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOn {
    /// Whenever the value differs from the last one (not on the first poll).
    Change,
    /// When the value becomes equal to this.
    Match(String),
    /// When the value becomes something other than this.
    NotMatch(String),
}

impl NotifyOn {
    pub fn parse(s: &str) -> Option<NotifyOn> {
        if s == "change" {
            return Some(NotifyOn::Change);
        }
        if let Some(v) = s.strip_prefix("not_match:") {
            return Some(NotifyOn::NotMatch(v.to_string()));
        }
        s.strip_prefix("match:")
            .map(|v| NotifyOn::Match(v.to_string()))
    }

    /// Whether a poll that found `new` after `old` (`None`: the first poll) tells the target:
    /// a change, or a value that newly meets the condition.
    pub fn fires(&self, old: Option<&str>, new: &str) -> bool {
        let changed = old != Some(new);
        match self {
            NotifyOn::Change => old.is_some() && changed,
            NotifyOn::Match(v) => changed && new == v,
            NotifyOn::NotMatch(v) => changed && new != v,
        }
    }
}

/// The longest `extract` a watch may have.
pub const MAX_EXTRACT_CHARS: usize = 256;
/// Commas (between union selectors: `[0,1]`, `['a','b']`) a watch's `extract` may have in all.
const MAX_EXTRACT_UNION_SELECTORS: usize = 4;

/// Why a JSONPath is too costly to run on every poll, if it is. The engine builds each step's
/// nodes in full and keeps duplicates, so paths that multiply them (a second `..`, a `..` inside
/// a filter, which runs once per node, or unions one after the other) could make one 1 MiB body
/// cost gigabytes: a watch keeps to a single `..` outside filters and a few union selectors.
pub fn costly_extract(path: &str) -> Option<String> {
    if path.chars().count() > MAX_EXTRACT_CHARS {
        return Some(format!("extract is at most {MAX_EXTRACT_CHARS} characters"));
    }
    // Quoted names may hold any character: look at the path with them left out.
    let mut bare = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in path.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => bare.push(c),
        }
    }
    let descendants = bare.matches("..").count();
    if descendants > 1 || (descendants == 1 && bare.contains('?')) {
        return Some(
            "extract may hold one descendant segment (..), and none with a filter (?): \
             those multiply the work on every poll"
                .into(),
        );
    }
    if bare.matches(',').count() > MAX_EXTRACT_UNION_SELECTORS {
        return Some(format!(
            "extract may hold at most {MAX_EXTRACT_UNION_SELECTORS} commas (union selectors)"
        ));
    }
    None
}

/// The value a poll found: per mode, from the status and the body.
pub fn value_of(
    mode: Mode,
    extract: Option<&str>,
    fetched: &fetch::Fetched,
) -> Result<String, String> {
    if mode == Mode::Status {
        return Ok(fetched.status.to_string());
    }
    if fetched.status >= 400 {
        return Err(format!("HTTP {}", fetched.status));
    }
    let value = match mode {
        Mode::Hash => hex::encode(crypto::sha256(&fetched.body)),
        _ => {
            let path = JsonPath::parse(extract.unwrap_or("$"))
                .map_err(|e| format!("bad JSONPath: {e}"))?;
            let doc: serde_json::Value = serde_json::from_slice(&fetched.body)
                .map_err(|e| format!("the body is not JSON: {e}"))?;
            match path.query(&doc).first() {
                None => return Err("the JSONPath matched nothing".into()),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            }
        }
    };
    Ok(value.chars().take(MAX_VALUE_CHARS).collect())
}

/// The running polling tasks, by (mesh, watch id).
#[derive(Default)]
pub struct Watches {
    running: Mutex<HashMap<(String, String), AbortHandle>>,
}

impl Watches {
    fn insert(&self, mesh_id: &str, watch_id: &str, task: AbortHandle) {
        if let Ok(mut map) = self.running.lock()
            && let Some(old) = map.insert((mesh_id.to_string(), watch_id.to_string()), task)
        {
            old.abort();
        }
    }

    /// Stops a watch's polling (after `unwatch` removed it).
    pub fn stop(&self, mesh_id: &str, watch_id: &str) {
        if let Ok(mut map) = self.running.lock()
            && let Some(task) = map.remove(&(mesh_id.to_string(), watch_id.to_string()))
        {
            task.abort();
        }
    }
}

/// Starts polling every stored watch (at broker start).
pub fn resume_all(broker: &Arc<Broker>) {
    let watches = match broker.store.all_watches() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot read the stored watches; none is polled: {e}");
            return;
        }
    };
    let now = time::now_ms();
    for w in watches {
        // From the last check: an overdue watch polls at once, the others on their schedule.
        let due_in = w
            .last_check_ms
            .map_or(0, |at| (at + (w.interval_s * 1000) as i64 - now).max(0));
        start(
            broker,
            &w,
            Duration::from_millis(due_in as u64 + jitter_ms(w.interval_s)),
        );
    }
}

/// Starts polling `w`, its first poll after `first`.
pub fn start(broker: &Arc<Broker>, w: &WatchRecord, first: Duration) {
    let task = broker
        .tasks
        .spawn(run(broker.clone(), w.mesh_id.clone(), w.id.clone(), first));
    broker
        .watches
        .insert(&w.mesh_id, &w.id, task.abort_handle());
}

/// How long to wait before the next poll: the interval, doubled per failure in a row (up to an
/// hour, or the interval when that is longer), plus up to a tenth of the interval (at most 30 s)
/// of jitter so that watches made together do not poll together.
fn next_delay(interval_s: u64, failures: u32) -> Duration {
    let base = interval_s * 1000;
    let wait = match failures {
        0 => base,
        n => (base << n.min(16)).min(base.max(MAX_BACKOFF_MS)),
    };
    Duration::from_millis(wait + jitter_ms(interval_s))
}

/// Up to a tenth of the interval, at most 30 s.
fn jitter_ms(interval_s: u64) -> u64 {
    crypto::random_u32_below((interval_s * 100).clamp(1, 30_000) as u32) as u64
}

async fn run(broker: Arc<Broker>, mesh_id: String, watch_id: String, first: Duration) {
    let mut delay = first;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let w = match broker.store.watch(&mesh_id, &watch_id) {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(watch = %watch_id, "cannot read the watch: {e}");
                delay = next_delay(60, 0);
                continue;
            }
        };
        let failures = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            f = poll(&broker, &w) => f,
        };
        match failures {
            Some(failures) => delay = next_delay(w.interval_s, failures),
            None => return,
        }
    }
}

/// One poll: fetch, compare, tell the target, keep the value. The failures in a row after it,
/// or `None` when the watch is gone.
async fn poll(broker: &Broker, w: &WatchRecord) -> Option<u32> {
    // A watch of a banned member, or of one who lost `watches`, fetches nothing (its sealed
    // headers are not used) until the member may watch again.
    let found = if !may_watch(broker, w) {
        Err("its member is banned or no longer holds \"watches\"".to_string())
    } else {
        match headers_of(broker, w) {
            Ok(headers) => {
                match fetch::get(&w.url, &headers, broker.config.allow_private_watch_targets).await
                {
                    // Parsing and querying up to 1 MiB of JSON is off the async workers.
                    Ok(f) => {
                        let (mode, extract) = (
                            Mode::parse(&w.mode).unwrap_or(Mode::Hash),
                            w.extract.clone(),
                        );
                        tokio::task::spawn_blocking(move || value_of(mode, extract.as_deref(), &f))
                            .await
                            .unwrap_or_else(|e| Err(format!("reading the answer failed: {e}")))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(why) => Err(why),
        }
    };
    let now = time::now_ms();
    let (outcome, failures) = match found {
        Err(why) => {
            tracing::debug!(watch = %w.id, "poll failed: {why}");
            (PollOutcome::Failed(why), w.failures.saturating_add(1))
        }
        Ok(value) => {
            let fires = NotifyOn::parse(&w.notify_on)
                .is_some_and(|n| n.fires(w.last_value.as_deref(), &value));
            let notified = fires && notify(broker, w, &value, now).await;
            (PollOutcome::Value { value, notified }, 0)
        }
    };
    match broker
        .store
        .record_poll(w.mesh_id.clone(), w.id.clone(), outcome, now)
        .await
    {
        Ok(true) => Some(failures),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(watch = %w.id, "cannot record the poll: {e}");
            Some(failures.max(1))
        }
    }
}

/// The custom headers, opened with the service key.
fn headers_of(broker: &Broker, w: &WatchRecord) -> Result<Vec<(String, String)>, String> {
    if w.sealed_headers.is_empty() {
        return Ok(Vec::new());
    }
    let key = broker
        .service_key
        .as_ref()
        .ok_or("the broker has no service key to open the headers with")?;
    let opened = key
        .open(&w.sealed_headers)
        .map_err(|_| "the stored headers cannot be opened (service.key was replaced?)")?;
    serde_json::from_slice(&opened).map_err(|_| "the stored headers are unreadable".into())
}

/// Whether the watch's member is active (not revoked or banned) and holds `watches` (`holds`
/// is false for a removed or banned member).
fn may_watch(broker: &Broker, w: &WatchRecord) -> bool {
    broker
        .store
        .holds(&w.mesh_id, &w.member_id, Permission::Watches)
        .unwrap_or(false)
}

/// Sends the `subtype:"watch"` message; whether it was stored. Nothing is sent for a member
/// that is gone, banned or no longer holds `watches`.
async fn notify(broker: &Broker, w: &WatchRecord, value: &str, now: i64) -> bool {
    let member = match broker.store.member(&w.mesh_id, &w.member_id) {
        Ok(Some(m)) => m,
        _ => return false,
    };
    if !may_watch(broker, w) {
        tracing::info!(watch = %w.id, "not notifying: its member is gone, banned or lost \"watches\"");
        return false;
    }
    let text = serde_json::to_string(&WatchTriggered {
        watch_id: w.id.clone(),
        url: w.url.clone(),
        label: w.label.clone(),
        mode: w.mode.clone(),
        old_value: w.last_value.clone(),
        new_value: value.to_string(),
        notify_on: w.notify_on.clone(),
        timestamp: time::iso(now),
    })
    .unwrap_or_default();
    let (nonce, ciphertext, body_version) = Outgoing::in_clear(&text);
    let out = Outgoing {
        member: &member,
        sender_pubkey: member.pubkey.to_hex(),
        sender_name: format!("watch:{}", w.label.as_deref().unwrap_or(&w.id)),
        to: &w.target,
        nonce,
        ciphertext,
        body_version,
        key_epoch: 0,
        subtype: "watch",
        client_message_id: format!("watch-{}-{}", w.id, w.notified),
    };
    match on_behalf::deliver(broker, out, now).await {
        Ok(Ok(())) => true,
        Ok(Err(why)) => {
            tracing::info!(watch = %w.id, "watch message not sent: {why}");
            false
        }
        Err(e) => {
            tracing::warn!(watch = %w.id, "cannot store the watch message: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn extracts_that_multiply_work_are_refused() {
        for fine in [
            "$.status",
            "$..name",
            "$.items[?(@.ok == true)].id",
            "$['a,b..c']",
            "$[0,1,2]",
        ] {
            assert_eq!(costly_extract(fine), None, "{fine}");
        }
        for costly in [
            "$..*..*",
            "$..a..b",
            "$[?(@..x)]",
            "$..a[?(@.b)]",
            "$[0,0,0][0,0,0,0]",
            &format!("$.{}", "a".repeat(MAX_EXTRACT_CHARS)),
        ] {
            assert!(costly_extract(costly).is_some(), "{costly}");
        }
    }

    use super::*;

    #[test]
    fn notify_on_fires_on_a_change_or_a_newly_met_condition() {
        let change = NotifyOn::parse("change").unwrap();
        assert!(
            !change.fires(None, "a"),
            "the first poll only sets the baseline"
        );
        assert!(!change.fires(Some("a"), "a"));
        assert!(change.fires(Some("a"), "b"));
        let green = NotifyOn::parse("match:green").unwrap();
        assert!(green.fires(None, "green"));
        assert!(green.fires(Some("red"), "green"));
        assert!(!green.fires(Some("green"), "green"));
        assert!(!green.fires(Some("red"), "amber"));
        let not200 = NotifyOn::parse("not_match:200").unwrap();
        assert!(not200.fires(Some("200"), "503"));
        assert!(!not200.fires(Some("503"), "503"));
        assert!(!not200.fires(Some("503"), "200"));
        assert_eq!(NotifyOn::parse("sometimes"), None);
    }

    #[test]
    fn back_off_doubles_per_failure_within_an_hour() {
        let at = |f| next_delay(10, f).as_millis() as u64;
        assert!((10_000..11_000).contains(&at(0)));
        assert!((20_000..21_000).contains(&at(1)));
        assert!((3_600_000..3_601_000).contains(&at(20)));
        // A daily watch never polls more often because it failed.
        assert!(next_delay(86_400, 3).as_millis() as u64 >= 86_400_000);
    }
}
