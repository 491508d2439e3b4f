//! Meshes and identity: create, invite, join, list, leave, members, revoke.

use std::path::PathBuf;

use argh::FromArgs;
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, connect, print_json, select_mesh};
use crate::client::{MeshClient, http};
use crate::crypto::{self, BoxKeyPair, SignKeyPair};
use crate::identity::{
    ConfigDir, MeshEntry, decode_root_key, encode_root_key, http_base, root_key_check, ws_url,
};
use crate::protocol::messages::{InviteEntry, MemberEntry};
use crate::protocol::{ClientMessage, ServerMessage, Signature, canonical, ids, time};

const DEFAULT_BROKER: &str = "ws://127.0.0.1:7900/ws";

fn default_broker() -> String {
    std::env::var("CLAUDEMESH_BROKER_URL").unwrap_or_else(|_| DEFAULT_BROKER.into())
}

/// The name others see when none is given: $USER, else "me".
fn default_display_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "me".into())
}

#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
/// create a mesh on a broker and join it as its owner
pub struct CreateCmd {
    /// the mesh's name
    #[argh(positional)]
    name: String,
    /// broker URL (default $CLAUDEMESH_BROKER_URL or ws://127.0.0.1:7900/ws)
    #[argh(option)]
    broker: Option<String>,
    /// the broker's admin token
    #[argh(option)]
    admin_token: Option<String>,
    /// file holding the broker's admin token
    #[argh(option)]
    admin_token_file: Option<PathBuf>,
    /// your display name in the mesh (default $USER)
    #[argh(option, long = "name")]
    display: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl CreateCmd {
    /// The admin token from the flags, `$CLAUDEMESH_ADMIN_TOKEN`, or (for a broker on this
    /// machine) the token file in the local broker data directory.
    fn admin_token(&self, broker: &str) -> Result<Option<String>, CliError> {
        if let Some(t) = &self.admin_token {
            return Ok(Some(t.trim().to_string()));
        }
        if let Some(path) = &self.admin_token_file {
            let t = std::fs::read_to_string(path).map_err(|e| {
                CliError::failed(format!(
                    "cannot read the admin token file {}: {e}",
                    path.display()
                ))
            })?;
            return Ok(Some(t.trim().to_string()));
        }
        if let Ok(t) = std::env::var("CLAUDEMESH_ADMIN_TOKEN") {
            return Ok(Some(t.trim().to_string()));
        }
        let base = http_base(broker);
        let local = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
            .iter()
            .any(|p| base.starts_with(p));
        if local {
            let path = super::broker::default_data_dir().join("admin.token");
            if let Ok(t) = std::fs::read_to_string(path) {
                return Ok(Some(t.trim().to_string()));
            }
        }
        Ok(None)
    }

    pub async fn run(self) -> CliResult {
        let broker = self.broker.clone().unwrap_or_else(default_broker);
        let token = self.admin_token(&broker)?;
        let display = self.display.clone().unwrap_or_else(default_display_name);
        let member = SignKeyPair::generate();
        let owner = SignKeyPair::generate();
        let root_key: [u8; 32] = crypto::random_bytes();
        // The root key stays on this machine (and in invite links after `#`); the broker only
        // gets its check value.
        let body = json!({
            "name": self.name,
            "owner_pubkey": owner.public_hex(),
            "member_pubkey": member.public_hex(),
            "root_key_check": root_key_check(&root_key),
            "display_name": display,
        });
        let mut headers = Vec::new();
        if let Some(t) = &token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let url = format!("{}/meshes", http_base(&broker));
        let resp =
            http::request("POST", &url, &headers, Some(body.to_string().into_bytes())).await?;
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
            }));
        } else {
            outln!(
                "created mesh \"{}\" ({}) on {}; you are its owner.",
                entry.name,
                entry.slug,
                entry.broker_url
            );
            outln!("next: `claudemesh invite` to let a teammate in");
        }
        Ok(())
    }
}

#[derive(FromArgs)]
#[argh(subcommand, name = "invite")]
/// make an invite link (the owner, or an admin), or list and revoke invites
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

