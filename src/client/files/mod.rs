//! Files from the client's side (PROTOCOL.md §7): streamed uploads and downloads over HTTP with
//! tokens from the WebSocket, end-to-end encryption in a chunked format, and the WebSocket
//! requests around them (list, status, delete, grant).
//!
//! Nothing here holds a whole file in memory: an upload is read, encrypted and sent 64 KiB at a
//! time; a download is decrypted and written to a temporary file as it arrives, and only renamed
//! to its final name once it is complete and authentic.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::http::{HttpResponse, open, request_builder};
use super::unexpected;
use super::{ClientError, MeshClient};
use crate::crypto;
use crate::protocol::messages::{
    FileEntry, FileRef, FileStatusResult, FileTokenRequest, FileTokenResult, FileUrl,
    GrantFileAccess, ListFiles,
};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage};

mod chunks;

pub use chunks::{CHUNK_BYTES, ChunkOpener, ChunkSealer, HEADER_BYTES, encrypted_len};

/// A download that receives nothing for this long has failed.
const IDLE: Duration = Duration::from_secs(60);

/// What went wrong with a file transfer.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Transfer(String),
    #[error("{0}")]
    Decrypt(String),
    #[error("{0}")]
    Invalid(String),
}

impl FileError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

// -------------------------------------------------------------------------------------------
// Saving: names that cannot escape their directory
// -------------------------------------------------------------------------------------------

/// A stored name reduced to something safe to create in a directory: its last normal path
/// component (`../../etc/passwd` → `passwd`), without control characters; `file-<id>` when
/// nothing is left.
pub fn safe_file_name(stored: &str, file_id: &str) -> String {
    let last = stored
        .rsplit(['/', '\\'])
        .map(|p| p.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|p| p.trim().to_string())
        .find(|p| !p.is_empty() && p != "." && p != "..");
    match last {
        Some(name) => name,
        None => format!("file-{file_id}"),
    }
}

/// Where a download goes: `out` if it names a file, inside `out` if it is a directory (or ends
/// with `/`), else the current directory under the stored name. `true` when an existing file
/// there may be replaced (only when `out` names the file itself).
pub fn destination(
    out: Option<&Path>,
    stored_name: &str,
    file_id: &str,
) -> Result<(PathBuf, bool), FileError> {
    let name = safe_file_name(stored_name, file_id);
    let Some(out) = out else {
        let cwd = std::env::current_dir().map_err(FileError::io(Path::new(".")))?;
        return Ok((cwd.join(name), false));
    };
    let wants_dir = out.as_os_str().to_string_lossy().ends_with('/')
        || matches!(
            out.components().next_back(),
            Some(Component::CurDir | Component::ParentDir)
        );
    if out.is_dir() {
        return Ok((out.join(name), false));
    }
    if wants_dir {
        std::fs::create_dir_all(out).map_err(FileError::io(out))?;
        return Ok((out.join(name), false));
    }
    Ok((out.to_path_buf(), true))
}

// -------------------------------------------------------------------------------------------
// HTTP plumbing
// -------------------------------------------------------------------------------------------

/// A request body fed from a channel (so a producer can read and encrypt while hyper sends).
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    remaining: u64,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                this.remaining = this.remaining.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Reads a (small) error answer and turns it into the broker's `{error, message}`.
async fn error_answer(resp: hyper::Response<hyper::body::Incoming>) -> FileError {
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    FileError::Client(HttpResponse { status, body }.into_error())
}

/// The broker's download URL, with an unusable wildcard host (a broker listening on 0.0.0.0
/// without `--public-url`) replaced by the address this client reaches the broker at.
fn usable_url(url: &str, http_base: &str) -> String {
    for wildcard in [
        "http://0.0.0.0",
        "http://[::]",
        "https://0.0.0.0",
        "https://[::]",
    ] {
        if let Some(rest) = url.strip_prefix(wildcard) {
            let path = rest.find('/').map_or("", |i| &rest[i..]);
            return format!("{http_base}{path}");
        }
    }
    url.to_string()
}

// -------------------------------------------------------------------------------------------
// The requests
// -------------------------------------------------------------------------------------------

