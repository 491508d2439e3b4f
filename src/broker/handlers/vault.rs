//! The vault (PROTOCOL.md "Vault"): `vault_set`, `vault_list`, `vault_get`, `vault_delete`,
//! `vault_service_key`. Every request acts on the asking member's own entries only; the broker
//! checks the shape of what it stores but never opens a value (see `broker::vault`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::connection::Conn;
use crate::protocol::messages::{
    MAX_VAULT_DESCRIPTION_CHARS, MAX_VAULT_ENTRIES, MAX_VAULT_GET_KEYS, MAX_VAULT_VALUE_BYTES,
    VaultListEntry, VaultSealedEntry, VaultSet, check_vault_key, check_vault_mount,
};
use crate::protocol::{ServerMessage, time};
use crate::store::{VaultRecord, VaultRefusal};

/// Poly1305 tag of a secretbox.
const MAC_BYTES: usize = 16;
/// A sealed 32-byte key: ephemeral public key + MAC + key.
const SEALED_KEY_BYTES: usize = 32 + 16 + 32;

fn invalid(message: impl Into<String>) -> Refusal {
    refuse("invalid_argument", message)
}

/// Decodes base64 field `what`; `len` checks its decoded length.
fn bytes(
    what: &str,
    b64: &str,
    len: impl Fn(usize) -> bool,
    expect: &str,
) -> Result<Vec<u8>, Refusal> {
    match STANDARD.decode(b64) {
        Ok(b) if len(b.len()) => Ok(b),
        Ok(b) => Err(invalid(format!(
            "{what} is {} bytes; it must be {expect}",
            b.len()
        ))),
        Err(e) => Err(invalid(format!("{what} is not base64: {e}"))),
    }
}

/// Checks a `vault_set` and turns it into the record to store.
fn record(req: VaultSet) -> Result<VaultRecord, Refusal> {
    let VaultSet {
        entry: e,
        description,
        service_sealed_key,
    } = req;
    check_vault_key(&e.key).map_err(invalid)?;
    check_vault_mount(e.entry_type, e.mount_path.as_deref()).map_err(invalid)?;
    if let Some(d) = &description
        && d.chars().count() > MAX_VAULT_DESCRIPTION_CHARS
    {
        return Err(invalid(format!(
            "the description is longer than {MAX_VAULT_DESCRIPTION_CHARS} characters"
        )));
    }
    let ciphertext = match STANDARD.decode(&e.ciphertext) {
        Ok(b) if b.len() > MAX_VAULT_VALUE_BYTES + MAC_BYTES => {
            return Err(refuse(
                "payload_too_large",
                format!(
                    "the value is {} bytes; a vault value is at most {MAX_VAULT_VALUE_BYTES}",
                    b.len().saturating_sub(MAC_BYTES)
                ),
            ));
        }
        Ok(b) if b.len() >= MAC_BYTES => b,
        Ok(_) => return Err(invalid("ciphertext is shorter than a secretbox tag")),
        Err(e) => return Err(invalid(format!("ciphertext is not base64: {e}"))),
    };
    let nonce: [u8; 24] = bytes("nonce", &e.nonce, |n| n == 24, "24")?
        .try_into()
        .map_err(|_| invalid("nonce must be 24 bytes"))?;
    let is_sealed_key = |n| n == SEALED_KEY_BYTES;
    let sealed_key = bytes("sealed_key", &e.sealed_key, is_sealed_key, "80")?;
    let service_sealed_key = match &service_sealed_key {
        Some(s) => Some(bytes("serviceSealedKey", s, is_sealed_key, "80")?),
        None => None,
    };
    Ok(VaultRecord {
        key: e.key,
        ciphertext,
        nonce,
        sealed_key,
        service_sealed_key,
        entry_type: e.entry_type,
        mount_path: e.mount_path,
        description: description.filter(|d| !d.is_empty()),
        updated_at_ms: time::now_ms(),
    })
}

/// `vault_set` → `vault_ack{key, action:"stored"}` (needs `vault`, §12.1).
pub fn vault_set(conn: &Conn, req_id: Option<String>, req: VaultSet) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let record = record(req)?;
        let key = record.key.clone();
        let stored = broker
            .store
            .vault_set(
                peer.mesh_id.clone(),
                peer.member_id.clone(),
                peer.display_name.clone(),
                record,
                MAX_VAULT_ENTRIES,
            )
            .await?;
        match stored {
            Ok(()) => Ok(Some(ServerMessage::VaultAck {
                key,
                action: "stored".into(),
            })),
            Err(VaultRefusal::TooMany(max)) => Err(refuse(
                "quota_exceeded",
                format!(
                    "this member keeps {max} vault entries, the most it may; delete one first (claudemesh vault delete KEY)"
                ),
            )),
        }
    });
}

/// `vault_list` → `vault_list_result{entries}`: this member's entries, without values.
pub fn vault_list(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let entries = broker
            .store
            .vault_entries(&peer.mesh_id, &peer.member_id)?
            .into_iter()
            .map(|r| VaultListEntry {
                for_services: r.service_sealed_key.is_some(),
                key: r.key,
                entry_type: r.entry_type,
                mount_path: r.mount_path,
                description: r.description,
                updated_at: time::iso(r.updated_at_ms),
            })
            .collect();
        Ok(Some(ServerMessage::VaultListResult { entries }))
    });
}

/// `vault_get{keys}` → `vault_get_result{entries}`: those of `keys` this member stored, sealed
/// as its client stored them. Keys it did not store are absent from the answer.
pub fn vault_get(conn: &Conn, req_id: Option<String>, keys: Vec<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        if keys.len() > MAX_VAULT_GET_KEYS {
            return Err(invalid(format!(
                "vault_get asks for {} keys; at most {MAX_VAULT_GET_KEYS} at once",
                keys.len()
            )));
        }
        let mut entries = Vec::new();
        for key in keys {
            if let Some(r) = broker
                .store
                .vault_entry(&peer.mesh_id, &peer.member_id, &key)?
            {
                entries.push(VaultSealedEntry {
                    key: r.key,
                    ciphertext: STANDARD.encode(&r.ciphertext),
                    nonce: STANDARD.encode(r.nonce),
                    sealed_key: STANDARD.encode(&r.sealed_key),
                    entry_type: r.entry_type,
                    mount_path: r.mount_path,
                });
            }
        }
        Ok(Some(ServerMessage::VaultGetResult { entries }))
    });
}

/// `vault_delete{key}` → `vault_ack{key, action:"deleted" | "not_found"}` (needs `vault`).
pub fn vault_delete(conn: &Conn, req_id: Option<String>, key: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let deleted = broker
            .store
            .vault_delete(
                peer.mesh_id.clone(),
                peer.member_id.clone(),
                peer.display_name.clone(),
                key.clone(),
                time::now_ms(),
            )
            .await?;
        let action = if deleted { "deleted" } else { "not_found" };
        Ok(Some(ServerMessage::VaultAck {
            key,
            action: action.into(),
        }))
    });
}

/// `vault_service_key` → `vault_service_key_result{publicKey}`.
pub fn vault_service_key(conn: &Conn, req_id: Option<String>) {
    let Some((broker, _)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        match &broker.service_key {
            Some(k) => Ok(Some(ServerMessage::VaultServiceKeyResult {
                public_key: k.public_hex(),
            })),
            None => Err(refuse(
                "unavailable",
                "this broker has no service key loaded",
            )),
        }
    });
}
