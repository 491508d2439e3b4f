//! Every recipient's queue, in memory: which stored messages wait for which recipient key, in
//! sequence order. The store keeps one `QUEUED` row per waiting message (its record and the
//! first of its recipients' sequence numbers) and one `ACKS` row per acknowledgement that is
//! not a message's last; the queues are derived from those rows, built when the store opens
//! and rebuilt after a failed commit, as the client-message-id index is (see
//! `client_keys`). So a send and its acknowledgement write rows keyed by message id, which
//! sort by time and share their pages, instead of rows keyed by recipient spread over many.
//!
//! **What a walk sees.** The writer changes the queues as its jobs run, before their batch
//! commits; every entry carries the batch that added it and the batch that took it out.
//! A walk sees the state of the last committed batch only ([`QueueIndex::published`]):
//! entries added by it or earlier, not taken out by it or earlier. It copies its entries and
//! opens its read snapshot under the index's lock, and the writer publishes a batch under the
//! same lock after the batch committed, so the snapshot holds every entry the walk copied.
//! Sequence numbers grow in commit order, so an entry a walk cannot see yet comes after every
//! entry it can (the live push reaches it).
//!
//! **Retention.** Every waiting message is also kept in the order its retention ends, so the
//! retention sweep finds what has expired without reading a row (no expiry table is written).
//!
//! After a failed commit nothing in memory is trusted: the next commit rebuilds the queues
//! from the stored rows before its jobs run.

use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{ReadableTable, WriteTransaction};

use super::super::records::{ACKS, QUEUED};
use super::super::{MessageRecord, StoreError, by_position_in_place};
use crate::HashMap;

/// An entry not taken out.
const LIVE: u64 = u64::MAX;

/// The queues, locked.
pub(in crate::store) fn lock(index: &Mutex<QueueIndex>) -> MutexGuard<'_, QueueIndex> {
    index.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Queue {
    /// seq → entry.
    entries: BTreeMap<u64, Entry>,
    /// Entries not taken out (what the quota counts).
    live: u64,
}

struct Entry {
    /// (Shared with the message's other entries and its [`Waiting`].)
    id: Arc<str>,
    /// The batch that added it.
    added: u64,
    /// The batch that took it out ([`LIVE`]: none).
    removed: u64,
}

/// A stored message some recipient has not acknowledged yet.
struct Waiting {
    /// The first recipient's sequence number; the n-th recipient's is `seq + n`.
    seq: u64,
    keys: Vec<Arc<str>>,
    /// Recipients still to acknowledge.
    left: u32,
    /// When its retention ends (ms).
    expires_at_ms: i64,
}

/// What taking a recipient's entry out found.
pub(in crate::store) struct Taken {
    /// The entry was the message's last: every recipient has acknowledged it.
    pub(in crate::store) last: bool,
}

/// One entry a walk may look at: the index of its key in the walk's keys, its sequence
/// number, its message id.
pub(in crate::store) type Seen = (usize, u64, Arc<str>);

#[derive(Default)]
pub(in crate::store) struct QueueIndex {
    queues: HashMap<Arc<str>, Queue>,
    /// mesh id → message id → waiting message.
    messages: HashMap<Arc<str>, HashMap<Arc<str>, Waiting>>,
    /// Every waiting message by when its retention ends: (expires at ms, mesh id, message id).
    expiry: BTreeSet<(i64, Arc<str>, Arc<str>)>,
    /// The last batch committed (what walks see).
    published: u64,
    /// The batch the writer is applying.
    current: u64,
    /// Entries taken out by the current batch, dropped once it commits.
    taken: Vec<(Arc<str>, u64)>,
    /// The last commit failed: rebuild before the next one's jobs.
    rebuild: bool,
}

/// The mesh of a recipient key (`m/<mesh>/<member>`, `s/<mesh>/<session>`).
pub(in crate::store) fn mesh_of(key: &str) -> &str {
    key.split('/').nth(1).unwrap_or_default()
}

impl QueueIndex {
    /// Entries in `key`'s queue (taken out ones not counted, committed or not).
    pub(in crate::store) fn len(&self, key: &str) -> u64 {
        self.queues.get(key).map_or(0, |q| q.live)
    }

