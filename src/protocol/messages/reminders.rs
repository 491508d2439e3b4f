//! Reminders (PROTOCOL.md §6): `schedule`, points in time, and scheduled entries.

use serde::{Deserialize, Serialize};

/// A point in time as clients give it: milliseconds since the epoch or ISO-8601.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum When {
    Ms(i64),
    Fractional(f64),
    Iso(String),
}

impl When {
    /// Milliseconds since the epoch, or `None` for text that is not ISO-8601.
    pub fn to_ms(&self) -> Option<i64> {
        match self {
            When::Ms(ms) => Some(*ms),
            When::Fractional(f) if f.is_finite() => Some(*f as i64),
            When::Fractional(_) => None,
            When::Iso(s) => s
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| crate::protocol::time::parse_iso(s.trim())),
        }
    }
}

/// `schedule`: a one-shot (`deliverAt`) or recurring (`cron`, 5 fields, UTC) message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Target spec; empty means the scheduling member itself.
    #[serde(default)]
    pub to: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<When>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The original's flag; implied by `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring: Option<bool>,
    /// This broker's addition: with a nonce (standard base64, 24 bytes) `message` is ciphertext
    /// (standard base64) sealed like a `send` body to `to`, and is delivered as such.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// With `nonce`: `2` for a group or broadcast reminder (secretbox under the root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    /// With `bodyVersion` 2: the root-key epoch it is sealed under; absent means 0.
    #[serde(default, skip_serializing_if = "super::is_epoch_zero")]
    pub key_epoch: u64,
    /// This broker's addition (PROTOCOL.md §21): `deliverAt` is a time on the mesh's
    /// simulation clock; the reminder fires when that clock reaches it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledAck {
    pub scheduled_id: String,
    /// When it fires (next), ms since the epoch; simulated time with `simulated`.
    pub deliver_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledEntry {
    pub id: String,
    pub to: String,
    pub message: String,
    /// When it fires (next), ms since the epoch.
    pub deliver_at: i64,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// Set when `message` is ciphertext (see [`Schedule::nonce`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    #[serde(default, skip_serializing_if = "super::is_epoch_zero")]
    pub key_epoch: u64,
    /// `deliverAt` is simulated time (PROTOCOL.md §21).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}
