//! The HTTP side of the port: health, metrics, mesh creation and the WebSocket upgrade on `/ws`;
//! it routes the other endpoints to their areas (invites, hooks, webhooks, files, the dashboard).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::connection;
use super::metrics::Metrics;
use super::state::Broker;
use crate::crypto;
use crate::protocol::messages::{GroupBodies, GroupBodiesProof};
use crate::protocol::{Pubkey, time};
use crate::store::CreateMesh;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Serves HTTP/1 (and WebSocket upgrades) on one connection, plain or TLS.
pub async fn serve_connection<S>(
    broker: Arc<Broker>,
    io: TokioIo<S>,
    peer: SocketAddr,
    slot: Arc<super::limits::ConnectionSlot>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let broker = broker.clone();
        service_fn(move |mut req: Request<Incoming>| {
            // Who asked (for /metrics), and the connection's place, which a WebSocket upgrade
            // takes along (see `upgrade`).
            req.extensions_mut().insert(peer);
            req.extensions_mut().insert(slot.clone());
            let broker = broker.clone();
            async move { Ok::<_, Infallible>(route(broker, req).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_WAIT)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = broker.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The token of an `Authorization: Bearer <token>` header, trimmed.
pub fn bearer<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

pub fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

/// `{error: code, message}` with a status; `route` logs it as a refusal.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> Response<Body> {
    let message = message.into();
    let mut resp = json_response(status, json!({"error": code, "message": message}));
    resp.extensions_mut().insert(Refused {
        code: code.to_string(),
        message,
    });
    resp
}

/// Why a response refused its request, for the log.
#[derive(Clone)]
struct Refused {
    code: String,
    message: String,
}

/// Answers a request, and logs it when refused: by its first path segment only, since later
/// ones can be secrets (invite codes).
async fn route(broker: Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    Metrics::inc(&broker.metrics.http_requests);
    let what = {
        let mut segments = req.uri().path().trim_start_matches('/').splitn(2, '/');
        let first = segments.next().unwrap_or_default();
        let more = if segments.next().is_some() {
            "/…"
        } else {
            ""
        };
        format!("{} /{first}{more}", req.method())
    };
    let who = req.extensions().get::<SocketAddr>().copied();
    let resp = answer(broker.clone(), req).await;
    if let (Some(r), Some(who)) = (resp.extensions().get::<Refused>(), who) {
        broker.refusals.refused(who, &what, &r.code, &r.message);
    }
    resp
}

async fn answer(broker: Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        if path != "/ws" {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "WebSocket upgrades are served on /ws only",
            );
        }
        return upgrade(broker, req);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, [""] | ["status"]) | (&Method::POST, ["status"]) => {
            super::dashboard::page(broker, req).await
        }
        (&Method::GET, ["health"]) => json_response(
            StatusCode::OK,
            json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime": broker.started.elapsed().as_secs(),
            }),
        ),
        (&Method::GET, ["health", "ready"]) => match broker.store.writable().await {
            Ok(()) => json_response(StatusCode::OK, json!({"status": "ready"})),
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "message": format!("storage is not writable: {e}")}),
            ),
        },
        (&Method::GET, ["broker-key"]) => super::key::proof(&broker, req.uri().query()),
        (&Method::GET, ["metrics"]) => {
            super::metrics::refusal(&broker, &req).unwrap_or_else(|| metrics(&broker))
        }
        (&Method::POST, ["meshes"]) => create_mesh(broker, req).await,
        (&Method::POST, ["invites", code, "claim"]) => {
            let code = code.to_string();
            super::invites::claim(broker, req, code).await
        }
        (&Method::POST, ["hook", "set-status"]) => super::hook::set_status(broker, req).await,
        (&Method::POST, ["hook", mesh_id, webhook_id]) => {
            let (mesh_id, webhook_id) = (mesh_id.to_string(), webhook_id.to_string());
            super::webhooks::receive(broker, req, &mesh_id, &webhook_id).await
        }
        (&Method::POST, ["upload"]) => super::files::endpoints::upload(broker, req).await,
        (&Method::GET, ["download", id]) => {
            let id = id.to_string();
            super::files::endpoints::download(broker, req, &id).await
        }
        (&Method::GET, ["i", code]) => {
            let code = code.to_string();
            super::invites::landing(&broker, &req, &code)
        }
        // A browser or curl on the WebSocket endpoint: say what it is, not that it is missing.
        (_, ["ws"]) => {
            let mut resp = error_response(
                StatusCode::UPGRADE_REQUIRED,
                "upgrade_required",
                "/ws is the WebSocket endpoint: connect with a WebSocket client (a request with Upgrade: websocket)",
            );
            resp.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            resp
        }
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {} /{}", req.method(), segments[0]),
        ),
    }
}

