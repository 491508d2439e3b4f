//! The mesh's graph (PROTOCOL.md §19): `graph_query` (read-only Cypher) and `graph_execute`.

use serde_json::{Map, Value};

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{GraphRequest, GraphResult};
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// Runs a read-only Cypher query (`$name` parameters from `params`).
    pub async fn graph_query(
        &self,
        cypher: &str,
        params: Option<Map<String, Value>>,
    ) -> Result<GraphResult, ClientError> {
        self.graph(ClientMessage::GraphQuery(GraphRequest {
            cypher: cypher.to_owned(),
            params,
        }))
        .await
    }

    /// Runs a Cypher statement that may write (CREATE, MERGE, SET, DELETE…).
    pub async fn graph_execute(
        &self,
        cypher: &str,
        params: Option<Map<String, Value>>,
    ) -> Result<GraphResult, ClientError> {
        self.graph(ClientMessage::GraphExecute(GraphRequest {
            cypher: cypher.to_owned(),
            params,
        }))
        .await
    }

    async fn graph(&self, body: ClientMessage) -> Result<GraphResult, ClientError> {
        match self.request(body).await? {
            ServerMessage::GraphResult(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }
}
