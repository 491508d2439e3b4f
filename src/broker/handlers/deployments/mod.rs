//! Broker-hosted MCP services (issue 15 tier 2, PROTOCOL.md §16):
//! `mcp_deploy`, `mcp_update`, `mcp_undeploy`, `mcp_logs`, `mcp_scope`, `mcp_schema`,
//! `mcp_catalog`, `mcp_deploy_status`, and `mcp_call` to a deployed service (routed here from
//! `shared_tools.rs`). Deploying needs the `deploy` capability (perms `needed()`); calling
//! needs `tools` and the deployment's scope. The services themselves run in
//! `broker::deployments`.

use std::sync::Arc;
use std::time::Duration;

use super::reply::{self, Refusal, Reply, aside, me, ok_ack, refuse};
use super::shared_tools::{CallOutcome, CallRecord, check_args_size, proven_key};
use crate::broker::connection::Conn;
use crate::broker::deployments::hosts::AllowList;
use crate::broker::deployments::sandbox::{self, Isolation, Network};
use crate::broker::deployments::{LOG_LINES, Launch, Status, not_running, source};
use crate::broker::files::{self, endpoints};
use crate::broker::presence::Peer;
use crate::broker::shared_tools::MAX_CALLS_IN_FLIGHT;
use crate::broker::state::Broker;
use crate::client::deployments;
use crate::client::shared_tools::{open_from, seal_to};
use crate::protocol::messages::{
    CatalogEntry, DEFAULT_TOOL_TIMEOUT_MS, DeployConfig, DeploySource, Envelope,
    MAX_TOOL_RESULT_BYTES, McpCall, McpCallResult, McpDeploy, McpDeployCheck, McpDeployStatus,
    McpServerEntry, McpToolSpec, McpUpdate, Scope, ScopeSpec, reports_error,
};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{AuditActor, AuditEvent, Deployed, DeploymentRow, McpToolRow};
use object_store::ObjectStoreExt as _;

mod call;
mod install;

pub(super) use call::call;
use install::fetch_and_install;

/// The longest a deploy waits for its service to start and list its tools.
const START_WAIT: Duration = Duration::from_secs(45);
use deployments::MAX_NAME;
const MAX_ENV: usize = 64;
const MAX_ENV_VALUE: usize = 4096;
const MAX_SCOPE_ENTRIES: usize = 100;
const MIN_MEMORY_MB: u64 = 32;
const MAX_MEMORY_MB: u64 = 16 * 1024;
const MAX_TIMEOUT_MS: u64 = 120_000;
/// Log lines `mcp_logs` gives unless asked.
const DEFAULT_LOG_LINES: usize = 100;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, Refusal> {
    serde_json::from_str(text).map_err(|e| {
        refuse(
            "internal",
            format!("stored deployment {what} unreadable: {e}"),
        )
    })
}

fn not_deployed(name: &str) -> Refusal {
    refuse(
        "not_found",
        format!(
            "no service \"{}\" is deployed in this mesh (claudemesh deployments lists them)",
            name.chars().take(MAX_NAME).collect::<String>()
        ),
    )
}

fn find(broker: &Broker, peer: &Peer, name: &str) -> Result<DeploymentRow, Refusal> {
    broker
        .store
        .deployment(&peer.mesh_id, name)?
        .ok_or_else(|| not_deployed(name))
}

/// Only the deployer, the owner or an admin change or stop a deployment.
fn may_manage(broker: &Broker, peer: &Peer, row: &DeploymentRow) -> Result<(), Refusal> {
    if peer.member_id == row.deployer_member_id || reply::actor(broker, peer).manages {
        Ok(())
    } else {
        Err(refuse(
            "forbidden",
            format!(
                "\"{}\" was deployed by {}: only its deployer, the owner or an admin may change it",
                row.name, row.deployer_name
            ),
        ))
    }
}

/// Whether `caller` is within a deployment's scope. Its deployer always is.
fn in_scope(scope: &Scope, row: &DeploymentRow, caller: &Peer) -> bool {
    if caller.member_id == row.deployer_member_id {
        return true;
    }
    let groups = || caller.state().groups.clone();
    match scope {
        Scope::Peer => false,
        Scope::Mesh => true,
        Scope::Peers { peers } => peers.contains(&caller.member_id),
        Scope::Group { group } => groups().iter().any(|g| &g.name == group),
        Scope::Groups { groups: wanted } => groups().iter().any(|g| wanted.contains(&g.name)),
        // The member role the broker stored (owner, admin, member), never a role a session
        // claims for itself in a group.
        Scope::Role { role } => caller.role.as_str() == role,
    }
}

