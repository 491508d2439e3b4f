//! `POST /upload`: the headers checked, the body streamed into the blob store in parts within
//! the mesh's quota and an upload slot, synced to disk, then recorded.

use object_store::{PutPayload, WriteMultipart};

use super::super::check_file_key;
use super::*;
use crate::broker::BrokerConfig;
use crate::protocol::ids;
use crate::store::{Quota, QuotaExceeded, UploadRefusal};

/// Multipart part size: S3's minimum; a few of these are all an upload holds in memory.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload being written at once (memory per upload ≈ (this + 1) × PART_BYTES).
const PARTS_IN_FLIGHT: usize = 2;
/// An upload must send this much within each `--upload-idle-timeout` to keep its slot.
const MIN_PROGRESS_BYTES: u64 = 16 * 1024;
/// Limits on the upload headers.
const MAX_NAME_BYTES: usize = 255;
const MAX_TAGS: usize = 32;
const MAX_TAG_CHARS: usize = 64;
const MAX_FILE_KEYS: usize = 256;

/// What the upload headers say.
#[derive(Debug)]
pub struct UploadMeta {
    pub name: String,
    pub tags: Vec<String>,
    pub persistent: bool,
    pub target_spec: Option<String>,
    pub encrypted: bool,
    pub owner_pubkey: Option<String>,
    pub keys: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub declared_len: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileKeyHeader {
    peer_pubkey: String,
    sealed_key: String,
}

/// Reads the upload headers (PROTOCOL.md §7) of an upload made with `grant`'s token. Pure: no
/// storage is touched.
pub fn parse_upload_headers(headers: &HeaderMap, grant: &FileGrant) -> Result<UploadMeta, Refusal> {
    match header(headers, "x-mesh-id") {
        Some(m) if m == grant.mesh_id => {}
        Some(_) => {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "X-Mesh-Id is not the mesh this upload token was issued for",
            ));
        }
        None => return Err(Refusal::malformed("X-Mesh-Id is required")),
    }
    // Raw UTF-8 is accepted in the name (HTTP allows bytes above 0x7f in a header value).
    let name = headers
        .get("x-file-name")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .unwrap_or_default();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(Refusal::malformed(format!(
            "X-File-Name must be 1-{MAX_NAME_BYTES} bytes of printable text"
        )));
    }
    let tags: Vec<String> = match headers.get("x-tags") {
        None => Vec::new(),
        Some(v) => serde_json::from_slice(v.as_bytes()).map_err(|_| {
            Refusal::malformed("X-Tags must be a JSON array of strings, e.g. [\"spec\",\"v2\"]")
        })?,
    };
    let tags: Vec<String> = tags
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tags.len() > MAX_TAGS
        || tags
            .iter()
            .any(|t| t.chars().count() > MAX_TAG_CHARS || t.chars().any(char::is_control))
    {
        return Err(Refusal::malformed(format!(
            "at most {MAX_TAGS} tags of at most {MAX_TAG_CHARS} printable characters"
        )));
    }
    let persistent = !header(headers, "x-persistent")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false") || v.trim() == "0");
    let target_spec = header(headers, "x-target-spec")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if target_spec.as_ref().is_some_and(|t| t.len() > 256) {
        return Err(Refusal::malformed("X-Target-Spec is too long"));
    }
    let encrypted = header(headers, "x-encrypted")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1");
    let owner_pubkey = match header(headers, "x-owner-pubkey").map(str::trim) {
        None | Some("") => None,
        Some(k) if k == grant.pubkey || k == grant.member_pubkey => Some(k.to_string()),
        Some(_) => {
            return Err(Refusal::malformed(
                "X-Owner-Pubkey must be the uploader's own key (64 lowercase hex)",
            ));
        }
    };
    let keys: Vec<FileKeyHeader> = match headers.get("x-file-keys") {
        None => Vec::new(),
        Some(v) => serde_json::from_slice(v.as_bytes()).map_err(|_| {
            Refusal::malformed("X-File-Keys must be a JSON array of {peerPubkey, sealedKey}")
        })?,
    };
    if keys.len() > MAX_FILE_KEYS {
        return Err(Refusal::malformed(format!(
            "at most {MAX_FILE_KEYS} X-File-Keys entries"
        )));
    }
    let mut checked = Vec::with_capacity(keys.len());
    for k in keys {
        check_file_key(&k.peer_pubkey, &k.sealed_key).map_err(Refusal::malformed)?;
        checked.push((k.peer_pubkey, k.sealed_key));
    }
    if encrypted && checked.is_empty() {
        return Err(Refusal::malformed(
            "an encrypted upload needs X-File-Keys: the file key sealed to at least its owner",
        ));
    }
    if !encrypted && !checked.is_empty() {
        return Err(Refusal::malformed(
            "X-File-Keys only make sense with X-Encrypted: true",
        ));
    }
    let content_type = header(headers, "content-type")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128);
    let declared_len = header(headers, "content-length").and_then(|v| v.trim().parse().ok());
    Ok(UploadMeta {
        name,
        tags,
        persistent,
        target_spec,
        encrypted,
        owner_pubkey,
        keys: checked,
        content_type,
        declared_len,
    })
}

