//! Peer files (issue 15 item 5, PROTOCOL.md §15): a session that opted in to
//! sharing a directory answers `list_peer_files` / `read_peer_file` of other members, relayed
//! by the broker. Frame and field names are the original's (`peer_file_request`,
//! `peer_dir_request`, `targetPubkey`, `filePath`, `dirPath`, `entries` …); the content and
//! the listing travel `sealed` to the reader's key (crypto_box, as tool results do, §14), so
//! the broker relays ciphertext and sees only names, paths and sizes.

use serde::{Deserialize, Serialize};

pub use super::shared_tools::SealedPayload;

/// The most content one answer carries, in bytes: its sealed, base64 form must fit one frame
/// (`MAX_MESSAGE_BYTES`, 64 KiB by default). A request without `offset`/`length` (the
/// original's) gets files up to this size whole; larger ones are read in chunks of it.
pub const MAX_PEER_CHUNK_BYTES: u64 = 40 * 1024;
/// The largest file a host serves, in chunks.
pub const MAX_PEER_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// The longest `pattern` a listing may carry, in bytes.
pub const MAX_PEER_PATTERN_BYTES: usize = 256;
/// The largest answer relayed back (`sealed` nonce + ciphertext, `error`, `entries`), in bytes.
pub const MAX_PEER_FILES_ANSWER_BYTES: usize = 56 * 1024;
/// How long a request waits for its host unless it asks otherwise.
pub const DEFAULT_PEER_FILES_TIMEOUT_MS: u64 = 15_000;
/// The longest path a request may name, in bytes.
pub const MAX_PEER_PATH_BYTES: usize = 1024;
/// How deep a listing goes unless asked otherwise, and at most.
pub const DEFAULT_LIST_DEPTH: u32 = 2;
pub const MAX_LIST_DEPTH: u32 = 6;
/// The most names one listing carries.
pub const MAX_LIST_ENTRIES: usize = 1000;

/// `peer_files_share`: this connection shares a directory (the host keeps the path to
/// itself; the broker only learns that it shares).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerFilesShare {
    #[serde(default)]
    pub read_only: bool,
}

/// How far a sealed request's timestamp may be from the host's clock, in milliseconds.
pub const MAX_PEER_REQUEST_SKEW_MS: i64 = 60_000;

/// What the reader seals (crypto_box from its proven key to the host's member key) into a
/// request, so that the host answers only what this reader asked of this host: a broker can
/// neither forge a request nor redirect the answer to another key (PROTOCOL §15).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedPeerRequest {
    /// `read` or `list`.
    pub kind: String,
    /// The same path as the request's clear `filePath` / `dirPath`.
    pub path: String,
    /// The host's member key the reader targeted.
    pub host_pubkey: String,
    /// Random, once per request: the host refuses one it has seen.
    pub nonce: String,
    /// Milliseconds since the epoch; within [`MAX_PEER_REQUEST_SKEW_MS`] of the host's clock.
    pub timestamp: i64,
    /// A chunked read: the same `offset` and `length` as the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// A filtered listing: the same `pattern` as the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// `peer_file_request`: read one file of the peer whose key (member or session) or display
/// name is `targetPubkey`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerFileRequest {
    pub target_pubkey: String,
    pub file_path: String,
    /// A chunk of the file: `length` bytes (at most [`MAX_PEER_CHUNK_BYTES`]) from `offset`.
    /// Without them the host sends the whole file, if it fits one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// A [`SealedPeerRequest`], relayed to the host as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `peer_dir_request`: the names under `dirPath` (empty: the shared root).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerDirRequest {
    pub target_pubkey: String,
    #[serde(default)]
    pub dir_path: String,
    /// A glob the listed paths (relative to `dirPath`) must match, e.g. `src/**/*.rs`: `*`
    /// and `?` stay within one name, `**` crosses directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// How many levels below `dirPath` to list (default 2, at most 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A [`SealedPeerRequest`], relayed to the host as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
}

/// Who asks, as the broker proved it: set by the broker on every forward, never by a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    /// The key the reader proved (session key, else member key): the answer is sealed to it.
    pub requester_pubkey: String,
    pub requester_name: String,
    pub requester_member_id: String,
}