fn scope_of(row: &DeploymentRow) -> Scope {
    serde_json::from_str(&row.scope_json).unwrap_or(Scope::Peer)
}

fn require_scope(row: &DeploymentRow, caller: &Peer) -> Result<(), Refusal> {
    if in_scope(&scope_of(row), row, caller) {
        Ok(())
    } else {
        Err(refuse(
            "forbidden",
            format!(
                "\"{}\" is not shared with you (its scope: {}); its deployer can widen it with claudemesh deployments scope {} SCOPE",
                row.name,
                deployments::scope_text(&scope_of(row)),
                row.name
            ),
        ))
    }
}

/// A scope from a request, with member names in `peers` turned into member ids.
fn resolve_scope(broker: &Broker, peer: &Peer, spec: Option<ScopeSpec>) -> Result<Scope, Refusal> {
    let scope = match spec {
        None => return Ok(Scope::Peer),
        Some(s) => s.to_scope().map_err(|e| refuse("invalid_argument", e))?,
    };
    let short = |what: &str, v: &str| -> Result<(), Refusal> {
        if v.is_empty() || v.chars().count() > MAX_NAME {
            Err(refuse(
                "invalid_argument",
                format!("scope {what} must be 1 to {MAX_NAME} characters"),
            ))
        } else {
            Ok(())
        }
    };
    Ok(match scope {
        Scope::Peers { peers } => {
            if peers.is_empty() || peers.len() > MAX_SCOPE_ENTRIES {
                return Err(refuse(
                    "invalid_argument",
                    format!("scope peers must name 1 to {MAX_SCOPE_ENTRIES} members"),
                ));
            }
            let mut ids = Vec::new();
            for p in peers {
                let m = broker.store.find_member(&peer.mesh_id, &p)?.ok_or_else(|| {
                    refuse(
                        "invalid_argument",
                        format!(
                            "scope peers: no member \"{}\" in this mesh (give a name, member id or key)",
                            p.chars().take(MAX_NAME).collect::<String>()
                        ),
                    )
                })?;
                if !ids.contains(&m.id) {
                    ids.push(m.id);
                }
            }
            Scope::Peers { peers: ids }
        }
        Scope::Group { group } => {
            short("group", &group)?;
            Scope::Group { group }
        }
        Scope::Groups { groups } => {
            if groups.is_empty() || groups.len() > MAX_SCOPE_ENTRIES {
                return Err(refuse(
                    "invalid_argument",
                    format!("scope groups must name 1 to {MAX_SCOPE_ENTRIES} groups"),
                ));
            }
            for g in &groups {
                short("group", g)?;
            }
            Scope::Groups { groups }
        }
        Scope::Role { role } => {
            short("role", &role)?;
            Scope::Role { role }
        }
        other => other,
    })
}

/// Checks a config: env names and sizes, memory, network.
fn check_config(config: &DeployConfig) -> Result<(u64, Network), Refusal> {
    let bad = |m: String| refuse("invalid_argument", m);
    if config.env.len() > MAX_ENV {
        return Err(bad(format!("at most {MAX_ENV} env variables")));
    }
    for (k, v) in &config.env {
        let ok = !k.is_empty()
            && k.len() <= 128
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(bad(format!(
                "env name \"{}\" must be letters, digits and '_', not starting with a digit",
                k.chars().take(128).collect::<String>()
            )));
        }
        if matches!(k.as_str(), "PATH" | "HOME" | "TMPDIR") {
            return Err(bad(format!("env {k} is set by the broker")));
        }
        // The value is never echoed: it may be a secret given in clear.
        if v.len() > MAX_ENV_VALUE || v.contains('\0') {
            return Err(bad(format!(
                "env {k}: a value may be at most {MAX_ENV_VALUE} bytes, without NUL"
            )));
        }
    }
    let memory = config.memory_mb.unwrap_or(sandbox::DEFAULT_MEMORY_MB);
    if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&memory) {
        return Err(bad(format!(
            "memory_mb must be {MIN_MEMORY_MB} to {MAX_MEMORY_MB}"
        )));
    }
    if let Some(c) = config.cpus
        && !(c > 0.0 && c <= 64.0)
    {
        return Err(bad("cpus must be above 0 and at most 64".into()));
    }
    let network = match config.network_allow.as_slice() {
        [] => Network::Off,
        [all] if all == "*" => Network::Host,
        list => Network::Hosts(Arc::new(AllowList::parse(list).map_err(bad)?)),
    };
    if let Network::Hosts(_) = network
        && let Some(k) = config
            .env
            .keys()
            .find(|k| sandbox::PROXY_ENV.contains(&k.as_str()))
    {
        return Err(bad(format!(
            "env {k} is set by the broker for a service limited to named hosts (it points at the service's proxy)"
        )));
    }
    if let Some(r) = &config.runtime
        && !matches!(r.as_str(), "node" | "python" | "bun")
    {
        return Err(bad(format!(
            "runtime \"{}\" is not one of node, python, bun",
            r.chars().take(32).collect::<String>()
        )));
    }
    if config.command.len() > 64 || config.command.iter().any(|a| a.len() > 4096) {
        return Err(bad("command: at most 64 arguments of 4096 bytes".into()));
    }
    Ok((memory, network))
}

