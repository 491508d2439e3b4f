//! `POST /upload`, `GET /download/:id` and the rest of the file side that needs the whole broker.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;

use super::{FileGrant, Readable, TokenPurpose, object_path};
use crate::broker::http::{Body, json_response};
use crate::broker::presence::Peer;
use crate::broker::state::Broker;
use crate::protocol::{Pubkey, time};
use crate::store::{AuditActor, FileAccess, FileRecord};

/// After refusing an upload, read (and discard) at most this much more of its body so the
/// client gets to read the refusal instead of a reset connection.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// Objects without metadata older than this are leftovers of a crash and are removed.
const ORPHAN_AGE_MS: i64 = 60 * 60 * 1000;

mod upload;

pub use upload::{UploadMeta, parse_upload_headers, upload};

/// Whether `peer` may read `record` (which must be of its mesh): an encrypted file only with a
/// sealed key for one of its keys; a plain file with a direct or group target only by that
/// target and the uploader. `Err((code, message))` otherwise.
pub fn readable_by(
    broker: &Broker,
    record: &FileRecord,
    peer: &Peer,
) -> Result<Readable, (&'static str, String)> {
    if record.mesh_id != peer.mesh_id || record.is_expired(time::now_ms()) {
        return Err(("not_found", format!("no file {}", record.id)));
    }
    if record.encrypted {
        let mut keys = Vec::with_capacity(2);
        if let Some(s) = peer.proven_session() {
            keys.push(s.to_hex());
        }
        keys.push(peer.member_pubkey.to_hex());
        return match broker.store.file_key(&record.mesh_id, &record.id, &keys) {
            Ok(Some((pubkey, sealed_key))) => Ok(Readable::Sealed { pubkey, sealed_key }),
            Ok(None) => Err((
                "forbidden",
                format!(
                    "file {} is encrypted and was not shared with you; its owner can grant you access",
                    record.id
                ),
            )),
            Err(e) => Err(("internal", e.to_string())),
        };
    }
    let target = record.target_spec.as_deref().unwrap_or("*");
    let allowed = peer.member_id == record.uploader_member_id
        || match target {
            "" | "*" | "@all" => true,
            t if Pubkey::is_shape(t) => {
                peer.member_pubkey.to_hex() == t
                    || peer.proven_session().is_some_and(|s| s.to_hex() == t)
            }
            t if t.starts_with('@') => peer.in_group(&t[1..]),
            _ => true,
        };
    if allowed {
        Ok(Readable::Plain)
    } else {
        Err((
            "forbidden",
            format!("file {} was shared with {target}, not with you", record.id),
        ))
    }
}

/// An upload refused: status, code and a sentence, as `{ok:false, error, message}`.
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn response(self) -> Response<Body> {
        json_response(
            self.status,
            json!({"ok": false, "error": self.code, "message": self.message}),
        )
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of a file request: `Authorization: Bearer …`, else `?token=…`.
fn request_token<B>(req: &Request<B>) -> Option<String> {
    let bearer = super::super::http::bearer(req).map(str::to_string);
    bearer.or_else(|| {
        req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("token="))
                .map(str::to_string)
        })
    })
}

/// Reads and discards what is left of a refused body (bounded), so the refusal can be read.
async fn drain(body: &mut Incoming) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut seen: u64 = 0;
    while seen <= DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

fn member_still_valid(broker: &Broker, grant: &FileGrant) -> Result<(), Refusal> {
    match broker.store.member(&grant.mesh_id, &grant.member_id) {
        Ok(Some(m))
            if m.revoked_at_ms.is_none()
                && !broker.presence.is_revoked(&grant.mesh_id, &grant.member_id) =>
        {
            Ok(())
        }
        Ok(_) => Err(no_longer_a_member()),
        Err(e) => Err(Refusal::internal(e.to_string())),
    }
}

fn no_longer_a_member() -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "revoked",
        "this member is no longer in the mesh",
    )
}