fn metrics(broker: &Broker) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut text = broker.metrics.render(&[
        (
            "claudemesh_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the broker process.",
            super::metrics::resident_bytes(),
        ),
        (
            "claudemesh_peers",
            "gauge",
            "Proven peers (connections past hello).",
            broker.presence.total() as u64,
        ),
        (
            "claudemesh_tcp_connections",
            "gauge",
            "Open TCP connections (HTTP and WebSocket), counted against --max-connections.",
            broker.connections.open() as u64,
        ),
        (
            "claudemesh_hook_limiter_keys",
            "gauge",
            "Hook sessions whose report rate is tracked (bounded).",
            broker.hook_limit.keys() as u64,
        ),
        (
            "claudemesh_signed_requests_remembered",
            "gauge",
            "Signatures of member-signed HTTP requests kept against replay (bounded).",
            broker.signed_requests.remembered() as u64,
        ),
        (
            "claudemesh_store_commits_total",
            "counter",
            "Storage transactions committed.",
            broker.store.stats.commits.load(Relaxed),
        ),
        (
            "claudemesh_store_cache_releases_total",
            "counter",
            "Times the idle store closed and reopened its database to free its page cache.",
            broker.store.stats.cache_releases.load(Relaxed),
        ),
        (
            "claudemesh_store_recoveries_total",
            "counter",
            "Times storage took writes again after a failed commit (the database reopened).",
            broker.store.stats.recoveries.load(Relaxed),
        ),
        (
            "claudemesh_store_failed",
            "gauge",
            "1 while storage refuses writes after a failed commit (disk full, I/O error).",
            u64::from(broker.store.failure().is_some()),
        ),
        (
            "claudemesh_store_writes_total",
            "counter",
            "Writes applied (several per commit under load).",
            broker.store.stats.writes.load(Relaxed),
        ),
    ]);
    let stats = &broker.store.stats;
    let bounds: Vec<f64> = crate::store::COMMIT_BUCKETS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .collect();
    let counts: Vec<u64> = stats
        .commit_buckets
        .iter()
        .map(|c| c.load(Relaxed))
        .collect();
    super::metrics::histogram(
        &mut text,
        "claudemesh_store_commit_seconds",
        "How long a storage commit took, its page writes and its fsync (what every \
         acknowledgement waits for).",
        &bounds,
        &counts,
        stats.commit_micros.load(Relaxed) as f64 / 1e6,
    );
    respond(StatusCode::OK, "text/plain; version=0.0.4", text)
}

fn upgrade(broker: Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| version_ok)
    else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let tracker = broker.tasks.clone();
    let slot = req
        .extensions()
        .get::<Arc<super::limits::ConnectionSlot>>()
        .cloned();
    let remote = req
        .extensions()
        .get::<SocketAddr>()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    tracker.spawn(async move {
        // The connection keeps its place for as long as the WebSocket lives.
        let _slot = slot;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => connection::run(broker, TokioIo::new(upgraded), remote).await,
            Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
        }
    });
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// A refused HTTP request: status, error code and a sentence.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    pub fn response(self) -> Response<Body> {
        error_response(self.status, self.code, self.message)
    }
}

/// How long a request's headers, and then its body, may take to arrive: a client trickling
/// them would otherwise hold a connection slot for ever.
pub const READ_WAIT: Duration = Duration::from_secs(30);

