//! The message queue: one `QUEUED` row per message some recipient has not acknowledged yet,
//! every recipient's FIFO queue in memory ([`index`]), and an `ACKS` row per acknowledgement
//! of a message with several recipients that is not its last. Once every recipient has
//! acknowledged a message, its row gives way to a small [`DeliveredRecord`] (no body), kept
//! until the message's retention ends, so `message_status` can still answer.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use redb::{ReadableTable, Table, WriteTransaction};

use super::records::{ACKS, CLIENT_IDS, CLIENT_KEYS, DELIVERED, QUEUED, SESSIONS};
use client_keys::{ClientKey, PendingKeys, client_key, lock};
use index::{QueueIndex, mesh_of, number_row, read_head, read_queued, unnumbered_row};

use super::{
    DeliveredRecord, KnownSession, META, MessageRecord, Store, StoreError, by_position_in_place,
    decode, decode_opt, encode,
};

/// Reads the persisted next sequence number at start-up.
pub(crate) fn load_seq(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let meta = tx.open_table(META)?;
    let v = meta.get("queue_seq")?;
    Ok(match v {
        Some(g) => decode::<u64>(g.value())?,
        None => 1,
    })
}

/// The result of storing a message.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub record: MessageRecord,
    /// False when the same `client_message_id` was stored before (nothing new was queued).
    pub fresh: bool,
    /// Set when nothing was stored because this recipient (display name) already has the
    /// most messages a queue may hold.
    pub full: Option<String>,
}

/// What a queue walk's visitor says about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Done with it (pushed or skipped): go on.
    Next,
    /// Stop before it; the walk resumes here next time.
    Stop,
}

/// Where a queue walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// The sequence number to resume from.
    pub next: u64,
    /// Every queue was read to its end.
    pub end: bool,
}

/// The tables a `send` and a `client_ack` write, open for a whole batch of such jobs.
pub(in crate::store) struct QueueTables<'t> {
    queued: Table<'t, MessageKey<'static>, &'static [u8]>,
    acks: Table<'t, (&'static str, &'static str, &'static str), i64>,
    delivered: Table<'t, MessageKey<'static>, &'static [u8]>,
    client_keys: Table<'t, [u8; 16], &'static str>,
    /// New client-message-id entries wait here (see [`client_keys`]).
    pending: &'t Mutex<PendingKeys>,
    /// Every recipient's queue (see [`index`]).
    index: &'t Mutex<QueueIndex>,
    client_ids: Table<'t, (&'static str, &'static str, &'static str), &'static str>,
    meta: Table<'t, &'static str, &'static [u8]>,
    /// The queue sequence number to persist when the tables close: written once a batch, not
    /// once a message.
    next_seq: Option<u64>,
}

impl<'t> QueueTables<'t> {
    pub(in crate::store) fn open(
        tx: &'t WriteTransaction,
        pending: &'t Mutex<PendingKeys>,
        index: &'t Mutex<QueueIndex>,
    ) -> Result<Self, StoreError> {
        Ok(QueueTables {
            queued: tx.open_table(QUEUED)?,
            acks: tx.open_table(ACKS)?,
            delivered: tx.open_table(DELIVERED)?,
            client_keys: tx.open_table(CLIENT_KEYS)?,
            pending,
            index,
            client_ids: tx.open_table(CLIENT_IDS)?,
            meta: tx.open_table(META)?,
            next_seq: None,
        })
    }

    /// Persists what must outlive the batch (the next sequence number), then closes the
    /// tables.
    pub(in crate::store) fn close(mut self) -> Result<(), StoreError> {
        if let Some(n) = self.next_seq {
            self.meta.insert("queue_seq", encode(&n).as_slice())?;
        }
        Ok(())
    }
}

/// Outcome of finding a message by id or id prefix.
#[derive(Debug, Clone)]
pub enum PrefixLookup {
    Found(Box<Tracked>),
    NotFound,
    Ambiguous,
}

/// A message as `message_status` sees it, waiting or delivered to everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub id: String,
    pub target_spec: String,
    /// `(recipient key, display name, acknowledged at ms)`.
    pub recipients: Vec<(String, String, Option<i64>)>,
}

/// A stored message id in the form the tables hold: `(mesh_id, message_id)`.
type MessageKey<'k> = (&'k str, &'k str);

