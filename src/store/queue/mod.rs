//! The message queue: one record per message, one FIFO queue per recipient, and a delivery row
//! per (recipient, message) so `message_status` can tell delivered from waiting. Once every
//! recipient has acknowledged a message, its record and rows give way to a small
//! [`DeliveredRecord`] (no body), kept until the message's retention ends.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use redb::{ReadableTable, Table, WriteTransaction};

use super::records::{
    CLIENT_IDS, CLIENT_KEYS, DELIVERED, DELIVERIES, EXPIRY, MESSAGES, QUEUE, QUEUE_COUNTS,
    SESSIONS, WAITING,
};
use client_keys::{ClientKey, PendingKeys, client_key, lock};

use super::{
    DeliveredRecord, Delivery, KnownSession, META, MessageRecord, Store, StoreError, decode,
    decode_opt, encode,
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

/// An expiry index key: when the retention ends (clamped at 0, so a u64 sorts in time order).
fn expiry_at(expires_at_ms: i64) -> u64 {
    expires_at_ms.max(0) as u64
}

/// Fills the expiry index from the stored messages, once (a store written before it existed).
pub(crate) fn index_expiry_once(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META)?;
    if meta.get("expiry_indexed")?.is_some() {
        return Ok(());
    }
    let messages = tx.open_table(MESSAGES)?;
    let mut expiry = tx.open_table(EXPIRY)?;
    for row in messages.range::<(&str, &str)>(..)? {
        let (k, v) = row?;
        let (mesh_id, id) = k.value();
        let r: MessageRecord = decode(v.value())?;
        expiry.insert((expiry_at(r.expires_at_ms), mesh_id, id), ())?;
    }
    meta.insert("expiry_indexed", encode(&true).as_slice())?;
    Ok(())
}

/// The result of storing a message.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub record: MessageRecord,
    /// False when the same `client_message_id` was stored before (nothing new was queued).
    pub fresh: bool,
    /// Queue position per recipient key.
    pub seqs: Vec<(String, u64)>,
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