/// How to share a file.
#[derive(Debug, Clone, Default)]
pub struct ShareOptions {
    /// The name others see (default: the file's own name).
    pub name: Option<String>,
    pub tags: Vec<String>,
    /// Ephemeral files expire (24 h by default on the broker).
    pub ephemeral: bool,
    /// Encrypt end to end for these keys (member or session pubkeys); empty: a plain file that
    /// everyone in the mesh may read.
    pub recipients: Vec<Pubkey>,
    /// The target spec recorded with the file.
    pub target_spec: Option<String>,
}

/// A shared file.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shared {
    pub file_id: String,
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    #[serde(skip)]
    pub encrypted: bool,
}

/// A downloaded file.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub file_id: String,
    pub path: PathBuf,
    /// Plaintext bytes written.
    pub size: u64,
    pub encrypted: bool,
}

/// Progress of a transfer: bytes done of the total.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

impl MeshClient {
    /// A short-lived token for one `POST /upload`.
    pub async fn file_token(&self) -> Result<FileTokenResult, ClientError> {
        let req = ClientMessage::FileToken(FileTokenRequest {
            purpose: "upload".into(),
        });
        match self.request(req).await? {
            ServerMessage::FileTokenResult(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// The download URL of a file (with a one-use token), and its sealed key if it is
    /// encrypted and was shared with us.
    pub async fn get_file(&self, file_id: &str) -> Result<FileUrl, ClientError> {
        let req = ClientMessage::GetFile(FileRef {
            file_id: file_id.to_string(),
        });
        match self.request(req).await? {
            ServerMessage::FileUrl(u) => Ok(u),
            other => Err(unexpected(other)),
        }
    }

    /// The files that match, newest first (all pages).
    pub async fn list_files(
        &self,
        query: Option<String>,
        from: Option<String>,
    ) -> Result<Vec<FileEntry>, ClientError> {
        let mut files = self
            .all_pages(
                |cursor| {
                    ClientMessage::ListFiles(ListFiles {
                        query: query.clone(),
                        from: from.clone(),
                        cursor,
                        limit: None,
                    })
                },
                |answer| match answer {
                    ServerMessage::FileList { files, next_cursor } => Ok((files, next_cursor)),
                    other => Err(unexpected(other)),
                },
            )
            .await?;
        // ISO-8601 in one format: text order is time order.
        files.sort_by(|a, b| {
            b.uploaded_at
                .cmp(&a.uploaded_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(files)
    }

    pub async fn file_status(&self, file_id: &str) -> Result<FileStatusResult, ClientError> {
        let req = ClientMessage::FileStatus(FileRef {
            file_id: file_id.to_string(),
        });
        match self.request(req).await? {
            ServerMessage::FileStatusResult(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_file(&self, file_id: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::DeleteFile(FileRef {
            file_id: file_id.to_string(),
        }))
        .await
    }

    /// The keys a file shared `--to` what a person typed is encrypted for: names or keys
    /// only, since each recipient needs a key of its own (`Invalid` for a group or `*`).
    pub async fn file_recipients(&self, to: &str) -> Result<Vec<Pubkey>, FileError> {
        let mut keys = Vec::new();
        for t in self.resolve_targets(to).await? {
            let key = Pubkey::parse(&t.spec).map_err(|_| {
                FileError::Invalid(format!(
                    "{}: a file is encrypted to each recipient's key, so name peers (names or keys), not groups or *",
                    t.label
                ))
            })?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// Opens a file key sealed to one of our keys (the session key, then the member key).
    fn open_file_key(&self, sealed_b64: &str) -> Result<[u8; 32], FileError> {
        let sealed = STANDARD
            .decode(sealed_b64)
            .map_err(|_| FileError::Decrypt("the sealed file key is not base64".into()))?;
        let keys = [
            self.speaking_keys()?,
            self.entry().member_keys().map_err(ClientError::from)?,
        ];
        keys.iter()
            .find_map(|k| crypto::seal_open(&sealed, &k.to_x25519()).ok())
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| {
                FileError::Decrypt("the file key was not sealed to our keys, or is damaged".into())
            })
    }

    /// Lets `peer` read an encrypted file we own: opens our copy of the file key and seals it
    /// to the peer's key.
    pub async fn grant_file_access(&self, file_id: &str, peer: &Pubkey) -> Result<(), FileError> {
        let url = self.get_file(file_id).await?;
        if !url.encrypted {
            return Err(FileError::Invalid(format!(
                "file {file_id} is not encrypted: everyone in the mesh can already read it"
            )));
        }
        let sealed = url
            .sealed_key
            .as_deref()
            .ok_or_else(|| FileError::Decrypt("the broker sent no file key for us".into()))?;
        let key = self.open_file_key(sealed)?;
        let x = crypto::ed25519_pk_to_x25519(&peer.0)
            .map_err(|e| FileError::Invalid(format!("{peer}: {e}")))?;
        let sealed_for_peer =
            crypto::seal(&key, &x).map_err(|e| FileError::Invalid(format!("{peer}: {e}")))?;
        let answer = self
            .request(ClientMessage::GrantFileAccess(GrantFileAccess {
                file_id: url.file_id.clone(),
                peer_pubkey: peer.to_hex(),
                sealed_key: STANDARD.encode(sealed_for_peer),
            }))
            .await?;
        match answer {
            ServerMessage::GrantFileAccessOk(_) => Ok(()),
            other => Err(unexpected(other).into()),
        }
    }

    /// Shares `bytes` as a plain file of the mesh named `name` and tagged `tag` (a packed skill
    /// bundle or service), staged in a temporary file that is removed afterwards.
    pub(crate) async fn share_bytes(
        &self,
        bytes: &[u8],
        name: &str,
        tag: &str,
        target_spec: Option<String>,
    ) -> Result<Shared, FileError> {
        let staged = super::skills::TempFile::new(name);
        std::fs::write(&staged.0, bytes).map_err(FileError::io(&staged.0))?;
        self.share_file(
            &staged.0,
            ShareOptions {
                name: Some(name.to_string()),
                tags: vec![tag.to_string()],
                target_spec,
                ..Default::default()
            },
            &|_, _| {},
        )
        .await
    }

    /// Uploads the file at `path`, streamed (and encrypted for `recipients` plus ourselves when
    /// there are any). `progress` gets plaintext bytes read of the total.
    pub async fn share_file(
        &self,
        path: &Path,
        opts: ShareOptions,
        progress: Progress<'_>,
    ) -> Result<Shared, FileError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(FileError::io(path))?;
        let meta = file.metadata().await.map_err(FileError::io(path))?;
        if !meta.is_file() {
            return Err(FileError::Invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let plain_len = meta.len();
        let name = match &opts.name {
            Some(n) if !n.trim().is_empty() => n.trim().to_string(),
            _ => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    FileError::Invalid(format!("{} has no file name; give --name", path.display()))
                })?,
        };
        let encrypted = !opts.recipients.is_empty();
        let mut sealer = None;
        let mut file_keys = Vec::new();
        if encrypted {
            let key: [u8; 32] = crypto::random_bytes();
            // Ourselves too, with the key we speak with and our member key.
            let mut to: Vec<Pubkey> = opts.recipients.clone();
            for own in [
                self.speaking_keys()?.public,
                self.entry()
                    .member_keys()
                    .map_err(ClientError::from)?
                    .public,
            ] {
                to.push(Pubkey(own));
            }
            to.sort_by_key(|k| k.0);
            to.dedup();
            for pk in &to {
                let x = crypto::ed25519_pk_to_x25519(&pk.0)
                    .map_err(|e| FileError::Invalid(format!("{pk}: {e}")))?;
                let sealed =
                    crypto::seal(&key, &x).map_err(|e| FileError::Invalid(format!("{pk}: {e}")))?;
                file_keys.push(serde_json::json!({
                    "peerPubkey": pk.to_hex(),
                    "sealedKey": STANDARD.encode(sealed),
                }));
            }
            sealer = Some(ChunkSealer::new(key));
        }
        let body_len = if encrypted {
            encrypted_len(plain_len)
        } else {
            plain_len
        };
        let token = self.file_token().await?;
        if body_len > token.max_bytes {
            return Err(FileError::Invalid(format!(
                "{} is {body_len} bytes{}; the broker accepts at most {} bytes",
                path.display(),
                if encrypted { " encrypted" } else { "" },
                token.max_bytes
            )));
        }
        let url = format!("{}/upload", self.entry().http_base());
        let (mut sender, uri) = open::<ChannelBody>(&url, &self.trust()).await?;
        let mut req = request_builder(&uri, "POST")
            .header("authorization", format!("Bearer {}", token.token))
            .header("content-type", "application/octet-stream")
            .header("content-length", body_len)
            .header("x-mesh-id", &self.entry().mesh_id)
            .header("x-file-name", name.as_bytes())
            .header(
                "x-tags",
                serde_json::to_string(&opts.tags).unwrap_or_else(|_| "[]".into()),
            )
            .header(
                "x-persistent",
                if opts.ephemeral { "false" } else { "true" },
            );
        if let Some(t) = &opts.target_spec {
            req = req.header("x-target-spec", t);
        }
        if encrypted {
            let owner = self.speaking_keys()?.public_hex();
            req = req
                .header("x-encrypted", "true")
                .header("x-owner-pubkey", owner)
                .header(
                    "x-file-keys",
                    serde_json::Value::Array(file_keys).to_string(),
                );
        }
        let (tx, rx) = mpsc::channel(8);
        let req = req
            .body(ChannelBody {
                rx,
                remaining: body_len,
            })
            .map_err(|e| FileError::Invalid(format!("cannot build the upload request: {e}")))?;
        // Owns the sender, so the body ends when the file does.
        let produce = async move {
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut done: u64 = 0;
            if let Some(s) = &sealer
                && tx.send(Ok(Bytes::from(s.header()))).await.is_err()
            {
                return Ok(());
            }
            loop {
                let n = read_full(&mut file, &mut buf)
                    .await
                    .map_err(FileError::io(path))?;
                done += n as u64;
                let out = match &mut sealer {
                    Some(s) => Bytes::from(s.seal(&buf[..n])),
                    None => Bytes::copy_from_slice(&buf[..n]),
                };
                if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
                    return Ok(()); // the connection ended; its answer says why
                }
                progress(done.min(plain_len), plain_len);
                if n < CHUNK_BYTES {
                    return Ok::<(), FileError>(());
                }
            }
        };
        let (answer, produced) = tokio::join!(sender.send_request(req), produce);
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                produced?;
                return Err(FileError::Transfer(format!(
                    "the upload to {url} failed: {e}"
                )));
            }
        };
        if resp.status() != StatusCode::OK {
            return Err(error_answer(resp).await);
        }
        produced?;
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| FileError::Transfer(format!("the upload's answer broke off: {e}")))?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let file_id = v["fileId"]
            .as_str()
            .filter(|_| v["ok"] == true)
            .ok_or_else(|| {
                FileError::Transfer(format!(
                    "unexpected answer to the upload: {}",
                    String::from_utf8_lossy(&body)
                ))
            })?
            .to_string();
        Ok(Shared {
            file_id,
            name,
            size: plain_len,
            encrypted,
        })
    }

    /// Downloads a file to `out` (see [`destination`]), decrypting it if it is encrypted. The
    /// bytes go to a temporary file next to the destination, renamed into place only when the
    /// whole file has arrived (and, if encrypted, authenticated). A decrypted file is 0600.
    pub async fn fetch_file(
        &self,
        file_id: &str,
        out: Option<&Path>,
        progress: Progress<'_>,
    ) -> Result<Fetched, FileError> {
        let info = self.get_file(file_id).await?;
        let opener = match (info.encrypted, info.sealed_key.as_deref()) {
            (false, _) => None,
            (true, Some(sealed)) => Some(ChunkOpener::new(self.open_file_key(sealed)?)),
            (true, None) => {
                return Err(FileError::Decrypt(
                    "the file is encrypted but the broker sent no key for us".into(),
                ));
            }
        };
        let (dest, may_replace) = destination(out, &info.name, &info.file_id)?;
        if !may_replace && dest.exists() {
            return Err(FileError::Invalid(format!(
                "{} already exists; choose another place with --out",
                dest.display()
            )));
        }
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let temp = dir.join(format!(
            ".{}.{}.part",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            crate::protocol::ids::base62(8)
        ));
        let result = self.download_to(&info, opener, &temp, progress).await;
        let written = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        };
        if !may_replace && dest.exists() {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(FileError::Invalid(format!(
                "{} already exists; choose another place with --out",
                dest.display()
            )));
        }
        if let Err(e) = tokio::fs::rename(&temp, &dest).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(FileError::Io {
                path: dest,
                source: e,
            });
        }
        Ok(Fetched {
            file_id: info.file_id,
            path: dest,
            size: written,
            encrypted: info.encrypted,
        })
    }

    async fn download_to(
        &self,
        info: &FileUrl,
        mut opener: Option<ChunkOpener>,
        temp: &Path,
        progress: Progress<'_>,
    ) -> Result<u64, FileError> {
        let url = usable_url(&info.url, &self.entry().http_base());
        let (mut sender, uri) = open::<Empty<Bytes>>(&url, &self.trust()).await?;
        let req = request_builder(&uri, "GET")
            .body(Empty::new())
            .map_err(|e| FileError::Invalid(format!("cannot build the download request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| FileError::Transfer(format!("the download failed: {e}")))?;
        if resp.status() != StatusCode::OK {
            return Err(error_answer(resp).await);
        }
        let expected: u64 = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(info.size);
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        // Decrypted bytes were meant for us alone: owner-only from the first byte (a chmod
        // after writing would leave a window). A plain file is readable by the whole mesh
        // anyway and gets the usual mode.
        #[cfg(unix)]
        options.mode(if opener.is_some() { 0o600 } else { 0o666 });
        let file = options.open(temp).await.map_err(FileError::io(temp))?;
        let mut writer = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        let mut body = resp.into_body();
        let mut received: u64 = 0;
        let mut written: u64 = 0;
        let mut plain = Vec::with_capacity(CHUNK_BYTES * 2);
        loop {
            let frame = tokio::time::timeout(IDLE, body.frame())
                .await
                .map_err(|_| FileError::Transfer("the download stalled".into()))?;
            let Some(frame) = frame else { break };
            let frame =
                frame.map_err(|e| FileError::Transfer(format!("the download broke off: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received += data.len() as u64;
            let out: &[u8] = match &mut opener {
                Some(o) => {
                    plain.clear();
                    o.feed(&data, &mut plain)?;
                    &plain
                }
                None => &data,
            };
            writer.write_all(out).await.map_err(FileError::io(temp))?;
            written += out.len() as u64;
            progress(received.min(expected), expected);
        }
        if received != expected {
            return Err(FileError::Transfer(format!(
                "the download ended early: {received} of {expected} bytes"
            )));
        }
        if let Some(o) = opener {
            plain.clear();
            o.finish(&mut plain)?;
            writer
                .write_all(&plain)
                .await
                .map_err(FileError::io(temp))?;
            written += plain.len() as u64;
        }
        writer.flush().await.map_err(FileError::io(temp))?;
        writer
            .into_inner()
            .sync_all()
            .await
            .map_err(FileError::io(temp))?;
        Ok(written)
    }
}

/// Reads until `buf` is full or the file ends; returns how much was read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_cannot_escape() {
        assert_eq!(safe_file_name("../../etc/passwd", "id"), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini", "id"), "boot.ini");
        assert_eq!(safe_file_name("a/b/..", "id"), "b");
        assert_eq!(safe_file_name("..", "id"), "file-id");
        assert_eq!(safe_file_name("/", "id"), "file-id");
        assert_eq!(safe_file_name("re\u{7}port.pdf", "id"), "report.pdf");
        assert_eq!(safe_file_name("notes.md", "id"), "notes.md");
    }

    #[test]
    fn destinations() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (p, replace) = destination(Some(dir.path()), "../x/evil.sh", "id").expect("dir");
        assert_eq!(p, dir.path().join("evil.sh"));
        assert!(!replace);
        let named = dir.path().join("mine.bin");
        let (p, replace) = destination(Some(&named), "../evil.sh", "id").expect("file");
        assert_eq!(p, named);
        assert!(replace);
        let sub = dir.path().join("new/");
        let (p, _) = destination(Some(&sub), "a.txt", "id").expect("new dir");
        assert_eq!(p, dir.path().join("new").join("a.txt"));
        assert!(dir.path().join("new").is_dir());
    }

    #[test]
    fn wildcard_hosts_are_replaced() {
        assert_eq!(
            usable_url("http://0.0.0.0:7900/download/x?token=t", "http://host:7900"),
            "http://host:7900/download/x?token=t"
        );
        assert_eq!(usable_url("http://h:1/d", "http://other"), "http://h:1/d");
    }
}
