//! Peer-hosted MCP tools (issue 15 tier 1, PROTOCOL.md §14): a session registers an MCP
//! server it runs; others call its tools through the broker. Field names are the original's
//! (`serverName`, `toolName`, `callId`, `callerName` …). Arguments and results travel sealed
//! (`nonce` + `ciphertext`, crypto_box between the caller's and the host's keys); the
//! original's clients send `args` / `result` in clear, which the broker relays as they are.

use serde::{Deserialize, Serialize};

/// The largest arguments a call carries (their JSON, or their sealed form), in bytes.
pub const MAX_TOOL_ARGS_BYTES: usize = 32 * 1024;
/// The largest answer relayed back (`result` JSON + `error` + sealed form), in bytes.
pub const MAX_TOOL_RESULT_BYTES: usize = 48 * 1024;
/// How long a call waits for its host unless it asks otherwise.
pub const DEFAULT_TOOL_TIMEOUT_MS: u64 = 30_000;

/// Bytes a payload occupies on the wire: its JSON in clear plus its sealed form.
fn payload_bytes(clear: Option<&serde_json::Value>, sealed: Option<&SealedPayload>) -> usize {
    clear.map_or(0, |v| v.to_string().len())
        + sealed.map_or(0, |s| s.nonce.len() + s.ciphertext.len())
}

/// One tool of a registered server, as its MCP server lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The tool's JSON Schema for its arguments.
    #[serde(default)]
    pub input_schema: serde_json::Value,
}

/// `mcp_register`: registers (or replaces) a server hosted by this connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpRegister {
    pub server_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tools: Vec<McpToolSpec>,
    /// Kept (shown offline) when the host goes away or the broker restarts; otherwise the
    /// registration ends with the host's connection.
    #[serde(default)]
    pub persistent: bool,
}

/// One server in `mcp_list_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpServerEntry {
    pub name: String,
    pub description: String,
    /// The host's display name.
    pub hosted_by: String,
    /// The key calls are sealed to: the host's session key (or member key).
    pub host_pubkey: String,
    pub host_member_id: String,
    pub tools: Vec<McpToolSpec>,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_since: Option<String>,
    #[serde(default)]
    pub persistent: bool,
}

/// A sealed payload: crypto_box (base64 nonce and ciphertext) between caller and host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SealedPayload {
    pub nonce: String,
    pub ciphertext: String,
}

/// `mcp_call`: calls one tool of a registered server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpCall {
    pub server_name: String,
    pub tool_name: String,
    /// The arguments in clear (the original's clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// The arguments sealed to the host's key (this crate's clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
    /// How long to wait for the host (default 30 000, at most 120 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl McpCall {
    /// What the size limit counts: [`MAX_TOOL_ARGS_BYTES`].
    pub fn args_bytes(&self) -> usize {
        payload_bytes(self.args.as_ref(), self.sealed.as_ref())
    }
}

/// Broker → host: `mcp_call_forward`, a call to run on the host's MCP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpCallForward {
    pub call_id: String,
    pub server_name: String,
    pub tool_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
    /// Who calls, as the broker proved it: display name, the key it speaks with (the one
    /// `sealed` comes from and the result is sealed to), member id and member key.
    pub caller_name: String,
    pub caller_pubkey: String,
    pub caller_member_id: String,
    pub caller_member_pubkey: String,
}

/// Whether an MCP `CallToolResult` says the tool failed (`isError: true`).
pub fn reports_error(result: &serde_json::Value) -> bool {
    result["isError"].as_bool() == Some(true)
}

/// Host → broker: `mcp_call_response`, and broker → caller: `mcp_call_result` (same body,
/// without `callId`). Exactly one of `result`, `error`, `sealed` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpCallResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `{"result": …}` or `{"error": "…"}` sealed to the caller's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedPayload>,
    /// The host says the call failed (an `error`, or a result with `isError`), in clear beside
    /// a sealed answer, for the `mcp.called` record only; the caller reads the answer itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl McpCallResult {
    /// Whether the call failed, as far as the broker can tell: an `error` in clear, a result
    /// with `isError`, or the host saying so of its sealed answer.
    pub fn failed(&self) -> bool {
        self.is_error || self.error.is_some() || self.result.as_ref().is_some_and(reports_error)
    }

    /// What the size limit counts: [`MAX_TOOL_RESULT_BYTES`].
    pub fn wire_bytes(&self) -> usize {
        payload_bytes(self.result.as_ref(), self.sealed.as_ref())
            + self.error.as_ref().map_or(0, String::len)
    }
}
