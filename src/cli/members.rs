//! Removing people (README "Governance"): `kick`, `disconnect`, `ban`, `unban`, `bans`.
//! (`members` and `revoke` live with the mesh commands in mesh.rs.)

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliResult, connect, print_json, select_mesh, with_client};
use crate::client::MeshClient;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "kick", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh kick bob --reason \"restart your session\"")]
/// close every connection of a member (owner or admin); it may connect again
pub struct KickCmd {
    /// display name, member id or pubkey
    #[argh(positional)]
    member: String,
    /// why, shown to the member
    #[argh(option)]
    reason: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "disconnect", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh disconnect 5c548725   (the ID or session `peers` shows)")]
/// close one connection (a ghost session): yours, or anyone's as owner or admin
pub struct DisconnectCmd {
    /// the ID `peers` shows (a member with one live session) or a session's key there; or a
    /// session's pubkey or session id, as `peers --json` shows them
    #[argh(positional)]
    session: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "ban", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh ban mallory --reason \"spam\"")]
/// ban a member (owner or admin): connections close, hellos and claims are refused until unban
pub struct BanCmd {
    /// display name, member id or pubkey
    #[argh(positional)]
    member: String,
    /// why, shown to the member and in `bans`
    #[argh(option)]
    reason: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// do not rotate the mesh root key afterwards (the banned member can then still read
    /// group and broadcast messages it gets hold of)
    #[argh(switch)]
    no_rotate: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "unban", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh unban mallory")]
/// lift a ban (owner or admin): the member may connect again, and the mesh root key is
/// rotated so it gets the key group messages use from now on
pub struct UnbanCmd {
    /// display name, member id or pubkey
    #[argh(positional)]
    member: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// do not rotate the mesh root key (the member then cannot read group messages until the
    /// next rotation)
    #[argh(switch)]
    no_rotate: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "bans", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh bans --json")]
/// list the mesh's bans (owner or admin), newest first
pub struct BansCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {bans: [{memberId, pubkey, displayName, reason, bannedBy, bannedAt}], truncated}
    #[argh(switch)]
    json: bool,
}

impl KickCmd {
    pub async fn run(self) -> CliResult {
        with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.kick(&self.member, self.reason.clone()).await?)
        })
        .await?;
        outln!("kicked {}", self.member);
        Ok(())
    }
}

impl DisconnectCmd {
    pub async fn run(self) -> CliResult {
        with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.disconnect(&self.session).await?)
        })
        .await?;
        outln!("disconnected {}", self.session);
        Ok(())
    }
}

impl BanCmd {
    pub async fn run(self) -> CliResult {
        on_one_connection(self.mesh.as_deref(), async |client: &MeshClient| {
            client.ban(&self.member, self.reason.clone()).await?;
            outln!("banned {}", self.member);
            if self.no_rotate {
                super::output::error(&format!(
                    "warning: the mesh root key was not rotated: {} still holds it and can read group and broadcast messages it gets hold of; run `claudemesh rotate-key` to stop that",
                    self.member
                ));
            }
            let done = format!("banned {}", self.member);
            super::keys::rotate_after(client, &done, self.no_rotate, false).await?;
            Ok(())
        })
        .await
    }
}

impl UnbanCmd {
    pub async fn run(self) -> CliResult {
        on_one_connection(self.mesh.as_deref(), async |client: &MeshClient| {
            client.unban(&self.member).await?;
            outln!("unbanned {}", self.member);
            let done = format!("unbanned {}", self.member);
            super::keys::rotate_after(client, &done, self.no_rotate, false).await?;
            Ok(())
        })
        .await
    }
}

/// Runs `steps` on one connection, closed afterwards: a change and the rotation after it need
/// one hello (two in the same millisecond would be one signed hello, refused as a replay).
async fn on_one_connection(
    mesh: Option<&str>,
    steps: impl AsyncFnOnce(&MeshClient) -> CliResult,
) -> CliResult {
    let entry = select_mesh(mesh)?;
    let client = connect(&entry).await?;
    let result = steps(&client).await;
    client.close().await;
    result
}

impl BansCmd {
    pub async fn run(self) -> CliResult {
        let ((bans, truncated), members) =
            with_client(self.mesh.as_deref(), async |client: &MeshClient| {
                Ok((client.list_bans().await?, client.list_members().await?))
            })
            .await?;
        // Who banned, by name (the ban names a member id).
        let name_of = |id: &str| {
            members
                .iter()
                .find(|m| m.member_id == id)
                .map_or_else(|| id.to_string(), |m| m.display_name.clone())
        };
        if self.json {
            print_json(&json!({ "bans": bans, "truncated": truncated }));
            return Ok(());
        }
        if bans.is_empty() {
            outln!("no bans");
            return Ok(());
        }
        outln!(
            "{:<20} {:<20} {:<20} {:<18} REASON",
            "MEMBER",
            "BANNED AT",
            "BY",
            "PUBKEY"
        );
        for b in &bans {
            outln!(
                "{:<20} {:<20} {:<20} {:<18} {}",
                b.display_name,
                b.banned_at,
                name_of(&b.banned_by),
                &b.pubkey[..16.min(b.pubkey.len())],
                b.reason
            );
        }
        if truncated {
            outln!("(more bans than shown)");
        }
        Ok(())
    }
}