type QueueTable<'t> = Table<'t, (&'static str, u64), &'static str>;
type CountTable<'t> = Table<'t, &'static str, u64>;

/// The tables a `send` and a `client_ack` write, open for a whole batch of such jobs.
pub(in crate::store) struct QueueTables<'t> {
    messages: Table<'t, MessageKey<'static>, &'static [u8]>,
    queue: QueueTable<'t>,
    counts: CountTable<'t>,
    deliveries: Table<'t, (&'static str, &'static str), &'static [u8]>,
    delivered: Table<'t, MessageKey<'static>, &'static [u8]>,
    expiry: Table<'t, (u64, &'static str, &'static str), ()>,
    waiting: Table<'t, MessageKey<'static>, u32>,
    client_keys: Table<'t, [u8; 16], &'static str>,
    /// New client-message-id entries wait here (see [`client_keys`]).
    pending: &'t Mutex<PendingKeys>,
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
    ) -> Result<Self, StoreError> {
        Ok(QueueTables {
            messages: tx.open_table(MESSAGES)?,
            queue: tx.open_table(QUEUE)?,
            counts: tx.open_table(QUEUE_COUNTS)?,
            deliveries: tx.open_table(DELIVERIES)?,
            delivered: tx.open_table(DELIVERED)?,
            expiry: tx.open_table(EXPIRY)?,
            waiting: tx.open_table(WAITING)?,
            client_keys: tx.open_table(CLIENT_KEYS)?,
            pending,
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

/// Entries in `key`'s queue: the kept count, else counted once.
fn queue_len(counts: &CountTable, queue: &QueueTable, key: &str) -> Result<u64, StoreError> {
    if let Some(n) = counts.get(key)? {
        return Ok(n.value());
    }
    let mut n = 0;
    for row in queue.range((key, 0u64)..=(key, u64::MAX))? {
        row?;
        n += 1;
    }
    Ok(n)
}

/// Sets `key`'s count to `before` (its length read before the change) plus `delta`.
fn bump_len(counts: &mut CountTable, key: &str, before: u64, delta: i64) -> Result<(), StoreError> {
    let n = before.saturating_add_signed(delta);
    if n == 0 {
        counts.remove(key)?;
    } else {
        counts.insert(key, n)?;
    }
    Ok(())
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

/// Encodes a [`DeliveredRecord`] by position (no field names): it is kept per message.
fn encode_delivered(r: &DeliveredRecord) -> Vec<u8> {
    rmp_serde::to_vec(r).unwrap_or_default()
}

/// The message `record`'s sender already sent under client message id `cid` (whose
/// `CLIENT_KEYS` key is `key`), if any (still stored, or delivered to everyone with only its
/// status kept).
fn first_sent(
    t: &QueueTables,
    record: &MessageRecord,
    (cid, key): (&str, ClientKey),
) -> Result<Option<MessageRecord>, StoreError> {
    let (mesh_id, sender) = (record.mesh_id.as_str(), record.sender_member_id.as_str());
    let waiting = lock(t.pending).get(&key).map(str::to_string);
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
    let first: Option<MessageRecord> = decode_opt(t.messages.get((mesh_id, id.as_str()))?)?;
    if let Some(first) = first {
        return Ok(
            same(&first.sender_member_id, first.client_message_id.as_deref()).then_some(first),
        );
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

/// The tables [`retire`] changes: messages, deliveries, delivered, expiry, waiting.
type RetireTables<'a, 't> = (
    &'a mut Table<'t, MessageKey<'static>, &'static [u8]>,
    &'a mut Table<'t, (&'static str, &'static str), &'static [u8]>,
    &'a mut Table<'t, MessageKey<'static>, &'static [u8]>,
    &'a mut Table<'t, (u64, &'static str, &'static str), ()>,
    &'a mut Table<'t, MessageKey<'static>, u32>,
);

/// A recipient key without its mesh (`m/<member>`, `s/<session>`), as a delivered record
/// keeps it.
fn short_key(key: &str) -> String {
    match key.splitn(3, '/').collect::<Vec<_>>()[..] {
        [kind, _mesh, rest] => format!("{kind}/{rest}"),
        _ => key.to_string(),
    }
}

/// The full recipient key of a delivered record's `m/<member>` or `s/<session>`.
fn full_key(short: &str, mesh_id: &str) -> String {
    match short.split_once('/') {
        Some((kind, rest)) if !rest.contains('/') => format!("{kind}/{mesh_id}/{rest}"),
        _ => short.to_string(),
    }
}

/// When `key`'s acknowledgement of `message` is the last one missing, replaces the message's
/// record and delivery rows with a [`DeliveredRecord`] and returns true (the body is gone);
/// otherwise changes nothing. The caller has taken `key`'s delivery row out already.
fn retire(
    (messages, deliveries, delivered, expiry, waiting): RetireTables,
    message: MessageKey,
    key: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    // A message for several recipients counts down without being read.
    let left = waiting.get(message)?.map(|v| v.value());
    if let Some(n) = left {
        if n > 1 {
            waiting.insert(message, n - 1)?;
            return Ok(false);
        }
        waiting.remove(message)?;
    }
    // Taken out at once (one walk down the tree, not a read and a removal): put back in the
    // rare case that another recipient has not acknowledged it (a store from before WAITING).
    let Some(r) = decode_opt::<MessageRecord>(messages.remove(message)?)? else {
        return Ok(false);
    };
    let mut recipients = Vec::with_capacity(r.recipients.len());
    for (k, name) in &r.recipients {
        let at = if k == key {
            now_ms
        } else {
            let d: Option<Delivery> = decode_opt(deliveries.get((k.as_str(), r.id.as_str()))?)?;
            match d.and_then(|d| d.delivered_at_ms) {
                Some(at) => at,
                None => {
                    messages.insert(message, encode(&r).as_slice())?;
                    return Ok(false);
                }
            }
        };
        recipients.push((k.clone(), name.clone(), at));
    }
    // (The acknowledging recipient's row is out already.)
    for (k, _) in r.recipients.iter().filter(|(k, _)| k != key) {
        deliveries.remove((k.as_str(), r.id.as_str()))?;
    }
    // The delivered record is swept by its own table (ids sort by time), not the index.
    expiry.remove((expiry_at(r.expires_at_ms), message.0, message.1))?;
    let recipients = recipients
        .into_iter()
        .map(|(k, name, at)| (short_key(&k), name, at))
        .collect();
    let kept = DeliveredRecord {
        sender_member_id: r.sender_member_id,
        target_spec: r.target_spec,
        client_message_id: r.client_message_id,
        recipients,
        keep_until_ms: r.expires_at_ms,
    };
    delivered.insert(message, encode_delivered(&kept).as_slice())?;
    Ok(true)
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
        record: MessageRecord,
        max_queued: u64,
    ) -> impl Future<Output = Result<Enqueued, StoreError>> + use<> {
        let seq = self.seq.clone();
        // Encoded and hashed here, on the caller's thread: the writer thread only looks up
        // and inserts.
        let encoded = encode(&record);
        let cid_key = record
            .client_message_id
            .as_deref()
            .map(|cid| client_key(&record.mesh_id, &record.sender_member_id, cid));
        let distinct = record
            .recipients
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<std::collections::HashSet<&str>>()
            .len();
        self.submit_queue(move |t| {
            if let (Some(cid), Some(key)) = (record.client_message_id.as_deref(), cid_key)
                && let Some(first) = first_sent(t, &record, (cid, key))?
            {
                return Ok(Enqueued {
                    record: first,
                    fresh: false,
                    seqs: Vec::new(),
                    full: None,
                });
            }
            // The quota is checked before anything is written: a refusal stores nothing.
            let mut lens = Vec::with_capacity(record.recipients.len());
            for (key, name) in &record.recipients {
                let n = queue_len(&t.counts, &t.queue, key)?;
                if n >= max_queued {
                    return Ok(Enqueued {
                        full: Some(name.clone()),
                        record,
                        fresh: false,
                        seqs: Vec::new(),
                    });
                }
                lens.push(n);
            }
            if let Some(key) = cid_key {
                lock(t.pending).insert(key, &record.id);
            }
            t.messages.insert(
                (record.mesh_id.as_str(), record.id.as_str()),
                encoded.as_slice(),
            )?;
            t.expiry.insert(
                (
                    expiry_at(record.expires_at_ms),
                    record.mesh_id.as_str(),
                    record.id.as_str(),
                ),
                (),
            )?;
            if distinct > 1 {
                t.waiting.insert(
                    (record.mesh_id.as_str(), record.id.as_str()),
                    distinct as u32,
                )?;
            }
            let mut seqs = Vec::with_capacity(record.recipients.len());
            for ((key, _name), len) in record.recipients.iter().zip(lens) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                t.queue.insert((key.as_str(), n), record.id.as_str())?;
                // A message naming one key twice is queued twice; count from the table then.
                let before = t.counts.get(key.as_str())?.map_or(len, |v| v.value());
                bump_len(&mut t.counts, key, before, 1)?;
                let delivery = Delivery {
                    seq: n,
                    mesh_id: record.mesh_id.clone(),
                    delivered_at_ms: None,
                };
                t.deliveries.insert(
                    (key.as_str(), record.id.as_str()),
                    encode(&delivery).as_slice(),
                )?;
                seqs.push((key.clone(), n));
            }
            t.next_seq = Some(seq.load(Ordering::Relaxed));
            Ok(Enqueued {
                record,
                fresh: true,
                seqs,
                full: None,
            })
        })
    }

    /// Walks the queues of `keys` merged in sequence order from `from`, one entry at a time
    /// (nothing more is loaded), handing each unexpired message to `visit` with the index in
    /// `keys` of the queue it is in and its sequence number. At most `max_rows`
    /// entries are looked at; the result says where to resume.
    pub fn walk_queue(
        &self,
        keys: &[String],
        from: u64,
        now_ms: i64,
        max_rows: usize,
        mut visit: impl FnMut(usize, u64, MessageRecord) -> Visit,
    ) -> Result<Walked, StoreError> {
        let rt = self.read()?;
        let queue = rt.open_table(QUEUE)?;
        let messages = rt.open_table(MESSAGES)?;
        let mut ranges = Vec::with_capacity(keys.len());
        for key in keys {
            let mesh_id = key.split('/').nth(1).unwrap_or_default();
            let range = queue.range((key.as_str(), from)..=(key.as_str(), u64::MAX))?;
            ranges.push((mesh_id, range.peekable()));
        }
        let mut next = from;
        let mut looked = 0;
        loop {
            // The head with the smallest sequence number among the queues.
            let mut best: Option<(usize, u64, String)> = None;
            for (i, (_, range)) in ranges.iter_mut().enumerate() {
                let head = match range.peek() {
                    None => continue,
                    Some(Ok((k, v))) => (k.value().1, v.value().to_string()),
                    Some(Err(_)) => match range.next() {
                        Some(Err(e)) => return Err(e.into()),
                        _ => continue,
                    },
                };
                if best.as_ref().is_none_or(|(_, s, _)| head.0 < *s) {
                    best = Some((i, head.0, head.1));
                }
            }
            let Some((i, seq, id)) = best else {
                return Ok(Walked { next, end: true });
            };
            if looked >= max_rows {
                return Ok(Walked { next, end: false });
            }
            looked += 1;
            let record: Option<MessageRecord> =
                decode_opt(messages.get((ranges[i].0, id.as_str()))?)?;
            if let Some(record) = record.filter(|r| r.expires_at_ms > now_ms)
                && visit(i, seq, record) == Visit::Stop
            {
                return Ok(Walked {
                    next: seq,
                    end: false,
                });
            }
            ranges[i].1.next();
            next = seq + 1;
        }
    }

    /// Marks (recipient key, message id) pairs delivered and removes them from their queues;
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
                // Taken out, as retiring the message would do: put back changed, or as it was.
                let found: Option<Delivery> =
                    decode_opt(t.deliveries.remove((key.as_str(), id.as_str()))?)?;
                let Some(mut d) = found else { continue };
                if d.delivered_at_ms.is_some() {
                    t.deliveries
                        .insert((key.as_str(), id.as_str()), encode(&d).as_slice())?;
                    continue;
                }
                let before = queue_len(&t.counts, &t.queue, &key)?;
                if t.queue.remove((key.as_str(), d.seq))?.is_some() {
                    bump_len(&mut t.counts, &key, before, -1)?;
                }
                n += 1;
                let message = (d.mesh_id.as_str(), id.as_str());
                let tables = (
                    &mut t.messages,
                    &mut t.deliveries,
                    &mut t.delivered,
                    &mut t.expiry,
                    &mut t.waiting,
                );
                if retire(tables, message, &key, now_ms)? {
                    continue;
                }
                d.delivered_at_ms = Some(now_ms);
                t.deliveries
                    .insert((key.as_str(), id.as_str()), encode(&d).as_slice())?;
            }
            Ok(n)
        })
    }

    /// Finds a message by its id or by a unique prefix of at least 8 characters, waiting or
    /// delivered to everyone.
    pub fn find_message(&self, mesh_id: &str, id: &str) -> Result<PrefixLookup, StoreError> {
        let rt = self.read()?;
        let messages = rt.open_table(MESSAGES)?;
        let delivered = rt.open_table(DELIVERED)?;
        let deliveries = rt.open_table(DELIVERIES)?;
        let waiting = |r: MessageRecord| -> Result<Tracked, StoreError> {
            let mut recipients = Vec::with_capacity(r.recipients.len());
            for (key, name) in r.recipients {
                let d: Option<Delivery> =
                    decode_opt(deliveries.get((key.as_str(), r.id.as_str()))?)?;
                recipients.push((key, name, d.and_then(|d| d.delivered_at_ms)));
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
        if let Some(r) = decode_opt::<MessageRecord>(messages.get((mesh_id, id))?)? {
            return Ok(PrefixLookup::Found(Box::new(waiting(r)?)));
        }
        if let Some(r) = decode_opt::<DeliveredRecord>(delivered.get((mesh_id, id))?)? {
            return Ok(PrefixLookup::Found(Box::new(done(id, r))));
        }
        let mut found = Vec::new();
        for row in messages.range((mesh_id, id)..)?.take(2) {
            let (k, v) = row?;
            let (m, mid) = k.value();
            if m != mesh_id || !mid.starts_with(id) {
                break;
            }
            found.push(waiting(decode::<MessageRecord>(v.value())?)?);
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

    /// Drops messages whose retention has passed: their queue entries, delivery rows and
    /// records, a page at a time. Candidates come from the expiry index (only expired
    /// messages are read), found on a blocking thread, never on the async runtime. Returns
    /// how many queued (never delivered) entries were dropped.
    pub async fn sweep_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        const PAGE: usize = 1000;
        let mut dropped = 0;
        loop {
            let expired = self
                .off_runtime(move |s| s.expired_page(now_ms, PAGE))
                .await?;
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

    /// Up to `page` expiry index keys of messages expired by `now_ms`, oldest first.
    fn expired_page(
        &self,
        now_ms: i64,
        page: usize,
    ) -> Result<Vec<(u64, String, String)>, StoreError> {
        let rt = self.read()?;
        let expiry = rt.open_table(EXPIRY)?;
        let mut out = Vec::new();
        for row in expiry.range((0u64, "", "")..)? {
            let (k, _) = row?;
            let (at, mesh_id, id) = k.value();
            if at > expiry_at(now_ms) {
                break;
            }
            out.push((at, mesh_id.to_string(), id.to_string()));
            if out.len() >= page {
                break;
            }
        }
        Ok(out)
    }

    async fn drop_messages(&self, expired: Vec<(u64, String, String)>) -> Result<u64, StoreError> {
        let shared = self.shared.clone();
        self.write(move |tx| {
            let mut messages = tx.open_table(MESSAGES)?;
            let mut queue = tx.open_table(QUEUE)?;
            let mut counts = tx.open_table(QUEUE_COUNTS)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut expiry = tx.open_table(EXPIRY)?;
            let mut waiting = tx.open_table(WAITING)?;
            let mut dropped = 0;
            for (at, mesh_id, id) in expired {
                expiry.remove((at, mesh_id.as_str(), id.as_str()))?;
                let r: Option<MessageRecord> =
                    decode_opt(messages.remove((mesh_id.as_str(), id.as_str()))?)?;
                let Some(r) = r else { continue };
                waiting.remove((mesh_id.as_str(), id.as_str()))?;
                for (key, _) in &r.recipients {
                    let d: Option<Delivery> =
                        decode_opt(deliveries.remove((key.as_str(), r.id.as_str()))?)?;
                    if let Some(d) = d
                        && d.delivered_at_ms.is_none()
                    {
                        let before = queue_len(&counts, &queue, key)?;
                        if queue.remove((key.as_str(), d.seq))?.is_some() {
                            bump_len(&mut counts, key, before, -1)?;
                        }
                        dropped += 1;
                    }
                }
                if let Some(cid) = r.client_message_id.as_deref() {
                    let cid = (r.mesh_id.as_str(), r.sender_member_id.as_str(), cid);
                    forget_client_id(tx, &shared.client_keys, cid, &r.id)?;
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
#[cfg(test)]
mod tests;

// How many bytes a delivered message costs on disk (an ignored test; see the module).
#[cfg(test)]
mod disk_use;
