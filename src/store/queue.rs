//! The message queue: one record per message, one FIFO queue per recipient, and a delivery row
//! per (recipient, message) so `message_status` can tell delivered from waiting. Once every
//! recipient has acknowledged a message, its record and rows give way to a small
//! [`DeliveredRecord`] (no body), kept until the message's retention ends.

use std::sync::atomic::Ordering;

use redb::{ReadableTable, Table, WriteTransaction};

use super::records::{
    CLIENT_IDS, CLIENT_KEYS, DELIVERED, DELIVERIES, EXPIRY, MESSAGES, QUEUE, QUEUE_COUNTS,
    SESSIONS, WAITING,
};
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

/// The key of a client message id in `CLIENT_KEYS`: 16 bytes of SHA-256 over mesh, sender
/// member and id (a fixed 16 bytes per sent message instead of the three strings).
fn client_key(mesh_id: &str, member_id: &str, cid: &str) -> [u8; 16] {
    let digest = crate::crypto::sha256(format!("{mesh_id}\0{member_id}\0{cid}").as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The message `record`'s sender already sent under client message id `cid`, if any (still
/// stored, or delivered to everyone with only its status kept).
fn first_sent(
    tx: &WriteTransaction,
    record: &MessageRecord,
    cid: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    let (mesh_id, sender) = (record.mesh_id.as_str(), record.sender_member_id.as_str());
    let found = tx
        .open_table(CLIENT_KEYS)?
        .get(client_key(mesh_id, sender, cid))?
        .map(|v| v.value().to_string());
    // Stores from before `CLIENT_KEYS` keep the three strings.
    let found = match found {
        Some(id) => Some(id),
        None => tx
            .open_table(CLIENT_IDS)?
            .get((mesh_id, sender, cid))?
            .map(|v| v.value().to_string()),
    };
    let Some(id) = found else {
        return Ok(None);
    };
    let same = |s: &str, c: Option<&str>| s == sender && c == Some(cid);
    let first: Option<MessageRecord> =
        decode_opt(tx.open_table(MESSAGES)?.get((mesh_id, id.as_str()))?)?;
    if let Some(first) = first {
        return Ok(
            same(&first.sender_member_id, first.client_message_id.as_deref()).then_some(first),
        );
    }
    let done: Option<DeliveredRecord> =
        decode_opt(tx.open_table(DELIVERED)?.get((mesh_id, id.as_str()))?)?;
    Ok(done
        .filter(|d| same(&d.sender_member_id, d.client_message_id.as_deref()))
        .map(|_| MessageRecord {
            id,
            ..record.clone()
        }))
}

/// Forgets a client message id (its message is gone), in whichever table holds it.
fn forget_client_id(
    tx: &WriteTransaction,
    mesh_id: &str,
    member_id: &str,
    cid: &str,
) -> Result<(), StoreError> {
    tx.open_table(CLIENT_KEYS)?
        .remove(client_key(mesh_id, member_id, cid))?;
    tx.open_table(CLIENT_IDS)?
        .remove((mesh_id, member_id, cid))?;
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
/// otherwise changes nothing.
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
    let Some(r) = decode_opt::<MessageRecord>(messages.get(message)?)? else {
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
                None => return Ok(false),
            }
        };
        recipients.push((k.clone(), name.clone(), at));
    }
    for (k, _) in &r.recipients {
        deliveries.remove((k.as_str(), r.id.as_str()))?;
    }
    messages.remove(message)?;
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
        // Encoded here, on the caller's thread: the writer thread only looks up and inserts.
        let encoded = encode(&record);
        self.submit(move |tx| {
            if let Some(cid) = record.client_message_id.as_deref()
                && let Some(first) = first_sent(tx, &record, cid)?
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
            {
                let counts = tx.open_table(QUEUE_COUNTS)?;
                let queue = tx.open_table(QUEUE)?;
                let mut full = None;
                for (key, name) in &record.recipients {
                    let n = queue_len(&counts, &queue, key)?;
                    if n >= max_queued {
                        full = Some(name.clone());
                        break;
                    }
                    lens.push(n);
                }
                if full.is_some() {
                    return Ok(Enqueued {
                        record,
                        fresh: false,
                        seqs: Vec::new(),
                        full,
                    });
                }
            }
            if let Some(cid) = record.client_message_id.as_deref() {
                tx.open_table(CLIENT_KEYS)?.insert(
                    client_key(&record.mesh_id, &record.sender_member_id, cid),
                    record.id.as_str(),
                )?;
            }
            tx.open_table(MESSAGES)?.insert(
                (record.mesh_id.as_str(), record.id.as_str()),
                encoded.as_slice(),
            )?;
            tx.open_table(EXPIRY)?.insert(
                (
                    expiry_at(record.expires_at_ms),
                    record.mesh_id.as_str(),
                    record.id.as_str(),
                ),
                (),
            )?;
            let mut queue = tx.open_table(QUEUE)?;
            let mut counts = tx.open_table(QUEUE_COUNTS)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let distinct: std::collections::HashSet<&str> =
                record.recipients.iter().map(|(k, _)| k.as_str()).collect();
            if distinct.len() > 1 {
                tx.open_table(WAITING)?.insert(
                    (record.mesh_id.as_str(), record.id.as_str()),
                    distinct.len() as u32,
                )?;
            }
            let mut seqs = Vec::with_capacity(record.recipients.len());
            for ((key, _name), len) in record.recipients.iter().zip(lens) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                queue.insert((key.as_str(), n), record.id.as_str())?;
                // A message naming one key twice is queued twice; count from the table then.
                let before = counts.get(key.as_str())?.map_or(len, |v| v.value());
                bump_len(&mut counts, key, before, 1)?;
                let delivery = Delivery {
                    seq: n,
                    mesh_id: record.mesh_id.clone(),
                    delivered_at_ms: None,
                };
                deliveries.insert(
                    (key.as_str(), record.id.as_str()),
                    encode(&delivery).as_slice(),
                )?;
                seqs.push((key.clone(), n));
            }
            tx.open_table(META)?
                .insert("queue_seq", encode(&seq.load(Ordering::Relaxed)).as_slice())?;
            Ok(Enqueued {
                record,
                fresh: true,
                seqs,
                full: None,
            })
        })
    }

    /// Walks the queues of `keys` merged in sequence order from `from`, one entry at a time
    /// (nothing more is loaded), handing each unexpired message to `visit`. At most `max_rows`
    /// entries are looked at; the result says where to resume.
    pub fn walk_queue(
        &self,
        keys: &[String],
        from: u64,
        now_ms: i64,
        max_rows: usize,
        mut visit: impl FnMut(u64, MessageRecord) -> Visit,
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
                && visit(seq, record) == Visit::Stop
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
        self.submit(move |tx| {
            let mut queue = tx.open_table(QUEUE)?;
            let mut counts = tx.open_table(QUEUE_COUNTS)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut messages = tx.open_table(MESSAGES)?;
            let mut delivered = tx.open_table(DELIVERED)?;
            let mut expiry = tx.open_table(EXPIRY)?;
            let mut waiting = tx.open_table(WAITING)?;
            let mut n = 0;
            for (key, id) in pairs {
                let found: Option<Delivery> =
                    decode_opt(deliveries.get((key.as_str(), id.as_str()))?)?;
                let Some(mut d) = found else { continue };
                if d.delivered_at_ms.is_some() {
                    continue;
                }
                let before = queue_len(&counts, &queue, &key)?;
                if queue.remove((key.as_str(), d.seq))?.is_some() {
                    bump_len(&mut counts, &key, before, -1)?;
                }
                n += 1;
                let message = (d.mesh_id.as_str(), id.as_str());
                let tables = (
                    &mut messages,
                    &mut deliveries,
                    &mut delivered,
                    &mut expiry,
                    &mut waiting,
                );
                if retire(tables, message, &key, now_ms)? {
                    continue;
                }
                d.delivered_at_ms = Some(now_ms);
                deliveries.insert((key.as_str(), id.as_str()), encode(&d).as_slice())?;
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
        self.write(move |tx| {
            let mut delivered = tx.open_table(DELIVERED)?;
            for (mesh_id, id) in done {
                let r: Option<DeliveredRecord> =
                    decode_opt(delivered.remove((mesh_id.as_str(), id.as_str()))?)?;
                if let Some(r) = r
                    && let Some(cid) = r.client_message_id.as_deref()
                {
                    forget_client_id(tx, &mesh_id, &r.sender_member_id, cid)?;
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
                    forget_client_id(tx, &r.mesh_id, &r.sender_member_id, cid)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Priority;

    const MESH: &str = "mesh1";

    fn key(member: &str) -> String {
        format!("m/{MESH}/{member}")
    }

    fn message(id: &str, to: &[&str]) -> MessageRecord {
        MessageRecord {
            id: id.into(),
            mesh_id: MESH.into(),
            sender_member_id: "alice".into(),
            sender_pubkey: "aa".into(),
            sender_member_pubkey: "aa".into(),
            sender_name: "alice".into(),
            target_spec: "*".into(),
            priority: Priority::Now,
            nonce: String::new(),
            ciphertext: "x".into(),
            body_version: None,
            reply_to_id: None,
            mentions: None,
            client_message_id: None,
            request_fingerprint: None,
            subtype: None,
            created_at_ms: 1,
            expires_at_ms: i64::MAX,
            recipients: to.iter().map(|m| (key(m), m.to_string())).collect(),
            key_epoch: 0,
        }
    }

    /// `(seq, id)` of what a walk of `keys` from `from` visits, at most `max_rows` entries.
    fn walk(
        store: &Store,
        keys: &[String],
        from: u64,
        max_rows: usize,
    ) -> (Vec<(u64, String)>, Walked) {
        let mut seen = Vec::new();
        let walked = store
            .walk_queue(keys, from, 0, max_rows, |seq, r| {
                seen.push((seq, r.id));
                Visit::Next
            })
            .unwrap();
        (seen, walked)
    }

    fn count_row(store: &Store, k: &str) -> Option<u64> {
        let rt = store.read().unwrap();
        let counts = rt.open_table(QUEUE_COUNTS).unwrap();
        counts.get(k).unwrap().map(|v| v.value())
    }

    /// A member's and its session's queues are read as one, in the order messages were
    /// stored; a window stops after `max_rows` entries and says where the next walk starts.
    #[tokio::test]
    async fn two_queues_are_walked_in_sequence_order_a_window_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (id, to) in [
            ("m1", "a"),
            ("m2", "b"),
            ("m3", "a"),
            ("m4", "b"),
            ("m5", "b"),
        ] {
            store.enqueue(message(id, &[to])).await.unwrap();
        }
        let keys = [key("a"), key("b")];
        let (all, walked) = walk(&store, &keys, 0, 100);
        let ids: Vec<&str> = all.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5"]);
        assert!(walked.end);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{all:?}");

        let (first, walked) = walk(&store, &keys, 0, 2);
        assert_eq!(first, all[..2], "a window of two entries");
        assert!(!walked.end);
        assert_eq!(
            walked.next, all[2].0,
            "the next walk starts at the third entry"
        );
        let (rest, walked) = walk(&store, &keys, walked.next, 2);
        assert_eq!(rest, all[2..4]);
        assert_eq!(walked.next, all[4].0);
        let (last, walked) = walk(&store, &keys, walked.next, 2);
        assert_eq!(last, all[4..]);
        assert!(walked.end);
    }

    /// A queue holds at most `max_queued` entries, counted as they are added and delivered
    /// (or from the queue itself when no count is kept); an emptied queue keeps no count row.
    #[tokio::test]
    async fn a_full_queue_refuses_until_an_entry_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in ["m1", "m2", "m3"] {
            let e = store.enqueue_within(message(id, &["b"]), 3).await.unwrap();
            assert!(e.fresh && e.full.is_none(), "{id} was refused");
        }
        assert_eq!(count_row(&store, &key("b")), Some(3));
        let refused = store
            .enqueue_within(message("m4", &["b"]), 3)
            .await
            .unwrap();
        assert_eq!(refused.full.as_deref(), Some("b"));
        assert!(!refused.fresh && refused.seqs.is_empty());

        // Without its count row (a store from before counts were kept) the queue is counted.
        store
            .write(|tx| {
                tx.open_table(QUEUE_COUNTS)?.remove(key("b").as_str())?;
                Ok(())
            })
            .await
            .unwrap();
        let refused = store
            .enqueue_within(message("m4", &["b"]), 3)
            .await
            .unwrap();
        assert_eq!(refused.full.as_deref(), Some("b"), "counted from the queue");

        let n = store
            .mark_delivered(vec![(key("b"), "m1".into())], 5)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(count_row(&store, &key("b")), Some(2));
        let e = store
            .enqueue_within(message("m4", &["b"]), 3)
            .await
            .unwrap();
        assert!(e.full.is_none(), "room again after a delivery");
        assert_eq!(count_row(&store, &key("b")), Some(3));

        let pairs = ["m2", "m3", "m4"]
            .map(|id| (key("b"), id.to_string()))
            .to_vec();
        assert_eq!(store.mark_delivered(pairs, 6).await.unwrap(), 3);
        assert_eq!(
            count_row(&store, &key("b")),
            None,
            "no row kept for an empty queue"
        );
        let (left, _) = walk(&store, &[key("b")], 0, 100);
        assert!(left.is_empty(), "{left:?}");
    }

    fn rows(store: &Store, mesh_id: &str, id: &str) -> (bool, bool) {
        let rt = store.read().unwrap();
        let waiting = rt
            .open_table(MESSAGES)
            .unwrap()
            .get((mesh_id, id))
            .unwrap()
            .is_some();
        let done = rt
            .open_table(DELIVERED)
            .unwrap()
            .get((mesh_id, id))
            .unwrap()
            .is_some();
        (waiting, done)
    }

    fn tracked(store: &Store, id: &str) -> Tracked {
        match store.find_message(MESH, id).unwrap() {
            PrefixLookup::Found(t) => *t,
            other => panic!("{id}: {other:?}"),
        }
    }

    /// Once every recipient acknowledged a message its body is dropped: `message_status` still
    /// finds it (by prefix too) with each acknowledgement time, a resend of its
    /// `client_message_id` still gets the same id and stores nothing, and when retention
    /// ends nothing of it is left.
    #[tokio::test]
    async fn a_message_acknowledged_by_everyone_keeps_only_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut m = message("msg-abcdefgh", &["b", "c"]);
        m.client_message_id = Some("cid-1".into());
        m.expires_at_ms = 1000;
        m.target_spec = "ab".repeat(32);
        store.enqueue(m.clone()).await.unwrap();

        let n = store
            .mark_delivered(vec![(key("b"), m.id.clone())], 5)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            rows(&store, MESH, &m.id),
            (true, false),
            "c has not acknowledged"
        );
        let rt = store.read().unwrap();
        let left = rt
            .open_table(WAITING)
            .unwrap()
            .get((MESH, m.id.as_str()))
            .unwrap();
        assert_eq!(
            left.map(|v| v.value()),
            Some(1),
            "one recipient left, counted"
        );
        drop(rt);
        let t = tracked(&store, &m.id);
        assert_eq!(t.recipients[0].2, Some(5));
        assert_eq!(t.recipients[1].2, None);

        store
            .mark_delivered(vec![(key("c"), m.id.clone())], 6)
            .await
            .unwrap();
        assert_eq!(
            rows(&store, MESH, &m.id),
            (false, true),
            "the body is dropped"
        );
        let t = tracked(&store, "msg-abcd");
        assert_eq!(t.id, m.id);
        assert_eq!(
            t.target_spec,
            "ab".repeat(32),
            "a key target is kept as bytes"
        );
        let acked: Vec<_> = t.recipients.iter().map(|r| (r.1.as_str(), r.2)).collect();
        assert_eq!(acked, [("b", Some(5)), ("c", Some(6))]);
        let again = store
            .mark_delivered(vec![(key("c"), m.id.clone())], 7)
            .await
            .unwrap();
        assert_eq!(again, 0, "a second acknowledgement changes nothing");

        let mut resent = m.clone();
        resent.id = "msg-other".into();
        let e = store.enqueue(resent.clone()).await.unwrap();
        assert!(
            !e.fresh,
            "a resend of a delivered message is not stored again"
        );
        assert_eq!(e.record.id, m.id);
        let (left, _) = walk(&store, &[key("b"), key("c")], 0, 100);
        assert!(left.is_empty(), "{left:?}");

        assert_eq!(store.sweep_expired(2000).await.unwrap(), 0);
        assert_eq!(rows(&store, MESH, &m.id), (false, false));
        assert!(matches!(
            store.find_message(MESH, &m.id).unwrap(),
            PrefixLookup::NotFound
        ));
        let e = store.enqueue(resent).await.unwrap();
        assert!(e.fresh, "its client id went with it");
    }

    /// A data directory from before the `delivered` table opens; its messages are delivered
    /// and reported as before.
    #[tokio::test]
    async fn a_store_without_the_delivered_table_opens_and_delivers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.enqueue(message("old-message", &["b"])).await.unwrap();
            store
                .write(|tx| {
                    tx.delete_table(DELIVERED)?;
                    Ok(())
                })
                .await
                .unwrap();
            store.close();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(tracked(&store, "old-message").recipients[0].2, None);
        store
            .mark_delivered(vec![(key("b"), "old-message".into())], 9)
            .await
            .unwrap();
        assert_eq!(rows(&store, MESH, "old-message"), (false, true));
        assert_eq!(tracked(&store, "old-message").recipients[0].2, Some(9));
    }

    /// Client message ids stored by an older version (three strings in `client_ids`) still
    /// stop a resend, and go when their message does.
    #[tokio::test]
    async fn client_ids_from_an_older_store_still_stop_resends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut m = message("first", &["b"]);
        m.client_message_id = Some("cid-old".into());
        m.expires_at_ms = 1000;
        store.enqueue(m.clone()).await.unwrap();
        store
            .write(|tx| {
                tx.open_table(CLIENT_KEYS)?
                    .remove(client_key(MESH, "alice", "cid-old"))?;
                tx.open_table(CLIENT_IDS)?
                    .insert((MESH, "alice", "cid-old"), "first")?;
                Ok(())
            })
            .await
            .unwrap();
        let mut again = m.clone();
        again.id = "second".into();
        let e = store.enqueue(again.clone()).await.unwrap();
        assert!(!e.fresh);
        assert_eq!(e.record.id, "first");
        store.sweep_expired(2000).await.unwrap();
        let rt = store.read().unwrap();
        let old = rt.open_table(CLIENT_IDS).unwrap();
        assert!(old.get((MESH, "alice", "cid-old")).unwrap().is_none());
        drop((old, rt));
        assert!(store.enqueue(again).await.unwrap().fresh);
    }

    /// A store written before the expiry index existed has its messages indexed when it is
    /// opened, so the retention sweep (which reads only the index) still drops them.
    #[tokio::test]
    async fn messages_stored_before_the_expiry_index_are_swept_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut m = message("old", &["b"]);
            m.expires_at_ms = 10;
            store.enqueue(m).await.unwrap();
            store.enqueue(message("kept", &["b"])).await.unwrap();
            store
                .write(|tx| {
                    tx.delete_table(EXPIRY)?;
                    tx.open_table(EXPIRY)?;
                    tx.open_table(META)?.remove("expiry_indexed")?;
                    Ok(())
                })
                .await
                .unwrap();
            assert_eq!(store.sweep_expired(100).await.unwrap(), 0, "not indexed");
            store.close();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.sweep_expired(100).await.unwrap(), 1);
        let (left, _) = walk(&store, &[key("b")], 0, 100);
        let ids: Vec<&str> = left.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["kept"]);
    }

    /// Expired messages are dropped from the store (all of them, past one page of candidates),
    /// unexpired ones stay; a message is found by its id or a unique prefix of it.
    #[tokio::test]
    async fn expired_messages_are_swept_and_prefixes_find_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut old = Vec::new();
        for i in 0..1500 {
            let mut m = message(&format!("old{i:04}"), &["b"]);
            m.expires_at_ms = 10;
            old.push(store.enqueue(m));
        }
        for f in old {
            f.await.unwrap();
        }
        store.enqueue(message("ab1", &["b"])).await.unwrap();
        store.enqueue(message("ac2", &["b"])).await.unwrap();

        let found = |id: &str| match store.find_message(MESH, id).unwrap() {
            PrefixLookup::Found(r) => Some(r.id),
            PrefixLookup::NotFound => None,
            PrefixLookup::Ambiguous => Some("ambiguous".into()),
        };
        assert_eq!(found("ab").as_deref(), Some("ab1"));
        assert_eq!(found("a").as_deref(), Some("ambiguous"));
        assert_eq!(found("old0001").as_deref(), Some("old0001"));

        assert_eq!(store.sweep_expired(100).await.unwrap(), 1500);
        assert_eq!(found("old0001"), None);
        assert_eq!(found("old1499"), None);
        let (left, _) = walk(&store, &[key("b")], 0, 10_000);
        let ids: Vec<&str> = left.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, ["ab1", "ac2"]);
        assert_eq!(
            store.sweep_expired(100).await.unwrap(),
            0,
            "nothing left to sweep"
        );
    }
}

