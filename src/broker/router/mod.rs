//! Delivery: pushes stored messages to the live presences they are for, drains queues when a
//! presence connects or turns idle, redelivers what is not acknowledged, and tells a mesh about
//! its peers coming and going.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::connection::{encoded, to_ws};
use super::presence::{Peer, PeerState};
use super::state::Broker;
use crate::protocol::messages::{Envelope, Push};
use crate::protocol::{Encoding, ServerMessage, codec, ids, time};
use crate::store::{MessageRecord, RecipientKey, Visit};
use crate::{HashMap, HashSet};

mod events;

pub use events::{
    announce, broker_push, changed, send_to_mesh, send_to_observers, system_event, tell_observers,
};

/// Most pushes a presence holds unacknowledged; the rest of its queue waits in storage and goes
/// out as acknowledgements come back, so a backlog of any length costs a window of memory.
pub const WINDOW: usize = 256;
/// ... and at most this many bytes of them (half the default outbox), so a window of large
/// messages cannot get its reader cut off as a slow consumer.
pub const WINDOW_BYTES: usize = 4 << 20;
/// Queue entries one walk looks at before it yields (skipped, held-back ones count too).
const SCAN_LIMIT: usize = 4 * WINDOW;
/// What a push costs beyond its body (the envelope's other fields).
const PUSH_OVERHEAD: usize = 512;

struct Sent {
    at: i64,
    /// When it was first pushed (redeliveries move `at`, not this).
    first: i64,
    bytes: usize,
}

/// What a presence has in flight and how far its queue has been pushed.
pub struct Delivery {
    /// Pushed and not yet acknowledged: id → when and how big. An acknowledged push keeps
    /// `at == ACKED` until its delivery is committed, so a walk in between skips it.
    inflight: HashMap<String, Sent>,
    unacked: usize,
    unacked_bytes: usize,
    /// `Some(seq)`: a walk through the queue is under way, everything before `seq` was looked
    /// at, and live pushes wait for it (FIFO). `None`: caught up, live pushes go out at once.
    cursor: Option<u64>,
    /// The walk under way also pushes what the status holds back (asked for by `drain`).
    ignore_gate: bool,
    /// Acknowledged ids waiting for the next store job: a connection's acks that arrive while
    /// one job is being committed go to the store together, as one job.
    acks: Vec<String>,
    /// A task is committing this presence's acknowledgements (and takes `acks` when done).
    ack_job: bool,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            inflight: HashMap::default(),
            unacked: 0,
            unacked_bytes: 0,
            cursor: Some(0),
            ignore_gate: false,
            acks: Vec::new(),
            ack_job: false,
        }
    }
}

impl Delivery {
    /// Forgets everything in flight (the socket changed); the queue is walked again.
    /// Acknowledgements already received are still committed.
    pub fn reset(&mut self) {
        *self = Delivery {
            acks: std::mem::take(&mut self.acks),
            ack_job: self.ack_job,
            ..Delivery::default()
        };
    }

    /// Room for one more push.
    fn room(&self) -> bool {
        self.unacked < WINDOW && (self.unacked == 0 || self.unacked_bytes < WINDOW_BYTES)
    }

    /// Half the window is free again: worth a walk for more.
    fn half_free(&self) -> bool {
        self.unacked <= WINDOW / 2 && self.unacked_bytes <= WINDOW_BYTES / 2
    }

    /// May `id` be pushed now: not in flight, or in flight unacknowledged for `redeliver`.
    fn due(&self, id: &str, now_ms: i64, redeliver: i64) -> bool {
        self.inflight
            .get(id)
            .is_none_or(|s| s.at != ACKED && now_ms - s.at >= redeliver)
    }

    /// Records a push; true when it is the first push of `id` on this connection.
    fn sent(&mut self, id: &str, now_ms: i64, bytes: usize) -> bool {
        match self.inflight.get_mut(id) {
            Some(s) => {
                s.at = now_ms; // pushed again: already counted
                false
            }
            None => {
                self.inflight.insert(
                    id.to_string(),
                    Sent {
                        at: now_ms,
                        first: now_ms,
                        bytes,
                    },
                );
                self.unacked += 1;
                self.unacked_bytes += bytes;
                true
            }
        }
    }

