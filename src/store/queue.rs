//! The message queue: one record per message, one FIFO queue per recipient, and a delivery row
//! per (recipient, message) so `message_status` can tell delivered from waiting.

use std::sync::atomic::Ordering;

use redb::{ReadableTable, Table, WriteTransaction};

use super::records::{CLIENT_IDS, DELIVERIES, EXPIRY, MESSAGES, QUEUE, QUEUE_COUNTS, SESSIONS};
use super::{
    Delivery, KnownSession, META, MessageRecord, Store, StoreError, decode, decode_opt, encode,
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
    Found(Box<MessageRecord>),
    NotFound,
    Ambiguous,
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
            if let Some(cid) = record.client_message_id.as_deref() {
                let ids = tx.open_table(CLIENT_IDS)?;
                let key = (
                    record.mesh_id.as_str(),
                    record.sender_member_id.as_str(),
                    cid,
                );
                let existing = ids.get(key)?.map(|v| v.value().to_string());
                if let Some(id) = existing {
                    let first: Option<MessageRecord> = decode_opt(
                        tx.open_table(MESSAGES)?
                            .get((record.mesh_id.as_str(), id.as_str()))?,
                    )?;
                    if let Some(first) = first {
                        return Ok(Enqueued {
                            record: first,
                            fresh: false,
                            seqs: Vec::new(),
                            full: None,
                        });
                    }
                }
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
                tx.open_table(CLIENT_IDS)?.insert(
                    (
                        record.mesh_id.as_str(),
                        record.sender_member_id.as_str(),
                        cid,
                    ),
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

    /// Marks (recipient key, message id) pairs delivered and removes them from their queues.
    /// Returns how many were still waiting.
    pub fn mark_delivered(
        &self,
        pairs: Vec<(String, String)>,
        now_ms: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + use<> {
        self.submit(move |tx| {
            let mut queue = tx.open_table(QUEUE)?;
            let mut counts = tx.open_table(QUEUE_COUNTS)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
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
                d.delivered_at_ms = Some(now_ms);
                deliveries.insert((key.as_str(), id.as_str()), encode(&d).as_slice())?;
                n += 1;
            }
            Ok(n)
        })
    }

    pub fn delivery(&self, key: &str, message_id: &str) -> Result<Option<Delivery>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(DELIVERIES)?.get((key, message_id))?)
    }

    /// Finds a message by its id or by a unique prefix of at least 8 characters.
    pub fn find_message(&self, mesh_id: &str, id: &str) -> Result<PrefixLookup, StoreError> {
        let rt = self.read()?;
        let messages = rt.open_table(MESSAGES)?;
        if let Some(r) = decode_opt::<MessageRecord>(messages.get((mesh_id, id))?)? {
            return Ok(PrefixLookup::Found(Box::new(r)));
        }
        let mut found = None;
        for row in messages.range((mesh_id, id)..)? {
            let (k, v) = row?;
            let (m, mid) = k.value();
            if m != mesh_id || !mid.starts_with(id) {
                break;
            }
            if found.is_some() {
                return Ok(PrefixLookup::Ambiguous);
            }
            found = Some(decode::<MessageRecord>(v.value())?);
        }
        Ok(match found {
            Some(r) => PrefixLookup::Found(Box::new(r)),
            None => PrefixLookup::NotFound,
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
            let store = self.clone();
            let expired = tokio::task::spawn_blocking(move || store.expired_page(now_ms, PAGE))
                .await
                .map_err(|e| StoreError::Db(format!("the retention sweep stopped: {e}")))??;
            if expired.is_empty() {
                return Ok(dropped);
            }
            let full = expired.len() == PAGE;
            dropped += self.drop_messages(expired).await?;
            if !full {
                return Ok(dropped);
            }
        }
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
            let mut ids = tx.open_table(CLIENT_IDS)?;
            let mut expiry = tx.open_table(EXPIRY)?;
            let mut dropped = 0;
            for (at, mesh_id, id) in expired {
                expiry.remove((at, mesh_id.as_str(), id.as_str()))?;
                let r: Option<MessageRecord> =
                    decode_opt(messages.remove((mesh_id.as_str(), id.as_str()))?)?;
                let Some(r) = r else { continue };
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
                    ids.remove((r.mesh_id.as_str(), r.sender_member_id.as_str(), cid))?;
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
