//! The vault (issue 15, PROTOCOL.md §17): a member's secrets for its deployed services,
//! encrypted on the client. The original's frames keep their snake_case fields (`sealed_key`,
//! `entry_type`, `mount_path`); this broker's additions are camelCase (`serviceSealedKey`,
//! `forServices`).

use serde::{Deserialize, Serialize};

/// Longest value a vault entry holds, in bytes (before encryption): its ciphertext in base64
/// still fits one frame (§1).
pub const MAX_VAULT_VALUE_BYTES: usize = 32 * 1024;
/// Most entries one member keeps in one mesh.
pub const MAX_VAULT_ENTRIES: usize = 100;
/// Most keys one `vault_get` asks for.
pub const MAX_VAULT_GET_KEYS: usize = 32;

/// How a deployed service receives an entry: an environment variable, or a file at
/// `mount_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultEntryType {
    Env,
    File,
}

impl VaultEntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            VaultEntryType::Env => "env",
            VaultEntryType::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<VaultEntryType> {
        match s {
            "env" => Some(VaultEntryType::Env),
            "file" => Some(VaultEntryType::File),
            _ => None,
        }
    }
}

/// `vault_set`: stores (or replaces) one of this member's entries: the sealed entry as
/// `vault_get_result` gives it back, its description, and `serviceSealedKey`, the value key
/// sealed to the broker's service key (absent: no deployed service may read it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaultSet {
    #[serde(flatten)]
    pub entry: VaultSealedEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        rename = "serviceSealedKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_sealed_key: Option<String>,
}

/// One entry of `vault_list_result`: metadata only, never the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaultListEntry {
    pub key: String,
    pub entry_type: VaultEntryType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub updated_at: String,
    /// Whether the entry's key is sealed to the broker's service key (this broker's addition).
    #[serde(rename = "forServices", default)]
    pub for_services: bool,
}

/// One entry of `vault_get_result` (and the body of `vault_set`): `ciphertext` is the value in
/// a secretbox (XSalsa20-Poly1305) under a random key with `nonce`; `sealed_key` is that key in
/// a sealed box to the member's own X25519 key. All base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaultSealedEntry {
    pub key: String,
    pub ciphertext: String,
    pub nonce: String,
    pub sealed_key: String,
    pub entry_type: VaultEntryType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
}

/// What a sealed vault key is bound to (besides the value itself): the entry's place. Sealed
/// inside the key by our clients (`crypto::seal_to_many`) and checked by whoever opens it, so a
/// row copied under another mesh, member or name, or with another type or mount path, is refused
/// instead of handing one member's secret to another's service.
pub fn vault_context(
    mesh_id: &str,
    member_id: &str,
    key: &str,
    entry_type: VaultEntryType,
    mount_path: Option<&str>,
) -> [u8; 32] {
    let mut buf = b"claudemesh vault entry v1".to_vec();
    for part in [
        mesh_id,
        member_id,
        key,
        entry_type.as_str(),
        mount_path.unwrap_or(""),
    ] {
        buf.extend_from_slice(&(part.len() as u64).to_be_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    crate::crypto::sha256(&buf)
}

/// Longest key name.
pub const MAX_VAULT_KEY_BYTES: usize = 128;
/// Longest mount path.
pub const MAX_MOUNT_PATH_BYTES: usize = 1024;
/// Longest part of a mount path (a file name on Linux).
pub const MAX_MOUNT_PATH_PART_BYTES: usize = 255;
/// Kernel file systems a vault file must never be written over.
const FORBIDDEN_MOUNT_ROOTS: [&str; 3] = ["proc", "sys", "dev"];

/// Longest description, in characters.
pub const MAX_VAULT_DESCRIPTION_CHARS: usize = 1024;

/// A key name is what `$vault:NAME` and an environment variable can carry:
/// `[A-Za-z_][A-Za-z0-9_]{0,127}`.
pub fn check_vault_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || key.len() > MAX_VAULT_KEY_BYTES
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "vault key \"{}\" is not valid: 1-{MAX_VAULT_KEY_BYTES} ASCII letters, digits and _, not starting with a digit (like an environment variable)",
            key.escape_default()
        ));
    }
    Ok(())
}

