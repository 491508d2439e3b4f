//! `claudemesh dashboard` (issue 18): a local web server that shows one member's view of its
//! mesh — peers, conversations, the board, tasks, memory, files, approvals — live, in the
//! browser of the machine it runs on.
//!
//! It holds one connection to the broker through the client library, as the member, with
//! `peerRole:"observer"`: hidden like a CLI connection, hearing events and a mirror copy of
//! the member's messages without taking any away from its sessions. It serves on loopback
//! only; [`auth`] says who may ask, [`events`] streams what happens to the page (SSE),
//! [`api`] answers the page's JSON calls with the client library's typed calls, and
//! [`conversations`] keeps the messages seen since it started.

pub mod api;
pub mod auth;
pub mod conversations;
pub mod events;
pub mod settings;
pub mod uploads;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::broker::http::{Body, respond};
use crate::client::MeshClient;
use crate::protocol::messages::PeerInfo;

/// The role the dashboard's connection says in its hello (PROTOCOL.md §3.1).
pub const OBSERVER: &str = "observer";

/// What every part of the server shares.
pub struct Shared {
    pub client: MeshClient,
    pub gate: auth::Gate,
    pub hub: events::Hub,
    pub log: conversations::Log,
}

/// A running dashboard.
pub struct Dashboard {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The one-time login link.
    pub login_url: String,
    server: JoinHandle<()>,
}

impl Dashboard {
    /// Serves the dashboard of `client`'s member on `listener` (loopback; the caller checks),
    /// and starts following the broker's pushes.
    pub fn start(client: MeshClient, listener: TcpListener) -> std::io::Result<Dashboard> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            client,
            gate: auth::Gate::new(addr),
            hub: events::Hub::new(),
            log: conversations::Log::default(),
        });
        let login_url = shared.gate.login_url();
        tokio::spawn(events::follow(shared.clone()));
        let server = tokio::spawn(serve(shared, listener));
        Ok(Dashboard {
            addr,
            login_url,
            server,
        })
    }

    /// Runs until the server stops (it does not by itself).
    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

/// What the dashboard's connection says about itself: the member, as an observer.
pub fn observer_peer(display_name: &str) -> PeerInfo {
    PeerInfo {
        display_name: Some(display_name.to_string()),
        session_id: format!("dashboard-{}", std::process::id()),
        pid: std::process::id(),
        cwd: String::new(),
        hostname: crate::cli::hostname(),
        peer_type: Some("human".into()),
        channel: Some("dashboard".into()),
        model: None,
        groups: None,
        peer_role: Some(OBSERVER.into()),
    }
}

async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("dashboard: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(secure(route(shared, req).await)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A new directory only this user can read, under the system's temp dir (a download being
/// decrypted, the page that opens the browser).
pub fn private_temp_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "claudemesh-dashboard-{}",
        crate::protocol::ids::base62(16)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// The headers every answer carries: no script but ours, no framing, no referrer.
fn secure(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// A refusal: 403 and one line saying why.
pub fn forbidden(reason: &str) -> Response<Body> {
    respond(
        StatusCode::FORBIDDEN,
        "text/plain; charset=utf-8",
        format!("{reason}\n"),
    )
}

const INDEX_HTML: &str = include_str!("../../data/dashboard/index.html");
const APP_JS: &str = include_str!("../../data/dashboard/app.js");
const MESH_JS: &str = include_str!("../../data/dashboard/mesh.js");
const ACTIVITY_JS: &str = include_str!("../../data/dashboard/activity.js");
const APP_CSS: &str = include_str!("../../data/dashboard/app.css");

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    if let Err(reason) = shared.gate.check(&req) {
        return forbidden(reason);
    }
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/login") => login(&shared, &req),
        (&Method::GET, "/") => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        (&Method::GET, "/app.js") => {
            respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
        }
        (&Method::GET, "/mesh.js") => {
            respond(StatusCode::OK, "text/javascript; charset=utf-8", MESH_JS)
        }
        (&Method::GET, "/activity.js") => respond(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            ACTIVITY_JS,
        ),
        (&Method::GET, "/app.css") => respond(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        (&Method::GET, "/events") => shared.hub.stream(),
        (_, p) if p.starts_with("/api/") => api::answer(&shared, req).await,
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such page\n",
        ),
    }
}

/// `GET /login?token=…`: the one-time token for a session cookie, then to the dashboard.
fn login(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let token = req
        .uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let Some(id) = shared.gate.login(&token) else {
        return forbidden(
            "this login link was already used or is wrong: restart `claudemesh dashboard` for a new one",
        );
    };
    let mut resp = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&id)) {
        h.insert(header::SET_COOKIE, v);
    }
    resp
}
