//! MCP tools for the mesh's vector collections, under the original's names: vector_store,
//! vector_search, vector_delete, list_collections; and vector_create, vector_delete_collection
//! (this broker's additions).
//! Embeddings come from the caller: these tools store and search vectors, they never compute
//! them.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshArg, MeshTools, json_text};
use crate::protocol::messages::{VectorSearch, VectorStore};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VectorCreateArgs {
    /// The collection's name (letters, digits, _ - .).
    pub collection: String,
    /// Numbers per vector (1 to 4096).
    pub dimension: usize,
    /// "cosine" (default), "dot" or "euclid".
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VectorStoreArgs {
    /// The collection (created with this vector's dimension and cosine if it does not exist).
    pub collection: String,
    /// The record's id (a new one when omitted; storing an existing id replaces it).
    #[serde(default)]
    pub id: Option<String>,
    /// The embedding.
    pub vector: Vec<f32>,
    /// A JSON object kept with the record and matched by search filters.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Text kept with the record and returned by searches.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VectorSearchArgs {
    pub collection: String,
    /// The query embedding (same dimension as the collection).
    pub vector: Vec<f32>,
    /// Most results (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only records whose metadata has each of these top-level keys with an equal value.
    #[serde(default)]
    pub filter: Option<serde_json::Value>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VectorDeleteArgs {
    pub collection: String,
    pub id: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VectorCollectionArgs {
    pub collection: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = vectors_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Create a vector collection with a fixed dimension and metric (cosine, dot or euclid)."
    )]
    async fn vector_create(&self, Parameters(a): Parameters<VectorCreateArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let created = c
                .vector_create(&a.collection, a.dimension, a.metric.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&created))
        })
        .await
    }

    #[tool(
        description = "Store an embedding (that you computed) with metadata and optional text in a named vector collection of the mesh."
    )]
    async fn vector_store(&self, Parameters(a): Parameters<VectorStoreArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let collection = a.collection.clone();
            let id = c
                .vector_store(VectorStore {
                    collection: a.collection,
                    id: a.id,
                    vector: a.vector,
                    metadata: a.metadata,
                    text: a.text,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("stored {id} in {collection}"))
        })
        .await
    }

    #[tool(
        description = "Nearest-neighbour search in a vector collection: the records nearest to an embedding, with an optional exact-match metadata filter."
    )]
    async fn vector_search(&self, Parameters(a): Parameters<VectorSearchArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let results = c
                .vector_search(VectorSearch {
                    collection: a.collection,
                    vector: a.vector,
                    limit: a.limit,
                    filter: a.filter,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&serde_json::json!({ "results": results })))
        })
        .await
    }

    #[tool(description = "Delete a record from a vector collection by id.")]
    async fn vector_delete(&self, Parameters(a): Parameters<VectorDeleteArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.vector_delete(&a.collection, &a.id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("deleted {} from {}", a.id, a.collection))
        })
        .await
    }

    #[tool(description = "Delete a vector collection with all its records.")]
    async fn vector_delete_collection(
        &self,
        Parameters(a): Parameters<VectorCollectionArgs>,
    ) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.vector_delete_collection(&a.collection)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("deleted collection {}", a.collection))
        })
        .await
    }

    #[tool(description = "List the mesh's vector collections (name, dimension, metric, records).")]
    async fn list_collections(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let list = c.list_collections().await.map_err(|e| e.to_string())?;
            Ok(json_text(&serde_json::json!({ "collections": list })))
        })
        .await
    }
}
