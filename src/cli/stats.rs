//! `claudemesh stats` (issue 13): what the broker counted on every session of the mesh, and
//! what each session reported about itself.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliResult, print_json, with_client};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "stats", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh stats --json")]
/// per-session counts: messages in and out, errors, uptime (broker-counted), tool calls (reported)
pub struct StatsCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// also list tool connections (CLI calls) and not only sessions
    #[argh(switch)]
    all: bool,
    /// print JSON: {peers:[{pubkey, memberPubkey, displayName, sessionId, peerRole, stats, reported?}]}
    #[argh(switch)]
    json: bool,
}

impl StatsCmd {
    pub async fn run(self) -> CliResult {
        let peers = with_client(self.mesh.as_deref(), async |c| Ok(c.mesh_stats().await?)).await?;
        let peers: Vec<_> = peers
            .into_iter()
            .filter(|p| self.all || p.peer_role != "control-plane")
            .collect();
        if self.json {
            print_json(&json!({ "peers": peers }));
            return Ok(());
        }
        if peers.is_empty() {
            outln!("no sessions online");
            return Ok(());
        }
        outln!(
            "{:<20} {:<9} {:>7} {:>7} {:>7} {:>10} {:>10}",
            "NAME",
            "ID",
            "IN",
            "OUT",
            "ERRORS",
            "TOOL CALLS",
            "UPTIME"
        );
        for p in &peers {
            let tool_calls = p
                .reported
                .as_ref()
                .and_then(|r| r.tool_calls)
                .map_or("-".to_string(), |n| n.to_string());
            outln!(
                "{:<20} {:<9} {:>7} {:>7} {:>7} {:>10} {:>10}",
                p.display_name,
                p.pubkey.get(..8).unwrap_or(""),
                p.stats.messages_in,
                p.stats.messages_out,
                p.stats.errors,
                tool_calls,
                humantime::format_duration(std::time::Duration::from_secs(p.stats.uptime))
                    .to_string()
            );
        }
        Ok(())
    }
}
