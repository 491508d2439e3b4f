//! Peer-hosted MCP tools (PROTOCOL.md §14): register, list and remove servers, call their
//! tools, and — on the hosting side — answer the calls the broker forwards. Arguments and
//! results are sealed end to end with crypto_box between the caller's and the host's keys,
//! so the broker relays only ciphertext.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::{ClientError, MeshClient, unexpected};
use crate::crypto;
use crate::protocol::messages::{
    DEFAULT_TOOL_TIMEOUT_MS, MAX_TOOL_ARGS_BYTES, MAX_TOOL_RESULT_BYTES, McpCall, McpCallForward,
    McpCallResult, McpRegister, McpServerEntry, McpToolSpec, SealedPayload, reports_error,
};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage};

/// How long a tool call waits for its host unless told otherwise (the broker's default).
pub const TOOL_CALL_TIMEOUT: Duration = Duration::from_millis(DEFAULT_TOOL_TIMEOUT_MS);

/// crypto_box of `plain` from `mine` (our speaking key) to `their` (an ed25519 key, hex).
pub(crate) fn seal_to(
    mine: &crypto::SignKeyPair,
    their: &str,
    plain: &[u8],
) -> Result<SealedPayload, String> {
    let their = Pubkey::parse(their).map_err(|e| format!("peer key: {e}"))?;
    let their = crypto::ed25519_pk_to_x25519(&their.0).map_err(|e| e.to_string())?;
    let nonce: [u8; 24] = crypto::random_bytes();
    let ct = crypto::box_easy(plain, &nonce, &their, &mine.to_x25519().secret)
        .map_err(|e| e.to_string())?;
    Ok(SealedPayload {
        nonce: STANDARD.encode(nonce),
        ciphertext: STANDARD.encode(ct),
    })
}

/// Opens a payload sealed by `their` (hex ed25519 key) to `mine`.
pub(crate) fn open_from(
    mine: &crypto::SignKeyPair,
    their: &str,
    sealed: &SealedPayload,
) -> Result<Vec<u8>, String> {
    let their = Pubkey::parse(their).map_err(|e| format!("peer key: {e}"))?;
    let their = crypto::ed25519_pk_to_x25519(&their.0).map_err(|e| e.to_string())?;
    let nonce: [u8; 24] = STANDARD
        .decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or("the sealed payload's nonce is not 24 bytes of base64")?;
    let ct = STANDARD
        .decode(&sealed.ciphertext)
        .map_err(|_| "the sealed payload is not base64")?;
    crypto::box_open_easy(&ct, &nonce, &their, &mine.to_x25519().secret).map_err(|_| {
        "cannot open the sealed payload: not sealed by the expected key, or tampered".into()
    })
}

/// A forwarded call, opened: who calls, which tool, with what.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub call_id: String,
    pub server_name: String,
    pub tool_name: String,
    pub args: Value,
    pub caller_name: String,
    /// The key the caller speaks with (its session key, else its member key).
    pub caller_pubkey: String,
    pub caller_member_id: String,
    pub caller_member_pubkey: String,
    /// Whether the call came sealed (the answer is sealed alike).
    sealed: bool,
}

impl MeshClient {
    /// Registers (or replaces) an MCP server this connection hosts; returns its tool count.
    pub async fn mcp_register(&self, reg: McpRegister) -> Result<usize, ClientError> {
        match self.request(ClientMessage::McpRegister(reg)).await? {
            ServerMessage::McpRegisterAck { tool_count, .. } => Ok(tool_count),
            other => Err(unexpected(other)),
        }
    }

    /// Every MCP server registered in the mesh, with its tools, host and whether it is online.
    pub async fn mcp_list(&self) -> Result<Vec<McpServerEntry>, ClientError> {
        match self.request(ClientMessage::McpList {}).await? {
            ServerMessage::McpListResult { servers } => Ok(servers),
            other => Err(unexpected(other)),
        }
    }