    /// Marks a push acknowledged; true when it was pushed on this connection and not
    /// acknowledged before.
    fn acked(&mut self, id: &str) -> bool {
        match self.inflight.get_mut(id) {
            Some(s) if s.at != ACKED => {
                s.at = ACKED;
                self.unacked = self.unacked.saturating_sub(1);
                self.unacked_bytes = self.unacked_bytes.saturating_sub(s.bytes);
                true
            }
            _ => false,
        }
    }

    fn committed(&mut self, id: &str) {
        if self.inflight.get(id).is_some_and(|s| s.at == ACKED) {
            self.inflight.remove(id);
        }
    }

    /// When `id` was first pushed on this connection, if it was: from then on it is in the
    /// recipient's window, delivered as far as `message_status` goes.
    pub fn pushed_at(&self, id: &str) -> Option<i64> {
        self.inflight.get(id).map(|s| s.first)
    }

    /// Something pushed has waited `redeliver` without an acknowledgement.
    fn stale(&self, now_ms: i64, redeliver: i64) -> bool {
        self.inflight
            .values()
            .any(|s| s.at != ACKED && now_ms - s.at >= redeliver)
    }
}

/// Acknowledgements received and not committed yet, per queue (recipient key), across
/// connections.
///
/// An acknowledged entry stays in its queue until its commit lands. A connection that closes
/// right after acknowledging (`inbox` does) leaves that commit running, and the next
/// connection draining the same queue would push those messages again. Each pending
/// (queue, id) is counted (two presences may acknowledge the same entry) and forgotten when
/// its last commit returns, so what is kept is bounded by what is being committed.
#[derive(Default)]
pub struct Committing {
    queues: Mutex<HashMap<String, HashMap<String, u32>>>,
}

impl Committing {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, u32>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `id` is acknowledged in each of `keys`, its commit under way.
    fn add(&self, keys: &[String], id: &str) {
        let mut queues = self.queues();
        for key in keys {
            // (The key is copied only for a queue with nothing being committed yet.)
            let pending = match queues.get_mut(key) {
                Some(pending) => pending,
                None => queues.entry(key.clone()).or_default(),
            };
            *pending.entry(id.to_string()).or_default() += 1;
        }
    }