/// What to start for a stored deployment.
fn launch(broker: &Broker, row: &DeploymentRow) -> Result<Launch, Refusal> {
    if !broker
        .store
        .is_active_member(&row.mesh_id, &row.deployer_member_id)?
    {
        return Err(refuse(
            "forbidden",
            format!(
                "{} deployed this service and is no longer an active member of the mesh (revoked or banned); an owner or admin can update it to take it over, or undeploy it",
                row.deployer_name
            ),
        ));
    }
    let src: DeploySource = parse("source", &row.source_json)?;
    let config: DeployConfig = parse("config", &row.config_json)?;
    let (memory_mb, network) = check_config(&config)?;
    let app = broker.services.dir(&row.mesh_id, &row.name).join("app");
    let program =
        source::entry_command(&app, &src, &config).map_err(|e| refuse("invalid_argument", e))?;
    Ok(Launch {
        mesh_id: row.mesh_id.clone(),
        name: row.name.clone(),
        deployer_member_id: row.deployer_member_id.clone(),
        program,
        env: config.env.into_iter().collect(),
        memory_mb,
        cpus: config.cpus,
        network,
    })
}

/// The right to act for `peer` while the guard lives, or `revoked`. Deploys run beside the
/// connection's frames (a fetch can take minutes), outside the guard every frame holds, so they
/// take it themselves before they commit: a revocation waits for what holds it and refuses
/// what comes after, and a deploy racing its deployer's revocation never lands after it.
async fn acting(peer: &Peer) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, Refusal> {
    peer.authorised().await.ok_or_else(|| {
        refuse(
            "revoked",
            format!(
                "{} was revoked while this ran; nothing was changed",
                peer.display_name
            ),
        )
    })
}

/// Starts the stored `row`'s service, then gives up `acting` (the service is registered, so a
/// revocation from here on finds and stops it) and waits for it to settle.
async fn run(
    broker: &Broker,
    row: &DeploymentRow,
    isolation: Isolation,
    acting: tokio::sync::RwLockReadGuard<'_, ()>,
) -> Reply {
    let service = broker.services.start(launch(broker, row)?, isolation).await;
    drop(acting);
    let _ = tokio::time::timeout(START_WAIT, service.settled_after(0)).await;
    let view = service.view();
    if view.status == Status::Running {
        let tools: Vec<McpToolRow> = view.tools.iter().map(McpToolRow::from).collect();
        broker
            .store
            .set_deployment_tools(row.mesh_id.clone(), row.name.clone(), json(&tools))
            .await?;
    }
    Ok(Some(status_frame(&row.name, &view)))
}

fn status_frame(name: &str, view: &crate::broker::deployments::ServiceView) -> ServerMessage {
    ServerMessage::McpDeployStatus(Box::new(McpDeployStatus {
        server_name: name.to_string(),
        status: view.status.as_str().into(),
        tools: Some(view.tools.clone()),
        error: view.error.clone(),
        sandboxed: view.sandboxed,
        cgroups: view.cgroups.clone(),
    }))
}

