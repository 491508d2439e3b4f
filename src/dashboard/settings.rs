//! Mesh settings from the page, for the owner and admins: a member's role, kick, ban and
//! revoke, each the call its CLI verb makes (`perms set --role`, `kick`, `ban`, `revoke`).
//! The broker decides who may; the page only hides the buttons from the others.

use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::api::ApiError;
use crate::client::ClientError;
use crate::protocol::ClientMessage;
use crate::protocol::messages::SetPerms;

#[derive(Deserialize)]
pub struct MemberAction {
    /// The member id (the page names members by id, so there is no ambiguity).
    member: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// What a broker refusal says, as the page should show it.
fn refused(e: ClientError) -> ApiError {
    match e {
        ClientError::Broker { message, .. } => ApiError::Input(message),
        other => other.into(),
    }
}

/// `POST /api/members/{role,kick,ban,revoke}`. A ban and a revoke rotate the mesh root key
/// afterwards, as the CLI does by default.
pub async fn act(shared: &Shared, what: &str, a: MemberAction) -> Result<Value, ApiError> {
    let c = &shared.client;
    let reason = a.reason.filter(|r| !r.trim().is_empty());
    match what {
        "role" => {
            let role = a.role.unwrap_or_default();
            if role != "member" && role != "admin" {
                return Err(ApiError::Input("the role is member or admin".into()));
            }
            let entry = c
                .set_perms(SetPerms {
                    member: a.member,
                    role: Some(role),
                    ..Default::default()
                })
                .await
                .map_err(refused)?;
            publish_peers(shared);
            return Ok(json!({ "member": entry.display_name, "role": entry.role }));
        }
        "kick" => c.kick(&a.member, reason).await.map_err(refused)?,
        "ban" => c.ban(&a.member, reason).await.map_err(refused)?,
        "revoke" => {
            c.request(ClientMessage::RevokeMember {
                member: a.member.clone(),
            })
            .await
            .map_err(refused)?;
        }
        _ => return Err(ApiError::Input(format!("no member action {what:?}"))),
    }
    let rotated = if matches!(what, "ban" | "revoke") {
        let r = c.rotate_root_key().await.map_err(|e| {
            ApiError::Broker(format!(
                "done, but rotating the mesh root key failed ({e}): run `claudemesh rotate-key`"
            ))
        })?;
        Some(json!({ "epoch": r.epoch, "members": r.members, "invitesRevoked": r.invites_revoked }))
    } else {
        None
    };
    publish_peers(shared);
    Ok(json!({ "done": what, "member": a.member, "rotated": rotated }))
}

fn publish_peers(shared: &Shared) {
    shared
        .hub
        .publish("peers", &json!({ "event": "members_changed" }));
}
