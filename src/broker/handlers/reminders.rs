//! `schedule`, `list_scheduled`, `cancel_scheduled` (PROTOCOL.md §6). The scheduler
//! (`broker::scheduler`) sends them when due.

use super::messaging::resolve;
use super::reply::{MAX_TEXT, Refusal, answer, refuse, text};
use crate::broker::connection::Conn;
use crate::broker::cron::Cron;
use crate::protocol::messages::{Schedule, ScheduledAck, ScheduledEntry, When};
use crate::protocol::{Pubkey, ServerMessage, ids, time};
use crate::store::{AuditActor, ScheduleRecord};

/// Most scheduled messages one member may have waiting.
const MAX_PER_MEMBER: usize = 1000;

/// When a schedule first fires: the next cron time, or `deliverAt`.
fn first_due(req: &Schedule, now_ms: i64) -> Result<(i64, Option<String>), Refusal> {
    if let Some(expr) = req.cron.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        let cron = Cron::parse(expr).map_err(|e| refuse("invalid_argument", e.to_string()))?;
        let next = cron
            .next_after(now_ms)
            .ok_or_else(|| refuse("invalid_argument", format!("cron: \"{expr}\" never fires")))?;
        return Ok((next, Some(expr.to_string())));
    }
    let Some(when) = &req.deliver_at else {
        return Err(refuse(
            "invalid_argument",
            "give deliverAt (ms since the epoch or ISO-8601) or cron",
        ));
    };
    let at = when.to_ms().filter(|ms| *ms >= 0).ok_or_else(|| {
        let shown = match when {
            When::Iso(s) => format!("\"{s}\""),
            When::Ms(n) => n.to_string(),
            When::Fractional(f) => f.to_string(),
        };
        refuse(
            "invalid_argument",
            format!("deliverAt {shown} is neither ms since the epoch nor an ISO-8601 time"),
        )
    })?;
    Ok((at, None))
}

pub fn schedule(conn: &Conn, req_id: Option<String>, req: Schedule) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let message = match &req.nonce {
            None => text("message", &req.message, MAX_TEXT)?,
            Some(_) => sealed_message(&req.message)?,
        };
        let subtype = req.subtype.clone().unwrap_or_else(|| "reminder".into());
        if subtype != "reminder" {
            return Err(refuse(
                "invalid_argument",
                format!("subtype must be \"reminder\", got \"{subtype}\""),
            ));
        }
        let now = time::now_ms();
        let (first, cron) = first_due(&req, now)?;
        let (deliver_at_ms, sim_at_ms) = match req.simulated {
            false => (first, None),
            true => (
                simulated_due(&broker, &peer.mesh_id, &cron, first)?,
                Some(first),
            ),
        };
        let to = match req.to.trim() {
            "" => peer.member_pubkey.to_hex(),
            t => t.to_string(),
        };
        // Checked now so a typo is an error today, not a lost reminder later; recipients are
        // resolved again when it fires.
        let recipients = resolve(&broker, &peer, &to)
            .map_err(|why| refuse("unknown_target", format!("unknown target ({why})")))?;
        if Pubkey::is_shape(&to) {
            super::grants::direct_refusal(&broker, &peer, &recipients)
                .map_err(|(code, why)| refuse(code, why))?;
        }
        let (nonce, body_version) = sealing(&req, &to)?;
        if body_version == Some(2)
            && let Some(why) = super::keys::stale_epoch(&broker, &peer.mesh_id, req.key_epoch)
        {
            return Err(refuse("stale_key_epoch", why));
        }
        let record = ScheduleRecord {
            id: ids::new_id(),
            mesh_id: peer.mesh_id.clone(),
            member_id: peer.member_id.clone(),
            sender_pubkey: peer.pubkey().to_hex(),
            to,
            message,
            nonce,
            body_version,
            key_epoch: if body_version == Some(2) {
                req.key_epoch
            } else {
                0
            },
            subtype,
            deliver_at_ms,
            cron: cron.clone(),
            created_at_ms: now,
            fired_count: 0,
            sim_at_ms,
        };
        let id = record.id.clone();
        let by = AuditActor::member(&peer.member_id, &peer.display_name);
        if !broker
            .store
            .add_schedule(record, MAX_PER_MEMBER, by)
            .await?
        {
            return Err(refuse(
                "limit",
                format!("you already have {MAX_PER_MEMBER} scheduled messages; cancel some first"),
            ));
        }
        broker.scheduler.wake();
        Ok(Some(ServerMessage::ScheduledAck(ScheduledAck {
            scheduled_id: id,
            deliver_at: sim_at_ms.unwrap_or(deliver_at_ms),
            cron,
            simulated: sim_at_ms.is_some(),
        })))
    });
}

