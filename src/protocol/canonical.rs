//! The canonical strings that get signed (PROTOCOL.md §3, §8, §9).
//!
//! A signature only means something if both sides build the exact same bytes, so every signed
//! string is built here and nowhere else: UTF-8, fields joined by `|`, no trailing newline,
//! integers in plain decimal. The golden vectors in `data/golden/` pin them against an
//! independent implementation.

/// Member hello (§3.1), signed by the member key:
/// `${meshId}|${memberId}|${pubkey}|${timestamp}`.
pub fn hello(mesh_id: &str, member_id: &str, pubkey_hex: &str, timestamp_ms: i64) -> String {
    format!("{mesh_id}|{member_id}|{pubkey_hex}|{timestamp_ms}")
}

/// Session attestation (§3.2), signed by the **member** key so a session key can act for it.
pub fn session_attestation(
    parent_pubkey_hex: &str,
    session_pubkey_hex: &str,
    expires_at_ms: i64,
) -> String {
    format!("claudemesh-session-attest|{parent_pubkey_hex}|{session_pubkey_hex}|{expires_at_ms}")
}

/// Session hello (§3.2), signed by the **session** key (proof of possession).
pub fn session_hello(
    mesh_id: &str,
    parent_pubkey_hex: &str,
    session_pubkey_hex: &str,
    timestamp_ms: i64,
) -> String {
    format!(
        "claudemesh-session-hello|{mesh_id}|{parent_pubkey_hex}|{session_pubkey_hex}|{timestamp_ms}"
    )
}

/// Invite v2 capability (§9), signed by the mesh owner key. Note the expiry is in **seconds**,
/// unlike every other timestamp in the protocol (kept for compatibility with the original).
pub fn invite_v2(
    mesh_id: &str,
    invite_id: &str,
    expires_at_unix_seconds: i64,
    role: &str,
    owner_pubkey_hex: &str,
) -> String {
    format!("v=2|{mesh_id}|{invite_id}|{expires_at_unix_seconds}|{role}|{owner_pubkey_hex}")
}

/// Authenticated HTTP request (§8), signed by a member key:
/// `METHOD|PATH|timestamp_ms|sha256-hex-of-body`.
///
/// - `method` is used exactly as given; callers pass the request-line method (`GET`, `POST`),
///   which is upper case for every method we serve. It is not re-cased here so that a client
///   and the broker that both pass `http::Method::as_str()` can never disagree.
/// - `path` is the origin-form request target exactly as sent on the request line: the path
///   **including** `?query` when there is one, not percent-decoded or normalised. Including the
///   query stops a captured signature from being replayed against other query parameters
///   (e.g. `GET /download/:id?…`).
/// - `body_sha256_hex` is the lowercase hex SHA-256 of the raw body bytes; an empty body hashes
///   to `e3b0c442…b855`, it is never an empty field.
pub fn http_request(method: &str, path: &str, timestamp_ms: i64, body_sha256_hex: &str) -> String {
    format!("{method}|{path}|{timestamp_ms}|{body_sha256_hex}")
}

/// The signed string of a member-signed HTTP request (PROTOCOL.md §8), version 2:
/// `v=2|METHOD|PATH|MESH_ID|timestamp_ms|sha256(body)`. Binding `X-Mesh-Id` keeps a signature
/// made for one mesh from being used in another; the broker accepts only this version.
pub fn http_request_v2(
    method: &str,
    path: &str,
    mesh_id: &str,
    timestamp_ms: i64,
    body_sha256_hex: &str,
) -> String {
    format!("v=2|{method}|{path}|{mesh_id}|{timestamp_ms}|{body_sha256_hex}")
}

/// The fields of a parsed invite v2 canonical string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteV2Fields {
    pub mesh_id: String,
    pub invite_id: String,
    pub expires_at_unix_seconds: i64,
    /// `"admin"` or `"member"`.
    pub role: String,
    /// 64 lowercase hex.
    pub owner_pubkey_hex: String,
}

impl InviteV2Fields {
    /// Rebuilds the canonical string; `parse_invite_v2(s)?.to_canonical() == s` always holds.
    pub fn to_canonical(&self) -> String {
        invite_v2(
            &self.mesh_id,
            &self.invite_id,
            self.expires_at_unix_seconds,
            &self.role,
            &self.owner_pubkey_hex,
        )
    }
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("invite canonical string must have 6 `|`-separated fields, found {0}")]
    FieldCount(usize),
    #[error("invite canonical string must start with `v=2`")]
    Version,
    #[error("invite canonical string has an empty {0}")]
    EmptyField(&'static str),
    #[error("invite expiry must be unix seconds in plain decimal, got {0:?}")]
    Expiry(String),
    #[error("invite role must be `admin` or `member`, got {0:?}")]
    Role(String),
    #[error("invite owner key must be 64 lowercase hex characters")]
    OwnerPubkey,
}

