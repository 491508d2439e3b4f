//! Member-signed HTTP requests (PROTOCOL.md §8): `X-Mesh-Id`, `X-Claudemesh-Pubkey`,
//! `-Timestamp` and `-Signature` over `v=2|METHOD|PATH|MESH_ID|timestamp|sha256(body)`; each
//! signature is good for one request.

use hyper::HeaderMap;
use hyper::StatusCode;

use super::http::HttpError;
use super::state::Broker;
use crate::crypto;
use crate::protocol::{MAX_SKEW_MS, Pubkey, Signature, canonical, ids, time};
use crate::store::{Member, Mesh};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The signature headers of a member-signed request, in their proper shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    pub mesh_id: &'a str,
    pub pubkey: Pubkey,
    pub timestamp_ms: i64,
    pub signature: Signature,
}

fn unauthorized(message: &str) -> HttpError {
    HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Reads `X-Mesh-Id` and the `X-Claudemesh-*` headers and checks their shapes and that the
/// timestamp is within 60 s of `now_ms`. Pure: no storage, no signature check.
pub fn parse_signed_headers(
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<SignedHeaders<'_>, HttpError> {
    let (Some(mesh_id), Some(pubkey), Some(ts), Some(sig)) = (
        header(headers, "x-mesh-id"),
        header(headers, "x-claudemesh-pubkey"),
        header(headers, "x-claudemesh-timestamp"),
        header(headers, "x-claudemesh-signature"),
    ) else {
        return Err(unauthorized(
            "sign the request: X-Mesh-Id, X-Claudemesh-Pubkey, X-Claudemesh-Timestamp and X-Claudemesh-Signature are required",
        ));
    };
    let pubkey = Pubkey::parse(pubkey)
        .map_err(|_| unauthorized("X-Claudemesh-Pubkey must be 64 lowercase hex"))?;
    let signature = Signature::parse(sig)
        .map_err(|_| unauthorized("X-Claudemesh-Signature must be 128 lowercase hex"))?;
    let timestamp_ms: i64 = ts
        .parse()
        .map_err(|_| unauthorized("X-Claudemesh-Timestamp must be milliseconds since the epoch"))?;
    // `abs_diff`: the header may hold any i64, e.g. i64::MIN, which must not overflow.
    if now_ms.abs_diff(timestamp_ms) > MAX_SKEW_MS as u64 {
        return Err(unauthorized("the request timestamp is more than 60 s off"));
    }
    Ok(SignedHeaders {
        mesh_id,
        pubkey,
        timestamp_ms,
        signature,
    })
}

/// Checks a member-signed request; the body hash is over `body` as received.
pub fn verify_member_request(
    broker: &Broker,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body_sha256_hex: &str,
) -> Result<(Mesh, Member), HttpError> {
    let SignedHeaders {
        mesh_id,
        pubkey: key,
        timestamp_ms: ts,
        signature: sig,
    } = parse_signed_headers(headers, time::now_ms())?;
    if !ids::is_id(mesh_id) {
        return Err(unauthorized("X-Mesh-Id is not a mesh id"));
    }
    let signed = canonical::http_request_v2(method, path_and_query, mesh_id, ts, body_sha256_hex);
    if !crypto::verify(&sig.0, signed.as_bytes(), &key.0) {
        return Err(unauthorized(
            "the request signature does not verify (it signs v=2|METHOD|PATH|X-Mesh-Id|timestamp|sha256(body))",
        ));
    }
    let not_member = || unauthorized("no member with this key in this mesh");
    let mesh = broker
        .store
        .mesh(mesh_id)
        .ok()
        .flatten()
        .ok_or_else(not_member)?;
    let member = broker
        .store
        .member_by_pubkey(mesh_id, &key)
        .ok()
        .flatten()
        .ok_or_else(not_member)?;
    if member.revoked_at_ms.is_some() || broker.presence.is_revoked(mesh_id, &member.id) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "revoked",
            "this member was revoked",
        ));
    }
    if let Some(ban) = broker.store.ban_of(mesh_id, &member.id).ok().flatten() {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "banned",
            crate::broker::http::banned_message(&ban.reason),
        ));
    }
    // Recorded only for members, so strangers cannot fill the cache.
    broker
        .signed_requests
        .first_use(&sig.0, ts, &key.0, time::now_ms())?;
    Ok((mesh, std::sync::Arc::unwrap_or_clone(member)))
}

