//! Delivery: pushes stored messages to the live presences they are for, drains queues when a
//! presence connects or turns idle, redelivers what is not acknowledged, and tells a mesh about
//! its peers coming and going.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::presence::Peer;
use super::state::Broker;
use crate::protocol::messages::{Envelope, Push};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{MessageRecord, Pending, RecipientKey};

/// The `push` frame for a stored message.
pub fn push_frame(record: &MessageRecord) -> Envelope<ServerMessage> {
    Envelope::new(ServerMessage::Push(Box::new(Push {
        message_id: record.id.clone(),
        mesh_id: record.mesh_id.clone(),
        sender_pubkey: record.sender_pubkey.clone(),
        sender_member_pubkey: Some(record.sender_member_pubkey.clone()),
        sender_member_id: Some(record.sender_member_id.clone()),
        sender_name: Some(record.sender_name.clone()),
        topic: None,
        reply_to_id: record.reply_to_id.clone(),
        priority: record.priority.as_str().into(),
        nonce: record.nonce.clone(),
        ciphertext: record.ciphertext.clone(),
        body_version: record.body_version,
        created_at: time::iso(record.created_at_ms),
        target_spec: Some(record.target_spec.clone()),
        client_message_id: record.client_message_id.clone(),
        request_fingerprint: record.request_fingerprint.clone(),
        subtype: record.subtype.clone(),
        event: None,
        event_data: None,
    })))
}

/// Whether `peer` receives messages queued under `key`.
fn covers(peer: &Peer, key: &RecipientKey) -> bool {
    match key {
        RecipientKey::Member { member_id, .. } => &peer.member_id == member_id,
        RecipientKey::Session { session, .. } => peer.session_pubkey == Some(*session),
    }
}

/// Pushes one message to `peer` if it may have it now. Returns true when pushed.
fn offer(
    broker: &Broker,
    peer: &Peer,
    record: &MessageRecord,
    now_ms: i64,
    ignore_gate: bool,
) -> bool {
    let redeliver = broker.redeliver_ms();
    let mut st = peer.state();
    let Some(conn) = st.conn.clone() else {
        return false;
    };
    if !st.ready || (peer.control_plane && !st.subscribed) {
        return false;
    }
    if st
        .inflight
        .get(&record.id)
        .is_some_and(|at| now_ms - at < redeliver)
    {
        return false;
    }
    if !ignore_gate && !st.status.admits(record.priority) {
        return false; // held until the peer is idle
    }
    if conn.send(&push_frame(record)) {
        st.inflight.insert(record.id.clone(), now_ms);
        true
    } else {
        false
    }
}

/// Pushes a freshly stored message to every live presence it is for.
pub fn route(broker: &Broker, record: &MessageRecord) {
    let now = time::now_ms();
    let peers = broker.presence.peers(&record.mesh_id);
    for (key, _) in &record.recipients {
        let Some(key) = RecipientKey::decode(key) else {
            continue;
        };
        for peer in peers.iter().filter(|p| covers(p, &key)) {
            offer(broker, peer, record, now, false);
        }
    }
}

/// Pushes what is queued for `peer` (oldest first), skipping what is in flight and, unless
/// `ignore_gate`, what its status holds back. Marks the presence ready for live pushes.
/// Returns how many were pushed.
pub fn deliver_pending(broker: &Broker, peer: &Peer, ignore_gate: bool) -> usize {
    let now = time::now_ms();
    let redeliver = broker.redeliver_ms();
    // The snapshot is read under the presence's lock so that a live push cannot slip in
    // between it and the backlog (FIFO per sender).
    let mut st = peer.state();
    let Some(conn) = st.conn.clone() else {
        return 0;
    };
    if peer.control_plane && !st.subscribed {
        return 0;
    }
    let pending: Vec<Pending> = match broker.store.pending(&peer.recipient_keys(), now) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("cannot read the queue of {}: {e}", peer.display_name);
            return 0;
        }
    };
    let mut pushed = 0;
    for p in pending {
        if st
            .inflight
            .get(&p.record.id)
            .is_some_and(|at| now - at < redeliver)
        {
            continue;
        }
        if !ignore_gate && !st.status.admits(p.record.priority) {
            continue;
        }
        if !conn.send(&push_frame(&p.record)) {
            break;
        }
        st.inflight.insert(p.record.id.clone(), now);
        pushed += 1;
    }
    st.ready = true;
    pushed
}