/// Parses an invite v2 canonical string (as returned in a claim's `canonical_v2`) so a client can
/// check what it was given before trusting it. Only the exact canonical form is accepted: any
/// string that parses re-serialises to itself, so a parsed invite cannot differ from the signed
/// bytes.
pub fn parse_invite_v2(s: &str) -> Result<InviteV2Fields, CanonicalError> {
    let fields: Vec<&str> = s.split('|').collect();
    let [version, mesh_id, invite_id, expires, role, owner] = fields[..] else {
        return Err(CanonicalError::FieldCount(fields.len()));
    };
    if version != "v=2" {
        return Err(CanonicalError::Version);
    }
    if mesh_id.is_empty() {
        return Err(CanonicalError::EmptyField("mesh id"));
    }
    if invite_id.is_empty() {
        return Err(CanonicalError::EmptyField("invite id"));
    }
    // Digits only and no leading zeros, so the decimal form is unique (no `+5`, `-0`, `007`).
    let canonical_decimal = !expires.is_empty()
        && expires.bytes().all(|b| b.is_ascii_digit())
        && (expires == "0" || !expires.starts_with('0'));
    let expires_at_unix_seconds = expires
        .parse::<i64>()
        .ok()
        .filter(|_| canonical_decimal)
        .ok_or_else(|| CanonicalError::Expiry(expires.to_owned()))?;
    if role != "admin" && role != "member" {
        return Err(CanonicalError::Role(role.to_owned()));
    }
    if !is_lower_hex_key(owner) {
        return Err(CanonicalError::OwnerPubkey);
    }
    Ok(InviteV2Fields {
        mesh_id: mesh_id.to_owned(),
        invite_id: invite_id.to_owned(),
        expires_at_unix_seconds,
        role: role.to_owned(),
        owner_pubkey_hex: owner.to_owned(),
    })
}

/// 64 lowercase hex characters: the only accepted spelling of a public key on the wire.
fn is_lower_hex_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK_A: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
    const PK_B: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

    #[test]
    fn builds_exact_strings() {
        assert_eq!(
            hello("mesh1", "mem1", PK_A, 1_700_000_000_123),
            format!("mesh1|mem1|{PK_A}|1700000000123")
        );
        assert_eq!(
            session_attestation(PK_A, PK_B, 1_700_043_200_000),
            format!("claudemesh-session-attest|{PK_A}|{PK_B}|1700043200000")
        );
        assert_eq!(
            session_hello("mesh1", PK_A, PK_B, 5),
            format!("claudemesh-session-hello|mesh1|{PK_A}|{PK_B}|5")
        );
        assert_eq!(
            invite_v2("mesh1", "inv1", 1_700_604_800, "member", PK_A),
            format!("v=2|mesh1|inv1|1700604800|member|{PK_A}")
        );
        assert_eq!(
            http_request("POST", "/upload?x=1", 42, "ab"),
            "POST|/upload?x=1|42|ab"
        );
        assert_eq!(
            http_request_v2("POST", "/hook/set-status", "mesh1", 42, "ab"),
            "v=2|POST|/hook/set-status|mesh1|42|ab"
        );
    }

    #[test]
    fn no_trailing_newline() {
        assert!(!hello("m", "n", PK_A, 1).ends_with('\n'));
    }

    #[test]
    fn invite_round_trip() {
        for role in ["admin", "member"] {
            let s = invite_v2("meshX", "invY", 1_700_604_800, role, PK_B);
            let parsed = parse_invite_v2(&s).expect("valid invite");
            assert_eq!(parsed.mesh_id, "meshX");
            assert_eq!(parsed.invite_id, "invY");
            assert_eq!(parsed.expires_at_unix_seconds, 1_700_604_800);
            assert_eq!(parsed.role, role);
            assert_eq!(parsed.owner_pubkey_hex, PK_B);
            assert_eq!(parsed.to_canonical(), s);
        }
        assert_eq!(
            parse_invite_v2(&format!("v=2|m|i|0|member|{PK_A}")).map(|f| f.expires_at_unix_seconds),
            Ok(0)
        );
    }

    #[test]
    fn invite_rejections() {
        let ok = |exp: &str, role: &str, pk: &str| format!("v=2|m|i|{exp}|{role}|{pk}");
        assert_eq!(
            parse_invite_v2(&format!("{}|extra", ok("1", "member", PK_A))),
            Err(CanonicalError::FieldCount(7))
        );
        assert_eq!(parse_invite_v2(""), Err(CanonicalError::FieldCount(1)));
        assert_eq!(
            parse_invite_v2(&format!("v=1|m|i|1|member|{PK_A}")),
            Err(CanonicalError::Version)
        );
        assert_eq!(
            parse_invite_v2(&format!("v=2||i|1|member|{PK_A}")),
            Err(CanonicalError::EmptyField("mesh id"))
        );
        assert_eq!(
            parse_invite_v2(&format!("v=2|m||1|member|{PK_A}")),
            Err(CanonicalError::EmptyField("invite id"))
        );
        for bad in [
            "",
            "-1",
            "+1",
            "007",
            "1.5",
            "1e9",
            "99999999999999999999",
            " 1",
        ] {
            assert_eq!(
                parse_invite_v2(&ok(bad, "member", PK_A)),
                Err(CanonicalError::Expiry(bad.to_owned())),
                "expiry {bad:?}"
            );
        }
        for bad in ["owner", "Admin", "", "member "] {
            assert_eq!(
                parse_invite_v2(&ok("1", bad, PK_A)),
                Err(CanonicalError::Role(bad.to_owned()))
            );
        }
        let upper = PK_A.to_uppercase();
        let too_long = format!("{PK_A}0");
        let not_hex = "g".repeat(64);
        for bad in [
            &PK_A[..63],
            upper.as_str(),
            too_long.as_str(),
            not_hex.as_str(),
        ] {
            assert_eq!(
                parse_invite_v2(&ok("1", "admin", bad)),
                Err(CanonicalError::OwnerPubkey)
            );
        }
        assert!(parse_invite_v2(&format!("{}\n", ok("1", "member", PK_A))).is_err());
    }
}
