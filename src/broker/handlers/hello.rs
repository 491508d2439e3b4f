//! Proving who a connection is (PROTOCOL.md §3): member hello and session hello, with every
//! check in the order the protocol gives, then registration and `hello_ack`.

use std::sync::Arc;

use crate::broker::connection::Conn;
use crate::broker::presence::{Arrival, Peer, PeerKind, Registered, Unregistered};
use crate::broker::router;
use crate::broker::state::Broker;
use crate::broker::status::StatusSource;
use crate::broker::status_history;
use crate::crypto;
use crate::protocol::messages::{
    Hello, HelloAck, MemberProfile, MeshPolicy, PeerInfo, SessionHello,
};
use crate::protocol::{
    MAX_ATTESTATION_TTL_MS, MAX_SKEW_MS, Pubkey, ServerMessage, Signature, canonical, ids, time,
};
use crate::store::{KnownSession, Member, Mesh};

/// A refusal: the error code, a sentence, and the close code.
struct Refusal(&'static str, String, u16);

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(code, message.into(), 1008)
}

pub async fn member_hello(conn: &mut Conn, hello: Hello) {
    if conn.peer.is_some() {
        conn.error(
            None,
            "already_authenticated",
            "this connection has already said hello",
        );
        return;
    }
    match check_member_hello(&conn.broker, &hello) {
        Ok((mesh, member, label)) => {
            admit(conn, mesh, member, PeerKind::Member, label, hello.peer).await
        }
        Err(Refusal(code, message, close)) => conn.refuse(code, message, close),
    }
}

pub async fn session_hello(conn: &mut Conn, hello: SessionHello) {
    if conn.peer.is_some() {
        conn.error(
            None,
            "already_authenticated",
            "this connection has already said hello",
        );
        return;
    }
    match check_session_hello(&conn.broker, &hello) {
        Ok((mesh, member, session_key)) => {
            admit(
                conn,
                mesh,
                member,
                PeerKind::Session,
                Some(session_key),
                hello.peer,
            )
            .await
        }
        Err(Refusal(code, message, close)) => conn.refuse(code, message, close),
    }
}

fn check_skew(now: i64, timestamp: i64) -> Result<(), Refusal> {
    // `abs_diff`: a peer's timestamp may be anything, e.g. i64::MIN, which must not overflow.
    let skew = now.abs_diff(timestamp);
    if skew > MAX_SKEW_MS as u64 {
        return Err(refuse(
            "timestamp_skew",
            format!("hello timestamp is {skew} ms away from the broker's clock (limit 60 000 ms)"),
        ));
    }
    Ok(())
}

/// A session attestation must not have expired and may last at most 24 h from now.
fn check_attestation_life(now: i64, expires_at: i64) -> Result<(), Refusal> {
    if expires_at <= now {
        return Err(refuse("expired", "the session attestation has expired"));
    }
    if expires_at > now + MAX_ATTESTATION_TTL_MS {
        return Err(refuse(
            "ttl_too_long",
            "a session attestation may last at most 24 h",
        ));
    }
    Ok(())
}

fn check_capacity(broker: &Broker, mesh_id: &str) -> Result<(), Refusal> {
    let max = broker.config.max_connections_per_mesh;
    if broker.presence.count(mesh_id) >= max {
        return Err(refuse(
            "capacity",
            format!(
                "mesh has the maximum of {max} connections (live sessions and those disconnected in the last 90 s; the broker's operator raises it with --max-connections-per-mesh)"
            ),
        ));
    }
    Ok(())
}

fn parse_signature(s: &str) -> Result<Signature, Refusal> {
    Signature::parse(s).map_err(|e| refuse("malformed", format!("signature: {e}")))
}

fn verify(sig: &Signature, signed: &str, key: &Pubkey, what: &str) -> Result<(), Refusal> {
    if crypto::verify(&sig.0, signed.as_bytes(), &key.0) {
        Ok(())
    } else {
        Err(refuse(
            "bad_signature",
            format!("{what} signature does not verify"),
        ))
    }
}

/// Finds the member by key; an unknown or revoked one is refused.
fn find_member(broker: &Broker, mesh_id: &str, key: &Pubkey) -> Result<(Mesh, Member), Refusal> {
    let store_err = |e: crate::store::StoreError| Refusal("internal", e.to_string(), 1011);
    let unauthorized = || refuse("unauthorized", "no member with this key in this mesh");
    if !ids::is_id(mesh_id) {
        return Err(unauthorized());
    }
    let mesh = broker
        .store
        .mesh(mesh_id)
        .map_err(store_err)?
        .ok_or_else(unauthorized)?;
    let member = broker
        .store
        .member_by_pubkey(mesh_id, key)
        .map_err(store_err)?
        .ok_or_else(unauthorized)?;
    if member.revoked_at_ms.is_some() {
        return Err(Refusal(
            "revoked",
            "this member was revoked from the mesh".into(),
            4002,
        ));
    }
    if let Some(ban) = broker
        .store
        .ban_of(mesh_id, &member.id)
        .map_err(store_err)?
    {
        return Err(Refusal(
            "banned",
            crate::broker::http::banned_message(&ban.reason),
            4002,
        ));
    }
    Ok((mesh, std::sync::Arc::unwrap_or_clone(member)))
}

