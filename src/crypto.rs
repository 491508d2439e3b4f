//! The one place that talks to libsodium (PROTOCOL.md §2, §4.2, §7, §9).
//!
//! Everything else in the crate goes through this small, safe API, so the `unsafe` FFI surface,
//! the buffer-length arithmetic and the key-zeroing live in a single file that can be audited in
//! one sitting. libsodium is used (not a pure-Rust stack) because the original TypeScript CLI uses
//! libsodium, and byte-identical signatures, boxes and key conversions are part of the contract.

use std::ffi::c_void;
use std::fmt;
use std::sync::Once;

use libsodium_sys as ffi;

/// Poly1305 tag length of `crypto_box_easy` and `crypto_secretbox_easy`.
const MAC_BYTES: usize = ffi::crypto_box_MACBYTES as usize;
/// Ephemeral public key plus MAC prepended by `crypto_box_seal`.
const SEAL_BYTES: usize = ffi::crypto_box_SEALBYTES as usize;

/// Errors a caller can cause; libsodium's own failures on valid input are bugs and panic instead.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// Deliberately vague: telling "wrong key" from "tampered" would help an attacker.
    #[error("decryption failed: wrong key or tampered data")]
    Decrypt,
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("{0}")]
    Encoding(String),
    /// A sealed vault key opened, but it was sealed for another entry (another mesh, member,
    /// name, type or mount path): a row copied or altered in the store.
    #[error("the sealed key belongs to another vault entry (copied or altered in the store)")]
    WrongContext,
}

/// `sodium_init` must run before any other libsodium call; it is idempotent and thread-safe, but
/// going through `Once` keeps it off the hot path.
fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: no arguments; libsodium documents it as safe to call from any thread.
        if unsafe { ffi::sodium_init() } < 0 {
            panic!("libsodium failed to initialise (sodium_init returned -1): no usable RNG?");
        }
    });
}

/// Zeroes secret bytes in a way the optimiser may not elide.
fn wipe(bytes: &mut [u8]) {
    // SAFETY: the pointer and length come from a live, exclusively borrowed slice.
    unsafe { ffi::sodium_memzero(bytes.as_mut_ptr().cast::<c_void>(), bytes.len()) }
}

/// An ed25519 signing key pair: member, session and mesh-owner identities.
///
/// `secret` uses libsodium's layout (32-byte seed ‖ 32-byte public key), which is also the
/// 128-hex form stored in client configs. The secret is zeroed on drop and never printed by
/// `Debug`.
#[derive(Clone)]
pub struct SignKeyPair {
    pub public: [u8; 32],
    pub secret: [u8; 64],
}

impl SignKeyPair {
    pub fn generate() -> Self {
        init();
        let mut kp = SignKeyPair {
            public: [0; 32],
            secret: [0; 64],
        };
        // SAFETY: both buffers have the sizes crypto_sign_keypair writes (32 and 64 bytes).
        let rc =
            unsafe { ffi::crypto_sign_keypair(kp.public.as_mut_ptr(), kp.secret.as_mut_ptr()) };
        assert_eq!(rc, 0, "crypto_sign_keypair failed");
        kp
    }