/// The message `record`'s sender already sent under client message id `cid` (whose
/// `CLIENT_KEYS` key is `key`), if any (still stored, or delivered to everyone with only its
/// status kept).
fn first_sent(
    t: &QueueTables,
    record: &MessageRecord,
    (cid, key): (&str, ClientKey),
) -> Result<Option<MessageRecord>, StoreError> {
    let (mesh_id, sender) = (record.mesh_id.as_str(), record.sender_member_id.as_str());
    let waiting = {
        let pending = lock(t.pending);
        if !pending.may_hold(&key) {
            return Ok(None);
        }
        pending.get(&key).map(str::to_string)
    };
    let found = match waiting {
        Some(id) => Some(id),
        None => t.client_keys.get(key)?.map(|v| v.value().to_string()),
    };
    // Stores from before `CLIENT_KEYS` keep the three strings.
    let found = match found {
        Some(id) => Some(id),
        None => t
            .client_ids
            .get((mesh_id, sender, cid))?
            .map(|v| v.value().to_string()),
    };
    let Some(id) = found else {
        return Ok(None);
    };
    let same = |s: &str, c: Option<&str>| s == sender && c == Some(cid);
    if let Some(row) = t.queued.get((mesh_id, id.as_str()))? {
        // A row that cannot be read is no first send: it must not fail every batch a
        // resend of its client id lands in.
        return Ok(match read_queued(row.value()) {
            Ok((_, first)) => {
                same(&first.sender_member_id, first.client_message_id.as_deref()).then_some(first)
            }
            Err(e) => {
                tracing::warn!("message {mesh_id}/{id} cannot be read: {e}");
                None
            }
        });
    }
    let done: Option<DeliveredRecord> = decode_opt(t.delivered.get((mesh_id, id.as_str()))?)?;
    Ok(done
        .filter(|d| same(&d.sender_member_id, d.client_message_id.as_deref()))
        .map(|_| MessageRecord {
            id,
            ..record.clone()
        }))
}

/// Forgets message `message_id`'s client message id (the message is gone), wherever it is
/// kept; an entry naming another message stays.
fn forget_client_id(
    tx: &WriteTransaction,
    pending: &Mutex<PendingKeys>,
    (mesh_id, member_id, cid): (&str, &str, &str),
    message_id: &str,
) -> Result<(), StoreError> {
    let key = client_key(mesh_id, member_id, cid);
    lock(pending).remove(&key, message_id);
    let mut keys = tx.open_table(CLIENT_KEYS)?;
    if keys.get(key)?.is_some_and(|v| v.value() == message_id) {
        keys.remove(key)?;
    }
    let mut ids = tx.open_table(CLIENT_IDS)?;
    if ids
        .get((mesh_id, member_id, cid))?
        .is_some_and(|v| v.value() == message_id)
    {
        ids.remove((mesh_id, member_id, cid))?;
    }
    Ok(())
}

/// A recipient key without its mesh (`m/<member>`, `s/<session>`), as a delivered record
/// and an `ACKS` row keep it.
fn short_key(key: &str) -> String {
    match key
        .split_once('/')
        .and_then(|(kind, r)| Some((kind, r.split_once('/')?.1)))
    {
        Some((kind, rest)) => [kind, "/", rest].concat(),
        None => key.to_string(),
    }
}

/// The full recipient key of a delivered record's `m/<member>` or `s/<session>`.
fn full_key(short: &str, mesh_id: &str) -> String {
    match short.split_once('/') {
        Some((kind, rest)) if !rest.contains('/') => format!("{kind}/{mesh_id}/{rest}"),
        _ => short.to_string(),
    }
}

/// Every recipient of `message` has acknowledged it, `key` last (at `now_ms`): replaces its
/// `QUEUED` row and `ACKS` rows with a [`DeliveredRecord`] (the body is gone).
fn retire(
    t: &mut QueueTables,
    message: MessageKey,
    key: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Some(row) = t.queued.remove(message)? else {
        return Ok(());
    };
    let (_, r) = read_head(row.value())?;
    drop(row);
    let mut recipients = Vec::with_capacity(r.recipients.len());
    for (k, name) in &r.recipients {
        let short = short_key(k);
        let at = if k == key {
            now_ms
        } else {
            // (The index said every other recipient had acknowledged it.)
            let acked = t.acks.remove((message.0, message.1, short.as_str()))?;
            acked.map_or(now_ms, |v| v.value())
        };
        recipients.push((short, name.clone(), at));
    }
    keep_delivered(&mut t.delivered, message, r, recipients)
}

