//! Broker-hosted MCP services (issue 15 tier 2, PROTOCOL.md §16): a
//! member deploys an MCP server that the broker runs in a sandbox; its tools are called with
//! `mcp_call` like a peer-hosted server's. Field names are the original's, in its snake case
//! (`server_name`, `file_id`, `memory_mb`, `network_allow`, `tool_count`, `deployed_by`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::McpToolSpec;

/// Where a service's code comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DeploySource {
    /// A file of the mesh's files area: a tar, tar.gz or zip archive (not encrypted).
    Zip { file_id: String },
    /// A git repository, cloned (depth 1) on the broker host.
    Git {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
    },
    /// An npm package run with `npx -y` (this broker's addition).
    Npm { package: String },
    /// A PyPI package run with `uvx` (this broker's addition).
    Pypi { package: String },
}

impl DeploySource {
    pub fn type_name(&self) -> &'static str {
        match self {
            DeploySource::Zip { .. } => "zip",
            DeploySource::Git { .. } => "git",
            DeploySource::Npm { .. } => "npm",
            DeploySource::Pypi { .. } => "pypi",
        }
    }
}

/// How a service runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployConfig {
    /// Environment: plain values, or `$vault:KEY` (the deployer's vault entry `KEY`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Hosts the service may reach; `["*"]` is the host's network. Empty: no network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_allow: Vec<String>,
    /// `node`, `python` or `bun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The program and its arguments, run in the service's code directory (this broker's
    /// addition; without it the entry point is found from the code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// Who may see and call a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Scope {
    /// Only the member who deployed it.
    Peer,
    Mesh,
    /// These members (ids), and the deployer.
    Peers {
        peers: Vec<String>,
    },
    Group {
        group: String,
    },
    Groups {
        groups: Vec<String>,
    },
    /// Presences with this role: a group role (`@group:role`) or the member role.
    Role {
        role: String,
    },
}

/// A scope as a request gives it: the original's `"peer"`, `"mesh"`, `{peers}`, `{group}`,
/// `{groups}`, `{role}`, or the `{type, …}` form answers carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScopeSpec {
    Word(String),
    Tagged(Scope),
    Peers { peers: Vec<String> },
    Group { group: String },
    Groups { groups: Vec<String> },
    Role { role: String },
}

impl ScopeSpec {
    /// The scope it names (member names in `peers` still to be resolved to ids).
    pub fn to_scope(&self) -> Result<Scope, String> {
        Ok(match self.clone() {
            ScopeSpec::Word(w) => match w.as_str() {
                "peer" => Scope::Peer,
                "mesh" => Scope::Mesh,
                other => {
                    return Err(format!(
                        "scope \"{other}\" is not one of peer, mesh, {{peers}}, {{group}}, {{groups}}, {{role}}"
                    ));
                }
            },
            ScopeSpec::Tagged(s) => s,
            ScopeSpec::Peers { peers } => Scope::Peers { peers },
            ScopeSpec::Group { group } => Scope::Group { group },
            ScopeSpec::Groups { groups } => Scope::Groups { groups },
            ScopeSpec::Role { role } => Scope::Role { role },
        })
    }
}

/// `mcp_deploy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpDeploy {
    pub server_name: String,
    pub source: DeploySource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DeployConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSpec>,
}

/// `mcp_deploy_check` (addition): would `mcp_deploy` of this name, config and scope be
/// refused for a reason known before its source is fetched (the name, the config, the scope,
/// the sandbox, a name taken, the mesh's services quota)? Answered `ack` or that refusal; a
/// client asks before uploading an archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpDeployCheck {
    pub server_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DeployConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeSpec>,
}

/// `mcp_update`: restart with the same source fetched again, or with a new one (addition).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpUpdate {
    pub server_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DeploySource>,
}

/// `mcp_deploy_status`: answers `mcp_deploy` and `mcp_update` (and `deploy_status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpDeployStatus {
    pub server_name: String,
    /// `building`, `installing`, `running`, `restarting`, `failed` or `stopped`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<McpToolSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether it runs in the sandbox (addition).
    #[serde(default)]
    pub sandboxed: bool,
    /// The cgroup directories holding it with its limits (addition); absent: per-process
    /// rlimits only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<String>,
}

/// One service in `mcp_catalog_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    /// Always `mcp` here.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub status: String,
    pub tool_count: usize,
    /// The deployer's display name.
    pub deployed_by: String,
    pub scope: Scope,
    pub source_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub created_at: String,
    /// Times it was restarted after ending (addition).
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
