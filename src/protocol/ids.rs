//! Identifiers: base62 strings for ids and invite codes (PROTOCOL.md §2, §9).
//!
//! Record ids sort in creation order: the first 48 bits are the millisecond clock, the other 80
//! are random, and ids made by one process only ever grow (like a monotonic ULID), so an id page
//! is also a time page and ties within a millisecond keep their order.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// A fresh id for any stored record: later ids from this process sort after earlier ones, so
/// records keyed by id are appended at the end of their B-tree.
pub fn new_id() -> String {
    static LAST: Mutex<u128> = Mutex::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // A per-thread ChaCha generator seeded once from the OS (and reseeded by rand), not a
    // system call per id.
    let random = rand::random::<u128>() >> 48;
    let fresh = (ms & 0xFFFF_FFFF_FFFF) << 80 | random;
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    *last = fresh.max(last.wrapping_add(1));
    encode_fixed(*last)
}

/// `n` as exactly `ID_LEN` base62 digits, most significant first (62^22 > 2^128), so text
/// order is numeric order. Two 128-bit divisions split `n` into chunks of ten digits that fit
/// 64 bits (62^10 < 2^64), read digit by digit in 64-bit arithmetic (a 128-bit division per
/// digit cost about 1 500 instructions an id).
fn encode_fixed(n: u128) -> String {
    const CHUNK: u128 = 62u128.pow(10);
    let mut out = [b'0'; ID_LEN];
    let (high, low) = (n / CHUNK, (n % CHUNK) as u64);
    let (top, middle) = ((high / CHUNK) as u64, (high % CHUNK) as u64);
    for (end, mut chunk) in [(ID_LEN, low), (12, middle), (2, top)] {
        for slot in out[end.saturating_sub(10)..end].iter_mut().rev() {
            *slot = BASE62[(chunk % 62) as usize];
            chunk /= 62;
        }
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
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

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
        assert_eq!(encode_fixed(u128::MAX).len(), ID_LEN);
        assert_eq!(encode_fixed(0), "0".repeat(ID_LEN));
    }

    /// The chunked encoding is the plain one: a 128-bit division per digit.
    #[test]
    fn ids_encode_as_base62_digit_by_digit() {
        let plain = |mut n: u128| {
            let mut out = [b'0'; ID_LEN];
            for slot in out.iter_mut().rev() {
                *slot = BASE62[(n % 62) as usize];
                n /= 62;
            }
            String::from_utf8(out.to_vec()).unwrap()
        };
        let chunk = 62u128.pow(10);
        let edges = [
            0,
            1,
            61,
            62,
            chunk - 1,
            chunk,
            chunk * chunk - 1,
            chunk * chunk,
            u128::MAX,
        ];
        let random = (0..1_000).map(|_| rand::random::<u128>() >> (rand::random::<u32>() % 128));
        for n in edges.into_iter().chain(random) {
            assert_eq!(encode_fixed(n), plain(n), "{n}");
        }
    }
}
