//! The page's JSON calls under `/api/`, each one of the client library's typed calls (the same
//! the CLI verbs make), answered as JSON: `{error}` with 400 for what the user gave, 502 for
//! what the broker said.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Shared;
use super::conversations::Message;
use crate::broker::http::{Body, json_response, read_body, respond};
use crate::client::ClientError;
use crate::client::files::FileError;
use crate::protocol::messages::AuditQuery;
use crate::protocol::time;

/// Largest request body the page sends (a message, a board value).
const MAX_BODY: usize = 1 << 20;

pub enum ApiError {
    /// What the user gave is not usable.
    Input(String),
    /// The broker or the connection failed.
    Broker(String),
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        ApiError::Broker(e.to_string())
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        ApiError::Broker(e.to_string())
    }
}

#[derive(Deserialize)]
struct SendBody {
    to: String,
    text: String,
    #[serde(default)]
    priority: Option<String>,
}

#[derive(Deserialize)]
struct StateBody {
    key: String,
    /// Text typed in the page: JSON if it reads as JSON, else the text itself.
    value: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: String,
    #[serde(default)]
    result: Option<String>,
}

#[derive(Deserialize)]
struct InviteBody {
    role: String,
    uses: u32,
    /// How long it stays valid, e.g. `24h`, `7d`.
    expires: String,
}

#[derive(Deserialize)]
struct AnswerBody {
    id: String,
    allow: bool,
}

/// Answers one `/api/...` request.
pub async fn answer(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    match call(shared, req).await {
        Ok(Reply::Json(v)) => json_response(StatusCode::OK, v),
        Ok(Reply::Raw(resp)) => resp,
        Err(ApiError::Input(m)) => json_response(StatusCode::BAD_REQUEST, json!({ "error": m })),
        Err(ApiError::Broker(m)) => json_response(StatusCode::BAD_GATEWAY, json!({ "error": m })),
    }
}

/// What a call answers: JSON, or a response of its own (a download, a 404).
enum Reply {
    Json(Value),
    Raw(Response<Body>),
}

async fn call(shared: &Shared, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let needed =
        |name: &str| param(name).ok_or_else(|| ApiError::Input(format!("give the {name}")));
    let c = &shared.client;
    let method = req.method().clone();
    let value = match (method, path.as_str()) {
        (Method::GET, "/api/me") => me(shared),
        (Method::GET, "/api/peers") => {
            let (peers, members) = tokio::join!(c.list_peers(None), c.list_members());
            json!({ "peers": peers?, "members": members? })
        }
        (Method::GET, "/api/messages") => json!({ "messages": shared.log.all() }),
        (Method::POST, "/api/send") => send(shared, body(req).await?).await?,
        (Method::GET, "/api/message-status") => json!(c.message_status(&needed("id")?).await?),
        (Method::GET, "/api/state") => json!({ "entries": c.list_state().await? }),
        (Method::POST, "/api/state") => {
            let b: StateBody = body(req).await?;
            let key = b.key.trim();
            if key.is_empty() {
                return Err(ApiError::Input("give a key".into()));
            }
            let value = serde_json::from_str(&b.value).unwrap_or(Value::String(b.value.clone()));
            json!(c.set_state(key, value).await?)
        }
        (Method::GET, "/api/tasks") => json!({ "tasks": c.list_tasks(None, None).await? }),
        (Method::POST, "/api/tasks/claim") => {
            let b: IdBody = body(req).await?;
            tasks_changed(shared, c.claim_task(&b.id).await?)
        }
        (Method::POST, "/api/tasks/complete") => {
            let b: IdBody = body(req).await?;
            tasks_changed(shared, c.complete_task(&b.id, b.result).await?)
        }
        (Method::GET, "/api/memory") => {
            let q = param("q").unwrap_or_default();
            let found = if q.trim().is_empty() {
                Vec::new()
            } else {
                c.recall(q.trim(), Some(50)).await?
            };
            json!({ "memories": found })
        }
        (Method::POST, "/api/memory/forget") => {
            let b: IdBody = body(req).await?;
            c.forget(&b.id).await?;
            json!({ "forgotten": b.id })
        }
        (Method::GET, "/api/files") => json!({ "files": c.list_files(None, None).await? }),
        (Method::GET, "/api/files/download") => {
            return Ok(Reply::Raw(download(shared, &needed("id")?).await));
        }
        (Method::POST, "/api/files/upload") => {
            super::uploads::upload(shared, req, |name: &str| param(name)).await?
        }
        (Method::GET, "/api/status-history") => {
            json!({ "changes": c.status_history(None).await?, "now": time::iso(time::now_ms()) })
        }
        (Method::GET, "/api/skills") => json!({ "skills": c.list_skills(None).await? }),
        (Method::GET, "/api/tools") => {
            let (servers, services) = tokio::join!(c.mcp_list(), c.mcp_catalog());
            json!({ "servers": servers?, "services": services? })
        }
        (Method::GET, "/api/watches") => {
            let (watches, webhooks) = tokio::join!(c.watches(), c.list_webhooks());
            json!({ "watches": watches?, "webhooks": webhooks? })
        }
        (Method::GET, "/api/audit") => {
            let query = AuditQuery {
                limit: Some(200),
                event_type: param("type").filter(|t| !t.is_empty()),
                ..Default::default()
            };
            json!(c.audit_query(query).await?)
        }
        (Method::POST, p) if p.starts_with("/api/members/") => {
            let what = p["/api/members/".len()..].to_string();
            super::settings::act(shared, &what, body(req).await?).await?
        }
        (Method::GET, "/api/more") => {
            let (reminders, streams, contexts) =
                tokio::join!(c.list_scheduled(), c.list_streams(), c.list_contexts());
            json!({ "reminders": reminders?, "streams": streams?, "contexts": contexts? })
        }
        (Method::GET, "/api/invites") => {
            let (invites, truncated) = c.list_invites().await?;
            json!({ "invites": invites, "truncated": truncated })
        }
        (Method::POST, "/api/invites") => invite(shared, body(req).await?).await?,
        (Method::GET, "/api/approvals") => json!({ "approvals": c.pending_approvals().await? }),
        (Method::POST, "/api/approvals/answer") => {
            let b: AnswerBody = body(req).await?;
            json!(c.answer_approval(&b.id, b.allow).await?)
        }
        _ => {
            return Ok(Reply::Raw(respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "no such call\n",
            )));
        }
    };
    Ok(Reply::Json(value))
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = read_body(req, MAX_BODY)
        .await
        .map_err(|e| ApiError::Input(e.message))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Input(format!("unexpected body: {e}")))
}