fn check_replay(broker: &Broker, sig: &Signature, timestamp: i64) -> Result<(), Refusal> {
    if broker.replay.first_use(&sig.0, timestamp) {
        Ok(())
    } else {
        Err(refuse("replay", "this exact hello was already used"))
    }
}

/// The member and mesh of a valid member hello, and its `sessionPubkey` (a routing label).
fn check_member_hello(
    broker: &Broker,
    h: &Hello,
) -> Result<(Mesh, Member, Option<Pubkey>), Refusal> {
    if let Some(sp) = h.session_pubkey.as_deref().filter(|s| !s.is_empty())
        && !Pubkey::is_shape(sp)
    {
        return Err(refuse(
            "bad_session_pubkey",
            "sessionPubkey must be 64 lowercase hex",
        ));
    }
    check_capacity(broker, &h.mesh_id)?;
    check_skew(time::now_ms(), h.timestamp)?;
    super::peers::check_peer_info(&h.peer).map_err(|(code, message)| refuse(code, message))?;
    let key = Pubkey::parse(&h.pubkey).map_err(|e| refuse("malformed", format!("pubkey: {e}")))?;
    let sig = parse_signature(&h.signature)?;
    let signed = canonical::hello(&h.mesh_id, &h.member_id, &h.pubkey, h.timestamp);
    verify(&sig, &signed, &key, "hello")?;
    let (mesh, member) = find_member(broker, &h.mesh_id, &key)?;
    if member.id != h.member_id {
        return Err(refuse(
            "unauthorized",
            "memberId does not belong to this key",
        ));
    }
    check_replay(broker, &sig, h.timestamp)?;
    let label = session_label(broker, h, &member)?;
    Ok((mesh, member, label))
}

/// A member hello's `sessionPubkey` (the original sends a fresh one per connection and
/// encrypts with it), which this broker routes by and names the sender with, but which proves
/// nothing. So it may not be a member's key, nor a session key another member has proven here;
/// one that another member's presence goes by is refused when registering.
fn session_label(broker: &Broker, h: &Hello, member: &Member) -> Result<Option<Pubkey>, Refusal> {
    let Some(label) = h.session_pubkey.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let key = Pubkey::parse(label).map_err(|_| {
        refuse(
            "bad_session_pubkey",
            "sessionPubkey must be 64 lowercase hex",
        )
    })?;
    if key == member.pubkey {
        return Ok(None); // the member key itself: nothing to add
    }
    let store_err = |e: crate::store::StoreError| Refusal("internal", e.to_string(), 1011);
    let taken = broker
        .store
        .member_by_pubkey(&member.mesh_id, &key)
        .map_err(store_err)?
        .is_some()
        || broker
            .store
            .known_session(&member.mesh_id, label)
            .map_err(store_err)?
            .is_some_and(|s| s.member_id != member.id);
    if taken {
        return Err(refuse(
            "bad_session_pubkey",
            "sessionPubkey is another member's key in this mesh",
        ));
    }
    Ok(Some(key))
}

fn check_session_hello(
    broker: &Broker,
    h: &SessionHello,
) -> Result<(Mesh, Member, Pubkey), Refusal> {
    let session = Pubkey::parse(&h.session_pubkey).map_err(|_| {
        refuse(
            "bad_session_pubkey",
            "sessionPubkey must be 64 lowercase hex",
        )
    })?;
    let parent = Pubkey::parse(&h.parent_member_pubkey).map_err(|_| {
        refuse(
            "bad_parent_pubkey",
            "parentMemberPubkey must be 64 lowercase hex",
        )
    })?;
    let att = &h.parent_attestation;
    if att.session_pubkey != h.session_pubkey || att.parent_member_pubkey != h.parent_member_pubkey
    {
        return Err(refuse(
            "attestation_mismatch",
            "the attestation's keys differ from the hello's keys",
        ));
    }
    check_capacity(broker, &h.mesh_id)?;
    check_skew(time::now_ms(), h.timestamp)?;
    super::peers::check_peer_info(&h.peer).map_err(|(code, message)| refuse(code, message))?;
    check_attestation_life(time::now_ms(), att.expires_at)?;
    let att_sig = parse_signature(&att.signature)?;
    let hello_sig = parse_signature(&h.signature)?;
    let attested =
        canonical::session_attestation(&h.parent_member_pubkey, &h.session_pubkey, att.expires_at);
    verify(&att_sig, &attested, &parent, "attestation")?;
    let signed = canonical::session_hello(
        &h.mesh_id,
        &h.parent_member_pubkey,
        &h.session_pubkey,
        h.timestamp,
    );
    verify(&hello_sig, &signed, &session, "session hello")?;
    let (mesh, member) = find_member(broker, &h.mesh_id, &parent)?;
    if member.id != h.parent_member_id {
        return Err(refuse(
            "parent_member_id_mismatch",
            "parentMemberId does not belong to the parent key",
        ));
    }
    check_replay(broker, &hello_sig, h.timestamp)?;
    Ok((mesh, member, session))
}