/// `GET /download/:id`.
pub async fn download(
    broker: Arc<Broker>,
    req: Request<Incoming>,
    file_id: &str,
) -> Response<Body> {
    let refuse = |r: Refusal| {
        broker.metrics.error(r.code);
        r.response()
    };
    let grant = match request_token(&req).and_then(|t| broker.files.redeem(&t)) {
        Some(g) => g,
        None => {
            return refuse(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "download needs a fresh token: ask the broker for the file over the WebSocket (get_file) and use the URL it returns",
            ));
        }
    };
    if grant.purpose
        != (TokenPurpose::Download {
            file_id: file_id.to_string(),
        })
    {
        return refuse(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token is not for this file",
        ));
    }
    if let Err(r) = member_still_valid(&broker, &grant) {
        return refuse(r);
    }
    let record = match broker.store.file(&grant.mesh_id, file_id) {
        Ok(Some(r)) if !r.is_expired(time::now_ms()) => r,
        Ok(_) => {
            return refuse(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no file {file_id}"),
            ));
        }
        Err(e) => return refuse(Refusal::internal(e.to_string())),
    };
    let path = object_path(&record.mesh_id, &record.id);
    let got = match broker.files.blobs.get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return refuse(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("the bytes of file {file_id} are gone"),
            ));
        }
        Err(e) => return refuse(Refusal::internal(format!("file storage: {e}"))),
    };
    let size = got.meta.size;
    let access = FileAccess {
        peer_name: grant.peer_name.clone(),
        member_id: grant.member_id.clone(),
        pubkey: grant.pubkey.clone(),
        accessed_at_ms: time::now_ms(),
    };
    if let Err(e) = broker
        .store
        .record_file_access(record.mesh_id.clone(), record.id.clone(), access)
        .await
    {
        return refuse(Refusal::internal(format!("storage: {e}")));
    }
    let body = ObjectBody {
        stream: Mutex::new(got.into_stream()),
        remaining: size,
    };
    let mut resp = Response::new(body.boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if record.encrypted {
        h.insert("x-encrypted", HeaderValue::from_static("true"));
    }
    resp
}

/// A response body fed by an object's byte stream. The stream sits in a `Mutex` only so the
/// body is `Sync` (as `BoxBody` wants); it is never locked, `get_mut` reaches it.
struct ObjectBody {
    stream: Mutex<BoxStream<'static, object_store::Result<Bytes>>>,
    remaining: u64,
}

impl hyper::body::Body for ObjectBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let stream = this.stream.get_mut().unwrap_or_else(|p| p.into_inner());
        match stream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.remaining = this.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Removes a file: its metadata first (so it disappears at once), then its bytes. Bytes whose
/// removal fails are orphans the sweeper collects later.
pub async fn remove_file(
    broker: &Broker,
    mesh_id: &str,
    file_id: &str,
    by: AuditActor,
) -> Result<Option<FileRecord>, String> {
    let removed = broker
        .store
        .delete_file(mesh_id.to_string(), file_id.to_string(), by, time::now_ms())
        .await
        .map_err(|e| e.to_string())?;
    if removed.is_some() {
        let path = object_path(mesh_id, file_id);
        match broker.files.blobs.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!("cannot remove the bytes of {path}: {e}"),
        }
    }
    Ok(removed)
}

/// Removes ephemeral files once their lifetime has passed, and (at start and every few hours)
/// objects that have no metadata (left by a crash between upload and commit, or by a failed
/// delete). Runs until the broker shuts down.
pub async fn run_sweeper(broker: Arc<Broker>) {
    let every = (broker.config.ephemeral_ttl / 4)
        .clamp(Duration::from_millis(250), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    let mut last_orphan_sweep: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match broker.store.expired_files(time::now_ms()) {
            Ok(expired) => {
                for (mesh_id, file_id) in expired {
                    if broker.shutdown.is_cancelled() {
                        return;
                    }
                    match remove_file(&broker, &mesh_id, &file_id, AuditActor::broker()).await {
                        Ok(_) => {
                            tracing::debug!(mesh = %mesh_id, file = %file_id, "ephemeral file expired")
                        }
                        Err(e) => tracing::warn!("cannot remove expired file {file_id}: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot look for expired files: {e}"),
        }
        let due = last_orphan_sweep.is_none_or(|t| t.elapsed() >= Duration::from_secs(6 * 3600));
        if due {
            last_orphan_sweep = Some(tokio::time::Instant::now());
            tokio::select! {
                _ = broker.shutdown.cancelled() => return,
                _ = sweep_orphans(&broker) => {}
            }
        }
    }
}

async fn sweep_orphans(broker: &Broker) {
    let prefix = ObjectPath::from("mesh");
    let mut listing = broker.files.blobs.list(Some(&prefix));
    let cutoff = time::now_ms() - ORPHAN_AGE_MS;
    let mut removed = 0u64;
    while let Some(item) = listing.next().await {
        let meta = match item {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot list stored files: {e}");
                return;
            }
        };
        let parts: Vec<String> = meta
            .location
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        let [_, mesh_id, file_id] = parts.as_slice() else {
            continue;
        };
        if meta.last_modified.timestamp_millis() > cutoff {
            continue;
        }
        if matches!(broker.store.file(mesh_id, file_id), Ok(None)) {
            match broker.files.blobs.delete(&meta.location).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove orphan {}: {e}", meta.location),
            }
        }
    }
    if removed > 0 {
        tracing::info!("removed {removed} stored files that had no metadata");
    }
}
