//! Stored records and the tables that hold them. Keys are tuples so one mesh's rows are one range.

use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::protocol::Pubkey;
use crate::protocol::messages::GroupRef;

/// `mesh_id → Mesh`
pub(crate) const MESHES: TableDefinition<&str, &[u8]> = TableDefinition::new("meshes");
/// `slug → mesh_id`
pub(crate) const MESH_SLUGS: TableDefinition<&str, &str> = TableDefinition::new("mesh_slugs");
/// `(mesh_id, member_id) → Member`
pub(crate) const MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("members");
/// `(mesh_id, pubkey hex) → member_id`
pub(crate) const MEMBER_KEYS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("member_keys");
/// `code → Invite`
pub(crate) const INVITES: TableDefinition<&str, &[u8]> = TableDefinition::new("invites");

/// Opens every table once so that read transactions never meet a missing table.
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(MESHES)?;
    tx.open_table(MESH_SLUGS)?;
    tx.open_table(MEMBERS)?;
    tx.open_table(MEMBER_KEYS)?;
    tx.open_table(INVITES)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mesh {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub owner_pubkey: Pubkey,
    /// 32 bytes, base64url without padding. Held so the broker can seal it to new members.
    pub root_key: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub self_editable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Member => "member",
        }
    }
    /// Roles an invite may grant.
    pub fn parse_invite_role(s: &str) -> Option<MemberRole> {
        match s {
            "admin" => Some(MemberRole::Admin),
            "member" => Some(MemberRole::Member),
            _ => None,
        }
    }
    pub fn can_manage(self) -> bool {
        matches!(self, MemberRole::Owner | MemberRole::Admin)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub mesh_id: String,
    pub pubkey: Pubkey,
    pub display_name: String,
    pub role: MemberRole,
    pub joined_at_ms: i64,
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
    #[serde(default)]
    pub groups: Vec<GroupRef>,
    #[serde(default)]
    pub last_seen_at_ms: Option<i64>,
    #[serde(default)]
    pub last_summary: Option<String>,
    #[serde(default)]
    pub invite_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub id: String,
    pub code: String,
    pub mesh_id: String,
    pub role: MemberRole,
    pub max_uses: u32,
    pub used: u32,
    /// Unix seconds, as signed.
    pub expires_at_s: i64,
    pub created_by: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub revoked: bool,
    pub canonical: String,
    pub signature: String,
}