async fn admit(
    conn: &mut Conn,
    mesh: Mesh,
    member: Member,
    kind: PeerKind,
    session_pubkey: Option<Pubkey>,
    mut info: PeerInfo,
) {
    let broker = conn.broker.clone();
    let restored = info.groups.is_none();
    let groups = match info.groups.take() {
        // Held to the rules of `join_group`: these names reach every peer's screen.
        Some(claimed) => super::peers::clean_groups(claimed),
        None => member.groups.clone(),
    };
    info.groups = Some(groups.clone());
    // A name the member chose with `set_profile` wins over what a session calls itself.
    let profile = match broker.store.profile(&mesh.id, &member.id) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot read the profile of {}: {e}", member.display_name);
            None
        }
    };
    let display_name = profile
        .as_ref()
        .and_then(|p| p.display_name.clone())
        .or_else(|| {
            info.display_name
                .as_deref()
                .and_then(crate::protocol::clean_display_name)
                .filter(|n| !crate::protocol::reserved_name(n))
                .filter(|n| !passes_for_another(&broker, &mesh.id, &member, n))
        })
        .unwrap_or_else(|| member.display_name.clone());
    let capacity = broker.config.max_connections_per_mesh;
    let session_id = info.session_id.clone();
    let proven = session_pubkey.filter(|_| kind == PeerKind::Session);
    let registered = broker.presence.register(
        Arrival {
            mesh_id: &mesh.id,
            member_id: &member.id,
            session: proven,
            label: session_pubkey.filter(|_| kind == PeerKind::Member),
            session_id: &session_id,
        },
        conn.out.clone(),
        capacity,
        || {
            Peer::new(
                ids::new_id(),
                mesh.id.clone(),
                member.id.clone(),
                member.pubkey,
                session_pubkey,
                kind,
                member.role,
                display_name.clone(),
                info.clone(),
                groups.clone(),
                conn.out.clone(),
            )
        },
    );
    let (peer, is_new) = match registered {
        Ok(Registered::New(peer)) => (peer, true),
        Ok(Registered::Reattached { peer, replaced }) => {
            if let Some(old) = replaced {
                old.close(1000, "session_replaced");
            }
            // A share lasts as long as its connection: the new one announces its own.
            broker.file_shares.unshare(&peer.presence_id);
            (peer, false)
        }
        Err(Unregistered::Revoked) => {
            conn.refuse("revoked", "this member was revoked from the mesh", 4002);
            return;
        }
        Err(Unregistered::KeyTaken) => {
            conn.refuse(
                "bad_session_pubkey",
                "sessionPubkey is a key another member's connection goes by",
                1008,
            );
            return;
        }
        Err(Unregistered::Full) => {
            conn.refuse(
                "capacity",
                format!(
                    "mesh has the maximum of {capacity} connections (live sessions and those disconnected in the last 90 s; the broker's operator raises it with --max-connections-per-mesh)"
                ),
                1008,
            );
            return;
        }
    };
    conn.peer = Some(peer.clone());
    peer.state().profile = profile.clone();
    let now = time::now_ms();
    if let Some(status) =
        broker
            .pending_status
            .take(&mesh.id, &member.id, &session_id, info.pid, &info.cwd, now)
    {
        peer.state().status.report(status, StatusSource::Hook, now);
    }
    let status = peer.state().status;
    status_history::changed(&broker, &peer, status.status.as_str(), "connect", now);
    let (summary, groups) = {
        let st = peer.state();
        (
            st.summary.clone().or(member.last_summary.clone()),
            st.groups.clone(),
        )
    };
    let ack = HelloAck {
        presence_id: peer.presence_id.clone(),
        member_display_name: peer.display_name.clone(),
        member_profile: MemberProfile {
            role_tag: profile.as_ref().and_then(|p| p.role_tag.clone()),
            groups: groups.clone(),
            message_mode: profile
                .as_ref()
                .and_then(|p| p.message_mode.clone())
                .unwrap_or_else(|| "push".into()),
        },
        mesh_policy: Some({
            let s = super::settings::settings(&mesh);
            MeshPolicy {
                self_editable: s.self_editable,
                group_bodies: Some(s.group_bodies),
                group_bodies_signature: s.group_bodies_signature,
                group_bodies_signed_at: s.group_bodies_signed_at,
            }
        }),
        restored: !is_new || (restored && !member.groups.is_empty()),
        last_summary: summary,
        last_seen_at: member.last_seen_at_ms.map(time::iso),
        restored_groups: (restored && !member.groups.is_empty()).then_some(groups),
        member_id: member.id.clone(),
        member_role: member.role.as_str().into(),
        mesh_name: mesh.name.clone(),
        mesh_slug: mesh.slug.clone(),
        root_key_held: mesh.legacy_root_key.is_some() && member.role.can_manage(),
        key_epoch: broker.store.key_epoch(&mesh.id).unwrap_or(0),
    };
    conn.reply(None, ServerMessage::HelloAck(Box::new(ack)));
    if is_new {
        router::announce(
            &broker,
            &peer,
            if member.last_seen_at_ms.is_some() {
                "peer_returned"
            } else {
                "peer_joined"
            },
        );
    }
    // Whatever waited for this presence goes out right after the ack.
    router::deliver_pending(&broker, &peer, false);
    if let Some(session) = proven {
        let known = KnownSession {
            member_id: member.id.clone(),
            display_name: peer.display_name.clone(),
            last_seen_at_ms: now,
        };
        let store = broker.store.clone();
        let mesh_id = mesh.id.clone();
        broker.tasks.spawn(async move {
            if let Err(e) = store
                .remember_session(mesh_id, session.to_hex(), known)
                .await
            {
                tracing::warn!("cannot remember a session key: {e}");
            }
        });
    }
    tracing::debug!(
        "{} joined mesh {} as {:?}",
        peer.display_name,
        mesh.slug,
        kind
    );
}

