//! Remote approval of tool use (issue 18): each member's approver list, and the permission
//! prompts waiting for an answer. A prompt is stored as sealed copies (one per approver) with
//! its ids, requester and times; the broker never holds what the tool is or does. Requests and
//! decisions are audited in the same write transaction.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::{Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, member_id) → Vec<String>`: who may answer that member's prompts.
pub(crate) const APPROVERS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("approvers");
/// `(mesh_id, approval id) → ApprovalRow`
pub(crate) const APPROVALS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("approvals");

/// Requests one member may have waiting at once.
pub const MAX_PENDING_APPROVALS: usize = 64;
/// How long a decided or expired request is kept (for a late answer's clear refusal).
const KEEP_AFTER_MS: i64 = 60 * 60 * 1000;

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(APPROVERS)?;
    tx.open_table(APPROVALS)?;
    Ok(())
}

/// One approver's sealed copy of a prompt, and the list entry that made it an approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCopy {
    pub member_id: String,
    pub via: String,
    pub nonce: String,
    pub ciphertext: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub by_member_id: String,
    pub by_name: String,
    /// `allow` or `deny`.
    pub behavior: String,
    pub at_ms: i64,
}

/// A stored permission prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRow {
    pub request_id: String,
    pub requester_member_id: String,
    pub requester_name: String,
    /// The key that sealed the copies, and the session the decision goes back to (hex).
    pub requester_key: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub copies: Vec<ApprovalCopy>,
    pub decided: Option<ApprovalDecided>,
}

impl ApprovalRow {
    pub fn copy_for(&self, member_id: &str) -> Option<&ApprovalCopy> {
        self.copies.iter().find(|c| c.member_id == member_id)
    }

    pub fn is_pending(&self, now_ms: i64) -> bool {
        self.decided.is_none() && now_ms < self.expires_at_ms
    }

    /// `pending`, `allow`, `deny` or `expired`.
    pub fn status(&self, now_ms: i64) -> &str {
        match &self.decided {
            Some(d) => &d.behavior,
            None if now_ms < self.expires_at_ms => "pending",
            None => "expired",
        }
    }

    fn prunable(&self, now_ms: i64) -> bool {
        let ended = self
            .decided
            .as_ref()
            .map_or(self.expires_at_ms, |d| d.at_ms);
        ended + KEEP_AFTER_MS < now_ms
    }
}

/// How `decide_approval` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideOutcome {
    Done(ApprovalRow),
    NotFound,
    /// The answerer holds no copy of the request.
    NotApprover,
    Expired,
    /// Someone answered first: their behavior and name.
    AlreadyDecided(ApprovalDecided),
}

