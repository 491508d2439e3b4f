//! Broker-hosted MCP services (README "Deployed MCP services"): `deploy NAME` runs an MCP
//! server on the broker from a directory, a shared archive, a git URL or a package;
//! `undeploy NAME` stops it; `deployments` lists them, with `logs`, `scope`, `schema`,
//! `status` and `update`. Their tools are called with `tools call`, like shared ones.

use std::path::PathBuf;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::client::deployments::{DeployError, SourceChoice, scope_text};
use crate::protocol::messages::{
    DeployConfig, DeploySource, McpDeploy, McpDeployStatus, ScopeSpec,
};

// `claudemesh service-net`, run by the broker inside a service's sandbox (never listed).
#[derive(FromArgs)]
/// relay the service's proxy port to the broker's proxy, then run the service
struct ServiceNetCmd {
    /// the broker's proxy socket, as mounted in the sandbox
    #[argh(option)]
    socket: PathBuf,
    /// the port on the sandbox's loopback to relay
    #[argh(option)]
    port: u16,
    /// the service's program and its arguments (after --)
    #[argh(positional, greedy)]
    program: Vec<String>,
}

/// Runs `service-net` with its arguments; the exit code.
pub fn service_net(name: &str, args: &[&str]) -> i32 {
    match ServiceNetCmd::from_args(&[name, "service-net"], args) {
        Ok(c) => crate::broker::deployments::service_net::main(c.socket, c.port, c.program),
        Err(early) if early.status.is_ok() => {
            super::output::ours(&early.output);
            0
        }
        Err(early) => {
            early.output.lines().for_each(super::output::error);
            2
        }
    }
}

