//! Registered peer-hosted MCP servers (issue 15 tier 1): one row per (mesh, server name),
//! naming the presence that hosts it. Only the registry is stored; calls are relayed live and
//! never touch the disk.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::rows::mesh_rows;
use super::{Store, StoreError, decode_opt, encode};

/// `(mesh_id, server name) → McpServerRow`
pub(crate) const MCP_SERVERS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("mcp_servers");

/// Servers one mesh may have registered at once.
pub const MAX_MCP_SERVERS: usize = 100;

/// Opens the table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(MCP_SERVERS)?;
    Ok(())
}

/// One tool as stored: its schema is kept as JSON text (rmp cannot round-trip every JSON
/// value a schema may hold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolRow {
    pub name: String,
    pub description: String,
    pub input_schema_json: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerRow {
    pub name: String,
    pub description: String,
    pub tools: Vec<McpToolRow>,
    pub persistent: bool,
    pub host_member_id: String,
    pub host_name: String,
    /// Hex of the key calls are sealed to (the host's session key, else its member key).
    pub host_pubkey: String,
    /// The presence that answers calls; a later registration by the same member moves it.
    pub host_presence_id: String,
    pub registered_at_ms: i64,
}

impl From<&crate::protocol::messages::McpToolSpec> for McpToolRow {
    fn from(t: &crate::protocol::messages::McpToolSpec) -> McpToolRow {
        McpToolRow {
            name: t.name.clone(),
            description: t.description.clone(),
            input_schema_json: t.input_schema.to_string(),
        }
    }
}

impl From<McpToolRow> for crate::protocol::messages::McpToolSpec {
    fn from(t: McpToolRow) -> Self {
        crate::protocol::messages::McpToolSpec {
            input_schema: serde_json::from_str(&t.input_schema_json)
                .unwrap_or(serde_json::Value::Null),
            name: t.name,
            description: t.description,
        }
    }
}

/// How a registration went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpRegistered {
    Done,
    /// Another member's server holds the name; carries its host's display name.
    NameTaken(String),
    /// The mesh already has [`MAX_MCP_SERVERS`].
    Full,
}

/// How a removal went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpRemoved {
    Done,
    NotFound,
    /// Only its host's member, the owner or an admin remove a server; carries the host's name.
    NotYours(String),
}

impl Store {
    /// Registers `row`, replacing the same member's registration of that name, or another
    /// member's when `replaceable(row)` says its host is gone and it was not persistent.
    pub async fn register_mcp_server(
        &self,
        mesh_id: String,
        row: McpServerRow,
        replaceable: impl Fn(&McpServerRow) -> bool + Send + 'static,
    ) -> Result<McpRegistered, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(MCP_SERVERS)?;
            let key = (mesh_id.as_str(), row.name.as_str());
            let existing: Option<McpServerRow> = decode_opt(table.get(key)?)?;
            match &existing {
                Some(old) if old.host_member_id != row.host_member_id && !replaceable(old) => {
                    return Ok(McpRegistered::NameTaken(old.host_name.clone()));
                }
                Some(_) => {}
                None => {
                    let count = mesh_rows::<McpServerRow>(&table, &mesh_id)?.len();
                    if count >= MAX_MCP_SERVERS {
                        return Ok(McpRegistered::Full);
                    }
                }
            }
            table.insert(key, encode(&row).as_slice())?;
            let note = AuditNote::new(
                AuditEvent::McpRegistered,
                AuditActor::member(&row.host_member_id, &row.host_name),
            )
            .with("server", &row.name)
            .with("tools", row.tools.len())
            .with("persistent", row.persistent);
            audit::append(tx, &mesh_id, &note, row.registered_at_ms)?;
            Ok(McpRegistered::Done)
        })
        .await
    }

    /// Removes a server: asked by `by` (its host's member, or a manager when `manages`), or by
    /// the broker (`by` = `None`) when a non-persistent server's host has gone.
    pub async fn remove_mcp_server(
        &self,
        mesh_id: String,
        name: String,
        by: Option<(AuditActor, bool)>,
        now_ms: i64,
    ) -> Result<McpRemoved, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(MCP_SERVERS)?;
            let key = (mesh_id.as_str(), name.as_str());
            let Some(old) = decode_opt::<McpServerRow>(table.get(key)?)? else {
                return Ok(McpRemoved::NotFound);
            };
            let actor = match by {
                Some((actor, manages)) => {
                    if actor.member_id != old.host_member_id && !manages {
                        return Ok(McpRemoved::NotYours(old.host_name));
                    }
                    actor
                }
                None => AuditActor::broker(),
            };
            table.remove(key)?;
            let note = AuditNote::new(AuditEvent::McpRemoved, actor)
                .with("server", &old.name)
                .with("hostMemberId", &old.host_member_id);
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(McpRemoved::Done)
        })
        .await
    }

    pub fn mcp_server(
        &self,
        mesh_id: &str,
        name: &str,
    ) -> Result<Option<McpServerRow>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(MCP_SERVERS)?.get((mesh_id, name))?)
    }

    /// Every registered server of a mesh (at most [`MAX_MCP_SERVERS`]), by name.
    pub fn mcp_servers(&self, mesh_id: &str) -> Result<Vec<McpServerRow>, StoreError> {
        let rt = self.read()?;
        mesh_rows(&rt.open_table(MCP_SERVERS)?, mesh_id)
    }
}
