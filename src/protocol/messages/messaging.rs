//! Messaging (PROTOCOL.md §4): `send`, `push`, acknowledgements and `message_status`.

use serde::{Deserialize, Serialize};

/// `send` (PROTOCOL.md §4.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub target_spec: String,
    #[serde(default = "default_priority")]
    pub priority: String,
    #[serde(default)]
    pub nonce: String,
    pub ciphertext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    #[serde(
        rename = "client_message_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_message_id: Option<String>,
    #[serde(
        rename = "request_fingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_fingerprint: Option<String>,
    /// This broker: target specs (keys, `@group`, `*`) whose recipients a group or broadcast
    /// `targetSpec` leaves out, because another send of the same message reached them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// The root-key epoch a group or broadcast body is sealed under (PROTOCOL.md §12.4);
    /// absent means 0.
    #[serde(default, skip_serializing_if = "super::is_epoch_zero")]
    pub key_epoch: u64,
}

fn default_priority() -> String {
    "next".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// A generic acknowledgement. `send` fills `id`/`messageId`/`queued`; other requests use `ok`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `push` (PROTOCOL.md §4.3): a message, a reminder or a system event. Its strings are `S`:
/// owned as read, or borrowed from a stored record as the broker writes one (issue 14).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push<S = String> {
    pub message_id: S,
    pub mesh_id: S,
    pub sender_pubkey: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_member_pubkey: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_member_id: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<S>,
    pub priority: S,
    pub nonce: S,
    pub ciphertext: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    pub created_at: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_spec: Option<S>,
    #[serde(
        rename = "client_message_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_message_id: Option<S>,
    #[serde(
        rename = "request_fingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_fingerprint: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_data: Option<serde_json::Value>,
    /// The root-key epoch of a group or broadcast body; absent means 0.
    #[serde(default, skip_serializing_if = "super::is_epoch_zero")]
    pub key_epoch: u64,
    /// This broker: a copy for an observer connection (§3.1), `received` or `sent`; it needs
    /// no `client_ack` and leaves the message queued for the member's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<S>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientStatus {
    pub name: String,
    pub pubkey: String,
    /// `delivered` (pushed to one of its connections, or acknowledged), `held` or
    /// `disconnected`.
    pub status: String,
    /// This broker: the recipient acknowledged it (`client_ack`).
    #[serde(default)]
    pub acknowledged: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatusResult {
    pub message_id: String,
    pub target_spec: String,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// This broker: every recipient acknowledged it.
    #[serde(default)]
    pub acknowledged: bool,
    pub recipients: Vec<RecipientStatus>,
}
