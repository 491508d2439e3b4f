//! Peer-hosted MCP tools (issue 15 tier 1, PROTOCOL.md §14): `mcp_register`, `mcp_unregister`,
//! `mcp_list`, and `mcp_call` relayed to the hosting presence as `mcp_call_forward`, whose
//! `mcp_call_response` goes back to the caller as `mcp_call_result`. The caller needs the
//! `tools` capability (perms `needed()`); the host's grants (`tools` right, blocks) are checked
//! here, before anything reaches the host.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reply::{self, Refusal, answer, me, ok_ack, refuse};
use crate::broker::connection::Conn;
use crate::broker::presence::Peer;
use crate::broker::shared_tools::{HostAnswer, NoAnswer, wait_for_host};
use crate::broker::state::Broker;
use crate::protocol::messages::{
    DEFAULT_TOOL_TIMEOUT_MS, Envelope, MAX_TOOL_ARGS_BYTES, MAX_TOOL_RESULT_BYTES, McpCall,
    McpCallForward, McpCallResult, McpRegister, McpServerEntry, McpToolSpec,
};
use crate::protocol::{ServerMessage, time};
use crate::store::{
    AuditActor, AuditEvent, AuditNote, MAX_MCP_SERVERS, McpRegistered, McpRemoved, McpServerRow,
    McpToolRow, Right,
};

/// The longest server and tool name.
const MAX_NAME: usize = 64;
pub(crate) const MAX_TOOL_NAME: usize = 128;
pub(crate) const MAX_DESCRIPTION: usize = 2048;
/// Tools one server may register.
pub const MAX_TOOLS: usize = 128;
/// The longest a call may ask to wait for its host.
const MAX_TIMEOUT_MS: u64 = 120_000;

/// The key a presence proved: its session key after a session hello, else its member key.
pub(super) fn proven_key(peer: &Peer) -> String {
    peer.proven_session().unwrap_or(peer.member_pubkey).to_hex()
}

/// The presence that hosts `row`, connected or in its lease.
fn host_presence(broker: &Broker, mesh_id: &str, row: &McpServerRow) -> Option<Arc<Peer>> {
    broker
        .presence
        .peers(mesh_id)
        .into_iter()
        .find(|p| p.presence_id == row.host_presence_id)
}

/// The presence that hosts `row`, if it is connected now.
fn live_host(broker: &Broker, mesh_id: &str, row: &McpServerRow) -> Option<Arc<Peer>> {
    host_presence(broker, mesh_id, row).filter(|p| p.is_live())
}

/// The presences of a mesh, connected or in their lease: a session that reconnects within its
/// lease takes its presence back, and its registrations with it.
fn presences(broker: &Broker, mesh_id: &str) -> HashSet<String> {
    broker
        .presence
        .peers(mesh_id)
        .into_iter()
        .map(|p| p.presence_id.clone())
        .collect()
}

pub(super) fn valid_name(what: &str, name: &str, max: usize) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.chars().count() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(refuse(
            "invalid_argument",
            format!(
                "{what} must be 1 to {max} letters, digits, '-', '_' or '.' (got \"{}\")",
                name.chars().take(max).collect::<String>()
            ),
        ))
    }
}

fn tool_rows(tools: Vec<McpToolSpec>) -> Result<Vec<McpToolRow>, Refusal> {
    if tools.len() > MAX_TOOLS {
        return Err(refuse(
            "invalid_argument",
            format!("a server may register at most {MAX_TOOLS} tools"),
        ));
    }
    let mut seen = HashSet::new();
    let mut rows = Vec::with_capacity(tools.len());
    for t in tools {
        if t.name.is_empty() || t.name.chars().count() > MAX_TOOL_NAME {
            return Err(refuse(
                "invalid_argument",
                format!("each tool needs a name of 1 to {MAX_TOOL_NAME} characters"),
            ));
        }
        if !seen.insert(t.name.clone()) {
            return Err(refuse(
                "invalid_argument",
                format!("tool \"{}\" is listed twice", t.name),
            ));
        }
        rows.push(McpToolRow {
            description: t.description.chars().take(MAX_DESCRIPTION).collect(),
            input_schema_json: t.input_schema.to_string(),
            name: t.name,
        });
    }
    Ok(rows)
}

