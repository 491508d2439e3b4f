//! The HTTP side of invites: the landing page `GET /i/:code` (HTML for people, `?format=json`
//! for `claudemesh join`) and the claim `POST /invites/:code/claim` (PROTOCOL.md §9).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::http::{
    Body, banned_message, error_response, html_escape, json_response, parse_json, read_body,
    respond,
};
use super::state::Broker;
use crate::crypto;
use crate::protocol::{Pubkey, ids, time};
use crate::store::ClaimError;

#[derive(Deserialize)]
struct ClaimBody {
    recipient_x25519_pubkey: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    member_pubkey: Option<String>,
    /// Milliseconds; within ±60 s of the broker's clock.
    #[serde(default)]
    timestamp: Option<i64>,
    /// By the member key, over `canonical::invite_claim` (128 hex).
    #[serde(default)]
    signature: Option<String>,
}

/// How far a claim's timestamp may be from the broker's clock.
const CLAIM_SKEW_MS: i64 = 60_000;

pub async fn claim(broker: Arc<Broker>, req: Request<Incoming>, code: String) -> Response<Body> {
    let refuse = |code: &'static str, status: StatusCode, message: String| {
        broker.metrics.claim(code);
        error_response(status, code, message)
    };
    let body: ClaimBody = match read_body(req, broker.config.max_message_bytes)
        .await
        .and_then(|b| parse_json(&b))
    {
        Ok(b) => b,
        Err(e) => {
            broker.metrics.claim(e.code);
            return e.response();
        }
    };
    let malformed = |m: &str| refuse("malformed", StatusCode::BAD_REQUEST, m.to_string());
    if !ids::is_invite_code(&code) {
        return malformed("invite code must be 8 base62 characters");
    }
    // Not used for sealing any more (the broker holds no root key), but still checked and
    // signed so the claim keeps its shape.
    let x25519: Option<[u8; 32]> = URL_SAFE_NO_PAD
        .decode(body.recipient_x25519_pubkey.trim_end_matches('='))
        .ok()
        .and_then(|b| b.try_into().ok());
    let Some(x25519) = x25519 else {
        return malformed("recipient_x25519_pubkey must be 32 bytes in base64url");
    };
    // Refuse a key that cannot be sealed to before anything is consumed.
    if crypto::seal(b"probe", &x25519).is_err() {
        return malformed("recipient_x25519_pubkey is not a usable x25519 key");
    }
    let Some(member_key) = body
        .member_pubkey
        .as_deref()
        .and_then(|k| Pubkey::parse(k).ok())
    else {
        return malformed(
            "member_pubkey (64 lowercase hex, the ed25519 key this member will say hello with) is required",
        );
    };
    let (Some(timestamp), Some(signature)) = (body.timestamp, body.signature.as_deref()) else {
        return malformed(
            "timestamp (ms) and signature are required: the member key must sign claudemesh-claim|<code>|<recipient_x25519_pubkey>|<member_pubkey>|<timestamp>",
        );
    };
    let display_name = body
        .display_name
        .as_deref()
        .and_then(crate::protocol::clean_display_name);
    if let Some(why) = display_name
        .as_deref()
        .and_then(|n| crate::protocol::reserved_name_refusal("display_name", n))
    {
        return malformed(&why);
    }
    if (time::now_ms() - timestamp).abs() > CLAIM_SKEW_MS {
        return refuse(
            "timestamp_skew",
            StatusCode::BAD_REQUEST,
            "the claim's timestamp is more than 60 s from the broker's clock".into(),
        );
    }
    let signed = crate::protocol::canonical::invite_claim(
        &code,
        &body.recipient_x25519_pubkey,
        &member_key.to_hex(),
        timestamp,
    );
    let proven = crate::protocol::Signature::parse(signature)
        .is_ok_and(|sig| crypto::verify(&sig.0, signed.as_bytes(), &member_key.0));
    if !proven {
        return refuse(
            "bad_claim_signature",
            StatusCode::UNAUTHORIZED,
            "the claim is not signed by member_pubkey: only the holder of a member key can claim for it".into(),
        );
    }
    let claimed = broker
        .store
        .claim_invite(code, member_key, display_name, time::now_ms())
        .await;
    let ok = match claimed {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let message = match &e {
                ClaimError::NotFound => "no such invite",
                ClaimError::Revoked => "this invite (or this member) was revoked",
                ClaimError::Expired => "this invite has expired",
                ClaimError::Exhausted => "this invite has no uses left",
                ClaimError::BadSignature => {
                    "the invite's signature does not verify, or its signer is no longer the owner or an admin"
                }
                ClaimError::NameTaken => {
                    "a member of this mesh already has this display name, or one that looks the same (letters from another script, other case); choose another (the invite was not used)"
                }
                ClaimError::Banned(reason) => {
                    return refuse(e.code(), status, banned_message(reason));
                }
            };
            return refuse(e.code(), status, message.into());
        }
        Err(e) => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
        }
    };
    broker.metrics.claim("ok");
    // No root key in the answer: the joiner has it from the invite link's #fragment.
    json_response(
        StatusCode::OK,
        json!({
            "mesh_id": ok.mesh.id,
            "member_id": ok.member.id,
            "owner_pubkey": ok.mesh.owner_pubkey.to_hex(),
            "canonical_v3": ok.invite.canonical,
            "signature_v3": ok.invite.signature,
            "root_key_check": ok.mesh.root_key_check,
            "mesh_name": ok.mesh.name,
            "mesh_slug": ok.mesh.slug,
            "role": ok.member.role.as_str(),
            "display_name": ok.member.display_name,
        }),
    )
}

