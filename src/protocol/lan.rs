//! What a broker says about itself on the LAN (`claudemesh broker --lan`), and what
//! `claudemesh discover` reads: one DNS-SD service type and three TXT keys (PROTOCOL.md, "LAN
//! discovery"). Discovery is a hint; trust comes from the keys.

/// The DNS-SD service type, fully qualified as mDNS wants it.
pub const SERVICE_TYPE: &str = "_claudemesh._tcp.local.";

/// TXT key: the version of this TXT layout.
pub const TXT_VERSION: &str = "v";
/// TXT key: the broker's base URL (`--public-url`), absent when it would name `0.0.0.0`.
pub const TXT_URL: &str = "url";
/// TXT key: the broker key fingerprint, [`fingerprint`] of `<data>/broker.key`'s public key.
pub const TXT_FINGERPRINT: &str = "fp";

/// `sha256:` and the lowercase hex SHA-256 of a broker's Ed25519 public key.
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(crate::crypto::sha256(public_key)))
}

/// What the broker signs with its key in answer to `GET /broker-key?challenge=HEX`.
pub fn key_proof_message(challenge_hex: &str) -> String {
    format!("claudemesh-broker-key|{challenge_hex}")
}

/// The instance name as a person typed it, from a DNS-SD full name
/// (`office\.lan._claudemesh._tcp.local.` → `office.lan`).
pub fn instance_name(fullname: &str) -> String {
    let escaped = fullname
        .strip_suffix(SERVICE_TYPE)
        .map(|s| s.strip_suffix('.').unwrap_or(s))
        .unwrap_or(fullname);
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_lose_their_escapes_and_the_type() {
        assert_eq!(instance_name("office._claudemesh._tcp.local."), "office");
        assert_eq!(
            instance_name("office\\.lan._claudemesh._tcp.local."),
            "office.lan"
        );
        assert_eq!(instance_name("a\\\\b._claudemesh._tcp.local."), "a\\b");
    }

    #[test]
    fn the_fingerprint_is_sha256_of_the_key() {
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            fingerprint(&[0; 32]),
            "sha256:66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }
}