#[derive(FromArgs)]
#[argh(subcommand)]
enum InviteAction {
    List(InviteListCmd),
    Revoke(InviteRevokeCmd),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
/// list the mesh's invites: code, id, role, uses left, expiry, who made it, status
pub struct InviteListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
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

/// The link to hand out: the broker's URL plus, after `#`, the mesh root key (a URL fragment is
/// never sent to a server).
fn invite_link(url: &str, entry: &MeshEntry) -> String {
    if entry.root_key.is_empty() {
        url.to_string()
    } else {
        format!("{url}#{}", entry.root_key)
    }
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
        // The owner signs with the owner key; an admin with its own member key (the broker
        // checks that it is an admin, at registration and again at every claim).
        let signer = match entry.owner_keys() {
            Some(owner) => owner?,
            None if entry.role == "admin" => entry.member_keys()?,
            None => {
                return Err(CliError::failed(format!(
                    "only the owner or an admin of mesh \"{}\" can make invites",
                    entry.slug
                )));
            }
        };
        // Round up: the invite lives at least as long as asked (rounding down could put a
        // short one in the past by the time the broker sees it).
        let expires_ms = time::now_ms().saturating_add(lifetime.as_millis() as i64);
        let expires_at = (expires_ms + 999) / 1000;
        let client = connect(&entry).await?;
        let created = client
            .create_invite(&signer, &self.role, self.uses, expires_at)
            .await;
        client.close().await;
        let inv = created?;
        let link = invite_link(&inv.url, &entry);
        if entry.root_key.is_empty() {
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
            outln!("they join with: claudemesh join '{link}'");
            outln!(
                "the part after # is the mesh key: send the whole link privately; the broker never sees it"
            );
        }
        Ok(())
    }
}

#[derive(FromArgs)]
#[argh(subcommand, name = "join")]
/// join a mesh with an invite link (or code and --broker)
pub struct JoinCmd {
    /// invite link (http://host:port/i/CODE#KEY) or code; `-` reads it from stdin (keeps the
    /// mesh key out of the process list)
    #[argh(positional)]
    invite: String,
    /// broker URL, needed when only a code is given
    #[argh(option)]
    broker: Option<String>,
    /// your display name in the mesh (default $USER)
    #[argh(option, long = "name")]
    display: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// What an invite link names: the broker, the code, and (after `#`) the mesh root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteLink {
    /// `http(s)://host:port`.
    pub base: String,
    pub code: String,
    pub root_key: Option<[u8; 32]>,
}

/// Splits an invite link into broker base, code and root key; a bare code needs the broker
/// from elsewhere (`broker`, else `$CLAUDEMESH_BROKER_URL`) and carries no key.
pub fn parse_invite(invite: &str, broker: Option<&str>) -> Result<InviteLink, CliError> {
    let invite = invite.trim();
    let (invite, fragment) = match invite.split_once('#') {
        Some((link, key)) => (link, Some(key)),
        None => (invite, None),
    };
    let root_key = match fragment.filter(|f| !f.is_empty()) {
        Some(f) => Some(decode_root_key(f).map_err(|e| {
            CliError::Usage(format!(
                "the part after # in the invite link is not a mesh key ({e}); copy the whole link"
            ))
        })?),
        None => None,
    };
    if let Some(idx) = invite.find("/i/") {
        let base = &invite[..idx];
        let code = invite[idx + 3..].split(['?', '/']).next().unwrap_or("");
        if !ids::is_invite_code(code) {
            return Err(CliError::Usage(format!(
                "\"{code}\" is not an invite code (8 letters and digits)"
            )));
        }
        let base = http_base(base);
        if base
            .split_once("://")
            .is_none_or(|(_, host)| host.is_empty())
        {
            return Err(CliError::Usage(format!(
                "\"{invite}\" names no broker before /i/ (http://host:port/i/CODE)"
            )));
        }
        return Ok(InviteLink {
            base,
            code: code.to_string(),
            root_key,
        });
    }
    if ids::is_invite_code(invite) {
        let broker = broker
            .map(str::to_string)
            .or_else(|| std::env::var("CLAUDEMESH_BROKER_URL").ok())
            .ok_or_else(|| {
                CliError::Usage(
                    "a bare invite code needs --broker URL (or use the invite link)".into(),
                )
            })?;
        return Ok(InviteLink {
            base: http_base(&broker),
            code: invite.to_string(),
            root_key,
        });
    }
    Err(CliError::Usage(format!(
        "\"{invite}\" is neither an invite link (http://host:port/i/CODE#KEY) nor an 8-character code"
    )))
}

