//! Per-peer grants and blocks (issue 13, PROTOCOL.md §12.3): `block`, `unblock`, `set_grants`,
//! `list_grants`, and the checks a send makes against them. The broker refuses, never drops
//! silently: a direct message to a member who blocked its sender (or turned messages off) is
//! an error the sender sees; a group or broadcast message leaves that member out.

use std::collections::HashSet;

use crate::broker::connection::Conn;
use crate::broker::presence::Peer;
use crate::broker::state::Broker;
use crate::protocol::messages::{GrantEntry, SetGrants};
use crate::protocol::{Pubkey, ServerMessage, time};
use crate::store::{GrantChange, GrantRow, MAX_GRANT_ROWS, Member, RecipientKey, Right};

/// Most entries one `grants` answer lists (each is ~250 bytes; a frame holds 64 KiB).
const MAX_LISTED: usize = 200;

/// The member a `peer` field names: a member id, or a member or session key (64 hex).
pub(super) fn find_member(
    broker: &Broker,
    mesh_id: &str,
    peer: &str,
) -> Result<Option<Member>, String> {
    let store_err = |e: crate::store::StoreError| e.to_string();
    if let Ok(key) = Pubkey::parse(peer) {
        if let Some(m) = broker
            .store
            .member_by_pubkey(mesh_id, &key)
            .map_err(store_err)?
        {
            return Ok(Some(std::sync::Arc::unwrap_or_clone(m)));
        }
        let member_id = match session_member(broker, mesh_id, key).map_err(store_err)? {
            Some(id) => id,
            None => return Ok(None),
        };
        return broker.store.member(mesh_id, &member_id).map_err(store_err);
    }
    broker.store.member(mesh_id, peer).map_err(store_err)
}

/// The member a session key belongs to: a live presence's, else a known session's.
fn session_member(
    broker: &Broker,
    mesh_id: &str,
    session: Pubkey,
) -> Result<Option<String>, crate::store::StoreError> {
    if let Some(member_id) = broker.presence.session_member(mesh_id, &session) {
        return Ok(Some(member_id));
    }
    Ok(broker
        .store
        .known_session(mesh_id, &session.to_hex())?
        .map(|s| s.member_id))
}

fn entry(member: &Member, row: Option<&GrantRow>) -> GrantEntry {
    let allowed = Right::ALL
        .into_iter()
        .filter(|r| row.is_none_or(|g| g.allows(*r)))
        .map(|r| r.as_str().to_string())
        .collect();
    GrantEntry {
        member_id: member.id.clone(),
        pubkey: member.pubkey.to_hex(),
        display_name: member.display_name.clone(),
        allowed,
        blocked: row.is_some_and(|g| g.blocked),
    }
}

fn parse_rights(names: Option<Vec<String>>) -> Result<Vec<Right>, String> {
    names
        .unwrap_or_default()
        .iter()
        .map(|n| {
            Right::parse(n).ok_or_else(|| {
                format!(
                    "unknown right \"{}\" (message, files or tools)",
                    n.chars().take(32).collect::<String>()
                )
            })
        })
        .collect()
}

/// How `block`, `unblock` and `set_grants` change a row.
pub enum Change {
    Block,
    Unblock,
    Set {
        grant: Vec<Right>,
        revoke: Vec<Right>,
    },
}

impl Change {
    fn apply(self, row: &mut GrantRow) {
        match self {
            Change::Block => {
                row.blocked = true;
                row.allowed.clear();
            }
            Change::Unblock => {
                row.blocked = false;
                row.allowed = Right::ALL.to_vec();
            }
            Change::Set { grant, revoke } => {
                if !grant.is_empty() {
                    row.blocked = false;
                }
                for r in grant {
                    if !row.allowed.contains(&r) {
                        row.allowed.push(r);
                    }
                }
                row.allowed.retain(|r| !revoke.contains(r));
                row.allowed.sort_by_key(|r| r.as_str());
            }
        }
    }
}

pub fn set_grants_change(s: SetGrants) -> Result<(String, Change), String> {
    let grant = parse_rights(s.grant)?;
    let revoke = parse_rights(s.revoke)?;
    if let Some(r) = grant.iter().find(|r| revoke.contains(r)) {
        return Err(format!("\"{}\" is both granted and revoked", r.as_str()));
    }
    Ok((s.peer, Change::Set { grant, revoke }))
}

