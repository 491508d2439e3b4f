//! Random identifiers: base62 strings for ids and invite codes (PROTOCOL.md §2, §9).

use crate::crypto;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of mesh, member, message, memory, file and task ids.
pub const ID_LEN: usize = 22;
/// Length of an invite code.
pub const INVITE_CODE_LEN: usize = 8;

/// A uniformly random base62 string of `len` characters.
pub fn base62(len: usize) -> String {
    (0..len)
        .map(|_| BASE62[crypto::random_u32_below(BASE62.len() as u32) as usize] as char)
        .collect()
}

/// A fresh id for any stored record.
pub fn new_id() -> String {
    base62(ID_LEN)
}

/// A fresh invite code.
pub fn new_invite_code() -> String {
    base62(INVITE_CODE_LEN)
}

/// True for a string of base62 characters whose length is in `range`.
pub fn is_base62(s: &str, range: std::ops::RangeInclusive<usize>) -> bool {
    range.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Accepts ids from this broker and from the original one (which uses other alphabets, e.g.
/// cuid-like ids with `_`/`-`): 1–64 characters of `[A-Za-z0-9_-]`.
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An invite code as typed by a person: exactly 8 base62 characters.
pub fn is_invite_code(s: &str) -> bool {
    is_base62(s, INVITE_CODE_LEN..=INVITE_CODE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_promised_shape() {
        let id = new_id();
        assert!(is_base62(&id, ID_LEN..=ID_LEN));
        assert!(is_invite_code(&new_invite_code()));
        assert_ne!(new_id(), new_id());
        assert!(!is_invite_code("abc/../x"));
        assert!(!is_id(""));
        assert!(!is_id("a b"));
    }
}
