//! The message queue: one record per message, one FIFO queue per recipient, and a delivery row
//! per (recipient, message) so `message_status` can tell delivered from waiting.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use redb::{ReadableTable, WriteTransaction};

use super::records::{CLIENT_IDS, DELIVERIES, MESSAGES, QUEUE, SESSIONS};
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

/// The result of storing a message.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub record: MessageRecord,
    /// False when the same `client_message_id` was stored before (nothing new was queued).
    pub fresh: bool,
    /// Queue position per recipient key.
    pub seqs: Vec<(String, u64)>,
}

/// A queued entry waiting for a recipient.
#[derive(Debug, Clone)]
pub struct Pending {
    pub key: String,
    pub seq: u64,
    pub record: MessageRecord,
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
        let seq = self.seq.clone();
        self.submit(move |tx| {
            if let Some(cid) = record.client_message_id.as_deref() {
                let mut ids = tx.open_table(CLIENT_IDS)?;
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
                        });
                    }
                }
                ids.insert(key, record.id.as_str())?;
            }
            tx.open_table(MESSAGES)?.insert(
                (record.mesh_id.as_str(), record.id.as_str()),
                encode(&record).as_slice(),
            )?;
            let mut queue = tx.open_table(QUEUE)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut seqs = Vec::with_capacity(record.recipients.len());
            for (key, _name) in &record.recipients {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                queue.insert((key.as_str(), n), record.id.as_str())?;
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
            })
        })
    }

    /// Everything queued for `keys`, oldest first. Expired entries are skipped.
    pub fn pending(&self, keys: &[String], now_ms: i64) -> Result<Vec<Pending>, StoreError> {
        let rt = self.read()?;
        let queue = rt.open_table(QUEUE)?;
        let messages = rt.open_table(MESSAGES)?;
        let mut out = Vec::new();
        let mut cache: HashMap<String, Option<MessageRecord>> = HashMap::new();
        for key in keys {
            for row in queue.range((key.as_str(), 0u64)..=(key.as_str(), u64::MAX))? {
                let (k, v) = row?;
                let seq = k.value().1;
                let id = v.value().to_string();
                let record = match cache.get(&id) {
                    Some(r) => r.clone(),
                    None => {
                        let mesh_id = key.split('/').nth(1).unwrap_or_default();
                        let r: Option<MessageRecord> =
                            decode_opt(messages.get((mesh_id, id.as_str()))?)?;
                        cache.insert(id.clone(), r.clone());
                        r
                    }
                };
                if let Some(record) = record.filter(|r| r.expires_at_ms > now_ms) {
                    out.push(Pending {
                        key: key.clone(),
                        seq,
                        record,
                    });
                }
            }
        }
        out.sort_by_key(|p| p.seq);
        Ok(out)
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
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut n = 0;
            for (key, id) in pairs {
                let found: Option<Delivery> =
                    decode_opt(deliveries.get((key.as_str(), id.as_str()))?)?;
                let Some(mut d) = found else { continue };
                if d.delivered_at_ms.is_some() {
                    continue;
                }
                queue.remove((key.as_str(), d.seq))?;
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
    /// records. Returns how many queued (never delivered) entries were dropped.
    pub async fn sweep_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        // Find candidates on a snapshot, then delete them in one write.
        let expired: Vec<MessageRecord> = {
            let rt = self.read()?;
            let messages = rt.open_table(MESSAGES)?;
            let mut out = Vec::new();
            for row in messages.iter()? {
                let (_, v) = row?;
                let r: MessageRecord = decode(v.value())?;
                if r.expires_at_ms <= now_ms {
                    out.push(r);
                }
            }
            out
        };
        if expired.is_empty() {
            return Ok(0);
        }
        self.write(move |tx| {
            let mut messages = tx.open_table(MESSAGES)?;
            let mut queue = tx.open_table(QUEUE)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut ids = tx.open_table(CLIENT_IDS)?;
            let mut dropped = 0;
            for r in expired {
                for (key, _) in &r.recipients {
                    let d: Option<Delivery> =
                        decode_opt(deliveries.remove((key.as_str(), r.id.as_str()))?)?;
                    if let Some(d) = d
                        && d.delivered_at_ms.is_none()
                    {
                        queue.remove((key.as_str(), d.seq))?;
                        dropped += 1;
                    }
                }
                if let Some(cid) = r.client_message_id.as_deref() {
                    ids.remove((r.mesh_id.as_str(), r.sender_member_id.as_str(), cid))?;
                }
                messages.remove((r.mesh_id.as_str(), r.id.as_str()))?;
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
