//! Each mesh's simulation clock: how fast simulated time runs, whether it is paused, and where
//! it stands. Simulated time is a function of real time from the last change (the anchor), so
//! nothing is written while it runs; a change also moves the reminders scheduled in simulated
//! time to their new real due times, in the same transaction.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::schedules::{SCHEDULE_DUE, SCHEDULES, ScheduleRecord, due_key};
use super::{Store, StoreError, decode, decode_opt, encode};

/// `mesh_id → ClockRecord`
const CLOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("clocks");

/// Simulated time between two heartbeat ticks: one simulated minute.
pub const TICK_SIM_MS: i64 = 60_000;

/// The real due time of a reminder in simulated time while its clock is paused: never (the
/// scheduler still looks once a minute; a resume sets the real time again).
pub const PAUSED_DUE_MS: i64 = i64::MAX;

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(CLOCKS)?;
    Ok(())
}

/// A mesh's clock. Simulated time is `anchor_sim_ms` at real time `anchor_real_ms`, and runs
/// at `speed` from there unless paused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockRecord {
    pub speed: f64,
    pub paused: bool,
    pub anchor_real_ms: i64,
    pub anchor_sim_ms: i64,
    /// Real time (and simulated time: they start equal) when the clock was first set: tick 0.
    pub started_at_ms: i64,
}

impl ClockRecord {
    /// A clock set for the first time at real time `now_ms`: simulated time starts at real time.
    pub fn start(speed: f64, now_ms: i64) -> ClockRecord {
        ClockRecord {
            speed,
            paused: false,
            anchor_real_ms: now_ms,
            anchor_sim_ms: now_ms,
            started_at_ms: now_ms,
        }
    }

    /// Simulated time at real time `real_ms` (never before the anchor).
    pub fn sim_at(&self, real_ms: i64) -> i64 {
        if self.paused {
            return self.anchor_sim_ms;
        }
        let elapsed = (real_ms - self.anchor_real_ms).max(0) as f64;
        self.anchor_sim_ms
            .saturating_add((elapsed * self.speed).min(i64::MAX as f64 / 4.0) as i64)
    }

    /// The real time at which simulated time reaches `sim_ms`: [`PAUSED_DUE_MS`] while paused,
    /// the anchor for a simulated time already passed.
    pub fn real_at(&self, sim_ms: i64) -> i64 {
        if self.paused {
            return PAUSED_DUE_MS;
        }
        let ahead = (sim_ms - self.anchor_sim_ms).max(0) as f64;
        self.anchor_real_ms
            .saturating_add((ahead / self.speed).ceil().min(i64::MAX as f64 / 4.0) as i64)
    }

    /// The heartbeat tick at real time `real_ms`: simulated minutes since the start.
    pub fn tick_at(&self, real_ms: i64) -> u64 {
        ((self.sim_at(real_ms) - self.started_at_ms).max(0) / TICK_SIM_MS) as u64
    }

    /// The real time of the tick after `tick`, or `None` while paused.
    pub fn next_tick_real_ms(&self, tick: u64) -> Option<i64> {
        if self.paused {
            return None;
        }
        let sim = self
            .started_at_ms
            .saturating_add((tick as i64 + 1).saturating_mul(TICK_SIM_MS));
        Some(self.real_at(sim))
    }

    /// The same clock from real time `now_ms` on, with another speed or pause state: the
    /// simulated time it shows now stays where it is.
    pub fn changed(&self, now_ms: i64, speed: f64, paused: bool) -> ClockRecord {
        ClockRecord {
            speed,
            paused,
            anchor_real_ms: now_ms,
            anchor_sim_ms: self.sim_at(now_ms),
            started_at_ms: self.started_at_ms,
        }
    }
}

impl Store {
    /// A mesh's clock, `None` before anyone set it.
    pub fn clock(&self, mesh_id: &str) -> Result<Option<ClockRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(CLOCKS)?.get(mesh_id)?)
    }

    /// Every mesh's clock (for the ticker at start).
    pub fn clocks(&self) -> Result<Vec<(String, ClockRecord)>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(CLOCKS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), decode(v.value())?));
        }
        Ok(out)
    }

    /// Stores a mesh's clock and moves the reminders scheduled in its simulated time to their
    /// real due times under it; audited (`clock.changed`).
    pub async fn set_clock(
        &self,
        mesh_id: String,
        clock: ClockRecord,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.open_table(CLOCKS)?
                .insert(mesh_id.as_str(), encode(&clock).as_slice())?;
            let mut table = tx.open_table(SCHEDULES)?;
            let mut due = tx.open_table(SCHEDULE_DUE)?;
            let simulated: Vec<ScheduleRecord> =
                super::rows::mesh_rows::<ScheduleRecord>(&table, &mesh_id)?
                    .into_iter()
                    .filter(|s| s.sim_at_ms.is_some())
                    .collect();
            for mut s in simulated {
                let Some(sim) = s.sim_at_ms else { continue };
                let real = clock.real_at(sim);
                if real == s.deliver_at_ms {
                    continue;
                }
                due.remove((due_key(s.deliver_at_ms), mesh_id.as_str(), s.id.as_str()))?;
                due.insert((due_key(real), mesh_id.as_str(), s.id.as_str()), ())?;
                s.deliver_at_ms = real;
                table.insert((mesh_id.as_str(), s.id.as_str()), encode(&s).as_slice())?;
            }
            drop((table, due));
            let note = AuditNote::new(AuditEvent::ClockChanged, by)
                .with("speed", clock.speed.to_string())
                .with("paused", clock.paused.to_string());
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_633_600_000;

    #[test]
    fn simulated_time_runs_at_its_speed_and_stands_still_when_paused() {
        let c = ClockRecord::start(10.0, T0);
        assert_eq!(c.sim_at(T0), T0);
        assert_eq!(c.sim_at(T0 + 6_000), T0 + 60_000);
        assert_eq!(c.tick_at(T0 + 5_999), 0);
        assert_eq!(c.tick_at(T0 + 6_000), 1);
        assert_eq!(c.next_tick_real_ms(0), Some(T0 + 6_000));
        assert_eq!(c.next_tick_real_ms(1), Some(T0 + 12_000));
        assert_eq!(c.real_at(T0 + 60_000), T0 + 6_000);
        // Paused 6 s in: simulated time stops at one minute, nothing is ever due.
        let p = c.changed(T0 + 6_000, 10.0, true);
        assert_eq!(p.sim_at(T0 + 600_000), T0 + 60_000);
        assert_eq!(p.real_at(T0 + 120_000), PAUSED_DUE_MS);
        assert_eq!(p.next_tick_real_ms(1), None);
        // Resumed at 100x an hour later: it goes on from one minute, a minute per 0.6 s.
        let r = p.changed(T0 + 3_600_000, 100.0, false);
        assert_eq!(r.sim_at(T0 + 3_600_000), T0 + 60_000);
        assert_eq!(r.sim_at(T0 + 3_600_600), T0 + 120_000);
        assert_eq!(r.tick_at(T0 + 3_600_600), 2);
        assert_eq!(r.real_at(T0 + 120_000), T0 + 3_600_600);
        // A simulated time already passed is due now.
        assert_eq!(r.real_at(T0), T0 + 3_600_000);
    }
}
