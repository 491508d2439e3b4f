//! `POST /hook/<mesh>/<id>` (PROTOCOL.md §22): an inbound webhook delivery, accepted only with a
//! valid HMAC-SHA256 signature under the webhook's secret, becomes a `subtype:"webhook"`
//! message from the webhook's member to its target.
//!
//! Two signature forms: GitHub's `X-Hub-Signature-256: sha256=<hex>` over the body, and
//! `X-Claudemesh-Signature: t=<unix seconds>,v1=<hex>` over `<t>.<body>`, whose time must be
//! within five minutes of the broker's. A signature already accepted within the last ten
//! minutes is refused as a replay (409); only the timestamped form guarantees that a
//! delivery captured earlier cannot be replayed later.

mod github;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use sha2::Sha256;

use super::http::{Body, HttpError, json_response, read_body};
use super::limits::RateLimiter;
use super::on_behalf::{self, Outgoing};
use super::state::Broker;
use crate::protocol::messages::{Permission, WebhookDelivery};
use crate::protocol::time;

/// Largest body accepted; above it is 413 before the rest is read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest payload carried in the message (its text must fit a frame); a larger one is sent
/// as `payload: null` with its size, beside the summary.
const MAX_CARRIED_BYTES: usize = 32 * 1024;
/// How far a `t=` may be from the broker's clock.
pub const WINDOW_S: i64 = 300;
/// How long an accepted signature is remembered: the window on both sides.
const REMEMBER_MS: i64 = 2 * WINDOW_S * 1000;
/// Most signatures remembered at once, broker-wide; past it deliveries are refused (429) until
/// some expire. Each mesh's rate (below) keeps one mesh from holding more than ~1 300.
const MAX_REMEMBERED: usize = 100_000;
/// Deliveries per webhook: a burst of 60, then one a second.
const RATE_PER_S: f64 = 1.0;
const BURST: f64 = 60.0;
/// Deliveries per mesh, all its webhooks together (so deleting and re-creating webhooks
/// gives no fresh allowance): a burst of 120, then two a second.
const MESH_RATE_PER_S: f64 = 2.0;
const MESH_BURST: f64 = 120.0;

/// Signatures already accepted (per mesh, with when they may be forgotten) and the rates.
pub struct Deliveries {
    seen: Mutex<Seen>,
    rate: RateLimiter,
    mesh_rate: RateLimiter,
}

#[derive(Default)]
struct Seen {
    by_mesh: HashMap<String, HashMap<[u8; 32], i64>>,
    total: usize,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            seen: Mutex::default(),
            rate: RateLimiter::bounded(RATE_PER_S, BURST, 10_000),
            mesh_rate: RateLimiter::bounded(MESH_RATE_PER_S, MESH_BURST, 10_000),
        }
    }
}

/// What a signature check found.
enum Verdict {
    Valid([u8; 32]),
    Invalid(String),
}