    fn intern(&mut self, key: &str) -> Arc<str> {
        match self.queues.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = key.into();
                self.queues.insert(k.clone(), Queue::default());
                k
            }
        }
    }

    /// Queues message `id` of `mesh_id`, whose retention ends at `expires_at_ms`, for `keys`
    /// (distinct), the n-th at `seq + n`, in the current batch.
    pub(in crate::store) fn add(
        &mut self,
        (mesh_id, id): (&str, &str),
        keys: &[String],
        seq: u64,
        expires_at_ms: i64,
    ) {
        let batch = self.current;
        let acked = vec![false; keys.len()];
        self.insert((mesh_id, id), keys, (seq, expires_at_ms), &acked, batch);
    }

    /// Queues `id` for those of `keys` not `acked`, the n-th at `seq + n`, as added by
    /// `batch`.
    fn insert(
        &mut self,
        (mesh_id, id): (&str, &str),
        keys: &[String],
        (seq, expires_at_ms): (u64, i64),
        acked: &[bool],
        batch: u64,
    ) {
        let mut interned = Vec::with_capacity(keys.len());
        let mut left = 0;
        let id: Arc<str> = id.into();
        for (n, (key, acked)) in keys.iter().zip(acked).enumerate() {
            if *acked {
                // (No queue is made for a key that has nothing waiting.)
                interned.push(match self.queues.get_key_value(key.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => key.as_str().into(),
                });
                continue;
            }
            let k = self.intern(key);
            interned.push(k.clone());
            let queue = self.queues.get_mut(&k).expect("interned");
            match queue.entries.entry(seq + n as u64) {
                btree_map::Entry::Vacant(place) => {
                    place.insert(Entry {
                        id: id.clone(),
                        added: batch,
                        removed: LIVE,
                    });
                    queue.live += 1;
                    left += 1;
                }
                // Sequence numbers are taken once each; a stored row that says otherwise
                // must not push another message out of its queue.
                btree_map::Entry::Occupied(other) => tracing::warn!(
                    "message {mesh_id}/{id}: place {} in {key}'s queue is {}'s; not queued there",
                    seq + n as u64,
                    other.get().id
                ),
            }
        }
        if left == 0 {
            return;
        }
        let mesh: Arc<str> = match self.messages.get_key_value(mesh_id) {
            Some((m, _)) => m.clone(),
            None => mesh_id.into(),
        };
        self.expiry
            .insert((expires_at_ms, mesh.clone(), id.clone()));
        self.messages.entry(mesh).or_default().insert(
            id,
            Waiting {
                seq,
                keys: interned,
                left,
                expires_at_ms,
            },
        );
    }

    /// Takes `key`'s entry of message `id` out in the current batch. `None` when it is not
    /// queued there (never, or taken out already).
    pub(in crate::store) fn take(&mut self, key: &str, id: &str) -> Option<Taken> {
        let mesh_id = mesh_of(key);
        let waiting = self.messages.get_mut(mesh_id)?.get_mut(id)?;
        let n = waiting.keys.iter().position(|k| &**k == key)?;
        let seq = waiting.seq + n as u64;
        let k = waiting.keys[n].clone();
        let queue = self.queues.get_mut(&k)?;
        let entry = queue.entries.get_mut(&seq)?;
        if entry.removed != LIVE || &*entry.id != id {
            return None;
        }
        entry.removed = self.current;
        queue.live -= 1;
        self.taken.push((k, seq));
        waiting.left -= 1;
        if waiting.left > 0 {
            return Some(Taken { last: false });
        }
        self.done_waiting(mesh_id, id);
        Some(Taken { last: true })
    }

    /// Forgets waiting message `id` of `mesh_id` (and the mesh's map once it is empty).
    fn done_waiting(&mut self, mesh_id: &str, id: &str) -> Option<Waiting> {
        let mesh = self.messages.get_key_value(mesh_id)?.0.clone();
        let in_mesh = self.messages.get_mut(mesh_id)?;
        let (id, waiting) = in_mesh.remove_entry(id)?;
        if in_mesh.is_empty() {
            self.messages.remove(mesh_id);
        }
        self.expiry.remove(&(waiting.expires_at_ms, mesh, id));
        Some(waiting)
    }

    /// Up to `max` waiting messages whose retention ended by `now_ms`: (mesh id, message
    /// id), the earliest ended first.
    pub(in crate::store) fn expired(&self, now_ms: i64, max: usize) -> Vec<(String, String)> {
        self.expiry
            .iter()
            .take_while(|(at, _, _)| *at <= now_ms)
            .take(max)
            .map(|(_, mesh, id)| (mesh.to_string(), id.to_string()))
            .collect()
    }

    /// Takes every entry of message `id` out (its retention ended). Returns how many there
    /// were.
    pub(in crate::store) fn forget(&mut self, mesh_id: &str, id: &str) -> u64 {
        let Some(waiting) = self.done_waiting(mesh_id, id) else {
            return 0;
        };
        let mut n = 0;
        for (i, k) in waiting.keys.iter().enumerate() {
            let seq = waiting.seq + i as u64;
            let Some(queue) = self.queues.get_mut(k) else {
                continue;
            };
            if let Some(entry) = queue.entries.get_mut(&seq)
                && entry.removed == LIVE
                && &*entry.id == id
            {
                entry.removed = self.current;
                queue.live -= 1;
                self.taken.push((k.clone(), seq));
                n += 1;
            }
        }
        n
    }

    /// The entries of `keys` from `from` on, as the last committed batch left them, merged in
    /// sequence order: at most `max` of them, and whether that was all.
    pub(in crate::store) fn seen(
        &self,
        keys: &[String],
        from: u64,
        max: usize,
    ) -> (Vec<Seen>, bool) {
        let p = self.published;
        let visible = move |e: &Entry| e.added <= p && e.removed > p;
        let mut heads: Vec<_> = keys
            .iter()
            .map(|k| {
                self.queues
                    .get(k.as_str())
                    .into_iter()
                    .flat_map(move |q| q.entries.range(from..))
                    .filter(move |(_, e)| visible(e))
                    .peekable()
            })
            .collect();
        let mut out = Vec::new();
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (i, it) in heads.iter_mut().enumerate() {
                if let Some((seq, _)) = it.peek()
                    && best.is_none_or(|(_, s)| **seq < s)
                {
                    best = Some((i, **seq));
                }
            }
            let Some((i, _)) = best else {
                return (out, true);
            };
            if out.len() >= max {
                return (out, false);
            }
            let (seq, e) = heads[i].next().expect("peeked");
            out.push((i, *seq, e.id.clone()));
        }
    }

    /// Starts the writer's next batch.
    pub(in crate::store) fn begin(&mut self) {
        self.current = self.current.max(self.published) + 1;
    }

    /// After the batch's commit: publishes it, or marks the queues for a rebuild.
    pub(in crate::store) fn committed(&mut self, ok: bool) {
        if !ok {
            self.rebuild = true;
            self.taken.clear();
            return;
        }
        self.published = self.current;
        for (k, seq) in std::mem::take(&mut self.taken) {
            if let Some(queue) = self.queues.get_mut(&k) {
                queue.entries.remove(&seq);
                if queue.entries.is_empty() {
                    self.queues.remove(&k);
                }
            }
        }
    }
}