/// Reads a request body up to `limit` bytes within [`READ_WAIT`]; over the limit is 413,
/// whatever the client claims, and a body still arriving after the wait is 408.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, HttpError> {
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body = tokio::time::timeout(READ_WAIT, Limited::new(req.into_body(), limit).collect());
    let Ok(read) = body.await else {
        return Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                READ_WAIT.as_secs()
            ),
        ));
    };
    match read {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(HttpError::malformed(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::malformed(format!("body is not the expected JSON: {e}")))
}

#[derive(Deserialize)]
struct CreateMeshBody {
    name: String,
    owner_pubkey: String,
    member_pubkey: String,
    /// Refused when present: the broker never takes a mesh root key.
    #[serde(default)]
    root_key: Option<serde_json::Value>,
    /// `HMAC-SHA256(root_key, "claudemesh-root-key-check")`, 64 lowercase hex (optional).
    #[serde(default)]
    root_key_check: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    /// `sealed` (the default) or `plain` (PROTOCOL.md §4.2, §5.2), with the owner key's
    /// signature over it (required for `plain`).
    #[serde(default)]
    group_bodies: Option<String>,
    #[serde(default)]
    group_bodies_signature: Option<String>,
    #[serde(default)]
    group_bodies_signed_at: Option<i64>,
}

async fn create_mesh(broker: Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    if !broker.config.open {
        let presented = bearer(&req).unwrap_or("");
        if !crypto::constant_time_eq(presented.as_bytes(), broker.admin_token.as_bytes()) {
            broker.metrics.error("unauthorized");
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "creating a mesh needs the broker's admin token (see admin.token in its data directory), unless the broker runs with --open",
            );
        }
    }
    let body: CreateMeshBody = match read_body(req, broker.config.max_message_bytes)
        .await
        .and_then(|b| parse_json(&b))
    {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            "mesh name must be 1-64 printable characters",
        );
    }
    let (Ok(owner), Ok(member)) = (
        Pubkey::parse(&body.owner_pubkey),
        Pubkey::parse(&body.member_pubkey),
    ) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            "owner_pubkey and member_pubkey must be 64 lowercase hex",
        );
    };
    if body.root_key.is_some() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            "this broker does not take mesh root keys (members keep them; invite links carry them after #): send root_key_check instead of root_key (upgrade claudemesh)",
        );
    }
    if body
        .root_key_check
        .as_deref()
        .is_some_and(|c| Pubkey::parse(c).is_err())
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            "root_key_check must be 64 lowercase hex",
        );
    }
    let display_name = body
        .display_name
        .as_deref()
        .and_then(crate::protocol::clean_display_name)
        .unwrap_or_else(|| "owner".into());
    if let Some(why) = crate::protocol::reserved_name_refusal("display_name", &display_name) {
        return error_response(StatusCode::BAD_REQUEST, "malformed", why);
    }
    let group_bodies = match body.group_bodies.as_deref().map(GroupBodies::parse) {
        None => GroupBodies::default(),
        Some(Some(g)) => g,
        Some(None) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "malformed",
                "group_bodies must be \"sealed\" or \"plain\"",
            );
        }
    };
    let group_bodies_proof = GroupBodiesProof::from_wire(
        body.group_bodies_signature.as_ref(),
        body.group_bodies_signed_at,
    );
    let proven = group_bodies_proof
        .as_ref()
        .is_some_and(|p| p.verifies(&body.owner_pubkey, group_bodies.as_str()));
    if group_bodies == GroupBodies::Plain && !proven {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_signature",
            "group_bodies plain needs the owner key's signature over it (group_bodies_signature, group_bodies_signed_at)",
        );
    }
    let created = broker
        .store
        .create_mesh(CreateMesh {
            name,
            owner_pubkey: owner,
            root_key_check: body.root_key_check,
            member_pubkey: member,
            display_name,
            group_bodies,
            group_bodies_proof: group_bodies_proof.filter(|_| proven),
            now_ms: time::now_ms(),
        })
        .await;
    match created {
        Ok((mesh, member)) => json_response(
            StatusCode::CREATED,
            json!({"meshId": mesh.id, "slug": mesh.slug, "name": mesh.name, "memberId": member.id}),
        ),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// What a banned member is told (hello and claim alike), with the ban's reason.
pub fn banned_message(reason: &str) -> String {
    if reason.is_empty() {
        "this member is banned from the mesh; an owner or admin can lift it (claudemesh unban)"
            .into()
    } else {
        format!("this member is banned from the mesh: {reason}")
    }
}
