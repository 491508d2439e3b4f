//! `send`, `client_ack`, `drain` and `message_status` (PROTOCOL.md §4).

use crate::broker::connection::Conn;
use crate::broker::presence::Peer;
use crate::broker::router;
use crate::broker::state::Broker;
use crate::protocol::messages::{
    Ack, ClientAck, ErrorFrame, MessageStatusResult, RecipientStatus, SendMessage,
};
use crate::protocol::{Pubkey, ServerMessage, TargetSpec, ids, time};
use crate::store::{MessageRecord, PrefixLookup, Priority, RecipientKey};

/// Room left in a frame for everything but the body.
const ENVELOPE_ALLOWANCE: usize = 4096;
/// Longest client-chosen id or fingerprint kept.
const MAX_CLIENT_ID: usize = 128;
/// Most target specs one `send` may exclude (one person types a handful of targets).
const MAX_EXCLUDED: usize = 64;

fn parse_priority(s: &str) -> Option<Priority> {
    match s {
        "now" => Some(Priority::Now),
        "next" => Some(Priority::Next),
        "low" => Some(Priority::Low),
        _ => None,
    }
}

fn refused_ack(id: Option<String>, error: String) -> ServerMessage {
    ServerMessage::Ack(Ack {
        id,
        message_id: Some(String::new()),
        queued: Some(false),
        error: Some(error),
        ok: None,
    })
}

pub fn send(conn: &Conn, req_id: Option<String>, mut msg: SendMessage) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    let id = msg.id.take();
    match prepare(&broker, &peer, msg) {
        Err((code, error)) => {
            conn.refused(code, &error);
            let out = conn.out.clone();
            // A recipient who refuses the sender is an error the sender's client raises
            // (issue 13); other refusals keep the original's `ack{queued:false}`.
            let frame = match code {
                "blocked" | "messages_off" => ServerMessage::Error(ErrorFrame {
                    code: code.into(),
                    message: error,
                    id,
                }),
                _ => refused_ack(id, error),
            };
            // Through the ordered steps, so it cannot overtake acks of earlier sends.
            conn.then(async move {
                out.send(&crate::protocol::Envelope::reply(req_id, frame));
            });
        }
        Ok(record) => {
            // Pushed only once durably stored, together with the sender's ack: a push made
            // before the commit could reach a recipient although a crash then loses the
            // message and its sender, never acknowledged, sends it again. A resent
            // client_message_id is answered from the store, never pushed again.
            let limit = broker.config.max_queued_per_recipient;
            let stored = broker.store.enqueue_within(record, limit);
            let out = conn.out.clone();
            let who = conn.who();
            let sender = peer.clone();
            conn.then(async move {
                let reply = match stored.await {
                    Ok(enqueued) if enqueued.full.is_some() => {
                        broker.metrics.error("quota");
                        let name = enqueued.full.unwrap_or_default();
                        let error = format!(
                            "quota: {name} already has {limit} messages waiting, the most \
                             one recipient may have queued (--max-queued-per-recipient); \
                             nothing was sent, try again once they have read some"
                        );
                        broker.refusals.refused(&who, "send", "quota", &error);
                        sender.counters.error();
                        refused_ack(id, error)
                    }
                    Ok(enqueued) => {
                        if enqueued.fresh {
                            sender.counters.sent();
                            crate::broker::metrics::Metrics::inc(&broker.metrics.messages_stored);
                            router::route(&broker, &enqueued.record);
                        }
                        ServerMessage::Ack(Ack {
                            id,
                            message_id: Some(enqueued.record.id),
                            queued: Some(true),
                            ..Default::default()
                        })
                    }
                    Err(e) => refused_ack(id, format!("storage: {e}")),
                };
                out.send(&crate::protocol::Envelope::reply(req_id, reply));
            });
        }
    }
}