/// A `QUEUED` row's value: the first recipient's sequence number, then the record.
pub(in crate::store) fn queued_row(seq: u64, record: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(8 + record.len());
    row.extend_from_slice(&seq.to_le_bytes());
    row.extend_from_slice(record);
    row
}

/// `record`'s `QUEUED` row with its sequence number left to [`number_row`]: encoded (by
/// position) on the caller's thread, so the writer thread only numbers and inserts it.
pub(in crate::store) fn unnumbered_row(record: &MessageRecord) -> Vec<u8> {
    by_position_in_place(record, |bytes| queued_row(0, bytes))
}

/// Sets the sequence number of a row from [`unnumbered_row`].
pub(in crate::store) fn number_row(row: &mut [u8], seq: u64) {
    row[..8].copy_from_slice(&seq.to_le_bytes());
}

/// What the queues, a retirement and the retention sweep read of a queued record: the first
/// five fields of a [`MessageRecord`], in its order. Its body and keys are skipped, not copied.
#[derive(serde::Deserialize)]
pub(in crate::store) struct QueuedHead {
    pub(in crate::store) sender_member_id: String,
    #[serde(with = "super::super::records::compact_key")]
    pub(in crate::store) target_spec: String,
    #[serde(default)]
    pub(in crate::store) client_message_id: Option<String>,
    pub(in crate::store) expires_at_ms: i64,
    pub(in crate::store) recipients: Vec<(String, String)>,
}

/// Reads a `QUEUED` row's sequence number and [`QueuedHead`]: straight from the front of a
/// record stored by position; by name through serde from one stored as a map (before schema
/// 6), and through serde too from one that does not read that way (serde then says what is
/// wrong with it).
pub(in crate::store) fn read_head(row: &[u8]) -> Result<(u64, QueuedHead), StoreError> {
    let (seq, record) = split_queued(row)?;
    match head_by_position(record) {
        Some(head) => Ok((seq, head)),
        None => Ok((seq, super::super::decode(record)?)),
    }
}