/// Disk use per delivered message: `cargo test --lib bytes_per_delivered_message -- --ignored
/// --nocapture` stores and delivers 100 000 bench-like messages (50 members, one
/// recipient each, a client message id each) and prints the file size and each table's share.
#[cfg(test)]
mod disk_use {
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::protocol::ids;
    use crate::store::Priority;

    #[tokio::test]
    #[ignore]
    async fn bytes_per_delivered_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mesh = ids::new_id();
        let members: Vec<String> = (0..50).map(|_| ids::new_id()).collect();
        let n = 100_000;
        let (mut stored, mut sent) = (Vec::new(), Vec::new());
        for i in 0..n {
            let key = format!("m/{mesh}/{}", members[(i + 1) % 50]);
            let r = MessageRecord {
                id: ids::new_id(),
                mesh_id: mesh.clone(),
                sender_member_id: members[i % 50].clone(),
                sender_pubkey: "a".repeat(64),
                sender_member_pubkey: "a".repeat(64),
                sender_name: format!("bench-{}", i % 50),
                target_spec: "b".repeat(64),
                priority: Priority::Now,
                nonce: "n".repeat(32),
                ciphertext: "c".repeat(192),
                body_version: None,
                reply_to_id: None,
                mentions: None,
                client_message_id: Some(format!("b{}-{}", i % 50, i / 50)),
                request_fingerprint: None,
                subtype: None,
                created_at_ms: 1,
                expires_at_ms: i64::MAX,
                recipients: vec![(key.clone(), format!("bench-{}", (i + 1) % 50))],
                key_epoch: 0,
            };
            sent.push((key, r.id.clone()));
            stored.push(store.enqueue(r));
            if stored.len() == 500 {
                for f in stored.drain(..) {
                    f.await.unwrap();
                }
                store
                    .mark_delivered(std::mem::take(&mut sent), 5)
                    .await
                    .unwrap();
                if (i + 1) % 20_000 == 0 {
                    let size = std::fs::metadata(dir.path().join("mesh.redb"))
                        .unwrap()
                        .len();
                    eprintln!("{:>7} delivered: mesh.redb {size} bytes", i + 1);
                }
            }
        }
        let rt = store.read().unwrap();
        let mut live = 0;
        for (name, stats) in [
            (
                "messages",
                rt.open_table(MESSAGES).unwrap().stats().unwrap(),
            ),
            (
                "deliveries",
                rt.open_table(DELIVERIES).unwrap().stats().unwrap(),
            ),
            (
                "delivered",
                rt.open_table(DELIVERED).unwrap().stats().unwrap(),
            ),
            (
                "client_keys",
                rt.open_table(CLIENT_KEYS).unwrap().stats().unwrap(),
            ),
            ("expiry", rt.open_table(EXPIRY).unwrap().stats().unwrap()),
        ] {
            let bytes = stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
            live += bytes;
            eprintln!("{name:>12}: {} bytes per message", bytes / n as u64);
        }
        eprintln!("{:>12}: {} bytes per message", "all", live / n as u64);
    }
}
