//! Vectors (PROTOCOL.md §20): named collections of client-supplied embeddings with metadata,
//! searched by nearest neighbour. Frame and field names are the original's where it has them
//! (`vector_store`, `vector_search`, `vector_delete`, `list_collections`); `vector_create` is
//! this broker's addition.

use serde::{Deserialize, Serialize};

/// Creates a collection with a fixed dimension and metric (`cosine` unless given).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VectorCreate {
    pub collection: String,
    pub dimension: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// Stores a record (replacing one with the same id). A collection that does not exist is
/// created with this vector's dimension and the cosine metric, as the original does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VectorStore {
    pub collection: String,
    /// Chosen by the broker when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub vector: Vec<f32>,
    /// A JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VectorSearch {
    pub collection: String,
    pub vector: Vec<f32>,
    /// Most results (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only records whose metadata has each of these top-level keys with an equal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
}

/// One search result. `score`: cosine similarity, inner product, or Euclidean distance, by the
/// collection's metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorResult {
    pub id: String,
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionEntry {
    pub name: String,
    pub dimension: u32,
    pub metric: String,
    pub count: u64,
    pub created_by: String,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use crate::protocol::ClientMessage;

    #[test]
    fn the_original_frames_parse() {
        let store = r#"{"type":"vector_store","collection":"docs","vector":[0.5,1],"metadata":{"lang":"rust"},"text":"hi","_reqId":"r1"}"#;
        let parsed: crate::protocol::messages::Envelope<ClientMessage> =
            serde_json::from_str(store).unwrap();
        assert!(
            matches!(parsed.body, ClientMessage::VectorStore(ref s) if s.id.is_none() && s.vector == [0.5, 1.0])
        );
        let search = r#"{"type":"vector_search","collection":"docs","vector":[1,0],"limit":3}"#;
        let parsed: ClientMessage = serde_json::from_str(search).unwrap();
        assert!(matches!(parsed, ClientMessage::VectorSearch(ref s) if s.limit == Some(3)));
        let list: ClientMessage = serde_json::from_str(r#"{"type":"list_collections"}"#).unwrap();
        assert!(matches!(list, ClientMessage::ListCollections {}));
    }
}