/// Called when a proven connection ends: the presence keeps its lease.
pub async fn disconnected(broker: &Broker, peer: &Arc<Peer>, conn_id: u64) {
    if !broker.presence.disconnect(peer, conn_id) || peer.control_plane {
        return; // taken over by a newer connection, or a short-lived tool connection
    }
    let now = time::now_ms();
    status_history::changed(broker, peer, status_history::OFFLINE, "disconnect", now);
    // The share ends with its connection (PROTOCOL §15).
    broker.file_shares.unshare(&peer.presence_id);
    let groups = peer.state().groups.clone();
    if let Err(e) = broker
        .store
        .update_member_presence(
            peer.mesh_id.clone(),
            peer.member_id.clone(),
            Some(groups),
            Some(now),
        )
        .await
    {
        tracing::warn!("cannot record last-seen of {}: {e}", peer.display_name);
    }
}

/// Whether a name a session gives itself would pass for another member's (a look-alike of it):
/// such a session goes by its member's name instead. Names like the member's own, the common
/// case, cost no store read.
fn passes_for_another(broker: &Broker, mesh_id: &str, member: &Member, name: &str) -> bool {
    let wanted = crate::protocol::LookAlike::of(name);
    if wanted.matches(&member.display_name) {
        return false;
    }
    match broker.store.members(mesh_id) {
        Ok(all) => all.iter().any(|m| {
            m.id != member.id && m.revoked_at_ms.is_none() && wanted.matches(&m.display_name)
        }),
        // Unknown: the member's own name is the safe choice.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), Refusal>) -> &'static str {
        r.err().map_or("ok", |Refusal(code, _, _)| code)
    }

    #[test]
    fn a_hello_may_be_a_minute_off_and_not_a_millisecond_more() {
        let now = 1_764_633_600_000;
        for ts in [now, now - MAX_SKEW_MS, now + MAX_SKEW_MS] {
            assert_eq!(code(check_skew(now, ts)), "ok", "{}", ts - now);
        }
        for ts in [
            now - MAX_SKEW_MS - 1,
            now + MAX_SKEW_MS + 1,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(code(check_skew(now, ts)), "timestamp_skew", "{ts}");
        }
    }

    #[test]
    fn an_attestation_lives_until_its_expiry_and_at_most_24_hours() {
        let now = 1_764_633_600_000;
        assert_eq!(code(check_attestation_life(now, now)), "expired");
        assert_eq!(code(check_attestation_life(now, now - 1)), "expired");
        assert_eq!(code(check_attestation_life(now, now + 1)), "ok");
        let day = MAX_ATTESTATION_TTL_MS;
        assert_eq!(day, 24 * 3_600_000);
        assert_eq!(code(check_attestation_life(now, now + day)), "ok");
        assert_eq!(
            code(check_attestation_life(now, now + day + 1)),
            "ttl_too_long"
        );
    }
}
