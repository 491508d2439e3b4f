//! Per-peer grants and blocks (issue 13, README "Governance"): `block`, `unblock`, `grants`,
//! `grants set PEER +message -files`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::protocol::messages::GrantEntry;

const RIGHTS: [&str; 3] = ["message", "files", "tools"];

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "block", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh block mallory")]
/// refuse a member's messages to you (they get an error) and everything else towards you
pub struct BlockCmd {
    /// the member: display name, key prefix (8+ hex) or member id
    #[argh(positional)]
    peer: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the member's grant entry
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "unblock", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh unblock mallory")]
/// give a member back everything towards you (the default)
pub struct UnblockCmd {
    /// the member: display name, key prefix (8+ hex) or member id
    #[argh(positional)]
    peer: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the member's grant entry
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "grants", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh grants")]
#[argh(example = "claudemesh grants set bob +message -files")]
/// list the members you restrict (everyone else may message you, read your files, call your tools)
pub struct GrantsCmd {
    #[argh(subcommand)]
    action: Option<GrantsAction>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {grants:[{memberId, pubkey, displayName, allowed, blocked}], truncated}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum GrantsAction {
    Set(GrantsSetCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "set", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh grants set bob +message -files -tools")]
/// grant (+right) or revoke (-right) what a member may do towards you: message, files, tools
struct GrantsSetCmd {
    /// the member: display name, key prefix (8+ hex) or member id
    #[argh(positional)]
    peer: String,
    /// rights to change: +message, -files, +tools …
    #[argh(positional)]
    rights: Vec<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the member's grant entry
    #[argh(switch)]
    json: bool,
}

/// `grants set PEER +message -files`: argh would read `-files` as a flag, so the rights go
/// after a `--` before parsing.
pub(super) fn separate_rights(args: &mut Vec<&str>) {
    if args.first() != Some(&"grants") || args.get(1) != Some(&"set") || args.contains(&"--") {
        return;
    }
    let is_right = |a: &&str| {
        a.strip_prefix(['+', '-'])
            .is_some_and(|r| RIGHTS.contains(&r))
    };
    let rights: Vec<&str> = args.iter().copied().filter(is_right).collect();
    if rights.is_empty() {
        return;
    }
    args.retain(|a| !is_right(a));
    args.push("--");
    args.extend(rights);
}

fn show(entry: &GrantEntry) {
    let allowed = if entry.allowed.is_empty() {
        "nothing".to_string()
    } else {
        entry.allowed.join(",")
    };
    outln!(
        "{:<20} {:<9} {:<8} {}",
        entry.display_name,
        entry.pubkey.get(..8).unwrap_or(""),
        if entry.blocked { "blocked" } else { "" },
        allowed
    );
}

async fn change(
    mesh: Option<&str>,
    json: bool,
    peer: &str,
    apply: impl AsyncFnOnce(&crate::client::MeshClient, &str) -> Result<GrantEntry, CliError>,
) -> CliResult {
    let entry = with_client(mesh, async |c| {
        let peer = c.resolve_peer(peer).await?;
        apply(c, &peer).await
    })
    .await?;
    if json {
        print_json(&entry);
    } else {
        show(&entry);
    }
    Ok(())
}

impl BlockCmd {
    pub async fn run(self) -> CliResult {
        change(self.mesh.as_deref(), self.json, &self.peer, async |c, p| {
            Ok(c.block(p).await?)
        })
        .await
    }
}

impl UnblockCmd {
    pub async fn run(self) -> CliResult {
        change(self.mesh.as_deref(), self.json, &self.peer, async |c, p| {
            Ok(c.unblock(p).await?)
        })
        .await
    }
}

impl GrantsCmd {
    pub async fn run(self) -> CliResult {
        if let Some(GrantsAction::Set(set)) = self.action {
            return set.run(self.mesh, self.json).await;
        }
        let (grants, truncated) =
            with_client(self.mesh.as_deref(), async |c| Ok(c.list_grants().await?)).await?;
        if self.json {
            print_json(&json!({ "grants": grants, "truncated": truncated }));
            return Ok(());
        }
        if grants.is_empty() {
            outln!(
                "you restrict nobody: every member may message you, read your files and call your tools"
            );
            return Ok(());
        }
        outln!("{:<20} {:<9} {:<8} ALLOWED", "NAME", "ID", "BLOCKED");
        for g in &grants {
            show(g);
        }
        if truncated {
            outln!("(more not shown)");
        }
        Ok(())
    }
}

impl GrantsSetCmd {
    async fn run(self, mesh: Option<String>, json: bool) -> CliResult {
        let mut grant = Vec::new();
        let mut revoke = Vec::new();
        for r in &self.rights {
            match (r.chars().next(), r.get(1..)) {
                (Some('+'), Some(name)) if RIGHTS.contains(&name) => grant.push(name.to_string()),
                (Some('-'), Some(name)) if RIGHTS.contains(&name) => revoke.push(name.to_string()),
                _ => {
                    return Err(CliError::Usage(format!(
                        "\"{r}\" is not a right: give +message, -files, +tools …"
                    )));
                }
            }
        }
        if grant.is_empty() && revoke.is_empty() {
            return Err(CliError::Usage(
                "give at least one right: +message, -files, +tools …".into(),
            ));
        }
        let mesh = self.mesh.or(mesh);
        change(
            mesh.as_deref(),
            json || self.json,
            &self.peer,
            async |c, p| Ok(c.set_grants(p, grant, revoke).await?),
        )
        .await
    }
}