/// Signed requests live this long after their timestamp: the skew window, plus a margin.
const SIGNED_REQUEST_LIFE_MS: i64 = MAX_SKEW_MS + 1_000;
/// Signed requests one key may make within [`SIGNED_REQUEST_LIFE_MS`] (hooks send a few a
/// minute per session).
const SIGNED_REQUESTS_PER_KEY: u32 = 4_096;
/// Signatures remembered at most, all keys together (about 100 bytes each).
const SIGNED_REQUESTS_TOTAL: usize = 131_072;

/// The signatures of accepted member-signed requests, kept while their timestamp would still
/// pass, so a captured request cannot be sent again. Bounded per key and in total.
#[derive(Default)]
pub struct SignedRequestCache {
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    /// signature → (forgotten after, signing key)
    seen: std::collections::HashMap<[u8; 64], (i64, [u8; 32])>,
    per_key: std::collections::HashMap<[u8; 32], u32>,
    pruned_at: i64,
}

impl CacheInner {
    fn prune(&mut self, now: i64) {
        self.pruned_at = now;
        let per_key = &mut self.per_key;
        self.seen.retain(|_, (until, key)| {
            let live = *until > now;
            if !live && let Some(n) = per_key.get_mut(key) {
                *n = n.saturating_sub(1);
            }
            live
        });
        per_key.retain(|_, n| *n > 0);
    }
}