impl Store {
    /// Replaces `member_id`'s approver list (empty: removed); audited as `approvers.changed`.
    pub async fn set_approvers(
        &self,
        mesh_id: String,
        actor: AuditActor,
        approvers: Vec<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(APPROVERS)?;
            let key = (mesh_id.as_str(), actor.member_id.as_str());
            if approvers.is_empty() {
                table.remove(key)?;
            } else {
                table.insert(key, encode(&approvers).as_slice())?;
            }
            let note = AuditNote::new(AuditEvent::ApproversChanged, actor.clone())
                .with("approvers", approvers.join(","));
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(())
        })
        .await
    }

    pub fn approvers(&self, mesh_id: &str, member_id: &str) -> Result<Vec<String>, StoreError> {
        let rt = self.read()?;
        Ok(decode_opt(rt.open_table(APPROVERS)?.get((mesh_id, member_id))?)?.unwrap_or_default())
    }

    /// Stores a new request (audited as `approval.requested`, without its content); `false`
    /// when its member already has [`MAX_PENDING_APPROVALS`] waiting. Requests that ended
    /// more than an hour ago are dropped on the way.
    pub async fn add_approval(
        &self,
        mesh_id: String,
        id: String,
        row: ApprovalRow,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(APPROVALS)?;
            let now = row.created_at_ms;
            let mut stale = Vec::new();
            let mut pending = 0;
            for entry in table.range((mesh_id.as_str(), "")..)? {
                let (k, v) = entry?;
                let (mesh, old_id) = k.value();
                if mesh != mesh_id {
                    break;
                }
                let old: ApprovalRow = decode(v.value())?;
                if old.prunable(now) {
                    stale.push(old_id.to_string());
                } else if old.is_pending(now) && old.requester_member_id == row.requester_member_id
                {
                    pending += 1;
                }
            }
            for old_id in stale {
                table.remove((mesh_id.as_str(), old_id.as_str()))?;
            }
            if pending >= MAX_PENDING_APPROVALS {
                return Ok(false);
            }
            table.insert((mesh_id.as_str(), id.as_str()), encode(&row).as_slice())?;
            let approvers: Vec<&str> = row.copies.iter().map(|c| c.member_id.as_str()).collect();
            let note = AuditNote::new(
                AuditEvent::ApprovalRequested,
                AuditActor::member(&row.requester_member_id, &row.requester_name),
            )
            .with("id", &id)
            .with("requestId", &row.request_id)
            .with("approvers", approvers.join(","))
            .with("expiresAt", row.expires_at_ms);
            audit::append(tx, &mesh_id, &note, now)?;
            Ok(true)
        })
        .await
    }

    pub fn approval(&self, mesh_id: &str, id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(APPROVALS)?.get((mesh_id, id))?)
    }

    /// The pending, unexpired requests `member_id` holds a copy of, oldest first.
    pub fn approvals_for(
        &self,
        mesh_id: &str,
        member_id: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, ApprovalRow)>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(APPROVALS)?;
        let mut out = Vec::new();
        for entry in table.range((mesh_id, "")..)? {
            let (k, v) = entry?;
            let (mesh, id) = k.value();
            if mesh != mesh_id {
                break;
            }
            let row: ApprovalRow = decode(v.value())?;
            if row.is_pending(now_ms) && row.copy_for(member_id).is_some() {
                out.push((id.to_string(), row));
            }
        }
        out.sort_by_key(|(_, r)| r.created_at_ms);
        Ok(out)
    }

    /// Records the first answer to a pending request (audited as `approval.decided` with who
    /// and the behavior); a later one, an expired request, or an answerer without a copy is
    /// refused with what the row says.
    pub async fn decide_approval(
        &self,
        mesh_id: String,
        id: String,
        by: AuditActor,
        behavior: String,
        now_ms: i64,
    ) -> Result<DecideOutcome, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(APPROVALS)?;
            let key = (mesh_id.as_str(), id.as_str());
            let Some(mut row) = decode_opt::<ApprovalRow>(table.get(key)?)? else {
                return Ok(DecideOutcome::NotFound);
            };
            if row.copy_for(&by.member_id).is_none() {
                return Ok(DecideOutcome::NotApprover);
            }
            if let Some(d) = row.decided {
                return Ok(DecideOutcome::AlreadyDecided(d));
            }
            if !row.is_pending(now_ms) {
                return Ok(DecideOutcome::Expired);
            }
            row.decided = Some(ApprovalDecided {
                by_member_id: by.member_id.clone(),
                by_name: by.name.clone(),
                behavior: behavior.clone(),
                at_ms: now_ms,
            });
            table.insert(key, encode(&row).as_slice())?;
            let note = AuditNote::new(AuditEvent::ApprovalDecided, by)
                .with("id", &id)
                .with("requestId", &row.request_id)
                .with("requesterMemberId", &row.requester_member_id)
                .with("behavior", &behavior);
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(DecideOutcome::Done(row))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn row(requester: &str, now_ms: i64) -> ApprovalRow {
        ApprovalRow {
            request_id: "abcde".into(),
            requester_member_id: requester.into(),
            requester_name: requester.into(),
            requester_key: "00".repeat(32),
            created_at_ms: now_ms,
            expires_at_ms: now_ms + 600_000,
            copies: vec![ApprovalCopy {
                member_id: "bob".into(),
                via: "bob".into(),
                nonce: String::new(),
                ciphertext: String::new(),
            }],
            decided: None,
        }
    }

    fn by(name: &str) -> AuditActor {
        AuditActor::member(name, name)
    }

    #[tokio::test]
    async fn the_first_answer_wins_and_an_expired_request_takes_none() {
        let (_dir, store) = test_store();
        let add = |id: &str, r: ApprovalRow| store.add_approval("m".into(), id.into(), r);
        assert!(add("a1", row("alice", 1_000)).await.unwrap());
        let decide = |id: &str, who: &str, behavior: &str, at: i64| {
            store.decide_approval("m".into(), id.into(), by(who), behavior.into(), at)
        };
        assert_eq!(
            decide("a1", "carol", "allow", 2_000).await.unwrap(),
            DecideOutcome::NotApprover
        );
        assert!(matches!(
            decide("a1", "bob", "allow", 2_000).await.unwrap(),
            DecideOutcome::Done(_)
        ));
        match decide("a1", "bob", "deny", 3_000).await.unwrap() {
            DecideOutcome::AlreadyDecided(d) => assert_eq!(d.behavior, "allow"),
            other => panic!("a second answer was taken: {other:?}"),
        }
        assert!(add("a2", row("alice", 1_000)).await.unwrap());
        assert_eq!(store.approvals_for("m", "bob", 2_000).unwrap().len(), 1);
        assert!(store.approvals_for("m", "bob", 601_000).unwrap().is_empty());
        assert_eq!(
            decide("a2", "bob", "allow", 601_000).await.unwrap(),
            DecideOutcome::Expired
        );
        assert_eq!(
            decide("zz", "bob", "allow", 2_000).await.unwrap(),
            DecideOutcome::NotFound
        );
    }

    #[tokio::test]
    async fn one_member_has_a_bounded_number_of_requests_waiting() {
        let (_dir, store) = test_store();
        for i in 0..MAX_PENDING_APPROVALS {
            let id = format!("r{i}");
            assert!(
                store
                    .add_approval("m".into(), id, row("alice", 1_000))
                    .await
                    .unwrap()
            );
        }
        let over = store.add_approval("m".into(), "over".into(), row("alice", 1_000));
        assert!(!over.await.unwrap());
        // Another member is not held back; ended requests make room (and are pruned later).
        assert!(
            store
                .add_approval("m".into(), "b".into(), row("bob2", 1_000))
                .await
                .unwrap()
        );
        let later = 1_000 + 600_000 + KEEP_AFTER_MS + 1;
        assert!(
            store
                .add_approval("m".into(), "late".into(), row("alice", later))
                .await
                .unwrap()
        );
        assert!(
            store.approval("m", "r0").unwrap().is_none(),
            "pruned an hour after expiry"
        );
    }
}
