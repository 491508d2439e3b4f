//! Plain HTTP calls to the broker (mesh creation, invite landing and claim).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::ClientError;

pub struct HttpResponse {
    pub status: u16,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The broker's `{error, message}` as a client error, for a non-2xx answer.
    pub fn into_error(self) -> ClientError {
        let v = self.json();
        let code = v["error"].as_str().unwrap_or("http_error").to_string();
        let message = v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect()
            });
        ClientError::Broker {
            code,
            message: format!("{message} (HTTP {})", self.status),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One HTTP request; `url` is `http://host:port/path`.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<HttpResponse, ClientError> {
    if url.starts_with("https://") {
        return Err(ClientError::Connect(format!(
            "{url}: https is not supported by this build yet; reach the broker over http:// (e.g. through an SSH tunnel)"
        )));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| ClientError::Connect(format!("cannot reach {url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?
        .to_bytes();
    Ok(HttpResponse { status, body })
}

/// `POST <base>/invites/<code>/claim` for a new member key (PROTOCOL.md §9), signed by that
/// key over the code, the x25519 key and the time. The answer carries no root key: the joiner
/// has it from the invite link.
pub async fn claim_invite(
    base: &str,
    code: &str,
    x25519_public: &[u8; 32],
    display_name: &str,
    member: &crate::crypto::SignKeyPair,
) -> Result<HttpResponse, ClientError> {
    use base64::Engine;
    let x25519 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x25519_public);
    let timestamp = crate::protocol::time::now_ms();
    let signed =
        crate::protocol::canonical::invite_claim(code, &x25519, &member.public_hex(), timestamp);
    let body = serde_json::json!({
        "recipient_x25519_pubkey": x25519,
        "display_name": display_name,
        "member_pubkey": member.public_hex(),
        "timestamp": timestamp,
        "signature": hex::encode(member.sign(signed.as_bytes())),
    });
    request(
        "POST",
        &format!("{base}/invites/{code}/claim"),
        &[],
        Some(body.to_string().into_bytes()),
    )
    .await
}
