//! `mcp_call` to a broker-hosted service (routed here from `shared_tools.rs`): the caller's
//! scope, the sizes and the tool checked, the call run on the service, its result sent back.

use super::*;

/// `mcp_call` to a deployed service: scope, size and tool checked, the call run on the service
/// and its result sent back (sealed to the caller when the call came sealed to the broker).
pub(in crate::broker::handlers) fn call(
    conn: &Conn,
    req_id: Option<String>,
    call: McpCall,
    row: DeploymentRow,
) {
    let Some((broker, caller)) = me(conn) else {
        return;
    };
    let admitted = (|| {
        require_scope(&row, &caller)?;
        check_args_size(&call)?;
        let service = broker
            .services
            .get(&row.mesh_id, &row.name)
            .filter(|s| s.view().status == Status::Running)
            .ok_or_else(|| refuse("host_offline", not_running(&row.name)))?;
        let tools = service.view().tools;
        if !tools.iter().any(|t| t.name == call.tool_name) {
            return Err(refuse(
                "not_found",
                format!(
                    "service \"{}\" has no tool \"{}\" (its tools: {})",
                    row.name,
                    call.tool_name.chars().take(128).collect::<String>(),
                    tools
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(service)
    })();
    let record = CallRecord::new(&broker, &caller, &call).hosted_by("broker");
    let service = match admitted {
        Ok(s) => s,
        Err(refusal) => return record.refuse(conn, req_id, refusal),
    };
    let Some((place, _)) = broker
        .tool_calls
        .start(&caller.mesh_id, &caller.member_id, "broker")
    else {
        let busy = refuse(
            "rate_limited",
            format!(
                "you already have {MAX_CALLS_IN_FLIGHT} tool calls waiting; wait for one to finish"
            ),
        );
        return record.refuse(conn, req_id, busy);
    };
    let caller_key = proven_key(&caller);
    let Some(key) = broker.key.clone() else {
        return record.refuse(conn, req_id, refuse("internal", "the broker has no key"));
    };
    let args = match (&call.sealed, &call.args) {
        (Some(sealed), _) => match open_from(&key, &caller_key, sealed)
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok())
        {
            Some(args) => args,
            None => {
                let unopened = refuse(
                    "invalid_argument",
                    "cannot open the sealed arguments: seal them to the broker's key (hostPubkey in mcp_list) as JSON",
                );
                return record.refuse(conn, req_id, unopened);
            }
        },
        (None, Some(args)) => args.clone(),
        (None, None) => serde_json::json!({}),
    };
    let meta = serde_json::json!({
        "name": caller.display_name,
        "pubkey": caller_key,
        "memberId": caller.member_id,
        "memberPubkey": caller.member_pubkey.to_hex(),
    });
    let wait = Duration::from_millis(
        call.timeout_ms
            .unwrap_or(DEFAULT_TOOL_TIMEOUT_MS)
            .clamp(1, MAX_TIMEOUT_MS),
    );
    let out = conn.out.clone();
    let sealed = call.sealed.is_some();
    let server = row.name.clone();
    // Tracked: the call ends at shutdown, and its record is written before the store closes.
    let tasks = broker.tasks.clone();
    tasks.spawn(async move {
        let outcome = tokio::select! {
            r = tokio::time::timeout(wait, service.call(&call.tool_name, &args, meta)) => match r {
                Ok(r) => Ok(r),
                Err(_) => Err(("timeout", format!("the service \"{server}\" did not answer within {} s", wait.as_secs_f64()))),
            },
            _ = broker.shutdown.cancelled() => Err(("broker_shutdown", "the broker is shutting down".to_string())),
        };
        drop(place);
        let outcome_now = match &outcome {
            Ok(Ok(v)) if reports_error(v) => (CallOutcome::Error, None),
            Ok(Ok(_)) => (CallOutcome::Ok, None),
            Ok(Err(_)) => (CallOutcome::Error, None),
            Err((code, _)) => (CallOutcome::of_error(code), Some(*code)),
        };
        let frame = match outcome {
            Ok(result) => {
                let body = match result {
                    Ok(v) => McpCallResult {
                        result: Some(v),
                        ..Default::default()
                    },
                    Err(e) => McpCallResult {
                        error: Some(e),
                        ..Default::default()
                    },
                };
                let body = if sealed {
                    match serde_json::to_vec(&body)
                        .map_err(|e| e.to_string())
                        .and_then(|plain| seal_to(&key, &caller_key, &plain))
                    {
                        Ok(s) => McpCallResult {
                            sealed: Some(s),
                            ..Default::default()
                        },
                        Err(e) => McpCallResult {
                            error: Some(e),
                            ..Default::default()
                        },
                    }
                } else {
                    body
                };
                let size = body.wire_bytes();
                if size > MAX_TOOL_RESULT_BYTES {
                    ServerMessage::error(
                        "result_too_large",
                        format!(
                            "the result of \"{server}\" was {size} bytes; the limit is {MAX_TOOL_RESULT_BYTES} bytes"
                        ),
                    )
                } else {
                    ServerMessage::McpCallResult(Box::new(body))
                }
            }
            Err((code, message)) => ServerMessage::error(code, message),
        };
        match &frame {
            ServerMessage::Error(e) if outcome_now.1.is_none() => {
                record.finish(CallOutcome::Error, Some(&e.code)).await;
            }
            _ => record.finish(outcome_now.0, outcome_now.1).await,
        }
        out.send(&Envelope::reply(req_id, frame));
    });
}
