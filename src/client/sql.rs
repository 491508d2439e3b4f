//! Typed calls for per-mesh SQL (PROTOCOL.md §18): query, execute, schema.

use serde_json::Value;

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{
    MeshExecuteResult, MeshQueryResult, MeshSchemaResult, SqlStatement,
};
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// One page of a read-only statement's rows. `params`: a JSON array (`?`) or object
    /// (`:name`); `offset` from the previous page's `nextOffset`.
    pub async fn mesh_query(
        &self,
        sql: &str,
        params: Option<Value>,
        offset: Option<u64>,
        limit: Option<usize>,
    ) -> Result<MeshQueryResult, ClientError> {
        let req = ClientMessage::MeshQuery(SqlStatement {
            sql: sql.into(),
            params,
            offset,
            limit,
        });
        match self.request(req).await? {
            ServerMessage::MeshQueryResult(r) => Ok(*r),
            other => Err(unexpected(other)),
        }
    }

    /// Runs one DDL or DML statement; answers once it is on disk.
    pub async fn mesh_execute(
        &self,
        sql: &str,
        params: Option<Value>,
    ) -> Result<MeshExecuteResult, ClientError> {
        let req = ClientMessage::MeshExecute(SqlStatement {
            sql: sql.into(),
            params,
            ..SqlStatement::default()
        });
        match self.request(req).await? {
            ServerMessage::MeshExecuteResult(r) => Ok(*r),
            other => Err(unexpected(other)),
        }
    }

    /// The mesh's tables and views with their columns.
    pub async fn mesh_schema(&self) -> Result<MeshSchemaResult, ClientError> {
        match self.request(ClientMessage::MeshSchema {}).await? {
            ServerMessage::MeshSchemaResult(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }
}
