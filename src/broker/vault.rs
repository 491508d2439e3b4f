//! The broker's service key and the one way a vault value is opened on the broker host
//! (PROTOCOL.md §17).
//!
//! Vault entries are encrypted by the member's client. An entry meant for deployed services
//! also carries its value key sealed to this X25519 key (`<data>/service.key`, 0600, made on
//! first start), so the broker can hand the value to that member's sandboxed services — and to
//! nothing else: no handler opens entries, only [`open_for_service`], which the deploy code
//! calls.

use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::{self, BoxKeyPair};
use crate::identity::{IdentityError, write_private};
use crate::protocol::messages::{VaultEntryType, vault_context};
use crate::store::{Store, StoreError};

pub const FILE: &str = "service.key";

/// The broker's X25519 key pair that vault entries for deployed services are sealed to. Its
/// secret is zeroed on drop and never printed by `Debug`.
#[derive(Clone, Debug)]
pub struct ServiceKey(BoxKeyPair);

impl ServiceKey {
    /// Reads `<data>/service.key` (the secret as hex), creating it on first start. Refuses a
    /// symlink, a file of another user, and one that group or others can read.
    pub fn load_or_create(dir: &Path) -> Result<ServiceKey, IdentityError> {
        let path = dir.join(FILE);
        let refuse = |why: String| IdentityError::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
        };
        let text = match read_private(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kp = BoxKeyPair::generate();
                let text = Zeroizing::new(format!("{}\n", hex::encode(kp.secret)));
                write_private(dir, FILE, text.as_bytes())?;
                return Ok(ServiceKey(kp));
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(refuse(e.to_string()));
            }
            Err(source) => return Err(IdentityError::Read { path, source }),
        };
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), secret.as_mut_slice()).map_err(|_| {
            refuse(
                "not a 32-byte hex key; vault entries sealed to it cannot be opened without it"
                    .into(),
            )
        })?;
        Ok(ServiceKey(BoxKeyPair::from_secret(&secret)))
    }

    /// The public half, which clients seal entries for services to.
    pub fn public(&self) -> [u8; 32] {
        self.0.public
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.0.public)
    }

    /// Seals a secret the broker itself reads back later (a webhook's signing secret, a
    /// watch's request headers), so that the store never holds it in clear.
    pub fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, crypto::CryptoError> {
        crypto::seal(secret, &self.0.public)
    }

    /// Opens what [`ServiceKey::seal`] sealed.
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, crypto::CryptoError> {
        crypto::seal_open(sealed, &self.0).map(Zeroizing::new)
    }
}

/// Reads a key file that must be a regular file of this user, private to it: opened without
/// following a symlink, then checked on the open file (no race with a swap of the path).
fn read_private(path: &Path) -> std::io::Result<Zeroizing<String>> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => invalid(
                "it is a symlink; the service key must be a regular file in the data dir".into(),
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_file() {
        return Err(invalid("it is not a regular file".into()));
    }
    if meta.uid() != uid {
        return Err(invalid(format!(
            "it belongs to uid {}, not to the broker's user (uid {uid}); fix with `chown {uid} {}`",
            meta.uid(),
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(invalid(format!(
            "group or others can access it (mode {:o}), and it opens every vault entry sealed for services; fix with `chmod 600 {}`",
            meta.mode() & 0o777,
            path.display()
        )));
    }
    let mut text = Zeroizing::new(String::with_capacity(128));
    file.take(128).read_to_string(&mut text)?;
    Ok(text)
}

/// Why [`open_for_service`] gave no value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the vault has no entry \"{0}\" of the deploying member")]
    NotFound(String),
    #[error(
        "vault entry \"{0}\" is not sealed for services; its owner can store it again with `claudemesh vault set {0} …` without --no-services"
    )]
    NotForServices(String),
    #[error("vault entry \"{0}\" cannot be opened for this service: {1}")]
    Unreadable(String, crypto::CryptoError),
    #[error(
        "the member who deployed the service is revoked, banned or unknown in this mesh; its vault entries are not opened"
    )]
    MemberNotActive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A vault value opened for a deployed service: how to hand it over and the value itself
