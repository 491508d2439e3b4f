//! Scheduled messages (reminders): one-shot or cron, kept across restarts. A second table orders
//! them by the time they are next due, so the scheduler reads only what is due.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::rows::mesh_rows;
use super::{Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, scheduled_id) → ScheduleRecord`
pub(crate) const SCHEDULES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("schedules");
/// `(due_at_ms, mesh_id, scheduled_id) → ()`: what fires next, first.
pub(crate) const SCHEDULE_DUE: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("schedule_due");

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(SCHEDULES)?;
    tx.open_table(SCHEDULE_DUE)?;
    Ok(())
}

/// One scheduled message. It is sent as its member, from the key that scheduled it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub id: String,
    pub mesh_id: String,
    pub member_id: String,
    /// The key the scheduling connection spoke with (session or member), hex.
    pub sender_pubkey: String,
    /// Target spec: a pubkey, `@group`, `*`.
    pub to: String,
    /// The text in clear (old records and clients that do not encrypt), or, with `nonce`, the
    /// ciphertext in standard base64, sealed by the client like a message body.
    pub message: String,
    /// Standard base64 of the 24-byte nonce of an encrypted reminder.
    #[serde(default)]
    pub nonce: Option<String>,
    /// `2` for a group/broadcast reminder under the mesh root key; `None` for crypto_box.
    #[serde(default)]
    pub body_version: Option<u32>,
    /// The root-key epoch of a sealed group or broadcast reminder.
    #[serde(default)]
    pub key_epoch: u64,
    pub subtype: String,
    /// When it fires next.
    pub deliver_at_ms: i64,
    #[serde(default)]
    pub cron: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub fired_count: u64,
    /// A reminder in the mesh's simulated time (PROTOCOL.md §21): the simulated time it fires
    /// at; `deliver_at_ms` is then the real time that clock reaches it, moved whenever the
    /// clock changes.
    #[serde(default)]
    pub sim_at_ms: Option<i64>,
}

pub(crate) fn due_key(at_ms: i64) -> u64 {
    at_ms.max(0) as u64
}

impl Store {
    /// Stores a scheduled message unless its member already has `max_per_member`; returns
    /// `Ok(false)` then.
    pub async fn add_schedule(
        &self,
        record: ScheduleRecord,
        max_per_member: usize,
        by: AuditActor,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(SCHEDULES)?;
            let existing: Vec<ScheduleRecord> = mesh_rows(&table, &record.mesh_id)?;
            if existing
                .iter()
                .filter(|s| s.member_id == record.member_id)
                .count()
                >= max_per_member
            {
                return Ok(false);
            }
            table.insert(
                (record.mesh_id.as_str(), record.id.as_str()),
                encode(&record).as_slice(),
            )?;
            tx.open_table(SCHEDULE_DUE)?.insert(
                (
                    due_key(record.deliver_at_ms),
                    record.mesh_id.as_str(),
                    record.id.as_str(),
                ),
                (),
            )?;
            // Where and when, never the message.
            let note = AuditNote::new(AuditEvent::ReminderScheduled, by)
                .with("scheduledId", &record.id)
                .with("to", &record.to)
                .with(
                    "deliverAt",
                    crate::protocol::time::iso(record.deliver_at_ms),
                )
                .with_opt("cron", record.cron.as_ref());
            audit::append(tx, &record.mesh_id, &note, record.created_at_ms)?;
            Ok(true)
        })
        .await
    }

    /// A member's scheduled messages, soonest first.
    pub fn schedules_of(
        &self,
        mesh_id: &str,
        member_id: &str,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rt = self.read()?;
        let mut out: Vec<ScheduleRecord> = mesh_rows(&rt.open_table(SCHEDULES)?, mesh_id)?;
        out.retain(|s| s.member_id == member_id);
        out.sort_by_key(|s| s.deliver_at_ms);
        Ok(out)
    }

    /// Cancels one of `member_id`'s scheduled messages; false when it has none by that id.
    pub async fn cancel_schedule(
        &self,
        mesh_id: String,
        id: String,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(SCHEDULES)?;
            let found: Option<ScheduleRecord> =
                decode_opt(table.get((mesh_id.as_str(), id.as_str()))?)?;
            let Some(record) = found.filter(|s| s.member_id == by.member_id) else {
                return Ok(false);
            };
            table.remove((mesh_id.as_str(), id.as_str()))?;
            tx.open_table(SCHEDULE_DUE)?.remove((
                due_key(record.deliver_at_ms),
                mesh_id.as_str(),
                id.as_str(),
            ))?;
            drop(table);
            let note = AuditNote::new(AuditEvent::ReminderCancelled, by).with("scheduledId", &id);
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(true)
        })
        .await
    }

    /// When the next scheduled message is due, if any.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let rt = self.read()?;
        let due = rt.open_table(SCHEDULE_DUE)?;
        let first = due.first()?;
        Ok(first.map(|(k, _)| k.value().0 as i64))
    }

    /// Scheduled messages due at `now_ms` or before, oldest first, at most `limit`.
    pub fn due_schedules(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rt = self.read()?;
        let due = rt.open_table(SCHEDULE_DUE)?;
        let table = rt.open_table(SCHEDULES)?;
        let mut out = Vec::new();
        for row in due.range((0u64, "", "")..=(due_key(now_ms), "\u{10FFFF}", ""))? {
            let (k, _) = row?;
            let (at, mesh_id, id) = k.value();
            if let Some(g) = table.get((mesh_id, id))? {
                let record: ScheduleRecord = decode(g.value())?;
                // A row for another time than the message's own is a leftover (only a damaged
                // store has one): firing on it would fire the message early, and a cron one
                // again and again.
                if due_key(record.deliver_at_ms) == at {
                    out.push(record);
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// After a scheduled message fired at its due time `fired_due_ms`: moves it to `next_ms`
    /// (cron) or removes it (one-shot, `None`). Does nothing if it was cancelled or changed
    /// meanwhile.
    pub async fn advance_schedule(
        &self,
        mesh_id: String,
        id: String,
        fired_due_ms: i64,
        next_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(SCHEDULES)?;
            let key = (mesh_id.as_str(), id.as_str());
            let found: Option<ScheduleRecord> = decode_opt(table.get(key)?)?;
            // A reminder in simulated time fires once, whenever a clock change moved it to.
            let Some(mut record) = found.filter(|s| {
                s.deliver_at_ms == fired_due_ms || (s.sim_at_ms.is_some() && next_ms.is_none())
            }) else {
                return Ok(());
            };
            let mut due = tx.open_table(SCHEDULE_DUE)?;
            due.remove((due_key(record.deliver_at_ms), mesh_id.as_str(), id.as_str()))?;
            match next_ms {
                Some(next) => {
                    record.deliver_at_ms = next;
                    record.fired_count += 1;
                    table.insert(key, encode(&record).as_slice())?;
                    due.insert((due_key(next), mesh_id.as_str(), id.as_str()), ())?;
                }
                None => {
                    table.remove(key)?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn reminder(id: &str, member: &str, at: i64) -> ScheduleRecord {
        ScheduleRecord {
            id: id.into(),
            mesh_id: "M".into(),
            member_id: member.into(),
            sender_pubkey: "00".repeat(32),
            to: "*".into(),
            message: "stand up".into(),
            nonce: None,
            body_version: None,
            key_epoch: 0,
            subtype: "reminder".into(),
            deliver_at_ms: at,
            cron: None,
            created_at_ms: 0,
            fired_count: 0,
            sim_at_ms: None,
        }
    }

    #[tokio::test]
    async fn due_order_cancel_and_advance() {
        let (_dir, store) = test_store();
        assert!(
            store
                .add_schedule(reminder("b", "m1", 200), 10, AuditActor::member("m1", "m1"))
                .await
                .unwrap()
        );
        assert!(
            store
                .add_schedule(reminder("a", "m1", 100), 10, AuditActor::member("m1", "m1"))
                .await
                .unwrap()
        );
        assert!(
            store
                .add_schedule(reminder("c", "m2", 300), 10, AuditActor::member("m2", "m2"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .add_schedule(reminder("d", "m2", 300), 1, AuditActor::member("m2", "m2"))
                .await
                .unwrap()
        );
        assert_eq!(store.next_due_ms().unwrap(), Some(100));
        let due: Vec<String> = store
            .due_schedules(250, 10)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(due, ["a", "b"]);
        // Only its own member may cancel it.
        assert!(
            !store
                .cancel_schedule("M".into(), "c".into(), AuditActor::member("m1", "m1"), 1)
                .await
                .unwrap()
        );
        assert!(
            store
                .cancel_schedule("M".into(), "b".into(), AuditActor::member("m1", "m1"), 1)
                .await
                .unwrap()
        );
        store
            .advance_schedule("M".into(), "a".into(), 100, Some(1000))
            .await
            .unwrap();
        assert_eq!(store.next_due_ms().unwrap(), Some(300));
        let mine = store.schedules_of("M", "m1").unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].deliver_at_ms, mine[0].fired_count), (1000, 1));
        store
            .advance_schedule("M".into(), "c".into(), 300, None)
            .await
            .unwrap();
        assert!(store.schedules_of("M", "m2").unwrap().is_empty());
        store.close();
    }
}