    pub async fn mcp_remove(&self, server_name: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::McpUnregister {
            server_name: server_name.into(),
        })
        .await
    }

    /// Calls `tool` of the mesh's MCP server `server` with `args` (a JSON object) and returns
    /// what the tool returned (an MCP `CallToolResult` as JSON). The arguments are sealed to
    /// the host's key and the result comes back sealed to ours.
    pub async fn tool_call(
        &self,
        server: &str,
        tool: &str,
        args: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, ClientError> {
        let servers = self.mcp_list().await?;
        let entry = servers.iter().find(|s| s.name == server).ok_or_else(|| {
            ClientError::Broker {
                code: "not_found".into(),
                message: format!(
                    "no MCP server \"{server}\" is registered in this mesh (claudemesh tools list shows them)"
                ),
            }
        })?;
        let mine = self.speaking_keys()?;
        let plain = serde_json::to_vec(&args).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let sealed = seal_to(&mine, &entry.host_pubkey, &plain).map_err(ClientError::Protocol)?;
        let wait = timeout.unwrap_or(TOOL_CALL_TIMEOUT);
        let call = McpCall {
            server_name: server.into(),
            tool_name: tool.into(),
            args: None,
            sealed: Some(sealed),
            timeout_ms: Some(wait.as_millis() as u64),
        };
        let size = call.args_bytes();
        if size > MAX_TOOL_ARGS_BYTES {
            return Err(ClientError::Broker {
                code: "payload_too_large".into(),
                message: format!(
                    "the tool call's arguments are {size} bytes sealed; the limit is {MAX_TOOL_ARGS_BYTES} bytes"
                ),
            });
        }
        // The broker times the call out; our own wait is a little longer so its answer wins.
        let answer = self
            .request_timeout(
                ClientMessage::McpCall(Box::new(call)),
                wait + Duration::from_secs(5),
            )
            .await?;
        let result = match answer {
            ServerMessage::McpCallResult(r) => *r,
            other => return Err(unexpected(other)),
        };
        let opened = match &result.sealed {
            Some(sealed) => {
                let plain =
                    open_from(&mine, &entry.host_pubkey, sealed).map_err(ClientError::Protocol)?;
                serde_json::from_slice::<McpCallResult>(&plain)
                    .map_err(|e| ClientError::Protocol(format!("the host's answer: {e}")))?
            }
            None => result,
        };
        match (opened.result, opened.error) {
            (_, Some(error)) => Err(ClientError::Broker {
                code: "tool_error".into(),
                message: format!("{server} ({}): {error}", entry.hosted_by),
            }),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Null),
        }
    }

    /// Opens a call the broker forwarded to this host.
    pub fn open_call(&self, forward: McpCallForward) -> Result<IncomingCall, ClientError> {
        let (args, sealed) = match &forward.sealed {
            Some(s) => {
                let mine = self.speaking_keys()?;
                let plain =
                    open_from(&mine, &forward.caller_pubkey, s).map_err(ClientError::Protocol)?;
                let args = serde_json::from_slice(&plain)
                    .map_err(|e| ClientError::Protocol(format!("the call's arguments: {e}")))?;
                (args, true)
            }
            None => (forward.args.unwrap_or(Value::Null), false),
        };
        Ok(IncomingCall {
            call_id: forward.call_id,
            server_name: forward.server_name,
            tool_name: forward.tool_name,
            args,
            caller_name: forward.caller_name,
            caller_pubkey: forward.caller_pubkey,
            caller_member_id: forward.caller_member_id,
            caller_member_pubkey: forward.caller_member_pubkey,
            sealed,
        })
    }

    /// Sends the answer to a forwarded call: the tool's result, or why it failed. A result
    /// larger than [`MAX_TOOL_RESULT_BYTES`] is replaced by an error saying so.
    pub fn answer_call(
        &self,
        call: &IncomingCall,
        outcome: Result<Value, String>,
    ) -> Result<(), ClientError> {
        let body = match outcome {
            Ok(result) => McpCallResult {
                result: Some(result),
                ..Default::default()
            },
            Err(error) => McpCallResult {
                error: Some(error),
                ..Default::default()
            },
        };
        let mut frame = self.seal_answer(call, &body)?;
        frame.is_error = body.failed();
        if frame.wire_bytes() > MAX_TOOL_RESULT_BYTES {
            let error = McpCallResult {
                error: Some(format!(
                    "the tool's result is larger than the {MAX_TOOL_RESULT_BYTES}-byte limit"
                )),
                ..Default::default()
            };
            frame = self.seal_answer(call, &error)?;
            frame.is_error = true;
        }
        self.notify(ClientMessage::McpCallResponse(Box::new(frame)))
    }

    fn seal_answer(
        &self,
        call: &IncomingCall,
        body: &McpCallResult,
    ) -> Result<McpCallResult, ClientError> {
        let mut frame = if call.sealed {
            let plain =
                serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
            let sealed = seal_to(&self.speaking_keys()?, &call.caller_pubkey, &plain)
                .map_err(ClientError::Protocol)?;
            McpCallResult {
                sealed: Some(sealed),
                ..Default::default()
            }
        } else {
            body.clone()
        };
        frame.call_id = Some(call.call_id.clone());
        Ok(frame)
    }
}

