//! Capabilities (PROTOCOL.md §12.1): which frame needs which capability, the one check every
//! guarded handler goes through, and `get_perms` / `set_perms`.

use crate::broker::connection::Conn;
use crate::broker::state::Broker;
use crate::protocol::messages::{Permission, PermsEntry, SetPerms};
use crate::protocol::{ClientMessage, ServerMessage};
use crate::store::{MemberPerms, MemberRole, PermsChange, PermsRefusal};

/// Most entries one `perms` answer carries.
const MAX_LISTED: usize = 1000;

/// The capability a frame needs, if any. A new guarded frame gets its line here; a handler
/// that guards only part of what it does calls [`require`] itself.
pub fn needed(frame: &ClientMessage) -> Option<Permission> {
    use ClientMessage as M;
    Some(match frame {
        M::Send(_) | M::Schedule(_) | M::Publish { .. } => Permission::Send,
        M::SetState(_)
        | M::Remember(_)
        | M::Forget { .. }
        | M::ShareContext(_)
        | M::CreateTask(_)
        | M::ClaimTask { .. }
        | M::CompleteTask { .. }
        | M::ReleaseTask { .. }
        | M::CreateStream { .. }
        | M::ShareSkill(_)
        | M::RemoveSkill { .. }
        | M::SetClock { .. }
        | M::PauseClock {}
        | M::ResumeClock {} => Permission::State,
        M::FileToken(t) if t.purpose == "upload" => Permission::Files,
        M::DeleteFile(_) | M::GrantFileAccess(_) => Permission::Files,
        M::CreateInvite(_) | M::RevokeInvite { .. } | M::ListInvites {} => Permission::Invite,
        // A Telegram join code lets someone in as a member too (owner or admin besides).
        M::TelegramInvite {} => Permission::Invite,
        M::SetPerms(_) => Permission::Perms,
        M::McpRegister(_) | M::McpCall(_) => Permission::Tools,
        M::PeerFileRequest(_) | M::PeerDirRequest(_) | M::PeerFilesShare(_) => Permission::Files,
        // Widening a service's scope lets others call code the member deployed: a member who
        // lost `deploy` cannot. Reading the scope, logs and undeploy need no capability.
        M::McpDeploy(_)
        | M::McpDeployCheck(_)
        | M::McpUpdate(_)
        | M::McpScope { scope: Some(_), .. } => Permission::Deploy,
        M::VaultSet(_) | M::VaultDelete { .. } => Permission::Vault,
        M::MeshExecute(_) => Permission::State,
        M::GraphExecute(_) => Permission::State,
        M::VectorCreate(_) | M::VectorStore(_) | M::VectorDelete { .. } => Permission::State,
        M::VectorDeleteCollection { .. } => Permission::State,
        M::Watch(_) | M::Unwatch { .. } => Permission::Watches,
        M::CreateWebhook(_) | M::DeleteWebhook { .. } => Permission::Webhooks,
        _ => return None,
    })
}

/// Whether this connection's member holds `p` now (read at the time of the check, so a change
/// applies at once to connections already in). On `false` the refusal is already sent:
/// `error{code:"forbidden"}` naming the capability.
pub fn require(conn: &Conn, req_id: &Option<String>, p: Permission) -> bool {
    let Some(peer) = conn.peer.as_ref() else {
        return false;
    };
    match conn.broker.store.holds(&peer.mesh_id, &peer.member_id, p) {
        Ok(true) => true,
        Ok(false) => {
            conn.error(req_id.clone(), "forbidden", p.lacked_by(&peer.display_name));
            false
        }
        Err(e) => {
            conn.error(req_id.clone(), "internal", e.to_string());
            false
        }
    }
}

/// Whether `member_id` is, as the store says now, the owner or an admin and not revoked: a
/// presence's role is the one its hello found, which `set_perms` may have changed since.
pub fn is_manager(broker: &Broker, mesh_id: &str, member_id: &str) -> bool {
    broker
        .store
        .member(mesh_id, member_id)
        .ok()
        .flatten()
        .is_some_and(|m| m.role.can_manage() && m.revoked_at_ms.is_none())
}

