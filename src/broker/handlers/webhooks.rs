//! Inbound webhooks (PROTOCOL.md §22): `create_webhook`, `list_webhooks`, `delete_webhook`.
//! Making or deleting one needs `webhooks` (owner and admins by default); deliveries are
//! `broker::webhooks`.

use super::reply::{Refusal, answer, me, ok_ack, refuse};
use crate::broker::connection::Conn;
use crate::broker::state::Broker;
use crate::crypto;
use crate::protocol::messages::{CreateWebhook, WebhookEntry};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{AuditActor, WebhookRecord, WebhookRefusal};

/// Most webhooks one mesh may have.
pub const MAX_PER_MESH: usize = 100;
const MAX_NAME_CHARS: usize = 64;
const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=256;

fn invalid(message: impl Into<String>) -> Refusal {
    refuse("invalid_argument", message)
}

fn url(broker: &Broker, mesh_id: &str, id: &str) -> String {
    format!("{}/hook/{mesh_id}/{id}", broker.public_url())
}

/// `create_webhook{name, target?, secret?}` → `webhook_ack{name, url, secret}`, the only time
/// the secret is shown; it is stored sealed to the broker's service key.
pub fn create_webhook(conn: &Conn, req_id: Option<String>, req: CreateWebhook) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        super::shared_tools::valid_name("a webhook name", &req.name, MAX_NAME_CHARS)?;
        let target =
            super::watches::target(&broker, &peer, Some(req.target.as_deref().unwrap_or("*")))?;
        let secret = match req.secret {
            Some(s) if SECRET_CHARS.contains(&s.chars().count()) => s,
            Some(_) => {
                return Err(invalid(format!(
                    "a webhook secret is {} to {} characters",
                    SECRET_CHARS.start(),
                    SECRET_CHARS.end()
                )));
            }
            None => hex::encode(crypto::random_bytes::<32>()),
        };
        let key = broker.service_key.as_ref().ok_or_else(|| {
            refuse(
                "unavailable",
                "this broker has no service key to seal the secret to",
            )
        })?;
        let sealed_secret = key
            .seal(secret.as_bytes())
            .map_err(|e| refuse("internal", e.to_string()))?;
        let record = WebhookRecord {
            id: ids::new_id(),
            mesh_id: peer.mesh_id.clone(),
            name: req.name.clone(),
            member_id: peer.member_id.clone(),
            member_name: peer.display_name.clone(),
            target,
            sealed_secret,
            created_at_ms: time::now_ms(),
        };
        let url = url(&broker, &record.mesh_id, &record.id);
        match broker.store.add_webhook(record, MAX_PER_MESH).await? {
            Ok(()) => Ok(Some(ServerMessage::WebhookAck {
                name: req.name,
                url,
                secret,
            })),
            Err(WebhookRefusal::NameTaken) => Err(refuse(
                "conflict",
                format!("this mesh already has a webhook \"{}\"", req.name),
            )),
            Err(WebhookRefusal::TooMany(n)) => Err(refuse(
                "limit",
                format!("this mesh has {n} webhooks, the most it may have; delete some first"),
            )),
        }
    });
}

/// `list_webhooks` → `webhook_list{webhooks}` (never a secret; anyone in the mesh).
pub fn list_webhooks(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let webhooks = broker
            .store
            .webhooks_of(&peer.mesh_id)?
            .into_iter()
            .map(|w| WebhookEntry {
                url: url(&broker, &w.mesh_id, &w.id),
                name: w.name,
                active: true,
                created_at: time::iso(w.created_at_ms),
                target: w.target,
                created_by: w.member_name,
            })
            .collect();
        Ok(Some(ServerMessage::WebhookList { webhooks }))
    });
}

/// `delete_webhook{name}` → `ack{ok:true}`: by the member that made it, the owner or an admin.
/// Its URL answers 404 from then on.
pub fn delete_webhook(conn: &Conn, req_id: Option<String>, name: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let manages = super::perms::is_manager(&broker, &peer.mesh_id, &peer.member_id);
        let me_id = peer.member_id.clone();
        let by = AuditActor::member(&peer.member_id, &peer.display_name);
        match broker
            .store
            .delete_webhook(
                peer.mesh_id.clone(),
                name.clone(),
                by,
                move |w| manages || w.member_id == me_id,
                time::now_ms(),
            )
            .await?
        {
            Some(true) => Ok(Some(ok_ack())),
            Some(false) => Err(refuse(
                "forbidden",
                "only the member that made a webhook, the owner or an admin deletes it",
            )),
            None => Err(refuse(
                "not_found",
                format!("no webhook \"{name}\" in this mesh"),
            )),
        }
    });
}