/// The real time a reminder at simulated time `sim_at` is due under the mesh's clock (never,
/// while it is paused; the clock moves it when it changes).
fn simulated_due(
    broker: &crate::broker::state::Broker,
    mesh_id: &str,
    cron: &Option<String>,
    sim_at: i64,
) -> Result<i64, Refusal> {
    if cron.is_some() {
        return Err(refuse(
            "invalid_argument",
            "a reminder in simulated time fires once: give deliverAt, not cron",
        ));
    }
    match broker.store.clock(mesh_id)? {
        Some(clock) => Ok(clock.real_at(sim_at)),
        None => Err(refuse(
            "invalid_argument",
            "this mesh has no simulation clock: set one first (claudemesh clock set SPEED)",
        )),
    }
}

/// Most bytes of a sealed reminder: the longest clear text in UTF-8 plus the MAC.
const MAX_SEALED: usize = MAX_TEXT * 4 + 16;

/// A sealed reminder's `message`: standard base64 of at most [`MAX_SEALED`] bytes.
fn sealed_message(message: &str) -> Result<String, Refusal> {
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(message) {
        Ok(b) if b.len() > 16 && b.len() <= MAX_SEALED => Ok(message.to_string()),
        Ok(b) if b.len() > 16 => Err(refuse(
            "payload_too_large",
            format!(
                "the sealed message is {} bytes; the limit is {MAX_SEALED}",
                b.len()
            ),
        )),
        _ => Err(refuse(
            "invalid_argument",
            "with a nonce, message must be the ciphertext in standard base64",
        )),
    }
}

/// The nonce and body version of a sealed reminder, checked against its target: crypto_box
/// (no bodyVersion) to one key, secretbox under the root key (bodyVersion 2) to a group or
/// everyone. `(None, None)` for a reminder in clear.
fn sealing(req: &Schedule, to: &str) -> Result<(Option<String>, Option<u32>), Refusal> {
    use base64::Engine;
    let Some(nonce) = &req.nonce else {
        return Ok((None, None));
    };
    let ok = base64::engine::general_purpose::STANDARD
        .decode(nonce)
        .is_ok_and(|n| n.len() == 24);
    if !ok {
        return Err(refuse(
            "invalid_argument",
            "nonce must be 24 bytes in standard base64",
        ));
    }
    let direct = Pubkey::is_shape(to);
    match (direct, req.body_version) {
        (true, None) | (false, Some(2)) => Ok((Some(nonce.clone()), req.body_version)),
        (true, _) => Err(refuse(
            "invalid_argument",
            "a sealed reminder to one key is a crypto_box: leave bodyVersion out",
        )),
        (false, _) => Err(refuse(
            "invalid_argument",
            "a sealed reminder to a group or everyone needs bodyVersion 2 (secretbox under the mesh root key)",
        )),
    }
}

pub fn list_scheduled(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let messages = broker
            .store
            .schedules_of(&peer.mesh_id, &peer.member_id)?
            .into_iter()
            .map(|s| ScheduledEntry {
                fired_count: s.cron.as_ref().map(|_| s.fired_count),
                id: s.id,
                to: s.to,
                message: s.message,
                deliver_at: s.sim_at_ms.unwrap_or(s.deliver_at_ms),
                simulated: s.sim_at_ms.is_some(),
                created_at: s.created_at_ms,
                cron: s.cron,
                subtype: Some(s.subtype),
                nonce: s.nonce,
                body_version: s.body_version,
                key_epoch: s.key_epoch,
            })
            .collect();
        Ok(Some(ServerMessage::ScheduledList { messages }))
    });
}

pub fn cancel_scheduled(conn: &Conn, req_id: Option<String>, scheduled_id: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let ok = broker
            .store
            .cancel_schedule(
                peer.mesh_id.clone(),
                scheduled_id.clone(),
                AuditActor::member(&peer.member_id, &peer.display_name),
                time::now_ms(),
            )
            .await?;
        Ok(Some(ServerMessage::CancelScheduledAck { scheduled_id, ok }))
    });
}
