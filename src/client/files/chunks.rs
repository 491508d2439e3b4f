//! The encrypted file format (`CMF1`): a file sealed as a sequence of secretboxes under one
//! random file key, 64 KiB at a time, so that neither side ever holds a whole file.

use super::FileError;
use crate::crypto;

/// Plaintext bytes per encrypted chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Poly1305 tag added to every chunk.
const MAC_BYTES: usize = 16;
/// `CMF1` then the 16-byte nonce prefix.
const MAGIC: &[u8; 4] = b"CMF1";
pub const HEADER_BYTES: usize = 4 + 16;
/// Set in the chunk counter of the last chunk.
const FINAL_FLAG: u64 = 1 << 63;

/// Size of the encrypted form of `plain_len` bytes.
pub fn encrypted_len(plain_len: u64) -> u64 {
    let chunk = CHUNK_BYTES as u64;
    HEADER_BYTES as u64
        + (plain_len / chunk) * (chunk + MAC_BYTES as u64)
        + (plain_len % chunk)
        + MAC_BYTES as u64
}

fn chunk_nonce(prefix: &[u8; 16], counter: u64, last: bool) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(prefix);
    let c = if last { counter | FINAL_FLAG } else { counter };
    nonce[16..].copy_from_slice(&c.to_be_bytes());
    nonce
}

/// Encrypts a file as a sequence of secretboxes under one random file key.
///
/// Format (`CMF1`):
///
/// ```text
/// "CMF1" ‖ prefix (16 random bytes) ‖ chunk 0 ‖ chunk 1 ‖ … ‖ chunk n
/// chunk i = crypto_secretbox_easy(plaintext_i, key, nonce_i)      (plaintext_i + 16 bytes)
/// nonce_i = prefix ‖ u64_be(i)              for every chunk but the last
///         = prefix ‖ u64_be(i | 1 << 63)    for the last chunk
/// ```
///
/// Every plaintext chunk but the last is exactly [`CHUNK_BYTES`]; the last is shorter (empty
/// when the file is a multiple of the chunk size), so a reader knows which chunk claims to be the
/// last from its length alone, and the flag in its nonce proves it. Reordered, dropped or
/// repeated chunks fail to open (the counter is in the nonce); a file cut at a chunk boundary
/// ends without a last chunk; a file cut inside a chunk fails that chunk's MAC. The random prefix
/// keeps nonces unique even if a key were ever reused.
pub struct ChunkSealer {
    key: [u8; 32],
    prefix: [u8; 16],
    counter: u64,
}

impl ChunkSealer {
    pub fn new(key: [u8; 32]) -> Self {
        ChunkSealer {
            key,
            prefix: crypto::random_bytes(),
            counter: 0,
        }
    }

    pub fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_BYTES);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&self.prefix);
        h
    }

    /// Seals the next chunk: `last` exactly when `plain` is shorter than [`CHUNK_BYTES`].
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let last = plain.len() < CHUNK_BYTES;
        let nonce = chunk_nonce(&self.prefix, self.counter, last);
        self.counter += 1;
        crypto::secretbox_easy(plain, &nonce, &self.key)
    }
}

/// Reads the format written by [`ChunkSealer`], in pieces of any size.
pub struct ChunkOpener {
    key: [u8; 32],
    prefix: Option<[u8; 16]>,
    counter: u64,
    buf: Vec<u8>,
}

impl ChunkOpener {
    pub fn new(key: [u8; 32]) -> Self {
        ChunkOpener {
            key,
            prefix: None,
            counter: 0,
            buf: Vec::with_capacity(CHUNK_BYTES + MAC_BYTES),
        }
    }

