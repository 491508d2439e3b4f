//! HTTP calls to the broker (mesh creation, invite landing and claim, hooks, metrics), over
//! TLS for `https://`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;

use super::ClientError;
use super::tls::{self, Trust};

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

/// How long connecting (and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens an HTTP/1 connection for `url` (TLS for `https://`, see [`super::tls`]); returns the
/// sender and the URL parsed.
pub async fn open<B>(
    url: &str,
    trust: &Trust,
) -> Result<(hyper::client::conn::http1::SendRequest<B>, Uri), ClientError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let uri: Uri = url
        .parse()
        .map_err(|e| ClientError::Connect(format!("bad URL {url}: {e}")))?;
    let stream = tls::connect(url, trust, CONNECT_TIMEOUT).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("HTTP connection: {e}");
        }
    });
    Ok((sender, uri))
}

/// A request for `uri` on a connection from [`open`]: the path as target, and `host`.
pub fn request_builder(uri: &Uri, method: &str) -> hyper::http::request::Builder {
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut b = Request::builder().method(method).uri(target);
    if let Some(a) = uri.authority() {
        b = b.header("host", a.as_str());
    }
    b
}

/// One HTTP request; `url` is `http(s)://host:port/path`; the roots and the plain-text rule
/// from the environment (see [`Trust::resolve`]).
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<HttpResponse, ClientError> {
    request_with(method, url, headers, body, &Trust::resolve(None, None)).await
}

/// One HTTP request, accepting the brokers `trust` accepts.
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
    trust: &Trust,
) -> Result<HttpResponse, ClientError> {
    let (mut sender, uri) = open::<Full<Bytes>>(url, trust).await?;
    // One request per connection: the broker closes it as soon as it has answered, so the
    // connection is gone (and no longer counted against this address) when we return.
    let mut builder = request_builder(&uri, method).header("connection", "close");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?;
    let resp = sender
        .send_request(req)
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
    let trust = Trust::resolve(None, None);
    claim_invite_with(base, code, x25519_public, display_name, member, &trust).await
}

/// [`claim_invite`], accepting the brokers `trust` accepts.
pub async fn claim_invite_with(
    base: &str,
    code: &str,
    x25519_public: &[u8; 32],
    display_name: &str,
    member: &crate::crypto::SignKeyPair,
    trust: &Trust,
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
    request_with(
        "POST",
        &format!("{base}/invites/{code}/claim"),
        &[],
        Some(body.to_string().into_bytes()),
        trust,
    )
    .await
}
