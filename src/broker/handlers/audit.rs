//! The audit log (PROTOCOL.md §12.5): `audit_query` and `audit_verify`, for the owner and
//! admins. The records themselves are appended by the store, in the transaction of each
//! mutation (`store::audit`).

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::connection::Conn;
use crate::broker::presence::Peer;
use crate::broker::state::Broker;
use crate::protocol::messages::{AuditEntry, AuditQuery, AuditResult, AuditVerifyResult};
use crate::protocol::{ClientMessage, ServerMessage, time};
use crate::store::audit::{AuditFilter, AuditRecord, MAX_QUERY_LIMIT};

/// Entries an `audit_query` without `limit` gets.
const DEFAULT_LIMIT: usize = 100;
/// Longest event type a filter may name.
const MAX_EVENT_TYPE: usize = 64;

/// Whether `frame` asks for a change the audit log records: such frames count against the
/// member's `--audit-rate`, so nobody can flood the log (and push its older records past the
/// cap) at will; an upload counts at its token (the upload itself comes over HTTP). Frames that
/// only read, send messages or set presence do not count.
pub fn is_audited_change(frame: &ClientMessage) -> bool {
    use ClientMessage as M;
    matches!(
        frame,
        M::CreateInvite(_)
            | M::RevokeInvite { .. }
            | M::RevokeMember { .. }
            | M::SetProfile(_)
            | M::DeleteFile(_)
            | M::GrantFileAccess(_)
            | M::SetState(_)
            | M::GraphExecute(_)
            | M::Remember(_)
            | M::Forget { .. }
            | M::ShareContext(_)
            | M::CreateTask(_)
            | M::ClaimTask { .. }
            | M::CompleteTask { .. }
            | M::ReleaseTask { .. }
            | M::CreateStream { .. }
            | M::Schedule(_)
            | M::CancelScheduled { .. }
            | M::SetMeshSettings { .. }
            | M::Block { .. }
            | M::Unblock { .. }
            | M::SetGrants(_)
            | M::SetApprovers { .. }
            | M::RequestApproval(_)
            | M::AnswerApproval { .. }
            | M::RotateKey(_)
            | M::SetAdmins(_)
            | M::SetPerms(_)
            | M::Kick { .. }
            | M::Disconnect { .. }
            | M::Ban { .. }
            | M::Unban { .. }
            | M::ShareSkill(_)
            | M::RemoveSkill { .. }
            | M::McpRegister(_)
            | M::McpUnregister { .. }
            | M::McpCall(_)
            | M::VaultSet(_)
            | M::VaultDelete { .. }
            | M::MeshExecute(_)
            | M::Watch(_)
            | M::Unwatch { .. }
            | M::CreateWebhook(_)
            | M::DeleteWebhook { .. }
    ) || matches!(frame, M::FileToken(t) if t.purpose == "upload")
}

/// The owner or an admin as the store says now (a member demoted since its hello is not).
fn may_read(broker: &Broker, peer: &Peer) -> Result<(), Refusal> {
    if super::perms::is_manager(broker, &peer.mesh_id, &peer.member_id) {
        return Ok(());
    }
    Err(refuse(
        "forbidden",
        "reading the audit log needs the owner or admin role",
    ))
}

fn audit_entry(r: AuditRecord) -> AuditEntry {
    AuditEntry {
        id: r.seq,
        event_type: r.event,
        actor: r.actor_name,
        actor_member_id: r.actor_member_id,
        payload: r.payload,
        hash: r.hash,
        prev_hash: r.prev_hash,
        created_at: time::iso(r.at_ms),
    }
}

fn audit_filter(q: AuditQuery) -> Result<AuditFilter, Refusal> {
    let since_ms = match q.since.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(time::parse_iso(s).ok_or_else(|| {
            refuse(
                "invalid_argument",
                format!(
                    "since must be an ISO-8601 time such as 2026-01-31T12:00:00Z, not \"{}\"",
                    s.chars().take(40).collect::<String>()
                ),
            )
        })?),
    };
    let event = q
        .event_type
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty());
    if let Some(e) = &event
        && (e.len() > MAX_EVENT_TYPE || e.chars().any(char::is_control))
    {
        return Err(refuse(
            "invalid_argument",
            format!("eventType is at most {MAX_EVENT_TYPE} bytes, without control characters"),
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_QUERY_LIMIT {
        return Err(refuse(
            "invalid_argument",
            format!("limit must be 1-{MAX_QUERY_LIMIT}"),
        ));
    }
    Ok(AuditFilter {
        since_ms,
        event,
        offset: q.offset.unwrap_or(0),
        limit,
    })
}

/// `audit_query{limit?, offset?, eventType?, since?}` → `audit_result{entries, total}`,
/// newest first.
pub fn audit_query(conn: &Conn, req_id: Option<String>, q: AuditQuery) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        may_read(&broker, &peer)?;
        let filter = audit_filter(q)?;
        // A filter may read far back: on a blocking thread, not the connection's.
        let store = broker.store.clone();
        let mesh_id = peer.mesh_id.clone();
        let page = tokio::task::spawn_blocking(move || store.audit_page(&mesh_id, &filter))
            .await
            .map_err(|e| refuse("internal", format!("the audit query stopped: {e}")))??;
        Ok(Some(ServerMessage::AuditResult(AuditResult {
            entries: page.records.into_iter().map(audit_entry).collect(),
            total: page.total,
        })))
    });
}

/// `audit_verify{}` → `audit_verify_result{valid, entries, brokenAt?, …}`.
pub fn audit_verify(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        may_read(&broker, &peer)?;
        // A long chain is read on a blocking thread, not on the connection's.
        let store = broker.store.clone();
        let mesh_id = peer.mesh_id.clone();
        let verdict = tokio::task::spawn_blocking(move || store.verify_audit(&mesh_id))
            .await
            .map_err(|e| refuse("internal", format!("audit verification stopped: {e}")))??;
        if let Some((seq, why, _)) = &verdict.broken {
            tracing::warn!(mesh = %peer.mesh_id, seq, reason = why.as_str(), "the audit chain does not verify");
        }
        Ok(Some(ServerMessage::AuditVerifyResult(AuditVerifyResult {
            valid: verdict.valid(),
            entries: verdict.entries,
            first_id: verdict.first,
            broken_at: verdict.broken.as_ref().map(|b| b.0),
            broken_event: verdict.broken.as_ref().and_then(|b| b.2.clone()),
            reason: verdict.broken.as_ref().map(|b| b.1.as_str().to_string()),
            head_hash: verdict.head_hash,
        })))
    });
}
