//! `POST /hook/set-status`: Claude Code hooks report a session's status (PROTOCOL.md §5.1).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::auth::verify_member_request;
use super::http::{Body, HttpError, json_response, read_body};
use super::router;
use super::state::Broker;
use super::status::{HookTarget, Status, StatusSource};
use crate::crypto;
use crate::protocol::time;

#[derive(Deserialize)]
struct HookBody {
    #[serde(default)]
    cwd: String,
    #[serde(default)]
    pid: Option<u32>,
    status: String,
    #[serde(default)]
    session_id: Option<String>,
}

/// Sessions whose hook rate is tracked at once; the least recently heard go first.
pub const LIMITER_KEYS: usize = 4096;

/// The rate-limit key of a hook report: a digest, so a 64 kB `cwd` costs 64 bytes here, and per
/// member, so nobody can use up another member's allowance.
fn limiter_key(mesh_id: &str, member_id: &str, pid: Option<u32>, cwd: &str) -> String {
    let pid = pid.unwrap_or(0);
    hex::encode(crypto::sha256(
        format!("{mesh_id}|{member_id}|{pid}|{cwd}").as_bytes(),
    ))
}

pub async fn set_status(broker: Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    match handle(&broker, req).await {
        Ok(r) => r,
        Err(e) => {
            broker.metrics.error(e.code);
            json_response(
                e.status,
                json!({"ok": false, "error": e.code, "message": e.message}),
            )
        }
    }
}

async fn handle(broker: &Arc<Broker>, req: Request<Incoming>) -> Result<Response<Body>, HttpError> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = read_body(req, broker.config.max_message_bytes).await?;
    let digest = hex::encode(crypto::sha256(&body));
    let (mesh, member) = verify_member_request(broker, "POST", &path, &headers, &digest)?;
    let body: HookBody = serde_json::from_slice(&body).map_err(|e| {
        HttpError::malformed(format!(
            "body must be {{cwd, pid?, status, session_id?}}: {e}"
        ))
    })?;
    let status = Status::parse(&body.status)
        .ok_or_else(|| HttpError::malformed("status must be idle, working or dnd"))?;
    if !broker
        .hook_limit
        .allow(&limiter_key(&mesh.id, &member.id, body.pid, &body.cwd))
    {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            "more than 30 status reports a minute from this session",
        ));
    }
    let candidates: Vec<_> = broker
        .presence
        .peers(&mesh.id)
        .into_iter()
        .filter(|p| p.member_id == member.id && !p.control_plane)
        .collect();
    let by_session: Vec<_> = candidates
        .iter()
        .filter(|p| {
            body.session_id
                .as_deref()
                .is_some_and(|s| s == p.info.session_id)
        })
        .cloned()
        .collect();
    let by_pid: Vec<_> = candidates
        .iter()
        .filter(|p| body.pid.is_some_and(|pid| pid == p.info.pid))
        .cloned()
        .collect();
    let by_cwd: Vec<_> = candidates
        .iter()
        .filter(|p| !body.cwd.is_empty() && p.info.cwd == body.cwd)
        .cloned()
        .collect();
    let targets = [by_session, by_pid, by_cwd]
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    let now = time::now_ms();
    if targets.is_empty() {
        broker.pending_status.put(
            HookTarget {
                mesh_id: mesh.id.clone(),
                member_id: member.id.clone(),
                session_id: body.session_id.clone(),
                pid: body.pid,
                cwd: body.cwd.clone(),
            },
            status,
            now,
        );
        return Ok(json_response(
            StatusCode::OK,
            json!({"ok": true, "pending": true}),
        ));
    }
    for peer in &targets {
        let changed = peer.state().status.report(status, StatusSource::Hook, now);
        if changed {
            let source = StatusSource::Hook.as_str();
            super::status_history::changed(broker, peer, status.as_str(), source, now);
        }
        if changed && status == Status::Idle {
            router::deliver_pending(broker, peer, false);
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"ok": true, "presence_id": targets[0].presence_id}),
    ))
}