/// A presence acknowledged a push: it is delivered for every queue the presence drains.
pub fn acknowledge(broker: &Arc<Broker>, peer: &Arc<Peer>, message_id: &str) {
    // Until the delivery is committed the entry is still in the queue: mark it acknowledged
    // (never due for redelivery) rather than forgetting it, or a queue scan in between would
    // push it again.
    peer.state().inflight.insert(message_id.to_string(), ACKED);
    let pairs = peer
        .recipient_keys()
        .into_iter()
        .map(|k| (k, message_id.to_string()))
        .collect();
    let done = broker.store.mark_delivered(pairs, time::now_ms());
    let peer = peer.clone();
    let id = message_id.to_string();
    tokio::spawn(async move {
        match done.await {
            Ok(_) => {
                peer.state().inflight.remove(&id);
            }
            Err(e) => tracing::warn!("cannot record a delivery: {e}"),
        }
    });
}

/// The in-flight mark of a push whose acknowledgement is being committed.
const ACKED: i64 = i64::MAX;

/// Sends a system event (`peer_joined`, `peer_left`, …) to every other live presence.
pub fn announce(broker: &Broker, about: &Peer, event: &str) {
    if about.control_plane {
        return;
    }
    let (groups, summary) = {
        let st = about.state();
        (st.groups.clone(), st.summary.clone())
    };
    let frame = Envelope::new(ServerMessage::Push(Box::new(Push {
        message_id: ids::new_id(),
        mesh_id: about.mesh_id.clone(),
        sender_pubkey: "system".into(),
        priority: "low".into(),
        created_at: time::iso(time::now_ms()),
        subtype: Some("system".into()),
        event: Some(event.into()),
        event_data: Some(json!({
            "name": about.display_name,
            "pubkey": about.pubkey().to_hex(),
            "memberPubkey": about.member_pubkey.to_hex(),
            "groups": groups,
            "summary": summary,
            "lastSeenAt": time::iso(time::now_ms()),
        })),
        ..Default::default()
    })));
    for peer in broker.presence.peers(&about.mesh_id) {
        if peer.presence_id != about.presence_id && !peer.control_plane {
            peer.send(&frame);
        }
    }
}

/// Background duties: redelivery, the working-status TTL, presence leases and retention.
pub async fn run_sweeper(broker: Arc<Broker>) {
    // Every 5 s, or faster when redelivery is set shorter (tests, impatient setups).
    let period = Duration::from_millis((broker.redeliver_ms() as u64 / 2).clamp(100, 5000));
    let redeliver = broker.redeliver_ms();
    let per_30s = (30_000 / period.as_millis() as u64).max(1);
    let per_15s = (15_000 / period.as_millis() as u64).max(1);
    let per_5min = (300_000 / period.as_millis() as u64).max(1);
    let mut tick = tokio::time::interval(period);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        let now = time::now_ms();
        for peer in broker.presence.all() {
            let (stale, expired_working) = {
                let mut st = peer.state();
                let stale = st.inflight.values().any(|at| now - at >= redeliver);
                let expired = n.is_multiple_of(per_15s) && st.status.expire(now);
                (stale, expired)
            };
            // Every 30 s everyone gets a look at its queue, so nothing can stay stuck.
            if stale || expired_working || n.is_multiple_of(per_30s) {
                deliver_pending(&broker, &peer, false);
            }
        }
        for gone in broker.presence.expire_leases(now) {
            announce(&broker, &gone, "peer_left");
        }
        if n.is_multiple_of(per_5min) {
            match broker.store.sweep_expired(now).await {
                Ok(0) => {}
                Ok(dropped) => {
                    broker.metrics.expired(dropped);
                    tracing::info!("dropped {dropped} queued messages past retention");
                }
                Err(e) => tracing::warn!("retention sweep failed: {e}"),
            }
        }
    }
}