/// `POST /upload`.
pub async fn upload(broker: Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    let grant = request_token(&req).and_then(|t| broker.files.redeem(&t));
    let (parts, mut body) = req.into_parts();
    // A client that waits for `100 Continue` has not sent its body: refuse it without asking.
    let waits_to_send =
        header(&parts.headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let checked = match grant {
        Some(g) if g.purpose == TokenPurpose::Upload => member_still_valid(&broker, &g)
            .and_then(|()| still_holds_files(&broker, &g))
            .and_then(|()| parse_upload_headers(&parts.headers, &g).map(|m| (g, m))),
        _ => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "upload needs a fresh token: ask the broker over the WebSocket (file_token{purpose:\"upload\"}) and send it as Authorization: Bearer <token>",
        )),
    };
    let (grant, meta) = match checked {
        Ok(ok) => ok,
        Err(refusal) => {
            broker.metrics.error(refusal.code);
            if !waits_to_send {
                drain(&mut body).await;
            }
            return refusal.response();
        }
    };
    let cap = broker.config.max_upload_bytes;
    if meta.declared_len.is_some_and(|n| n > cap) {
        broker.metrics.error("payload_too_large");
        if !waits_to_send {
            drain(&mut body).await;
        }
        return too_large(cap).response();
    }
    let room = match quota_room(&broker, &grant.mesh_id, meta.declared_len) {
        Ok(room) => room,
        Err(refusal) => {
            broker.metrics.error(refusal.code);
            if !waits_to_send {
                drain(&mut body).await;
            }
            return refusal.response();
        }
    };
    let _slot = match wait_for_slot(&broker).await {
        Ok(slot) => slot,
        Err(refusal) => {
            broker.metrics.error(refusal.code);
            if !waits_to_send {
                drain(&mut body).await;
            }
            return refusal.response();
        }
    };
    let file_id = ids::new_id();
    let path = object_path(&grant.mesh_id, &file_id);
    let size = match stream_to_store(&broker, &path, &mut body, cap.min(room)).await {
        Ok(size) => size,
        Err(refusal) => {
            let refusal = over_quota_while_streaming(&broker, refusal, cap, room);
            broker.metrics.error(refusal.code);
            if refusal.status == StatusCode::PAYLOAD_TOO_LARGE {
                drain(&mut body).await;
            }
            return refusal.response();
        }
    };
    // Still a member now that the bytes are in (a revocation may have come meanwhile).
    if let Err(refusal) =
        member_still_valid(&broker, &grant).and(sync_to_disk(&broker.config, &path).await)
    {
        if let Err(e) = broker.files.blobs.delete(&path).await {
            tracing::warn!("cannot remove {path} after a failed sync: {e}");
        }
        broker.metrics.error(refusal.code);
        return refusal.response();
    }
    let now = time::now_ms();
    let record = FileRecord {
        id: file_id.clone(),
        mesh_id: grant.mesh_id.clone(),
        name: meta.name,
        size,
        tags: meta.tags,
        uploader_member_id: grant.member_id.clone(),
        uploader_name: grant.peer_name.clone(),
        uploader_pubkey: grant.pubkey.clone(),
        owner_pubkey: meta
            .owner_pubkey
            .or_else(|| meta.encrypted.then(|| grant.pubkey.clone())),
        target_spec: meta.target_spec,
        persistent: meta.persistent,
        encrypted: meta.encrypted,
        content_type: meta.content_type,
        created_at_ms: now,
        expires_at_ms: (!meta.persistent)
            .then(|| now + broker.config.ephemeral_ttl.as_millis() as i64),
    };
    let refused = match broker
        .store
        .insert_file(record, meta.keys, broker.config.quotas)
        .await
    {
        Ok(Ok(())) => None,
        // Another upload of the mesh took the room first.
        Ok(Err(UploadRefusal::Quota(over))) => Some(quota_refusal(over)),
        // Revoked or banned after the check above, before the commit.
        Ok(Err(UploadRefusal::NotMember)) => Some(no_longer_a_member()),
        Err(e) => Some(Refusal::internal(format!("storage: {e}"))),
    };
    if let Some(refusal) = refused {
        // The bytes must not outlive a failed commit.
        if let Err(de) = broker.files.blobs.delete(&path).await {
            tracing::warn!("cannot remove {path} after a failed commit: {de}");
        }
        broker.metrics.error(refusal.code);
        return refusal.response();
    }
    tracing::info!(
        mesh = %grant.mesh_id,
        file = %file_id,
        size,
        "file uploaded by {}",
        grant.peer_name
    );
    crate::broker::router::tell_observers(&broker, &grant.mesh_id, "files");
    json_response(StatusCode::OK, json!({"ok": true, "fileId": file_id}))
}