    /// Deterministic derivation, used by tests and golden vectors.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        init();
        let mut kp = SignKeyPair {
            public: [0; 32],
            secret: [0; 64],
        };
        // SAFETY: output buffers are 32 and 64 bytes, the seed is 32 bytes.
        let rc = unsafe {
            ffi::crypto_sign_seed_keypair(
                kp.public.as_mut_ptr(),
                kp.secret.as_mut_ptr(),
                seed.as_ptr(),
            )
        };
        assert_eq!(rc, 0, "crypto_sign_seed_keypair failed");
        kp
    }

    /// Loads a stored secret key. The embedded public half is checked against the one re-derived
    /// from the seed, so a corrupted or hand-edited config cannot sign under a key it does not own.
    pub fn from_secret(secret: &[u8; 64]) -> Result<Self, CryptoError> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&secret[..32]);
        let kp = Self::from_seed(&seed);
        wipe(&mut seed);
        if kp.secret[..] != secret[..] {
            return Err(CryptoError::InvalidKey(
                "ed25519 secret key: embedded public key does not match its seed",
            ));
        }
        Ok(kp)
    }

    /// Loads the 128-hex secret key form used in client configs (PROTOCOL.md §2).
    pub fn from_secret_hex(secret_hex: &str) -> Result<Self, CryptoError> {
        let mut secret = [0u8; 64];
        hex::decode_to_slice(secret_hex.trim(), &mut secret).map_err(|e| {
            CryptoError::Encoding(format!(
                "ed25519 secret key must be 128 hex characters: {e}"
            ))
        })?;
        let kp = Self::from_secret(&secret);
        wipe(&mut secret);
        kp
    }

    /// Detached ed25519 signature (deterministic: same key and message, same bytes).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        init();
        let mut sig = [0u8; 64];
        // SAFETY: sig is 64 bytes; msg pointer/length from a slice; secret is 64 bytes.
        let rc = unsafe {
            ffi::crypto_sign_detached(
                sig.as_mut_ptr(),
                std::ptr::null_mut(),
                msg.as_ptr(),
                msg.len() as u64,
                self.secret.as_ptr(),
            )
        };
        assert_eq!(rc, 0, "crypto_sign_detached failed");
        sig
    }

    /// 64 lowercase hex, the wire form of every public key.
    pub fn public_hex(&self) -> String {
        hex::encode(self.public)
    }

    /// 128 lowercase hex (seed ‖ pk), the client-config form.
    pub fn secret_hex(&self) -> String {
        hex::encode(self.secret)
    }

    /// The X25519 key pair used for `crypto_box` with this identity (PROTOCOL.md §4.2).
    ///
    /// The public half is computed from the converted secret rather than from `self.public`, so
    /// this cannot fail even if someone overwrote the public field; for any real key pair it
    /// equals [`ed25519_pk_to_x25519`] of the public key (checked by the golden-vector tests).
    pub fn to_x25519(&self) -> BoxKeyPair {
        init();
        let mut x_secret = [0u8; 32];
        // SAFETY: output is 32 bytes, input is the 64-byte ed25519 secret key.
        let rc = unsafe {
            ffi::crypto_sign_ed25519_sk_to_curve25519(x_secret.as_mut_ptr(), self.secret.as_ptr())
        };
        assert_eq!(rc, 0, "crypto_sign_ed25519_sk_to_curve25519 failed");
        let kp = BoxKeyPair::from_secret(&x_secret);
        wipe(&mut x_secret);
        kp
    }
}

impl Drop for SignKeyPair {
    fn drop(&mut self) {
        wipe(&mut self.secret);
    }
}

impl fmt::Debug for SignKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignKeyPair")
            .field("public", &self.public_hex())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Checks a detached ed25519 signature. libsodium also rejects non-canonical signatures and
/// small-order public keys, so a `true` here is strict.
#[must_use]
pub fn verify(sig: &[u8; 64], msg: &[u8], public: &[u8; 32]) -> bool {
    init();
    // SAFETY: sig is 64 bytes, public is 32 bytes, msg pointer/length from a slice.
    let rc = unsafe {
        ffi::crypto_sign_verify_detached(
            sig.as_ptr(),
            msg.as_ptr(),
            msg.len() as u64,
            public.as_ptr(),
        )
    };
    rc == 0
}

/// Converts a peer's ed25519 public key to the X25519 key used to box messages to it.
/// Fails for keys that are not valid points of the main subgroup.
pub fn ed25519_pk_to_x25519(pk: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
    init();
    let mut out = [0u8; 32];
    // SAFETY: both buffers are 32 bytes.
    let rc = unsafe { ffi::crypto_sign_ed25519_pk_to_curve25519(out.as_mut_ptr(), pk.as_ptr()) };
    if rc != 0 {
        return Err(CryptoError::InvalidKey(
            "not a valid ed25519 public key (cannot convert to x25519)",
        ));
    }
    Ok(out)
}

