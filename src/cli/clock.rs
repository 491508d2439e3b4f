//! `claudemesh clock [set SPEED | pause | resume]` (PROTOCOL.md §23): the mesh's simulation
//! clock.

use argh::{ArgsInfo, FromArgs};

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::protocol::messages::ClockStatus;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "clock", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh clock set 10")]
#[argh(example = "claudemesh clock pause")]
#[argh(example = "claudemesh clock --json")]
/// the mesh's simulation clock: show it; `clock set SPEED` (1-100 times real time) starts or speeds it; `clock pause`; `clock resume`
pub struct ClockCmd {
    /// nothing to show the clock; `set SPEED`, `pause` or `resume`
    #[argh(positional)]
    args: Vec<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {speed, paused, tick, simTime, startedAt, set}
    #[argh(switch)]
    json: bool,
}

enum Action {
    Show,
    Set(f64),
    Pause,
    Resume,
}

fn action(args: &[String]) -> Result<Action, CliError> {
    Ok(match args {
        [] => Action::Show,
        [verb, speed] if verb == "set" => {
            Action::Set(speed.trim_end_matches('x').parse().map_err(|_| {
                CliError::Usage(format!(
                    "clock set takes a speed from 1 to 100, not \"{speed}\""
                ))
            })?)
        }
        [verb] if verb == "pause" => Action::Pause,
        [verb] if verb == "resume" => Action::Resume,
        _ => {
            return Err(CliError::Usage(
                "usage: claudemesh clock [set SPEED | pause | resume]".into(),
            ));
        }
    })
}

impl ClockCmd {
    pub async fn run(self) -> CliResult {
        let action = action(&self.args)?;
        let status = with_client(self.mesh.as_deref(), async |c| {
            Ok(match action {
                Action::Show => c.clock().await?,
                Action::Set(speed) => c.set_clock(speed).await?,
                Action::Pause => c.pause_clock().await?,
                Action::Resume => c.resume_clock().await?,
            })
        })
        .await?;
        if self.json {
            print_json(&status);
        } else {
            outln!("{}", describe(&status));
        }
        Ok(())
    }
}

fn describe(s: &ClockStatus) -> String {
    if !s.set {
        return "no simulation clock is set (simulated time is real time); start one with `claudemesh clock set SPEED`".into();
    }
    format!(
        "{} at {}x, tick {}, simulated time {} (started {})",
        if s.paused { "paused" } else { "running" },
        s.speed,
        s.tick,
        s.sim_time,
        s.started_at
    )
}
