//! The mesh's graph (PROTOCOL.md §19): `graph_query` (read-only Cypher) and `graph_execute`
//! (writes), both answered by `graph_result`. Field names are the original's (`cypher`,
//! `records`); `params` and `truncated` are this broker's additions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest Cypher text a request may carry.
pub const MAX_CYPHER_BYTES: usize = 16 * 1024;

/// `graph_query` and `graph_execute`: a Cypher statement and its parameters (`$name` in the
/// text, bound by the engine, never spliced into it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GraphRequest {
    pub cypher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// `graph_result`: one JSON object per record, column name → value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphResult {
    pub records: Vec<Map<String, Value>>,
    /// Records were left out to keep the answer within its caps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}
