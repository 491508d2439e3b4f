//! Reminders (CLI.md "Shared data"): `remind`, `remind list`, `remind cancel`.

use argh::{ArgsInfo, FromArgs};
use serde_json::{Value, json};

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client, words};
use crate::client::MeshClient;
use crate::protocol::messages::{Schedule, ScheduledEntry, When};
use crate::protocol::time;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "remind", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh remind stand-up in five minutes --in 5m --to @all")]
#[argh(example = "claudemesh remind list")]
/// schedule a message: remind <message> (--in 10m | --at ISO-8601 | --cron "*/5 * * * *") [--to TARGET]; `remind list`; `remind cancel <id>`
pub struct RemindCmd {
    /// the message; or `list`; or `cancel <id>`
    #[argh(positional)]
    args: Vec<String>,
    /// deliver after this long (e.g. 90s, 10m, 2h)
    #[argh(option, long = "in")]
    in_: Option<String>,
    /// deliver at this time, ISO-8601 in UTC (e.g. 2030-01-31T09:00:00Z)
    #[argh(option)]
    at: Option<String>,
    /// deliver repeatedly on this 5-field cron schedule (UTC)
    #[argh(option)]
    cron: Option<String>,
    /// who gets it: a name, pubkey, @group or * (default: yourself); mesh:name picks the mesh
    #[argh(option)]
    to: Option<String>,
    /// take --in and --at on the mesh's simulation clock (`claudemesh clock`), not real time
    #[argh(switch)]
    sim: bool,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {scheduledId, deliverAt, simulated?}
    #[argh(switch)]
    json: bool,
}

fn scheduled_json(e: &ScheduledEntry) -> Value {
    let mut v = json!({
        "id": e.id,
        "to": e.to,
        "message": e.message,
        "deliverAt": time::iso(e.deliver_at),
        "createdAt": time::iso(e.created_at),
    });
    if let Some(c) = &e.cron {
        v["cron"] = json!(c);
        v["firedCount"] = json!(e.fired_count.unwrap_or(0));
    }
    if e.simulated {
        v["simulated"] = json!(true);
    }
    v
}

impl RemindCmd {
    pub async fn run(self) -> CliResult {
        let timed = self.in_.is_some() || self.at.is_some() || self.cron.is_some();
        match self.args.as_slice() {
            [only] if only == "list" && !timed => return self.list().await,
            [first, id] if first == "cancel" && !timed => return self.cancel(id).await,
            _ => {}
        }
        let message = words(
            "reminder's message (or `list`, or `cancel <id>`)",
            &self.args,
        )?;
        // `--in` counts from now: real time, or (`--sim`) the clock's, asked of the broker.
        let mut after_ms = None;
        let (deliver_at, cron) = match (&self.in_, &self.at, &self.cron) {
            (Some(d), None, None) => {
                let d = time::parse_duration(d).map_err(CliError::Usage)?;
                after_ms = Some(d.as_millis() as i64);
                (Some(time::now_ms() + d.as_millis() as i64), None)
            }
            (None, Some(at), None) => {
                let ms = time::parse_iso(at).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--at \"{at}\" is not an ISO-8601 time (e.g. 2030-01-31T09:00:00Z)"
                    ))
                })?;
                (Some(ms), None)
            }
            (None, None, Some(c)) => (None, Some(c.clone())),
            _ => {
                return Err(CliError::Usage(
                    "give exactly one of --in, --at or --cron".into(),
                ));
            }
        };
        let (mesh, to) = super::target::unqualify_option(self.to.as_deref(), self.mesh.as_deref())?;
        if self.sim && cron.is_some() {
            return Err(CliError::Usage(
                "--sim takes --in or --at: a reminder in simulated time fires once".into(),
            ));
        }
        let sim = self.sim;
        let ack = with_client(mesh.as_deref(), async |client: &MeshClient| {
            let deliver_at = match after_ms {
                Some(after) if sim => {
                    let clock = client.clock().await?;
                    let now = time::parse_iso(&clock.sim_time).unwrap_or_else(time::now_ms);
                    Some(now + after)
                }
                _ => deliver_at,
            };
            let to = match to.as_deref() {
                None => String::new(),
                Some(t) => super::target::one_spec(client, t).await?,
            };
            Ok(client
                .schedule(Schedule {
                    to,
                    message,
                    deliver_at: deliver_at.map(When::Ms),
                    subtype: Some("reminder".into()),
                    cron,
                    recurring: None,
                    simulated: sim,
                    ..Default::default()
                })
                .await?)
        })
        .await?;
        if self.json {
            let mut v = json!({
                "scheduledId": ack.scheduled_id,
                "deliverAt": time::iso(ack.deliver_at),
            });
            if let Some(c) = &ack.cron {
                v["cron"] = json!(c);
            }
            if ack.simulated {
                v["simulated"] = json!(true);
            }
            print_json(&v);
        } else {
            match &ack.cron {
                Some(c) => outln!(
                    "reminder {} on \"{c}\" (UTC), next at {}",
                    ack.scheduled_id,
                    time::iso(ack.deliver_at)
                ),
                None => outln!(
                    "reminder {} at {}{}",
                    ack.scheduled_id,
                    time::iso(ack.deliver_at),
                    if ack.simulated {
                        " (simulated time)"
                    } else {
                        ""
                    }
                ),
            }
        }
        Ok(())
    }

    async fn list(&self) -> CliResult {
        let (messages, me) = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok((
                client.list_scheduled().await?,
                client.entry().member_pubkey.clone(),
            ))
        })
        .await?;
        if self.json {
            let list: Vec<Value> = messages.iter().map(scheduled_json).collect();
            print_json(&json!({ "messages": list }));
        } else if messages.is_empty() {
            outln!("no scheduled messages");
        } else {
            for m in &messages {
                let when = match &m.cron {
                    Some(c) => format!("\"{c}\" (next {})", time::iso(m.deliver_at)),
                    None if m.simulated => format!("{} (simulated)", time::iso(m.deliver_at)),
                    None => time::iso(m.deliver_at),
                };
                let to = match m.to.as_str() {
                    t if t == me => "you",
                    t if t.len() == 64 => &t[..12],
                    t => t,
                };
                outln!("{}  {when}  → {to}: {}", m.id, m.message);
            }
        }
        Ok(())
    }

    async fn cancel(&self, id: &str) -> CliResult {
        let ok = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.cancel_scheduled(id).await?)
        })
        .await?;
        if !ok {
            return Err(CliError::failed(format!(
                "you have no scheduled message {id} (see `claudemesh remind list`)"
            )));
        }
        if self.json {
            print_json(&json!({ "scheduledId": id, "ok": true }));
        } else {
            outln!("cancelled {id}");
        }
        Ok(())
    }
}
