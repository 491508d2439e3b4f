//! Who a client is: its keys per mesh, the owner key of meshes it created, the mesh root keys,
//! and where the broker is. Kept in `CLAUDEMESH_CONFIG_DIR` (default `~/.claudemesh`) as
//! `config.json`, pretty-printed so a person can read it, 0600 in a 0700 directory. Every change
//! goes through [`ConfigDir::update`]: under an exclusive lock, read, change, write a temp file,
//! fsync, rename over, fsync the directory — so concurrent `join`s never drop each other's mesh
//! and a crash leaves the old or the new file, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::crypto::{self, SignKeyPair};
use crate::protocol::messages::{Attestation, Hello, PeerInfo, SessionHello};
use crate::protocol::{ATTESTATION_TTL_MS, canonical, time};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid claudemesh config: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("no mesh joined yet: run `claudemesh create <name>` or `claudemesh join <invite-url>`")]
    NoMesh,
    #[error("several meshes are joined ({0}); pick one with --mesh")]
    Ambiguous(String),
    #[error("no joined mesh matches \"{wanted}\" (joined: {joined})")]
    UnknownMesh { wanted: String, joined: String },
    #[error(
        "this machine has no root key for mesh {0}, which group and broadcast messages need: ask for the full invite link (with its #… part) and run `claudemesh join <link>` again"
    )]
    NoRootKey(String),
    #[error("the key for mesh {mesh} in the config is unusable: {message}")]
    BadKey { mesh: String, message: String },
}

/// The client config directory.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    pub path: PathBuf,
}

/// Everything in `config.json`. Its `Debug` shows no secret (see [`MeshEntry`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default = "config_version")]
    pub version: u32,
    #[serde(default)]
    pub meshes: Vec<MeshEntry>,
}

fn config_version() -> u32 {
    1
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: config_version(),
            meshes: Vec::new(),
        }
    }
}

/// One joined mesh: this client's member identity in it and the mesh's shared secrets. `Debug`
/// is written by hand and redacts the secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshEntry {
    pub mesh_id: String,
    pub slug: String,
    pub name: String,
    pub member_id: String,
    pub display_name: String,
    pub role: String,
    /// `ws://host:port/ws`.
    pub broker_url: String,
    pub member_pubkey: String,
    /// libsodium ed25519 secret (seed‖pk), 128 hex.
    pub member_secret_key: String,
    /// The mesh root key, base64url without padding; empty when this machine joined without
    /// it (a bare code or a link without its `#…` part): group messages then cannot be read
    /// or sent. The broker never has it.
    #[serde(default)]
    pub root_key: String,
    pub owner_pubkey: String,
    /// Only on the machine that created the mesh; never sent anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_secret_key: Option<String>,
    pub joined_at: String,
    /// The CA file (PEM) this mesh's broker certificate is checked against, remembered from
    /// `create` / `join --ca-file` (or `CLAUDEMESH_CA_FILE` then); `None`: the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The epoch of `root_key` (PROTOCOL.md §12.4): 0 for the key the mesh was created with,
    /// one more with every rotation.
    #[serde(
        default,
        skip_serializing_if = "crate::protocol::messages::is_epoch_zero"
    )]
    pub key_epoch: u64,
    /// Root keys of earlier epochs this machine held, oldest first: what was sent under them
    /// stays readable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub old_root_keys: Vec<EpochRootKey>,
    /// The newest owner-signed admin list version this machine has seen (PROTOCOL.md §12.4):
    /// a key that would become the current one is not taken on an older list.
    #[serde(
        default,
        skip_serializing_if = "crate::protocol::messages::is_epoch_zero"
    )]
    pub admin_list_version: u64,
}

/// A root key of one epoch, base64url without padding. `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRootKey {
    pub epoch: u64,
    pub key: String,
}

impl std::fmt::Debug for EpochRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochRootKey")
            .field("epoch", &self.epoch)
            .field("key", &Redacted)
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
pub struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Debug for MeshEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured in full so that a new field fails to compile here until someone decides
        // whether it is a secret.
        let MeshEntry {
            mesh_id,
            slug,
            name,
            member_id,
            display_name,
            role,
            broker_url,
            member_pubkey,
            member_secret_key: _,
            root_key: _,
            owner_pubkey,
            owner_secret_key,
            joined_at,
            ca_file,
            key_epoch,
            old_root_keys,
            admin_list_version,
        } = self;
        f.debug_struct("MeshEntry")
            .field("mesh_id", mesh_id)
            .field("slug", slug)
            .field("name", name)
            .field("member_id", member_id)
            .field("display_name", display_name)
            .field("role", role)
            .field("broker_url", broker_url)
            .field("member_pubkey", member_pubkey)
            .field("member_secret_key", &Redacted)
            .field("root_key", &Redacted)
            .field("owner_pubkey", owner_pubkey)
            .field(
                "owner_secret_key",
                &owner_secret_key.as_ref().map(|_| Redacted),
            )
            .field("joined_at", joined_at)
            .field("ca_file", ca_file)
            .field("key_epoch", key_epoch)
            .field("old_root_keys", old_root_keys)
            .field("admin_list_version", admin_list_version)
            .finish()
    }
}

