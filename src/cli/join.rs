//! `join`: a mesh through an invite link (or a code and its broker). It parses the link, checks
//! what the broker answers (the landing, then the claim) against what the link carries, and
//! saves the membership. Making, listing and revoking invites is `invites.rs`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::mesh::default_display_name;
use super::output::{self, outln};
use super::{CliError, CliResult, print_json};
use crate::client::http;
use crate::client::tls::Trust;
use crate::crypto::{self, BoxKeyPair, SignKeyPair};
use crate::identity::{
    ConfigDir, MeshEntry, decode_root_key, encode_root_key, http_base, is_key_fingerprint,
    key_fingerprint, root_key_check, ws_url,
};
use crate::protocol::{Pubkey, Signature, canonical, ids, time};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "join", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh join http://broker.example:7900/i/K7Q2M9XA#key --name bob")]
/// join a mesh with an invite link (or code and --broker)
pub struct JoinCmd {
    /// invite link (http://host:port/i/CODE#KEY) or code; `-` reads it from stdin (keeps the
    /// mesh key out of the process list)
    #[argh(positional)]
    invite: String,
    /// broker URL (or lan:NAME, a broker `claudemesh discover` lists), needed when only a code
    /// is given
    #[argh(option)]
    broker: Option<String>,
    /// PEM file of the CA (or self-signed certificate) the broker's TLS certificate must
    /// chain to, instead of the public roots; remembered for this mesh (also $CLAUDEMESH_CA_FILE)
    #[argh(option)]
    ca_file: Option<std::path::PathBuf>,
    /// your display name in the mesh (default $USER)
    #[argh(option, long = "name")]
    display: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// What an invite link names: the broker, the code, and after `#` the mesh root key and the
/// fingerprints `join` checks the broker's answer against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteLink {
    /// `http(s)://host:port`.
    pub base: String,
    pub code: String,
    pub root_key: Option<[u8; 32]>,
    /// The epoch of `root_key` (`KEY~EPOCH` in the link; 0 without `~`).
    pub key_epoch: u64,
    /// The owner key's [`key_fingerprint`]; `None` in links of older versions and bare codes.
    pub owner: Option<String>,
    /// The signing admin's key fingerprint, when an admin (not the owner) made the invite.
    pub signer: Option<String>,
}

/// The part after `#`: `ROOT`, or `ROOT.OWNER` or `ROOT.OWNER.SIGNER` (ROOT may be empty, and
/// is `KEY` or `KEY~EPOCH`).
type Fragment = (Option<([u8; 32], u64)>, Option<String>, Option<String>);

fn parse_fragment(fragment: Option<&str>) -> Result<Fragment, CliError> {
    let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
        return Ok((None, None, None));
    };
    let mut parts = fragment.split('.');
    let root = parts.next().unwrap_or_default();
    let root_key = match root.split_once('~') {
        _ if root.is_empty() => None,
        None => Some((decode_root_key(root), Ok(0))),
        Some((key, epoch)) => Some((decode_root_key(key), epoch.parse::<u64>())),
    };
    let root_key = match root_key {
        None => None,
        Some((Ok(key), Ok(epoch))) => Some((key, epoch)),
        Some((Err(e), _)) => {
            return Err(CliError::Usage(format!(
                "the part after # in the invite link is not a mesh key ({e}); copy the whole link"
            )));
        }
        Some((_, Err(_))) => {
            return Err(CliError::Usage(
                "the key epoch after ~ in the invite link is not a number; copy the whole link"
                    .into(),
            ));
        }
    };
    let mut fingerprint = |what: &str| -> Result<Option<String>, CliError> {
        match parts.next() {
            None => Ok(None),
            Some(f) if is_key_fingerprint(f) => Ok(Some(f.to_string())),
            Some(_) => Err(CliError::Usage(format!(
                "the {what} fingerprint after # in the invite link is damaged; copy the whole link"
            ))),
        }
    };
    let owner = fingerprint("owner")?;
    let signer = fingerprint("inviter")?;
    if parts.next().is_some() {
        return Err(CliError::Usage(
            "the part after # in the invite link has more parts than a link has; copy the whole link"
                .into(),
        ));
    }
    Ok((root_key, owner, signer))
}

