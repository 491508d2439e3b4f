//! `schedule`, `list_scheduled`, `cancel_scheduled` (PROTOCOL.md §6). The scheduler
//! (`broker::scheduler`) sends them when due.

use super::messaging::resolve;
use super::shared::{MAX_TEXT, Refusal, answer, refuse, text};
use crate::broker::connection::Conn;
use crate::broker::cron::Cron;
use crate::protocol::messages::{Schedule, ScheduledAck, ScheduledEntry, When};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::ScheduleRecord;

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
        let message = text("message", &req.message, MAX_TEXT)?;
        let subtype = req.subtype.clone().unwrap_or_else(|| "reminder".into());
        if subtype != "reminder" {
            return Err(refuse(
                "invalid_argument",
                format!("subtype must be \"reminder\", got \"{subtype}\""),
            ));
        }
        let now = time::now_ms();
        let (deliver_at_ms, cron) = first_due(&req, now)?;
        let to = match req.to.trim() {
            "" => peer.member_pubkey.to_hex(),
            t => t.to_string(),
        };
        // Checked now so a typo is an error today, not a lost reminder later; recipients are
        // resolved again when it fires.
        resolve(&broker, &peer, &to)
            .map_err(|why| refuse("unknown_target", format!("unknown target ({why})")))?;
        let record = ScheduleRecord {
            id: ids::new_id(),
            mesh_id: peer.mesh_id.clone(),
            member_id: peer.member_id.clone(),
            sender_pubkey: peer.pubkey().to_hex(),
            to,
            message,
            subtype,
            deliver_at_ms,
            cron: cron.clone(),
            created_at_ms: now,
            fired_count: 0,
        };
        let id = record.id.clone();
        if !broker.store.add_schedule(record, MAX_PER_MEMBER).await? {
            return Err(refuse(
                "limit",
                format!("you already have {MAX_PER_MEMBER} scheduled messages; cancel some first"),
            ));
        }
        broker.scheduler.wake();
        Ok(Some(ServerMessage::ScheduledAck(ScheduledAck {
            scheduled_id: id,
            deliver_at: deliver_at_ms,
            cron,
        })))
    });
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
                deliver_at: s.deliver_at_ms,
                created_at: s.created_at_ms,
                cron: s.cron,
                subtype: Some(s.subtype),
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
                peer.member_id.clone(),
            )
            .await?;
        Ok(Some(ServerMessage::CancelScheduledAck { scheduled_id, ok }))
    });
}
