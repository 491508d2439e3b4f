//! Meshes and membership: create, list, leave, members, revoke. Invites live in `invites.rs`,
//! `join` in `join.rs`.

use std::path::PathBuf;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

pub use super::invites::InviteCmd;
pub use super::join::{InviteLink, JoinCmd, join_invite, parse_invite};
use super::output::outln;
use super::{CliError, CliResult, connect, print_json, select_mesh};
use crate::client::tls::Trust;
use crate::client::{MeshClient, http};
use crate::crypto::{self, SignKeyPair};
use crate::identity::{ConfigDir, MeshEntry, encode_root_key, http_base, root_key_check, ws_url};
use crate::protocol::messages::{GroupBodies, GroupBodiesProof, MemberEntry};
use crate::protocol::{ClientMessage, ServerMessage, time};

const DEFAULT_BROKER: &str = "ws://127.0.0.1:7900/ws";

fn default_broker() -> String {
    std::env::var("CLAUDEMESH_BROKER_URL").unwrap_or_else(|_| DEFAULT_BROKER.into())
}

/// The name others see when none is given: $USER, else "me".
pub(super) fn default_display_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "me".into())
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "create", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh create team --name alice")]
/// create a mesh on a broker and join it as its owner
pub struct CreateCmd {
    /// the mesh's name
    #[argh(positional)]
    name: String,
    /// broker URL, or lan:NAME for one `claudemesh discover` lists (default
    /// $CLAUDEMESH_BROKER_URL or ws://127.0.0.1:7900/ws)
    #[argh(option)]
    broker: Option<String>,
    /// the broker's admin token
    #[argh(option)]
    admin_token: Option<String>,
    /// file holding the broker's admin token
    #[argh(option)]
    admin_token_file: Option<PathBuf>,
    /// PEM file of the CA (or self-signed certificate) the broker's TLS certificate must
    /// chain to, instead of the public roots; remembered for this mesh (also $CLAUDEMESH_CA_FILE)
    #[argh(option)]
    ca_file: Option<PathBuf>,
    /// your display name in the mesh (default $USER)
    #[argh(option, long = "name")]
    display: Option<String>,
    /// how group and broadcast messages are written: sealed (end-to-end encrypted under the
    /// mesh key, the default) or plain (base64, readable by original claudemesh clients
    /// and by the broker); the owner can change it later with `claudemesh settings`
    #[argh(option, default = "String::from(\"sealed\")")]
    group_bodies: String,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl CreateCmd {
    pub async fn run(self) -> CliResult {
        let Some(group_bodies) = GroupBodies::parse(&self.group_bodies) else {
            return Err(CliError::Usage(format!(
                "--group-bodies is sealed or plain, not \"{}\"",
                self.group_bodies
            )));
        };
        let trust = Trust::resolve(self.ca_file.as_deref(), None);
        let broker = self.broker.clone().unwrap_or_else(default_broker);
        let broker = super::discover::resolve_broker(broker, &trust).await?;
        let token = super::admin_token::find(
            self.admin_token.as_deref(),
            self.admin_token_file.as_deref(),
            &broker,
        )?;
        let display = self.display.clone().unwrap_or_else(default_display_name);
        let member = SignKeyPair::generate();
        let owner = SignKeyPair::generate();
        let root_key: [u8; 32] = crypto::random_bytes();
        // The root key stays on this machine (and in invite links after `#`); the broker only
        // gets its check value.
        let mut body = json!({
            "name": self.name,
            "owner_pubkey": owner.public_hex(),
            "member_pubkey": member.public_hex(),
            "root_key_check": root_key_check(&root_key),
            "display_name": display,
            "group_bodies": self.group_bodies,
        });
        // The choice is the owner's, signed with the owner key: clients check it (a broker
        // alone cannot switch them to plain group bodies).
        let proof = GroupBodiesProof::sign(&owner, group_bodies, time::now_ms());
        body["group_bodies_signature"] = json!(proof.signature);
        body["group_bodies_signed_at"] = json!(proof.signed_at);
        let mut headers = Vec::new();
        if let Some(t) = &token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let url = format!("{}/meshes", http_base(&broker));
        let body = Some(body.to_string().into_bytes());
        let resp = http::request_with("POST", &url, &headers, body, &trust).await?;
        if resp.status == 401 {
            return Err(CliError::failed(format!(
                "the broker at {} refused to create a mesh without its admin token: pass --admin-token or --admin-token-file (the token is in admin.token in the broker's data directory), or run the broker with --open",
                http_base(&broker)
            )));
        }
        if !resp.is_success() {
            return Err(resp.into_error().into());
        }
        let v = resp.json();
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let entry = MeshEntry {
            mesh_id: field("meshId"),
            slug: field("slug"),
            name: field("name"),
            member_id: field("memberId"),
            display_name: display,
            role: "owner".into(),
            broker_url: ws_url(&broker),
            member_pubkey: member.public_hex(),
            member_secret_key: member.secret_hex(),
            root_key: encode_root_key(&root_key),
            owner_pubkey: owner.public_hex(),
            owner_secret_key: Some(owner.secret_hex()),
            joined_at: time::iso(time::now_ms()),
            ca_file: trust.remembered(),
            key_epoch: 0,
            old_root_keys: Vec::new(),
            admin_list_version: 0,
        };
        if entry.mesh_id.is_empty() || entry.member_id.is_empty() {
            return Err(CliError::failed(
                "the broker's answer to create lacks meshId/memberId",
            ));
        }
        ConfigDir::from_env().update(|config| {
            config.upsert(entry.clone());
            Ok(())
        })?;
        if self.json {
            print_json(&json!({
                "meshId": entry.mesh_id,
                "slug": entry.slug,
                "memberId": entry.member_id,
                "brokerUrl": entry.broker_url,
                "groupBodies": self.group_bodies,
            }));
        } else {
            outln!(
                "created mesh \"{}\" ({}) on {}; you are its owner.",
                entry.name,
                entry.slug,
                entry.broker_url
            );
            if self.group_bodies == "plain" {
                outln!(
                    "group and broadcast messages in it are plain base64 (original claudemesh clients can read them; so can the broker)"
                );
            }
            outln!("next: `claudemesh invite` to let a teammate in");
        }
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh list --json")]
/// list the meshes this machine has joined
pub struct ListCmd {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl ListCmd {
    pub fn run(self) -> CliResult {
        let config = ConfigDir::from_env().load()?;
        if self.json {
            let meshes: Vec<_> = config
                .meshes
                .iter()
                .map(|m| {
                    json!({
                        "meshId": m.mesh_id, "slug": m.slug, "name": m.name, "role": m.role,
                        "memberId": m.member_id, "displayName": m.display_name,
                        "memberPubkey": m.member_pubkey,
                        "brokerUrl": m.broker_url, "joinedAt": m.joined_at,
                    })
                })
                .collect();
            print_json(&json!({ "meshes": meshes }));
            return Ok(());
        }
        if config.meshes.is_empty() {
            outln!("no meshes yet: `claudemesh create <name>` or `claudemesh join <invite-url>`");
            return Ok(());
        }
        outln!(
            "{:<20} {:<20} {:<8} {:<16} BROKER",
            "SLUG",
            "NAME",
            "ROLE",
            "YOU"
        );
        for m in &config.meshes {
            outln!(
                "{:<20} {:<20} {:<8} {:<16} {}",
                m.slug,
                m.name,
                m.role,
                m.display_name,
                m.broker_url
            );
        }
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "leave", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh leave team")]
/// forget a mesh on this machine (its keys are deleted from the config)
pub struct LeaveCmd {
    /// mesh slug or id
    #[argh(positional)]
    mesh: String,
    /// leave a mesh you own without asking (its owner key is deleted with it)
    #[argh(switch, short = 'y')]
    yes: bool,
}

impl LeaveCmd {
    pub fn run(self) -> CliResult {
        let dir = ConfigDir::from_env();
        let entry = dir.load()?.select(Some(&self.mesh))?.clone();
        if entry.owner_secret_key.is_some() && !self.yes {
            self.confirm_owner_leave(&entry)?;
        }
        let entry = dir.update(|config| {
            let entry = config.select(Some(&self.mesh))?.clone();
            config.meshes.retain(|m| m.mesh_id != entry.mesh_id);
            Ok(entry)
        })?;
        outln!(
            "left mesh \"{}\" ({}); its keys are deleted from this machine",
            entry.name,
            entry.slug
        );
        Ok(())
    }

    /// The owner key exists on this machine only: leaving deletes it for good. Asks on a
    /// terminal; anywhere else only `--yes` goes on.
    fn confirm_owner_leave(&self, entry: &MeshEntry) -> CliResult {
        use std::io::IsTerminal;
        let why = format!(
            "you own mesh \"{}\" ({}): leaving deletes its owner key, which exists only on this machine; nobody could then invite as the owner or prove to own the mesh, and the mesh stays on the broker",
            entry.name, entry.slug
        );
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(CliError::failed(format!(
                "{why}. Run `claudemesh leave {} --yes` to leave anyway",
                entry.slug
            )));
        }
        super::output::error(&format!("{why}."));
        let yes = super::output::ask_yes("Leave and delete the owner key? [y/N] ")
            .map_err(|e| CliError::failed(format!("cannot read the answer: {e}")))?;
        if yes {
            Ok(())
        } else {
            Err(CliError::failed(format!(
                "did not leave mesh {}; nothing changed",
                entry.slug
            )))
        }
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "members", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh members --mesh team")]
/// list every member of a mesh, with who is online
pub struct MembersCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

async fn fetch_members(client: &MeshClient) -> Result<Vec<MemberEntry>, CliError> {
    match client.request(ClientMessage::ListMembers {}).await? {
        ServerMessage::MembersList { members } => Ok(members),
        other => Err(CliError::failed(format!("unexpected answer: {other:?}"))),
    }
}

impl MembersCmd {
    pub async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let members = fetch_members(&client).await;
        client.close().await;
        let members = members?;
        if self.json {
            print_json(&json!({ "members": members }));
            return Ok(());
        }
        outln!(
            "{:<20} {:<7} {:<7} {:<18} JOINED",
            "NAME",
            "ROLE",
            "ONLINE",
            "PUBKEY"
        );
        for m in members {
            let you = if m.member_id == entry.member_id {
                " (you)"
            } else {
                ""
            };
            outln!(
                "{:<20} {:<7} {:<7} {:<18} {}",
                format!("{}{you}", m.display_name),
                m.role,
                if m.online { "yes" } else { "no" },
                &m.pubkey[..16],
                m.joined_at
            );
        }
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "revoke", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh revoke bob")]
/// revoke a member (owner or admin): its connections close, it cannot return, and the mesh
/// root key is rotated so it cannot read group messages sent afterwards
pub struct RevokeCmd {
    /// display name, member id, or pubkey (or a unique prefix of 8+ hex)
    #[argh(positional)]
    member: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// do not rotate the mesh root key afterwards (the revoked member can then still read
    /// group and broadcast messages it gets hold of)
    #[argh(switch)]
    no_rotate: bool,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl RevokeCmd {
    pub async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        // One connection for both steps: a second hello in the same millisecond would be the
        // same signed hello, which the broker refuses as a replay.
        let client = connect(&entry).await?;
        let result = self.revoke_with(&client, &entry).await;
        client.close().await;
        result
    }

    async fn revoke_with(&self, client: &MeshClient, entry: &MeshEntry) -> CliResult {
        let members = fetch_members(client).await?;
        let wanted = self.member.as_str();
        let matches: Vec<&MemberEntry> = members
            .iter()
            .filter(|m| {
                m.display_name == wanted
                    || m.member_id == wanted
                    || (wanted.len() >= 8 && m.pubkey.starts_with(wanted))
            })
            .collect();
        let target = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(CliError::failed(format!(
                    "no member \"{wanted}\" in mesh {}",
                    entry.slug
                )));
            }
            _ => {
                return Err(CliError::failed(format!(
                    "\"{wanted}\" matches {} members; use the member id or a longer pubkey prefix",
                    matches.len()
                )));
            }
        };
        client
            .request(ClientMessage::RevokeMember {
                member: target.member_id.clone(),
            })
            .await?;
        if !self.json {
            outln!("revoked {} from mesh {}", target.display_name, entry.slug);
        }
        if self.no_rotate {
            super::output::error(&format!(
                "warning: the mesh root key was not rotated: {} still holds it and can read group and broadcast messages it gets hold of; run `claudemesh rotate-key` to stop that",
                target.display_name
            ));
            if self.json {
                print_json(&json!({ "revoked": target.member_id, "rotated": null }));
            }
            return Ok(());
        }
        let done = format!("revoked {}", target.display_name);
        let rotated = super::keys::rotate_after(client, &done, false, self.json).await?;
        if self.json {
            print_json(&json!({
                "revoked": target.member_id,
                "rotated": rotated.as_ref().map(super::keys::rotated_json),
            }));
        }
        Ok(())
    }
}
