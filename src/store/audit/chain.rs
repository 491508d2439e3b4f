//! The audit chain (PROTOCOL.md §12.5): the exact bytes each record's hash covers, and the
//! walk that recomputes a mesh's chain and names its first broken record.

use super::{AUDIT, AUDIT_HEADS, AuditEvent, AuditHead, AuditRecord};
use crate::crypto;
use crate::store::{Store, StoreError, decode, decode_opt};

/// The domain tag that starts every record's canonical bytes (the encoding's version).
pub const CHAIN_TAG: &str = "claudemesh-audit-v1";

fn field(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes a record's hash covers (PROTOCOL.md §12.5), with `f(s)` = 4-byte big-endian
/// length of `s`'s UTF-8 bytes, then those bytes:
/// `f(CHAIN_TAG) ‖ f(mesh_id) ‖ seq u64be ‖ at_ms i64be ‖ f(event) ‖ f(actor_member_id) ‖
/// f(actor_name) ‖ n u32be ‖ n × (f(key) ‖ f(value)) in key byte order ‖ prev 32 bytes`.
/// `None` when `prev_hash` is not 64 hex.
pub fn canonical_bytes(mesh_id: &str, r: &AuditRecord) -> Option<Vec<u8>> {
    let prev = hex::decode(&r.prev_hash).ok().filter(|p| p.len() == 32)?;
    let mut out = Vec::with_capacity(256);
    field(&mut out, CHAIN_TAG);
    field(&mut out, mesh_id);
    out.extend_from_slice(&r.seq.to_be_bytes());
    out.extend_from_slice(&r.at_ms.to_be_bytes());
    field(&mut out, &r.event);
    field(&mut out, &r.actor_member_id);
    field(&mut out, &r.actor_name);
    out.extend_from_slice(&(r.payload.len() as u32).to_be_bytes());
    // A BTreeMap<String, _> iterates in byte order of its keys.
    for (k, v) in &r.payload {
        field(&mut out, k);
        field(&mut out, v);
    }
    out.extend_from_slice(&prev);
    Some(out)
}

/// The hash a record should carry, as 64 hex (`None`: its `prev_hash` is malformed).
pub fn record_hash(mesh_id: &str, r: &AuditRecord) -> Option<String> {
    canonical_bytes(mesh_id, r).map(|b| hex::encode(crypto::sha256(&b)))
}

/// The `prev_hash` of the first record: 32 zero bytes, in hex.
pub(super) fn genesis() -> String {
    "0".repeat(64)
}

/// Why a chain does not verify, at [`AuditVerdict::broken_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBreak {
    /// The record's contents do not hash to its stored hash (edited).
    Hash,
    /// The record's `prev_hash` is not the previous record's hash.
    Link,
    /// No record with this seq, though later ones (or the head) exist (deleted).
    Missing,
    /// The stored bytes do not decode as a record, or name another seq.
    Unreadable,
}

impl AuditBreak {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditBreak::Hash => "hash_mismatch",
            AuditBreak::Link => "broken_link",
            AuditBreak::Missing => "missing",
            AuditBreak::Unreadable => "unreadable",
        }
    }
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Records found sound: all of them when valid, else those before the broken one.
    pub entries: u64,
    /// The seq the chain starts at (1 unless old records were dropped).
    pub first: u64,
    /// The first broken record's seq, why, and its event type when it could be read.
    pub broken: Option<(u64, AuditBreak, Option<String>)>,
    /// The last record's hash (what an operator can note down elsewhere to anchor the chain).
    pub head_hash: Option<String>,
}

impl AuditVerdict {
    pub fn valid(&self) -> bool {
        self.broken.is_none()
    }
}

impl Store {
    /// Recomputes `mesh_id`'s chain from its first kept record (seq 1 unless old ones were
    /// dropped, then from the head's anchor) and reports the first broken record: one whose
    /// hash does not match its contents, whose `prev_hash` is not the previous record's hash, a
    /// seq that is missing (before a later record or the head), or bytes that do not decode.
    /// One read transaction, one record in memory at a time.
    pub fn verify_audit(&self, mesh_id: &str) -> Result<AuditVerdict, StoreError> {
        self.verify_audit_within(mesh_id, super::MAX_RECORDS_PER_MESH)
    }