fn too_large(cap: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the file is larger than this broker's upload limit of {cap} bytes"),
    )
}

/// An upload refused by a mesh quota (`--max-files`, `--max-file-bytes`).
fn quota_refusal(over: QuotaExceeded) -> Refusal {
    let status = match over.quota {
        Quota::FileBytes => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::FORBIDDEN,
    };
    Refusal::new(status, "quota_exceeded", over.to_string())
}

/// How many bytes the mesh may still upload, checked before anything is streamed: refused
/// when it holds its most files, or when the declared size does not fit. The commit checks
/// again, so uploads racing for the last room cannot both win.
fn quota_room(broker: &Broker, mesh_id: &str, declared: Option<u64>) -> Result<u64, Refusal> {
    let limits = broker.config.quotas;
    let usage = |q| {
        broker
            .store
            .quota_usage(mesh_id, q)
            .map_err(|e| Refusal::internal(e.to_string()))
    };
    let over = |quota| {
        quota_refusal(QuotaExceeded {
            quota,
            limit: limits.limit(quota),
        })
    };
    if usage(Quota::Files)? >= limits.files {
        return Err(over(Quota::Files));
    }
    let room = limits.file_bytes.saturating_sub(usage(Quota::FileBytes)?);
    if declared.is_some_and(|n| n > room) {
        return Err(over(Quota::FileBytes));
    }
    Ok(room)
}

/// A body cut off at the mesh's remaining room (smaller than the upload cap) is refused for
/// the quota, not for the upload cap.
fn over_quota_while_streaming(broker: &Broker, refusal: Refusal, cap: u64, room: u64) -> Refusal {
    if refusal.status == StatusCode::PAYLOAD_TOO_LARGE && room < cap {
        return quota_refusal(QuotaExceeded {
            quota: Quota::FileBytes,
            limit: broker.config.quotas.file_bytes,
        });
    }
    refusal
}

/// A revoked (or removed) member's tokens die with its membership.
/// An upload token outlives nothing: the member must still hold `files` when it uploads.
fn still_holds_files(broker: &Broker, grant: &FileGrant) -> Result<(), Refusal> {
    use crate::protocol::messages::Permission;
    match broker
        .store
        .holds(&grant.mesh_id, &grant.member_id, Permission::Files)
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this member lacks the \"files\" capability (canManageFiles) it needs to upload",
        )),
        Err(e) => Err(Refusal::internal(e.to_string())),
    }
}