impl SignedRequestCache {
    /// Records a verified request's signature; refuses a replay, and a key (or the broker)
    /// over its bound.
    pub fn first_use(
        &self,
        signature: &[u8; 64],
        timestamp_ms: i64,
        key: &[u8; 32],
        now: i64,
    ) -> Result<(), HttpError> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.seen.len() >= 1024 && now - c.pruned_at >= 1_000 {
            c.prune(now);
        }
        if c.seen.get(signature).is_some_and(|(until, _)| *until > now) {
            return Err(unauthorized(
                "this signed request was already used (replay); sign every request afresh",
            ));
        }
        let over = |c: &CacheInner| {
            c.per_key.get(key).copied().unwrap_or(0) >= SIGNED_REQUESTS_PER_KEY
                || c.seen.len() >= SIGNED_REQUESTS_TOTAL
        };
        if over(&c) && now - c.pruned_at >= 100 {
            c.prune(now);
        }
        if c.per_key.get(key).copied().unwrap_or(0) >= SIGNED_REQUESTS_PER_KEY {
            return Err(HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit",
                format!(
                    "more than {SIGNED_REQUESTS_PER_KEY} signed requests from this key in {} s",
                    SIGNED_REQUEST_LIFE_MS / 1000
                ),
            ));
        }
        if c.seen.len() >= SIGNED_REQUESTS_TOTAL {
            return Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the broker is handling too many signed requests; try again in a minute",
            ));
        }
        let until = timestamp_ms.saturating_add(SIGNED_REQUEST_LIFE_MS);
        if let Some((_, old_key)) = c.seen.insert(*signature, (until, *key)) {
            // An expired entry for the same signature: its count goes with it.
            if let Some(n) = c.per_key.get_mut(&old_key) {
                *n = n.saturating_sub(1);
            }
        }
        *c.per_key.entry(*key).or_default() += 1;
        Ok(())
    }

    /// Signatures remembered now.
    pub fn remembered(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn signed(ts: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-mesh-id", HeaderValue::from_static("mesh1"));
        h.insert(
            "x-claudemesh-pubkey",
            HeaderValue::from_str(&"ab".repeat(32)).unwrap(),
        );
        h.insert(
            "x-claudemesh-signature",
            HeaderValue::from_str(&"0f".repeat(64)).unwrap(),
        );
        h.insert("x-claudemesh-timestamp", HeaderValue::from_str(ts).unwrap());
        h
    }

    fn sig(i: u32) -> [u8; 64] {
        let mut s = [0u8; 64];
        s[..4].copy_from_slice(&i.to_le_bytes());
        s
    }

    /// A signature is refused again while its timestamp could still pass (60 s, plus a
    /// second's margin), and forgotten after.
    #[test]
    fn a_replay_is_refused_while_it_could_still_pass() {
        let cache = SignedRequestCache::default();
        let (key, t0) = ([1u8; 32], 1_700_000_000_000);
        cache.first_use(&sig(0), t0, &key, t0).expect("first use");
        assert!(cache.first_use(&sig(0), t0, &key, t0 + 60_999).is_err());
        assert!(cache.first_use(&sig(0), t0, &key, t0 + 61_000).is_ok());
    }

    /// Pruning drops exactly the entries that can no longer pass and keeps the per-key counts
    /// true: a key with only expired entries is forgotten, a live key keeps its live count.
    #[test]
    fn pruning_keeps_the_live_entries_and_their_counts() {
        let cache = SignedRequestCache::default();
        let (old_key, live_key, t0) = ([1u8; 32], [2u8; 32], 1_700_000_000_000);
        let now = t0 + 62_000;
        for i in 0..600 {
            cache.first_use(&sig(i), t0, &old_key, t0).unwrap();
        }
        // Expires exactly at `now`: gone.
        cache
            .first_use(&sig(600), now - 61_000, &old_key, t0)
            .unwrap();
        for i in 601..1100 {
            cache
                .first_use(&sig(i), t0 + 30_000, &live_key, t0)
                .unwrap();
        }
        assert_eq!(cache.remembered(), 1100);
        // Over 1024 remembered and a second since the last prune: this use prunes first.
        cache.first_use(&sig(5000), now, &live_key, now).unwrap();
        assert_eq!(cache.remembered(), 500, "499 live ones and the new one");
        let c = cache.inner.lock().unwrap();
        assert_eq!(c.per_key.get(&live_key), Some(&500));
        assert_eq!(
            c.per_key.get(&old_key),
            None,
            "{:?}",
            c.per_key.get(&old_key)
        );
    }

    /// A key at its limit whose requests have all expired is served again at once: a use
    /// that finds the key over its limit prunes first (once 100 ms have passed since the last
    /// prune), without waiting for the once-a-second prune.
    #[test]
    fn a_key_at_its_limit_is_served_again_once_its_requests_expire() {
        let cache = SignedRequestCache::default();
        let (key, other, t0) = ([1u8; 32], [2u8; 32], 1_700_000_000_000);
        for i in 0..SIGNED_REQUESTS_PER_KEY {
            cache.first_use(&sig(i), t0, &key, t0).unwrap();
        }
        let refused = cache
            .first_use(&sig(9_000), t0, &key, t0)
            .expect_err("over its limit");
        assert_eq!(refused.code, "rate_limit");
        let expiry = t0 + SIGNED_REQUEST_LIFE_MS;
        // Another key's use prunes half a second before the first key's requests expire …
        cache
            .first_use(&sig(9_001), expiry - 500, &other, expiry - 500)
            .unwrap();
        // … and 600 ms later (before the next once-a-second prune) the key is served.
        cache
            .first_use(&sig(9_002), expiry + 100, &key, expiry + 100)
            .expect("its earlier requests have expired");
        assert_eq!(cache.remembered(), 2);
    }

    #[test]
    fn signature_headers_are_checked_for_shape_and_freshness() {
        let now = 1_700_000_000_000;
        let fresh = signed("1700000059999");
        let ok = parse_signed_headers(&fresh, now).expect("fresh");
        assert_eq!((ok.mesh_id, ok.timestamp_ms), ("mesh1", 1_700_000_059_999));
        // Exactly 60 s off either way is still fresh.
        for edge in ["1700000060000", "1699999940000"] {
            let headers = signed(edge);
            let ok = parse_signed_headers(&headers, now).expect("60 s off is accepted");
            assert_eq!(ok.timestamp_ms.to_string(), edge);
        }
        assert!(parse_signed_headers(&signed("1699999939999"), now).is_err());
        // Any i64 may arrive; the extremes must be refused, not overflow.
        for ts in [
            "1700000060001",
            "-9223372036854775808",
            "9223372036854775807",
            "1e3",
            "",
        ] {
            let e = parse_signed_headers(&signed(ts), now).unwrap_err();
            assert_eq!(e.code, "unauthorized", "{ts}");
        }
        let mut h = signed("1700000000000");
        h.insert(
            "x-claudemesh-pubkey",
            HeaderValue::from_str(&"AB".repeat(32)).unwrap(),
        );
        assert!(parse_signed_headers(&h, now).is_err());
        h.remove("x-claudemesh-pubkey");
        assert!(parse_signed_headers(&h, now).is_err());
    }
}
