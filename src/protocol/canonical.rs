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

/// Invite v3 capability (§9), signed by `signer`: the mesh owner key or the member key of an
/// admin. Unlike v2 it binds everything that grants access: the code it is registered under,
/// the number of uses, the expiry (unix **seconds**), the role and who signed it, so a claimed
/// invite cannot be registered again under another code or with more uses.
pub fn invite_v3(
    mesh_id: &str,
    invite_id: &str,
    code: &str,
    max_uses: u32,
    expires_at_unix_seconds: i64,
    role: &str,
    signer_pubkey_hex: &str,
) -> String {
    format!(
        "v=3|{mesh_id}|{invite_id}|{code}|{max_uses}|{expires_at_unix_seconds}|{role}|{signer_pubkey_hex}"
    )
}

/// Invite claim proof (§9), signed by the member key being registered: the claimer shows it
/// holds that key, and binds the code and the x25519 key it sent (base64url, as on the wire).
pub fn invite_claim(
    code: &str,
    recipient_x25519_b64url: &str,
    member_pubkey_hex: &str,
    timestamp_ms: i64,
) -> String {
    format!("claudemesh-claim|{code}|{recipient_x25519_b64url}|{member_pubkey_hex}|{timestamp_ms}")
}

/// A mesh's `groupBodies` setting (§5.2), signed by the owner key, so that clients take the
/// choice from the owner, never from the broker alone: a broker that could switch clients to
/// plain group bodies would read group traffic.
pub fn group_bodies(owner_pubkey_hex: &str, value: &str, signed_at_ms: i64) -> String {
    format!("claudemesh-group-bodies|{owner_pubkey_hex}|{value}|{signed_at_ms}")
}

/// A root-key rotation (§12.4), signed by the rotating owner key or admin member key: it binds
/// the new epoch of this mesh to the new key's check value, so a client takes a sealed key only
/// when someone it trusts made it, never from the broker alone.
pub fn key_rotation(
    mesh_id: &str,
    epoch: u64,
    check_hex: &str,
    signer_pubkey_hex: &str,
    signed_at_ms: i64,
) -> String {
    format!(
        "claudemesh-key-rotation|v=1|{mesh_id}|{epoch}|{check_hex}|{signer_pubkey_hex}|{signed_at_ms}"
    )
}

/// The mesh's admin list (§12.4), signed by the owner key: the member keys, lowercase hex in
/// ascending order joined by `,`, whose rotations clients accept besides the owner's. `version`
/// grows by one with every list the owner signs.
pub fn admin_list(
    mesh_id: &str,
    version: u64,
    signed_at_ms: i64,
    admins_sorted: &[String],
) -> String {
    format!(
        "claudemesh-admins|v=1|{mesh_id}|{version}|{signed_at_ms}|{}",
        admins_sorted.join(",")
    )
}

/// What `HMAC-SHA256(root_key, ·)` is computed over for the mesh's root-key check value: a
/// one-way commitment the broker may keep (it reveals nothing of the key) so that a client can
/// prove it holds the key and a joiner can check the key its link carried.
pub const ROOT_KEY_CHECK: &str = "claudemesh-root-key-check";

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
    #[error("invite canonical string has the wrong number of `|`-separated fields ({0})")]
    FieldCount(usize),
    #[error("invite canonical string has the wrong version (`v=2` or `v=3` expected)")]
    Version,
    #[error("invite uses must be a count in plain decimal, got {0:?}")]
    Uses(String),
    #[error("invite canonical string has an empty {0}")]
    EmptyField(&'static str),
    #[error("invite expiry must be unix seconds in plain decimal, got {0:?}")]
    Expiry(String),
    #[error("invite role must be `admin` or `member`, got {0:?}")]
    Role(String),
    #[error("invite signer (owner) key must be 64 lowercase hex characters")]
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
    let expires_at_unix_seconds = expiry_role_signer(expires, role, owner)?;
    Ok(InviteV2Fields {
        mesh_id: mesh_id.to_owned(),
        invite_id: invite_id.to_owned(),
        expires_at_unix_seconds,
        role: role.to_owned(),
        owner_pubkey_hex: owner.to_owned(),
    })
}