    /// The commit of `ids` in each of `keys` returned (done or failed).
    fn remove(&self, keys: &[String], ids: &[String]) {
        let mut queues = self.queues();
        for key in keys {
            let Some(pending) = queues.get_mut(key) else {
                continue;
            };
            for id in ids {
                if let Some(n) = pending.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        pending.remove(id);
                    }
                }
            }
            if pending.is_empty() {
                queues.remove(key);
            }
        }
    }

    /// What is being committed in each of `keys`, in their order. Taken before a walk opens
    /// its read of the queue: a commit that lands after this still shows in the snapshot,
    /// one that landed before has already taken its entries out of the queue the walk reads.
    fn pending(&self, keys: &[String]) -> Vec<HashSet<String>> {
        let queues = self.queues();
        keys.iter()
            .map(|k| {
                queues
                    .get(k)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn push_cost(record: &MessageRecord) -> usize {
    record.ciphertext.len() + record.nonce.len() + PUSH_OVERHEAD
}

/// The `push` frame for a stored message.
pub fn push_frame(record: &MessageRecord) -> Envelope<ServerMessage> {
    let created_at = time::iso(record.created_at_ms);
    Envelope::new(ServerMessage::Push(Box::new(push_of(record, &created_at))))
}

/// [`push_frame`] encoded for `encoding`, its strings borrowed from `record` instead of copied:
/// the same bytes, with a dozen fewer allocations a push (issue 14).
pub fn push_message(record: &MessageRecord, encoding: Encoding) -> Message {
    /// `ServerMessage::Push` as it is written: `type` first, then the push's fields.
    #[derive(serde::Serialize)]
    #[serde(tag = "type", rename = "push")]
    struct Tagged<'a> {
        #[serde(flatten)]
        push: Push<&'a str>,
    }
    let created_at = time::iso(record.created_at_ms);
    let push = push_of(record, &created_at);
    match encoding {
        // Written by hand, as serde writes it, without its byte-by-byte string escaping.
        Encoding::Json => encoded(codec::written(|out| push.write_json(out)), encoding),
        Encoding::MsgPack => to_ws(&Tagged { push }, encoding),
    }
}

/// The push of a stored message, its strings owned (`String`) or borrowed (`&str`).
fn push_of<'a, S: From<&'a str>>(record: &'a MessageRecord, created_at: &'a str) -> Push<S> {
    let s = |v: &'a String| S::from(v.as_str());
    let opt = |v: &'a Option<String>| v.as_deref().map(S::from);
    Push {
        message_id: s(&record.id),
        mesh_id: s(&record.mesh_id),
        sender_pubkey: s(&record.sender_pubkey),
        sender_member_pubkey: Some(s(&record.sender_member_pubkey)),
        sender_member_id: Some(s(&record.sender_member_id)),
        sender_name: Some(s(&record.sender_name)),
        topic: None,
        reply_to_id: opt(&record.reply_to_id),
        priority: S::from(record.priority.as_str()),
        nonce: s(&record.nonce),
        ciphertext: s(&record.ciphertext),
        body_version: record.body_version,
        created_at: S::from(created_at),
        target_spec: Some(s(&record.target_spec)),
        client_message_id: opt(&record.client_message_id),
        request_fingerprint: opt(&record.request_fingerprint),
        subtype: opt(&record.subtype),
        event: None,
        event_data: None,
        key_epoch: record.key_epoch,
        mirror: None,
    }
}

/// Whether `peer` receives messages queued under `key`.
pub fn covers(peer: &Peer, key: &RecipientKey) -> bool {
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
    if !peer.takes_queued(&st) {
        return false;
    }
    // A walk through the queue is under way: it reaches this message in its turn.
    if st.delivery.cursor.is_some() || !st.delivery.due(&record.id, now_ms, redeliver) {
        return false;
    }
    if !ignore_gate && (!st.status.admits(record.priority) || st.holds_messages()) {
        return false; // held until the peer is idle, or drains its inbox
    }
    if !st.delivery.room() {
        // The window is full: the message waits in the queue, and the walk that acks start
        // pushes it in order.
        st.delivery.cursor = Some(0);
        return false;
    }
    if conn.send_message(push_message(record, conn.encoding)) {
        if st.delivery.sent(&record.id, now_ms, push_cost(record)) {
            peer.counters.pushed();
        }
        true
    } else {
        false
    }
}

/// Pushes a freshly stored message to every live presence it is for, and a mirror copy to
/// the observers of its recipients and of its sender.
pub fn route(broker: &Broker, record: &MessageRecord) {
    let now = time::now_ms();
    let keys: Vec<RecipientKey> = record
        .recipients
        .iter()
        .filter_map(|(k, _)| RecipientKey::decode(k))
        .collect();
    // Only the presences this message reaches leave the presence lock.
    let (reached, observed) = broker.presence.covering(&record.mesh_id, &keys);
    for peer in &reached {
        offer(broker, peer, record, now, false);
    }
    // Most meshes have no observer: then nothing more is looked at.
    if observed {
        mirror(&broker.presence.peers(&record.mesh_id), record);
    }
}

/// Observers (PROTOCOL.md §3.1) get a copy of what their member receives or sends: it needs
/// no acknowledgement and takes nothing from the member's queue. A copy that does not fit
/// the observer's outbox closes it as a slow consumer, like any push.
fn mirror(peers: &[Arc<Peer>], record: &MessageRecord) {
    let keys: Vec<RecipientKey> = record
        .recipients
        .iter()
        .filter_map(|(k, _)| RecipientKey::decode(k))
        .collect();
    // Stored for the member: under its key, or under a live session of it.
    let receives = |member_id: &str| {
        keys.iter().any(|key| match key {
            RecipientKey::Member { member_id: m, .. } => m == member_id,
            RecipientKey::Session { .. } => peers
                .iter()
                .any(|p| p.member_id == member_id && covers(p, key)),
        })
    };
    let mut frames: [Option<Envelope<ServerMessage>>; 2] = [None, None];
    for observer in peers.iter().filter(|p| p.observer) {
        let (slot, side) = if receives(&observer.member_id) {
            (0, "received")
        } else if observer.member_id == record.sender_member_id {
            (1, "sent")
        } else {
            continue;
        };
        let Some(conn) = observer.state().conn.clone() else {
            continue;
        };
        let frame = frames[slot].get_or_insert_with(|| {
            let mut frame = push_frame(record);
            if let ServerMessage::Push(push) = &mut frame.body {
                push.mirror = Some(side.into());
            }
            frame
        });
        conn.send(frame);
    }
}

/// Walks `peer`'s queue from where the last walk stopped, pushing while the window has room.
/// Returns how many were pushed.
fn pump(broker: &Broker, peer: &Peer, st: &mut PeerState, now: i64) -> usize {
    let Some(conn) = st.conn.clone() else {
        return 0;
    };
    if !peer.takes_queued(st) {
        return 0;
    }
    let Some(from) = st.delivery.cursor else {
        return 0;
    };
    let redeliver = broker.redeliver_ms();
    let held = st.holds_messages();
    let PeerState {
        delivery, status, ..
    } = st;
    let ignore_gate = delivery.ignore_gate;
    let keys = peer.recipient_keys();
    // Before the walk opens its read of the queue (see `Committing::pending`).
    let committing = broker.committing.pending(keys);
    let mut pushed = 0;
    let walked = broker
        .store
        .walk_queue(keys, from, now, SCAN_LIMIT, |queue, _, record| {
            if !delivery.room() {
                return Visit::Stop;
            }
            if !delivery.due(&record.id, now, redeliver)
                || committing[queue].contains(&record.id)
                || (!ignore_gate && (held || !status.admits(record.priority)))
            {
                return Visit::Next;
            }
            if !conn.send_message(push_message(&record, conn.encoding)) {
                return Visit::Stop; // the connection is closing
            }
            if delivery.sent(&record.id, now, push_cost(&record)) {
                peer.counters.pushed();
            }
            pushed += 1;
            Visit::Next
        });
    match walked {
        Ok(w) if w.end => {
            delivery.cursor = None;
            delivery.ignore_gate = false;
        }
        Ok(w) => delivery.cursor = Some(w.next),
        Err(e) => tracing::error!("cannot read the queue of {}: {e}", peer.display_name),
    }
    pushed
}

/// Walks what is queued for `peer` again from its oldest entry (skipping what is in flight
/// and, unless `ignore_gate`, what its status holds back), pushing up to a window; the rest
/// follows as pushes are acknowledged. The walk is read under the presence's lock so a live
/// push cannot overtake it (FIFO per sender). Returns how many were pushed, and whether
/// entries remain that this walk has not reached yet.
pub fn deliver_pending(broker: &Broker, peer: &Peer, ignore_gate: bool) -> (usize, bool) {
    let now = time::now_ms();
    let mut st = peer.state();
    // A drain goes on with a drain's walk where it stopped (so repeated drains progress
    // through a long stretch of skipped entries); anything else starts from the oldest.
    let continuing = ignore_gate && st.delivery.ignore_gate && st.delivery.cursor.is_some();
    if !continuing {
        st.delivery.cursor = Some(0);
    }
    st.delivery.ignore_gate |= ignore_gate;
    let pushed = pump(broker, peer, &mut st, now);
    (pushed, st.delivery.cursor.is_some())
}

/// A presence acknowledged a push: it is delivered for every queue the presence drains, and
/// the window has room for more of its backlog.
///
/// Only pushes made on this connection are acknowledged here. Anything else (a system event,
/// which is never stored; a repeated ack; a push from an earlier socket, which this socket's
/// walk pushes again and which is acknowledged then) costs nothing: no store read, no write.
pub fn acknowledge(broker: &Arc<Broker>, peer: &Arc<Peer>, message_id: &str) {
    let start = {
        let mut st = peer.state();
        // Until the delivery is committed the entry is still in the queue: mark it
        // acknowledged (never due for redelivery) rather than forgetting it, or a walk in
        // between would push it again.
        if !st.delivery.acked(message_id) {
            return;
        }
        broker.committing.add(peer.recipient_keys(), message_id);
        if st.delivery.cursor.is_some() && st.delivery.half_free() {
            pump(broker, peer, &mut st, time::now_ms());
        }
        st.delivery.acks.push(message_id.to_string());
        !std::mem::replace(&mut st.delivery.ack_job, true)
    };
    if start {
        // Tracked, so a shutdown commits the acknowledgements already received.
        broker
            .tasks
            .spawn(commit_acks(broker.clone(), peer.clone()));
    }
}

/// Commits `peer`'s acknowledgements: everything received so far as one store job, then
/// whatever arrived meanwhile, until none is left.
async fn commit_acks(broker: Arc<Broker>, peer: Arc<Peer>) {
    loop {
        let ids = {
            let mut st = peer.state();
            let ids = std::mem::take(&mut st.delivery.acks);
            if ids.is_empty() {
                st.delivery.ack_job = false;
                return;
            }
            ids
        };
        let keys = peer.recipient_keys();
        let pairs = ids
            .iter()
            .flat_map(|id| keys.iter().map(move |k| (k.clone(), id.clone())))
            .collect();
        let done = broker.store.mark_delivered(pairs, time::now_ms()).await;
        let mut st = peer.state();
        // Done, or still queued (then any connection draining these queues may push them again).
        broker.committing.remove(keys, &ids);
        match done {
            Ok(_) => {
                for id in &ids {
                    st.delivery.committed(id);
                }
            }
            Err(e) => tracing::warn!("cannot record {} deliveries: {e}", ids.len()),
        }
    }
}

/// The in-flight mark of a push whose acknowledgement is being committed.
const ACKED: i64 = i64::MAX;

/// Background duties: redelivery, the working-status TTL, presence leases and retention.
pub async fn run_sweeper(broker: Arc<Broker>) {
    // Every 5 s, or faster when redelivery is set shorter (tests, impatient setups).
    let period = Duration::from_millis((broker.redeliver_ms() as u64 / 2).clamp(100, 5000));
    let redeliver = broker.redeliver_ms();
    let per_30s = (30_000 / period.as_millis() as u64).max(1);
    // A `working` past its TTL is looked for every 15 s, or once a TTL when that is shorter (at
    // most once a period: a TTL under a period is honoured within one).
    let working_ttl = broker.config.working_ttl.as_millis() as u64;
    let per_expiry = (working_ttl.min(15_000) / period.as_millis() as u64).max(1);
    // Retention is swept every 5 minutes, or once a retention period when that is shorter.
    let sweep_ms = (broker.config.retention.as_millis() as u64).min(300_000);
    let per_sweep = (sweep_ms / period.as_millis() as u64).max(1);
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
            let (stale, expired_working, walking) = {
                let mut st = peer.state();
                let stale = st.delivery.stale(now, redeliver);
                let expired =
                    n.is_multiple_of(per_expiry) && st.status.expire(now, working_ttl as i64);
                (stale, expired, st.delivery.cursor.is_some())
            };
            if expired_working {
                super::status_history::changed(&broker, &peer, "idle", "ttl", now);
            }
            if stale || expired_working || (!walking && n.is_multiple_of(per_30s)) {
                // Every 30 s everyone gets a look at its queue, so nothing can stay stuck.
                deliver_pending(&broker, &peer, false);
            } else if walking {
                // A walk that yielded (a long held-back stretch) goes on where it stopped.
                let mut st = peer.state();
                if st.delivery.room() {
                    pump(&broker, &peer, &mut st, now);
                }
            }
        }
        for gone in broker.presence.expire_leases(now) {
            announce(&broker, &gone, "peer_left");
        }
        if n.is_multiple_of(per_sweep) {
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

#[cfg(test)]
mod tests;