    /// Takes the next piece of ciphertext; appends whatever plaintext it completes to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), FileError> {
        self.buf.extend_from_slice(data);
        let prefix = match self.prefix {
            Some(p) => p,
            None if self.buf.len() < HEADER_BYTES => return Ok(()),
            None => {
                if &self.buf[..4] != MAGIC {
                    return Err(FileError::Decrypt(
                        "this is not a claudemesh encrypted file (unknown format)".into(),
                    ));
                }
                let mut p = [0u8; 16];
                p.copy_from_slice(&self.buf[4..HEADER_BYTES]);
                self.buf.drain(..HEADER_BYTES);
                self.prefix = Some(p);
                p
            }
        };
        let full = CHUNK_BYTES + MAC_BYTES;
        let mut at = 0;
        while self.buf.len() - at >= full {
            let nonce = chunk_nonce(&prefix, self.counter, false);
            let plain = crypto::secretbox_open_easy(&self.buf[at..at + full], &nonce, &self.key)
                .map_err(|_| tampered())?;
            out.extend_from_slice(&plain);
            self.counter += 1;
            at += full;
        }
        self.buf.drain(..at);
        Ok(())
    }

    /// Opens the last chunk; fails if the file was cut short.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), FileError> {
        let Some(prefix) = self.prefix else {
            return Err(FileError::Decrypt(
                "the encrypted file is cut short (no header)".into(),
            ));
        };
        if self.buf.len() < MAC_BYTES {
            return Err(FileError::Decrypt(
                "the encrypted file is cut short (its last chunk is missing)".into(),
            ));
        }
        let nonce = chunk_nonce(&prefix, self.counter, true);
        let plain =
            crypto::secretbox_open_easy(&self.buf, &nonce, &self.key).map_err(|_| tampered())?;
        out.extend_from_slice(&plain);
        Ok(())
    }
}

fn tampered() -> FileError {
    FileError::Decrypt("cannot decrypt the file: wrong key, or the data was altered or cut".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt(data: &[u8], key: [u8; 32]) -> Vec<u8> {
        let mut s = ChunkSealer::new(key);
        let mut out = s.header();
        let mut rest = data;
        loop {
            let n = rest.len().min(CHUNK_BYTES);
            out.extend(s.seal(&rest[..n]));
            rest = &rest[n..];
            if n < CHUNK_BYTES {
                return out;
            }
        }
    }

    fn decrypt(ct: &[u8], key: [u8; 32], piece: usize) -> Result<Vec<u8>, FileError> {
        let mut o = ChunkOpener::new(key);
        let mut out = Vec::new();
        for p in ct.chunks(piece.max(1)) {
            o.feed(p, &mut out)?;
        }
        o.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn chunked_format_round_trips_at_every_boundary() {
        let key = crypto::random_bytes();
        for len in [
            0,
            1,
            CHUNK_BYTES - 1,
            CHUNK_BYTES,
            CHUNK_BYTES + 1,
            3 * CHUNK_BYTES,
        ] {
            let data = crypto::random_vec(len);
            let ct = encrypt(&data, key);
            assert_eq!(ct.len() as u64, encrypted_len(len as u64), "len {len}");
            for piece in [1000, 7, CHUNK_BYTES + 16, ct.len()] {
                assert_eq!(
                    decrypt(&ct, key, piece).expect("decrypts"),
                    data,
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn chunked_format_detects_truncation_tampering_and_wrong_keys() {
        let key = crypto::random_bytes();
        let data = crypto::random_vec(2 * CHUNK_BYTES + 100);
        let ct = encrypt(&data, key);
        // Cut at a chunk boundary: the last chunk is missing.
        let boundary = HEADER_BYTES + 2 * (CHUNK_BYTES + MAC_BYTES);
        assert!(decrypt(&ct[..boundary], key, 4096).is_err());
        // Cut inside a chunk.
        assert!(decrypt(&ct[..ct.len() - 1], key, 4096).is_err());
        assert!(decrypt(&ct[..10], key, 4096).is_err());
        // A flipped bit.
        let mut bad = ct.clone();
        bad[HEADER_BYTES + 5] ^= 1;
        assert!(decrypt(&bad, key, 4096).is_err());
        // Swapped chunks.
        let full = CHUNK_BYTES + MAC_BYTES;
        let mut swapped = ct[..HEADER_BYTES].to_vec();
        swapped.extend_from_slice(&ct[HEADER_BYTES + full..HEADER_BYTES + 2 * full]);
        swapped.extend_from_slice(&ct[HEADER_BYTES..HEADER_BYTES + full]);
        swapped.extend_from_slice(&ct[HEADER_BYTES + 2 * full..]);
        assert!(decrypt(&swapped, key, 4096).is_err());
        // A full-size chunk cannot pass as the last one: an exact multiple has an empty last.
        let exact = encrypt(&crypto::random_vec(CHUNK_BYTES), key);
        assert!(decrypt(&exact[..HEADER_BYTES + full], key, 4096).is_err());
        assert!(decrypt(&ct, crypto::random_bytes(), 4096).is_err());
        let mut wrong_magic = ct.clone();
        wrong_magic[0] = b'X';
        assert!(decrypt(&wrong_magic, key, 4096).is_err());
    }
}
