//! Remote approval of tool use (issue 18, PROTOCOL.md §25): `set_approvers`, `get_approvers`,
//! `request_approval`, `list_approvals`, `answer_approval`. The broker routes sealed copies:
//! it checks that each copy goes to a current approver of the asking member, that an answer
//! comes from a member holding a copy whose approver entry still stands, and that the request
//! is pending and unexpired (the first answer wins); then it pushes the decision to the asking
//! session and tells every approver.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::broker::connection::Conn;
use crate::broker::presence::{Peer, in_group};
use crate::broker::state::Broker;
use crate::protocol::messages::{
    ApprovalDecision, ApprovalEntry, ApproverEntry, DEFAULT_APPROVAL_TTL_SECS,
    MAX_APPROVAL_CIPHERTEXT, MAX_APPROVAL_TTL_SECS, MAX_APPROVERS, MAX_REQUEST_ID_CHARS,
    MIN_APPROVAL_TTL_SECS, RequestApproval,
};
use crate::protocol::{Envelope, ServerMessage, time};
use crate::store::{
    ApprovalCopy, ApprovalRow, AuditActor, DecideOutcome, MAX_PENDING_APPROVALS, Member, StoreError,
};

/// Most requests one `approvals` answer lists (oldest first; each copy is at most 16 KiB, and
/// a client takes frames of up to 16 MiB).
const MAX_LISTED: usize = 200;

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Whom `list` names now: members by id, and for each `@group` the members in it (as stored
/// by `group join`, or with a live session in it). Revoked members resolve to nobody.
fn resolve(broker: &Broker, mesh_id: &str, list: &[String]) -> Result<Vec<ApproverEntry>, String> {
    let store_err = |e: StoreError| e.to_string();
    let mut out: Vec<ApproverEntry> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |m: &Member, via: &str| {
        if m.revoked_at_ms.is_none() && seen.insert(m.id.clone()) {
            out.push(ApproverEntry {
                member_id: m.id.clone(),
                display_name: m.display_name.clone(),
                pubkey: m.pubkey.to_hex(),
                via: via.to_string(),
            });
        }
    };
    let mut members: Option<Vec<Member>> = None;
    for item in list {
        if let Some(group) = item.strip_prefix('@') {
            let all = match &members {
                Some(all) => all,
                None => members.insert(broker.store.members(mesh_id).map_err(store_err)?),
            };
            let live: HashSet<String> = broker
                .presence
                .peers(mesh_id)
                .into_iter()
                .filter(|p| p.is_live() && p.in_group(group))
                .map(|p| p.member_id.clone())
                .collect();
            for m in all {
                if in_group(&m.groups, group) || live.contains(&m.id) {
                    add(m, item);
                }
            }
        } else if let Some(m) = broker.store.member(mesh_id, item).map_err(store_err)? {
            add(&m, item);
        }
    }
    Ok(out)
}

fn answer_approvers(conn: &Conn, req_id: Option<String>, list: Vec<String>) {
    let Some(me) = conn.peer.as_ref() else { return };
    match resolve(&conn.broker, &me.mesh_id, &list) {
        Ok(resolved) => conn.reply(
            req_id,
            ServerMessage::Approvers {
                approvers: list,
                resolved,
            },
        ),
        Err(e) => conn.error(req_id, "internal", e),
    }
}

/// `set_approvers`: only the member itself chooses who may approve its agents' tool use (it
/// is their machine the tools run on); entries are member ids or keys, or `@group`.
pub async fn set_approvers(conn: &Conn, req_id: Option<String>, approvers: Vec<String>) {
    let Some(me) = conn.peer.clone() else { return };
    if approvers.len() > MAX_APPROVERS {
        return conn.error(
            req_id,
            "invalid_argument",
            format!("at most {MAX_APPROVERS} approvers"),
        );
    }
    let mut list: Vec<String> = Vec::new();
    for item in approvers {
        let item = item.trim().to_string();
        let entry = if let Some(group) = item.strip_prefix('@') {
            if !super::peers::valid_group(group) {
                return conn.error(
                    req_id,
                    "invalid_argument",
                    format!(
                        "\"{}\" is not a group name (1-64 of [A-Za-z0-9-_.])",
                        short(&item)
                    ),
                );
            }
            item
        } else {
            match super::grants::find_member(&conn.broker, &me.mesh_id, &item) {
                Ok(Some(m)) if m.revoked_at_ms.is_none() => m.id,
                Ok(_) => {
                    return conn.error(
                        req_id,
                        "not_found",
                        format!("no member {} in this mesh", short(&item)),
                    );
                }
                Err(e) => return conn.error(req_id, "internal", e),
            }
        };
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
    let actor = AuditActor::member(&me.member_id, &me.display_name);
    match conn
        .broker
        .store
        .set_approvers(me.mesh_id.clone(), actor, list.clone(), time::now_ms())
        .await
    {
        Ok(()) => answer_approvers(conn, req_id, list),
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

pub fn get_approvers(conn: &Conn, req_id: Option<String>) {
    let Some(me) = conn.peer.as_ref() else { return };
    match conn.broker.store.approvers(&me.mesh_id, &me.member_id) {
        Ok(list) => answer_approvers(conn, req_id, list),
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

/// What an approver sees of a request: its own copy.
fn entry(id: &str, row: &ApprovalRow, copy: &ApprovalCopy, now_ms: i64) -> ApprovalEntry {
    ApprovalEntry {
        id: id.to_string(),
        request_id: row.request_id.clone(),
        requester_member_id: row.requester_member_id.clone(),
        requester_name: row.requester_name.clone(),
        requester_pubkey: row.requester_key.clone(),
        created_at: row.created_at_ms,
        expires_at: row.expires_at_ms,
        nonce: copy.nonce.clone(),
        ciphertext: copy.ciphertext.clone(),
        status: row.status(now_ms).to_string(),
        decided_by: row.decided.as_ref().map(|d| d.by_name.clone()),
    }
}

/// Pushes `approval_event` to every live presence of every approver of the row.
fn tell_approvers(broker: &Broker, mesh_id: &str, id: &str, row: &ApprovalRow, event: &str) {
    let now = time::now_ms();
    for p in broker.presence.peers(mesh_id) {
        if let Some(copy) = row.copy_for(&p.member_id) {
            p.send(&Envelope::new(ServerMessage::ApprovalEvent {
                event: event.to_string(),
                approval: Box::new(entry(id, row, copy, now)),
            }));
        }
    }
}

/// The key that speaks for a presence: its proven session key, else its member key.
fn speaking_key(peer: &Peer) -> String {
    peer.proven_session().unwrap_or(peer.member_pubkey).to_hex()
}

fn check_request(r: &RequestApproval) -> Result<(), String> {
    let rid = &r.request_id;
    if rid.is_empty()
        || rid.chars().count() > MAX_REQUEST_ID_CHARS
        || !rid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "requestId must be 1-{MAX_REQUEST_ID_CHARS} of [A-Za-z0-9-_]"
        ));
    }
    if r.copies.is_empty() {
        return Err("no sealed copies: the request names no approver".into());
    }
    for c in &r.copies {
        let nonce_ok = STANDARD.decode(&c.nonce).is_ok_and(|n| n.len() == 24);
        if !nonce_ok {
            return Err("each copy's nonce must be 24 bytes of base64".into());
        }
        if c.ciphertext.len() > MAX_APPROVAL_CIPHERTEXT || STANDARD.decode(&c.ciphertext).is_err() {
            return Err(format!(
                "each copy's ciphertext must be base64 of at most {MAX_APPROVAL_CIPHERTEXT} characters"
            ));
        }
    }
    Ok(())
}

/// `request_approval`: stores the prompt (each copy must go to a current approver, each
/// approver once) and tells the approvers.
pub async fn request_approval(conn: &Conn, req_id: Option<String>, r: RequestApproval) {
    let Some(me) = conn.peer.clone() else { return };
    if let Err(e) = check_request(&r) {
        return conn.error(req_id, "invalid_argument", e);
    }
    let broker = &conn.broker;
    let resolved = match broker
        .store
        .approvers(&me.mesh_id, &me.member_id)
        .map_err(|e| e.to_string())
        .and_then(|list| resolve(broker, &me.mesh_id, &list))
    {
        Ok(r) => r,
        Err(e) => return conn.error(req_id, "internal", e),
    };
    let mut copies: Vec<ApprovalCopy> = Vec::new();
    for c in r.copies {
        let Some(approver) = resolved.iter().find(|a| a.member_id == c.member_id) else {
            return conn.error(
                req_id,
                "forbidden",
                format!(
                    "member {} is not one of your approvers (claudemesh approvers)",
                    short(&c.member_id)
                ),
            );
        };
        if copies.iter().any(|k| k.member_id == c.member_id) {
            return conn.error(
                req_id,
                "invalid_argument",
                format!("two copies for member {}", short(&c.member_id)),
            );
        }
        copies.push(ApprovalCopy {
            member_id: c.member_id,
            via: approver.via.clone(),
            nonce: c.nonce,
            ciphertext: c.ciphertext,
        });
    }
    let now = time::now_ms();
    let ttl = r
        .ttl_secs
        .unwrap_or(DEFAULT_APPROVAL_TTL_SECS)
        .clamp(MIN_APPROVAL_TTL_SECS, MAX_APPROVAL_TTL_SECS);
    let id = hex::encode(crate::crypto::random_bytes::<5>());
    let row = ApprovalRow {
        request_id: r.request_id,
        requester_member_id: me.member_id.clone(),
        requester_name: me.display_name.clone(),
        requester_key: speaking_key(&me),
        created_at_ms: now,
        expires_at_ms: now + ttl as i64 * 1000,
        copies,
        decided: None,
    };
    match broker
        .store
        .add_approval(me.mesh_id.clone(), id.clone(), row.clone())
        .await
    {
        Ok(true) => {
            conn.reply(
                req_id,
                ServerMessage::ApprovalRequested {
                    id: id.clone(),
                    expires_at: row.expires_at_ms,
                    approvers: row.copies.len(),
                },
            );
            tell_approvers(broker, &me.mesh_id, &id, &row, "requested");
        }
        Ok(false) => conn.error(
            req_id,
            "limit",
            format!("{MAX_PENDING_APPROVALS} requests of this member are already waiting"),
        ),
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

/// `list_approvals`: the pending requests this member holds a copy of.
pub fn list_approvals(conn: &Conn, req_id: Option<String>) {
    let Some(me) = conn.peer.as_ref() else { return };
    let now = time::now_ms();
    match conn
        .broker
        .store
        .approvals_for(&me.mesh_id, &me.member_id, now)
    {
        Ok(rows) => {
            let approvals = rows
                .iter()
                .take(MAX_LISTED)
                .filter_map(|(id, row)| {
                    row.copy_for(&me.member_id)
                        .map(|copy| entry(id, row, copy, now))
                })
                .collect();
            conn.reply(req_id, ServerMessage::Approvals { approvals });
        }
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

/// Whether the approver entry that gave `member_id` its copy is still in the asking member's
/// list (an approver removed since cannot answer).
fn still_approver(
    broker: &Broker,
    mesh_id: &str,
    row: &ApprovalRow,
    member_id: &str,
) -> Result<bool, StoreError> {
    let Some(copy) = row.copy_for(member_id) else {
        return Ok(false);
    };
    Ok(broker
        .store
        .approvers(mesh_id, &row.requester_member_id)?
        .contains(&copy.via))
}

/// `answer_approval{id, behavior}`: the first answer of a current approver to a pending
/// request decides it; the asking session gets `approval_decided`.
pub async fn answer_approval(conn: &Conn, req_id: Option<String>, id: String, behavior: String) {
    let Some(me) = conn.peer.clone() else { return };
    if behavior != "allow" && behavior != "deny" {
        return conn.error(
            req_id,
            "invalid_argument",
            format!(
                "behavior must be \"allow\" or \"deny\", not \"{}\"",
                short(&behavior)
            ),
        );
    }
    let broker = &conn.broker;
    let forbidden = || {
        format!(
            "forbidden: you are not an approver of request {}",
            short(&id)
        )
    };
    match broker.store.approval(&me.mesh_id, &id) {
        Ok(Some(row)) => match still_approver(broker, &me.mesh_id, &row, &me.member_id) {
            Ok(true) => {}
            Ok(false) => return conn.error(req_id, "forbidden", forbidden()),
            Err(e) => return conn.error(req_id, "internal", e.to_string()),
        },
        Ok(None) => {}
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    }
    let by = AuditActor::member(&me.member_id, &me.display_name);
    let outcome = broker
        .store
        .decide_approval(
            me.mesh_id.clone(),
            id.clone(),
            by,
            behavior.clone(),
            time::now_ms(),
        )
        .await;
    let row = match outcome {
        Ok(DecideOutcome::Done(row)) => row,
        Ok(DecideOutcome::NotFound) => {
            return conn.error(req_id, "not_found", format!("no request {}", short(&id)));
        }
        Ok(DecideOutcome::NotApprover) => return conn.error(req_id, "forbidden", forbidden()),
        Ok(DecideOutcome::Expired) => {
            return conn.error(
                req_id,
                "expired",
                format!("request {} expired unanswered", short(&id)),
            );
        }
        Ok(DecideOutcome::AlreadyDecided(d)) => {
            return conn.error(
                req_id,
                "already_decided",
                format!(
                    "request {} was already answered: {} by {}",
                    short(&id),
                    d.behavior,
                    d.by_name
                ),
            );
        }
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let decision = ApprovalDecision {
        id: id.clone(),
        request_id: row.request_id.clone(),
        behavior,
        decided_by: me.display_name.clone(),
        decided_by_member_id: me.member_id.clone(),
    };
    conn.reply(req_id, ServerMessage::ApprovalDecided(decision.clone()));
    for p in broker.presence.peers(&me.mesh_id) {
        if p.member_id == row.requester_member_id && speaking_key(&p) == row.requester_key {
            p.send(&Envelope::new(ServerMessage::ApprovalDecided(
                decision.clone(),
            )));
        }
    }
    tell_approvers(broker, &me.mesh_id, &id, &row, "decided");
}
