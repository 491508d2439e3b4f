//! The simulation clock (PROTOCOL.md §23): `set_clock`, `pause_clock`, `resume_clock`,
//! `get_clock`, all answered with `clock_status`.

use serde::{Deserialize, Serialize};

/// Fastest and slowest speed a mesh's clock may run at, as multiples of real time.
pub const MIN_CLOCK_SPEED: f64 = 1.0;
pub const MAX_CLOCK_SPEED: f64 = 100.0;

/// `clock_status`: the mesh's simulation clock now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClockStatus {
    /// Simulated seconds per real second.
    pub speed: f64,
    pub paused: bool,
    /// Simulated minutes since the clock was first set: one heartbeat tick each.
    pub tick: u64,
    /// Simulated time now, ISO-8601.
    pub sim_time: String,
    /// When (real time, ISO-8601) the clock was first set; the simulation starts at this time.
    pub started_at: String,
    /// This broker's addition: false before anyone set this mesh's clock (no ticks are sent
    /// then, and simulated time is real time).
    #[serde(default = "yes")]
    pub set: bool,
}

fn yes() -> bool {
    true
}
