//! Inbound webhooks (PROTOCOL.md §22): `create_webhook`, `list_webhooks`, `delete_webhook`,
//! with the original's names (seed §2.21), plus `target` and a signature secret.

use serde::{Deserialize, Serialize};

/// `create_webhook`: a URL external services POST signed JSON to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateWebhook {
    pub name: String,
    /// This broker's addition: who gets the messages, a member pubkey, `@group` or `*` (the
    /// default, as the original sends to every peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The signing secret, when the caller picks it (16 to 256 characters); otherwise the
    /// broker makes one. Either way it is answered once and never listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One webhook in `webhook_list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEntry {
    pub name: String,
    pub url: String,
    pub active: bool,
    pub created_at: String,
    pub target: String,
    pub created_by: String,
}

/// The text of a `subtype:"webhook"` message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub webhook: String,
    /// `X-GitHub-Event` when GitHub sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// One line for GitHub `push`, `pull_request` and `workflow_run` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The JSON body (a string when the body was not JSON); `null` when too large to carry,
    /// with `payloadBytes` saying how large it was.
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<usize>,
}
