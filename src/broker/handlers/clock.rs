//! `set_clock`, `pause_clock`, `resume_clock`, `get_clock` (PROTOCOL.md §23). Changing the
//! clock needs the `state` capability (checked by `perms::needed`); reading it, membership.

use super::reply::{Refusal, answer, refuse};
use crate::broker::clock::status;
use crate::broker::connection::Conn;
use crate::protocol::messages::{MAX_CLOCK_SPEED, MIN_CLOCK_SPEED};
use crate::protocol::{ServerMessage, time};
use crate::store::{AuditActor, ClockRecord};

/// A change to a mesh's clock: a new speed, a pause or a resume.
#[derive(Clone, Copy)]
enum Change {
    Speed(f64),
    Pause,
    Resume,
}

pub fn set_clock(conn: &Conn, req_id: Option<String>, speed: f64) {
    change(conn, req_id, Change::Speed(speed));
}

pub fn pause_clock(conn: &Conn, req_id: Option<String>) {
    change(conn, req_id, Change::Pause);
}

pub fn resume_clock(conn: &Conn, req_id: Option<String>) {
    change(conn, req_id, Change::Resume);
}

pub fn get_clock(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let clock = broker.store.clock(&peer.mesh_id)?;
        Ok(Some(ServerMessage::ClockStatus(status(
            clock.as_ref(),
            time::now_ms(),
        ))))
    });
}

/// The clock after `change` at real time `now`, or `None` when it changes nothing.
fn apply(
    old: Option<&ClockRecord>,
    change: Change,
    now: i64,
) -> Result<Option<ClockRecord>, Refusal> {
    let not_set = || {
        refuse(
            "invalid_argument",
            "this mesh's clock is not set: start it with set_clock (claudemesh clock set SPEED)",
        )
    };
    Ok(match (old, change) {
        (_, Change::Speed(s)) if !(MIN_CLOCK_SPEED..=MAX_CLOCK_SPEED).contains(&s) => {
            return Err(refuse(
                "invalid_argument",
                format!(
                    "speed must be from {MIN_CLOCK_SPEED} to {MAX_CLOCK_SPEED} times real time, got {s}"
                ),
            ));
        }
        (None, Change::Speed(s)) => Some(ClockRecord::start(s, now)),
        (Some(c), Change::Speed(s)) => (c.speed != s).then(|| c.changed(now, s, c.paused)),
        (None, _) => return Err(not_set()),
        (Some(c), Change::Pause) => (!c.paused).then(|| c.changed(now, c.speed, true)),
        (Some(c), Change::Resume) => c.paused.then(|| c.changed(now, c.speed, false)),
    })
}

fn change(conn: &Conn, req_id: Option<String>, change: Change) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let _one_at_a_time = broker.clocks.changing.lock().await;
        let old = broker.store.clock(&peer.mesh_id)?;
        let now = time::now_ms();
        let clock = match apply(old.as_ref(), change, now)? {
            Some(new) => {
                let by = AuditActor::member(&peer.member_id, &peer.display_name);
                broker
                    .store
                    .set_clock(peer.mesh_id.clone(), new.clone(), by, now)
                    .await?;
                broker.clocks.set(&peer.mesh_id, new.clone(), now);
                // Reminders in simulated time may be due sooner now.
                broker.scheduler.wake();
                new
            }
            None => old.unwrap_or_else(|| ClockRecord::start(1.0, now)),
        };
        Ok(Some(ServerMessage::ClockStatus(status(Some(&clock), now))))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_change_is_stored() {
        let now = 1_764_633_600_000;
        assert!(apply(None, Change::Pause, now).is_err());
        assert!(apply(None, Change::Resume, now).is_err());
        assert!(apply(None, Change::Speed(0.5), now).is_err());
        assert!(apply(None, Change::Speed(101.0), now).is_err());
        assert!(apply(None, Change::Speed(f64::NAN), now).is_err());
        let c = apply(None, Change::Speed(10.0), now).unwrap().unwrap();
        assert_eq!(c, ClockRecord::start(10.0, now));
        assert_eq!(apply(Some(&c), Change::Speed(10.0), now + 5).unwrap(), None);
        assert_eq!(apply(Some(&c), Change::Resume, now + 5).unwrap(), None);
        let p = apply(Some(&c), Change::Pause, now + 6_000)
            .unwrap()
            .unwrap();
        assert!(p.paused);
        assert_eq!(p.anchor_sim_ms, now + 60_000);
        assert_eq!(apply(Some(&p), Change::Pause, now + 7_000).unwrap(), None);
        let r = apply(Some(&p), Change::Resume, now + 9_000)
            .unwrap()
            .unwrap();
        assert!(!r.paused);
        assert_eq!(r.sim_at(now + 9_000), now + 60_000);
    }
}