/// How the service will run, refused when this broker cannot run it (no sandbox) or cannot
/// hold it to its `network` (named hosts without a sandbox).
async fn sandbox_or_refuse(broker: &Broker, network: &Network) -> Result<Isolation, Refusal> {
    let isolation = broker
        .services
        .isolation()
        .await
        .map_err(|e| refuse("not_supported", e))?;
    sandbox::confines(&isolation, network).map_err(|e| refuse("not_supported", e))?;
    Ok(isolation)
}

fn quota_exceeded(max: usize) -> Refusal {
    refuse(
        "quota_exceeded",
        format!(
            "this mesh already has {max} deployed services (the broker's --max-services); undeploy one first"
        ),
    )
}

/// `mcp_deploy` → `mcp_deploy_status` once the service runs (or failed to start).
pub fn mcp_deploy(conn: &Conn, req_id: Option<String>, d: McpDeploy) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    aside(conn, req_id, async move {
        let config = d.config.clone().unwrap_or_default();
        let (scope, isolation) =
            admissible(&broker, &peer, &d.server_name, &config, d.scope.clone()).await?;
        // Held until the row is stored: concurrent deploys take the last places one by one.
        let deploying = broker.services.deploy_lock(&peer.mesh_id).await;
        let existing = taken_or_full(&broker, &peer, &d.server_name)?;
        let max = broker.services.max_per_mesh;
        let now = time::now_ms();
        let row = DeploymentRow {
            name: d.server_name.clone(),
            mesh_id: peer.mesh_id.clone(),
            deployer_member_id: peer.member_id.clone(),
            deployer_name: peer.display_name.clone(),
            source_json: json(&d.source),
            config_json: json(&config),
            scope_json: json(&scope),
            tools_json: "[]".into(),
            created_at_ms: existing.as_ref().map_or(now, |o| o.created_at_ms),
            updated_at_ms: now,
        };
        let landed = async {
            fetch_and_install(&broker, &peer, &row, &d.source, &config).await?;
            let acting = acting(&peer).await?;
            if put(&broker, &peer, &row, AuditEvent::McpDeployed).await? == Deployed::Full {
                return Err(quota_exceeded(max));
            }
            Ok(acting)
        }
        .await;
        let acting = match landed {
            Ok(acting) => acting,
            Err(e) => {
                // A new name that did not land leaves no directory (the lock is still held,
                // so no other deploy of this name is writing there).
                if existing.is_none() {
                    let dir = broker.services.dir(&row.mesh_id, &row.name);
                    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                }
                return Err(e);
            }
        };
        drop(deploying);
        if let Some(old) = &existing {
            drop_packed_archive(&broker, &peer, old, &row.source_json).await;
        }
        run(&broker, &row, isolation, acting).await
    });
}

/// `mcp_deploy_check` → `ack`, or the refusal `mcp_deploy` would give before fetching anything
/// (advisory: a deploy in between may still take the name or the last place).
pub fn mcp_deploy_check(conn: &Conn, req_id: Option<String>, c: McpDeployCheck) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    reply::answer(conn, req_id, async move {
        let config = c.config.unwrap_or_default();
        admissible(&broker, &peer, &c.server_name, &config, c.scope).await?;
        taken_or_full(&broker, &peer, &c.server_name)?;
        Ok(Some(ok_ack()))
    });
}

/// What `mcp_deploy` checks first: the name, the config, the scope, the sandbox, and that no
/// peer-hosted server has the name. Returns the scope and how the service would run.
async fn admissible(
    broker: &Broker,
    peer: &Peer,
    name: &str,
    config: &DeployConfig,
    scope: Option<ScopeSpec>,
) -> Result<(Scope, Isolation), Refusal> {
    // The name becomes a directory under `<data>/services/<mesh>/`.
    deployments::check_name(name).map_err(|e| refuse("invalid_argument", e))?;
    let (_, network) = check_config(config)?;
    let scope = resolve_scope(broker, peer, scope)?;
    let isolation = sandbox_or_refuse(broker, &network).await?;
    if let Some(s) = broker.store.mcp_server(&peer.mesh_id, name)? {
        return Err(refuse(
            "conflict",
            format!(
                "\"{}\" is already a peer-hosted MCP server (hosted by {}); pick another name",
                s.name, s.host_name
            ),
        ));
    }
    Ok((scope, isolation))
}