/// Replaces what is stored of `message` (its record `r` gone already) with a
/// [`DeliveredRecord`] of `recipients` (short key, name, acknowledged at), swept by its own
/// table, whose ids sort by time.
fn keep_delivered(
    delivered: &mut Table<MessageKey<'static>, &'static [u8]>,
    message: MessageKey,
    r: index::QueuedHead,
    recipients: Vec<(String, String, i64)>,
) -> Result<(), StoreError> {
    let kept = DeliveredRecord {
        sender_member_id: r.sender_member_id,
        target_spec: r.target_spec,
        client_message_id: r.client_message_id,
        recipients,
        keep_until_ms: r.expires_at_ms,
    };
    by_position_in_place(&kept, |bytes| delivered.insert(message, bytes))?;
    Ok(())
}

/// A record's recipients with each key once (the first name it came with): a message is
/// queued once per key.
fn distinct_recipients(record: &mut MessageRecord) {
    if record.recipients.len() < 2 {
        return;
    }
    let mut seen =
        crate::HashSet::with_capacity_and_hasher(record.recipients.len(), Default::default());
    record.recipients.retain(|(k, _)| seen.insert(k.clone()));
}

impl Store {
    /// Stores a message and queues it for each of its recipients, all in one transaction.
    /// A repeated `client_message_id` from the same member returns the first message instead.
    /// The job is queued at the call, so calls from one connection commit in order.
    pub fn enqueue(
        &self,
        record: MessageRecord,
    ) -> impl Future<Output = Result<Enqueued, StoreError>> + use<> {
        self.enqueue_within(record, u64::MAX)
    }

    /// [`Store::enqueue`], refused (`full`, nothing stored) when a recipient's queue already
    /// holds `max_queued` entries.
    pub fn enqueue_within(
        &self,
        mut record: MessageRecord,
        max_queued: u64,
    ) -> impl Future<Output = Result<Enqueued, StoreError>> + use<> {
        let seq = self.seq.clone();
        distinct_recipients(&mut record);
        // Encoded and hashed here, on the caller's thread: the writer thread only looks up
        // and inserts.
        let mut row = unnumbered_row(&record);
        let cid_key = record
            .client_message_id
            .as_deref()
            .map(|cid| client_key(&record.mesh_id, &record.sender_member_id, cid));
        let keys: Vec<String> = record.recipients.iter().map(|(k, _)| k.clone()).collect();
        self.submit_queue(move |t| {
            if let (Some(cid), Some(key)) = (record.client_message_id.as_deref(), cid_key)
                && let Some(first) = first_sent(t, &record, (cid, key))?
            {
                return Ok(Enqueued {
                    record: first,
                    fresh: false,
                    full: None,
                });
            }
            // The quota is checked before anything is written: a refusal stores nothing.
            {
                let index = index::lock(t.index);
                if let Some((_, name)) = record
                    .recipients
                    .iter()
                    .find(|(key, _)| index.len(key) >= max_queued)
                {
                    return Ok(Enqueued {
                        full: Some(name.clone()),
                        record,
                        fresh: false,
                    });
                }
            }
            if let Some(key) = cid_key {
                lock(t.pending).insert(key, &record.id);
            }
            let first = seq.fetch_add(keys.len() as u64, Ordering::Relaxed);
            let message = (record.mesh_id.as_str(), record.id.as_str());
            number_row(&mut row, first);
            t.queued.insert(message, row.as_slice())?;
            index::lock(t.index).add(message, &keys, first, record.expires_at_ms);
            t.next_seq = Some(seq.load(Ordering::Relaxed));
            Ok(Enqueued {
                record,
                fresh: true,
                full: None,
            })
        })
    }

    /// Walks the queues of `keys` merged in sequence order from `from`, one entry at a time,
    /// handing each unexpired message to `visit` with the index in `keys` of the queue it is
    /// in and its sequence number. At most `max_rows` entries are looked at; the result says
    /// where to resume.
    pub fn walk_queue(
        &self,
        keys: &[String],
        from: u64,
        now_ms: i64,
        max_rows: usize,
        mut visit: impl FnMut(usize, u64, MessageRecord) -> Visit,
    ) -> Result<Walked, StoreError> {
        // The entries and the snapshot are taken under the index's lock: every entry copied
        // was committed before the snapshot began (see `index`).
        let ((entries, end), rt) = {
            let index = index::lock(&self.shared.queue_index);
            (index.seen(keys, from, max_rows), self.read()?)
        };
        let queued = rt.open_table(QUEUED)?;
        let mut next = from;
        for (i, seq, id) in entries {
            let row = queued.get((mesh_of(&keys[i]), &*id))?;
            let record = row.map(|v| read_queued(v.value())).transpose()?;
            if let Some((_, record)) = record.filter(|(_, r)| r.expires_at_ms > now_ms)
                && visit(i, seq, record) == Visit::Stop
            {
                return Ok(Walked {
                    next: seq,
                    end: false,
                });
            }
            next = seq + 1;
        }
        Ok(Walked { next, end })
    }