/// An X25519 key pair for `crypto_box` and sealed boxes, e.g. the fresh key an invite claimer
/// sends so the broker can seal the mesh root key to it. The secret is zeroed on drop.
#[derive(Clone)]
pub struct BoxKeyPair {
    pub public: [u8; 32],
    pub secret: [u8; 32],
}

impl BoxKeyPair {
    pub fn generate() -> Self {
        init();
        let mut kp = BoxKeyPair {
            public: [0; 32],
            secret: [0; 32],
        };
        // SAFETY: both buffers are 32 bytes.
        let rc = unsafe { ffi::crypto_box_keypair(kp.public.as_mut_ptr(), kp.secret.as_mut_ptr()) };
        assert_eq!(rc, 0, "crypto_box_keypair failed");
        kp
    }

    /// Rebuilds the key pair from a stored secret (the public key is `secret · basepoint`).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        init();
        let mut kp = BoxKeyPair {
            public: [0; 32],
            secret: *secret,
        };
        // SAFETY: both buffers are 32 bytes.
        let rc = unsafe { ffi::crypto_scalarmult_base(kp.public.as_mut_ptr(), kp.secret.as_ptr()) };
        // A clamped scalar times the base point is never the identity, so this cannot fail.
        assert_eq!(rc, 0, "crypto_scalarmult_base failed");
        kp
    }
}

impl Drop for BoxKeyPair {
    fn drop(&mut self) {
        wipe(&mut self.secret);
    }
}

impl fmt::Debug for BoxKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxKeyPair")
            .field("public", &hex::encode(self.public))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `crypto_box_easy`: authenticated public-key encryption of a direct message.
