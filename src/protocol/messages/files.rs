//! Files (PROTOCOL.md §7): upload tokens, download URLs, the list, the access log and grants.

use serde::{Deserialize, Serialize};

/// `file_token{purpose:"upload"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileTokenRequest {
    pub purpose: String,
}

/// A request about one file: `get_file`, `file_status`, `delete_file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRef {
    pub file_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantFileAccess {
    pub file_id: String,
    pub peer_pubkey: String,
    /// The file key sealed to `peer_pubkey`, standard base64.
    pub sealed_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileTokenResult {
    pub token: String,
    pub expires_at: String,
    /// Where to `POST` the file (`Authorization: Bearer <token>`).
    pub url: String,
    /// The broker's upload limit.
    pub max_bytes: u64,
}

/// Answers `get_file`: a one-use download URL, and the file key sealed to the asker if the
/// file is encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileUrl {
    pub file_id: String,
    pub url: String,
    pub name: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_key: Option<String>,
}

/// One entry of `file_list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub id: String,
    pub name: String,
    pub size: u64,
    #[serde(default)]
    pub tags: Vec<String>,
    pub uploaded_by: String,
    pub uploaded_at: String,
    pub persistent: bool,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileAccessEntry {
    pub peer_name: String,
    pub accessed_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStatusResult {
    pub file_id: String,
    pub accesses: Vec<FileAccessEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantFileAccessOk {
    pub file_id: String,
    pub peer_pubkey: String,
}