    /// [`Store::verify_audit`] for a log that keeps at most `max_records`: records are only
    /// ever dropped from the front, a hundredth at a time, to stay at that cap, so a head that
    /// says older records were dropped while fewer than that remain (or records without a
    /// head) is a break.
    pub(crate) fn verify_audit_within(
        &self,
        mesh_id: &str,
        max_records: u64,
    ) -> Result<AuditVerdict, StoreError> {
        let rt = self.read()?;
        let head: Option<AuditHead> = decode_opt(rt.open_table(AUDIT_HEADS)?.get(mesh_id)?)?;
        let table = rt.open_table(AUDIT)?;
        let mut verdict = AuditVerdict {
            entries: 0,
            first: 1,
            broken: None,
            head_hash: head.as_ref().map(|h| h.hash.clone()),
        };
        let first = head.as_ref().map_or(1, AuditHead::first);
        verdict.first = first;
        // Older records are dropped only to keep the cap: a head claiming they were while the
        // log is below it was edited (someone cut the oldest records and moved the anchor).
        if let Some(h) = &head
            && first > 1
            && h.len() < super::trim_floor(max_records.max(2))
        {
            verdict.broken = Some((first - 1, AuditBreak::Missing, None));
            return Ok(verdict);
        }
        let mut prev = head.as_ref().map_or_else(genesis, AuditHead::anchor);
        let mut expected = first;
        // Where the newest `audit.trimmed` record says the dropped records end.
        let mut trimmed_through = None;
        for row in table.range((mesh_id, first)..=(mesh_id, u64::MAX))? {
            let (k, v) = row?;
            let seq = k.value().1;
            if seq != expected {
                verdict.broken = Some((expected, AuditBreak::Missing, None));
                return Ok(verdict);
            }
            let record = match decode::<AuditRecord>(v.value()) {
                Ok(r) if r.seq == seq => r,
                _ => {
                    verdict.broken = Some((seq, AuditBreak::Unreadable, None));
                    return Ok(verdict);
                }
            };
            let why = if record.prev_hash != prev {
                Some(AuditBreak::Link)
            } else if record_hash(mesh_id, &record).as_deref() != Some(record.hash.as_str()) {
                Some(AuditBreak::Hash)
            } else {
                None
            };
            if let Some(why) = why {
                verdict.broken = Some((seq, why, Some(record.event)));
                return Ok(verdict);
            }
            if record.event == AuditEvent::AuditTrimmed.as_str() {
                trimmed_through = record.payload.get("throughId").and_then(|v| v.parse().ok());
            }
            verdict.entries += 1;
            prev = record.hash;
            expected += 1;
        }
        // The head names the last record written: records cut from the end, or added or
        // rewritten past it, show here.
        let last = expected - 1;
        if let Some(head) = head {
            verdict.broken = if head.seq > last {
                Some((last + 1, AuditBreak::Missing, None))
            } else if head.seq < last {
                Some((head.seq + 1, AuditBreak::Link, None))
            } else if last > 0 && head.hash != prev {
                Some((last, AuditBreak::Hash, None))
            } else {
                None
            };
            if let Some((at, _, _)) = verdict.broken {
                verdict.entries = at.saturating_sub(first);
            }
        } else if last > 0 {
            // Records but no head: whatever was cut from the end could not show.
            verdict.broken = Some((last + 1, AuditBreak::Missing, None));
            verdict.entries = last;
        }
        // Dropped records are said so in the chain: the newest trim must end just before the
        // first record kept, or records were cut from the front (the anchor moved by hand).
        if verdict.broken.is_none() && first > 1 && trimmed_through != Some(first - 1) {
            verdict.broken = Some((first - 1, AuditBreak::Missing, None));
            verdict.entries = 0;
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::*;
    use crate::store::encode;
    use crate::store::test_store;

    fn note(i: u32) -> AuditNote {
        AuditNote::new(AuditEvent::StateSet, AuditActor::member("m1", "alice"))
            .with("key", format!("k{i}"))
    }

    async fn log(store: &Store, mesh: &str, n: u32) {
        for i in 0..n {
            let mesh = mesh.to_string();
            store
                .write(move |tx| append(tx, &mesh, &note(i), 1_000 + i64::from(i)))
                .await
                .unwrap();
        }
    }

    async fn rewrite(
        store: &Store,
        mesh: &str,
        seq: u64,
        change: impl FnOnce(&mut AuditRecord) + Send + 'static,
    ) {
        let mesh = mesh.to_string();
        store
            .write(move |tx| {
                let mut t = tx.open_table(AUDIT)?;
                let mut r: AuditRecord = decode_opt(t.get((mesh.as_str(), seq))?)?.unwrap();
                change(&mut r);
                t.insert((mesh.as_str(), seq), encode(&r).as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn past_its_cap_the_log_drops_its_oldest_records_and_still_verifies() {
        let (_dir, store) = test_store();
        for i in 0..5 {
            store
                .write(move |tx| append_within(tx, "A", &note(i), 1_000, 3))
                .await
                .unwrap();
        }
        // Cap 3: the 4th record drops the two oldest and an `audit.trimmed` record follows;
        // the 5th (seq 6) again, so 5 (trimmed), 6 (the 5th note) and 7 (trimmed) are kept.
        let v = store.verify_audit_within("A", 3).unwrap();
        assert!(v.valid(), "{v:?}");
        assert_eq!((v.first, v.entries), (5, 3));
        // Under the real cap, a log that says it dropped records while far below it was cut.
        let v = store.verify_audit("A").unwrap();
        assert_eq!(v.broken, Some((4, AuditBreak::Missing, None)));
        let all = AuditFilter {
            limit: 10,
            ..Default::default()
        };
        let page = store.audit_page("A", &all).unwrap();
        assert_eq!(page.total, 3);
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [7, 6, 5]);
        let trimmed = &page.records[0];
        assert_eq!(trimmed.event, "audit.trimmed");
        assert_eq!(trimmed.actor_name, "broker");
        assert_eq!(trimmed.payload["dropped"], "2");
        assert_eq!(trimmed.payload["throughId"], "4");
        let by_event = |event: &str| AuditFilter {
            event: Some(event.into()),
            ..all.clone()
        };
        assert_eq!(
            store.audit_page("A", &by_event("state.set")).unwrap().total,
            1
        );
        assert_eq!(
            store
                .audit_page("A", &by_event("audit.trimmed"))
                .unwrap()
                .total,
            2
        );
        // The oldest kept record cut and the head moved past it (as a trim would): still at the
        // cap's floor, but the newest `audit.trimmed` record says the drop ended at 4.
        store
            .write(|tx| {
                let mut t = tx.open_table(AUDIT)?;
                let fifth: AuditRecord = decode_opt(t.get(("A", 5))?)?.unwrap();
                t.remove(("A", 5))?;
                let mut heads = tx.open_table(AUDIT_HEADS)?;
                let mut head: AuditHead = decode_opt(heads.get("A")?)?.unwrap();
                head.first = 6;
                head.anchor = fifth.hash;
                heads.insert("A", crate::store::encode(&head).as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        let v = store.verify_audit_within("A", 3).unwrap();
        assert_eq!(v.broken, Some((5, AuditBreak::Missing, None)));
        store.close();
    }

    /// The two cuts that need no rehashing: the oldest records deleted with the head's anchor
    /// moved past them, and the head row deleted (so a cut end would not show).
    #[tokio::test]
    async fn a_cut_front_or_a_missing_head_is_named() {
        let (_dir, store) = test_store();
        log(&store, "A", 5).await;
        log(&store, "B", 3).await;
        store
            .write(|tx| {
                let mut t = tx.open_table(AUDIT)?;
                let third: AuditRecord = decode_opt(t.get(("A", 3))?)?.unwrap();
                for seq in 1..=2 {
                    t.remove(("A", seq))?;
                }
                let mut heads = tx.open_table(AUDIT_HEADS)?;
                let mut head: AuditHead = decode_opt(heads.get("A")?)?.unwrap();
                head.first = 3;
                head.anchor = third.prev_hash;
                heads.insert("A", encode(&head).as_slice())?;
                heads.remove("B")?;
                Ok(())
            })
            .await
            .unwrap();
        let v = store.verify_audit("A").unwrap();
        assert_eq!(v.broken, Some((2, AuditBreak::Missing, None)), "{v:?}");
        let v = store.verify_audit("B").unwrap();
        assert_eq!(v.broken, Some((4, AuditBreak::Missing, None)), "{v:?}");
        store.close();
    }

    #[tokio::test]
    async fn a_chain_verifies_and_names_its_first_broken_record() {
        let (_dir, store) = test_store();
        log(&store, "A", 5).await;
        log(&store, "B", 2).await;
        let ok = store.verify_audit("A").unwrap();
        assert!(ok.valid(), "{ok:?}");
        assert_eq!(ok.entries, 5);
        assert!(store.verify_audit("empty").unwrap().valid());

        // Newest first, filtered, with totals.
        let page = store
            .audit_page(
                "A",
                &AuditFilter {
                    limit: 2,
                    offset: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(page.total, 5);
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [4, 3]);
        let since = store
            .audit_page(
                "A",
                &AuditFilter {
                    limit: 10,
                    since_ms: Some(1_003),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((since.total, since.records.len()), (2, 2));

        rewrite(&store, "A", 3, |r| {
            r.payload.insert("key".into(), "forged".into());
        })
        .await;
        let v = store.verify_audit("A").unwrap();
        assert_eq!(
            v.broken,
            Some((3, AuditBreak::Hash, Some("state.set".into())))
        );
        assert_eq!(v.entries, 2);

        // A record whose hash is recomputed still breaks the next one's link.
        rewrite(&store, "A", 3, |r| r.hash = record_hash("A", r).unwrap()).await;
        let v = store.verify_audit("A").unwrap();
        assert_eq!(v.broken.map(|b| (b.0, b.1)), Some((4, AuditBreak::Link)));

        // A deleted record is named by its seq; so is one cut from the end.
        let cut = |seq: u64| {
            store.write(move |tx| {
                tx.open_table(AUDIT)?.remove(("B", seq))?;
                Ok(())
            })
        };
        cut(2).await.unwrap();
        assert_eq!(
            store.verify_audit("B").unwrap().broken,
            Some((2, AuditBreak::Missing, None))
        );
        cut(1).await.unwrap();
        assert_eq!(
            store.verify_audit("B").unwrap().broken.map(|b| b.0),
            Some(1)
        );
        store.close();
    }

    /// A record chained on past the head (appended without moving the head, as a forger who
    /// cannot rewrite the head row would) is named, as is a record stored under another
    /// seq than its own.
    #[tokio::test]
    async fn a_record_past_the_head_or_under_another_seq_is_named() {
        let (_dir, store) = test_store();
        log(&store, "A", 3).await;
        log(&store, "B", 3).await;
        store
            .write(|tx| {
                let mut t = tx.open_table(AUDIT)?;
                let last: AuditRecord = decode_opt(t.get(("A", 3))?)?.unwrap();
                let mut extra = last.clone();
                extra.seq = 4;
                extra.prev_hash = last.hash;
                extra.hash = record_hash("A", &extra).unwrap();
                t.insert(("A", 4), encode(&extra).as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        let v = store.verify_audit("A").unwrap();
        assert_eq!(v.broken, Some((4, AuditBreak::Link, None)));
        assert_eq!(v.entries, 3);
        // The newest record rewritten and rehashed: no later link breaks, the head's hash does.
        rewrite(&store, "B", 3, |r| {
            r.payload.insert("key".into(), "forged".into());
            r.hash = record_hash("B", r).unwrap();
        })
        .await;
        let v = store.verify_audit("B").unwrap();
        assert_eq!(v.broken, Some((3, AuditBreak::Hash, None)));
        rewrite(&store, "B", 2, |r| r.seq = 7).await;
        let v = store.verify_audit("B").unwrap();
        assert_eq!(v.broken, Some((2, AuditBreak::Unreadable, None)));
        store.close();
    }
}