    /// Marks (recipient key, message id) pairs delivered and takes them out of their queues;
    /// a message whose every recipient has now acknowledged it keeps only a
    /// [`DeliveredRecord`]. Returns how many were still waiting.
    pub fn mark_delivered(
        &self,
        pairs: Vec<(String, String)>,
        now_ms: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + use<> {
        self.submit_queue(move |t| {
            let mut n = 0;
            for (key, id) in pairs {
                let Some(taken) = index::lock(t.index).take(&key, &id) else {
                    continue;
                };
                n += 1;
                let message = (mesh_of(&key), id.as_str());
                if taken.last {
                    retire(t, message, &key, now_ms)?;
                } else {
                    let short = short_key(&key);
                    t.acks
                        .insert((message.0, message.1, short.as_str()), now_ms)?;
                }
            }
            Ok(n)
        })
    }

    /// Finds a message by its id or by a unique prefix of at least 8 characters, waiting or
    /// delivered to everyone.
    pub fn find_message(&self, mesh_id: &str, id: &str) -> Result<PrefixLookup, StoreError> {
        let rt = self.read()?;
        let queued = rt.open_table(QUEUED)?;
        let delivered = rt.open_table(DELIVERED)?;
        let acks = rt.open_table(ACKS)?;
        let waiting = |row: &[u8]| -> Result<Tracked, StoreError> {
            let (_, r) = read_queued(row)?;
            let mut recipients = Vec::with_capacity(r.recipients.len());
            for (key, name) in r.recipients {
                let short = short_key(&key);
                let at = acks.get((mesh_id, r.id.as_str(), short.as_str()))?;
                recipients.push((key, name, at.map(|v| v.value())));
            }
            Ok(Tracked {
                id: r.id,
                target_spec: r.target_spec,
                recipients,
            })
        };
        let done = |id: &str, r: DeliveredRecord| Tracked {
            id: id.to_string(),
            target_spec: r.target_spec,
            recipients: r
                .recipients
                .into_iter()
                .map(|(key, name, at)| (full_key(&key, mesh_id), name, Some(at)))
                .collect(),
        };
        if let Some(row) = queued.get((mesh_id, id))? {
            return Ok(PrefixLookup::Found(Box::new(waiting(row.value())?)));
        }
        if let Some(r) = decode_opt::<DeliveredRecord>(delivered.get((mesh_id, id))?)? {
            return Ok(PrefixLookup::Found(Box::new(done(id, r))));
        }
        let mut found = Vec::new();
        for row in queued.range((mesh_id, id)..)?.take(2) {
            let (k, v) = row?;
            let (m, mid) = k.value();
            if m != mesh_id || !mid.starts_with(id) {
                break;
            }
            found.push(waiting(v.value())?);
        }
        for row in delivered.range((mesh_id, id)..)?.take(2) {
            let (k, v) = row?;
            let (m, mid) = k.value();
            if m != mesh_id || !mid.starts_with(id) {
                break;
            }
            found.push(done(mid, decode::<DeliveredRecord>(v.value())?));
        }
        Ok(match found.len() {
            0 => PrefixLookup::NotFound,
            1 => PrefixLookup::Found(Box::new(found.remove(0))),
            _ => PrefixLookup::Ambiguous,
        })
    }

    /// Drops messages whose retention has passed: their rows and queue entries, a page at a
    /// time. Candidates come from the queues in memory, which keep the waiting messages in
    /// the order their retention ends (only expired messages are read); delivered records
    /// are found on a blocking thread, never on the async runtime. Returns how many queued
    /// (never delivered) entries were dropped.
    pub async fn sweep_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        const PAGE: usize = 1000;
        let mut dropped = 0;
        loop {
            let expired = index::lock(&self.shared.queue_index).expired(now_ms, PAGE);
            let full = expired.len() == PAGE;
            if !expired.is_empty() {
                dropped += self.drop_messages(expired).await?;
            }
            if !full {
                break;
            }
        }
        loop {
            let done = self
                .off_runtime(move |s| s.delivered_page(now_ms, PAGE))
                .await?;
            let full = done.len() == PAGE;
            if !done.is_empty() {
                self.drop_delivered(done).await?;
            }
            if !full {
                return Ok(dropped);
            }
        }
    }