/// The head of a record stored by position, read with rmp from its first five fields; the
/// rest of the record is not looked at (serde would read every string of it, the ciphertext
/// too, to throw it away). `None` when the record does not start that way.
pub(super) fn head_by_position(record: &[u8]) -> Option<QueuedHead> {
    use rmp::decode::{read_array_len, read_bin_len, read_int};
    const NIL: u8 = 0xc0;
    const BIN8: u8 = 0xc4;
    let mut rd = record;
    if read_array_len(&mut rd).ok()? < 5 {
        return None;
    }
    let sender_member_id = text(&mut rd)?;
    let target_spec = if rd.first() == Some(&BIN8) {
        let n = read_bin_len(&mut rd).ok()? as usize;
        let (bytes, rest) = rd.split_at_checked(n)?;
        rd = rest;
        super::super::records::compact_key::text_of(bytes)
    } else {
        text(&mut rd)?
    };
    let client_message_id = match rd.split_first()? {
        (&NIL, rest) => {
            rd = rest;
            None
        }
        _ => Some(text(&mut rd)?),
    };
    let expires_at_ms = read_int(&mut rd).ok()?;
    let n = read_array_len(&mut rd).ok()?;
    let mut recipients = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        if read_array_len(&mut rd).ok()? != 2 {
            return None;
        }
        recipients.push((text(&mut rd)?, text(&mut rd)?));
    }
    Some(QueuedHead {
        sender_member_id,
        target_spec,
        client_message_id,
        expires_at_ms,
        recipients,
    })
}

/// A MessagePack string at the front of `rd`, which moves past it.
fn text(rd: &mut &[u8]) -> Option<String> {
    let (s, rest) = rmp::decode::read_str_from_slice(*rd).ok()?;
    *rd = rest;
    Some(s.to_owned())
}

/// Reads a `QUEUED` row: its first sequence number and its record.
pub(in crate::store) fn read_queued(row: &[u8]) -> Result<(u64, MessageRecord), StoreError> {
    let (seq, record) = split_queued(row)?;
    Ok((seq, super::super::decode(record)?))
}

/// A `QUEUED` row's sequence number and encoded record.
pub(in crate::store) fn split_queued(row: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let Some((seq, record)) = row.split_first_chunk::<8>() else {
        return Err(StoreError::Decode(
            "a queued message row is too short".into(),
        ));
    };
    Ok((u64::from_le_bytes(*seq), record))
}

/// Builds the queues from the stored rows (at open, and before the first commit after a
/// failed one). A row that cannot be read is skipped, with a warning: one message must not
/// stop every later write, or the broker's start.
pub(in crate::store) fn build(tx: &WriteTransaction) -> Result<QueueIndex, StoreError> {
    let queued = tx.open_table(QUEUED)?;
    let acks = tx.open_table(ACKS)?;
    let mut index = QueueIndex::default();
    for row in queued.range::<(&str, &str)>(..)? {
        let (k, v) = row?;
        let (mesh_id, id) = k.value();
        let (seq, record) = match read_head(v.value()) {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!("queued message {mesh_id}/{id} cannot be read, left out: {e}");
                continue;
            }
        };
        let keys: Vec<String> = record.recipients.iter().map(|(k, _)| k.clone()).collect();
        let mut acked = vec![false; keys.len()];
        if keys.len() > 1 {
            let shorts: Vec<String> = keys.iter().map(|k| super::short_key(k)).collect();
            for row in acks.range((mesh_id, id, "")..=(mesh_id, id, "\u{10FFFF}"))? {
                let (k, _) = row?;
                if let Some(n) = shorts.iter().position(|s| s == k.value().2) {
                    acked[n] = true;
                }
            }
        }
        let place = (seq, record.expires_at_ms);
        index.insert((mesh_id, id), &keys, place, &acked, 0);
    }
    Ok(index)
}

/// Before a commit's jobs: after a failed commit, rebuilds the queues from the stored rows.
/// The scan runs without the lock (walks go on reading the last committed state, which the
/// failed batch did not change); the result replaces it under the lock.
pub(in crate::store) fn rebuild_if_failed(
    tx: &WriteTransaction,
    index: &Mutex<QueueIndex>,
) -> Result<(), StoreError> {
    if !lock(index).rebuild {
        return Ok(());
    }
    let fresh = build(tx)?;
    let mut index = lock(index);
    *index = QueueIndex {
        published: index.published,
        current: index.current,
        ..fresh
    };
    Ok(())
}