impl ConfigDir {
    /// `CLAUDEMESH_CONFIG_DIR`, else `~/.claudemesh`.
    pub fn from_env() -> ConfigDir {
        let path = std::env::var_os("CLAUDEMESH_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".claudemesh")))
            .unwrap_or_else(|| PathBuf::from(".claudemesh"));
        ConfigDir { path }
    }

    pub fn new(path: impl Into<PathBuf>) -> ConfigDir {
        ConfigDir { path: path.into() }
    }

    pub fn config_file(&self) -> PathBuf {
        self.path.join("config.json")
    }

    /// Loads the config; a missing file is an empty config.
    pub fn load(&self) -> Result<Config, IdentityError> {
        let path = self.config_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(IdentityError::Read { path, source }),
        };
        serde_json::from_str(&text).map_err(|e| IdentityError::Corrupt {
            path,
            message: json_error_without_values(&e),
        })
    }

    /// The one way to change the config: `change` runs on what is on disk now, under an
    /// exclusive lock held until its result is written (temp file, fsync, rename, directory
    /// fsync). Another process changing the config meanwhile waits, then sees this change.
    /// When `change` fails nothing is written. Keep `change` quick and local: no network while
    /// the lock is held.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Config) -> Result<T, IdentityError>,
    ) -> Result<T, IdentityError> {
        let _lock = self.lock()?;
        let mut config = self.load()?;
        let out = change(&mut config)?;
        let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
        write_private(&self.path, "config.json", text.as_bytes())?;
        Ok(out)
    }

    /// An exclusive lock on `config.lock` (not on `config.json` itself, which is replaced by
    /// rename and so would leave a waiter holding the old file). Released when dropped.
    fn lock(&self) -> Result<std::fs::File, IdentityError> {
        let path = self.path.join("config.lock");
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Write { path, source }
        };
        create_private_dir(&self.path).map_err(err(&self.path))?;
        let file = open_private(&path, false).map_err(err(&path))?;
        file.lock().map_err(err(&path))?;
        Ok(file)
    }
}