/// The fields of a parsed invite v3 canonical string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteV3Fields {
    pub mesh_id: String,
    pub invite_id: String,
    pub code: String,
    pub max_uses: u32,
    pub expires_at_unix_seconds: i64,
    /// `"admin"` or `"member"`.
    pub role: String,
    /// 64 lowercase hex: the owner key or an admin's member key.
    pub signer_pubkey_hex: String,
}

impl InviteV3Fields {
    /// Rebuilds the canonical string; `parse_invite_v3(s)?.to_canonical() == s` always holds.
    pub fn to_canonical(&self) -> String {
        invite_v3(
            &self.mesh_id,
            &self.invite_id,
            &self.code,
            self.max_uses,
            self.expires_at_unix_seconds,
            &self.role,
            &self.signer_pubkey_hex,
        )
    }
}

/// Digits only and no leading zeros, so the decimal form of a number is unique.
fn canonical_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

/// The fields v2 and v3 invites share: the expiry (canonical decimal seconds), the role and
/// the signer key; returns the expiry.
fn expiry_role_signer(expires: &str, role: &str, signer: &str) -> Result<i64, CanonicalError> {
    let expires_at_unix_seconds = expires
        .parse::<i64>()
        .ok()
        .filter(|_| canonical_decimal(expires))
        .ok_or_else(|| CanonicalError::Expiry(expires.to_owned()))?;
    if role != "admin" && role != "member" {
        return Err(CanonicalError::Role(role.to_owned()));
    }
    if !super::keys::Pubkey::is_shape(signer) {
        return Err(CanonicalError::OwnerPubkey);
    }
    Ok(expires_at_unix_seconds)
}

/// Parses an invite v3 canonical string (a claim's `canonical_v3`). As for v2, only the exact
/// canonical form parses.
pub fn parse_invite_v3(s: &str) -> Result<InviteV3Fields, CanonicalError> {
    let fields: Vec<&str> = s.split('|').collect();
    let [
        version,
        mesh_id,
        invite_id,
        code,
        uses,
        expires,
        role,
        signer,
    ] = fields[..]
    else {
        return Err(CanonicalError::FieldCount(fields.len()));
    };
    if version != "v=3" {
        return Err(CanonicalError::Version);
    }
    for (value, name) in [
        (mesh_id, "mesh id"),
        (invite_id, "invite id"),
        (code, "code"),
    ] {
        if value.is_empty() {
            return Err(CanonicalError::EmptyField(name));
        }
    }
    let max_uses = uses
        .parse::<u32>()
        .ok()
        .filter(|_| canonical_decimal(uses))
        .ok_or_else(|| CanonicalError::Uses(uses.to_owned()))?;
    let expires_at_unix_seconds = expiry_role_signer(expires, role, signer)?;
    Ok(InviteV3Fields {
        mesh_id: mesh_id.to_owned(),
        invite_id: invite_id.to_owned(),
        code: code.to_owned(),
        max_uses,
        expires_at_unix_seconds,
        role: role.to_owned(),
        signer_pubkey_hex: signer.to_owned(),
    })
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
    fn invite_v3_and_claim_strings() {
        let s = invite_v3("m", "i", "AbCd1234", 3, 1_700_604_800, "admin", PK_A);
        assert_eq!(s, format!("v=3|m|i|AbCd1234|3|1700604800|admin|{PK_A}"));
        let f = parse_invite_v3(&s).expect("valid v3");
        assert_eq!((f.code.as_str(), f.max_uses), ("AbCd1234", 3));
        assert_eq!(f.signer_pubkey_hex, PK_A);
        assert_eq!(f.to_canonical(), s);
        for bad in ["", "03", "-1", "4294967296", "1 "] {
            let s = format!("v=3|m|i|AbCd1234|{bad}|1|member|{PK_A}");
            assert_eq!(parse_invite_v3(&s), Err(CanonicalError::Uses(bad.into())));
        }
        assert_eq!(
            parse_invite_v3(&format!("v=2|m|i|AbCd1234|1|1|member|{PK_A}")),
            Err(CanonicalError::Version)
        );
        assert_eq!(
            parse_invite_v3(&format!("v=3|m|i||1|1|member|{PK_A}")),
            Err(CanonicalError::EmptyField("code"))
        );
        assert!(parse_invite_v3(&invite_v2("m", "i", 1, "member", PK_A)).is_err());
        assert_eq!(
            invite_claim("AbCd1234", "xKey", PK_B, 7),
            format!("claudemesh-claim|AbCd1234|xKey|{PK_B}|7")
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