/// Streams the body into the blob store at `path`; returns the size. On any failure nothing is
/// left behind: the multipart upload is aborted.
async fn stream_to_store(
    broker: &Broker,
    path: &ObjectPath,
    body: &mut Incoming,
    cap: u64,
) -> Result<u64, Refusal> {
    let blobs = &broker.files.blobs;
    let mut progress = Progress::new(broker.config.upload_idle_timeout);
    let mut writer: Option<WriteMultipart> = None;
    let mut size: u64 = 0;
    let failure: Option<Refusal> = loop {
        let frame = match progress.next_frame(body).await {
            Err(refusal) => break Some(refusal),
            Ok(None) => break None,
            Ok(Some(Err(e))) => {
                break Some(Refusal::malformed(format!("the upload broke off: {e}")));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        size += data.len() as u64;
        if size > cap {
            break Some(too_large(cap));
        }
        if writer.is_none() {
            match blobs.put_multipart(path).await {
                Ok(upload) => {
                    writer = Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES));
                }
                Err(e) => break Some(Refusal::internal(format!("file storage: {e}"))),
            }
        }
        let Some(w) = writer.as_mut() else { continue };
        if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
            break Some(Refusal::internal(format!("file storage: {e}")));
        }
        w.put(data);
    };
    match (failure, writer) {
        (Some(refusal), Some(w)) => {
            if let Err(e) = w.abort().await {
                tracing::warn!("cannot abort the upload of {path}: {e}");
            }
            Err(refusal)
        }
        (Some(refusal), None) => Err(refusal),
        (None, Some(w)) => match w.finish().await {
            Ok(_) => Ok(size),
            Err(e) => Err(Refusal::internal(format!("file storage: {e}"))),
        },
        (None, None) => match blobs.put(path, PutPayload::new()).await {
            Ok(_) => Ok(0),
            Err(e) => Err(Refusal::internal(format!("file storage: {e}"))),
        },
    }
}

/// A free upload slot, waited for at most `--upload-slot-wait`.
async fn wait_for_slot(broker: &Broker) -> Result<tokio::sync::SemaphorePermit<'_>, Refusal> {
    let wait = broker.config.upload_slot_wait;
    match tokio::time::timeout(wait, broker.files.upload_slots.acquire()).await {
        Ok(Ok(slot)) => Ok(slot),
        Ok(Err(_)) => Err(Refusal::internal("the broker is shutting down")),
        Err(_) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "every upload slot ({}) stayed busy for {}; try again later",
                broker.config.upload_slots,
                humantime::format_duration(wait)
            ),
        )),
    }
}

/// The idle clock of one upload: a slot is kept only while the body moves, at least
/// [`MIN_PROGRESS_BYTES`] (or its end) per `--upload-idle-timeout`, so a client trickling a
/// byte now and then cannot hold a slot for ever.
struct Progress {
    idle: Duration,
    deadline: tokio::time::Instant,
    since: u64,
}

impl Progress {
    fn new(idle: Duration) -> Progress {
        Progress {
            idle,
            deadline: tokio::time::Instant::now() + idle,
            since: 0,
        }
    }

    /// The next body frame, or the refusal when the upload stalled.
    async fn next_frame(
        &mut self,
        body: &mut Incoming,
    ) -> Result<Option<Result<Frame<Bytes>, hyper::Error>>, Refusal> {
        let Ok(frame) = tokio::time::timeout_at(self.deadline, body.frame()).await else {
            return Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the upload sent less than {} KiB in {}; it was ended to free its slot",
                    MIN_PROGRESS_BYTES / 1024,
                    humantime::format_duration(self.idle)
                ),
            ));
        };
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            self.since += data.map_or(0, |d| d.len() as u64);
            if self.since >= MIN_PROGRESS_BYTES {
                self.since = 0;
                self.deadline = tokio::time::Instant::now() + self.idle;
            }
        }
        Ok(frame)
    }
}

/// The file under `<data>/files` that the local blob store keeps `path` in; `None` for S3.
fn local_file(config: &BrokerConfig, path: &ObjectPath) -> Option<std::path::PathBuf> {
    if config
        .files_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty())
    {
        return None;
    }
    let root = config.data_dir.join("files");
    Some(path.parts().fold(root, |p, part| p.join(part.as_ref())))
}

/// object_store's local store writes without fsync: before the metadata commit makes the
/// upload acknowledged, the file's bytes and the directory entries leading to it reach the
/// disk. (An S3 PUT is durable when it returns.)
async fn sync_to_disk(config: &BrokerConfig, path: &ObjectPath) -> Result<(), Refusal> {
    let Some(file) = local_file(config, path) else {
        return Ok(());
    };
    let root = config.data_dir.join("files");
    let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::File::open(&file)?.sync_all()?;
        let mut dir = file.parent();
        while let Some(d) = dir {
            std::fs::File::open(d)?.sync_all()?;
            if d == root {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    })
    .await;
    match synced {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Refusal::internal(format!("file storage: cannot sync: {e}"))),
        Err(e) => Err(Refusal::internal(format!("file storage: {e}"))),
    }
}
