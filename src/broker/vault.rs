//! The broker's service key and the one way a vault value is opened on the broker host
//! (PROTOCOL.md "Vault").
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
use crate::protocol::messages::VaultEntryType;
use crate::store::{Store, StoreError};

pub const FILE: &str = "service.key";

/// The broker's X25519 key pair that vault entries for deployed services are sealed to. Its
/// secret is zeroed on drop and never printed by `Debug`.
#[derive(Clone, Debug)]
pub struct ServiceKey(BoxKeyPair);

impl ServiceKey {
    /// Reads `<data>/service.key` (the secret as hex), creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<ServiceKey, IdentityError> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let mut secret = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), secret.as_mut_slice()).map_err(|_| {
                    IdentityError::Read {
                        path: path.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "not a 32-byte hex key; vault entries sealed to it cannot be opened without it",
                        ),
                    }
                })?;
                Ok(ServiceKey(BoxKeyPair::from_secret(&secret)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kp = BoxKeyPair::generate();
                let text = Zeroizing::new(format!("{}\n", hex::encode(kp.secret)));
                write_private(dir, FILE, text.as_bytes())?;
                Ok(ServiceKey(kp))
            }
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    /// The public half, which clients seal entries for services to.
    pub fn public(&self) -> [u8; 32] {
        self.0.public
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.0.public)
    }
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
    #[error("vault entry \"{0}\" cannot be opened with this broker's service key ({1})")]
    Unreadable(String, crypto::CryptoError),
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
/// `mesh_id`. Only that member's own entry named `name` is looked at, and only if its client
/// sealed the value key to the broker's service key (`serviceSealedKey`); everything else is
/// refused. The value must go to the sandboxed service only — never to a log, a reply or
/// another member.
pub fn open_for_service(
    store: &Store,
    key: &ServiceKey,
    mesh_id: &str,
    member_id: &str,
    name: &str,
) -> Result<OpenedEntry, VaultError> {
    let record = store
        .vault_entry(mesh_id, member_id, name)?
        .ok_or_else(|| VaultError::NotFound(name.to_string()))?;
    let sealed = record
        .service_sealed_key
        .as_deref()
        .ok_or_else(|| VaultError::NotForServices(name.to_string()))?;
    let value = crypto::open_sealed_key(&record.ciphertext, &record.nonce, sealed, &key.0)
        .map_err(|e| VaultError::Unreadable(name.to_string(), e))?;
    Ok(OpenedEntry {
        entry_type: record.entry_type,
        mount_path: record.mount_path,
        value: Zeroizing::new(value),
    })
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
        assert!(!format!("{first:?}").contains(&hex::encode(first.0.secret)));
    }
}