/// Forgets non-persistent servers whose host's presence has gone (not even in its lease).
async fn prune(broker: &Broker, mesh_id: &str) -> Result<(), Refusal> {
    let present = presences(broker, mesh_id);
    for row in broker.store.mcp_servers(mesh_id)? {
        if !row.persistent && !present.contains(&row.host_presence_id) {
            broker
                .store
                .remove_mcp_server(mesh_id.to_string(), row.name, None, time::now_ms())
                .await?;
        }
    }
    Ok(())
}

/// `mcp_register` → `mcp_register_ack {serverName, toolCount}`.
pub fn mcp_register(conn: &Conn, req_id: Option<String>, reg: McpRegister) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        valid_name("serverName", &reg.server_name, MAX_NAME)?;
        let description = if reg.description.is_empty() {
            String::new()
        } else {
            reply::text("description", &reg.description, MAX_DESCRIPTION)?
        };
        let tools = tool_rows(reg.tools)?;
        if broker
            .store
            .deployment(&peer.mesh_id, &reg.server_name)?
            .is_some()
        {
            return Err(refuse(
                "conflict",
                format!(
                    "\"{}\" is a service deployed on the broker; pick another name (mcp-share --name)",
                    reg.server_name
                ),
            ));
        }
        prune(&broker, &peer.mesh_id).await?;
        let tool_count = tools.len();
        let row = McpServerRow {
            name: reg.server_name.clone(),
            description,
            tools,
            persistent: reg.persistent,
            host_member_id: peer.member_id.clone(),
            host_name: peer.display_name.clone(),
            host_pubkey: proven_key(&peer),
            host_presence_id: peer.presence_id.clone(),
            registered_at_ms: time::now_ms(),
        };
        let present = presences(&broker, &peer.mesh_id);
        let replaceable =
            move |old: &McpServerRow| !old.persistent && !present.contains(&old.host_presence_id);
        match broker
            .store
            .register_mcp_server(peer.mesh_id.clone(), row, replaceable)
            .await?
        {
            McpRegistered::Done => Ok(Some(ServerMessage::McpRegisterAck {
                server_name: reg.server_name,
                tool_count,
            })),
            McpRegistered::NameTaken(host) => Err(refuse(
                "conflict",
                format!(
                    "\"{}\" is already registered by {host}; pick another name (mcp-share --name)",
                    reg.server_name
                ),
            )),
            McpRegistered::Full => Err(refuse(
                "quota_exceeded",
                format!("this mesh already has {MAX_MCP_SERVERS} MCP servers registered"),
            )),
        }
    });
}

/// `mcp_unregister {serverName}` → `ack{ok:true}`: its host's member, the owner or an admin.
pub fn mcp_unregister(conn: &Conn, req_id: Option<String>, server_name: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let actor = reply::actor(&broker, &peer);
        let by = (AuditActor::from(&actor), actor.manages);
        match broker
            .store
            .remove_mcp_server(
                peer.mesh_id.clone(),
                server_name.clone(),
                Some(by),
                time::now_ms(),
            )
            .await?
        {
            McpRemoved::Done => Ok(Some(ok_ack())),
            McpRemoved::NotFound => Err(not_found(&server_name)),
            McpRemoved::NotYours(host) => Err(refuse(
                "forbidden",
                format!(
                    "\"{server_name}\" is hosted by {host}: only its host, the owner or an admin remove it"
                ),
            )),
        }
    });
}

fn not_found(name: &str) -> Refusal {
    refuse(
        "not_found",
        format!(
            "no MCP server \"{}\" is registered in this mesh (claudemesh tools list shows them)",
            name.chars().take(MAX_NAME).collect::<String>()
        ),
    )
}

fn entry(row: McpServerRow, host: Option<&Arc<Peer>>) -> McpServerEntry {
    let online = host.is_some_and(|h| h.is_live());
    let offline_since = host
        .and_then(|h| h.state().offline_since_ms)
        .filter(|_| !online)
        .map(time::iso);
    McpServerEntry {
        name: row.name,
        description: row.description,
        hosted_by: row.host_name,
        host_pubkey: row.host_pubkey,
        host_member_id: row.host_member_id,
        tools: row.tools.into_iter().map(McpToolSpec::from).collect(),
        online,
        offline_since,
        persistent: row.persistent,
    }
}

