//! Mesh membership over the WebSocket: invites signed by the owner, the member list, revocation.

use crate::broker::connection::Conn;
use crate::protocol::messages::{Ack, CreateInvite, InviteCreated, MemberEntry};
use crate::protocol::{ServerMessage, Signature, canonical, ids, time};
use crate::store::{Invite, MemberRole, RevokeError};

/// Most uses one invite may grant.
const MAX_INVITE_USES: u32 = 10_000;

pub async fn create_invite(conn: &Conn, req_id: Option<String>, req: CreateInvite) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = &conn.broker;
    let mesh = match broker.store.mesh(&peer.mesh_id) {
        Ok(Some(m)) => m,
        Ok(None) => return conn.error(req_id, "not_found", "this mesh no longer exists"),
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let Some(role) = MemberRole::parse_invite_role(&req.role) else {
        return conn.error(
            req_id,
            "invalid_argument",
            "role must be \"member\" or \"admin\"",
        );
    };
    if !ids::is_invite_code(&req.code) || !ids::is_id(&req.invite_id) {
        return conn.error(
            req_id,
            "invalid_argument",
            "invite code must be 8 base62 characters and the invite id 1-64 of [A-Za-z0-9_-]",
        );
    }
    if req.max_uses == 0 || req.max_uses > MAX_INVITE_USES {
        return conn.error(
            req_id,
            "invalid_argument",
            format!("uses must be between 1 and {MAX_INVITE_USES}"),
        );
    }
    let now = time::now_ms();
    if req.expires_at.saturating_mul(1000) <= now {
        return conn.error(
            req_id,
            "invalid_argument",
            "the invite's expiry is in the past",
        );
    }
    let expected = canonical::invite_v2(
        &mesh.id,
        &req.invite_id,
        req.expires_at,
        role.as_str(),
        &mesh.owner_pubkey.to_hex(),
    );
    let signed_ok = req.capability_v2.canonical == expected
        && Signature::parse(&req.capability_v2.signature).is_ok_and(|sig| {
            crate::crypto::verify(&sig.0, expected.as_bytes(), &mesh.owner_pubkey.0)
        });
    if !signed_ok {
        return conn.error(
            req_id,
            "bad_signature",
            "the invite must be signed by the mesh owner key over its canonical v2 string",
        );
    }
    let invite = Invite {
        id: req.invite_id.clone(),
        code: req.code.clone(),
        mesh_id: mesh.id.clone(),
        role,
        max_uses: req.max_uses,
        used: 0,
        expires_at_s: req.expires_at,
        created_by: peer.member_id.clone(),
        created_at_ms: now,
        revoked: false,
        canonical: req.capability_v2.canonical,
        signature: req.capability_v2.signature,
    };
    match broker.store.create_invite(invite).await {
        Ok(true) => conn.reply(
            req_id,
            ServerMessage::InviteCreated(InviteCreated {
                url: format!("{}/i/{}", broker.public_url(), req.code),
                code: req.code,
                invite_id: req.invite_id,
                expires_at: req.expires_at,
                role: role.as_str().into(),
                max_uses: req.max_uses,
            }),
        ),
        Ok(false) => conn.error(req_id, "conflict", "that invite code is taken; try again"),
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

pub fn list_members(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let members = match conn.broker.store.members(&peer.mesh_id) {
        Ok(m) => m,
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let online = conn
        .broker
        .presence
        .online_members(&peer.mesh_id, conn.conn_id);
    let members = members
        .into_iter()
        .filter(|m| m.revoked_at_ms.is_none())
        .map(|m| MemberEntry {
            online: online.contains(&m.id),
            member_id: m.id,
            pubkey: m.pubkey.to_hex(),
            display_name: m.display_name,
            role: m.role.as_str().into(),
            joined_at: time::iso(m.joined_at_ms),
            last_seen_at: m.last_seen_at_ms.map(time::iso),
            groups: m.groups,
        })
        .collect();
    conn.reply(req_id, ServerMessage::MembersList { members });
}

fn ok_ack() -> ServerMessage {
    ServerMessage::Ack(Ack {
        ok: Some(true),
        ..Default::default()
    })
}

pub async fn revoke_invite(conn: &Conn, req_id: Option<String>, code: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let result = conn
        .broker
        .store
        .revoke_invite(peer.mesh_id.clone(), code.clone(), peer.member_id.clone())
        .await;
    match result {
        Ok(Ok(())) => conn.reply(req_id, ok_ack()),
        Ok(Err(RevokeError::NotFound)) => conn.error(
            req_id,
            "not_found",
            format!("no invite \"{code}\" in this mesh"),
        ),
        Ok(Err(_)) => conn.error(
            req_id,
            "forbidden",
            "only the owner or an admin can revoke invites",
        ),
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

pub async fn revoke_member(conn: &Conn, req_id: Option<String>, target: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = &conn.broker;
    // Cut the member off before the revocation commits: from here no hello of theirs
    // registers, no frame or queued step of theirs runs, and nothing of theirs is still
    // running when the revocation is written, so nothing they send commits after it.
    let cut_off = revocable(broker, &peer.mesh_id, &peer.member_id, &target);
    if let Some(member_id) = &cut_off {
        let gone = broker.presence.revoke(&peer.mesh_id, member_id);
        for p in &gone {
            // The revoker's own frame holds its own presence's authority: an admin revoking
            // itself must not wait for itself.
            if p.presence_id != peer.presence_id {
                p.wait_idle().await;
            }
            crate::broker::router::announce(broker, p, "peer_left");
        }
    }
    let result = broker
        .store
        .revoke_member(
            peer.mesh_id.clone(),
            target.clone(),
            peer.member_id.clone(),
            time::now_ms(),
        )
        .await;
    if let Some(member_id) = &cut_off
        && !matches!(&result, Ok(Ok(m)) if &m.id == member_id)
    {
        broker.presence.unrevoke(&peer.mesh_id, member_id);
    }
    match result {
        Ok(Ok(member)) => {
            broker.presence.revoke(&peer.mesh_id, &member.id);
            conn.reply(req_id, ok_ack());
        }
        Ok(Err(RevokeError::Forbidden)) => conn.error(
            req_id,
            "forbidden",
            "only the owner or an admin can revoke members",
        ),
        Ok(Err(RevokeError::NotFound)) => conn.error(
            req_id,
            "not_found",
            format!("no member \"{target}\" in this mesh"),
        ),
        Ok(Err(RevokeError::IsOwner)) => {
            conn.error(req_id, "forbidden", "the mesh owner cannot be revoked")
        }
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

/// The member id `target` (member id or public key) names, when `by` may revoke it: the checks
/// `Store::revoke_member` makes, read ahead so a refused revocation cuts nobody off.
fn revocable(
    broker: &crate::broker::state::Broker,
    mesh_id: &str,
    by: &str,
    target: &str,
) -> Option<String> {
    let store = &broker.store;
    let actor = store.member(mesh_id, by).ok().flatten()?;
    if !actor.role.can_manage() || actor.revoked_at_ms.is_some() {
        return None;
    }
    let member = match crate::protocol::Pubkey::parse(target) {
        Ok(pk) => store.member_by_pubkey(mesh_id, &pk).ok().flatten()?,
        Err(_) => store.member(mesh_id, target).ok().flatten()?,
    };
    (member.role != MemberRole::Owner).then_some(member.id)
}