/// Applies a change to what `peer` may do towards the asking member; answers `grants` with
/// that peer's entry as it now is.
pub async fn change(conn: &Conn, req_id: Option<String>, peer: String, change: Change) {
    let Some(me) = conn.peer.clone() else { return };
    let target = match find_member(&conn.broker, &me.mesh_id, &peer) {
        Ok(Some(m)) if m.revoked_at_ms.is_none() => m,
        Ok(_) => {
            return conn.error(
                req_id,
                "not_found",
                format!(
                    "no member {} in this mesh",
                    peer.chars().take(64).collect::<String>()
                ),
            );
        }
        Err(e) => return conn.error(req_id, "internal", e),
    };
    if target.id == me.member_id {
        return conn.error(
            req_id,
            "invalid_argument",
            "grants are for other members; you cannot restrict yourself",
        );
    }
    let done = conn
        .broker
        .store
        .change_grant(
            me.mesh_id.clone(),
            me.member_id.clone(),
            target.id.clone(),
            time::now_ms(),
            move |row| change.apply(row),
        )
        .await;
    match done {
        Ok(GrantChange::Done(row)) => conn.reply(
            req_id,
            ServerMessage::Grants {
                grants: vec![entry(&target, row.as_ref())],
                truncated: false,
            },
        ),
        Ok(GrantChange::Full) => conn.error(
            req_id,
            "limit",
            format!(
                "you already restrict {MAX_GRANT_ROWS} members, the most one member may; unblock someone first"
            ),
        ),
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

/// `list_grants`: the members the asking member restricts (everyone else may do everything).
pub fn list_grants(conn: &Conn, req_id: Option<String>) {
    let Some(me) = conn.peer.as_ref() else { return };
    let broker = &conn.broker;
    let rows = match broker.store.grants_by(&me.mesh_id, &me.member_id) {
        Ok(rows) => rows,
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let truncated = rows.len() > MAX_LISTED;
    let mut grants = Vec::new();
    for (member_id, row) in rows.iter().take(MAX_LISTED) {
        if let Ok(Some(m)) = broker.store.member(&me.mesh_id, member_id) {
            grants.push(entry(&m, Some(row)));
        }
    }
    conn.reply(req_id, ServerMessage::Grants { grants, truncated });
}

/// Members that take no message from `sender` now: they denied it `message`, or turned
/// messages off (profile `messageMode: off`). Never the sender's own member.
pub fn refusing(broker: &Broker, sender: &Peer) -> Result<HashSet<String>, String> {
    let store_err = |e: crate::store::StoreError| e.to_string();
    let mut out = broker
        .store
        .denying(&sender.mesh_id, &sender.member_id, Right::Message)
        .map_err(store_err)?;
    out.extend(
        broker
            .store
            .members_with_messages_off(&sender.mesh_id)
            .map_err(store_err)?,
    );
    out.remove(&sender.member_id);
    Ok(out)
}

/// Why a direct message from `sender` to `recipients` (a key target's) must not be sent:
/// `blocked` when the recipient's member denied the sender `message`, `messages_off` when it
/// turned messages off.
pub fn direct_refusal(
    broker: &Broker,
    sender: &Peer,
    recipients: &[(String, String)],
) -> Result<(), (&'static str, String)> {
    let internal = |e: crate::store::StoreError| ("internal", e.to_string());
    for (key, name) in recipients {
        let member_id = match RecipientKey::decode(key) {
            Some(RecipientKey::Member { member_id, .. }) => Some(member_id),
            Some(RecipientKey::Session { session, .. }) => {
                session_member(broker, &sender.mesh_id, session).map_err(internal)?
            }
            None => None,
        };
        let Some(member_id) = member_id.filter(|m| *m != sender.member_id) else {
            continue;
        };
        let grant = broker
            .store
            .grant(&sender.mesh_id, &member_id, &sender.member_id)
            .map_err(internal)?;
        if grant.is_some_and(|g| !g.allows(Right::Message)) {
            return Err((
                "blocked",
                format!("{name} does not accept messages from you (blocked); nothing was sent"),
            ));
        }
        if broker
            .store
            .messages_off(&sender.mesh_id, &member_id)
            .map_err(internal)?
        {
            return Err((
                "messages_off",
                format!("{name} has turned messages off; nothing was sent"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_row() -> GrantRow {
        GrantRow {
            allowed: Right::ALL.to_vec(),
            blocked: false,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_block_denies_everything_and_a_grant_lifts_it_for_that_right_only() {
        let mut row = default_row();
        Change::Block.apply(&mut row);
        assert!(Right::ALL.iter().all(|r| !row.allows(*r)));
        Change::Set {
            grant: vec![Right::Message],
            revoke: vec![],
        }
        .apply(&mut row);
        assert!(!row.blocked);
        assert!(row.allows(Right::Message));
        assert!(!row.allows(Right::Files) && !row.allows(Right::Tools));
        Change::Unblock.apply(&mut row);
        assert_eq!(row, default_row());
    }

    #[test]
    fn set_grants_names_a_bad_right_and_a_contradiction() {
        let bad = SetGrants {
            peer: "p".into(),
            grant: Some(vec!["launch".into()]),
            revoke: None,
        };
        assert!(set_grants_change(bad).err().unwrap().contains("launch"));
        let both = SetGrants {
            peer: "p".into(),
            grant: Some(vec!["files".into()]),
            revoke: Some(vec!["files".into()]),
        };
        assert!(set_grants_change(both).err().unwrap().contains("files"));
    }
}