/// (zeroed when dropped).
pub struct OpenedEntry {
    pub entry_type: VaultEntryType,
    /// Where a `file` entry is mounted inside the service's sandbox; `None` for `env`.
    pub mount_path: Option<String>,
    pub value: Zeroizing<Vec<u8>>,
}

/// For the deploy code: resolves `$vault:NAME` for a service deployed by `member_id` in
/// `mesh_id`. The caller must pass the member who deployed the service and wrote the `$vault:`
/// reference (never one taken from the service's own request): the member id is trusted here.
/// A revoked or banned member's entries are refused. Only that member's own entry named `name`
/// is looked at, and only if its client sealed the value key to the broker's service key
/// (`serviceSealedKey`) for exactly this mesh, member, name, type and mount path; a row copied
/// or altered in the store is refused as unreadable. The value must go to the sandboxed
/// service only — never to a log, a reply or another member.
pub fn open_for_service(
    store: &Store,
    key: &ServiceKey,
    mesh_id: &str,
    member_id: &str,
    name: &str,
) -> Result<OpenedEntry, VaultError> {
    if !store.is_active_member(mesh_id, member_id)? {
        return Err(VaultError::MemberNotActive);
    }
    let record = store
        .vault_entry(mesh_id, member_id, name)?
        .ok_or_else(|| VaultError::NotFound(name.to_string()))?;
    let service = record
        .service
        .as_ref()
        .ok_or_else(|| VaultError::NotForServices(name.to_string()))?;
    let unreadable = |e| VaultError::Unreadable(name.to_string(), e);
    let ct = crypto::decode_base64(&record.ciphertext).map_err(unreadable)?;
    let nonce: [u8; 24] = crypto::decode_base64(&record.nonce)
        .map_err(unreadable)?
        .try_into()
        .map_err(|_| unreadable(crypto::CryptoError::Decrypt))?;
    let context = vault_context(
        mesh_id,
        member_id,
        name,
        record.entry_type,
        record.mount_path.as_deref(),
    );
    let value = crypto::open_sealed_key(&ct, &nonce, &service.sealed_key, &context, false, &key.0)
        .map_err(unreadable)?;
    Ok(OpenedEntry {
        entry_type: record.entry_type,
        mount_path: record.mount_path,
        value: Zeroizing::new(value),
    })
}

/// The vault as deployed services see it: `$vault:NAME` in a deployment's env opens the
/// deployer's entry with the service key (`open_for_service`), at every start of the service.
pub struct ForServices {
    pub store: Store,
    pub key: ServiceKey,
}

impl super::deployments::SecretSource for ForServices {
    fn open(
        &self,
        mesh_id: &str,
        deployer_member_id: &str,
        name: &str,
    ) -> Result<super::deployments::Secret, String> {
        use super::deployments::Secret;
        let entry = open_for_service(&self.store, &self.key, mesh_id, deployer_member_id, name)
            .map_err(|e| e.to_string())?;
        Ok(match (entry.entry_type, entry.mount_path) {
            (VaultEntryType::File, Some(mount_path)) => Secret::File {
                mount_path,
                value: entry.value,
            },
            (VaultEntryType::File, None) => {
                return Err(format!("vault entry {name} is a file without a mount path"));
            }
            (VaultEntryType::Env, _) => Secret::Env(entry.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_key_is_made_once_kept_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServiceKey::load_or_create(dir.path()).unwrap();
        let again = ServiceKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "service.key is readable by others: {mode:o}"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(FILE);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = ServiceKey::load_or_create(dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains("chmod 600") && e.contains(FILE), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let link_dir = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(&path, link_dir.path().join(FILE)).unwrap();
            let e = ServiceKey::load_or_create(link_dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains("symlink"), "{e}");
        }
        let shown = format!("{first:?}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(!shown.contains(&hex::encode(first.0.secret)), "{shown}");
        assert!(!shown.contains(&format!("{:?}", first.0.secret)), "{shown}");
    }
}