    /// Runs a sweep's read on a blocking thread, never on the async runtime.
    async fn off_runtime<T: Send + 'static>(
        &self,
        read: impl FnOnce(Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || read(store))
            .await
            .map_err(|e| StoreError::Db(format!("the retention sweep stopped: {e}")))?
    }

    /// Up to `page` delivered records past their retention: each mesh's oldest first, up to
    /// its first one still kept (ids sort by time, so that is where the expired ones end).
    fn delivered_page(
        &self,
        now_ms: i64,
        page: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rt = self.read()?;
        let delivered = rt.open_table(DELIVERED)?;
        let mut out = Vec::new();
        let mut skip_to: Option<String> = None;
        'meshes: loop {
            let rows = match &skip_to {
                // Past every id of that mesh (ids are ASCII).
                Some(mesh) => delivered.range((mesh.as_str(), "\u{10FFFF}")..)?,
                None => delivered.range::<MessageKey>(..)?,
            };
            for row in rows {
                let (k, v) = row?;
                let (mesh_id, id) = k.value();
                let r: DeliveredRecord = decode(v.value())?;
                if r.keep_until_ms > now_ms {
                    skip_to = Some(mesh_id.to_string());
                    continue 'meshes;
                }
                out.push((mesh_id.to_string(), id.to_string()));
                if out.len() >= page {
                    break 'meshes;
                }
            }
            break;
        }
        Ok(out)
    }

    async fn drop_delivered(&self, done: Vec<(String, String)>) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        self.write(move |tx| {
            let mut delivered = tx.open_table(DELIVERED)?;
            for (mesh_id, id) in done {
                let r: Option<DeliveredRecord> =
                    decode_opt(delivered.remove((mesh_id.as_str(), id.as_str()))?)?;
                if let Some(r) = r
                    && let Some(cid) = r.client_message_id.as_deref()
                {
                    let cid = (mesh_id.as_str(), r.sender_member_id.as_str(), cid);
                    forget_client_id(tx, &shared.client_keys, cid, &id)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn drop_messages(&self, expired: Vec<(String, String)>) -> Result<u64, StoreError> {
        let shared = self.shared.clone();
        self.write(move |tx| {
            let mut queued = tx.open_table(QUEUED)?;
            let mut acks = tx.open_table(ACKS)?;
            let mut dropped = 0;
            for (mesh_id, id) in expired {
                dropped += index::lock(&shared.queue_index).forget(&mesh_id, &id);
                let Some(row) = queued.remove((mesh_id.as_str(), id.as_str()))? else {
                    continue;
                };
                let read = read_head(row.value());
                drop(row);
                let (m, i) = (mesh_id.as_str(), id.as_str());
                // An unreadable row goes too (else it would fail every sweep): its ACKS rows
                // with it; its client id, if any, is not known.
                let r = match read {
                    Ok((_, r)) => r,
                    Err(e) => {
                        tracing::warn!("expired message {m}/{i} cannot be read ({e}); dropped");
                        acks.retain_in((m, i, "")..=(m, i, "\u{10FFFF}"), |_, _| false)?;
                        continue;
                    }
                };
                if r.recipients.len() > 1 {
                    acks.retain_in((m, i, "")..=(m, i, "\u{10FFFF}"), |_, _| false)?;
                }
                if let Some(cid) = r.client_message_id.as_deref() {
                    let cid = (m, r.sender_member_id.as_str(), cid);
                    forget_client_id(tx, &shared.client_keys, cid, i)?;
                }
            }
            Ok(dropped)
        })
        .await
    }

    /// Remembers a session key that said hello, so messages to it can be held while it is away.
    pub async fn remember_session(
        &self,
        mesh_id: String,
        session_hex: String,
        session: KnownSession,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.open_table(SESSIONS)?.insert(
                (mesh_id.as_str(), session_hex.as_str()),
                encode(&session).as_slice(),
            )?;
            Ok(())
        })
        .await
    }

    pub fn known_session(
        &self,
        mesh_id: &str,
        session_hex: &str,
    ) -> Result<Option<KnownSession>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(SESSIONS)?.get((mesh_id, session_hex))?)
    }
}

pub(in crate::store) mod client_keys;
pub(in crate::store) mod index;
pub(in crate::store) mod migrate;
#[cfg(test)]
mod tests;

// How many bytes a delivered message costs on disk (an ignored test; see the module).
#[cfg(test)]
mod disk_use;