/// A local stdio MCP server this process hosts for the mesh: started as a child process and
/// driven with rmcp's client side (`initialize`, `tools/list`, `tools/call`).
pub struct StdioServer {
    service: rmcp::service::RunningService<rmcp::RoleClient, ()>,
    /// The server's own name (`serverInfo.name`).
    pub server_name: String,
    pub tools: Vec<McpToolSpec>,
}

/// The longest a hosted call runs (the longest a caller may wait).
const HOSTED_CALL_LIMIT: Duration = Duration::from_secs(120);
/// How long the local server may take to start and list its tools.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl StdioServer {
    /// Starts `command` (program and arguments), says hello to it and reads its tools.
    pub async fn start(command: &[String]) -> Result<StdioServer, String> {
        let (program, args) = command
            .split_first()
            .ok_or("give the MCP server's command after `--`")?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        let transport = rmcp::transport::TokioChildProcess::new(cmd)
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        Self::serve(transport, program).await
    }

    /// Starts a prepared command (the broker's sandboxed services), says hello to it and reads
    /// its tools. Its stderr goes to `stderr` as soon as it is spawned, before the hello, so
    /// what a program that cannot start prints about why is not lost.
    pub async fn start_command(
        cmd: tokio::process::Command,
        label: &str,
        stderr: impl FnOnce(tokio::process::ChildStderr),
    ) -> Result<StdioServer, String> {
        let (transport, pipe) = rmcp::transport::TokioChildProcess::builder(cmd)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        if let Some(pipe) = pipe {
            stderr(pipe);
        }
        Self::serve(transport, label).await
    }

    async fn serve(
        transport: rmcp::transport::TokioChildProcess,
        program: &str,
    ) -> Result<StdioServer, String> {
        use rmcp::ServiceExt;
        let started = async {
            let service = ()
                .serve(transport)
                .await
                .map_err(|e| format!("{program} did not answer the MCP initialize: {e}"))?;
            let server_name = service
                .peer_info()
                .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone()))
                .unwrap_or_default();
            let tools = service
                .list_all_tools()
                .await
                .map_err(|e| format!("{program} did not list its tools: {e}"))?
                .into_iter()
                .map(|t| McpToolSpec {
                    name: t.name.to_string(),
                    description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                    input_schema: Value::Object((*t.input_schema).clone()),
                })
                .collect();
            Ok::<_, String>(StdioServer {
                service,
                server_name,
                tools,
            })
        };
        tokio::time::timeout(START_TIMEOUT, started)
            .await
            .map_err(|_| format!("{program} did not start within {START_TIMEOUT:?}"))?
    }

    /// Runs one forwarded call on the local server. The caller's identity goes along in the
    /// request's `_meta` as `claudemesh/caller`; the result is the server's `CallToolResult`.
    pub async fn call(&self, call: &IncomingCall) -> Result<Value, String> {
        let caller = serde_json::json!({
            "name": call.caller_name,
            "pubkey": call.caller_pubkey,
            "memberId": call.caller_member_id,
            "memberPubkey": call.caller_member_pubkey,
        });
        self.call_tool(&call.tool_name, &call.args, caller).await
    }

    /// Calls `tool` with `args` (a JSON object), `caller` passed in `_meta["claudemesh/caller"]`.
    pub async fn call_tool(
        &self,
        tool: &str,
        args: &Value,
        caller: Value,
    ) -> Result<Value, String> {
        let arguments = match args {
            Value::Object(m) => m.clone(),
            Value::Null => serde_json::Map::new(),
            _ => return Err("the tool's arguments must be a JSON object".into()),
        };
        let mut params =
            rmcp::model::CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let mut meta = serde_json::Map::new();
        meta.insert("claudemesh/caller".into(), caller);
        params.meta = Some(meta.into());
        // The caller stops waiting by then (the broker allows at most this); so do we, so a
        // hung server does not hold a place among the host's calls forever.
        let result = tokio::time::timeout(HOSTED_CALL_LIMIT, self.service.call_tool(params))
            .await
            .map_err(|_| format!("the MCP server did not answer within {HOSTED_CALL_LIMIT:?}"))?
            .map_err(|e| format!("the MCP server failed the call: {e}"))?;
        serde_json::to_value(result).map_err(|e| e.to_string())
    }

    /// Whether the child process has ended (its MCP connection closed).
    pub fn is_closed(&self) -> bool {
        self.service.is_transport_closed()
    }

    /// Ends the MCP session without waiting (the child process is killed with its transport).
    pub fn shut(&self) {
        self.service.cancellation_token().cancel();
    }

    /// Stops the server (its child process ends with its stdin).
    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.service.cancel()).await;
    }
}

