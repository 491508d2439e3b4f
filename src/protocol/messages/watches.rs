//! URL watches (PROTOCOL.md §21): `watch`, `unwatch`, `watch_list`, with the original's field
//! names (seed §2.20, its `WSWatchMessage`), plus `target`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Shortest polling interval, in seconds.
pub const MIN_WATCH_INTERVAL_S: u64 = 5;
/// Longest polling interval: a day.
pub const MAX_WATCH_INTERVAL_S: u64 = 24 * 3600;
/// Interval when none is given.
pub const DEFAULT_WATCH_INTERVAL_S: u64 = 30;

/// `watch`: poll `url` every `interval` seconds and tell `target` when the value changes (or
/// matches, or stops matching).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Watch {
    pub url: String,
    /// `hash` (SHA-256 of the body, the default), `json` (the value at `extract`, a JSONPath)
    /// or `status` (the HTTP status code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The JSONPath for mode `json`, e.g. `$.status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
    /// Seconds between polls, 5 to 86 400 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// `change` (the default), `match:<value>` or `not_match:<value>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on: Option<String>,
    /// Request headers sent with every poll (kept sealed on the broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// This broker's addition: who is told, a member pubkey, `@group` or `*` (default: the
    /// member that made the watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One watch in `watch_list_result`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchEntry {
    pub id: String,
    pub url: String,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub interval: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
    pub notify_on: String,
    pub target: String,
    /// Names of the custom headers (their values are never shown).
    #[serde(default)]
    pub header_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<String>,
    /// ISO-8601 time of the last poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// Why the last poll failed, while it keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

/// The text of a `subtype:"watch"` message: what changed, from what to what.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchTriggered {
    pub watch_id: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub mode: String,
    /// `None` on the first poll.
    pub old_value: Option<String>,
    pub new_value: String,
    pub notify_on: String,
    /// ISO-8601.
    pub timestamp: String,
}
