//! Remote approval of tool use (issue 18): Claude Code's permission prompts
//! (`notifications/claude/channel/permission_request`) go, sealed, to the approvers this
//! member chose on each joined mesh; the first decision to come back becomes
//! `notifications/claude/channel/permission {request_id, behavior}`. Claude Code keeps its
//! local prompt; whichever answer comes first wins there too.

use std::sync::Arc;

use serde_json::{Value, json};

use super::hub::Hub;
use crate::client::approvals::PermissionPrompt;
use crate::protocol::messages::ApprovalDecision;

/// What Claude Code sends when it shows a permission prompt.
pub const PERMISSION_REQUEST: &str = "notifications/claude/channel/permission_request";
/// What answers it.
pub const PERMISSION: &str = "notifications/claude/channel/permission";
/// The capability that asks Claude Code for the prompts.
pub const CAPABILITY: &str = "claude/channel/permission";
/// Requests waiting for a decision that one session remembers (more are not forwarded).
const MAX_ASKED: usize = 1024;

/// Forwards one prompt to every mesh where this member has approvers. Problems go to stderr
/// (Claude Code's MCP log); the local prompt is there either way.
pub async fn forward(hub: Arc<Hub>, params: Value) {
    let prompt: PermissionPrompt = match serde_json::from_value(params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("claudemesh: ignored a permission_request without its fields: {e}");
            return;
        }
    };
    if prompt.request_id.is_empty() {
        eprintln!("claudemesh: ignored a permission_request without a request_id");
        return;
    }
    if !hub.ask(&prompt.request_id, MAX_ASKED) {
        eprintln!("claudemesh: {MAX_ASKED} permission prompts already wait; not forwarding");
        return;
    }
    let mut sent = false;
    for link in &hub.links {
        let Some(client) = link.client() else {
            continue;
        };
        match client.request_approval(&prompt, None).await {
            Ok(Some(id)) => {
                sent = true;
                eprintln!(
                    "claudemesh: permission prompt {} sent to the approvers on {} as {id}",
                    prompt.request_id, link.entry.slug
                );
            }
            Ok(None) => eprintln!(
                "claudemesh: permission prompt {} not forwarded to {}: no approvers (claudemesh approvers set …)",
                prompt.request_id, link.entry.slug
            ),
            Err(e) => eprintln!(
                "claudemesh: could not forward permission prompt {} to {}: {e}",
                prompt.request_id, link.entry.slug
            ),
        }
    }
    if !sent {
        hub.answered(&prompt.request_id);
    }
}

/// A decision for one of this session's requests: tells Claude Code, once.
pub async fn decided(hub: &Hub, decision: ApprovalDecision) {
    if !hub.answered(&decision.request_id) {
        return;
    }
    let params = json!({
        "request_id": decision.request_id,
        "behavior": decision.behavior,
    });
    if !hub.send_custom(PERMISSION, params).await {
        eprintln!(
            "claudemesh: could not pass on the decision for {}",
            decision.request_id
        );
    }
}
