//! `POST /api/files/upload?name=…&to=…&tags=…`: a file from the page, its bytes as the raw
//! request body (the page shows its own upload progress). The body goes to a private temp
//! file, then up to the broker exactly as `claudemesh file share` sends it — encrypted for
//! `to` and this member when `to` is given — while `upload` events report the broker side.

use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::Shared;
use super::api::ApiError;
use crate::client::files::ShareOptions;

/// Reads the body into `name` in a new private dir, then shares it; the dir goes either way.
pub async fn upload(
    shared: &Shared,
    req: Request<Incoming>,
    param: impl Fn(&str) -> Option<String>,
) -> Result<Value, ApiError> {
    let name = param("name").unwrap_or_default();
    let name = name.trim();
    // The name the mesh sees; the temp file has one of its own.
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return Err(ApiError::Input(
            "give the file a name without slashes".into(),
        ));
    }
    let tags: Vec<String> = param("tags")
        .unwrap_or_default()
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let to = param("to").filter(|t| !t.trim().is_empty());
    let dir = super::private_temp_dir().map_err(|e| ApiError::Broker(e.to_string()))?;
    let path = dir.join("upload");
    let result = async {
        let c = &shared.client;
        // What the broker would refuse is not kept first: its limit is in a token's answer.
        let limit = c.file_token().await?.max_bytes;
        receive(req, &path, limit).await?;
        let recipients = match &to {
            Some(to) => c.file_recipients(to).await.map_err(|e| match e {
                crate::client::files::FileError::Invalid(m) => ApiError::Input(m),
                other => other.into(),
            })?,
            None => Vec::new(),
        };
        let target_spec = match recipients.as_slice() {
            [one] => Some(one.to_hex()),
            _ => None,
        };
        let opts = ShareOptions {
            name: Some(name.to_string()),
            tags,
            ephemeral: false,
            recipients,
            target_spec,
        };
        // One event per percent, not one per chunk.
        let shown = AtomicU64::new(u64::MAX);
        let report = |done: u64, total: u64| {
            let percent = done.saturating_mul(100) / total.max(1);
            if shown.swap(percent, Ordering::Relaxed) == percent {
                return;
            }
            shared.hub.publish(
                "upload",
                &json!({ "name": name, "done": done, "total": total }),
            );
        };
        let done = c.share_file(&path, opts, &report).await?;
        shared.hub.publish("files", &Value::Null);
        Ok(json!({
            "fileId": done.file_id,
            "name": done.name,
            "size": done.size,
            "encrypted": done.encrypted,
        }))
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result
}

/// Streams the request body into `path`, refusing it as soon as it is known to be over `limit`
/// bytes (by its `Content-Length`, or by what has come).
async fn receive(
    req: Request<Incoming>,
    path: &std::path::Path,
    limit: u64,
) -> Result<(), ApiError> {
    let too_big = |size: u64| {
        ApiError::Input(format!(
            "the file is {size} bytes or more; the broker accepts at most {limit} bytes"
        ))
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = req.into_body();
    if let Some(size) = declared.filter(|&size| size > limit) {
        discard(&mut body).await;
        return Err(too_big(size));
    }
    let failed = |e: std::io::Error| ApiError::Broker(format!("cannot keep the upload: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::Input(format!("the upload broke off: {e}")))?;
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
            if received > limit {
                discard(&mut body).await;
                return Err(too_big(received));
            }
            file.write_all(data).await.map_err(failed)?;
        }
    }
    file.flush().await.map_err(failed)
}

/// Reads and drops up to [`DISCARD`] more of a refused body, so the browser, still sending,
/// reads the refusal rather than a reset connection.
async fn discard(body: &mut Incoming) {
    let mut dropped: u64 = 0;
    while dropped < DISCARD {
        match body.frame().await {
            Some(Ok(frame)) => dropped += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
}

/// The most of a refused upload read only to be dropped.
const DISCARD: u64 = 64 << 20;