impl Deliveries {
    fn was_seen(&self, mesh_id: &str, key: &[u8; 32], now: i64) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.by_mesh
            .get(mesh_id)
            .and_then(|m| m.get(key))
            .is_some_and(|until| *until > now)
    }

    /// Remembers an accepted signature; false when it was just taken by a concurrent request
    /// or when too many are remembered.
    fn remember(&self, mesh_id: &str, key: [u8; 32], now: i64) -> Result<(), StatusCode> {
        let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let seen = &mut *guard;
        if seen.total >= MAX_REMEMBERED {
            // Rare (the rates keep it far below): forget what expired everywhere.
            seen.by_mesh.retain(|_, m| {
                m.retain(|_, until| *until > now);
                !m.is_empty()
            });
            seen.total = seen.by_mesh.values().map(HashMap::len).sum();
        }
        let mesh = seen.by_mesh.entry(mesh_id.to_owned()).or_default();
        // A mesh's own map is small (its rate bounds it): sweep it as it grows.
        if mesh.len() >= 256 {
            let before = mesh.len();
            mesh.retain(|_, until| *until > now);
            seen.total -= before - mesh.len();
        }
        if mesh.get(&key).is_some_and(|until| *until > now) {
            return Err(StatusCode::CONFLICT);
        }
        if seen.total >= MAX_REMEMBERED {
            return Err(StatusCode::TOO_MANY_REQUESTS);
        }
        if mesh.insert(key, now + REMEMBER_MS).is_none() {
            seen.total += 1;
        }
        Ok(())
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// Checks a delivery's signature (constant-time compare, in `verify_slice`).
fn verify(headers: &HeaderMap, body: &[u8], secret: &[u8], now_ms: i64) -> Verdict {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let invalid = |why: &str| Verdict::Invalid(why.to_string());
    if let Some(value) = header("x-claudemesh-signature") {
        let mut t = None;
        let mut v1 = None;
        for part in value.split(',') {
            match part.trim().split_once('=') {
                Some(("t", x)) => t = Some(x),
                Some(("v1", x)) => v1 = v1.or(Some(x)),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return invalid("X-Claudemesh-Signature must be t=<unix seconds>,v1=<hex>");
        };
        let Ok(secs) = t.parse::<i64>() else {
            return invalid("X-Claudemesh-Signature: t is not a number of seconds");
        };
        if (now_ms / 1000 - secs).abs() > WINDOW_S {
            return invalid(
                "X-Claudemesh-Signature: the timestamp is more than 5 minutes away from the broker's clock",
            );
        }
        let Some(sig) = decode_sig(v1) else {
            return invalid("X-Claudemesh-Signature: v1 is not 64 hex digits");
        };
        let mut m = mac(secret);
        m.update(t.as_bytes());
        m.update(b".");
        m.update(body);
        return match m.verify_slice(&sig) {
            Ok(()) => Verdict::Valid(sig),
            Err(_) => invalid("the signature does not match the body and the webhook's secret"),
        };
    }
    if let Some(value) = header("x-hub-signature-256") {
        let Some(sig) = value.strip_prefix("sha256=").and_then(decode_sig) else {
            return invalid("X-Hub-Signature-256 must be sha256=<64 hex digits>");
        };
        let mut m = mac(secret);
        m.update(body);
        return match m.verify_slice(&sig) {
            Ok(()) => Verdict::Valid(sig),
            Err(_) => invalid("the signature does not match the body and the webhook's secret"),
        };
    }
    invalid("no signature: send X-Hub-Signature-256 (GitHub) or X-Claudemesh-Signature")
}

fn decode_sig(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut out).ok()?;
    Some(out)
}

/// `POST /hook/<mesh>/<id>`.
pub async fn receive(
    broker: Arc<Broker>,
    req: Request<Incoming>,
    mesh_id: &str,
    webhook_id: &str,
) -> Response<Body> {
    match handle(&broker, req, mesh_id, webhook_id).await {
        Ok(resp) => resp,
        Err(e) => {
            broker.metrics.error(e.code);
            e.response()
        }
    }
}

async fn handle(
    broker: &Broker,
    req: Request<Incoming>,
    mesh_id: &str,
    webhook_id: &str,
) -> Result<Response<Body>, HttpError> {
    let internal = |e: &dyn std::fmt::Display| {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    let hook = broker
        .store
        .webhook(mesh_id, webhook_id)
        .map_err(|e| internal(&e))?
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such webhook"))?;
    let headers = req.headers().clone();
    let body = read_body(req, MAX_BODY_BYTES).await?;
    let key = broker
        .service_key
        .as_ref()
        .ok_or_else(|| internal(&"the broker has no service key"))?;
    let secret = key
        .open(&hook.sealed_secret)
        .map_err(|_| internal(&"the webhook's secret cannot be opened (service.key replaced?)"))?;
    let now = time::now_ms();
    let sig = match verify(&headers, &body, &secret, now) {
        Verdict::Valid(sig) => sig,
        Verdict::Invalid(why) => {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                why,
            ));
        }
    };
    let replay = || {
        HttpError::new(
            StatusCode::CONFLICT,
            "replay",
            "this signature was already accepted (a replayed delivery)",
        )
    };
    if broker.webhooks.was_seen(mesh_id, &sig, now) {
        return Err(replay());
    }
    if !broker
        .webhooks
        .rate
        .allow(&format!("{mesh_id}/{webhook_id}"))
    {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            format!("more than {RATE_PER_S} deliveries a second (burst {BURST}) to this webhook"),
        ));
    }
    if !broker.webhooks.mesh_rate.allow(mesh_id) {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            format!(
                "more than {MESH_RATE_PER_S} deliveries a second (burst {MESH_BURST}) to this mesh's webhooks"
            ),
        ));
    }
    broker
        .webhooks
        .remember(mesh_id, sig, now)
        .map_err(|status| match status {
            StatusCode::CONFLICT => replay(),
            _ => HttpError::new(
                status,
                "rate_limit",
                "too many recent deliveries; retry later",
            ),
        })?;
    let member = broker
        .store
        .member(mesh_id, &hook.member_id)
        .map_err(|e| internal(&e))?;
    // `holds` is false for a removed or banned member; the delivery posts as the member, so it
    // needs `send` as well as `webhooks`.
    let holds = |p| {
        broker
            .store
            .holds(mesh_id, &hook.member_id, p)
            .map_err(|e| internal(&e))
    };
    let allowed = holds(Permission::Webhooks)? && holds(Permission::Send)?;
    let Some(member) = member.filter(|_| allowed) else {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the member that made this webhook is no longer in the mesh or lost the \"webhooks\" or the \"send\" capability",
        ));
    };
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        // GitHub's event names are short words; a longer header is the sender's padding.
        .map(|e| e.chars().take(64).collect::<String>());
    let text = message_text(&hook.name, event, &body);
    let (nonce, ciphertext, body_version) = Outgoing::in_clear(&text);
    let out = Outgoing {
        member: &member,
        sender_pubkey: member.pubkey.to_hex(),
        sender_name: format!("webhook:{}", hook.name),
        to: &hook.target,
        nonce,
        ciphertext,
        body_version,
        key_epoch: 0,
        subtype: "webhook",
        client_message_id: format!("webhook-{webhook_id}-{}", hex::encode(sig)),
    };
    let queued = on_behalf::deliver(broker, out, now)
        .await
        .map_err(|e| internal(&e))?;
    Ok(match queued {
        Ok(()) => json_response(StatusCode::OK, json!({"ok": true, "queued": true})),
        Err(why) => json_response(
            StatusCode::OK,
            json!({"ok": true, "queued": false, "message": format!("the delivery reaches nobody: {why}")}),
        ),
    })
}

