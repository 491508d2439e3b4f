//! Schema 3 → 4: schema 3's message records and per-recipient tables (`MESSAGES`, `QUEUE`,
//! `QUEUE_COUNTS`, `DELIVERIES`, `WAITING`) become one `QUEUED` row per message still waiting
//! and `ACKS` rows for the recipients that acknowledged it, in the transaction of the version
//! bump (all or nothing; a crash reruns it at the next open).
//!
//! Rules: a recipient is still waiting when its `QUEUE` row is there; one whose delivery row
//! says when it acknowledged has an `ACKS` row; one with neither never got the message (it
//! does not start getting it now). A message's first sequence number is the smallest of its
//! rows' (a message's numbers were one block taken in commit order, so every recipient's order
//! is kept); when a waiting recipient's place would then not be where its `QUEUE` row was (a
//! store left inconsistent), the message takes a new block after every other instead, so that
//! no two entries of one queue share a place. A message nobody waits for any more (a store from before
//! `WAITING`) is retired on the spot. A key named twice is queued once; a `QUEUE` row whose
//! message is gone is dropped. A record that cannot be read is kept aside in
//! `unreadable_v3_messages`, with a warning, rather than stopping the broker's start. The log
//! says what was resolved how.
//!
//! Schema 4 → 5 ([`to_v5`]): the expiry table goes; the queues in memory keep the waiting
//! messages in the order their retention ends.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::super::records::v3::{DELIVERIES, MESSAGES, QUEUE, QUEUE_COUNTS, WAITING};
use super::super::records::v4;
use super::super::records::{ACKS, DELIVERED, QUEUED};
use super::super::{Delivery, MessageRecord, StoreError, decode, encode, encode_by_position};
use super::index::{QueuedHead, queued_row};
use super::{distinct_recipients, keep_delivered, short_key};

/// Rows of schema 3's `MESSAGES` that could not be read, as they were.
const UNREADABLE: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("unreadable_v3_messages");

/// What the migration found and did, as it logs it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(in crate::store) struct Counts {
    pub(in crate::store) messages: u64,
    pub(in crate::store) waiting: u64,
    pub(in crate::store) acked: u64,
    pub(in crate::store) never_queued: u64,
    pub(in crate::store) retired: u64,
    pub(in crate::store) stray: u64,
    pub(in crate::store) unreadable: u64,
    pub(in crate::store) moved: u64,
}