/// The deployment `name` of this member, if any; refused when another member's service has the
/// name, or when it is new and the mesh has its most services.
fn taken_or_full(
    broker: &Broker,
    peer: &Peer,
    name: &str,
) -> Result<Option<DeploymentRow>, Refusal> {
    let existing = broker.store.deployment(&peer.mesh_id, name)?;
    if let Some(old) = &existing
        && old.deployer_member_id != peer.member_id
    {
        return Err(refuse(
            "conflict",
            format!(
                "\"{}\" is already deployed by {}; pick another name",
                old.name, old.deployer_name
            ),
        ));
    }
    let max = broker.services.max_per_mesh;
    if existing.is_none() && broker.store.deployments(&peer.mesh_id)?.len() >= max {
        return Err(quota_exceeded(max));
    }
    Ok(existing)
}

/// Deletes the archive `deploy --dir` uploaded for `old` (a file tagged
/// [`deployments::ARCHIVE_TAG`], named after the service, from its deployer) once nothing
/// refers to it: the service is undeployed, or `now_source` is other code. An archive the
/// deployer shared himself (`--file`) stays his.
async fn drop_packed_archive(broker: &Broker, peer: &Peer, old: &DeploymentRow, now_source: &str) {
    if old.source_json == now_source {
        return;
    }
    let Ok(DeploySource::Zip { file_id }) = serde_json::from_str(&old.source_json) else {
        return;
    };
    let Ok(Some(record)) = broker.store.file(&old.mesh_id, &file_id) else {
        return;
    };
    let packed = record.tags.iter().any(|t| t == deployments::ARCHIVE_TAG)
        && record.name == format!("{}.tar", old.name)
        && record.uploader_member_id == old.deployer_member_id;
    if packed {
        let by = AuditActor::member(&peer.member_id, &peer.display_name);
        if let Err(e) = endpoints::remove_file(broker, &old.mesh_id, &file_id, by).await {
            tracing::warn!("cannot remove the archive of {}: {e}", old.name);
        }
    }
}

/// `mcp_update` → `mcp_deploy_status`: the source fetched again (or the new one), restarted.
pub fn mcp_update(conn: &Conn, req_id: Option<String>, u: McpUpdate) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    aside(conn, req_id, async move {
        let mut row = find(&broker, &peer, &u.server_name)?;
        let before = row.clone();
        may_manage(&broker, &peer, &row)?;
        let new_code = u.source.is_some();
        let src: DeploySource = match u.source {
            Some(s) => s,
            None => parse("source", &row.source_json)?,
        };
        let config: DeployConfig = parse("config", &row.config_json)?;
        let (_, network) = check_config(&config)?;
        let isolation = sandbox_or_refuse(&broker, &network).await?;
        if new_code && peer.member_id != row.deployer_member_id {
            // New code from someone else: from now on it is theirs, and its `$vault:`
            // references open their entries, never the previous deployer's.
            row.deployer_member_id = peer.member_id.clone();
            row.deployer_name = peer.display_name.clone();
        }
        fetch_and_install(&broker, &peer, &row, &src, &config).await?;
        let acting = acting(&peer).await?;
        row.source_json = json(&src);
        row.updated_at_ms = time::now_ms();
        put(&broker, &peer, &row, AuditEvent::McpUpdated).await?;
        drop_packed_archive(&broker, &peer, &before, &row.source_json).await;
        run(&broker, &row, isolation, acting).await
    });
}

/// `mcp_undeploy` → `ack{ok:true}`: stops the service and removes it and its files.
pub fn mcp_undeploy(conn: &Conn, req_id: Option<String>, name: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    aside(conn, req_id, async move {
        let _acting = acting(&peer).await?;
        let row = find(&broker, &peer, &name)?;
        may_manage(&broker, &peer, &row)?;
        broker.services.stop(&row.mesh_id, &row.name).await;
        let actor = AuditActor::member(&peer.member_id, &peer.display_name);
        broker
            .store
            .remove_deployment(row.mesh_id.clone(), row.name.clone(), actor, time::now_ms())
            .await?;
        drop_packed_archive(&broker, &peer, &row, "").await;
        let dir = broker.services.dir(&row.mesh_id, &row.name);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        Ok(Some(ok_ack()))
    });
}