impl From<DeployError> for CliError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Client(c) => c.into(),
            other => CliError::Failed(other.to_string()),
        }
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "deploy", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deploy weather --dir ./weather-mcp --scope mesh --env UNITS=metric")]
#[argh(example = "claudemesh deploy search --npm @acme/search-mcp --allow-net '*'")]
#[argh(
    example = "claudemesh deploy gh --dir ./gh-mcp --allow-net api.github.com --allow-net '*.githubusercontent.com'"
)]
/// run an MCP server on the broker, in its sandbox, for the mesh (needs the deploy capability)
pub struct DeployCmd {
    /// the service's name (what `tools call` uses)
    #[argh(positional)]
    name: String,
    /// a directory: packed into a tar and shared as a file first
    #[argh(option)]
    dir: Option<PathBuf>,
    /// a file of the mesh (tar, tar.gz or zip, not encrypted)
    #[argh(option)]
    file: Option<String>,
    /// a git URL (https, ssh or git), cloned on the broker host
    #[argh(option)]
    git: Option<String>,
    /// the branch to clone (with --git)
    #[argh(option)]
    branch: Option<String>,
    /// an npm package, run with `npx -y` (needs --allow-net '*' or registry.npmjs.org)
    #[argh(option)]
    npm: Option<String>,
    /// a PyPI package, run with `uvx` (needs --allow-net '*')
    #[argh(option)]
    pypi: Option<String>,
    /// who may use it: peer (you; the default), mesh, group:NAME, groups:A,B, role:NAME,
    /// peers:NAME,NAME
    #[argh(option)]
    scope: Option<String>,
    /// an environment variable, K=V or K=$vault:ENTRY (repeatable)
    #[argh(option)]
    env: Vec<String>,
    /// memory limit in MiB (default 512)
    #[argh(option)]
    memory_mb: Option<u64>,
    /// CPUs (recorded; see the README on what is enforced)
    #[argh(option)]
    cpus: Option<f64>,
    /// network access: '*' (the host's network), or a host it may reach through its proxy
    /// (api.example.com, *.example.com, 10.0.0.2, host:PORT; repeat it); without it, none
    #[argh(option)]
    allow_net: Vec<String>,
    /// node, python or bun (default: told by its files)
    #[argh(option)]
    runtime: Option<String>,
    /// the command to start it, run in its code directory (default: found from its files)
    #[argh(option)]
    command: Vec<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print the status as JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "undeploy", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh undeploy weather")]
/// stop a deployed MCP service and remove it (its deployer, the owner or an admin)
pub struct UndeployCmd {
    /// the service's name
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "deployments", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deployments")]
#[argh(example = "claudemesh deployments logs weather --lines 50")]
/// the MCP services deployed on the broker: list (default), logs, scope, schema, status, update
pub struct DeploymentsCmd {
    #[argh(subcommand)]
    action: Option<Action>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum Action {
    Logs(LogsCmd),
    Scope(ScopeCmd),
    Schema(SchemaCmd),
    Status(StatusCmd),
    Update(UpdateCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "logs", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deployments logs weather --lines 50")]
/// the tail of a service's log (its stderr and the broker's notes)
struct LogsCmd {
    #[argh(positional)]
    name: String,
    /// how many lines (default 100)
    #[argh(option)]
    lines: Option<usize>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "scope", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deployments scope weather group:ops")]
/// show a service's scope, or set it: peer, mesh, group:NAME, groups:A,B, role:NAME, peers:A,B
struct ScopeCmd {
    #[argh(positional)]
    name: String,
    #[argh(positional)]
    scope: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "schema", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deployments schema weather")]
/// a service's tools with their input schemas
struct SchemaCmd {
    #[argh(positional)]
    name: String,
    #[argh(positional)]
    tool: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deployments status weather")]
/// whether a service runs, and why not
struct StatusCmd {
    #[argh(positional)]
    name: String,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "update", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh deployments update weather")]
/// fetch a service's source again (or from a new shared file) and restart it
struct UpdateCmd {
    #[argh(positional)]
    name: String,
    /// a new archive: a file of the mesh
    #[argh(option)]
    file: Option<String>,
}

/// `mesh`, `peer`, `group:ops`, `groups:a,b`, `role:lead`, `peers:alice,bob`.
pub fn parse_scope(text: &str) -> Result<ScopeSpec, CliError> {
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    Ok(match text.split_once(':') {
        None if matches!(text, "peer" | "mesh") => ScopeSpec::Word(text.into()),
        Some(("group", g)) => ScopeSpec::Group { group: g.into() },
        Some(("groups", g)) => ScopeSpec::Groups { groups: list(g) },
        Some(("role", r)) => ScopeSpec::Role { role: r.into() },
        Some(("peers", p)) => ScopeSpec::Peers { peers: list(p) },
        _ => {
            return Err(CliError::Usage(format!(
                "scope \"{text}\" is not one of peer, mesh, group:NAME, groups:A,B, role:NAME, peers:A,B"
            )));
        }
    })
}

fn print_status(s: &McpDeployStatus, json: bool) -> CliResult {
    if json {
        print_json(s);
    } else {
        let tools = s.tools.as_deref().unwrap_or_default();
        let sandbox = match (s.sandboxed, s.cgroups.is_empty()) {
            (true, false) => "sandboxed, limits on its cgroup",
            (true, true) => "sandboxed, per-process limits",
            (false, _) => "NOT sandboxed",
        };
        outln!(
            "{}: {} ({sandbox}), {} tools",
            s.server_name,
            s.status,
            tools.len()
        );
        for t in tools {
            outln!("  - {}: {}", t.name, t.description);
        }
    }
    if s.status == "failed" {
        return Err(CliError::failed(format!(
            "{} did not start: {}",
            s.server_name,
            s.error
                .as_deref()
                .unwrap_or("see claudemesh deployments logs")
        )));
    }
    Ok(())
}

impl DeployCmd {
    fn config(&self) -> Result<DeployConfig, CliError> {
        let mut env = std::collections::BTreeMap::new();
        for kv in &self.env {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                CliError::Usage(format!(
                    "--env takes K=V (got \"{}\")",
                    kv.chars().take(40).collect::<String>()
                ))
            })?;
            env.insert(k.to_string(), v.to_string());
        }
        Ok(DeployConfig {
            env,
            memory_mb: self.memory_mb,
            cpus: self.cpus,
            network_allow: self.allow_net.clone(),
            runtime: self.runtime.clone(),
            command: self.command.clone(),
        })
    }

    fn source(&self) -> Result<Option<DeploySource>, CliError> {
        SourceChoice {
            file_id: self.file.clone(),
            dir: self.dir.is_some(),
            git_url: self.git.clone(),
            git_branch: self.branch.clone(),
            npm: self.npm.clone(),
            pypi: self.pypi.clone(),
        }
        .pick()
        .map_err(|e| CliError::Usage(format!("{e} (--dir, --file, --git, --npm, --pypi)")))
    }

    pub async fn run(self) -> CliResult {
        let source = self.source()?;
        let config = self.config()?;
        let scope = self.scope.as_deref().map(parse_scope).transpose()?;
        let status = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(match (&source, &self.dir) {
                (None, Some(dir)) => {
                    client
                        .deploy_dir(&self.name, dir, Some(config), scope)
                        .await?
                }
                (Some(source), _) => {
                    client
                        .mcp_deploy(McpDeploy {
                            server_name: self.name.clone(),
                            source: source.clone(),
                            config: Some(config),
                            scope,
                        })
                        .await?
                }
                (None, None) => unreachable!("source() checked one is given"),
            })
        })
        .await?;
        print_status(&status, self.json)
    }
}

impl UndeployCmd {
    pub async fn run(self) -> CliResult {
        with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.mcp_undeploy(&self.name).await?)
        })
        .await?;
        outln!("undeployed {}", self.name);
        Ok(())
    }
}

impl DeploymentsCmd {
    pub async fn run(self) -> CliResult {
        let json = self.json;
        let mesh = self.mesh.clone();
        match self.action {
            None => {
                let services = with_client(mesh.as_deref(), async |c: &MeshClient| {
                    Ok(c.mcp_catalog().await?)
                })
                .await?;
                if json {
                    print_json(&json!({ "services": services }));
                } else if services.is_empty() {
                    outln!(
                        "no MCP services are deployed in this mesh (claudemesh deploy adds one)"
                    );
                } else {
                    for s in services {
                        // `zip` on the wire is any shared archive (tar, tar.gz or zip).
                        let source = match s.source_type.as_str() {
                            "zip" => "an archive",
                            other => other,
                        };
                        let runtime = s.runtime.map(|r| format!("{r}, ")).unwrap_or_default();
                        outln!(
                            "{}  {} ({} tools, scope {}, {runtime}from {source}, by {})",
                            s.name,
                            s.status,
                            s.tool_count,
                            scope_text(&s.scope),
                            s.deployed_by
                        );
                    }
                }
            }
            Some(Action::Logs(c)) => {
                let lines = with_client(mesh.as_deref(), async |cl: &MeshClient| {
                    Ok(cl.mcp_logs(&c.name, c.lines).await?)
                })
                .await?;
                if json {
                    print_json(&json!({ "lines": lines }));
                } else {
                    for l in lines {
                        outln!("{l}");
                    }
                }
            }
            Some(Action::Scope(c)) => {
                let spec = c.scope.as_deref().map(parse_scope).transpose()?;
                let (scope, by) = with_client(mesh.as_deref(), async |cl: &MeshClient| {
                    Ok(cl.mcp_scope(&c.name, spec).await?)
                })
                .await?;
                if json {
                    print_json(&json!({ "scope": scope, "deployedBy": by }));
                } else {
                    outln!(
                        "{}: scope {} (deployed by {by})",
                        c.name,
                        scope_text(&scope)
                    );
                }
            }
            Some(Action::Schema(c)) => {
                let tools = with_client(mesh.as_deref(), async |cl: &MeshClient| {
                    Ok(cl.mcp_schema(&c.name, c.tool.as_deref()).await?)
                })
                .await?;
                print_json(&json!({ "tools": tools }));
            }
            Some(Action::Status(c)) => {
                let status = with_client(mesh.as_deref(), async |cl: &MeshClient| {
                    Ok(cl.mcp_deploy_status(&c.name).await?)
                })
                .await?;
                print_status(&status, json)?;
            }
            Some(Action::Update(c)) => {
                let source = c.file.clone().map(|file_id| DeploySource::Zip { file_id });
                let status = with_client(mesh.as_deref(), async |cl: &MeshClient| {
                    Ok(cl.mcp_update(&c.name, source).await?)
                })
                .await?;
                print_status(&status, json)?;
            }
        }
        Ok(())
    }
}
