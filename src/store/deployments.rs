//! Broker-hosted MCP services (issue 15 tier 2): one row per (mesh, service name) saying what
//! to run, how, and for whom, so the broker starts them again after a restart. The code itself
//! lives under `<data>/services/`; logs and running state live in memory only.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::rows::mesh_rows;
use super::{Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, service name) → DeploymentRow`
pub(crate) const DEPLOYMENTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("deployments");

/// Services one mesh may have deployed at once.
pub const MAX_DEPLOYMENTS: usize = 20;

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(DEPLOYMENTS)?;
    Ok(())
}

/// A deployment as stored. Source, config and scope are kept as their wire JSON (they hold
/// free-form maps that rmp would not round-trip as written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRow {
    pub name: String,
    pub mesh_id: String,
    pub deployer_member_id: String,
    pub deployer_name: String,
    pub source_json: String,
    pub config_json: String,
    pub scope_json: String,
    /// The tools it listed when it last started (shown while it is down).
    pub tools_json: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// How a deploy went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployed {
    Done,
    /// The mesh already has [`MAX_DEPLOYMENTS`].
    Full,
}

impl Store {
    /// Saves a deployment (new, updated or rescoped), auditing `event` in the same transaction.
    pub async fn put_deployment(
        &self,
        row: DeploymentRow,
        actor: AuditActor,
        event: AuditEvent,
        max_per_mesh: usize,
    ) -> Result<Deployed, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(DEPLOYMENTS)?;
            let key = (row.mesh_id.as_str(), row.name.as_str());
            let exists = table.get(key)?.is_some();
            if !exists && mesh_rows::<DeploymentRow>(&table, &row.mesh_id)?.len() >= max_per_mesh {
                return Ok(Deployed::Full);
            }
            table.insert(key, encode(&row).as_slice())?;
            let source_type = serde_json::from_str::<serde_json::Value>(&row.source_json)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(String::from))
                .unwrap_or_default();
            let note = AuditNote::new(event, actor)
                .with("server", &row.name)
                .with("source", source_type)
                .with("scope", &row.scope_json);
            audit::append(tx, &row.mesh_id, &note, row.updated_at_ms)?;
            Ok(Deployed::Done)
        })
        .await
    }

    /// Records the tools a running service listed (no audit: the broker's own bookkeeping).
    pub async fn set_deployment_tools(
        &self,
        mesh_id: String,
        name: String,
        tools_json: String,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(DEPLOYMENTS)?;
            let key = (mesh_id.as_str(), name.as_str());
            let row: Option<DeploymentRow> = decode_opt(table.get(key)?)?;
            if let Some(mut row) = row {
                row.tools_json = tools_json;
                table.insert(key, encode(&row).as_slice())?;
            }
            Ok(())
        })
        .await
    }

    /// Removes a deployment; false when there was none.
    pub async fn remove_deployment(
        &self,
        mesh_id: String,
        name: String,
        actor: AuditActor,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(DEPLOYMENTS)?;
            let removed = table.remove((mesh_id.as_str(), name.as_str()))?.is_some();
            if removed {
                let note = AuditNote::new(AuditEvent::McpUndeployed, actor).with("server", &name);
                audit::append(tx, &mesh_id, &note, now_ms)?;
            }
            Ok(removed)
        })
        .await
    }

    pub fn deployment(
        &self,
        mesh_id: &str,
        name: &str,
    ) -> Result<Option<DeploymentRow>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(DEPLOYMENTS)?.get((mesh_id, name))?)
    }

    /// One mesh's deployments, by name.
    pub fn deployments(&self, mesh_id: &str) -> Result<Vec<DeploymentRow>, StoreError> {
        let rt = self.read()?;
        mesh_rows(&rt.open_table(DEPLOYMENTS)?, mesh_id)
    }

    /// Every deployment of every mesh (to start them when the broker starts).
    pub fn all_deployments(&self) -> Result<Vec<DeploymentRow>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(DEPLOYMENTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}