/// `mcp_logs {server_name, lines?}` → `mcp_logs_result`: the tail of its stderr and of the
/// supervisor's notes; for its deployer, the owner and admins (a service may print secrets).
pub fn mcp_logs(conn: &Conn, req_id: Option<String>, name: String, lines: Option<usize>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    reply::answer(conn, req_id, async move {
        let row = find(&broker, &peer, &name)?;
        may_manage(&broker, &peer, &row)?;
        let n = lines.unwrap_or(DEFAULT_LOG_LINES).clamp(1, LOG_LINES);
        let lines = broker
            .services
            .get(&row.mesh_id, &row.name)
            .map(|s| s.tail(n))
            .unwrap_or_default();
        Ok(Some(ServerMessage::McpLogsResult {
            server_name: row.name,
            lines,
        }))
    });
}

/// `mcp_scope {server_name, scope?}` → `mcp_scope_result`: reads it (anyone in scope), or
/// sets it (its deployer, the owner or an admin).
pub fn mcp_scope(conn: &Conn, req_id: Option<String>, name: String, scope: Option<ScopeSpec>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    reply::answer(conn, req_id, async move {
        let mut row = find(&broker, &peer, &name)?;
        match scope {
            None => require_scope(&row, &peer)?,
            Some(spec) => {
                may_manage(&broker, &peer, &row)?;
                let scope = resolve_scope(&broker, &peer, Some(spec))?;
                row.scope_json = json(&scope);
                row.updated_at_ms = time::now_ms();
                put(&broker, &peer, &row, AuditEvent::McpScopeChanged).await?;
            }
        }
        Ok(Some(ServerMessage::McpScopeResult {
            scope: scope_of(&row),
            server_name: row.name,
            deployed_by: row.deployer_name,
        }))
    });
}

/// Stores `row` as `peer`'s change, audited as `event`, within the mesh's quota of services.
async fn put(
    broker: &Broker,
    peer: &Peer,
    row: &DeploymentRow,
    event: AuditEvent,
) -> Result<Deployed, Refusal> {
    let actor = AuditActor::member(&peer.member_id, &peer.display_name);
    Ok(broker
        .store
        .put_deployment(row.clone(), actor, event, broker.services.max_per_mesh)
        .await?)
}

/// The tools of a deployment: as its running service lists them, else as last stored.
fn tools(broker: &Broker, row: &DeploymentRow) -> Vec<McpToolSpec> {
    if let Some(s) = broker.services.get(&row.mesh_id, &row.name) {
        let view = s.view();
        if view.status == Status::Running {
            return view.tools;
        }
    }
    serde_json::from_str::<Vec<McpToolRow>>(&row.tools_json)
        .unwrap_or_default()
        .into_iter()
        .map(McpToolSpec::from)
        .collect()
}

/// `mcp_schema {server_name, tool_name?}` → `mcp_schema_result`, for callers in scope.
pub fn mcp_schema(conn: &Conn, req_id: Option<String>, name: String, tool: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    reply::answer(conn, req_id, async move {
        let row = find(&broker, &peer, &name)?;
        require_scope(&row, &peer)?;
        let mut tools = tools(&broker, &row);
        if let Some(t) = &tool {
            tools.retain(|x| &x.name == t);
            if tools.is_empty() {
                return Err(refuse(
                    "not_found",
                    format!(
                        "\"{}\" has no tool \"{}\"",
                        row.name,
                        t.chars().take(128).collect::<String>()
                    ),
                ));
            }
        }
        Ok(Some(ServerMessage::McpSchemaResult {
            server_name: row.name,
            tools,
        }))
    });
}

fn status_of(broker: &Broker, row: &DeploymentRow) -> (String, u32, Option<String>) {
    match broker.services.get(&row.mesh_id, &row.name) {
        Some(s) => {
            let v = s.view();
            (v.status.as_str().into(), v.restarts, v.error)
        }
        None => (Status::Stopped.as_str().into(), 0, None),
    }
}