fn me(shared: &Shared) -> Value {
    let entry = shared.client.entry();
    json!({
        "mesh": entry.slug,
        "displayName": entry.display_name,
        "memberPubkey": entry.member_pubkey,
        "link": format!("{:?}", *shared.client.link().borrow()),
    })
}

fn tasks_changed(shared: &Shared, tasks: Vec<crate::protocol::messages::TaskEntry>) -> Value {
    shared.hub.publish("tasks", &Value::Null);
    json!({ "tasks": tasks })
}

/// Sends as `claudemesh send` does (names, `@group`, `*`, comma-separated), and keeps what was
/// sent in the conversations.
async fn send(shared: &Shared, b: SendBody) -> Result<Value, ApiError> {
    if b.text.trim().is_empty() {
        return Err(ApiError::Input("write a message first".into()));
    }
    let priority = b.priority.unwrap_or_else(|| "next".into());
    if !matches!(priority.as_str(), "now" | "next" | "low") {
        return Err(ApiError::Input("priority is now, next or low".into()));
    }
    let c = &shared.client;
    let targets = c.resolve_targets(&b.to).await.map_err(|e| match e {
        ClientError::Broker { message, .. } => ApiError::Input(message),
        other => other.into(),
    })?;
    let acks = c.send_each(&targets, &b.text, &priority).await?;
    let me = c.entry().display_name.clone();
    let mut results = Vec::new();
    for (target, ack) in targets.iter().zip(acks) {
        let id = ack.message_id.clone().unwrap_or_default();
        if ack.queued == Some(true) {
            let message = Message {
                id: id.clone(),
                thread: target.spec.clone(),
                direction: "sent",
                from: me.clone(),
                to: target.spec.clone(),
                priority: priority.clone(),
                created_at: time::iso(time::now_ms()),
                text: Some(b.text.clone()),
                problem: None,
                subtype: None,
            };
            if shared.log.add(message.clone()) {
                shared.hub.publish("message", &message);
            }
        }
        results.push(json!({
            "to": target.label,
            "messageId": id,
            "queued": ack.queued == Some(true),
            "error": ack.error,
        }));
    }
    Ok(json!({ "sent": results }))
}

/// Creates an invite as `claudemesh invite` does, with its link as a QR code (SVG) to scan
/// on a phone or another machine's camera.
async fn invite(shared: &Shared, b: InviteBody) -> Result<Value, ApiError> {
    if b.role != "member" && b.role != "admin" {
        return Err(ApiError::Input("the role is member or admin".into()));
    }
    if b.uses == 0 {
        return Err(ApiError::Input("an invite needs at least one use".into()));
    }
    let lifetime = time::parse_duration(&b.expires).map_err(ApiError::Input)?;
    let expires_at = (time::now_ms().saturating_add(lifetime.as_millis() as i64) + 999) / 1000;
    let new = shared
        .client
        .new_invite(&b.role, b.uses, expires_at)
        .await?;
    let qr = qrcode::QrCode::new(new.link.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::svg::Color>()
                .min_dimensions(220, 220)
                .build()
        })
        .map_err(|e| ApiError::Broker(format!("cannot draw the QR code: {e}")))?;
    Ok(json!({
        "code": new.created.code,
        "inviteId": new.created.invite_id,
        "url": new.link,
        "hasRootKey": new.has_root_key,
        "expiresAt": time::iso(new.created.expires_at.saturating_mul(1000)),
        "role": new.created.role,
        "uses": new.created.max_uses,
        "qrSvg": qr,
    }))
}

/// Downloads a file (decrypting it when it is encrypted) and hands it to the browser.
async fn download(shared: &Shared, id: &str) -> Response<Body> {
    let dir = match super::private_temp_dir() {
        Ok(d) => d,
        Err(e) => return json_response(StatusCode::BAD_GATEWAY, json!({ "error": e.to_string() })),
    };
    let fetched = async {
        let fetched = shared
            .client
            .fetch_file(id, Some(&dir.join("")), &|_, _| {})
            .await?;
        let bytes = std::fs::read(&fetched.path).map_err(|e| ApiError::Broker(e.to_string()))?;
        let name = fetched
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| id.to_string());
        Ok::<_, ApiError>((bytes, name))
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    match fetched {
        Ok((bytes, name)) => {
            let mut resp = respond(StatusCode::OK, "application/octet-stream", bytes);
            let safe: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .collect();
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
                resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(ApiError::Input(m) | ApiError::Broker(m)) => {
            json_response(StatusCode::BAD_GATEWAY, json!({ "error": m }))
        }
    }
}
