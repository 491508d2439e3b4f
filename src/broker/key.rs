//! The broker's own key: an Ed25519 key made on first start and kept in `<data>/broker.key`
//! (0600). Its fingerprint names this broker wherever a person has to tell brokers apart — the
//! start banner and the LAN advert (`--lan`) — and stays the same across restarts, address
//! changes and certificate renewals, for as long as the data directory lives.

use std::path::Path;

use http::StatusCode;
use serde_json::json;

use super::Broker;
use super::http::{Body, error_response, json_response};
use crate::crypto::SignKeyPair;
use crate::identity::{IdentityError, write_private};
use crate::protocol::lan::{fingerprint, key_proof_message};

pub const FILE: &str = "broker.key";

/// Reads `<data>/broker.key` (the hex seed), creating it on first start.
pub fn load_or_create(dir: &Path) -> Result<SignKeyPair, IdentityError> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| IdentityError::Read {
                    path: path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not a 32-byte hex seed; move it away to make a new broker key",
                    ),
                })?;
            Ok(SignKeyPair::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = crate::crypto::random_bytes();
            write_private(dir, FILE, format!("{}\n", hex::encode(seed)).as_bytes())?;
            Ok(SignKeyPair::from_seed(&seed))
        }
        Err(source) => Err(IdentityError::Read { path, source }),
    }
}

/// `GET /broker-key?challenge=<64 hex>`: the public key and a signature over the client's
/// fresh challenge, so a client that found this broker by its advertised fingerprint can tell
/// that the broker answering holds that key (PROTOCOL.md §10).
pub fn proof(broker: &Broker, query: Option<&str>) -> http::Response<Body> {
    let challenge = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("challenge="))
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let (Some(challenge), Some(key)) = (challenge, &broker.key) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "malformed",
            "GET /broker-key?challenge=<32 random bytes as hex>",
        );
    };
    let signature = key.sign(key_proof_message(&challenge.to_ascii_lowercase()).as_bytes());
    json_response(
        StatusCode::OK,
        json!({
            "publicKey": hex::encode(key.public),
            "fingerprint": fingerprint(&key.public),
            "signature": hex::encode(signature),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public, again.public);
        std::fs::write(dir.path().join(FILE), "not hex").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
