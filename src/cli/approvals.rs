//! Remote approval of agents' tool use (issue 18, README "Remote approval"): `approvers`,
//! `approvers set alice,@leads`, `approvers clear`, `approvals [--wait]`, `approve ID`,
//! `deny ID`.

use argh::{ArgsInfo, FromArgs};

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::client::approvals::{Approval, Approvers};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "approvers", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh approvers")]
#[argh(example = "claudemesh approvers set alice,@leads")]
#[argh(example = "claudemesh approvers clear")]
/// show who may approve your agents' tool use remotely (nobody by default)
pub struct ApproversCmd {
    #[argh(subcommand)]
    action: Option<ApproversAction>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {approvers:[...], resolved:[{memberId, displayName, pubkey, via}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum ApproversAction {
    Set(ApproversSetCmd),
    Clear(ApproversClearCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "set", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh approvers set alice,@leads")]
/// replace your approvers: members (name, key prefix or member id) and @groups, comma-separated
struct ApproversSetCmd {
    /// who may answer your agents' permission prompts, e.g. alice,@leads
    #[argh(positional)]
    list: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {approvers:[...], resolved:[{memberId, displayName, pubkey, via}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "clear", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh approvers clear")]
/// remove every approver: permission prompts stay on your machine
struct ApproversClearCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {approvers:[...], resolved:[{memberId, displayName, pubkey, via}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "approvals", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh approvals")]
#[argh(example = "claudemesh approvals --wait --json")]
/// list the permission prompts of other members' agents that you may answer
pub struct ApprovalsCmd {
    /// wait until at least one is pending
    #[argh(switch)]
    wait: bool,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {approvals:[{id, requestId, requester, toolName, description, inputPreview, ageSecs, expiresAt, ...}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "approve", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh approve 3f9a0c12de")]
/// allow the tool use a pending permission prompt asks for
pub struct ApproveCmd {
    /// the request's id (from `claudemesh approvals`)
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id, requestId, behavior, decidedBy, decidedByMemberId}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "deny", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deny 3f9a0c12de")]
/// deny the tool use a pending permission prompt asks for
pub struct DenyCmd {
    /// the request's id (from `claudemesh approvals`)
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id, requestId, behavior, decidedBy, decidedByMemberId}
    #[argh(switch)]
    json: bool,
}

/// `alice,@leads` → member ids (names resolved) and groups as given.
async fn resolve_list(c: &MeshClient, list: &str) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.starts_with('@') {
            out.push(item.to_string());
        } else {
            out.push(c.resolve_peer(item).await?);
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage(
            "name at least one approver (e.g. alice,@leads), or use `approvers clear`".into(),
        ));
    }
    Ok(out)
}

fn show_approvers(a: &Approvers, json: bool) {
    if json {
        print_json(a);
        return;
    }
    if a.approvers.is_empty() {
        outln!("no approvers: your agents' permission prompts stay on your machine");
        return;
    }
    let names: Vec<String> = a
        .resolved
        .iter()
        .map(|r| format!("{} (via {})", r.display_name, r.via))
        .collect();
    let groups: Vec<&str> = a
        .approvers
        .iter()
        .filter(|s| s.starts_with('@'))
        .map(String::as_str)
        .collect();
    outln!("approvers now: {}", names.join(", "));
    if !groups.is_empty() {
        outln!(
            "groups ({}) count whoever is in them when a prompt is sent",
            groups.join(", ")
        );
    }
}

impl ApproversCmd {
    pub async fn run(self) -> CliResult {
        let (mesh, json) = match &self.action {
            Some(ApproversAction::Set(s)) => (s.mesh.clone(), s.json),
            Some(ApproversAction::Clear(c)) => (c.mesh.clone(), c.json),
            None => (None, false),
        };
        let mesh = mesh.or(self.mesh);
        let approvers = with_client(mesh.as_deref(), async |c| match self.action {
            Some(ApproversAction::Set(set)) => {
                let list = resolve_list(c, &set.list).await?;
                Ok(c.set_approvers(list).await?)
            }
            Some(ApproversAction::Clear(_)) => Ok(c.set_approvers(Vec::new()).await?),
            None => Ok(c.get_approvers().await?),
        })
        .await?;
        show_approvers(&approvers, json || self.json);
        Ok(())
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

fn show(a: &Approval) {
    outln!(
        "{}  {} asks {}s ago (expires in {}s): {}",
        a.id,
        a.requester,
        a.age_secs,
        ((a.expires_at - crate::protocol::time::now_ms()) / 1000).max(0),
        a.tool_name.as_deref().unwrap_or("?")
    );
    if let Some(d) = a.description.as_deref().filter(|d| !d.is_empty()) {
        outln!("    {}", one_line(d, 200));
    }
    if let Some(p) = a.input_preview.as_deref().filter(|p| !p.is_empty()) {
        outln!("    input: {}", one_line(p, 200));
    }
    if let Some(p) = &a.problem {
        outln!("    (unreadable: {p})");
    }
}

impl ApprovalsCmd {
    pub async fn run(self) -> CliResult {
        let wait = self.wait;
        let approvals = with_client(self.mesh.as_deref(), async |c| {
            Ok(if wait {
                c.wait_for_approvals().await?
            } else {
                c.pending_approvals().await?
            })
        })
        .await?;
        if self.json {
            print_json(&serde_json::json!({ "approvals": approvals }));
            return Ok(());
        }
        if approvals.is_empty() {
            outln!("no permission prompts wait for you");
        }
        for a in &approvals {
            show(a);
        }
        Ok(())
    }
}

async fn answer(mesh: Option<String>, id: String, allow: bool, json: bool) -> CliResult {
    let decision = with_client(mesh.as_deref(), async |c| {
        Ok(c.answer_approval(&id, allow).await?)
    })
    .await?;
    if json {
        print_json(&decision);
    } else {
        outln!(
            "{}: {} (request {})",
            decision.id,
            decision.behavior,
            decision.request_id
        );
    }
    Ok(())
}

impl ApproveCmd {
    pub async fn run(self) -> CliResult {
        answer(self.mesh, self.id, true, self.json).await
    }
}

impl DenyCmd {
    pub async fn run(self) -> CliResult {
        answer(self.mesh, self.id, false, self.json).await
    }
}