pub fn landing(broker: &Broker, req: &Request<Incoming>, code: &str) -> Response<Body> {
    let wants_json = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "format=json"))
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
    let found = if ids::is_invite_code(code) {
        broker.store.invite(code).ok().flatten().and_then(|inv| {
            let mesh = broker.store.mesh(&inv.mesh_id).ok().flatten()?;
            let inviter = broker
                .store
                .member(&mesh.id, &inv.created_by)
                .ok()
                .flatten()
                .map(|m| m.display_name)
                .unwrap_or_else(|| "unknown".into());
            Some((inv, mesh, inviter))
        })
    } else {
        None
    };
    let Some((inv, mesh, inviter)) = found else {
        return if wants_json {
            error_response(StatusCode::NOT_FOUND, "not_found", "no such invite")
        } else {
            respond(
                StatusCode::NOT_FOUND,
                "text/html; charset=utf-8",
                page("Invite not found", "<p>This invite link is not valid.</p>"),
            )
        };
    };
    let state = inv.status(time::now_ms());
    let url = format!("{}/i/{}", broker.public_url(), inv.code);
    if wants_json && state != "valid" {
        // A code nobody can join with says why and no more: whoever kept one (a removed or
        // banned member) must not watch the mesh's key rotations (`root_key_check`,
        // `key_epoch`) or read its owner and capability through it.
        return json_response(
            StatusCode::OK,
            json!({
                "found": true,
                "code": inv.code,
                "mesh_name": mesh.name,
                "inviter": inviter,
                "expires_at": inv.expires_at_s,
                "status": state,
            }),
        );
    }
    if wants_json {
        return json_response(
            StatusCode::OK,
            json!({
                "found": true,
                "code": inv.code,
                "mesh_id": mesh.id,
                "mesh_name": mesh.name,
                "mesh_slug": mesh.slug,
                "inviter": inviter,
                "role": inv.role.as_str(),
                "expires_at": inv.expires_at_s,
                "status": state,
                "uses_left": inv.max_uses.saturating_sub(inv.used),
                "broker_url": crate::identity::ws_url(&broker.public_url()),
                "owner_pubkey": mesh.owner_pubkey.to_hex(),
                "canonical_v3": inv.canonical,
                "signature_v3": inv.signature,
                "root_key_check": mesh.root_key_check,
                // The epoch of the key `root_key_check` is for: `join` takes a link's key only
                // under this epoch (PROTOCOL.md §12.4), so a link cannot name it as a later one.
                "key_epoch": broker.store.key_epoch(&mesh.id).unwrap_or(0),
            }),
        );
    }
    if state != "valid" {
        // Nothing to join with: why, and whom to ask (as `join` says), not the command.
        let why = match state {
            "revoked" => "was revoked",
            "expired" => "has expired",
            _ => "has been used up",
        };
        let body = format!(
            "<p>This invite from <b>{inviter}</b> to the mesh <b>{name}</b> {why}.</p>\
             <p>Ask {inviter} for a new one.</p>",
            inviter = html_escape(&inviter),
            name = html_escape(&mesh.name),
        );
        return respond(
            StatusCode::GONE,
            "text/html; charset=utf-8",
            page("This invite can no longer be used", &body),
        );
    }
    let body = format!(
        "<p><b>{inviter}</b> invites you to the mesh <b>{name}</b> as <b>{role}</b>.</p>\
         <p>Expires {expires} · status: {state}</p>\
         <p>To join, run (with the whole link you were given: its part after # carries the \
         mesh key, which never reaches this server):</p><pre>claudemesh join <span id=\"u\">{url}</span></pre>\
         <script>document.getElementById('u').textContent+=location.hash</script>",
        inviter = html_escape(&inviter),
        name = html_escape(&mesh.name),
        role = inv.role.as_str(),
        expires = time::iso(inv.expires_at_s.saturating_mul(1000)),
        url = html_escape(&url),
    );
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        page(&format!("Join {}", html_escape(&mesh.name)), &body),
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} · claudemesh</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}\
         pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    )
}