const NO_KEY_WARNING: &str = "warning: this invite came without its mesh key (the part after # in the full link): direct messages work, but group and broadcast messages cannot be read or sent until you run `claudemesh join` again with the full link";

impl JoinCmd {
    pub async fn run(self) -> CliResult {
        let pasted = if self.invite == "-" {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError::failed(format!("cannot read the invite from stdin: {e}")))?;
            line
        } else {
            self.invite.clone()
        };
        let InviteLink {
            base,
            code,
            root_key,
        } = parse_invite(&pasted, self.broker.as_deref())?;
        let info = http::request("GET", &format!("{base}/i/{code}?format=json"), &[], None).await?;
        if info.status == 404 {
            return Err(CliError::failed(format!(
                "the broker at {base} knows no invite {code}"
            )));
        }
        if !info.is_success() {
            return Err(info.into_error().into());
        }
        let info = info.json();
        // The broker knows the key's check value (never the key): a damaged link shows here.
        if let (Some(key), Some(check)) = (root_key, info["root_key_check"].as_str())
            && root_key_check(&key) != check
        {
            return Err(CliError::failed(
                "the mesh key in this link (after #) does not belong to this mesh: copy the whole link again",
            ));
        }
        let dir = ConfigDir::from_env();
        if let Some(done) = self.add_missing_key(&dir, &info, root_key)? {
            return done;
        }
        let display = self.display.clone().unwrap_or_else(default_display_name);
        let member = SignKeyPair::generate();
        let x25519 = BoxKeyPair::generate();
        let resp = http::claim_invite(&base, &code, &x25519.public, &display, &member).await?;
        if !resp.is_success() {
            let e = resp.into_error();
            let why = match e.code() {
                Some("expired") => "this invite has expired; ask for a new one".to_string(),
                Some("exhausted") => "this invite has been used up; ask for a new one".to_string(),
                Some("revoked") => "this invite was revoked".to_string(),
                Some("not_found") => "the broker knows no such invite".to_string(),
                Some("timestamp_skew") => {
                    "this machine's clock is more than a minute off the broker's; fix the clock"
                        .to_string()
                }
                _ => e.to_string(),
            };
            return Err(CliError::failed(format!("cannot join: {why}")));
        }
        let v = resp.json();
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let mesh_id = field("mesh_id");
        let owner_pubkey = field("owner_pubkey");
        verify_capability(
            &field("canonical_v3"),
            &field("signature_v3"),
            &mesh_id,
            &code,
        )?;
        let entry = MeshEntry {
            mesh_id,
            slug: field("mesh_slug"),
            name: field("mesh_name"),
            member_id: field("member_id"),
            display_name: v["display_name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(display),
            role: field("role"),
            broker_url: ws_url(&base),
            member_pubkey: member.public_hex(),
            member_secret_key: member.secret_hex(),
            root_key: root_key.as_ref().map(encode_root_key).unwrap_or_default(),
            owner_pubkey,
            owner_secret_key: None,
            joined_at: time::iso(time::now_ms()),
        };
        ConfigDir::from_env().update(|config| {
            config.upsert(entry.clone());
            Ok(())
        })?;
        if root_key.is_none() {
            output::error(NO_KEY_WARNING);
        }
        if self.json {
            print_json(&json!({
                "meshId": entry.mesh_id,
                "memberId": entry.member_id,
                "slug": entry.slug,
                "hasRootKey": root_key.is_some(),
            }));
        } else {
            outln!(
                "joined mesh \"{}\" ({}) as {} ({})",
                entry.name,
                entry.slug,
                entry.display_name,
                entry.role
            );
        }
        Ok(())
    }

    /// A mesh joined earlier without its key, and now a link with the key: keep the
    /// membership, add the key. `None` means: go on and claim.
    fn add_missing_key(
        &self,
        dir: &ConfigDir,
        info: &serde_json::Value,
        root_key: Option<[u8; 32]>,
    ) -> Result<Option<CliResult>, CliError> {
        let Some(key) = root_key else {
            return Ok(None);
        };
        let mesh_id = info["mesh_id"].as_str().unwrap_or_default();
        let added = dir.update(|config| {
            Ok(config
                .meshes
                .iter_mut()
                .find(|m| m.mesh_id == mesh_id && m.root_key.is_empty())
                .map(|entry| {
                    entry.root_key = encode_root_key(&key);
                    entry.slug.clone()
                }))
        })?;
        let Some(slug) = added else {
            return Ok(None);
        };
        if self.json {
            print_json(&json!({"meshId": mesh_id, "slug": slug, "hasRootKey": true}));
        } else {
            outln!("added the mesh key for \"{slug}\": group and broadcast messages work now");
        }
        Ok(Some(Ok(())))
    }
}

