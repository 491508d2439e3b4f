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
        receive(req, &path).await?;
        let c = &shared.client;
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

/// Streams the request body into `path`.
async fn receive(req: Request<Incoming>, path: &std::path::Path) -> Result<(), ApiError> {
    let failed = |e: std::io::Error| ApiError::Broker(format!("cannot keep the upload: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::Input(format!("the upload broke off: {e}")))?;
        if let Some(data) = frame.data_ref() {
            file.write_all(data).await.map_err(failed)?;
        }
    }
    file.flush().await.map_err(failed)
}
