//! MCP tools for reminders: schedule_reminder, list_scheduled, cancel_scheduled.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{IdArgs, MeshArg, MeshTools, fail, json_text};
use crate::protocol::messages::{Schedule, When};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReminderArgs {
    /// The reminder text.
    pub message: String,
    /// Fire once after this many seconds.
    #[serde(default)]
    pub in_seconds: Option<u64>,
    /// Fire once at this time (ISO-8601).
    #[serde(default)]
    pub deliver_at: Option<String>,
    /// Fire repeatedly on this 5-field cron expression, e.g. "*/30 * * * *".
    #[serde(default)]
    pub cron: Option<String>,
    /// Who gets it (a name, pubkey, @group, *); default: you.
    #[serde(default)]
    pub to: Option<String>,
    /// in_seconds / deliver_at are on the mesh's simulation clock (mesh_clock), not real time.
    #[serde(default)]
    pub simulated: bool,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = reminders_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Schedule a reminder: once (in_seconds or deliver_at) or repeating (5-field cron). Delivered as a message, even if you are offline then."
    )]
    async fn schedule_reminder(&self, Parameters(a): Parameters<ReminderArgs>) -> CallToolResult {
        let when = match (a.in_seconds, a.deliver_at.clone(), &a.cron) {
            (Some(s), None, None) if a.simulated => Some(When::Ms((s as i64) * 1000)),
            (Some(s), None, None) => Some(When::Ms(
                crate::protocol::time::now_ms() + (s as i64) * 1000,
            )),
            (None, Some(at), None) => Some(When::Iso(at)),
            (None, None, Some(_)) => None,
            _ => {
                return fail(
                    &self.hub,
                    "give exactly one of in_seconds, deliver_at or cron".into(),
                );
            }
        };
        let in_simulated = a.simulated && a.in_seconds.is_some();
        self.with_client(a.mesh.as_deref(), |c| async move {
            // In simulated time, in_seconds counts from the clock's now, asked of the broker.
            let when = match when {
                Some(When::Ms(after)) if in_simulated => {
                    let clock = c.clock().await.map_err(|e| e.to_string())?;
                    let now = crate::protocol::time::parse_iso(&clock.sim_time)
                        .unwrap_or_else(crate::protocol::time::now_ms);
                    Some(When::Ms(now + after))
                }
                other => other,
            };
            let to = match a.to.as_deref() {
                Some(t) => {
                    let targets = c.resolve_targets(t).await.map_err(|e| e.to_string())?;
                    match targets.as_slice() {
                        [one] => one.spec.clone(),
                        _ => return Err("a reminder goes to one target".to_string()),
                    }
                }
                None => String::new(),
            };
            let ack = c
                .schedule(Schedule {
                    to,
                    message: a.message,
                    deliver_at: when,
                    subtype: None,
                    cron: a.cron,
                    recurring: None,
                    simulated: a.simulated,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "scheduled {} for {}{}{}",
                ack.scheduled_id,
                crate::protocol::time::iso(ack.deliver_at),
                if ack.simulated {
                    " (simulated time)"
                } else {
                    ""
                },
                ack.cron.map(|c| format!(" (cron {c})")).unwrap_or_default()
            ))
        })
        .await
    }

    #[tool(description = "List your scheduled reminders.")]
    async fn list_scheduled(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let list = c.list_scheduled().await.map_err(|e| e.to_string())?;
            Ok(if list.is_empty() {
                "Nothing scheduled.".to_string()
            } else {
                json_text(&list)
            })
        })
        .await
    }

    #[tool(description = "Cancel a scheduled reminder by id.")]
    async fn cancel_scheduled(&self, Parameters(a): Parameters<IdArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let done = c.cancel_scheduled(&a.id).await.map_err(|e| e.to_string())?;
            if done {
                Ok(format!("cancelled {}", a.id))
            } else {
                Err(format!("no scheduled reminder {}", a.id))
            }
        })
        .await
    }
}
