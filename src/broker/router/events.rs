//! What a mesh is told as it happens: system pushes (peers joining and leaving, key rotations,
//! …) to its live presences, and to its observers which list changed.

use super::*;

/// A system push (`subtype:"system"`, PROTOCOL.md §4.3): `event` with `data`.
pub fn system_event(
    mesh_id: &str,
    event: &str,
    data: serde_json::Value,
) -> Envelope<ServerMessage> {
    broker_push(mesh_id, "system", event, data, time::now_ms())
}

/// A push from the broker itself (sender `system`, priority `low`) of `subtype`, made at
/// `at_ms`: `event` with `data`.
pub fn broker_push(
    mesh_id: &str,
    subtype: &str,
    event: &str,
    data: serde_json::Value,
    at_ms: i64,
) -> Envelope<ServerMessage> {
    Envelope::new(ServerMessage::Push(Box::new(Push {
        message_id: ids::new_id(),
        mesh_id: mesh_id.to_string(),
        sender_pubkey: "system".into(),
        priority: "low".into(),
        created_at: time::iso(at_ms),
        subtype: Some(subtype.into()),
        event: Some(event.into()),
        event_data: Some(data),
        ..Default::default()
    })))
}

/// Sends a system event (`peer_joined`, `peer_left`, …) to every other live presence.
pub fn announce(broker: &Broker, about: &Peer, event: &str) {
    if about.control_plane {
        return;
    }
    let (groups, summary, profile) = {
        let st = about.state();
        (st.groups.clone(), st.summary.clone(), st.profile.clone())
    };
    let frame = system_event(
        &about.mesh_id,
        event,
        json!({
            "name": about.shown_name(),
            "profile": profile,
            "pubkey": about.pubkey().to_hex(),
            "memberPubkey": about.member_pubkey.to_hex(),
            "groups": groups,
            "summary": summary,
            "lastSeenAt": time::iso(time::now_ms()),
        }),
    );
    send_to_mesh(broker, &about.mesh_id, &frame, Some(&about.presence_id));
}

/// Sends an ephemeral push (a system event, a clock tick) to every live presence of a mesh
/// that hears events, but `skip`, within each connection's budget for them
/// ([`super::connection::EVENT_BURST`]); what is over budget is dropped and counted.
pub fn send_to_mesh(
    broker: &Broker,
    mesh_id: &str,
    frame: &Envelope<ServerMessage>,
    skip: Option<&str>,
) {
    send_where(broker, mesh_id, frame, |peer| {
        Some(peer.presence_id.as_str()) != skip
    });
}

/// Sends an ephemeral push to the mesh's observers (dashboards) alone: what only a page
/// drawing the mesh wants, such as each status change (PROTOCOL.md §5.3).
pub fn send_to_observers(broker: &Broker, mesh_id: &str, frame: &Envelope<ServerMessage>) {
    send_where(broker, mesh_id, frame, |peer| peer.observer);
}

/// The system event that tells observers a list changed (PROTOCOL.md §3.1).
pub const MESH_CHANGED: &str = "mesh_changed";

/// Tells the mesh's observers that what they show of `area` (`tasks`, `files`, `memory` …)
/// changed, so an open page re-reads it rather than polling: system event `mesh_changed`,
/// `{area}`. Sessions are not told; they ask when they want to know.
pub fn tell_observers(broker: &Broker, mesh_id: &str, area: &str) {
    if !broker.presence.peers(mesh_id).iter().any(|p| p.observer) {
        return; // most meshes have none: no frame is made
    }
    let frame = system_event(mesh_id, MESH_CHANGED, json!({ "area": area }));
    send_to_observers(broker, mesh_id, &frame);
}

/// A request of type `what` succeeded in `mesh_id`: its observers are told if it changed a
/// list they show ([`tell_observers`]).
pub fn changed(broker: &Broker, mesh_id: &str, what: &str) {
    if let Some(area) = changed_area(what) {
        tell_observers(broker, mesh_id, area);
    }
}

/// The list a dashboard shows that a request of type `what` changes when it succeeds. Reads and
/// messages change none (messages reach observers as mirror copies, board keys as
/// `state_change`).
pub(super) fn changed_area(what: &str) -> Option<&'static str> {
    Some(match what {
        "create_task" | "claim_task" | "complete_task" | "release_task" => "tasks",
        "delete_file" | "grant_file_access" => "files",
        "remember" | "forget" => "memory",
        "share_context" => "contexts",
        "create_stream" => "streams",
        "schedule" | "cancel_scheduled" => "reminders",
        "share_skill" | "remove_skill" => "skills",
        "mcp_register" | "mcp_unregister" | "mcp_deploy" | "mcp_undeploy" | "mcp_update"
        | "mcp_scope" => "tools",
        "watch" | "unwatch" | "create_webhook" | "delete_webhook" => "watches",
        "create_invite" | "revoke_invite" | "revoke_member" | "set_perms" | "set_admins"
        | "kick" | "ban" | "unban" => "members",
        _ => return None,
    })
}

/// [`send_to_mesh`] to the presences `to` picks.
fn send_where(
    broker: &Broker,
    mesh_id: &str,
    frame: &Envelope<ServerMessage>,
    to: impl Fn(&Peer) -> bool,
) {
    // Encoded once per wire encoding, not once per peer: a join in a mesh of 1 000 peers
    // is 999 pushes of the same bytes.
    let mut encoded: [Option<tokio_tungstenite::tungstenite::Message>; 2] = [None, None];
    let mut dropped = 0;
    for peer in broker.presence.peers(mesh_id) {
        if !peer.hears_events() || !to(&peer) {
            continue;
        }
        let Some(conn) = peer.state().conn.clone() else {
            continue;
        };
        if !conn.outbox.take_event() {
            dropped += 1;
            continue;
        }
        let slot = match conn.encoding {
            Encoding::Json => &mut encoded[0],
            Encoding::MsgPack => &mut encoded[1],
        };
        let message = slot
            .get_or_insert_with(|| to_ws(frame, conn.encoding))
            .clone();
        conn.send_message(message);
    }
    if dropped > 0 {
        broker
            .metrics
            .events_dropped
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
    }
}