/// Calls one host runs at once; more are answered "busy".
const MAX_HOSTED_CALLS: usize = 32;

/// What one forwarded call came to (metadata only, for the host's log).
#[derive(Debug, Clone)]
pub struct Served {
    pub caller_name: String,
    pub server_name: String,
    pub tool_name: String,
    pub ok: bool,
}

/// The servers this process hosts, by registered name, and the answering of the calls the
/// broker forwards to them (used by `mcp-share` and by the MCP server's `mesh_mcp_register`).
pub struct Hosted {
    servers: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<StdioServer>>>,
    busy: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for Hosted {
    fn default() -> Self {
        Hosted {
            servers: Default::default(),
            busy: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HOSTED_CALLS)),
        }
    }
}

/// Registers `reg` on `client`, and again after every reconnect (a broker restart or a lease
/// that ended drops a registration, and a new connection is a new presence), until the client
/// ends or `still` says the server is no longer hosted. `said` hears each re-registration.
pub async fn keep_registered(
    client: std::sync::Arc<MeshClient>,
    reg: McpRegister,
    still: impl Fn() -> bool + Send + 'static,
    said: impl Fn(Result<usize, ClientError>) + Send + 'static,
) -> Result<usize, ClientError> {
    let first = client.mcp_register(reg.clone()).await?;
    let mut link = client.link();
    tokio::spawn(async move {
        while MeshClient::reconnected(&mut link).await && still() {
            let again = client.mcp_register(reg.clone()).await;
            said(again);
        }
    });
    Ok(first)
}

impl Hosted {
    fn servers(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::sync::Arc<StdioServer>>>
    {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hosts `server` under `name`; returns the server it replaces.
    pub fn add(
        &self,
        name: &str,
        server: std::sync::Arc<StdioServer>,
    ) -> Option<std::sync::Arc<StdioServer>> {
        self.servers().insert(name.to_string(), server)
    }

    /// Whether `server` is still the one hosted under `name`.
    pub fn hosts(&self, name: &str, server: &std::sync::Arc<StdioServer>) -> bool {
        self.servers()
            .get(name)
            .is_some_and(|s| std::sync::Arc::ptr_eq(s, server))
    }

    pub fn remove(&self, name: &str) -> Option<std::sync::Arc<StdioServer>> {
        self.servers().remove(name)
    }

    /// Opens a forwarded call, runs it on the server it names and answers it.
    pub async fn answer(&self, client: &MeshClient, forward: McpCallForward) -> Served {
        let mut served = Served {
            caller_name: forward.caller_name.clone(),
            server_name: forward.server_name.clone(),
            tool_name: forward.tool_name.clone(),
            ok: false,
        };
        let call_id = forward.call_id.clone();
        let call = match client.open_call(forward) {
            Ok(call) => call,
            Err(e) => {
                // What cannot be opened cannot be answered sealed: say why, in clear.
                let _ = client.notify(ClientMessage::McpCallResponse(Box::new(McpCallResult {
                    call_id: Some(call_id),
                    error: Some(format!("the host cannot read this call: {e}")),
                    ..Default::default()
                })));
                return served;
            }
        };
        let server = self.servers().get(&call.server_name).cloned();
        let outcome = match (server, self.busy.try_acquire()) {
            (None, _) => Err(format!(
                "this host no longer serves \"{}\"",
                call.server_name
            )),
            (Some(_), Err(_)) => Err(format!(
                "the host is busy ({MAX_HOSTED_CALLS} calls running); try again"
            )),
            (Some(server), Ok(_permit)) => server.call(&call).await,
        };
        served.ok = matches!(&outcome, Ok(r) if !reports_error(r));
        if client.answer_call(&call, outcome).is_err() {
            served.ok = false;
        }
        served
    }
}
