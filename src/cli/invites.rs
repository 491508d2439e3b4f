//! Invites: making, listing and revoking them. Joining a mesh with one is `join.rs`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, connect, print_json, select_mesh};
use crate::client::members::NewInvite;
use crate::protocol::messages::InviteEntry;
use crate::protocol::time;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "invite", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh invite --role member --uses 3 --expires 1d")]
/// make an invite link (needs the invite capability: owner and admins by default), or list and revoke invites
pub struct InviteCmd {
    #[argh(subcommand)]
    action: Option<InviteAction>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// role of the invitee: member or admin (default member)
    #[argh(option, default = "String::from(\"member\")")]
    role: String,
    /// how many people may use it (default 1)
    #[argh(option, default = "1")]
    uses: u32,
    /// how long it stays valid, e.g. 30m, 12h, 7d (default 7d)
    #[argh(option, default = "String::from(\"7d\")")]
    expires: String,
    /// revoke the invite with this code or id instead of making one
    #[argh(option)]
    revoke: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum InviteAction {
    List(InviteListCmd),
    Revoke(InviteRevokeCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh invite list --json")]
/// list the mesh's invites: code, id, role, uses left, expiry, who made it, status
pub struct InviteListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "revoke", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh invite revoke K7Q2M9XA")]
/// revoke an invite by code or id: nobody can join with it any more
pub struct InviteRevokeCmd {
    /// the invite's code or id
    #[argh(positional)]
    invite: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

async fn revoke_invite(mesh: Option<&str>, which: &str) -> CliResult {
    let entry = select_mesh(mesh)?;
    let client = connect(&entry).await?;
    let answer = client.revoke_invite(which).await;
    client.close().await;
    answer?;
    outln!("revoked invite {which}");
    Ok(())
}

impl InviteListCmd {
    async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let answer = client.list_invites().await;
        client.close().await;
        let (invites, truncated) = answer?;
        if self.json {
            let invites: Vec<serde_json::Value> = invites.iter().map(invite_json).collect();
            print_json(&json!({ "invites": invites, "truncated": truncated }));
            return Ok(());
        }
        if invites.is_empty() {
            outln!(
                "no invites in mesh {}: `claudemesh invite` makes one",
                entry.slug
            );
            return Ok(());
        }
        outln!(
            "{:<9} {:<24} {:<7} {:<9} {:<21} {:<16} STATUS",
            "CODE",
            "ID",
            "ROLE",
            "USES LEFT",
            "EXPIRES",
            "BY"
        );
        for i in &invites {
            outln!("{}", invite_line(i));
        }
        if truncated {
            outln!("(more invites exist; the newest and still valid ones are listed)");
        }
        Ok(())
    }
}

/// One invite as `invite list --json` prints it: the broker's entry with its expiry in
/// ISO-8601, like `createdAt` and every other time a `--json` prints (the frame carries Unix
/// seconds).
fn invite_json(i: &InviteEntry) -> serde_json::Value {
    json!({
        "code": i.code,
        "inviteId": i.invite_id,
        "role": i.role,
        "maxUses": i.max_uses,
        "used": i.used,
        "usesLeft": i.uses_left,
        "expiresAt": time::iso(i.expires_at.saturating_mul(1000)),
        "createdBy": i.created_by,
        "createdByName": i.created_by_name,
        "createdAt": i.created_at,
        "revoked": i.revoked,
        "status": i.status,
    })
}

fn invite_line(i: &InviteEntry) -> String {
    let by: String = crate::protocol::clean_display_name(&i.created_by_name)
        .unwrap_or_else(|| i.created_by.clone());
    format!(
        "{:<9} {:<24} {:<7} {:<9} {:<21} {:<16} {}",
        i.code,
        i.invite_id,
        i.role,
        format!("{}/{}", i.uses_left, i.max_uses),
        time::iso(i.expires_at.saturating_mul(1000)),
        by,
        i.status
    )
}

impl InviteCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            Some(InviteAction::List(cmd)) => return cmd.run().await,
            Some(InviteAction::Revoke(cmd)) => {
                return revoke_invite(cmd.mesh.as_deref(), &cmd.invite).await;
            }
            None => {}
        }
        if let Some(which) = &self.revoke {
            return revoke_invite(self.mesh.as_deref(), which).await;
        }
        if self.role != "member" && self.role != "admin" {
            return Err(CliError::Usage("--role must be member or admin".into()));
        }
        if self.uses == 0 {
            return Err(CliError::Usage("--uses must be at least 1".into()));
        }
        let lifetime = time::parse_duration(&self.expires).map_err(CliError::Usage)?;
        let entry = select_mesh(self.mesh.as_deref())?;
        // Round up: the invite lives at least as long as asked (rounding down could put a
        // short one in the past by the time the broker sees it).
        let expires_ms = time::now_ms().saturating_add(lifetime.as_millis() as i64);
        let expires_at = (expires_ms + 999) / 1000;
        let client = connect(&entry).await?;
        let created = client.new_invite(&self.role, self.uses, expires_at).await;
        client.close().await;
        let NewInvite {
            created: inv,
            link,
            has_root_key,
        } = created?;
        if !has_root_key {
            output::error(&format!(
                "warning: this machine has no root key for mesh {}, so the link lacks its #… part: whoever joins with it cannot read or send group and broadcast messages",
                entry.slug
            ));
        }
        if self.json {
            print_json(&json!({
                "code": inv.code,
                "inviteId": inv.invite_id,
                "url": link,
                "expiresAt": time::iso(inv.expires_at.saturating_mul(1000)),
                "role": inv.role,
                "uses": inv.max_uses,
            }));
        } else {
            outln!("{link}");
            outln!(
                "code {} · id {} · role {} · {} use(s) · expires {}",
                inv.code,
                inv.invite_id,
                inv.role,
                inv.max_uses,
                time::iso(inv.expires_at.saturating_mul(1000))
            );
            match &entry.ca_file {
                // Their join would refuse the broker's certificate without it.
                Some(ca) => {
                    outln!("they join with: claudemesh join '{link}' --ca-file CA.pem");
                    outln!(
                        "this broker's certificate is checked against the CA certificate {}: send them a copy for --ca-file (it holds no secret)",
                        ca.display()
                    );
                }
                None => outln!("they join with: claudemesh join '{link}'"),
            }
            outln!(
                "the part after # is the mesh key and the owner's fingerprint: send the whole link privately; the broker never sees it"
            );
        }
        Ok(())
    }
}