/// The claim's capability must be a v3 invite for this mesh and this code, signed by the key
/// it names (the owner's, or an admin's that the broker vouched for).
fn verify_capability(
    canonical_v3: &str,
    signature: &str,
    mesh_id: &str,
    code: &str,
) -> Result<(), CliError> {
    let bad = |why: &str| CliError::failed(format!("refusing the invite: {why}"));
    let fields = canonical::parse_invite_v3(canonical_v3)
        .map_err(|e| bad(&format!("its capability is malformed ({e})")))?;
    if fields.mesh_id != mesh_id || fields.code != code {
        return Err(bad("its capability names another mesh or code"));
    }
    let signer = crate::protocol::Pubkey::parse(&fields.signer_pubkey_hex)
        .map_err(|_| bad("the signer key is malformed"))?;
    let sig =
        Signature::parse(signature).map_err(|_| bad("the capability signature is missing"))?;
    if !crypto::verify(&sig.0, canonical_v3.as_bytes(), &signer.0) {
        return Err(bad("the inviter's signature does not verify"));
    }
    Ok(())
}

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
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

#[derive(FromArgs)]
#[argh(subcommand, name = "leave")]
/// forget a mesh on this machine (its keys are deleted from the config)
pub struct LeaveCmd {
    /// mesh slug or id
    #[argh(positional)]
    mesh: String,
}

impl LeaveCmd {
    pub fn run(self) -> CliResult {
        let entry = ConfigDir::from_env().update(|config| {
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
}

#[derive(FromArgs)]
#[argh(subcommand, name = "members")]
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

#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
/// revoke a member (owner or admin): its connections close and it cannot return
pub struct RevokeCmd {
    /// display name, member id, or pubkey (or a unique prefix of 8+ hex)
    #[argh(positional)]
    member: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
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
        outln!("revoked {} from mesh {}", target.display_name, entry.slug);
        Ok(())
    }
}

/// Joins with an invite URL or code (also used by `launch --join`).
pub async fn join_invite(
    invite: &str,
    broker: Option<String>,
    display: Option<String>,
    json: bool,
) -> CliResult {
    JoinCmd {
        invite: invite.to_string(),
        broker,
        display,
        json,
    }
    .run()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_links_and_codes() {
        let ok = |s: &str| {
            parse_invite(s, Some("ws://b:7900/ws"))
                .ok()
                .map(|l| (l.base, l.code))
        };
        assert_eq!(
            ok(" http://h:7900/i/AbC123xy?x=1 "),
            Some(("http://h:7900".into(), "AbC123xy".into()))
        );
        assert_eq!(
            ok("AbC123xy"),
            Some(("http://b:7900".into(), "AbC123xy".into()))
        );
        assert_eq!(ok("http://h/i/AbC123x"), None);
        assert_eq!(ok("http://h/i/../../x"), None);
        // Found by the invite_link fuzz target: an invite URL with nothing before `/i/` gave
        // the broker address `http://`.
        assert_eq!(ok("\u{b}///i/AbC00xyY"), None);
        assert_eq!(ok("/i/AbC00xyY"), None);
    }

    #[test]
    fn the_root_key_comes_from_the_fragment() {
        let key = [9u8; 32];
        let link = format!("http://h:7900/i/AbC123xy#{}", encode_root_key(&key));
        let parsed = parse_invite(&link, None).expect("a full link");
        assert_eq!(parsed.root_key, Some(key));
        assert_eq!(parsed.code, "AbC123xy");
        for bare in ["http://h:7900/i/AbC123xy", "http://h:7900/i/AbC123xy#"] {
            assert_eq!(parse_invite(bare, None).expect("no key").root_key, None);
        }
        for bad in [
            "http://h:7900/i/AbC123xy#short",
            "http://h:7900/i/AbC123xy#!!",
        ] {
            assert!(matches!(parse_invite(bad, None), Err(CliError::Usage(_))));
        }
    }
}
