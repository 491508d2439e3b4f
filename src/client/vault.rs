//! The vault (PROTOCOL.md "Vault"): a member's secrets, encrypted here before they leave. The
//! value goes in a secretbox under a fresh key; that key is sealed to the member's own X25519
//! key (any of its sessions can open it) and, for entries meant for deployed services, to the
//! broker's service key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::{ClientError, MeshClient, unexpected};
use crate::crypto;
use crate::protocol::messages::{
    MAX_VAULT_VALUE_BYTES, VaultEntryType, VaultListEntry, VaultSealedEntry, VaultSet,
    check_vault_key, check_vault_mount, vault_context,
};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage};

/// What `vault_set` stores besides the value.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    pub entry_type: VaultEntryType,
    pub mount_path: Option<String>,
    pub description: Option<String>,
    /// Also seal the value key to the broker's service key, so the member's deployed services
    /// can be given the value (`$vault:KEY`). The default.
    pub for_services: bool,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            entry_type: VaultEntryType::Env,
            mount_path: None,
            description: None,
            for_services: true,
        }
    }
}

/// A vault entry opened by the member who stored it.
pub struct VaultValue {
    pub key: String,
    pub entry_type: VaultEntryType,
    pub mount_path: Option<String>,
    pub value: Zeroizing<Vec<u8>>,
}

fn bad(message: impl Into<String>) -> ClientError {
    ClientError::Broker {
        code: "invalid_argument".into(),
        message: message.into(),
    }
}

fn broken(what: &str) -> ClientError {
    ClientError::Protocol(format!(
        "the vault entry's {what} is not what this client stored"
    ))
}

impl MeshClient {
    /// The member's own X25519 key pair, which its entries are sealed to.
    fn vault_keys(&self) -> Result<crypto::BoxKeyPair, ClientError> {
        Ok(self.entry().member_keys()?.to_x25519())
    }

    /// The broker's service key (`vault_service_key`).
    pub async fn vault_service_key(&self) -> Result<[u8; 32], ClientError> {
        match self.request(ClientMessage::VaultServiceKey {}).await? {
            ServerMessage::VaultServiceKeyResult { public_key } => Pubkey::parse(&public_key)
                .map(|k| k.0)
                .map_err(|e| ClientError::Protocol(format!("the broker's service key: {e}"))),
            other => Err(unexpected(other)),
        }
    }

    /// Encrypts `value` and stores it as `key` (replacing an entry of that name).
    pub async fn vault_set(
        &self,
        key: &str,
        value: &[u8],
        options: VaultOptions,
    ) -> Result<(), ClientError> {
        check_vault_key(key).map_err(bad)?;
        check_vault_mount(options.entry_type, options.mount_path.as_deref()).map_err(bad)?;
        if value.len() > MAX_VAULT_VALUE_BYTES {
            return Err(ClientError::Broker {
                code: "payload_too_large".into(),
                message: format!(
                    "the value is {} bytes; a vault value is at most {MAX_VAULT_VALUE_BYTES}",
                    value.len()
                ),
            });
        }
        let mut recipients = vec![self.vault_keys()?.public];
        if options.for_services {
            recipients.push(self.vault_service_key().await?);
        }
        let entry = self.entry();
        let context = vault_context(
            &entry.mesh_id,
            &entry.member_id,
            key,
            options.entry_type,
            options.mount_path.as_deref(),
        );
        let sealed = crypto::seal_to_many(value, &context, &recipients)
            .map_err(|e| ClientError::Protocol(format!("cannot seal to the service key: {e}")))?;
        let req = VaultSet {
            entry: VaultSealedEntry {
                key: key.into(),
                ciphertext: STANDARD.encode(&sealed.ciphertext),
                nonce: STANDARD.encode(sealed.nonce),
                sealed_key: STANDARD.encode(&sealed.sealed_keys[0]),
                entry_type: options.entry_type,
                mount_path: options.mount_path,
            },
            description: options.description,
            service_sealed_key: sealed.sealed_keys.get(1).map(|s| STANDARD.encode(s)),
        };
        match self.request(ClientMessage::VaultSet(Box::new(req))).await? {
            ServerMessage::VaultAck { action, .. } if action == "stored" => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// This member's entries, metadata only.
    pub async fn vault_list(&self) -> Result<Vec<VaultListEntry>, ClientError> {
        match self.request(ClientMessage::VaultList {}).await? {
            ServerMessage::VaultListResult { entries } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Fetches and opens one of this member's entries; `None` when it stored none of that name.
    pub async fn vault_get(&self, key: &str) -> Result<Option<VaultValue>, ClientError> {
        let req = ClientMessage::VaultGet {
            keys: vec![key.into()],
        };
        let entries = match self.request(req).await? {
            ServerMessage::VaultGetResult { entries } => entries,
            other => return Err(unexpected(other)),
        };
        let Some(e) = entries.into_iter().find(|e| e.key == key) else {
            return Ok(None);
        };
        let ct = crypto::decode_base64(&e.ciphertext).map_err(|_| broken("ciphertext"))?;
        let nonce: [u8; 24] = crypto::decode_base64(&e.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| broken("nonce"))?;
        let sealed = crypto::decode_base64(&e.sealed_key).map_err(|_| broken("key"))?;
        let entry = self.entry();
        let context = vault_context(
            &entry.mesh_id,
            &entry.member_id,
            &e.key,
            e.entry_type,
            e.mount_path.as_deref(),
        );
        // The original's clients seal a bare key (nothing bound); ours bind the entry's place.
        let value = crypto::open_sealed_key(&ct, &nonce, &sealed, &context, true, &self.vault_keys()?)
            .map_err(|err| match err {
                crypto::CryptoError::WrongContext => ClientError::Protocol(format!(
                    "vault entry \"{key}\" is unreadable: it was sealed for another entry (copied or altered in the broker's store); store it again with `claudemesh vault set {key}`"
                )),
                _ => broken("sealed value (it does not open with this member's key)"),
            })?;
        Ok(Some(VaultValue {
            key: e.key,
            entry_type: e.entry_type,
            mount_path: e.mount_path,
            value: Zeroizing::new(value),
        }))
    }

    /// Deletes one of this member's entries; whether it existed.
    pub async fn vault_delete(&self, key: &str) -> Result<bool, ClientError> {
        let req = ClientMessage::VaultDelete { key: key.into() };
        match self.request(req).await? {
            ServerMessage::VaultAck { action, .. } => Ok(action == "deleted"),
            other => Err(unexpected(other)),
        }
    }
}
