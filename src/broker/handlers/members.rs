//! Mesh membership over the WebSocket: invites signed by the owner or an admin, the invite and
//! member lists, revocation, kick, disconnect and ban, and dropping a root key kept from before
//! schema 2.

use std::sync::Arc;

use super::perms::is_manager;
use super::reply::{answer, ok_ack};
use crate::broker::connection::Conn;
use crate::broker::presence::Peer;
use crate::protocol::messages::{BanEntry, CreateInvite, InviteCreated, InviteEntry, MemberEntry};
use crate::protocol::{Pubkey, ServerMessage, Signature, canonical, ids, time};
use crate::store::{AuditActor, AuditEvent, AuditNote};
use crate::store::{
    BanRefusal, Invite, InviteRef, InviteRefusal, MAX_UNEXPIRED_INVITES, MemberRole, RevokeError,
    RootKeyProof,
};

/// Most uses one invite may grant.
const MAX_INVITE_USES: u32 = 10_000;

pub async fn create_invite(conn: &Conn, req_id: Option<String>, req: CreateInvite) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = &conn.broker;
    let Some(link_base) = broker.link_url() else {
        return conn.error(
            req_id,
            "no_public_url",
            "this broker listens on every address and found none that others could reach it at, so an invite link would not work: restart it with --public-url https://host:port",
        );
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
    let (Ok(signer), Some(capability)) = (Pubkey::parse(&req.signer_pubkey), req.capability_v3)
    else {
        return conn.error(
            req_id,
            "bad_signature",
            "an invite must carry signerPubkey and capabilityV3 (the v3 form binds code, uses, expiry, role and signer; v2 is no longer accepted)",
        );
    };
    // Recomputed from the fields this broker stores: whatever was signed is exactly what
    // will be enforced.
    let expected = canonical::invite_v3(
        &peer.mesh_id,
        &req.invite_id,
        &req.code,
        req.max_uses,
        req.expires_at,
        role.as_str(),
        &signer.to_hex(),
    );
    let signed_ok = capability.canonical == expected
        && Signature::parse(&capability.signature)
            .is_ok_and(|sig| crate::crypto::verify(&sig.0, expected.as_bytes(), &signer.0));
    if !signed_ok {
        return conn.error(
            req_id,
            "bad_signature",
            "the invite's signature does not verify over its canonical v3 string (code, uses, expiry, role and signer must be exactly what was signed)",
        );
    }
    let invite = Invite {
        id: req.invite_id.clone(),
        code: req.code.clone(),
        mesh_id: peer.mesh_id.clone(),
        role,
        max_uses: req.max_uses,
        used: 0,
        expires_at_s: req.expires_at,
        created_by: peer.member_id.clone(),
        created_at_ms: now,
        revoked: false,
        signer_pubkey: Some(signer),
        canonical: capability.canonical,
        signature: capability.signature,
    };
    let refused = match broker
        .store
        .create_invite(invite, peer.member_id.clone(), now)
        .await
    {
        Ok(Ok(())) => {
            return conn.reply(
                req_id,
                ServerMessage::InviteCreated(InviteCreated {
                    url: format!("{link_base}/i/{}", req.code),
                    code: req.code,
                    invite_id: req.invite_id,
                    expires_at: req.expires_at,
                    role: role.as_str().into(),
                    max_uses: req.max_uses,
                }),
            );
        }
        Ok(Err(refused)) => refused,
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let (code, message) = match refused {
        InviteRefusal::Forbidden => (
            "forbidden",
            "registering an invite needs the \"invite\" capability, and an admin invite the owner or an admin".to_string(),
        ),
        InviteRefusal::BadSigner => (
            "bad_signature",
            "an invite must be signed by the mesh owner key or by your own member key".into(),
        ),
        InviteRefusal::CodeTaken => ("conflict", "that invite code is taken; try again".into()),
        InviteRefusal::IdTaken => (
            "invite_exists",
            format!(
                "invite {} was registered before; an invite can be registered once only",
                req.invite_id
            ),
        ),
        InviteRefusal::TooMany => (
            "limit",
            format!(
                "this mesh has {MAX_UNEXPIRED_INVITES} invites that have not expired; revoke unused ones (claudemesh invite list) or wait for them to expire"
            ),
        ),
        InviteRefusal::MeshGone => ("not_found", "this mesh no longer exists".into()),
    };
    conn.error(req_id, code, message);
}

/// Most invites one `invite_list` answer carries (keeps it far under the frame limit).
const MAX_LISTED_INVITES: usize = 100;

pub fn list_invites(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    // Codes are credentials: only those who may make invites see them (`invite`, checked in
    // dispatch), and a member that is not the owner or an admin only its own: an admin
    // invite's code would make it an admin.
    let manages = match conn
        .broker
        .store
        .acting_member_perms(&peer.mesh_id, &peer.member_id)
    {
        Ok(p) => p.is_some_and(|p| p.member.role.can_manage()),
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let (invites, members) = match (
        conn.broker.store.invites(&peer.mesh_id),
        conn.broker.store.members(&peer.mesh_id),
    ) {
        (Ok(i), Ok(m)) => (i, m),
        (Err(e), _) | (_, Err(e)) => return conn.error(req_id, "internal", e.to_string()),
    };
    let now = time::now_ms();
    let mut invites: Vec<Invite> = invites
        .into_iter()
        .filter(|i| manages || i.created_by == peer.member_id)
        .collect();
    // Still usable first, then newest first.
    invites.sort_by_key(|i| (!i.is_active(now), std::cmp::Reverse(i.created_at_ms)));
    let truncated = invites.len() > MAX_LISTED_INVITES;
    let invites = invites
        .into_iter()
        .take(MAX_LISTED_INVITES)
        .map(|i| InviteEntry {
            created_by_name: members
                .iter()
                .find(|m| m.id == i.created_by)
                .map(|m| m.display_name.clone())
                .unwrap_or_default(),
            status: i.status(now).into(),
            uses_left: i.max_uses.saturating_sub(i.used),
            created_at: time::iso(i.created_at_ms),
            code: i.code,
            invite_id: i.id,
            role: i.role.as_str().into(),
            max_uses: i.max_uses,
            used: i.used,
            expires_at: i.expires_at_s,
            created_by: i.created_by,
            revoked: i.revoked,
        })
        .collect();
    conn.reply(req_id, ServerMessage::InviteList { invites, truncated });
}

/// `root_key_proof`: drops the root key a pre-schema-2 broker kept, once a manager's client
/// shows (by its check value) that it holds the same key.
pub async fn root_key_proof(conn: &Conn, req_id: Option<String>, check: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let result = conn
        .broker
        .store
        .prove_root_key(
            peer.mesh_id.clone(),
            peer.member_id.clone(),
            check,
            time::now_ms(),
        )
        .await;
    match result {
        Ok(RootKeyProof::Dropped) => {
            tracing::info!(mesh = %peer.mesh_id, "stored root key deleted after the client proved it holds it");
            conn.reply(req_id, ok_ack());
        }
        Ok(RootKeyProof::NothingHeld) => conn.reply(req_id, ok_ack()),
        Ok(RootKeyProof::Mismatch) => conn.error(
            req_id,
            "root_key_mismatch",
            "this client's root key differs from the one the broker kept; the broker keeps its copy until the owner or an admin proves the right key",
        ),
        Ok(RootKeyProof::Forbidden) => conn.error(
            req_id,
            "forbidden",
            "only the owner or an admin proves the root key",
        ),
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
    let online = conn.broker.presence.online_members(&peer.mesh_id, peer);
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

pub async fn revoke_invite(
    conn: &Conn,
    req_id: Option<String>,
    code: Option<String>,
    invite_id: Option<String>,
) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let which = match (code, invite_id) {
        (Some(code), None) => InviteRef::Code(code),
        (None, Some(id)) => InviteRef::Id(id),
        _ => {
            return conn.error(
                req_id,
                "invalid_argument",
                "name the invite by exactly one of code or inviteId",
            );
        }
    };
    let result = conn
        .broker
        .store
        .revoke_invite(
            peer.mesh_id.clone(),
            which.clone(),
            peer.member_id.clone(),
            time::now_ms(),
        )
        .await;
    match result {
        Ok(Ok(_)) => conn.reply(req_id, ok_ack()),
        Ok(Err(RevokeError::NotFound)) => conn.error(
            req_id,
            "not_found",
            match which {
                InviteRef::Code(c) => format!("no invite with code \"{c}\" in this mesh"),
                InviteRef::Id(i) => format!("no invite with id \"{i}\" in this mesh"),
            },
        ),
        Ok(Err(_)) => conn.error(
            req_id,
            "forbidden",
            crate::protocol::messages::Permission::Invite.lacked_by(&peer.display_name),
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
        let_finish_and_leave(broker, &peer, &gone).await;
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
            super::deployments::stop_services_of(broker, &peer.mesh_id, &member.id).await;
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

/// Waits for the frames the cut-off presences `gone` were running, then announces them gone.
async fn let_finish_and_leave(
    broker: &crate::broker::state::Broker,
    remover: &crate::broker::presence::Peer,
    gone: &[std::sync::Arc<crate::broker::presence::Peer>],
) {
    let_finish(remover, gone).await;
    for p in gone {
        crate::broker::router::announce(broker, p, "peer_left");
    }
}

/// Waits until no presence in `gone` still runs a frame, but the remover's own: its frame
/// (this revocation) holds its presence's authority, and an admin removing itself must not
/// wait for itself.
async fn let_finish(
    remover: &crate::broker::presence::Peer,
    gone: &[std::sync::Arc<crate::broker::presence::Peer>],
) {
    for p in gone {
        if p.presence_id != remover.presence_id {
            p.wait_idle().await;
        }
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
        Ok(pk) => {
            std::sync::Arc::unwrap_or_clone(store.member_by_pubkey(mesh_id, &pk).ok().flatten()?)
        }
        Err(_) => store.member(mesh_id, target).ok().flatten()?,
    };
    (member.role != MemberRole::Owner).then_some(member.id)
}

// Kick, disconnect, ban (PROTOCOL.md §12.2).

/// Most bans one `bans` answer lists.
const MAX_LISTED_BANS: usize = 100;

/// The reason as given, trimmed and bounded, or `default`.
fn reason_or(reason: Option<String>, default: String) -> String {
    let reason = reason.unwrap_or_default();
    let reason = reason.trim();
    if reason.is_empty() {
        default
    } else {
        reason.chars().take(crate::store::MAX_BAN_REASON).collect()
    }
}

/// The member a manager's `kick` / `ban` names, or the refusal to send.
fn removable(
    conn: &Conn,
    target: &str,
    verb: &str,
) -> Result<crate::store::Member, (&'static str, String)> {
    let Some(peer) = conn.peer.as_ref() else {
        return Err(("no_hello", "send hello first".into()));
    };
    if !is_manager(&conn.broker, &peer.mesh_id, &peer.member_id) {
        return Err((
            "forbidden",
            format!("only the owner or an admin of this mesh can {verb} members"),
        ));
    }
    let member = match conn.broker.store.find_member(&peer.mesh_id, target) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(("not_found", format!("no member \"{target}\" in this mesh")));
        }
        Err(e) => return Err(("internal", e.to_string())),
    };
    if member.role == MemberRole::Owner {
        let done = if verb == "ban" { "banned" } else { "kicked" };
        return Err(("forbidden", format!("the mesh owner cannot be {done}")));
    }
    Ok(member)
}

/// `kick {member, reason?}`: closes every connection of the member with `error{code:"kicked"}`
/// and close 4001. Nothing is refused afterwards: it may connect again.
pub fn kick(conn: &Conn, req_id: Option<String>, target: String, reason: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let member = match removable(conn, &target, "kick") {
        Ok(m) => m,
        Err((code, message)) => return conn.error(req_id, code, message),
    };
    let message = reason_or(
        reason,
        format!("kicked from the mesh by {}", peer.display_name),
    );
    let why = ServerMessage::error("kicked", message);
    let broker = &conn.broker;
    let gone =
        broker
            .presence
            .close_where(&peer.mesh_id, |p| p.member_id == member.id, &why, "kicked");
    for p in &gone {
        crate::broker::router::announce(broker, p, "peer_left");
    }
    let note = AuditNote::new(AuditEvent::MemberKicked, by(&peer))
        .with("memberId", &member.id)
        .with("name", &member.display_name)
        .with("sessions", gone.len());
    record(conn, req_id, &peer.mesh_id, note);
}

fn by(peer: &Peer) -> AuditActor {
    AuditActor::member(peer.member_id.clone(), peer.display_name.clone())
}

/// Logs an action that changed no stored data, then acknowledges it.
fn record(conn: &Conn, req_id: Option<String>, mesh_id: &str, note: AuditNote) {
    let broker = conn.broker.clone();
    let mesh_id = mesh_id.to_owned();
    answer(conn, req_id, async move {
        broker
            .store
            .record_audit(&mesh_id, note, time::now_ms())
            .await?;
        Ok(Some(ok_ack()))
    });
}

/// `disconnect {session}`: closes one connection, named by presence id, the key `list_peers`
/// shows, its session id, or the first 8+ hex characters of a live session's key or of its
/// member's key (the IDs plain `peers` prints). The owner and admins may close anyone's but
/// the owner's; a member its own.
pub fn disconnect(conn: &Conn, req_id: Option<String>, session: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = &conn.broker;
    let matches = named_connections(broker.presence.peers(&peer.mesh_id), &session);
    let target = match matches.as_slice() {
        [one] => one.clone(),
        [] => {
            return conn.error(
                req_id,
                "not_found",
                format!(
                    "no connection \"{session}\" in this mesh: give the ID `claudemesh peers` shows, or a session's pubkey or session id (`claudemesh peers --json` lists them)"
                ),
            );
        }
        more => {
            return conn.error(
                req_id,
                "invalid_argument",
                format!(
                    "\"{session}\" names {} connections; give one session's key (`claudemesh peers` lists the sessions of a member with several) or its session id (`claudemesh peers --json`)",
                    more.len()
                ),
            );
        }
    };
    let own = target.member_id == peer.member_id;
    let allowed = own
        || (is_manager(broker, &peer.mesh_id, &peer.member_id) && target.role != MemberRole::Owner);
    if !allowed {
        return conn.error(
            req_id,
            "forbidden",
            "a member may disconnect its own sessions; the owner or an admin anyone's but the owner's",
        );
    }
    let why = ServerMessage::error(
        "disconnected",
        format!("this connection was closed by {}", peer.display_name),
    );
    let gone = broker.presence.close_where(
        &peer.mesh_id,
        |p| p.presence_id == target.presence_id,
        &why,
        "disconnected",
    );
    for p in &gone {
        crate::broker::router::announce(broker, p, "peer_left");
    }
    let note = AuditNote::new(AuditEvent::SessionDisconnected, by(&peer))
        .with("memberId", &target.member_id)
        .with("name", &target.display_name)
        .with("session", &target.presence_id);
    record(conn, req_id, &peer.mesh_id, note);
}

/// The connections `session` names among `peers`: a presence id, a session's key or session
/// id; failing those, 8+ hex characters that begin the key of a live session or of its member
/// (a tool's own short-lived connection is never named so).
fn named_connections(peers: Vec<Arc<Peer>>, session: &str) -> Vec<Arc<Peer>> {
    let exact: Vec<_> = peers
        .iter()
        .filter(|p| {
            p.presence_id == session
                || p.pubkey().to_hex() == session
                || (!p.info.session_id.is_empty() && p.info.session_id == session)
        })
        .cloned()
        .collect();
    if !exact.is_empty() || session.len() < 8 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
        return exact;
    }
    let prefix = session.to_ascii_lowercase();
    peers
        .into_iter()
        .filter(|p| {
            !p.control_plane
                && p.is_live()
                && (p.pubkey().to_hex().starts_with(&prefix)
                    || p.member_pubkey.to_hex().starts_with(&prefix))
        })
        .collect()
}

/// `ban {member, reason?}`: the member's connections are told why and closed (4002), and its
/// hellos and claims are refused with `banned` until `unban`. As with revocation, nothing it
/// sent commits after the ban: its frames in flight finish before the ban is written.
pub async fn ban(conn: &Conn, req_id: Option<String>, target: String, reason: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let member = match removable(conn, &target, "ban") {
        Ok(m) => m,
        Err((code, message)) => return conn.error(req_id, code, message),
    };
    let broker = &conn.broker;
    let reason = reason_or(reason, String::new());
    let why = ServerMessage::error("banned", crate::broker::http::banned_message(&reason));
    let gone = broker.presence.ban(&peer.mesh_id, &member.id, &why);
    let_finish_and_leave(broker, &peer, &gone).await;
    let result = broker
        .store
        .ban_member(
            peer.mesh_id.clone(),
            member.id.clone(),
            peer.member_id.clone(),
            reason,
            time::now_ms(),
        )
        .await;
    if !matches!(result, Ok(Ok(_))) && member.revoked_at_ms.is_none() {
        broker.presence.unrevoke(&peer.mesh_id, &member.id);
    }
    match result {
        Ok(Ok(_)) => {
            super::deployments::stop_services_of(broker, &peer.mesh_id, &member.id).await;
            conn.reply(req_id, ok_ack())
        }
        Ok(Err(refusal)) => conn.error(req_id, "forbidden", ban_refusal(&refusal, &target)),
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

fn ban_refusal(refusal: &BanRefusal, target: &str) -> String {
    match refusal {
        BanRefusal::Forbidden => "only the owner or an admin of this mesh can ban members".into(),
        BanRefusal::NotFound => format!("no member \"{target}\" in this mesh"),
        BanRefusal::IsOwner => "the mesh owner cannot be banned".into(),
        BanRefusal::NotBanned => format!("\"{target}\" is not banned"),
    }
}

/// `unban {member}`: lifts the ban; the member may say hello and claim again.
pub async fn unban(conn: &Conn, req_id: Option<String>, target: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = &conn.broker;
    let result = broker
        .store
        .unban_member(peer.mesh_id.clone(), target.clone(), peer.member_id.clone())
        .await;
    match result {
        Ok(Ok(ban)) => {
            let revoked = broker
                .store
                .member(&peer.mesh_id, &ban.member_id)
                .ok()
                .flatten()
                .is_none_or(|m| m.revoked_at_ms.is_some());
            if !revoked {
                broker.presence.unrevoke(&peer.mesh_id, &ban.member_id);
                // The services it deployed were stopped by the ban; they run again.
                super::deployments::start_services_of(broker, &peer.mesh_id, &ban.member_id).await;
            }
            conn.reply(req_id, ok_ack());
        }
        Ok(Err(refusal)) => {
            let code = match refusal {
                BanRefusal::NotFound | BanRefusal::NotBanned => "not_found",
                _ => "forbidden",
            };
            conn.error(req_id, code, ban_refusal(&refusal, &target));
        }
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

/// `list_bans {}` → `bans` (owner and admins only), newest first.
pub fn list_bans(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    if !is_manager(&conn.broker, &peer.mesh_id, &peer.member_id) {
        return conn.error(
            req_id,
            "forbidden",
            "only the owner or an admin of this mesh can list bans",
        );
    }
    let bans = match conn.broker.store.bans(&peer.mesh_id) {
        Ok(b) => b,
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let truncated = bans.len() > MAX_LISTED_BANS;
    let bans = bans
        .into_iter()
        .take(MAX_LISTED_BANS)
        .map(|b| BanEntry {
            member_id: b.member_id,
            pubkey: b.pubkey.to_hex(),
            display_name: b.display_name,
            reason: b.reason,
            banned_by: b.banned_by,
            banned_at: time::iso(b.banned_at_ms),
        })
        .collect();
    conn.reply(req_id, ServerMessage::Bans { bans, truncated });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::broker::presence::tests::peer;

    /// An admin revoking its own member along with others: the revocation waits for the
    /// frame another cut-off presence is running, and not for its own (which is the revocation).
    #[tokio::test]
    async fn a_revocation_waits_for_the_others_running_frames_and_not_its_own() {
        let (admin, other) = (Arc::new(peer("admin", 1)), Arc::new(peer("other", 2)));
        let own_frame = admin.authorised().await.expect("the admin acts");
        let their_frame = other.authorised().await.expect("the other acts");
        let gone = [admin.clone(), other.clone()];
        let waiting = super::let_finish(&admin, &gone);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "the revocation went on while a cut-off presence's frame still ran"
        );
        drop(their_frame);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the revocation waited for the admin's own frame: it never ends");
        drop(own_frame);
    }
}
