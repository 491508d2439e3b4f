//! Simulation clocks (PROTOCOL.md §23): each mesh whose clock is set and running gets a
//! heartbeat tick, an ephemeral push, every simulated minute. Reminders in simulated time are
//! ordinary scheduled messages whose real due time the store moves when the clock changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use super::router;
use super::state::Broker;
use crate::protocol::messages::ClockStatus;
use crate::protocol::{Envelope, ServerMessage, time};
use crate::store::ClockRecord;

/// The longest the ticker sleeps without looking.
const MAX_SLEEP_MS: i64 = 60_000;

/// The clocks that are set, with the last tick sent for each.
#[derive(Default)]
pub struct Clocks {
    running: Mutex<HashMap<String, (ClockRecord, u64)>>,
    wake: Notify,
    /// Held while a clock is read, changed and stored, so two changes cannot interleave.
    pub changing: tokio::sync::Mutex<()>,
}

impl Clocks {
    /// Takes a mesh's clock as stored now; the next tick is the one after the current.
    pub fn set(&self, mesh_id: &str, clock: ClockRecord, now_ms: i64) {
        let tick = clock.tick_at(now_ms);
        self.lock().insert(mesh_id.to_string(), (clock, tick));
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ClockRecord, u64)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ticks due at `now_ms` (one per mesh, the latest: a ticker that fell behind skips),
    /// and when the next one is due.
    fn due(&self, now_ms: i64) -> (Vec<(String, ClockRecord, u64)>, i64) {
        let mut due = Vec::new();
        let mut next = now_ms + MAX_SLEEP_MS;
        for (mesh, (clock, last)) in self.lock().iter_mut() {
            if clock.paused {
                continue;
            }
            let tick = clock.tick_at(now_ms);
            if tick > *last {
                *last = tick;
                due.push((mesh.clone(), clock.clone(), tick));
            }
            if let Some(at) = clock.next_tick_real_ms(*last) {
                next = next.min(at);
            }
        }
        (due, next)
    }
}

/// What `clock_status` says of a mesh's clock (`None`: never set, simulated time is real time).
pub fn status(clock: Option<&ClockRecord>, now_ms: i64) -> ClockStatus {
    match clock {
        Some(c) => ClockStatus {
            speed: c.speed,
            paused: c.paused,
            tick: c.tick_at(now_ms),
            sim_time: time::iso(c.sim_at(now_ms)),
            started_at: time::iso(c.started_at_ms),
            set: true,
        },
        None => ClockStatus {
            speed: 1.0,
            paused: false,
            tick: 0,
            sim_time: time::iso(now_ms),
            started_at: time::iso(now_ms),
            set: false,
        },
    }
}

/// The heartbeat: `push{subtype:"tick", event:"tick", eventData:{tick, simTime, speed}}`.
fn tick_frame(
    mesh_id: &str,
    clock: &ClockRecord,
    tick: u64,
    now_ms: i64,
) -> Envelope<ServerMessage> {
    router::broker_push(
        mesh_id,
        "tick",
        "tick",
        json!({
            "tick": tick,
            "simTime": time::iso(clock.sim_at(now_ms)),
            "speed": clock.speed,
        }),
        now_ms,
    )
}

/// Sends every mesh's ticks as they come due, until shutdown.
pub async fn run(broker: Arc<Broker>) {
    match broker.store.clocks() {
        Ok(list) => {
            let now = time::now_ms();
            for (mesh, clock) in list {
                broker.clocks.set(&mesh, clock, now);
            }
        }
        Err(e) => tracing::warn!("cannot read the simulation clocks: {e}"),
    }
    loop {
        let now = time::now_ms();
        let (due, next) = broker.clocks.due(now);
        for (mesh, clock, tick) in due {
            router::send_to_mesh(&broker, &mesh, &tick_frame(&mesh, &clock, tick, now), None);
        }
        let wait = (next - time::now_ms()).clamp(1, MAX_SLEEP_MS) as u64;
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = broker.clocks.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}