/// Checks a `send` and builds the record to store (out of the request's own strings), or
/// says why not.
fn prepare(
    broker: &Broker,
    peer: &Peer,
    msg: SendMessage,
) -> Result<MessageRecord, (&'static str, String)> {
    let Some(priority) = parse_priority(&msg.priority) else {
        return Err((
            "invalid_argument",
            format!("invalid priority \"{}\" (now, next or low)", msg.priority),
        ));
    };
    let limit = broker
        .config
        .max_message_bytes
        .saturating_sub(ENVELOPE_ALLOWANCE);
    let size = msg.ciphertext.len() + msg.nonce.len();
    if size > limit {
        return Err((
            "payload_too_large",
            format!("payload too large: {size} bytes, the limit is {limit}"),
        ));
    }
    if [
        &msg.client_message_id,
        &msg.request_fingerprint,
        &msg.reply_to_id,
    ]
    .iter()
    .any(|v| v.as_ref().is_some_and(|s| s.len() > MAX_CLIENT_ID))
    {
        return Err((
            "invalid_argument",
            format!("ids may be at most {MAX_CLIENT_ID} characters"),
        ));
    }
    let bucket = [&peer.mesh_id, "/", &peer.member_id].concat();
    if !broker.send_limit.allow(&bucket) {
        return Err((
            "rate_limit",
            format!(
                "rate_limit: more than {} messages per second (burst {}); slow down",
                broker.send_limit.rate(),
                broker.send_limit.burst()
            ),
        ));
    }
    if msg.exclude.len() > MAX_EXCLUDED {
        return Err((
            "invalid_argument",
            format!("exclude may name at most {MAX_EXCLUDED} targets"),
        ));
    }
    let recipients = resolve_excluding(broker, peer, &msg.target_spec, &msg.exclude)
        .map_err(|why| ("unknown_target", format!("unknown target ({why})")))?;
    if Pubkey::is_shape(&msg.target_spec) {
        super::grants::direct_refusal(broker, peer, &recipients)?;
    }
    // A group or broadcast body sealed under a key the mesh has rotated away from could be
    // read by the member that rotation removed.
    if !msg.nonce.is_empty()
        && !Pubkey::is_shape(&msg.target_spec)
        && let Some(why) = super::keys::stale_epoch(broker, &peer.mesh_id, msg.key_epoch)
    {
        return Err(("stale_key_epoch", why));
    }
    let now = time::now_ms();
    Ok(MessageRecord {
        id: ids::new_id(),
        mesh_id: peer.mesh_id.clone(),
        sender_member_id: peer.member_id.clone(),
        sender_pubkey: peer.pubkey().to_hex(),
        sender_member_pubkey: peer.member_pubkey.to_hex(),
        sender_name: peer.shown_name(),
        target_spec: msg.target_spec,
        priority,
        nonce: msg.nonce,
        ciphertext: msg.ciphertext,
        body_version: msg.body_version,
        reply_to_id: msg.reply_to_id,
        mentions: msg.mentions,
        client_message_id: msg.client_message_id,
        request_fingerprint: msg.request_fingerprint,
        subtype: None,
        created_at_ms: now,
        expires_at_ms: broker.config.expiry_of(now),
        recipients,
        key_epoch: msg.key_epoch,
    })
}

/// Who a target spec reaches: (recipient key, display name) pairs, or why it names nobody.
pub fn resolve(
    broker: &Broker,
    sender: &Peer,
    target: &str,
) -> Result<Vec<(String, String)>, String> {
    resolve_excluding(broker, sender, target, &[])
}

/// Whom a group or broadcast send leaves out: whoever the specs in its `exclude` reach, as the
/// sender's other sends of the same message did (`alice,@backend` gives alice one copy).
#[derive(Default)]
struct Excluded {
    all: bool,
    members: std::collections::HashSet<String>,
    sessions: std::collections::HashSet<Pubkey>,
    groups: Vec<String>,
}

impl Excluded {
    fn new(broker: &Broker, mesh_id: &str, specs: &[String]) -> Excluded {
        let mut out = Excluded::default();
        for spec in specs {
            match TargetSpec::parse(spec) {
                Ok(TargetSpec::All) => out.all = true,
                Ok(TargetSpec::Group(g)) => out.groups.push(g.to_string()),
                Ok(TargetSpec::Key(key)) => match broker.store.member_by_pubkey(mesh_id, &key) {
                    Ok(Some(m)) => {
                        out.members.insert(m.id.clone());
                    }
                    _ => {
                        out.sessions.insert(key);
                    }
                },
                _ => {}
            }
        }
        out
    }

    fn presence(&self, p: &Peer) -> bool {
        self.all
            || self.members.contains(&p.member_id)
            || p.session_pubkey.is_some_and(|s| self.sessions.contains(&s))
            || self.groups.iter().any(|g| p.in_group(g))
    }