///
/// Returns an error (instead of the brief's infallible signature) because libsodium refuses a
/// small-order `their_public`, and that key comes from a peer.
pub fn box_easy(
    msg: &[u8],
    nonce: &[u8; 24],
    their_public: &[u8; 32],
    my_secret: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    init();
    let mut out = vec![0u8; msg.len() + MAC_BYTES];
    // SAFETY: out is mlen + MACBYTES bytes; nonce 24, keys 32 bytes each.
    let rc = unsafe {
        ffi::crypto_box_easy(
            out.as_mut_ptr(),
            msg.as_ptr(),
            msg.len() as u64,
            nonce.as_ptr(),
            their_public.as_ptr(),
            my_secret.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(CryptoError::InvalidKey(
            "recipient x25519 public key is a low-order point",
        ));
    }
    Ok(out)
}

/// Opens a `crypto_box_easy` ciphertext; short, tampered or misaddressed input is `Decrypt`.
pub fn box_open_easy(
    ct: &[u8],
    nonce: &[u8; 24],
    their_public: &[u8; 32],
    my_secret: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    init();
    let Some(plain_len) = ct.len().checked_sub(MAC_BYTES) else {
        return Err(CryptoError::Decrypt);
    };
    let mut out = vec![0u8; plain_len];
    // SAFETY: ct is at least MACBYTES long and out is exactly clen - MACBYTES bytes.
    let rc = unsafe {
        ffi::crypto_box_open_easy(
            out.as_mut_ptr(),
            ct.as_ptr(),
            ct.len() as u64,
            nonce.as_ptr(),
            their_public.as_ptr(),
            my_secret.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(CryptoError::Decrypt);
    }
    Ok(out)
}

/// `crypto_box_seal`: anonymous encryption to an X25519 key (mesh root key at invite claim,
/// file keys). Fallible for the same low-order-key reason as [`box_easy`].
pub fn seal(msg: &[u8], their_public: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
    init();
    let mut out = vec![0u8; msg.len() + SEAL_BYTES];
    // SAFETY: out is mlen + SEALBYTES bytes; the public key is 32 bytes.
    let rc = unsafe {
        ffi::crypto_box_seal(
            out.as_mut_ptr(),
            msg.as_ptr(),
            msg.len() as u64,
            their_public.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(CryptoError::InvalidKey(
            "recipient x25519 public key is a low-order point",
        ));
    }
    Ok(out)
}

/// Opens a sealed box addressed to `kp`.
pub fn seal_open(ct: &[u8], kp: &BoxKeyPair) -> Result<Vec<u8>, CryptoError> {
    init();
    let Some(plain_len) = ct.len().checked_sub(SEAL_BYTES) else {
        return Err(CryptoError::Decrypt);
    };
    let mut out = vec![0u8; plain_len];
    // SAFETY: ct is at least SEALBYTES long and out is exactly clen - SEALBYTES bytes.
    let rc = unsafe {
        ffi::crypto_box_seal_open(
            out.as_mut_ptr(),
            ct.as_ptr(),
            ct.len() as u64,
            kp.public.as_ptr(),
            kp.secret.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(CryptoError::Decrypt);
    }
    Ok(out)
}

/// `crypto_secretbox_easy`: symmetric encryption under the mesh root key (group messages,
/// `bodyVersion` 2) or a per-file key.
pub fn secretbox_easy(msg: &[u8], nonce: &[u8; 24], key: &[u8; 32]) -> Vec<u8> {
    init();
    let mut out = vec![0u8; msg.len() + MAC_BYTES];
    // SAFETY: out is mlen + MACBYTES bytes; nonce 24 and key 32 bytes.
    let rc = unsafe {
        ffi::crypto_secretbox_easy(
            out.as_mut_ptr(),
            msg.as_ptr(),
            msg.len() as u64,
            nonce.as_ptr(),
            key.as_ptr(),
        )
    };
    assert_eq!(rc, 0, "crypto_secretbox_easy failed");
    out
}

/// Opens a `crypto_secretbox_easy` ciphertext; short or tampered input is `Decrypt`.
pub fn secretbox_open_easy(
    ct: &[u8],
    nonce: &[u8; 24],
    key: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    init();
    let Some(plain_len) = ct.len().checked_sub(MAC_BYTES) else {
        return Err(CryptoError::Decrypt);
    };
    let mut out = vec![0u8; plain_len];
    // SAFETY: ct is at least MACBYTES long and out is exactly clen - MACBYTES bytes.
    let rc = unsafe {
        ffi::crypto_secretbox_open_easy(
            out.as_mut_ptr(),
            ct.as_ptr(),
            ct.len() as u64,
            nonce.as_ptr(),
            key.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(CryptoError::Decrypt);
    }
    Ok(out)
}

/// What [`seal_to_many`] makes.
pub struct SealedToMany {
    pub ciphertext: Vec<u8>,
    pub nonce: [u8; 24],
    /// The value key and `context` sealed to each recipient, in the order given.
    pub sealed_keys: Vec<Vec<u8>>,
}

/// A value in a secretbox under a fresh random key; that key, followed by `context` (a hash of
/// where the value belongs), sealed to each of `recipients` (vault entries: the member's own key
/// and perhaps the broker's service key). Binding the context inside the sealed box means a
/// sealed entry copied under another name or member no longer opens (see [`open_sealed_key`]).
pub fn seal_to_many(
    msg: &[u8],
    context: &[u8; 32],
    recipients: &[[u8; 32]],
) -> Result<SealedToMany, CryptoError> {
    let mut key: [u8; 64] = random_bytes();
    key[32..].copy_from_slice(context);
    let nonce: [u8; 24] = random_bytes();
    let value_key: &[u8; 32] = key[..32].try_into().map_err(|_| CryptoError::Decrypt)?;
    let ciphertext = secretbox_easy(msg, &nonce, value_key);
    let sealed: Result<Vec<_>, _> = recipients.iter().map(|r| seal(&key, r)).collect();
    wipe(&mut key);
    Ok(SealedToMany {
        ciphertext,
        nonce,
        sealed_keys: sealed?,
    })
}

/// Length of a sealed key made by [`seal_to_many`]: key, context, and the sealed box's overhead.
pub const SEALED_BOUND_KEY_BYTES: usize = 32 + 32 + SEAL_BYTES;

/// Opens what [`seal_to_many`] made, with the sealed key addressed to `kp`, refusing it
/// ([`CryptoError::WrongContext`]) when it was sealed for another `context`. A sealed bare key
/// (the original's clients, which bind nothing) opens only when `allow_unbound`.
pub fn open_sealed_key(
    ct: &[u8],
    nonce: &[u8; 24],
    sealed_key: &[u8],
    context: &[u8; 32],
    allow_unbound: bool,
    kp: &BoxKeyPair,
) -> Result<Vec<u8>, CryptoError> {
    let mut opened = seal_open(sealed_key, kp)?;
    let out = match opened.len() {
        64 if !constant_time_eq(&opened[32..], context) => Err(CryptoError::WrongContext),
        32 if !allow_unbound => Err(CryptoError::WrongContext),
        32 | 64 => match <&[u8; 32]>::try_from(&opened[..32]) {
            Ok(key) => secretbox_open_easy(ct, nonce, key),
            Err(_) => Err(CryptoError::Decrypt),
        },
        _ => Err(CryptoError::Decrypt),
    };
    wipe(&mut opened);
    out
}

/// Decodes base64 in either flavour clients send: standard (this project's clients) or URL-safe
/// (the original's crypto code), padded or not.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, CryptoError> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| CryptoError::Encoding("not base64".into()))
}

/// Fills `buf` from libsodium's CSPRNG.
fn fill_random(buf: &mut [u8]) {
    init();
    // SAFETY: pointer and length come from a live, exclusively borrowed slice.
    unsafe { ffi::randombytes_buf(buf.as_mut_ptr().cast::<c_void>(), buf.len()) }
}

/// Cryptographically random bytes: nonces, root keys, file keys.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

pub fn random_vec(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    fill_random(&mut out);
    out
}

/// Uniform in `0..n` without modulo bias (random base62 ids). Returns 0 when `n` is 0 or 1.
pub fn random_u32_below(n: u32) -> u32 {
    init();
    // SAFETY: plain value call.
    unsafe { ffi::randombytes_uniform(n) }
}

/// One-shot SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize()
}

/// HMAC-SHA256 with a 32-byte key (the mesh root-key check value).
pub fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    init();
    let mut out = [0u8; 32];
    // SAFETY: out is 32 bytes (crypto_auth_hmacsha256_BYTES); key is 32 bytes
    // (crypto_auth_hmacsha256_KEYBYTES); msg pointer/length from a slice.
    let rc = unsafe {
        ffi::crypto_auth_hmacsha256(
            out.as_mut_ptr(),
            msg.as_ptr(),
            msg.len() as u64,
            key.as_ptr(),
        )
    };
    assert_eq!(rc, 0, "crypto_auth_hmacsha256 failed");
    out
}

/// Streaming SHA-256 for bodies and files too large to hold at once. Implements
/// [`std::io::Write`] so `std::io::copy(&mut file, &mut hasher)` works. RustCrypto's `sha2`
/// rather than libsodium's: it uses the CPU's SHA instructions where there are any (libsodium's
/// SHA-256 is portable C, several times slower, and every stored message hashes its client id).
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.0, data);
    }

    pub fn finalize(self) -> [u8; 32] {
        sha2::Digest::finalize(self.0).into()
    }
}

impl std::io::Write for Sha256 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Constant-time equality for secrets such as admin tokens. Lengths are compared first (a
/// length is not secret); the contents are compared without early exit.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    init();
    // SAFETY: both pointers are valid for a.len() == b.len() bytes.
    let rc = unsafe {
        ffi::sodium_memcmp(
            a.as_ptr().cast::<c_void>(),
            b.as_ptr().cast::<c_void>(),
            a.len(),
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests;