/// A mount path is absolute and normalized: `/a/b`, no `.` or `..` parts, no empty parts
/// (`//`, a trailing `/`), no control characters, not `/` itself, no part over 255 bytes, and
/// not under `/proc`, `/sys` or `/dev`.
pub fn check_mount_path(path: &str) -> Result<(), String> {
    let first = path.get(1..).and_then(|p| p.split('/').next());
    let why = if !path.starts_with('/') {
        Some("it must be absolute")
    } else if path.len() > MAX_MOUNT_PATH_BYTES {
        Some("it is too long")
    } else if path.chars().any(char::is_control) {
        Some("it holds control characters")
    } else if path[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        Some("it must be normalized: no `.` or `..` parts, no `//`, no trailing `/`")
    } else if path[1..]
        .split('/')
        .any(|part| part.len() > MAX_MOUNT_PATH_PART_BYTES)
    {
        Some("a part of it is longer than 255 bytes")
    } else if first.is_some_and(|f| FORBIDDEN_MOUNT_ROOTS.contains(&f)) {
        Some("it must not be under /proc, /sys or /dev")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!(
            "mount path \"{}\" is not valid: {why} (e.g. /run/secrets/token, at most {MAX_MOUNT_PATH_BYTES} bytes)",
            path.escape_default()
        )),
        None => Ok(()),
    }
}

/// For the deploy code: a checked mount path (see [`check_mount_path`]) relative to the
/// sandbox's root, so that `private_dir.join(relative_mount_path(p))` stays under
/// `private_dir` — `Path::join` with an absolute path throws the base away. `None` when the
/// path is not a valid mount path.
pub fn relative_mount_path(path: &str) -> Option<std::path::PathBuf> {
    check_mount_path(path).ok()?;
    Some(std::path::PathBuf::from(&path[1..]))
}

/// The entry's type and mount path agree: a `file` entry has a valid mount path, an `env` entry
/// none.
pub fn check_vault_mount(
    entry_type: VaultEntryType,
    mount_path: Option<&str>,
) -> Result<(), String> {
    match (entry_type, mount_path) {
        (VaultEntryType::File, Some(path)) => check_mount_path(path),
        (VaultEntryType::File, None) => {
            Err("a file entry needs a mount path (--mount /path, mount_path)".into())
        }
        (VaultEntryType::Env, Some(_)) => {
            Err("an env entry has no mount path; use type file to mount the value as a file".into())
        }
        (VaultEntryType::Env, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::{Encoding, decode, encode};
    use crate::protocol::{ClientMessage, Envelope};

    #[test]
    fn the_originals_vault_set_parses_and_ours_round_trips_in_both_encodings() {
        let original = br#"{"type":"vault_set","key":"K","ciphertext":"Y3Q=","nonce":"bg==","sealed_key":"c2s=","entry_type":"file","mount_path":"/m","description":"d","_reqId":"r1"}"#;
        let frame: Envelope<ClientMessage> = decode(original, Encoding::Json).unwrap();
        let ClientMessage::VaultSet(set) = &frame.body else {
            panic!("{frame:?}");
        };
        assert_eq!(set.entry.sealed_key, "c2s=");
        assert_eq!(set.entry.entry_type, VaultEntryType::File);
        assert_eq!(set.entry.mount_path.as_deref(), Some("/m"));
        assert_eq!(set.service_sealed_key, None);
        let mut ours = frame.clone();
        if let ClientMessage::VaultSet(set) = &mut ours.body {
            set.service_sealed_key = Some("c3Zj".into());
        }
        for encoding in [Encoding::Json, Encoding::MsgPack] {
            let back: Envelope<ClientMessage> = decode(&encode(&ours, encoding), encoding).unwrap();
            let ClientMessage::VaultSet(set) = back.body else {
                panic!("{encoding:?}");
            };
            assert_eq!(set.service_sealed_key.as_deref(), Some("c3Zj"));
            assert_eq!(set.entry.key, "K");
        }
    }

    #[test]
    fn key_names() {
        for ok in ["A", "_x", "GITHUB_TOKEN", &"a".repeat(128)] {
            assert!(check_vault_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "a-b", "a b", "ä", "$vault", &"a".repeat(129)] {
            assert!(check_vault_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_paths() {
        for ok in ["/a", "/run/secrets/token", "/etc/app/.env"] {
            assert!(check_mount_path(ok).is_ok(), "{ok}");
        }
        let long = format!("/a/{}", "x".repeat(256));
        for bad in [
            "",
            "/",
            "a/b",
            "/a/../b",
            "/a/./b",
            "/a//b",
            "/a/",
            "/..",
            "/a\nb",
            "/a\0b",
            "/proc/self/mem",
            "/sys",
            "/dev/sda",
            &long,
        ] {
            assert!(check_mount_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_mount_path(&format!("/a/{}", "x".repeat(255))).is_ok());
        assert!(check_mount_path("/devices/x").is_ok());
        let base = std::path::Path::new("/data/services/s1");
        let rel = relative_mount_path("/run/secrets/token").unwrap();
        assert_eq!(base.join(rel), base.join("run/secrets/token"));
        assert_eq!(relative_mount_path("/a/../etc"), None);
    }
}