/// Broker → host: `peer_file_request_forward`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerFileRequestForward {
    pub request_id: String,
    #[serde(flatten)]
    pub requester: Requester,
    pub file_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
}

/// Broker → host: `peer_dir_request_forward`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerDirRequestForward {
    pub request_id: String,
    #[serde(flatten)]
    pub requester: Requester,
    pub dir_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub depth: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
}

/// What a host answers, and what the reader gets back: exactly one of `sealed` and `error`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerFilesAnswer {
    /// Host → broker only: the forward's `requestId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// File: the bytes; listing: `{"entries":[…],"truncated":bool}` as JSON. Sealed from the
    /// host's key to `requesterPubkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
    /// Why the host refused, in clear: it names the path the broker already saw, and may tell
    /// more (`too_large` the file's size, `not_a_file` its type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The refusal's code: `not_found`, `forbidden_path`, `not_a_file`, `too_large`,
    /// `invalid_argument`, `host_busy`, `timeout`, `unverified`, `host_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A chunked read's answer: the file's whole size, in bytes (the chunk is `sealed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Broker → reader only: the key the answer is sealed from (the host's proven key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pubkey: Option<String>,
    /// Broker → reader only: the host's member key (who the display name stands for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_member_pubkey: Option<String>,
    /// Broker → reader only: the host's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
}

impl PeerFilesAnswer {
    /// What the answer size limit counts: [`MAX_PEER_FILES_ANSWER_BYTES`].
    pub fn wire_bytes(&self) -> usize {
        self.sealed
            .as_ref()
            .map_or(0, |s| s.nonce.len() + s.ciphertext.len())
            + self.error.as_ref().map_or(0, String::len)
            + self.code.as_ref().map_or(0, String::len)
    }
}

/// `peer_file_response` (host → broker) and `peer_file_response_forward` (broker → reader).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerFileResponse {
    #[serde(default)]
    pub file_path: String,
    #[serde(flatten)]
    pub answer: PeerFilesAnswer,
}

/// `peer_dir_response` (host → broker) and `peer_dir_response_forward` (broker → reader).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerDirResponse {
    #[serde(default)]
    pub dir_path: String,
    #[serde(flatten)]
    pub answer: PeerFilesAnswer,
}

/// The sealed body of a listing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerListing {
    /// Paths relative to the listed directory; directories end with `/`.
    pub entries: Vec<String>,
    /// More names exist than the caps allowed (depth, count or size).
    #[serde(default)]
    pub truncated: bool,
}

/// Why a path is refused before it reaches any file system (broker and host both check):
/// empty where a file is meant, absolute, with a `..` component, a NUL or too long.
pub fn path_problem(path: &str, file: bool) -> Option<String> {
    if path.len() > MAX_PEER_PATH_BYTES {
        return Some(format!(
            "the path is {} bytes; the limit is {MAX_PEER_PATH_BYTES}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Some("the path contains a NUL byte".into());
    }
    if file && path.trim_matches('/').is_empty() {
        return Some("give the path of a file inside the shared directory".into());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Some(format!(
            "\"{path}\" is absolute: paths are relative to the shared directory"
        ));
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Some(format!(
            "\"{path}\" climbs out with \"..\": paths stay inside the shared directory"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_paths_are_named_and_plain_ones_pass() {
        for bad in [
            "../../etc/passwd",
            "a/../../b",
            "/etc/passwd",
            "\\x",
            "C:x",
            "a\0b",
        ] {
            assert!(path_problem(bad, true).is_some(), "{bad:?}");
        }
        assert!(path_problem("", true).is_some());
        assert!(path_problem("", false).is_none(), "the root may be listed");
        for good in ["a.txt", "src/main.rs", "a..b", ".hidden/x", "./a"] {
            assert_eq!(path_problem(good, true), None, "{good:?}");
        }
    }

    #[test]
    fn an_answer_reads_as_the_original_names_it() {
        let r = PeerFileResponse {
            file_path: "a.txt".into(),
            answer: PeerFilesAnswer {
                error: Some("no".into()),
                code: Some("not_found".into()),
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"filePath": "a.txt", "error": "no", "code": "not_found"})
        );
    }
}