/// `mcp_list` → `mcp_list_result {servers}`: every server with its tools, host and whether
/// the host is connected now.
pub fn mcp_list(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        prune(&broker, &peer.mesh_id).await?;
        let mut servers: Vec<McpServerEntry> = broker
            .store
            .mcp_servers(&peer.mesh_id)?
            .into_iter()
            .map(|row| {
                let host = host_presence(&broker, &peer.mesh_id, &row);
                entry(row, host.as_ref())
            })
            .collect();
        servers.extend(super::deployments::list_entries(&broker, &peer)?);
        Ok(Some(ServerMessage::McpListResult { servers }))
    });
}

/// Whether `host`'s grants (§12.3) let `caller` do what needs `right` ("call its tools");
/// a member's own presences always may.
pub(super) fn host_grants(
    broker: &Broker,
    caller: &Peer,
    host: &Peer,
    right: Right,
    host_name: &str,
    doing: &str,
) -> Result<(), Refusal> {
    if host.member_id == caller.member_id {
        return Ok(());
    }
    let grant = broker
        .store
        .grant(&caller.mesh_id, &host.member_id, &caller.member_id)?;
    if grant.is_some_and(|g| !g.allows(right)) {
        return Err(refuse(
            "forbidden",
            format!(
                "{host_name} does not let you {doing} (its grants refuse you the \"{}\" right)",
                right.as_str()
            ),
        ));
    }
    Ok(())
}

/// How a tool call ended, as its `mcp.called` record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallOutcome {
    /// The host (or service) answered with a result.
    Ok,
    /// It answered with an error, or the call broke on the way (host gone, result too large).
    Error,
    /// The broker refused the call before it reached the host.
    Refused,
    Timeout,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Refused => "refused",
            CallOutcome::Timeout => "timeout",
        }
    }

    /// The outcome of a call that ended with error `code` after it was relayed.
    pub(super) fn of_error(code: &str) -> CallOutcome {
        if code == "timeout" {
            CallOutcome::Timeout
        } else {
            CallOutcome::Error
        }
    }

    /// The outcome of an answer that arrived: an `error` or an `isError` result in clear, or
    /// a sealed answer its host says failed, is the tool's failure.
    pub(super) fn of_result(r: &McpCallResult) -> CallOutcome {
        if r.failed() {
            CallOutcome::Error
        } else {
            CallOutcome::Ok
        }
    }
}

/// One tool call, of a peer-hosted server or a deployed service, for its `mcp.called` record:
/// who called which tool where, how it ended and how long it took — never its arguments or
/// its result.
pub(super) struct CallRecord {
    broker: Arc<Broker>,
    caller: Arc<Peer>,
    server: String,
    tool: String,
    /// The host's member id, or `broker` for a deployed service.
    host: String,
    started: Instant,
}

impl CallRecord {
    pub(super) fn new(broker: &Arc<Broker>, caller: &Arc<Peer>, call: &McpCall) -> CallRecord {
        CallRecord {
            broker: broker.clone(),
            caller: caller.clone(),
            server: call.server_name.clone(),
            tool: call.tool_name.clone(),
            host: String::new(),
            started: Instant::now(),
        }
    }

    pub(super) fn hosted_by(mut self, host: &str) -> CallRecord {
        self.host = host.to_string();
        self
    }

    /// Appends the record (before the caller's reply goes, so the log has every call the
    /// caller saw end). A failed append is logged; the call's answer still goes.
    pub(super) async fn finish(&self, outcome: CallOutcome, code: Option<&str>) {
        let note = AuditNote::new(
            AuditEvent::McpCalled,
            AuditActor::member(
                self.caller.member_id.clone(),
                self.caller.display_name.clone(),
            ),
        )
        .with("server", &self.server)
        .with("tool", &self.tool)
        .with_opt("host", Some(&self.host).filter(|h| !h.is_empty()))
        .with("outcome", outcome.as_str())
        .with_opt("code", code)
        .with("durationMs", self.started.elapsed().as_millis());
        if let Err(e) = self
            .broker
            .store
            .record_audit(&self.caller.mesh_id, note, time::now_ms())
            .await
        {
            tracing::error!(mesh = %self.caller.mesh_id, "cannot record a tool call in the audit log: {e}");
        }
    }