/// Splits an invite link into broker base, code, root key and fingerprints; a bare code needs
/// the broker from elsewhere (`broker`, else `$CLAUDEMESH_BROKER_URL`) and carries no key.
pub fn parse_invite(invite: &str, broker: Option<&str>) -> Result<InviteLink, CliError> {
    let invite = invite.trim();
    let (invite, fragment) = match invite.split_once('#') {
        Some((link, key)) => (link, Some(key)),
        None => (invite, None),
    };
    let (root_key, owner, signer) = parse_fragment(fragment)?;
    let (root_key, key_epoch) = match root_key {
        Some((key, epoch)) => (Some(key), epoch),
        None => (None, 0),
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
            key_epoch,
            owner,
            signer,
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
            key_epoch,
            owner,
            signer,
        });
    }
    Err(CliError::Usage(format!(
        "\"{invite}\" is neither an invite link (http://host:port/i/CODE#KEY) nor an 8-character code"
    )))
}

const NO_KEY_WARNING: &str = "warning: this invite came without its mesh key (the part after # in the full link): direct messages work, but group and broadcast messages cannot be read or sent until you run `claudemesh join` again with the full link";

const NO_OWNER_WARNING: &str = "warning: this invite names no owner key fingerprint (a link made by an older claudemesh, or a bare code), so the broker's word on who owns the mesh could not be checked against it; if the way to the broker is not trusted, ask for a new link";

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
        let trust = Trust::resolve(self.ca_file.as_deref(), None);
        let broker = match self.broker.clone() {
            Some(b) => Some(super::discover::resolve_broker(b, &trust).await?),
            None => None,
        };
        let link = parse_invite(&pasted, broker.as_deref())?;
        let (base, code, root_key) = (&link.base, &link.code, link.root_key);
        let landing = format!("{base}/i/{code}?format=json");
        let info = http::request_with("GET", &landing, &[], None, &trust).await?;
        if info.status == 404 {
            return Err(CliError::NotFound(format!(
                "the broker at {base} knows no invite {code}: check the link, or ask for a new one"
            )));
        }
        if !info.is_success() {
            return Err(info.into_error().into());
        }
        let info = info.json();
        // A code nobody can join with says so first: its landing carries no capability, key
        // check or epoch to compare the link with (a broker keeps them from whoever holds a dead
        // code), and there is nothing to claim. A broker that sends no status is taken at its
        // word that the code is usable.
        let status = info["status"].as_str().unwrap_or("valid");
        if status != "valid" {
            return Err(unusable(status, &info));
        }
        // Checked before anything is claimed, so a forged landing uses up nothing (brokers
        // before this version send no signature here; the claim answer is checked below).
        // The owner key the landing names, when the link's owner fingerprint vouches for it and
        // the owner key itself signed the invite: only then may a link's key go into a
        // membership this machine already has (an admin fingerprint in a link proves nothing
        // about who is an admin).
        let mut pinned_owner = None;
        if info["signature_v3"].is_string() {
            let owner = check_answer(&link, &info)?;
            if link.owner.is_some() && link.signer.is_none() {
                pinned_owner = Some(owner);
            }
        }
        // The broker knows the key's check value (never the key): a damaged link shows here.
        if let (Some(key), Some(check)) = (root_key, info["root_key_check"].as_str())
            && root_key_check(&key) != check
        {
            return Err(CliError::failed(
                "the mesh key in this link (after #) does not belong to this mesh, or is not its current key: copy the whole link again, or ask for a new one if the mesh key was rotated since it was made",
            ));
        }
        // The check value covers the key, not its epoch: a link must name the mesh's current
        // epoch, or it could plant the current key as a later epoch (whose sealed copy would
        // then be shadowed, and group messages sealed under it readable by whoever made the
        // link). A broker that does not say its epoch is taken to be at epoch 0.
        if root_key.is_some() {
            let current = info["key_epoch"].as_u64().unwrap_or(0);
            if link.key_epoch != current {
                return Err(CliError::failed(format!(
                    "refusing the invite: its link names the mesh key as epoch {}, but the mesh is at key epoch {current}; nothing was saved. Ask for a new link",
                    link.key_epoch
                )));
            }
        }
        let dir = ConfigDir::from_env();
        if let Some(done) = self.already_joined(
            &dir,
            &info,
            root_key.map(|k| (k, link.key_epoch)),
            pinned_owner.as_deref(),
        )? {
            return done;
        }
        if link.owner.is_none() {
            output::error(NO_OWNER_WARNING);
        }
        let display = self.display.clone().unwrap_or_else(default_display_name);
        let member = SignKeyPair::generate();
        let x25519 = BoxKeyPair::generate();
        let resp =
            http::claim_invite_with(base, code, &x25519.public, &display, &member, &trust).await?;
        if !resp.is_success() {
            let e = resp.into_error();
            let why = match e.code() {
                // Used up, revoked or expired since the landing said it was usable.
                Some(status @ ("expired" | "exhausted" | "revoked")) => {
                    return Err(unusable(status, &info));
                }
                Some("not_found") => {
                    return Err(CliError::NotFound(
                        "cannot join: the broker knows no such invite".into(),
                    ));
                }
                Some("name_taken") => format!(
                    "the name \"{display}\" is already taken in this mesh, or one that looks the same (letters from another script, other case); choose another with --name (the invite was not used)"
                ),
                Some("timestamp_skew") => {
                    "this machine's clock is more than a minute off the broker's; fix the clock"
                        .to_string()
                }
                _ => e.to_string(),
            };
            return Err(CliError::failed(format!("cannot join: {why}")));
        }
        let v = resp.json();
        let owner_pubkey = check_answer(&link, &v)?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let entry = MeshEntry {
            mesh_id: field("mesh_id"),
            slug: field("mesh_slug"),
            name: field("mesh_name"),
            member_id: field("member_id"),
            display_name: v["display_name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(display),
            role: field("role"),
            broker_url: ws_url(base),
            member_pubkey: member.public_hex(),
            member_secret_key: member.secret_hex(),
            root_key: root_key.as_ref().map(encode_root_key).unwrap_or_default(),
            owner_pubkey,
            owner_secret_key: None,
            joined_at: time::iso(time::now_ms()),
            ca_file: trust.remembered(),
            key_epoch: if root_key.is_some() {
                link.key_epoch
            } else {
                0
            },
            old_root_keys: Vec::new(),
            admin_list_version: 0,
        };
        dir.update(|config| {
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

    /// This config has joined the invite's mesh already: say so and claim nothing (no use
    /// spent, no second member). A link with the mesh key adds it to a membership made
    /// without one, and only when the landing was signed by the key the link names and names
    /// the owner this membership trusts (`pinned_owner`): otherwise a broker could hand an
    /// existing member any link and plant a key of its choosing. Keys of later epochs never
    /// come from a link here: they arrive sealed and signed (PROTOCOL.md §12.4). `None` means:
    /// not joined yet, go on and claim.
    fn already_joined(
        &self,
        dir: &ConfigDir,
        info: &serde_json::Value,
        root_key: Option<([u8; 32], u64)>,
        pinned_owner: Option<&str>,
    ) -> Result<Option<CliResult>, CliError> {
        let mesh_id = info["mesh_id"].as_str().unwrap_or_default();
        if mesh_id.is_empty() {
            return Ok(None);
        }
        let found = dir.update(|config| {
            Ok(config
                .meshes
                .iter_mut()
                .find(|m| m.mesh_id == mesh_id)
                .map(|entry| {
                    let vouched = pinned_owner == Some(entry.owner_pubkey.as_str());
                    let added = match root_key {
                        Some((key, epoch)) if entry.root_key.is_empty() && vouched => {
                            entry.key_epoch = epoch;
                            entry.root_key = encode_root_key(&key);
                            true
                        }
                        _ => false,
                    };
                    (entry.clone(), added)
                }))
        })?;
        let Some((entry, added)) = found else {
            return Ok(None);
        };
        if self.json {
            print_json(&json!({
                "meshId": entry.mesh_id,
                "memberId": entry.member_id,
                "slug": entry.slug,
                "hasRootKey": !entry.root_key.is_empty(),
                "alreadyMember": true,
            }));
        } else if added {
            outln!(
                "added the mesh key for \"{}\": group and broadcast messages work now",
                entry.slug
            );
        } else {
            outln!(
                "you are already a member of mesh \"{}\" ({}) as {} ({}); nothing to do, the invite was not used",
                entry.name,
                entry.slug,
                entry.display_name,
                entry.role
            );
        }
        Ok(Some(Ok(())))
    }
}

/// Why `join` cannot use an invite its broker calls `status` (the landing's `status`, or a
/// claim's error code), and what to do about it.
fn unusable(status: &str, landing: &serde_json::Value) -> CliError {
    let what = match status {
        "revoked" => "was revoked",
        "expired" => "has expired",
        "exhausted" => "has been used up",
        other => {
            return CliError::failed(format!(
                "cannot join: the broker says this invite cannot be used (status {other}); ask for a new one"
            ));
        }
    };
    let mesh = match landing["mesh_name"].as_str() {
        Some(name) => format!(" to mesh \"{name}\""),
        None => String::new(),
    };
    let who = landing["inviter"]
        .as_str()
        .filter(|n| !n.is_empty() && *n != "unknown")
        .map_or_else(
            || "an owner or admin of the mesh".to_string(),
            |n| format!("{n} (who made it) or another owner or admin"),
        );
    CliError::failed(format!(
        "cannot join: this invite{mesh} {what}; ask {who} for a new one"
    ))
}

/// Checks what the broker says about an invite (its landing or a claim answer) against the
/// link, and returns the owner key it names. The capability must be a v3 invite for this
/// mesh and code, signed by the key it names. A link of this version also fixes who that may
/// be: the owner key the broker names must have the link's owner fingerprint, and the signer
/// must be that owner, or the admin whose fingerprint the link carries. Without fingerprints
/// (older links) only the broker's own consistency can be checked.
fn check_answer(link: &InviteLink, v: &serde_json::Value) -> Result<String, CliError> {
    let bad = |why: &str| {
        CliError::failed(format!(
            "refusing the invite: {why}; nothing was saved. Someone between you and the broker may have changed its answer: get the link again over a channel you trust, and reach the broker over TLS"
        ))
    };
    let field = |k: &str| v[k].as_str().unwrap_or_default();
    let canonical_v3 = field("canonical_v3");
    let fields = canonical::parse_invite_v3(canonical_v3)
        .map_err(|e| bad(&format!("its capability is malformed ({e})")))?;
    if fields.mesh_id != field("mesh_id") || fields.code != link.code {
        return Err(bad("its capability names another mesh or code"));
    }
    let owner = Pubkey::parse(field("owner_pubkey"))
        .map_err(|_| bad("the broker names no valid owner key"))?;
    let signer =
        Pubkey::parse(&fields.signer_pubkey_hex).map_err(|_| bad("the signer key is malformed"))?;
    if let Some(expected) = &link.owner {
        if key_fingerprint(&owner.0) != *expected {
            return Err(bad(
                "the owner key the broker names is not the one your link names",
            ));
        }
        let signer_ok = match &link.signer {
            Some(admin) => key_fingerprint(&signer.0) == *admin,
            None => signer == owner,
        };
        if !signer_ok {
            return Err(bad(
                "the invite is not signed by the key your link names (the owner's, or the inviting admin's)",
            ));
        }
    }
    let sig = Signature::parse(field("signature_v3"))
        .map_err(|_| bad("the capability signature is missing"))?;
    if !crypto::verify(&sig.0, canonical_v3.as_bytes(), &signer.0) {
        return Err(bad("the inviter's signature does not verify"));
    }
    Ok(owner.to_hex())
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
        ca_file: None,
        display,
        json,
    }
    .run()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::members::invite_link;

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

    /// After a rotation the key part names its epoch (`KEY~EPOCH`); without `~` it is 0.
    #[test]
    fn the_fragment_may_name_the_key_epoch() {
        let key = [9u8; 32];
        let root = encode_root_key(&key);
        let fo = key_fingerprint(&SignKeyPair::generate().public);
        let parsed = parse_invite(&format!("http://h/i/AbC123xy#{root}~7.{fo}"), None)
            .expect("a link after a rotation");
        assert_eq!((parsed.root_key, parsed.key_epoch), (Some(key), 7));
        assert_eq!(parsed.owner, Some(fo.clone()));
        let parsed = parse_invite(&format!("http://h/i/AbC123xy#{root}.{fo}"), None)
            .expect("a link before rotations");
        assert_eq!((parsed.root_key, parsed.key_epoch), (Some(key), 0));
        for bad in [
            format!("{root}~"),
            format!("{root}~x"),
            format!("{root}~-1"),
        ] {
            assert!(
                matches!(
                    parse_invite(&format!("http://h/i/AbC123xy#{bad}.{fo}"), None),
                    Err(CliError::Usage(_))
                ),
                "{bad}"
            );
        }
        let mut entry = crate::identity::MeshEntry {
            mesh_id: "m".into(),
            slug: "s".into(),
            name: "n".into(),
            member_id: "u".into(),
            display_name: "d".into(),
            role: "owner".into(),
            broker_url: "ws://h/ws".into(),
            member_pubkey: String::new(),
            member_secret_key: String::new(),
            root_key: root.clone(),
            owner_pubkey: SignKeyPair::generate().public_hex(),
            owner_secret_key: None,
            joined_at: String::new(),
            ca_file: None,
            key_epoch: 0,
            old_root_keys: Vec::new(),
            admin_list_version: 0,
        };
        let signer = SignKeyPair::generate();
        let before = invite_link("http://h/i/AbC123xy", &entry, &signer);
        assert!(before.contains(&format!("#{root}.")), "{before}");
        entry.add_root_key(3, &[4; 32]);
        let after = invite_link("http://h/i/AbC123xy", &entry, &signer);
        let parsed = parse_invite(&after, None).expect("our own link parses");
        assert_eq!((parsed.root_key, parsed.key_epoch), (Some([4; 32]), 3));
    }

    #[test]
    fn the_fragment_carries_the_owner_and_signer_fingerprints() {
        let key = [9u8; 32];
        let (owner, admin) = (SignKeyPair::generate(), SignKeyPair::generate());
        let (fo, fa) = (
            key_fingerprint(&owner.public),
            key_fingerprint(&admin.public),
        );
        let root = encode_root_key(&key);
        let parsed = parse_invite(&format!("http://h:7900/i/AbC123xy#{root}.{fo}"), None)
            .expect("a link of this version");
        assert_eq!(
            (parsed.root_key, parsed.owner, parsed.signer),
            (Some(key), Some(fo.clone()), None)
        );
        let parsed = parse_invite(&format!("http://h/i/AbC123xy#{root}.{fo}.{fa}"), None)
            .expect("an admin's link");
        assert_eq!(parsed.signer, Some(fa.clone()));
        let parsed = parse_invite(&format!("http://h/i/AbC123xy#.{fo}"), None)
            .expect("an inviter without the root key");
        assert_eq!((parsed.root_key, parsed.owner), (None, Some(fo.clone())));
        for bad in [
            format!("http://h/i/AbC123xy#{root}.short"),
            format!("http://h/i/AbC123xy#{root}.{fo}.{fa}.{fa}"),
            format!("http://h/i/AbC123xy#{root}.{fo}!"),
        ] {
            assert!(
                matches!(parse_invite(&bad, None), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
    }
}
