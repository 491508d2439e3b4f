//! Key and signature shapes as they travel on the wire: lowercase hex, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a hex field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} lowercase hex characters")]
pub struct HexShapeError {
    pub expected: usize,
}

fn parse_lower_hex<const N: usize>(s: &str) -> Result<[u8; N], HexShapeError> {
    let err = HexShapeError { expected: N * 2 };
    if s.len() != N * 2 {
        return Err(err);
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let (high, low) = (LOWER_HEX[pair[0] as usize], LOWER_HEX[pair[1] as usize]);
        if (high | low) > 0x0f {
            return Err(err);
        }
        *byte = (high << 4) | low;
    }
    Ok(out)
}

/// Each byte's value as a lowercase hex digit, or 0xff for any other byte (hex's own decoder
/// also takes uppercase, and goes a character at a time).
const LOWER_HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// `bytes` as lowercase hex, written into `buf` (twice as long), without a heap allocation.
fn write_hex<'b>(bytes: &[u8], buf: &'b mut [u8]) -> &'b str {
    hex::encode_to_slice(bytes, buf).expect("a buffer twice as long as the bytes");
    std::str::from_utf8(buf).expect("hex digits are ASCII")
}

/// An ed25519 public key (member, session or owner): 32 bytes, 64 lowercase hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pubkey(pub [u8; 32]);

impl Pubkey {
    pub fn parse(s: &str) -> Result<Self, HexShapeError> {
        parse_lower_hex::<32>(s).map(Pubkey)
    }
    pub fn to_hex(&self) -> String {
        write_hex(&self.0, &mut [0; 64]).to_owned()
    }
    /// True when `s` has the shape of a pubkey, without allocating.
    pub fn is_shape(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| LOWER_HEX[b as usize] <= 0x0f)
    }
}

impl fmt::Display for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(write_hex(&self.0, &mut [0; 64]))
    }
}

impl fmt::Debug for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pubkey({})", &write_hex(&self.0, &mut [0; 64])[..12])
    }
}

impl Serialize for Pubkey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(write_hex(&self.0, &mut [0; 64]))
    }
}

impl<'de> Deserialize<'de> for Pubkey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor {
            parse: Pubkey::parse,
            what: "a pubkey: 64 lowercase hex characters",
        })
    }
}

/// Reads a key or signature from the string in place (a `String` would be allocated only to
/// be parsed).
struct HexVisitor<T> {
    parse: fn(&str) -> Result<T, HexShapeError>,
    what: &'static str,
}

impl<T> serde::de::Visitor<'_> for HexVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
        match std::str::from_utf8(v) {
            Ok(s) => self.visit_str(s),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
        }
    }
}

/// A detached ed25519 signature: 64 bytes, 128 lowercase hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn parse(s: &str) -> Result<Self, HexShapeError> {
        parse_lower_hex::<64>(s).map(Signature)
    }
    pub fn to_hex(&self) -> String {
        write_hex(&self.0, &mut [0; 128]).to_owned()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", &self.to_hex()[..12])
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(write_hex(&self.0, &mut [0; 128]))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor {
            parse: Signature::parse,
            what: "a signature: 128 lowercase hex characters",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubkey_requires_lowercase_and_length() {
        let ok = "ab".repeat(32);
        assert!(Pubkey::parse(&ok).is_ok());
        assert!(Pubkey::parse(&"AB".repeat(32)).is_err());
        assert!(Pubkey::parse(&"ab".repeat(31)).is_err());
        assert!(Pubkey::parse(&"zz".repeat(32)).is_err());
        assert!(Signature::parse(&"0f".repeat(64)).is_ok());
        // A bad digit anywhere, high or low, and characters of more than one byte.
        for at in [0, 1, 62, 63] {
            let mut bad = ok.clone().into_bytes();
            bad[at] = b'g';
            assert!(
                Pubkey::parse(std::str::from_utf8(&bad).unwrap()).is_err(),
                "{at}"
            );
        }
        assert!(Pubkey::parse(&format!("{}é", "a".repeat(62))).is_err());
    }

    #[test]
    fn every_byte_reads_back_from_its_hex() {
        for first in (0..=255u8).step_by(32) {
            let key = Pubkey(std::array::from_fn(|i| first.wrapping_add(i as u8)));
            let text = key.to_hex();
            assert_eq!(text, hex::encode(key.0));
            assert_eq!(Pubkey::parse(&text), Ok(key));
        }
    }
}