    /// Refuses the call before it reached a host: counted and logged now, recorded, then
    /// the error to the caller.
    pub(super) fn refuse(self, conn: &Conn, req_id: Option<String>, refusal: Refusal) {
        let Refusal { code, message } = refusal;
        conn.refused(code, &message);
        let out = conn.out.clone();
        // Tracked, so a shutdown waits for the record to be written before the store closes.
        let tasks = self.broker.tasks.clone();
        tasks.spawn(async move {
            self.finish(CallOutcome::Refused, Some(code)).await;
            out.send(&Envelope::reply(
                req_id,
                ServerMessage::error(code, message),
            ));
        });
    }
}

/// A tool call's arguments (plain or sealed) within [`MAX_TOOL_ARGS_BYTES`].
pub(super) fn check_args_size(call: &McpCall) -> Result<(), Refusal> {
    let size = call.args_bytes();
    if size > MAX_TOOL_ARGS_BYTES {
        return Err(refuse(
            "payload_too_large",
            format!(
                "the tool call's arguments are {size} bytes; the limit is {MAX_TOOL_ARGS_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// Everything a call must pass before it reaches its host: its size, the server and tool,
/// the host being connected, and the host's grants.
fn admit(broker: &Broker, caller: &Peer, call: &McpCall) -> Result<Arc<Peer>, Refusal> {
    check_args_size(call)?;
    let row = broker
        .store
        .mcp_server(&caller.mesh_id, &call.server_name)?
        .ok_or_else(|| not_found(&call.server_name))?;
    if !row.tools.iter().any(|t| t.name == call.tool_name) {
        return Err(refuse(
            "not_found",
            format!(
                "MCP server \"{}\" has no tool \"{}\" (its tools: {})",
                row.name,
                call.tool_name
                    .chars()
                    .take(MAX_TOOL_NAME)
                    .collect::<String>(),
                row.tools
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let Some(host) = live_host(broker, &caller.mesh_id, &row) else {
        let how = if row.persistent {
            "its registration is kept; calls work again once it runs `claudemesh mcp-share` again"
        } else {
            "its registration ended with it"
        };
        return Err(refuse(
            "host_offline",
            format!(
                "the host of \"{}\" ({}) is offline: {how}",
                row.name, row.host_name
            ),
        ));
    };
    host_grants(
        broker,
        caller,
        &host,
        Right::Tools,
        &row.host_name,
        "call its tools",
    )?;
    Ok(host)
}

/// `mcp_call` → `mcp_call_result` once the host answers, or an `error` frame: `not_found`,
/// `host_offline`, `forbidden`, `payload_too_large`, `result_too_large`, `rate_limited`,
/// `timeout`. The wait runs beside the connection's other requests, never in front of them.
pub fn mcp_call(conn: &Conn, req_id: Option<String>, call: McpCall) {
    let Some((broker, caller)) = me(conn) else {
        return;
    };
    // A service deployed on the broker: the broker itself is its host.
    match broker.store.deployment(&caller.mesh_id, &call.server_name) {
        Ok(Some(row)) => return super::deployments::call(conn, req_id, call, row),
        Ok(None) => {}
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    }
    let record = CallRecord::new(&broker, &caller, &call);
    let host = match admit(&broker, &caller, &call) {
        Ok(host) => host,
        Err(refusal) => return record.refuse(conn, req_id, refusal),
    };
    let record = record.hosted_by(&host.member_id);
    let (place, answered) = match broker.tool_calls.start_or_refuse(
        &caller.mesh_id,
        &caller.member_id,
        &host.presence_id,
        "tool calls",
    ) {
        Ok(started) => started,
        Err(message) => return record.refuse(conn, req_id, refuse("rate_limited", message)),
    };
    let forward = McpCallForward {
        call_id: place.call_id().to_string(),
        server_name: call.server_name.clone(),
        tool_name: call.tool_name.clone(),
        args: match (&call.args, &call.sealed) {
            (None, None) => Some(serde_json::json!({})),
            (args, _) => args.clone(),
        },
        sealed: call.sealed.clone(),
        caller_name: caller.display_name.clone(),
        caller_pubkey: proven_key(&caller),
        caller_member_id: caller.member_id.clone(),
        caller_member_pubkey: caller.member_pubkey.to_hex(),
    };
    let host_closed = host.state().conn.as_ref().map(|c| c.closer.subscribe());
    let (Some(host_closed), true) = (
        host_closed,
        host.send(&Envelope::new(ServerMessage::McpCallForward(Box::new(
            forward,
        )))),
    ) else {
        let gone = refuse(
            "host_offline",
            format!("the host of \"{}\" went offline", call.server_name),
        );
        return record.refuse(conn, req_id, gone);
    };
    let wait = Duration::from_millis(
        call.timeout_ms
            .unwrap_or(DEFAULT_TOOL_TIMEOUT_MS)
            .clamp(1, MAX_TIMEOUT_MS),
    );
    let out = conn.out.clone();
    let who = conn.who();
    let server = call.server_name;
    let host_name = host.display_name.clone();
    // Tracked: the wait ends at shutdown, and the call's record is written before the store
    // closes.
    let tasks = broker.tasks.clone();
    tasks.spawn(async move {
        let outcome = match wait_for_host(answered, host_closed, wait, &broker.shutdown).await {
            Ok(HostAnswer::Result(mut r)) => {
                r.call_id = None;
                Ok(r)
            }
            Ok(HostAnswer::TooLarge(n)) => Err((
                "result_too_large",
                format!(
                    "the result of \"{server}\" was {n} bytes; the limit is {MAX_TOOL_RESULT_BYTES} bytes"
                ),
            )),
            Err(NoAnswer::HostGone) => Err((
                "host_offline",
                format!("the host of \"{server}\" went offline"),
            )),
            Err(NoAnswer::Timeout) => Err((
                "timeout",
                format!(
                    "{host_name} did not answer the call to \"{server}\" within {} s",
                    wait.as_secs_f64()
                ),
            )),
            Err(NoAnswer::Disconnected) => Err((
                "host_offline",
                format!("the host of \"{server}\" ({host_name}) disconnected during the call"),
            )),
            Err(NoAnswer::Shutdown) => {
                Err(("broker_shutdown", "the broker is shutting down".to_string()))
            }
        };
        drop(place);
        match &outcome {
            Ok(r) => record.finish(CallOutcome::of_result(r), None).await,
            Err((code, _)) => record.finish(CallOutcome::of_error(code), Some(code)).await,
        }
        let frame = match outcome {
            Ok(r) => ServerMessage::McpCallResult(Box::new(r)),
            Err((code, message)) => {
                broker.metrics.error(code);
                broker.refusals.refused(&who, "mcp_call", code, &message);
                ServerMessage::error(code, message)
            }
        };
        out.send(&Envelope::reply(req_id, frame));
    });
}

/// `mcp_call_response` from a host: hands the answer to the waiting call (only the presence
/// the call went to may answer). Answers `ack` only when asked.
pub fn mcp_call_response(conn: &Conn, req_id: Option<String>, response: McpCallResult) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let Some(call_id) = response.call_id.clone() else {
        return conn.error(req_id, "invalid_argument", "mcp_call_response needs callId");
    };
    let size = response.wire_bytes();
    let host_answer = if size > MAX_TOOL_RESULT_BYTES {
        HostAnswer::TooLarge(size)
    } else {
        HostAnswer::Result(response)
    };
    if conn
        .broker
        .tool_calls
        .answer(&call_id, &peer.presence_id, host_answer)
    {
        super::reply::maybe_ack(conn, req_id);
    } else if req_id.is_some() {
        conn.error(
            req_id,
            "not_found",
            "no call with this callId waits for you (it timed out or was answered)",
        );
    }
}
