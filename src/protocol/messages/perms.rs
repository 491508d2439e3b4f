//! Capabilities (PROTOCOL.md §12.1): what a member may do, by role and by per-member override,
//! and the `get_perms` / `set_perms` frames.

use serde::{Deserialize, Serialize};

/// One capability. The wire and the CLI use the short names (`send`, `delete-mesh` …); the
/// original's flag names (`canSend` …) appear in refusals so both vocabularies are findable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    Invite,
    Send,
    State,
    Files,
    Tools,
    Deploy,
    Vault,
    Watches,
    Webhooks,
    Perms,
    DeleteMesh,
}

impl Permission {
    /// Every capability, in the order lists show them.
    pub const ALL: [Permission; 11] = [
        Permission::Invite,
        Permission::Send,
        Permission::State,
        Permission::Files,
        Permission::Tools,
        Permission::Deploy,
        Permission::Vault,
        Permission::Watches,
        Permission::Webhooks,
        Permission::Perms,
        Permission::DeleteMesh,
    ];

    /// The short name used on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Invite => "invite",
            Permission::Send => "send",
            Permission::State => "state",
            Permission::Files => "files",
            Permission::Tools => "tools",
            Permission::Deploy => "deploy",
            Permission::Vault => "vault",
            Permission::Watches => "watches",
            Permission::Webhooks => "webhooks",
            Permission::Perms => "perms",
            Permission::DeleteMesh => "delete-mesh",
        }
    }

    /// The refusal naming this capability, which the member called `display_name` lacks, and
    /// how to get it (the broker's, and our client's before it uploads what would be refused).
    pub fn lacked_by(self, display_name: &str) -> String {
        format!(
            "this member lacks the \"{}\" capability ({}); an owner or admin can grant it: claudemesh perms set {display_name} +{}",
            self.as_str(),
            self.original_name(),
            self.as_str()
        )
    }

    /// The original claudemesh's name of the flag.
    pub fn original_name(self) -> &'static str {
        match self {
            Permission::Invite => "canInvite",
            Permission::Send => "canSend",
            Permission::State => "canWriteState",
            Permission::Files => "canManageFiles",
            Permission::Tools => "canUseTools",
            Permission::Deploy => "canDeployMcp",
            Permission::Vault => "canManageVault",
            Permission::Watches => "canManageWatches",
            Permission::Webhooks => "canManageWebhooks",
            Permission::Perms => "canManagePermissions",
            Permission::DeleteMesh => "canDeleteMesh",
        }
    }

    /// Parses a short name (or the original's flag name).
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s || p.original_name() == s)
    }

    /// The short names, comma separated (for error messages).
    pub fn names() -> String {
        Permission::ALL.map(Permission::as_str).join(", ")
    }
}

/// `set_perms`: changes one member's overrides and/or role. Every list names capabilities by
/// their short names; `reset` drops an override (back to the role's default).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetPerms {
    /// Member id, pubkey or display name.
    pub member: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reset: Vec<String>,
    /// `member` or `admin` (owner only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One member's capabilities in a `perms` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermsEntry {
    pub member_id: String,
    pub display_name: String,
    /// The member key, 64 hex (what the owner's admin list names).
    #[serde(default)]
    pub pubkey: String,
    pub role: String,
    /// What the member may do now: the role's defaults, plus `granted`, minus `denied`.
    pub capabilities: Vec<String>,
    pub granted: Vec<String>,
    pub denied: Vec<String>,
}