    fn member(&self, m: &crate::store::Member) -> bool {
        self.all
            || self.members.contains(&m.id)
            || self
                .groups
                .iter()
                .any(|g| crate::broker::presence::in_group(&m.groups, g))
    }
}

/// [`resolve`], leaving out of a group or broadcast whoever `exclude` reaches (ignored for a
/// direct target).
pub fn resolve_excluding(
    broker: &Broker,
    sender: &Peer,
    target: &str,
    exclude: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mesh_id = sender.mesh_id.as_str();
    let excluded = Excluded::new(broker, mesh_id, exclude);
    let store_err = |e: crate::store::StoreError| e.to_string();
    let group = match TargetSpec::parse(target).map_err(|e| e.to_string())? {
        TargetSpec::Key(key) => return resolve_key(broker, mesh_id, target, key),
        TargetSpec::All => None,
        TargetSpec::Group(g) => Some(g),
        TargetSpec::Topic(_) => return Err("topics are not supported yet".into()),
    };
    // The sender's own sessions never receive its broadcast or group message.
    let is_own = |p: &Peer| match sender.session_pubkey {
        Some(s) => p.session_pubkey == Some(s),
        None => p.member_id == sender.member_id,
    };
    // Members who blocked the sender or turned messages off get no copy (issue 13).
    let refusing = super::grants::refusing(broker, sender)?;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut live_members = std::collections::HashSet::new();
    // Someone in the group got the message through another target: the group is not empty.
    let mut reached_otherwise = false;
    for p in broker.presence.peers(mesh_id) {
        if p.control_plane {
            continue;
        }
        live_members.insert(p.member_id.clone());
        if is_own(&p) || group.is_some_and(|g| !p.in_group(g)) {
            continue;
        }
        if excluded.presence(&p) || refusing.contains(&p.member_id) {
            reached_otherwise = true;
            continue;
        }
        let rk = match p.session_pubkey {
            Some(session) => RecipientKey::Session {
                mesh_id: mesh_id.into(),
                session,
            },
            None => RecipientKey::Member {
                mesh_id: mesh_id.into(),
                member_id: p.member_id.clone(),
            },
        };
        let key = rk.encode();
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, p.display_name.clone()));
        }
    }
    // Members with no presence get it when they next connect; a banned member is not in the
    // mesh's broadcasts and groups (lifting the ban does not hand over what was said meanwhile).
    let mut group_exists = reached_otherwise || !out.is_empty();
    let banned: std::collections::HashSet<String> = broker
        .store
        .bans(mesh_id)
        .map_err(store_err)?
        .into_iter()
        .map(|b| b.member_id)
        .collect();
    for m in broker.store.members(mesh_id).map_err(store_err)? {
        if m.revoked_at_ms.is_some() || banned.contains(&m.id) {
            continue;
        }
        let in_target = group.is_none_or(|g| crate::broker::presence::in_group(&m.groups, g));
        group_exists |= in_target;
        if !in_target
            || m.id == sender.member_id
            || live_members.contains(&m.id)
            || refusing.contains(&m.id)
            || excluded.member(&m)
        {
            continue;
        }
        let rk = RecipientKey::Member {
            mesh_id: mesh_id.into(),
            member_id: m.id,
        };
        out.push((rk.encode(), m.display_name));
    }
    if let Some(g) = group
        && !group_exists
        && !sender.in_group(g)
    {
        return Err(format!("nobody is in group @{g}"));
    }
    Ok(out)
}

/// Who a key reaches: the member with that key, else the session (live or known) with it.
fn resolve_key(
    broker: &Broker,
    mesh_id: &str,
    target: &str,
    key: Pubkey,
) -> Result<Vec<(String, String)>, String> {
    let store_err = |e: crate::store::StoreError| e.to_string();
    if let Some(member) = broker
        .store
        .member_by_pubkey(mesh_id, &key)
        .map_err(store_err)?
        .filter(|m| m.revoked_at_ms.is_none())
    {
        let rk = RecipientKey::Member {
            mesh_id: mesh_id.into(),
            member_id: member.id.clone(),
        };
        return Ok(vec![(rk.encode(), member.display_name.clone())]);
    }
    let rk = RecipientKey::Session {
        mesh_id: mesh_id.into(),
        session: key,
    };
    let (live, _) = broker.presence.covering(mesh_id, std::slice::from_ref(&rk));
    let live = live.first().map(|p| p.display_name.clone());
    let name = match live {
        Some(name) => Some(name),
        None => broker
            .store
            .known_session(mesh_id, target)
            .map_err(store_err)?
            .map(|s| s.display_name),
    };
    let Some(name) = name else {
        return Err(format!(
            "no member or session {}… in this mesh",
            &target[..12]
        ));
    };
    Ok(vec![(rk.encode(), name)])
}

