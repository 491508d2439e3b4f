//! Presence and groups (PROTOCOL.md §5): who is here, status, summary, visibility, groups
//! (the profile has its own file, `profile.rs`). From a short-lived tool connection (control-plane) these act for the member: on all
//! of its presences, and on what is remembered for its next sessions.

use std::sync::Arc;

use super::reply::{maybe_ack, ok_ack};
use crate::broker::connection::Conn;
use crate::broker::limits::{
    MAX_CWD_BYTES, MAX_GROUP_NAME, MAX_GROUPS_PER_MEMBER, MAX_PEER_FIELD_BYTES, MAX_SUMMARY_BYTES,
};
use crate::broker::page::{Pager, decode_cursor};
use crate::broker::presence::Peer;
use crate::broker::router;
use crate::broker::status::{Status, StatusSource};
use crate::broker::status_history;
use crate::protocol::messages::{GroupRef, PeerInfo};
use crate::protocol::{ServerMessage, time};

/// A text field over its size limit: `payload_too_large`, naming the field and the limit.
fn too_large(field: &str, bytes: usize, max: usize) -> (&'static str, String) {
    (
        "payload_too_large",
        format!("{field} is {bytes} bytes; the limit is {max}"),
    )
}

pub(super) fn check_len(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<(), (&'static str, String)> {
    match value {
        Some(v) if v.len() > max => Err(too_large(field, v.len(), max)),
        _ => Ok(()),
    }
}

/// What a hello says about the peer, held to the sizes others will be shown: a hello over a
/// limit is refused (no real client sends a 4 KiB path or 33 groups; cutting would hide it).
pub(super) fn check_peer_info(info: &PeerInfo) -> Result<(), (&'static str, String)> {
    check_len("cwd", Some(&info.cwd), MAX_CWD_BYTES)?;
    check_len("sessionId", Some(&info.session_id), MAX_PEER_FIELD_BYTES)?;
    check_len("hostname", info.hostname.as_deref(), MAX_PEER_FIELD_BYTES)?;
    check_len("peerType", info.peer_type.as_deref(), MAX_PEER_FIELD_BYTES)?;
    check_len("channel", info.channel.as_deref(), MAX_PEER_FIELD_BYTES)?;
    check_len("model", info.model.as_deref(), MAX_PEER_FIELD_BYTES)?;
    check_len("peerRole", info.peer_role.as_deref(), MAX_PEER_FIELD_BYTES)?;
    // The display name is cleaned and cut to 64 characters; a huge one is still not a name.
    check_len(
        "displayName",
        info.display_name.as_deref(),
        MAX_PEER_FIELD_BYTES,
    )?;
    let groups = info.groups.as_ref().map_or(0, Vec::len);
    if groups > MAX_GROUPS_PER_MEMBER {
        return Err((
            "payload_too_large",
            format!("groups lists {groups} groups; the limit is {MAX_GROUPS_PER_MEMBER}"),
        ));
    }
    Ok(())
}

/// The presences a presence-changing request applies to.
fn scope(conn: &Conn) -> Vec<Arc<Peer>> {
    let Some(me) = conn.peer.as_ref() else {
        return Vec::new();
    };
    if !me.control_plane {
        return vec![me.clone()];
    }
    conn.broker
        .presence
        .peers(&me.mesh_id)
        .into_iter()
        .filter(|p| p.member_id == me.member_id && !p.control_plane)
        .collect()
}

/// One page of the peers, by display name (then presence id, so the order is total and a
/// cursor stays valid while peers come and go).
pub fn list_peers(
    conn: &Conn,
    req_id: Option<String>,
    group: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
) {
    let Some(me) = conn.peer.as_ref() else { return };
    let after = match decode_cursor(cursor.as_deref()) {
        Ok(after) => after,
        Err(e) => return conn.error(req_id, "invalid_argument", e.to_string()),
    };
    let group = group.map(|g| g.trim_start_matches('@').to_string());
    // Display names hold no control characters, so NUL keeps (name, id) order.
    let position = |p: &Peer| format!("{}\0{}", p.shown_name(), p.presence_id);
    let mut peers: Vec<(String, Arc<Peer>)> = conn
        .broker
        .presence
        .peers(&me.mesh_id)
        .into_iter()
        .filter(|p| p.shown_to(me))
        .filter(|p| group.as_deref().is_none_or(|g| p.in_group(g)))
        .map(|p| (position(&p), p))
        .filter(|(at, _)| after.as_ref().is_none_or(|after| at > after))
        .collect();
    peers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut page = Pager::new(limit);
    for (at, peer) in &peers {
        if !page.offer(at, Some(peer.entry())) {
            break;
        }
    }
    let (peers, next_cursor) = page.finish();
    conn.reply(req_id, ServerMessage::PeersList { peers, next_cursor });
}

pub fn set_status(conn: &Conn, req_id: Option<String>, status: &str, source: Option<&str>) {
    // Only jsonl may be claimed over the socket; hooks prove themselves over HTTP.
    let source = match source {
        Some("jsonl") => StatusSource::Jsonl,
        _ => StatusSource::Manual,
    };
    let Some(status) = Status::parse(status) else {
        return conn.error(
            req_id,
            "invalid_argument",
            format!("unknown status \"{status}\" (idle, working or dnd)"),
        );
    };
    let now = time::now_ms();
    let peers = scope(conn);
    if peers.is_empty() {
        // A control-plane connection (the CLI) sets the member's live sessions: none is a
        // status that applies to nothing, so say so rather than acknowledge it.
        return conn.error(
            req_id,
            "not_found",
            "no session of yours is connected to this mesh: a status applies to live sessions (start one with `claudemesh launch`)",
        );
    }
    for peer in peers {
        let changed = peer.state().status.report(status, source, now);
        if changed {
            status_history::changed(&conn.broker, &peer, status.as_str(), source.as_str(), now);
        }
        if changed && status == Status::Idle {
            router::deliver_pending(&conn.broker, &peer, false);
        }
    }
    maybe_ack(conn, req_id);
}

pub async fn set_summary(conn: &Conn, req_id: Option<String>, summary: String) {
    let Some(me) = conn.peer.clone() else { return };
    if let Err((code, message)) = check_len("summary", Some(&summary), MAX_SUMMARY_BYTES) {
        return conn.error(req_id, code, message);
    }
    for peer in scope(conn) {
        peer.state().summary = Some(summary.clone());
    }
    let stored = summary.clone();
    if let Err(e) = conn
        .broker
        .store
        .update_member(me.mesh_id.clone(), me.member_id.clone(), move |m| {
            m.last_summary = Some(stored)
        })
        .await
    {
        return conn.error(req_id, "internal", e.to_string());
    }
    maybe_ack(conn, req_id);
}

pub fn set_visible(conn: &Conn, req_id: Option<String>, visible: bool) {
    for peer in scope(conn) {
        let changed = {
            let mut st = peer.state();
            let changed = st.visible != visible;
            st.visible = visible;
            changed
        };
        if changed {
            router::announce(
                &conn.broker,
                &peer,
                if visible {
                    "peer_visible"
                } else {
                    "peer_hidden"
                },
            );
        }
    }
    conn.reply(req_id, ok_ack());
}

/// Most groups a hello may claim.
const MAX_GROUPS: usize = MAX_GROUPS_PER_MEMBER;

/// The groups a hello claims, held to the rules `join_group` enforces: valid names only, each
/// once, roles cut to a short printable label.
pub(super) fn clean_groups(groups: Vec<GroupRef>) -> Vec<GroupRef> {
    let mut out: Vec<GroupRef> = Vec::new();
    for g in groups {
        let name = g.name.trim_start_matches('@');
        if out.len() < MAX_GROUPS && valid_group(name) && !out.iter().any(|o| o.name == name) {
            out.push(GroupRef {
                name: name.to_string(),
                role: clean_role(g.role),
            });
        }
    }
    out
}

/// A group role as others will see it: printable, at most 64 characters; `None` when empty.
fn clean_role(role: Option<String>) -> Option<String> {
    let role: String = role?
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_GROUP_NAME)
        .collect();
    let role = role.trim();
    (!role.is_empty()).then(|| role.to_string())
}

