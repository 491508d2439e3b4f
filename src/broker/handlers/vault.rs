//! The vault (PROTOCOL.md §17): `vault_set`, `vault_list`, `vault_get`, `vault_delete`,
//! `vault_service_key`. Every request acts on the asking member's own entries only; the broker
//! checks the shape of what it stores but never opens a value (see `broker::vault`).

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::connection::Conn;
use crate::broker::vault::ServiceKey;
use crate::crypto::{self, SEALED_BOUND_KEY_BYTES};
use crate::protocol::messages::{
    MAX_VAULT_DESCRIPTION_CHARS, MAX_VAULT_ENTRIES, MAX_VAULT_GET_KEYS, MAX_VAULT_VALUE_BYTES,
    VaultListEntry, VaultSealedEntry, VaultSet, check_vault_key, check_vault_mount,
};
use crate::protocol::{ServerMessage, time};
use crate::store::{ServiceSeal, VaultRecord, VaultRefusal};

/// Poly1305 tag of a secretbox.
const MAC_BYTES: usize = 16;
/// Longest base64 text of a ciphertext of the largest value.
const MAX_CIPHERTEXT_CHARS: usize = (MAX_VAULT_VALUE_BYTES + MAC_BYTES).div_ceil(3) * 4;
/// Longest `nonce` or `sealed_key` text kept from a client this broker cannot check (the
/// original's), far above what its 24-byte nonces and 80-byte sealed keys need.
const MAX_OPAQUE_FIELD_CHARS: usize = 512;

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
    match crypto::decode_base64(b64) {
        Ok(b) if len(b.len()) => Ok(b),
        Ok(b) => Err(invalid(format!(
            "{what} is {} bytes; it must be {expect}",
            b.len()
        ))),
        Err(_) => Err(invalid(format!("{what} is not base64"))),
    }
}

/// Checks a `vault_set` and turns it into the record to store. Entries for services (with
/// `serviceSealedKey`, this broker's clients) are checked in full; the original's entries are
/// kept as sent, within size caps, for its client to read back.
fn record(req: VaultSet, service_key: Option<&ServiceKey>) -> Result<VaultRecord, Refusal> {
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
    if e.ciphertext.len() > MAX_CIPHERTEXT_CHARS {
        return Err(refuse(
            "payload_too_large",
            format!(
                "the ciphertext is {} characters; a vault value is at most {MAX_VAULT_VALUE_BYTES} bytes",
                e.ciphertext.len()
            ),
        ));
    }
    for (what, text) in [("nonce", &e.nonce), ("sealed_key", &e.sealed_key)] {
        if text.len() > MAX_OPAQUE_FIELD_CHARS {
            return Err(invalid(format!(
                "{what} is {} characters; at most {MAX_OPAQUE_FIELD_CHARS}",
                text.len()
            )));
        }
    }
    let service = match &service_sealed_key {
        None => None,
        Some(sealed) => {
            let Some(service_key) = service_key else {
                return Err(refuse(
                    "unavailable",
                    "this broker has no service key loaded; store the entry with --no-services",
                ));
            };
            let is_bound_key = |n| n == SEALED_BOUND_KEY_BYTES;
            let expect = SEALED_BOUND_KEY_BYTES.to_string();
            // Its length is bounded by MAX_CIPHERTEXT_CHARS above.
            bytes(
                "ciphertext",
                &e.ciphertext,
                |n| n >= MAC_BYTES,
                "at least 16",
            )?;
            bytes("nonce", &e.nonce, |n| n == 24, "24")?;
            bytes("sealed_key", &e.sealed_key, is_bound_key, &expect)?;
            Some(ServiceSeal {
                sealed_key: bytes("serviceSealedKey", sealed, is_bound_key, &expect)?,
                service_public: service_key.public(),
            })
        }
    };
    Ok(VaultRecord {
        key: e.key,
        ciphertext: e.ciphertext,
        nonce: e.nonce,
        sealed_key: e.sealed_key,
        service,
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
        let record = record(req, broker.service_key.as_ref())?;
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
        let current = broker.service_key.as_ref().map(ServiceKey::public);
        let entries = broker
            .store
            .vault_entries(&peer.mesh_id, &peer.member_id)?
            .into_iter()
            .map(|r| VaultListEntry {
                // Sealed to the key this broker holds now, so its services can open it.
                for_services: r
                    .service
                    .as_ref()
                    .is_some_and(|s| Some(s.service_public) == current),
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

/// `vault_get{keys}` → `vault_get_result{entries}`: those of `keys` this member stored, exactly
/// as its client sent them. Keys it did not store are absent from the answer.
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
                    ciphertext: r.ciphertext,
                    nonce: r.nonce,
                    sealed_key: r.sealed_key,
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
