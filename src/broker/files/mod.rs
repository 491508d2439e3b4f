//! File bytes (PROTOCOL.md §7): the blob store, `POST /upload` and `GET /download/:id`, the
//! short-lived tokens that authenticate them, and the sweeper that removes expired files.
//!
//! Both transfers stream: an upload goes from hyper's body frames into an object-store multipart
//! upload a part at a time, a download from the object's byte stream into the response body, so
//! the broker never holds a whole file in memory.
//!
//! Authentication: a member-signed request (§8) signs the body's hash, which cannot be checked
//! before a streamed body has ended. So both endpoints take a token instead, obtained over the
//! authenticated WebSocket (`file_token` for an upload, `get_file` for a download). A token is
//! 256 random bits, kept in memory only, bound to the mesh, the member and the key it spoke with
//! (and, for a download, to one file), valid for [`TOKEN_TTL_MS`] and good for one request.
//!
//! This module is the part the broker state (`state.rs`) holds and never reaches back into it;
//! [`endpoints`] serves upload and download over HTTP and holds what else needs the whole broker.

pub mod endpoints;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use tokio::sync::Semaphore;

use super::BrokerConfig;
use super::presence::Peer;
use crate::protocol::{Pubkey, ids, time};

/// How long a file token may wait before it is used.
pub const TOKEN_TTL_MS: i64 = 5 * 60 * 1000;
/// Default upload cap (PROTOCOL.md §7).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// Default lifetime of an ephemeral file.
pub const DEFAULT_EPHEMERAL_TTL: Duration = Duration::from_secs(24 * 3600);
/// Uploads streamed at once; more wait for a slot.
const UPLOAD_SLOTS: usize = 8;
/// `crypto_box_seal` of a 32-byte key: 32 + 48 bytes.
const SEALED_KEY_BYTES: usize = 80;
/// Outstanding tokens one member may hold, and all members together.
const TOKENS_PER_MEMBER: usize = 256;
const MAX_TOKENS: usize = 65_536;
/// Outstanding tokens in all from which a member's share is limited.
const CAPPED_FROM: usize = 1024;

/// What a file token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPurpose {
    Upload,
    Download { file_id: String },
}

/// Who a token was given to, and for what.
#[derive(Debug, Clone)]
pub struct FileGrant {
    pub purpose: TokenPurpose,
    pub mesh_id: String,
    pub member_id: String,
    pub peer_name: String,
    /// The key the peer spoke with (session or member), hex.
    pub pubkey: String,
    pub member_pubkey: String,
    pub expires_at_ms: i64,
}

impl FileGrant {
    pub fn for_peer(peer: &Peer, purpose: TokenPurpose) -> FileGrant {
        FileGrant {
            purpose,
            mesh_id: peer.mesh_id.clone(),
            member_id: peer.member_id.clone(),
            peer_name: peer.display_name.clone(),
            pubkey: peer.pubkey().to_hex(),
            member_pubkey: peer.member_pubkey.to_hex(),
            expires_at_ms: time::now_ms() + TOKEN_TTL_MS,
        }
    }
}

/// The broker's file side: the blob store and the outstanding tokens.
pub struct Files {
    pub blobs: Arc<dyn ObjectStore>,
    tokens: Mutex<Tokens>,
    upload_slots: Semaphore,
}

/// The outstanding tokens, and how many each member (of a mesh) holds, so issuing one costs
/// the same however many are out.
#[derive(Default)]
struct Tokens {
    grants: HashMap<String, FileGrant>,
    held: HashMap<(String, String), usize>,
}

impl Tokens {
    fn holder(grant: &FileGrant) -> (String, String) {
        (grant.mesh_id.clone(), grant.member_id.clone())
    }

    /// True when `grant`'s member holds all it may, or the broker does. A member's share is
    /// counted only once [`CAPPED_FROM`] tokens are out, so a lone busy member is not limited.
    fn full_for(&self, grant: &FileGrant) -> bool {
        let held = || self.held.get(&Self::holder(grant)).copied().unwrap_or(0);
        self.grants.len() >= CAPPED_FROM
            && (self.grants.len() >= MAX_TOKENS || held() >= TOKENS_PER_MEMBER)
    }