pub(super) fn valid_group(name: &str) -> bool {
    name.len() <= MAX_GROUP_NAME
        // Subgroups are `/`-separated; no empty, `.` or `..` part.
        && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

/// Joins (`Some(role)`) or leaves (`None`) a group, for the scope and the member's record.
pub async fn change_group(
    conn: &Conn,
    req_id: Option<String>,
    name: &str,
    join: Option<Option<String>>,
) {
    let Some(me) = conn.peer.clone() else { return };
    let name = name.trim_start_matches('@');
    let join = join.map(clean_role);
    if !valid_group(name) {
        return conn.error(
            req_id,
            "invalid_argument",
            "a group name is 1-64 of [A-Za-z0-9-_.] with / between subgroups",
        );
    }
    if join.is_some() {
        // The cap holds for every presence in scope and for what is remembered for the member.
        let full = |groups: &[GroupRef]| {
            groups.len() >= MAX_GROUPS_PER_MEMBER && !groups.iter().any(|g| g.name == name)
        };
        let stored = match conn.broker.store.member(&me.mesh_id, &me.member_id) {
            Ok(m) => m.map(|m| m.groups).unwrap_or_default(),
            Err(e) => return conn.error(req_id, "internal", e.to_string()),
        };
        if full(&stored) || scope(conn).iter().any(|p| full(&p.state().groups)) {
            return conn.error(
                req_id,
                "invalid_argument",
                format!(
                    "a member may be in at most {MAX_GROUPS_PER_MEMBER} groups; leave one before joining @{name}"
                ),
            );
        }
    }
    let apply = |groups: &mut Vec<GroupRef>| {
        groups.retain(|g| g.name != name);
        if let Some(role) = &join {
            groups.push(GroupRef {
                name: name.to_string(),
                role: role.clone(),
            });
        }
    };
    let mut remembered = None;
    for peer in scope(conn) {
        let mut st = peer.state();
        apply(&mut st.groups);
        remembered = Some(st.groups.clone());
    }
    let stored_apply = {
        let name = name.to_string();
        let join = join.clone();
        move |m: &mut crate::store::Member| {
            let groups = match remembered {
                Some(g) => g,
                None => {
                    let mut g = m.groups.clone();
                    g.retain(|x| x.name != name);
                    if let Some(role) = join {
                        g.push(GroupRef { name, role });
                    }
                    g
                }
            };
            m.groups = groups;
        }
    };
    if let Err(e) = conn
        .broker
        .store
        .update_member(me.mesh_id.clone(), me.member_id.clone(), stored_apply)
        .await
    {
        return conn.error(req_id, "internal", e.to_string());
    }
    maybe_ack(conn, req_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::presence::in_group;

    #[test]
    fn group_names_and_subgroups() {
        assert!(valid_group("backend/api"));
        assert!(!valid_group("a b"));
        assert!(!valid_group("/x"));
        assert!(!valid_group("x/"));
        assert!(!valid_group("a//b"));
        assert!(!valid_group(""));
        assert!(!valid_group("../.."));
        assert!(valid_group("v1.2/.well-known"));
        let g = vec![GroupRef {
            name: "backend/api".into(),
            role: None,
        }];
        assert!(in_group(&g, "backend"));
        assert!(in_group(&g, "backend/api"));
        assert!(!in_group(&g, "back"));
    }

    #[test]
    fn groups_claimed_in_a_hello_follow_the_join_group_rules() {
        let g = |name: &str, role: Option<&str>| GroupRef {
            name: name.into(),
            role: role.map(str::to_string),
        };
        let claimed = vec![
            g("@ops", Some("lead\u{1b}[31m")),
            g("ops", None),
            g("\u{1b}[2Jx", None),
            g(&"x".repeat(65), None),
            g("../..", None),
            g("api", Some(" \n ")),
        ];
        assert_eq!(
            clean_groups(claimed),
            [g("ops", Some("lead[31m")), g("api", None)]
        );
        let many: Vec<GroupRef> = (0..100).map(|i| g(&format!("g{i}"), None)).collect();
        assert_eq!(clean_groups(many).len(), MAX_GROUPS);
    }
}