/// The message's text: the JSON payload (a string when the body is not JSON), the GitHub
/// event and its one-line summary.
fn message_text(name: &str, event: Option<String>, body: &[u8]) -> String {
    let payload: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
    let summary = event.as_deref().and_then(|e| github::summary(e, &payload));
    let carried = body.len() <= MAX_CARRIED_BYTES;
    let delivery = WebhookDelivery {
        webhook: name.to_string(),
        event,
        summary,
        payload: if carried {
            payload
        } else {
            serde_json::Value::Null
        },
        payload_bytes: (!carried).then_some(body.len()),
    };
    serde_json::to_string(&delivery).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], data: &[u8]) -> String {
        let mut m = mac(secret);
        m.update(data);
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn both_signature_forms_verify_and_a_wrong_or_stale_one_does_not() {
        let secret = b"a-webhook-secret-of-some-length";
        let body = br#"{"hello":"world"}"#;
        let now = 1_764_633_600_000;
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            format!("sha256={}", sign(secret, body)).parse().unwrap(),
        );
        assert!(matches!(verify(&h, body, secret, now), Verdict::Valid(_)));
        assert!(matches!(
            verify(&h, b"{}", secret, now),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            verify(&h, body, b"other", now),
            Verdict::Invalid(_)
        ));

        let t = now / 1000;
        let signed = [format!("{t}.").as_bytes(), body].concat();
        let mut h = HeaderMap::new();
        h.insert(
            "x-claudemesh-signature",
            format!("t={t},v1={}", sign(secret, &signed))
                .parse()
                .unwrap(),
        );
        assert!(matches!(verify(&h, body, secret, now), Verdict::Valid(_)));
        let later = now + (WINDOW_S + 1) * 1000;
        assert!(matches!(
            verify(&h, body, secret, later),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            verify(&HeaderMap::new(), body, secret, now),
            Verdict::Invalid(_)
        ));
    }
}
