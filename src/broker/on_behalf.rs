//! Messages the broker sends on a member's behalf while that member may be away: reminders
//! coming due, URL watches firing, webhook deliveries. Each is stored and queued like a `send`
//! from that member (so it reaches recipients that are offline when they next connect), with
//! its recipients resolved now and a recipient's block of the member honoured.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::watch;

use super::handlers::messaging::resolve;
use super::metrics::Metrics;
use super::presence::{ConnHandle, Peer, PeerKind};
use super::router;
use super::state::Broker;
use crate::protocol::messages::{PeerInfo, Permission};
use crate::protocol::{Encoding, Pubkey, TargetSpec, ids};
use crate::store::{Member, MessageRecord, Priority, StoreError};

/// One message to send as `member`.
pub struct Outgoing<'a> {
    pub member: &'a Member,
    /// The key it goes out under: a session key (a reminder a session scheduled) or the
    /// member's own key.
    pub sender_pubkey: String,
    /// The name recipients see (`webhook:NAME` for a webhook).
    pub sender_name: String,
    pub to: &'a str,
    /// `None` for a body in clear (bodyVersion 1: base64 of the text).
    pub nonce: Option<String>,
    pub ciphertext: String,
    pub body_version: Option<u32>,
    pub key_epoch: u64,
    pub subtype: &'a str,
    /// Derived from what fires, so firing again after a crash stores it once.
    pub client_message_id: String,
}

impl Outgoing<'_> {
    /// A body in clear, as the original sends system-made messages: bodyVersion 1, the text
    /// in base64. Watch and webhook messages are made on the broker, which holds no mesh key.
    pub fn in_clear(text: &str) -> (Option<String>, String, Option<u32>) {
        (None, STANDARD.encode(text.as_bytes()), Some(1))
    }
}

/// Whether it was queued; `Err(why)` when it was not: its member may not send now, or it
/// reaches nobody (no such target any more, a broadcast with nobody else in the mesh, the
/// recipient blocked the member).
pub async fn deliver(
    broker: &Broker,
    out: Outgoing<'_>,
    now: i64,
) -> Result<Result<(), String>, StoreError> {
    // What goes out as a member needs what its own `send` would: a removed or banned member,
    // or one without `send`, sends nothing through a reminder, a watch, a webhook or Telegram
    // either (`holds` is false for a removed or banned member).
    if !broker
        .store
        .holds(&out.member.mesh_id, &out.member.id, Permission::Send)?
    {
        return Ok(Err(format!(
            "its member may not send now ({} is removed, banned or without the send capability)",
            out.member.display_name
        )));
    }
    let sender = stand_in(out.member, &out.sender_pubkey);
    let recipients = match resolve(broker, &sender, out.to).map(|r| with_creator(broker, &out, r)) {
        Ok(r)
            if Pubkey::is_shape(out.to)
                && super::handlers::grants::direct_refusal(broker, &sender, &r).is_err() =>
        {
            return Ok(Err("refused by its recipient".into()));
        }
        Ok(r) if !r.is_empty() => r,
        Ok(_) => return Ok(Err("nobody else is in the target".into())),
        Err(why) => return Ok(Err(why.to_string())),
    };
    let record = MessageRecord {
        id: ids::new_id(),
        mesh_id: out.member.mesh_id.clone(),
        sender_member_id: out.member.id.clone(),
        sender_pubkey: out.sender_pubkey,
        sender_member_pubkey: out.member.pubkey.to_hex(),
        sender_name: out.sender_name,
        target_spec: out.to.to_string(),
        priority: Priority::Now,
        nonce: out.nonce.unwrap_or_default(),
        ciphertext: out.ciphertext,
        body_version: out.body_version,
        reply_to_id: None,
        mentions: None,
        client_message_id: Some(out.client_message_id),
        request_fingerprint: None,
        subtype: Some(out.subtype.to_string()),
        created_at_ms: now,
        expires_at_ms: broker.config.expiry_of(now),
        recipients,
        key_epoch: out.key_epoch,
    };
    // Held to the same per-recipient queue cap as a member's own `send`.
    let limit = broker.config.max_queued_per_recipient;
    let enqueued = broker.store.enqueue_within(record, limit).await?;
    if let Some(name) = enqueued.full {
        return Ok(Err(format!(
            "{name} already has {limit} messages waiting (--max-queued-per-recipient)"
        )));
    }
    if enqueued.fresh {
        Metrics::inc(&broker.metrics.messages_stored);
        router::route(broker, &enqueued.record);
    }
    Ok(Ok(()))
}

/// The member as a sender for target resolution, whether or not it is connected: a presence
/// that is registered nowhere and has no socket.
/// A broadcast or group send leaves its sender out. A watch's or a webhook's message is not the
/// member's own words but news for the mesh, so the member who set it up is told too when the
/// target takes them in (everyone, or a group of theirs).
fn with_creator(
    broker: &Broker,
    out: &Outgoing<'_>,
    mut recipients: Vec<(String, String)>,
) -> Vec<(String, String)> {
    if !matches!(out.subtype, "watch" | "webhook") {
        return recipients;
    }
    let takes_creator = match TargetSpec::parse(out.to) {
        Ok(TargetSpec::All) => true,
        Ok(TargetSpec::Group(g)) => super::presence::in_group(&out.member.groups, g),
        _ => false,
    };
    if takes_creator {
        let own = stand_in(out.member, &out.member.pubkey.to_hex());
        if let Ok(theirs) = resolve(broker, &own, &out.member.pubkey.to_hex()) {
            for r in theirs {
                if !recipients.iter().any(|(k, _)| *k == r.0) {
                    recipients.push(r);
                }
            }
        }
    }
    recipients
}

fn stand_in(member: &Member, sender_pubkey: &str) -> Peer {
    let session = Pubkey::parse(sender_pubkey)
        .ok()
        .filter(|k| *k != member.pubkey);
    let (outbox, _) = super::connection::Outbox::new(0);
    let (closer, _) = watch::channel(None);
    Peer::new(
        String::new(),
        member.mesh_id.clone(),
        member.id.clone(),
        member.pubkey,
        session,
        if session.is_some() {
            PeerKind::Session
        } else {
            PeerKind::Member
        },
        member.role,
        member.display_name.clone(),
        PeerInfo {
            peer_role: Some("control-plane".into()),
            ..Default::default()
        },
        member.groups.clone(),
        ConnHandle {
            conn_id: 0,
            encoding: Encoding::Json,
            outbox,
            closer,
        },
    )
}