/// `mcp_catalog` → `mcp_catalog_result`: every deployment of the mesh with its status, scope
/// and tool count (names and scopes are visible to the whole mesh; calls follow the scope).
pub fn mcp_catalog(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    reply::answer(conn, req_id, async move {
        let mut services = Vec::new();
        for row in broker.store.deployments(&peer.mesh_id)? {
            let (status, restarts, error) = status_of(&broker, &row);
            let config: DeployConfig = parse("config", &row.config_json)?;
            let src: DeploySource = parse("source", &row.source_json)?;
            services.push(CatalogEntry {
                kind: "mcp".into(),
                description: format!("deployed by {}", row.deployer_name),
                status,
                tool_count: tools(&broker, &row).len(),
                deployed_by: row.deployer_name.clone(),
                scope: scope_of(&row),
                source_type: src.type_name().into(),
                runtime: source::runtime(
                    &broker.services.dir(&row.mesh_id, &row.name).join("app"),
                    &src,
                    &config,
                ),
                created_at: time::iso(row.created_at_ms),
                restarts,
                error,
                name: row.name,
            });
        }
        Ok(Some(ServerMessage::McpCatalogResult { services }))
    });
}

/// `mcp_deploy_status {server_name}` → `mcp_deploy_status` now, for callers in scope.
pub fn mcp_deploy_status(conn: &Conn, req_id: Option<String>, name: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    reply::answer(conn, req_id, async move {
        let row = find(&broker, &peer, &name)?;
        require_scope(&row, &peer)?;
        let view = match broker.services.get(&row.mesh_id, &row.name) {
            Some(s) => s.view(),
            None => crate::broker::deployments::ServiceView {
                status: Status::Stopped,
                tools: tools(&broker, &row),
                restarts: 0,
                error: None,
                sandboxed: false,
                cgroups: Vec::new(),
            },
        };
        Ok(Some(status_frame(&row.name, &view)))
    });
}

/// The deployments `caller` may call, as `mcp_list` entries hosted by "broker".
pub(super) fn list_entries(broker: &Broker, caller: &Peer) -> Result<Vec<McpServerEntry>, Refusal> {
    let host_pubkey = broker
        .key
        .as_ref()
        .map(|k| hex::encode(k.public))
        .unwrap_or_default();
    let mut out = Vec::new();
    for row in broker.store.deployments(&caller.mesh_id)? {
        if !in_scope(&scope_of(&row), &row, caller) {
            continue;
        }
        let (status, _, _) = status_of(broker, &row);
        out.push(McpServerEntry {
            description: format!("broker-hosted service deployed by {}", row.deployer_name),
            hosted_by: "broker".into(),
            host_pubkey: host_pubkey.clone(),
            host_member_id: String::new(),
            tools: tools(broker, &row),
            online: status == Status::Running.as_str(),
            offline_since: None,
            persistent: true,
            name: row.name,
        });
    }
    Ok(out)
}

/// Stops the services `member_id` deployed in `mesh_id`, who was just revoked or banned: they
/// run no more (nor start with the broker) while the member is not an active member.
pub async fn stop_services_of(broker: &Broker, mesh_id: &str, member_id: &str) {
    let rows = match broker.store.deployments(mesh_id) {
        Ok(rows) => rows,
        Err(e) => return tracing::error!("cannot read the deployments: {e}"),
    };
    for row in rows.iter().filter(|r| r.deployer_member_id == member_id) {
        broker.services.stop(&row.mesh_id, &row.name).await;
    }
}

/// Starts every stored deployment when the broker starts.
pub async fn start_all(broker: Arc<Broker>) {
    match broker.store.all_deployments() {
        Ok(rows) => start_rows(&broker, rows).await,
        Err(e) => tracing::error!("cannot read the deployments: {e}"),
    }
}

/// Starts again the services `member_id` deployed in `mesh_id`, who was just unbanned (those
/// of a member still not active are refused by `launch`, as at broker start).
pub async fn start_services_of(broker: &Broker, mesh_id: &str, member_id: &str) {
    match broker.store.deployments(mesh_id) {
        Ok(rows) => {
            let rows = rows
                .into_iter()
                .filter(|r| r.deployer_member_id == member_id)
                .collect();
            start_rows(broker, rows).await
        }
        Err(e) => tracing::error!("cannot read the deployments: {e}"),
    }
}

async fn start_rows(broker: &Broker, rows: Vec<DeploymentRow>) {
    if rows.is_empty() {
        return;
    }
    let isolation = match broker.services.isolation().await {
        Ok(i) => i,
        Err(e) => {
            return tracing::error!("{} deployed service(s) not started: {e}", rows.len());
        }
    };
    for row in rows {
        match launch(broker, &row) {
            Ok(l) => {
                broker.services.start(l, isolation.clone()).await;
            }
            Err(Refusal { message, .. }) => {
                tracing::error!("service {} not started: {message}", row.name)
            }
        }
    }
}