/// A config parse error without the values serde quotes (`invalid type: string "…"`), which
/// could be a secret key written in the wrong place.
fn json_error_without_values(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "it cannot be read",
        Category::Syntax => "it is not valid JSON",
        Category::Data => "a field is missing or has the wrong type",
        Category::Eof => "it ends too early",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Creates `dir` (and its parents) and makes it 0700: only this user may read what is in it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Writes `dir/name` through a temp file, fsync and rename, then fsyncs the directory so the
/// rename itself survives a crash; the directory 0700 and the file 0600 from its creation.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), IdentityError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Write { path, source }
    };
    create_private_dir(dir).map_err(err(dir))?;
    let target = dir.join(name);
    // Unique per call, so two threads of one process never share a temp file.
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        crate::protocol::ids::base62(8)
    ));
    let result = (|| {
        let mut file = open_private(&tmp, true)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err(&target))?;
    sync_dir(dir).map_err(err(dir))
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Opens (creating it 0600 if missing) a file for writing; `truncate` empties it.
#[cfg(unix)]
fn open_private(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

impl Config {
    /// The mesh a command acts on: the one named by `--mesh` (slug, id or name), or the only one.
    pub fn select(&self, wanted: Option<&str>) -> Result<&MeshEntry, IdentityError> {
        let joined = || {
            self.meshes
                .iter()
                .map(|m| m.slug.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match wanted {
            Some(w) => self
                .meshes
                .iter()
                .find(|m| m.slug == w || m.mesh_id == w)
                .or_else(|| self.meshes.iter().find(|m| m.name == w))
                .ok_or_else(|| IdentityError::UnknownMesh {
                    wanted: w.to_string(),
                    joined: if self.meshes.is_empty() {
                        "none".into()
                    } else {
                        joined()
                    },
                }),
            None => match self.meshes.as_slice() {
                [] => Err(IdentityError::NoMesh),
                [only] => Ok(only),
                _ => Err(IdentityError::Ambiguous(joined())),
            },
        }
    }

    /// Adds or replaces the entry for a mesh.
    pub fn upsert(&mut self, entry: MeshEntry) {
        self.meshes.retain(|m| m.mesh_id != entry.mesh_id);
        self.meshes.push(entry);
    }
}

impl MeshEntry {
    pub fn member_keys(&self) -> Result<SignKeyPair, IdentityError> {
        SignKeyPair::from_secret_hex(&self.member_secret_key).map_err(|e| self.bad_key(e))
    }

    pub fn owner_keys(&self) -> Option<Result<SignKeyPair, IdentityError>> {
        self.owner_secret_key
            .as_deref()
            .map(|s| SignKeyPair::from_secret_hex(s).map_err(|e| self.bad_key(e)))
    }

    pub fn root_key(&self) -> Result<[u8; 32], IdentityError> {
        if self.root_key.is_empty() {
            return Err(IdentityError::NoRootKey(self.slug.clone()));
        }
        decode_root_key(&self.root_key).map_err(|e| self.bad_key(e))
    }

    /// The root key of `epoch`, if this machine holds it.
    pub fn root_key_at(&self, epoch: u64) -> Option<[u8; 32]> {
        let encoded = if epoch == self.key_epoch {
            &self.root_key
        } else {
            &self.old_root_keys.iter().find(|k| k.epoch == epoch)?.key
        };
        decode_root_key(encoded).ok()
    }

    /// Adds the root key of `epoch`: a newer one becomes the current key (the current one is
    /// kept among the old), an older one is kept beside them. Returns whether anything changed;
    /// a key already held never changes.
    pub fn add_root_key(&mut self, epoch: u64, key: &[u8; 32]) -> bool {
        let encoded = encode_root_key(key);
        if epoch == self.key_epoch {
            if !self.root_key.is_empty() {
                return false;
            }
            self.root_key = encoded;
            return true;
        }
        if self.old_root_keys.iter().any(|k| k.epoch == epoch) {
            return false;
        }
        if epoch > self.key_epoch {
            if !self.root_key.is_empty() {
                self.old_root_keys.push(EpochRootKey {
                    epoch: self.key_epoch,
                    key: std::mem::take(&mut self.root_key),
                });
            }
            self.key_epoch = epoch;
            self.root_key = encoded;
        } else {
            self.old_root_keys.push(EpochRootKey {
                epoch,
                key: encoded,
            });
        }
        self.old_root_keys.sort_by_key(|k| k.epoch);
        true
    }

    /// Sets the root key of `epoch` to a sealed copy the broker delivered (PROTOCOL.md §12.4):
    /// unlike [`add_root_key`](Self::add_root_key) it replaces a different key held for that
    /// epoch, which can only have come from an invite link (a sealed copy is what the rotation
    /// handed this member; a link's key could be planted under a later epoch). Returns whether
    /// anything changed.
    pub fn set_sealed_root_key(&mut self, epoch: u64, key: &[u8; 32]) -> bool {
        let encoded = encode_root_key(key);
        if epoch == self.key_epoch {
            if self.root_key == encoded {
                return false;
            }
            self.root_key = encoded;
            return true;
        }
        if let Some(old) = self.old_root_keys.iter_mut().find(|k| k.epoch == epoch) {
            if old.key == encoded {
                return false;
            }
            old.key = encoded;
            return true;
        }
        self.add_root_key(epoch, key)
    }

    /// `http://host:port` of this mesh's broker.
    pub fn http_base(&self) -> String {
        http_base(&self.broker_url)
    }

    fn bad_key(&self, e: impl std::fmt::Display) -> IdentityError {
        IdentityError::BadKey {
            mesh: self.slug.clone(),
            message: e.to_string(),
        }
    }

    /// A signed member hello for this mesh.
    pub fn member_hello(&self, peer: PeerInfo) -> Result<Hello, IdentityError> {
        let keys = self.member_keys()?;
        let timestamp = hello_timestamp();
        let signed = canonical::hello(
            &self.mesh_id,
            &self.member_id,
            &keys.public_hex(),
            timestamp,
        );
        Ok(Hello {
            mesh_id: self.mesh_id.clone(),
            member_id: self.member_id.clone(),
            pubkey: keys.public_hex(),
            session_pubkey: None,
            peer,
            timestamp,
            signature: hex::encode(keys.sign(signed.as_bytes())),
        })
    }

    /// A session hello: `session` speaks for this member under a fresh 12 h attestation.
    pub fn session_hello(
        &self,
        session: &SignKeyPair,
        peer: PeerInfo,
    ) -> Result<SessionHello, IdentityError> {
        let member = self.member_keys()?;
        let now = hello_timestamp();
        let attestation = attest(&member, &session.public_hex(), now + ATTESTATION_TTL_MS);
        let signed = canonical::session_hello(
            &self.mesh_id,
            &member.public_hex(),
            &session.public_hex(),
            now,
        );
        Ok(SessionHello {
            mesh_id: self.mesh_id.clone(),
            parent_member_id: self.member_id.clone(),
            parent_member_pubkey: member.public_hex(),
            session_pubkey: session.public_hex(),
            parent_attestation: attestation,
            peer,
            role: None,
            timestamp: now,
            signature: hex::encode(session.sign(signed.as_bytes())),
        })
    }
}

/// The clock for hellos, never the same twice in this process: two hellos of one key in the
/// same millisecond would be byte-identical, and the broker refuses the second as a replay.
fn hello_timestamp() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = time::now_ms();
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// A member-signed attestation that `session_pubkey` speaks for `member` until `expires_at_ms`.
pub fn attest(member: &SignKeyPair, session_pubkey: &str, expires_at_ms: i64) -> Attestation {
    let signed =
        canonical::session_attestation(&member.public_hex(), session_pubkey, expires_at_ms);
    Attestation {
        session_pubkey: session_pubkey.to_string(),
        parent_member_pubkey: member.public_hex(),
        expires_at: expires_at_ms,
        signature: hex::encode(member.sign(signed.as_bytes())),
    }
}

/// The four headers of a member-signed HTTP request for `mesh_id` (PROTOCOL.md §8).
pub fn sign_request(
    keys: &SignKeyPair,
    mesh_id: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> [(&'static str, String); 4] {
    let timestamp = time::now_ms();
    let body_hash = hex::encode(crypto::sha256(body));
    let signed = canonical::http_request_v2(method, path, mesh_id, timestamp, &body_hash);
    [
        ("x-mesh-id", mesh_id.to_string()),
        ("x-claudemesh-pubkey", keys.public_hex()),
        ("x-claudemesh-timestamp", timestamp.to_string()),
        (
            "x-claudemesh-signature",
            hex::encode(keys.sign(signed.as_bytes())),
        ),
    ]
}

pub fn encode_root_key(key: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The mesh root key's check value, 64 hex: `HMAC-SHA256(root_key, "claudemesh-root-key-check")`.
/// Safe to give the broker: it proves a client holds the key and lets a joiner check the key
/// its link carried, without revealing anything of the key.
pub fn root_key_check(key: &[u8; 32]) -> String {
    hex::encode(crypto::hmac_sha256(
        key,
        canonical::ROOT_KEY_CHECK.as_bytes(),
    ))
}

/// A public key as invite links name it: the first 16 bytes of SHA-256 over the 32 key bytes,
/// base64url without padding (22 characters). Short enough for a link, and finding another key
/// with the same fingerprint is a 2^128 search.
pub fn key_fingerprint(key: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(&crypto::sha256(key)[..16])
}

/// Whether `s` has the shape of a [`key_fingerprint`].
pub fn is_key_fingerprint(s: &str) -> bool {
    s.len() == 22 && URL_SAFE_NO_PAD.decode(s).is_ok_and(|b| b.len() == 16)
}

pub fn decode_root_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("root key is not base64url: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| "root key must be 32 bytes".to_string())
}

/// Turns a broker URL in any of the forms people paste (`ws://h:p/ws`, `http://h:p`, `h:p`)
/// into the WebSocket URL.
pub fn ws_url(broker: &str) -> String {
    let base = http_base(broker);
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base
    };
    format!("{ws}/ws")
}

/// Turns a broker URL in any accepted form into `http(s)://host:port`.
pub fn http_base(broker: &str) -> String {
    let b = broker.trim().trim_end_matches('/');
    let b = b.strip_suffix("/ws").unwrap_or(b).trim_end_matches('/');
    if let Some(rest) = b.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = b.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if b.starts_with("http://") || b.starts_with("https://") {
        b.to_string()
    } else {
        format!("http://{b}")
    }
}

/// A joined mesh entry holding `keys` and the root key `root` (and the owner's keys when
/// given), for unit tests that need real keys.
#[cfg(test)]
pub(crate) fn test_entry(
    keys: &SignKeyPair,
    root: &[u8; 32],
    owner: Option<&SignKeyPair>,
) -> MeshEntry {
    MeshEntry {
        mesh_id: "m1".into(),
        slug: "team".into(),
        name: "Team".into(),
        member_id: "u1".into(),
        display_name: "alice".into(),
        role: "owner".into(),
        broker_url: "ws://127.0.0.1:1/ws".into(),
        member_pubkey: keys.public_hex(),
        member_secret_key: keys.secret_hex(),
        root_key: encode_root_key(root),
        owner_pubkey: owner.map(|o| o.public_hex()).unwrap_or_default(),
        owner_secret_key: owner.map(|o| o.secret_hex()),
        joined_at: time::iso(0),
        ca_file: None,
        key_epoch: 0,
        old_root_keys: Vec::new(),
        admin_list_version: 0,
    }
}

#[cfg(test)]
mod tests;
