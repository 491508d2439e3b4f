//! MCP tools for broker-hosted services (issue 15 tier 2), with the original's names:
//! `mesh_mcp_deploy`, `mesh_mcp_undeploy`, `mesh_mcp_update`, `mesh_mcp_logs`,
//! `mesh_mcp_scope`, `mesh_mcp_schema`, `mesh_mcp_catalog`. Their tools are called with
//! `mesh_tool_call`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MeshArg, MeshTools, json_text};
use crate::client::deployments::SourceChoice;
use crate::protocol::messages::{DeployConfig, DeploySource, McpDeploy, ScopeSpec};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DeployArgs {
    /// The service's name (what mesh_tool_call uses).
    pub server_name: String,
    /// A file of the mesh: a tar, tar.gz or zip archive of the server (not encrypted).
    #[serde(default)]
    pub file_id: Option<String>,
    /// A directory on this machine: packed, shared as a file and deployed.
    #[serde(default)]
    pub dir: Option<String>,
    /// A git URL (https, ssh or git), cloned on the broker host.
    #[serde(default)]
    pub git_url: Option<String>,
    #[serde(default)]
    pub git_branch: Option<String>,
    /// An npm package run with `npx -y` (needs network_allow ["*"] or ["registry.npmjs.org"]).
    #[serde(default, alias = "npx_package")]
    pub npm_package: Option<String>,
    /// A PyPI package run with `uvx` (needs network_allow ["*"]).
    #[serde(default)]
    pub pypi_package: Option<String>,
    /// Environment: plain values or "$vault:KEY" references.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// node, python or bun (default: told by its files).
    #[serde(default)]
    pub runtime: Option<String>,
    /// The command to start it, run in its code directory (default: found from its files).
    #[serde(default)]
    pub command: Vec<String>,
    /// Memory limit in MiB (default 512).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub cpus: Option<f64>,
    /// [] (no network, the default), ["*"] (the host's network), or hosts reached through the
    /// service's HTTP proxy: "api.example.com", "*.example.com" (subdomains), "10.0.0.2", "host:443".
    #[serde(default)]
    pub network_allow: Vec<String>,
    /// "peer" (only you; the default), "mesh", {"group": G}, {"groups": [..]}, {"role": R} or {"peers": [names]}.
    #[serde(default)]
    pub scope: Option<Value>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ServiceArgs {
    pub server_name: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LogsArgs {
    pub server_name: String,
    /// How many lines (default 100).
    #[serde(default)]
    pub lines: Option<usize>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ScopeArgs {
    pub server_name: String,
    /// The new scope (as in mesh_mcp_deploy); without it the scope is shown.
    #[serde(default)]
    pub scope: Option<Value>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SchemaArgs {
    pub server_name: String,
    #[serde(default)]
    pub tool_name: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateArgs {
    pub server_name: String,
    /// A new archive (a file of the mesh); without it the source is fetched again.
    #[serde(default)]
    pub file_id: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

fn scope_spec(v: Option<Value>) -> Result<Option<ScopeSpec>, String> {
    v.map(|v| serde_json::from_value(v).map_err(|e| format!("scope: {e}")))
        .transpose()
}

impl DeployArgs {
    fn source(&self) -> Result<Option<DeploySource>, String> {
        SourceChoice {
            file_id: self.file_id.clone(),
            dir: self.dir.is_some(),
            git_url: self.git_url.clone(),
            git_branch: self.git_branch.clone(),
            npm: self.npm_package.clone(),
            pypi: self.pypi_package.clone(),
        }
        .pick()
        .map_err(|e| format!("{e} (dir, file_id, git_url, npm_package, pypi_package)"))
    }
}

#[tool_router(router = deployments_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Deploy an MCP server on the broker, run in its sandbox (no network unless allowed, no access to the broker's data): from a shared archive (file_id), a local directory (dir), a git URL or an npm/PyPI package. Needs the deploy capability. Its tools are then called with mesh_tool_call by whoever its scope admits."
    )]
    async fn mesh_mcp_deploy(&self, Parameters(a): Parameters<DeployArgs>) -> CallToolResult {
        let mesh = a.mesh.clone();
        self.with_client(mesh.as_deref(), |c| async move {
            let source = a.source()?;
            let scope = scope_spec(a.scope.clone())?;
            let config = DeployConfig {
                env: a.env.clone(),
                memory_mb: a.memory_mb,
                cpus: a.cpus,
                network_allow: a.network_allow.clone(),
                runtime: a.runtime.clone(),
                command: a.command.clone(),
            };
            let status = match (source, &a.dir) {
                (Some(source), _) => c
                    .mcp_deploy(McpDeploy {
                        server_name: a.server_name.clone(),
                        source,
                        config: Some(config),
                        scope,
                    })
                    .await
                    .map_err(|e| e.to_string())?,
                (None, Some(dir)) => c
                    .deploy_dir(&a.server_name, &PathBuf::from(dir), Some(config), scope)
                    .await
                    .map_err(|e| e.to_string())?,
                (None, None) => return Err("give a source".into()),
            };
            if status.status == "failed" {
                return Err(format!(
                    "{} did not start: {}",
                    a.server_name,
                    status.error.unwrap_or_default()
                ));
            }
            Ok(json_text(&status))
        })
        .await
    }

    #[tool(
        description = "Stop a deployed MCP service and remove it (its deployer, the owner or an admin)."
    )]
    async fn mesh_mcp_undeploy(&self, Parameters(a): Parameters<ServiceArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            c.mcp_undeploy(&a.server_name)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("undeployed {}", a.server_name))
        })
        .await
    }

    #[tool(
        description = "Fetch a deployed service's source again (or a new archive, file_id) and restart it."
    )]
    async fn mesh_mcp_update(&self, Parameters(a): Parameters<UpdateArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let source = a
                .file_id
                .clone()
                .map(|file_id| DeploySource::Zip { file_id });
            let status = c
                .mcp_update(&a.server_name, source)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&status))
        })
        .await
    }

    #[tool(
        description = "The tail of a deployed service's log: its stderr and the broker's notes (starts, exits, restarts). For its deployer, the owner and admins."
    )]
    async fn mesh_mcp_logs(&self, Parameters(a): Parameters<LogsArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let lines = c
                .mcp_logs(&a.server_name, a.lines)
                .await
                .map_err(|e| e.to_string())?;
            Ok(if lines.is_empty() {
                "(no log lines)".to_string()
            } else {
                lines.join("\n")
            })
        })
        .await
    }

    #[tool(
        description = "Show a deployed service's scope (who may see and call it), or set it: \"peer\", \"mesh\", {\"group\":G}, {\"groups\":[..]}, {\"role\":R}, {\"peers\":[names]}."
    )]
    async fn mesh_mcp_scope(&self, Parameters(a): Parameters<ScopeArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let spec = scope_spec(a.scope.clone())?;
            let (scope, by) = c
                .mcp_scope(&a.server_name, spec)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(
                &json!({"server_name": a.server_name, "scope": scope, "deployed_by": by}),
            ))
        })
        .await
    }

    #[tool(description = "The tools of a deployed service with their input schemas.")]
    async fn mesh_mcp_schema(&self, Parameters(a): Parameters<SchemaArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let tools = c
                .mcp_schema(&a.server_name, a.tool_name.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(json_text(&json!({ "tools": tools })))
        })
        .await
    }

    #[tool(
        description = "List the MCP services deployed on the broker with their status, scope, tool count and deployer."
    )]
    async fn mesh_mcp_catalog(&self, Parameters(a): Parameters<MeshArg>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let services = c.mcp_catalog().await.map_err(|e| e.to_string())?;
            if services.is_empty() {
                return Ok("no MCP services are deployed in this mesh".to_string());
            }
            Ok(json_text(&json!({ "services": services })))
        })
        .await
    }
}