pub fn client_ack(conn: &Conn, ack: ClientAck) {
    let (Some(peer), Some(id)) = (conn.peer.as_ref(), ack.broker_message_id) else {
        return;
    };
    crate::broker::metrics::Metrics::inc(&conn.broker.metrics.pushes_acked);
    router::acknowledge(&conn.broker, peer, &id);
}

pub fn drain(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    let out = conn.out.clone();
    // After earlier steps, so messages this connection just sent are included.
    conn.then(async move {
        peer.state().subscribed = true;
        // One window now; the rest follows as these are acknowledged (`more` says so).
        let (count, more) = router::deliver_pending(&broker, &peer, true);
        out.send(&crate::protocol::Envelope::reply(
            req_id,
            ServerMessage::Drained { count, more },
        ));
    });
}

pub fn message_status(conn: &Conn, req_id: Option<String>, message_id: String) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let broker = &conn.broker;
    if message_id.len() < 8 && !ids::is_id(&message_id) {
        return conn.error(
            req_id,
            "invalid_argument",
            "give a message id or a prefix of at least 8 characters",
        );
    }
    let record = match broker.store.find_message(&peer.mesh_id, &message_id) {
        Ok(PrefixLookup::Found(r)) if r.id == message_id || message_id.len() >= 8 => r,
        Ok(PrefixLookup::Found(_)) | Ok(PrefixLookup::NotFound) => {
            return conn.error(req_id, "not_found", format!("no message {message_id}"));
        }
        Ok(PrefixLookup::Ambiguous) => {
            return conn.error(
                req_id,
                "ambiguous_prefix",
                format!("{message_id} matches several messages; give more of the id"),
            );
        }
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    let peers = broker.presence.peers(&peer.mesh_id);
    let mut recipients = Vec::new();
    let mut last_delivered: Option<i64> = None;
    let mut all_delivered = !record.recipients.is_empty();
    let mut all_acknowledged = !record.recipients.is_empty();
    for (key, name, acknowledged_at) in &record.recipients {
        let acknowledged_at = *acknowledged_at;
        let parsed = RecipientKey::decode(key);
        // Delivered once pushed into a connection's window, before its acknowledgement.
        let pushed_at = parsed.as_ref().and_then(|k| {
            peers
                .iter()
                .filter(|p| router::covers(p, k) && p.is_live())
                .filter_map(|p| p.state().delivery.pushed_at(&record.id))
                .min()
        });
        all_acknowledged &= acknowledged_at.is_some();
        let delivered_at = match (acknowledged_at, pushed_at) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        };
        let (pubkey, live) = match &parsed {
            Some(RecipientKey::Member { member_id, .. }) => (
                broker
                    .store
                    .member(&peer.mesh_id, member_id)
                    .ok()
                    .flatten()
                    .map(|m| m.pubkey.to_hex())
                    .unwrap_or_default(),
                peers
                    .iter()
                    .any(|p| &p.member_id == member_id && p.is_live() && !p.control_plane),
            ),
            Some(RecipientKey::Session { session, .. }) => (
                session.to_hex(),
                peers
                    .iter()
                    .any(|p| p.session_pubkey == Some(*session) && p.is_live()),
            ),
            None => (String::new(), false),
        };
        let status = match delivered_at {
            Some(at) => {
                last_delivered = Some(last_delivered.map_or(at, |l| l.max(at)));
                "delivered"
            }
            None if live => {
                all_delivered = false;
                "held"
            }
            None => {
                all_delivered = false;
                "disconnected"
            }
        };
        recipients.push(RecipientStatus {
            name: name.clone(),
            pubkey,
            status: status.into(),
            acknowledged: acknowledged_at.is_some(),
        });
    }
    conn.reply(
        req_id,
        ServerMessage::MessageStatusResult(MessageStatusResult {
            message_id: record.id.clone(),
            target_spec: record.target_spec.clone(),
            delivered: all_delivered,
            delivered_at: last_delivered.filter(|_| all_delivered).map(time::iso),
            acknowledged: all_acknowledged,
            recipients,
        }),
    );
}