    fn insert(&mut self, token: String, grant: FileGrant) {
        *self.held.entry(Self::holder(&grant)).or_default() += 1;
        self.grants.insert(token, grant);
    }

    fn remove(&mut self, token: &str) -> Option<FileGrant> {
        let grant = self.grants.remove(token)?;
        let holder = Self::holder(&grant);
        if let Some(n) = self.held.get_mut(&holder) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&holder);
            }
        }
        Some(grant)
    }

    /// Forgets the tokens that expired unused.
    fn drop_expired(&mut self, now_ms: i64) {
        let expired: Vec<String> = (self.grants.iter())
            .filter(|(_, g)| g.expires_at_ms <= now_ms)
            .map(|(t, _)| t.clone())
            .collect();
        for token in expired {
            self.remove(&token);
        }
    }
}

impl Files {
    pub fn new(blobs: Arc<dyn ObjectStore>) -> Files {
        Files {
            blobs,
            tokens: Mutex::default(),
            upload_slots: Semaphore::new(UPLOAD_SLOTS),
        }
    }

    /// Issues a token for `grant`, unless many are out and its member already holds
    /// [`TOKENS_PER_MEMBER`] unused ones (or the broker [`MAX_TOKENS`]); expired ones are
    /// dropped before that is decided.
    pub fn issue(&self, grant: FileGrant) -> Result<String, String> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.full_for(&grant) {
            tokens.drop_expired(time::now_ms());
            if tokens.full_for(&grant) {
                return Err(format!(
                    "too many unused file tokens; they expire after {} minutes",
                    TOKEN_TTL_MS / 60_000
                ));
            }
        }
        let token = ids::base62(43);
        tokens.insert(token.clone(), grant);
        Ok(token)
    }

    /// Sets the number of upload slots (`--upload-slots`; [`UPLOAD_SLOTS`] at first).
    pub fn set_upload_slots(&self, slots: usize) {
        if slots > UPLOAD_SLOTS {
            self.upload_slots.add_permits(slots - UPLOAD_SLOTS);
        } else {
            self.upload_slots.forget_permits(UPLOAD_SLOTS - slots);
        }
    }

    /// Takes a token (it is good for one request); `None` when unknown or expired.
    fn redeem(&self, token: &str) -> Option<FileGrant> {
        let grant = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)?;
        (grant.expires_at_ms > time::now_ms()).then_some(grant)
    }
}

/// Opens the blob store: `--files <url>` (`s3://bucket/prefix`, configured from the usual
/// `AWS_*` variables), else a directory `<data>/files`.
pub fn open_blob_store(config: &BrokerConfig) -> Result<Arc<dyn ObjectStore>, String> {
    let Some(url) = config.files_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        let dir = config.data_dir.join("files");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Only this process uses the data directory (redb locks it), so any staged upload
        // found now was cut off by a crash.
        remove_staged_uploads(&dir);
        let local = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| format!("cannot use {} for files: {e}", dir.display()))?
            .with_automatic_cleanup(true);
        return Ok(Arc::new(local));
    };
    let url = url.trim();
    let (bucket, prefix) = parse_files_url(url)?;
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| format!("--files {url}: {e}"))?;
    match prefix {
        None => Ok(Arc::new(s3)),
        Some(prefix) => Ok(Arc::new(PrefixStore::new(s3, prefix))),
    }
}

/// `--files s3://bucket[/prefix]`: the bucket, and the prefix when there is one. Checked
/// before the broker starts (see [`BrokerConfig::preflight`]), without reading `AWS_*`.
pub fn parse_files_url(url: &str) -> Result<(&str, Option<ObjectPath>), String> {
    let url = url.trim();
    let Some(rest) = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("s3a://"))
    else {
        return Err(format!(
            "--files {url}: only s3://bucket[/prefix] URLs are supported (AWS S3 or MinIO, configured through AWS_* variables)"
        ));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("--files {url}: the bucket name is missing"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok((bucket, None));
    }
    let prefix = ObjectPath::parse(prefix).map_err(|e| format!("--files {url}: {e}"))?;
    Ok((bucket, Some(prefix)))
}