fn entry(m: &MemberPerms) -> PermsEntry {
    let names = |set: &std::collections::BTreeSet<Permission>| {
        set.iter().map(|p| p.as_str().to_string()).collect()
    };
    PermsEntry {
        member_id: m.member.id.clone(),
        display_name: m.member.display_name.clone(),
        pubkey: m.member.pubkey.to_hex(),
        role: m.member.role.as_str().into(),
        capabilities: names(&m.effective()),
        granted: names(&m.overrides.granted),
        denied: names(&m.overrides.denied),
    }
}

/// `get_perms {member?}`: one member's capabilities, or every member's. Anyone in the mesh may
/// read them (as `list_members` shows roles).
pub fn get_perms(conn: &Conn, req_id: Option<String>, member: Option<String>) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let store = &conn.broker.store;
    let found = match member {
        None => store.all_perms(&peer.mesh_id),
        Some(target) => match store.find_member(&peer.mesh_id, &target) {
            Ok(Some(m)) => store
                .member_perms(&peer.mesh_id, &m.id)
                .map(|p| p.into_iter().collect()),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(e),
        },
    };
    match found {
        Ok(list) if list.is_empty() => conn.error(
            req_id,
            "not_found",
            "no such member in this mesh (give a member id, pubkey or display name)",
        ),
        Ok(list) => {
            let entries = list.iter().take(MAX_LISTED).map(entry).collect();
            conn.reply(req_id, ServerMessage::Perms { entries });
        }
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}

fn parse_all(names: &[String]) -> Result<Vec<Permission>, String> {
    names
        .iter()
        .map(|n| {
            Permission::parse(n).ok_or_else(|| {
                format!(
                    "unknown capability \"{n}\"; the capabilities are {}",
                    Permission::names()
                )
            })
        })
        .collect()
}

/// `set_perms {member, grant?, deny?, reset?, role?}` → `perms` with the changed member.
pub async fn set_perms(conn: &Conn, req_id: Option<String>, req: SetPerms) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let parsed = (
        parse_all(&req.grant),
        parse_all(&req.deny),
        parse_all(&req.reset),
    );
    let (grant, deny, reset) = match parsed {
        (Ok(g), Ok(d), Ok(r)) => (g, d, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return conn.error(req_id, "invalid_argument", e);
        }
    };
    let role = match req.role.as_deref() {
        None => None,
        Some(r) => match MemberRole::parse_invite_role(r) {
            Some(role) => Some(role),
            None => {
                return conn.error(
                    req_id,
                    "invalid_argument",
                    "role must be \"member\" or \"admin\" (a mesh has one owner)",
                );
            }
        },
    };
    if let Some(p) = grant.iter().find(|p| deny.contains(p)) {
        return conn.error(
            req_id,
            "invalid_argument",
            format!("\"{}\" is both granted and denied", p.as_str()),
        );
    }
    let change = PermsChange {
        grant: grant.into_iter().collect(),
        deny: deny.into_iter().collect(),
        reset: reset.into_iter().collect(),
        role,
    };
    let result = conn
        .broker
        .store
        .set_perms(
            peer.mesh_id.clone(),
            peer.member_id.clone(),
            req.member.clone(),
            change,
        )
        .await;
    let (code, message) = match result {
        Ok(Ok(m)) => {
            return conn.reply(
                req_id,
                ServerMessage::Perms {
                    entries: vec![entry(&m)],
                },
            );
        }
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
        Ok(Err(refusal)) => match refusal {
            PermsRefusal::NotFound => (
                "not_found",
                format!("no member \"{}\" in this mesh", req.member),
            ),
            PermsRefusal::NoPermsCapability => {
                ("forbidden", Permission::Perms.lacked_by(&peer.display_name))
            }
            PermsRefusal::IsOwner => (
                "forbidden",
                "nobody changes the mesh owner's capabilities or role".into(),
            ),
            PermsRefusal::AdminTarget => (
                "forbidden",
                "only the owner or an admin changes an admin's capabilities".into(),
            ),
            PermsRefusal::RoleByOwnerOnly => {
                ("forbidden", "only the mesh owner changes roles".into())
            }
            PermsRefusal::NotHeld(p) => (
                "forbidden",
                format!(
                    "you cannot give the \"{}\" capability ({}): you do not hold it yourself",
                    p.as_str(),
                    p.original_name()
                ),
            ),
        },
    };
    conn.error(req_id, code, message);
}
