//! Capabilities (README "Governance"): `perms show [MEMBER]`, `perms set MEMBER +send -vault
//! =files --role admin`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::{Permission, PermsEntry, SetPerms};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "perms", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh perms set bob +invite -files")]
/// capabilities: who may do what in the mesh (show, set)
pub struct PermsCmd {
    #[argh(subcommand)]
    action: PermsAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum PermsAction {
    Show(PermsShowCmd),
    Set(PermsSetCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "show", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh perms show bob")]
/// show the capabilities of one member, or of everyone
struct PermsShowCmd {
    /// display name, member id or pubkey (default: everyone)
    #[argh(positional)]
    member: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {entries: [{memberId, displayName, role, capabilities, granted, denied}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "set", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh perms set bob +invite -vault =files",
    example = "claudemesh perms set carol --role admin",
    note = "Capabilities: invite, send, state, files, tools, deploy, vault, watches, webhooks, perms, delete-mesh. You need `perms`, and cannot give what you do not hold; only the owner changes roles; nobody changes the owner's."
)]
/// change a member's capabilities (+CAP grant, -CAP deny, =CAP back to the role's default)
struct PermsSetCmd {
    /// display name, member id or pubkey
    #[argh(positional)]
    member: String,
    /// +CAP, -CAP, =CAP … (the options below may also follow them)
    #[argh(positional, greedy)]
    changes: Vec<String>,
    /// change the role: member or admin (owner only)
    #[argh(option)]
    role: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the member's entry
    #[argh(switch)]
    json: bool,
}

/// `perms set bob -vault`: a denial looks like a flag to argh, so a `--` goes before the first
/// one (what follows it are the changes, parsed by [`PermsSetCmd::request`]).
pub(super) fn separate_denials(args: &mut Vec<&str>) {
    if args.get(..2) != Some(&["perms", "set"]) {
        return;
    }
    let denial = args
        .iter()
        .position(|a| a.strip_prefix('-').and_then(Permission::parse).is_some());
    if let Some(i) = denial
        && !args[..i].contains(&"--")
    {
        args.insert(i, "--");
    }
}

impl PermsSetCmd {
    /// The request, from `+CAP -CAP =CAP` and any `--role R`, `--mesh M`, `--json` among them.
    fn request(&mut self) -> Result<SetPerms, CliError> {
        let mut req = SetPerms {
            member: self.member.clone(),
            ..Default::default()
        };
        let mut words = std::mem::take(&mut self.changes).into_iter();
        while let Some(word) = words.next() {
            let mut value = |flag: &str| {
                words
                    .next()
                    .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))
            };
            match word.as_str() {
                "--role" => self.role = Some(value("--role")?),
                "--mesh" => self.mesh = Some(value("--mesh")?),
                "--json" => self.json = true,
                "--" => {}
                _ => {
                    let (list, name) = match word.split_at_checked(1) {
                        Some(("+", name)) => (&mut req.grant, name),
                        Some(("-", name)) => (&mut req.deny, name),
                        Some(("=", name)) => (&mut req.reset, name),
                        _ => {
                            return Err(CliError::Usage(format!(
                                "\"{word}\": write +CAP to grant, -CAP to deny, =CAP for the role's default"
                            )));
                        }
                    };
                    if Permission::parse(name).is_none() {
                        return Err(CliError::Usage(format!(
                            "unknown capability \"{name}\"; the capabilities are {}",
                            Permission::names()
                        )));
                    }
                    list.push(name.to_string());
                }
            }
        }
        req.role = self.role.clone();
        if req.grant.is_empty() && req.deny.is_empty() && req.reset.is_empty() && req.role.is_none()
        {
            return Err(CliError::Usage(
                "say what to change: +CAP, -CAP, =CAP or --role".into(),
            ));
        }
        Ok(req)
    }
}

fn print_entries(entries: &[PermsEntry]) {
    outln!("{:<20} {:<7} CAPABILITIES", "MEMBER", "ROLE");
    for e in entries {
        let overrides: Vec<String> = e
            .granted
            .iter()
            .map(|p| format!("+{p}"))
            .chain(e.denied.iter().map(|p| format!("-{p}")))
            .collect();
        let overrides = if overrides.is_empty() {
            String::new()
        } else {
            format!("  ({})", overrides.join(" "))
        };
        outln!(
            "{:<20} {:<7} {}{overrides}",
            e.display_name,
            e.role,
            e.capabilities.join(" ")
        );
    }
}

impl PermsCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            PermsAction::Show(c) => {
                let entries = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.get_perms(c.member.as_deref()).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "entries": entries }));
                } else {
                    print_entries(&entries);
                }
                Ok(())
            }
            PermsAction::Set(mut c) => {
                let req = c.request()?;
                let to_admin = req.role.as_deref() == Some("admin");
                let (entry, signed) =
                    with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                        Ok((client.set_perms(req).await?, client.holds_owner_key()))
                    })
                    .await?;
                if to_admin && !signed {
                    super::output::error(&format!(
                        "warning: this machine does not hold the owner key, so {} is not on the owner's signed admin list and cannot rotate the root key until the owner runs this where the owner key is",
                        entry.display_name
                    ));
                } else if to_admin && !c.json {
                    // The broker maps the name to this key: the owner can check it out of band.
                    outln!(
                        "signed {}'s member key {} onto the admin list (members take root-key rotations it signs); it should match the memberPubkey `claudemesh list --json` shows on their machine",
                        entry.display_name,
                        entry.pubkey
                    );
                }
                if c.json {
                    print_json(&entry);
                } else {
                    print_entries(std::slice::from_ref(&entry));
                }
                Ok(())
            }
        }
    }
}