/// Runs the migration (see the module) and says what it did.
pub(in crate::store) fn to_v4(tx: &WriteTransaction) -> Result<Counts, StoreError> {
    let mut c = Counts::default();
    {
        let messages = tx.open_table(MESSAGES)?;
        let queue = tx.open_table(QUEUE)?;
        let deliveries = tx.open_table(DELIVERIES)?;
        let mut queued = tx.open_table(QUEUED)?;
        let mut acks = tx.open_table(ACKS)?;
        let mut delivered = tx.open_table(DELIVERED)?;
        let mut unreadable = tx.open_table(UNREADABLE)?;
        // Where each waiting (recipient, message) sits: its QUEUE row (the smallest, for a key
        // named twice).
        let mut waiting_at: HashMap<(String, String), u64> = HashMap::new();
        for row in queue.range::<(&str, u64)>(..)? {
            let (k, v) = row?;
            let (key, seq) = k.value();
            let at = waiting_at
                .entry((key.to_string(), v.value().to_string()))
                .or_insert(seq);
            *at = (*at).min(seq);
        }
        let mut next_seq = super::load_seq(tx)?;
        let start_seq = next_seq;
        for row in messages.range::<(&str, &str)>(..)? {
            let (k, v) = row?;
            let (mesh_id, id) = k.value();
            c.messages += 1;
            let mut r: MessageRecord = match decode(v.value()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        "schema 4: message {mesh_id}/{id} cannot be read ({e}); kept aside in \
                         unreadable_v3_messages"
                    );
                    unreadable.insert((mesh_id, id), v.value())?;
                    c.unreadable += 1;
                    continue;
                }
            };
            distinct_recipients(&mut r);
            // Per recipient: `None` never queued, `Some(None)` waiting, `Some(Some(at))`
            // acknowledged; and its seq, where known.
            let mut state = Vec::with_capacity(r.recipients.len());
            let mut seqs = Vec::with_capacity(r.recipients.len());
            for (key, _) in &r.recipients {
                if let Some(seq) = waiting_at.get(&(key.clone(), id.to_string())) {
                    state.push(Some(None));
                    seqs.push(Some(*seq));
                    continue;
                }
                let d: Option<Delivery> = match deliveries.get((key.as_str(), id))? {
                    Some(v) => decode(v.value()).ok(),
                    None => None,
                };
                match d {
                    Some(d) => {
                        state.push(Some(Some(d.delivered_at_ms.unwrap_or(r.created_at_ms))));
                        seqs.push(Some(d.seq));
                    }
                    None => {
                        c.never_queued += 1;
                        state.push(None);
                        seqs.push(None);
                    }
                }
            }
            let waiting = state.iter().filter(|s| matches!(s, Some(None))).count();
            if waiting == 0 {
                // Nobody waits for it: what an acknowledgement would have left.
                let recipients = r
                    .recipients
                    .iter()
                    .zip(&state)
                    .map(|((k, name), s)| {
                        let at = s.flatten().unwrap_or(r.created_at_ms);
                        (short_key(k), name.clone(), at)
                    })
                    .collect();
                let head = QueuedHead {
                    sender_member_id: r.sender_member_id,
                    target_spec: r.target_spec,
                    client_message_id: r.client_message_id,
                    expires_at_ms: r.expires_at_ms,
                    recipients: Vec::new(),
                };
                keep_delivered(&mut delivered, (mesh_id, id), head, recipients)?;
                c.retired += 1;
                continue;
            }
            c.waiting += waiting as u64;
            for ((k, _), s) in r.recipients.iter().zip(&state) {
                // Acknowledged, or never queued: either way not waiting.
                let at = match s {
                    Some(Some(at)) => *at,
                    None => r.created_at_ms,
                    Some(None) => continue,
                };
                c.acked += 1;
                acks.insert((mesh_id, id, short_key(k).as_str()), at)?;
            }
            // The n-th recipient's place is `first + n`: the block schema 3 took for the message
            // (its smallest seq) when every waiting recipient's place is where it was; else
            // (a store a crash or a bug left inconsistent) a new block after every other.
            let first = seqs.iter().flatten().min().copied().unwrap_or(next_seq);
            let in_place =
                r.recipients.iter().enumerate().all(|(n, _)| {
                    !matches!(state[n], Some(None)) || seqs[n] == Some(first + n as u64)
                });
            let first = if in_place {
                first
            } else {
                c.moved += 1;
                let block = next_seq;
                next_seq += r.recipients.len() as u64;
                block
            };
            let row = queued_row(first, &encode_by_position(&r));
            queued.insert((mesh_id, id), row.as_slice())?;
        }
        if next_seq != start_seq {
            tx.open_table(super::super::META)?
                .insert("queue_seq", encode(&next_seq).as_slice())?;
        }
        // QUEUE rows whose message is gone (a key named twice left one behind).
        for row in queue.range::<(&str, u64)>(..)? {
            let (k, v) = row?;
            let key = k.value().0;
            let mesh_id = key.split('/').nth(1).unwrap_or_default();
            if messages.get((mesh_id, v.value()))?.is_none() {
                c.stray += 1;
            }
        }
    }
    for table in [MESSAGES, DELIVERIES] {
        tx.delete_table(table)?;
    }
    tx.delete_table(QUEUE)?;
    tx.delete_table(QUEUE_COUNTS)?;
    tx.delete_table(WAITING)?;
    if c.messages > 0 {
        tracing::info!(
            "store: schema 4 holds {} stored messages: {} recipient entries waiting, {} \
             acknowledged, {} recipients never queued, {} messages retired (nobody waited), \
             {} stray queue rows dropped, {} unreadable records kept aside, {} messages \
             moved to the end of their queues (their places did not agree)",
            c.messages,
            c.waiting,
            c.acked,
            c.never_queued,
            c.retired,
            c.stray,
            c.unreadable,
            c.moved
        );
    }
    Ok(c)
}

/// Schema 4 → 5: the expiry index goes (the queues in memory, built at every open, keep the
/// waiting messages in the order their retention ends).
pub(in crate::store) fn to_v5(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.delete_table(v4::EXPIRY)?;
    tx.open_table(super::super::META)?
        .remove("expiry_indexed")?;
    Ok(())
}