/// Removes `<name>#<digits>` files, `LocalFileSystem`'s uploads in progress, under `dir`.
fn remove_staged_uploads(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_staged_uploads(&path);
            continue;
        }
        let name = entry.file_name();
        let staged = name
            .to_string_lossy()
            .split_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if staged {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!("removed an interrupted upload: {}", path.display()),
                Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
            }
        }
    }
}

/// Where a file's bytes live in the blob store.
pub fn object_path(mesh_id: &str, file_id: &str) -> ObjectPath {
    ObjectPath::from_iter(["mesh", mesh_id, file_id])
}

/// How a peer may read a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readable {
    Plain,
    /// Encrypted; this is the file key sealed to `pubkey`.
    Sealed {
        pubkey: String,
        sealed_key: String,
    },
}

/// Checks one `{peerPubkey, sealedKey}`: a 64-hex key and a standard-base64 sealed 32-byte key.
pub fn check_file_key(peer_pubkey: &str, sealed_key: &str) -> Result<(), String> {
    if !Pubkey::is_shape(peer_pubkey) {
        return Err("peerPubkey must be 64 lowercase hex".into());
    }
    match STANDARD.decode(sealed_key) {
        Ok(b) if b.len() == SEALED_KEY_BYTES => Ok(()),
        _ => Err(format!(
            "sealedKey must be a sealed 32-byte key: {SEALED_KEY_BYTES} bytes in standard base64"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_files() -> (tempfile::TempDir, Files) {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs = LocalFileSystem::new_with_prefix(dir.path()).expect("blob dir");
        (dir, Files::new(Arc::new(blobs)))
    }

    fn grant(member: &str, expires_at_ms: i64) -> FileGrant {
        FileGrant {
            purpose: TokenPurpose::Upload,
            mesh_id: "mesh".into(),
            member_id: member.into(),
            peer_name: member.into(),
            pubkey: "ab".repeat(32),
            member_pubkey: "ab".repeat(32),
            expires_at_ms,
        }
    }

    fn valid(member: &str) -> FileGrant {
        grant(member, time::now_ms() + TOKEN_TTL_MS)
    }

    #[test]
    fn a_token_is_good_for_one_request_and_not_once_expired() {
        let (_dir, files) = new_files();
        let token = files.issue(valid("alice")).expect("issued");
        assert_eq!(token.len(), 43, "256 random bits in base62");
        let redeemed = files.redeem(&token).expect("a fresh token is good");
        assert_eq!(redeemed.member_id, "alice");
        assert!(files.redeem(&token).is_none(), "a token is good once");
        assert!(
            files.redeem("nope").is_none(),
            "an unknown token is refused"
        );

        let old = files
            .issue(grant("alice", time::now_ms() - 1))
            .expect("issued");
        assert!(files.redeem(&old).is_none(), "an expired token is refused");
    }

    #[test]
    fn a_member_holds_at_most_256_unused_tokens_once_many_are_out() {
        let (_dir, files) = new_files();
        // A lone member is not limited until 1 024 tokens are out.
        for i in 0..CAPPED_FROM {
            let member = if i < 900 { "carol" } else { "dave" };
            files.issue(valid(member)).expect("under 1 024 in all");
        }
        let mut held = Vec::new();
        for n in 0..TOKENS_PER_MEMBER {
            let token = (files.issue(valid("alice")))
                .unwrap_or_else(|e| panic!("token {n} of {TOKENS_PER_MEMBER}: {e}"));
            held.push(token);
        }
        let refused = files
            .issue(valid("alice"))
            .expect_err("the 257th is refused");
        assert!(refused.contains("too many unused file tokens"), "{refused}");
        assert!(refused.contains("5 minutes"), "{refused}");
        // Another member, and the same member id in another mesh, are someone else.
        files.issue(valid("bob")).expect("bob gets his own");
        let mut elsewhere = valid("alice");
        elsewhere.mesh_id = "other mesh".into();
        files
            .issue(elsewhere)
            .expect("another mesh's alice gets her own");
        // A token used makes room for one more.
        assert!(files.redeem(&held[7]).is_some());
        files.issue(valid("alice")).expect("room for one");
        files.issue(valid("alice")).expect_err("and only one");
    }

    #[test]
    fn expired_tokens_make_room_and_the_broker_holds_at_most_65_536() {
        let (_dir, files) = new_files();
        let past = time::now_ms() - 1;
        for _ in 0..CAPPED_FROM + TOKENS_PER_MEMBER {
            files
                .issue(grant("alice", past))
                .expect("expired ones do not count");
        }
        for n in 0..TOKENS_PER_MEMBER {
            files
                .issue(valid("alice"))
                .unwrap_or_else(|e| panic!("token {n}, the expired ones dropped: {e}"));
        }

        let (_dir, files) = new_files();
        for i in 0..MAX_TOKENS {
            files
                .issue(valid(&format!("m{}", i / 200)))
                .unwrap_or_else(|e| panic!("token {i} of {MAX_TOKENS}: {e}"));
        }
        let refused = files
            .issue(valid("newcomer"))
            .expect_err("the broker is full");
        assert!(refused.contains("too many unused file tokens"), "{refused}");
    }

    #[test]
    fn upload_slots_are_what_the_flag_says() {
        for slots in [1, 2, 8, 9, 30] {
            let (_dir, files) = new_files();
            files.set_upload_slots(slots);
            assert_eq!(
                files.upload_slots.available_permits(),
                slots,
                "--upload-slots {slots}"
            );
        }
    }

    #[test]
    fn a_file_key_is_a_lowercase_hex_key_and_an_80_byte_sealed_key() {
        let key = "ab".repeat(32);
        let sealed = STANDARD.encode([7u8; SEALED_KEY_BYTES]);
        assert_eq!(check_file_key(&key, &sealed), Ok(()));
        for (pubkey, sealed_key) in [
            (key.to_uppercase(), sealed.clone()),
            (key[..62].to_string(), sealed.clone()),
            (key.clone(), STANDARD.encode([7u8; SEALED_KEY_BYTES - 1])),
            (key.clone(), STANDARD.encode([7u8; 32])),
            (
                key.clone(),
                base64::engine::general_purpose::URL_SAFE.encode([0xfb; 80]),
            ),
            (key.clone(), "not base64!".into()),
        ] {
            assert!(
                check_file_key(&pubkey, &sealed_key).is_err(),
                "{pubkey} / {sealed_key} accepted"
            );
        }
    }

    #[test]
    fn a_file_lives_under_its_mesh() {
        assert_eq!(object_path("m1", "f1").as_ref(), "mesh/m1/f1");
        assert_ne!(object_path("m1", "f1"), object_path("m2", "f1"));
    }

    #[test]
    fn uploads_cut_off_by_a_crash_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sub = dir.path().join("mesh").join("m1");
        std::fs::create_dir_all(&sub).expect("dirs");
        let staged = ["f1#0", "f2#123"];
        let kept = ["f3", "f4#", "f5#12a", "#notes", "f6#1#x"];
        for name in staged.iter().chain(&kept) {
            std::fs::write(sub.join(name), b"x").expect("write");
        }
        std::fs::write(dir.path().join("top#9"), b"x").expect("write");
        remove_staged_uploads(dir.path());
        for name in staged {
            assert!(!sub.join(name).exists(), "{name} is an interrupted upload");
        }
        assert!(!dir.path().join("top#9").exists());
        for name in kept {
            assert!(
                sub.join(name).exists(),
                "{name} is not an upload in progress"
            );
        }
    }
}
