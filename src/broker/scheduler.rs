//! Sends scheduled messages (reminders) when they are due. They are stored, so they survive a
//! restart: one-shots that came due while the broker was down fire at start, cron ones fire
//! once for what they missed and then resume their schedule.
//!
//! A due message is stored and queued like a `send` from its member (as the client sealed it,
//! or, for one in clear, bodyVersion 1 plaintext in base64; subtype `reminder`), so it reaches recipients that are offline when they next
//! connect, whether or not the member that scheduled it is still around. Its client message id
//! is derived from the schedule and the due time: if the broker dies between queueing it and
//! moving the schedule on, the firing after the restart is stored once, not twice.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::Notify;

use super::cron::Cron;
use super::on_behalf::{self, Outgoing};
use super::state::Broker;
use crate::protocol::{Pubkey, time};
use crate::store::{Member, ScheduleRecord, StoreError};

/// Due messages handled per pass.
const BATCH: usize = 256;
/// The longest the scheduler sleeps without looking (a clock jump is noticed within this).
const MAX_SLEEP_MS: i64 = 60_000;
/// Pause after a storage failure, so a failing message cannot make the loop spin.
const RETRY_MS: i64 = 1_000;

/// The scheduler's doorbell: ring it when a message is scheduled, so it need not wait for its
/// next look.
#[derive(Default)]
pub struct Scheduler {
    wake: Notify,
}

impl Scheduler {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

pub async fn run(broker: Arc<Broker>) {
    loop {
        let now = time::now_ms();
        let mut failed = false;
        match broker.store.due_schedules(now, BATCH) {
            Ok(due) => {
                // Something is due but nothing readable: never spin on it.
                failed |= due.is_empty();
                for s in due {
                    if let Err(e) = fire(&broker, &s, now).await {
                        tracing::warn!("scheduled message {} not sent yet: {e}", s.id);
                        failed = true;
                    }
                }
            }
            Err(e) => {
                tracing::warn!("cannot read scheduled messages: {e}");
                failed = true;
            }
        }
        let next = broker.store.next_due_ms().ok().flatten();
        let wait_ms = sleep_ms(next, time::now_ms(), failed);
        if wait_ms == 0 {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = broker.scheduler.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
        }
    }
}

/// How long to sleep before the next look: until the next due message (at most a minute), a
/// second when something overdue could not be sent, not at all when more is overdue (a pass
/// takes at most [`BATCH`]).
fn sleep_ms(next_due_ms: Option<i64>, now_ms: i64, failed: bool) -> i64 {
    match next_due_ms {
        Some(at) if at > now_ms => (at - now_ms).min(MAX_SLEEP_MS),
        Some(_) if failed => RETRY_MS,
        Some(_) => 0,
        None => MAX_SLEEP_MS,
    }
}

/// Sends one due message and moves its schedule on (cron) or removes it (one-shot). An error
/// (storage only) leaves it due, to be tried again.
async fn fire(broker: &Broker, s: &ScheduleRecord, now: i64) -> Result<(), StoreError> {
    // A group or broadcast reminder sealed under a root-key epoch the mesh has rotated away
    // from would put new traffic under a key a removed member holds (PROTOCOL.md §12.4): it is
    // not sent, and it is dropped, a cron one too (every later firing would carry the same
    // body under the same old key). Its member schedules it again under the current key.
    if let Some(current) = stale_group_epoch(broker, s)? {
        tracing::info!(
            mesh = %s.mesh_id,
            scheduled = %s.id,
            epoch = s.key_epoch,
            current,
            cron = s.cron.is_some(),
            "dropping scheduled message: it is sealed under a rotated-away root-key epoch"
        );
        return broker
            .store
            .advance_schedule(s.mesh_id.clone(), s.id.clone(), s.deliver_at_ms, None)
            .await;
    }
    let next = s
        .cron
        .as_deref()
        .and_then(|expr| Cron::parse(expr).ok())
        .and_then(|cron| cron.next_after(now.max(s.deliver_at_ms)));
    match broker.store.member(&s.mesh_id, &s.member_id)? {
        // A banned member, or one that lost `send`, sends nothing, scheduled or not:
        // `on_behalf::deliver` refuses it, and a repeating reminder tries again next time.
        Some(member) if member.revoked_at_ms.is_none() => deliver(broker, s, &member, now).await?,
        _ => {
            tracing::info!("dropping scheduled message {}: its member is gone", s.id);
            return broker
                .store
                .advance_schedule(s.mesh_id.clone(), s.id.clone(), s.deliver_at_ms, None)
                .await;
        }
    }
    broker
        .store
        .advance_schedule(s.mesh_id.clone(), s.id.clone(), s.deliver_at_ms, next)
        .await
}

/// The mesh's current key epoch when `s` is a sealed group or broadcast reminder (bodyVersion
/// 2, under the mesh root key) of another epoch; `None` when it may go out.
fn stale_group_epoch(broker: &Broker, s: &ScheduleRecord) -> Result<Option<u64>, StoreError> {
    let group_sealed = s.nonce.is_some() && s.body_version == Some(2) && !Pubkey::is_shape(&s.to);
    if !group_sealed {
        return Ok(None);
    }
    let current = broker.store.key_epoch(&s.mesh_id)?;
    Ok((s.key_epoch != current).then_some(current))
}

async fn deliver(
    broker: &Broker,
    s: &ScheduleRecord,
    member: &Member,
    now: i64,
) -> Result<(), StoreError> {
    let out = Outgoing {
        member,
        sender_pubkey: s.sender_pubkey.clone(),
        sender_name: member.display_name.clone(),
        to: &s.to,
        nonce: s.nonce.clone(),
        ciphertext: reminder_body(s),
        body_version: if s.nonce.is_some() {
            s.body_version
        } else {
            Some(1)
        },
        key_epoch: s.key_epoch,
        subtype: &s.subtype,
        // One firing, one id: a reminder in simulated time by its simulated time, which a
        // clock change (moving its real due time) leaves alone.
        client_message_id: match s.sim_at_ms {
            Some(sim) => format!("schedule-{}-sim{sim}", s.id),
            None => format!("schedule-{}-{}", s.id, s.deliver_at_ms),
        },
    };
    if let Err(why) = on_behalf::deliver(broker, out, now).await? {
        tracing::info!("scheduled message {} not sent: {why}", s.id);
    }
    Ok(())
}

/// A sealed reminder goes out as the client sealed it; one in clear (stored before reminders
/// were sealed, or from a client that does not seal) as bodyVersion 1 plaintext in base64.
fn reminder_body(s: &ScheduleRecord) -> String {
    match s.nonce {
        Some(_) => s.message.clone(),
        None => STANDARD.encode(s.message.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_sleeps_until_the_next_due_message_at_most_a_minute() {
        let now = 1_764_633_600_000;
        assert_eq!(sleep_ms(Some(now + 1), now, false), 1);
        assert_eq!(sleep_ms(Some(now + 1_500), now, true), 1_500);
        assert_eq!(sleep_ms(Some(now + 60_000), now, false), 60_000);
        assert_eq!(sleep_ms(Some(now + 600_000), now, false), 60_000);
        assert_eq!(sleep_ms(None, now, false), 60_000);
        // Overdue: go on at once, unless it just failed (then a second, never a spin).
        assert_eq!(sleep_ms(Some(now), now, false), 0);
        assert_eq!(sleep_ms(Some(now - 5_000), now, false), 0);
        assert_eq!(sleep_ms(Some(now), now, true), 1_000);
    }
}
