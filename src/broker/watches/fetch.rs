//! One poll of a watched URL over our hyper + rustls stack: every address a name resolves to is
//! checked against the SSRF rule ([`super::ssrf`]) and the socket is opened to a checked
//! address only, so a DNS answer that changes between the check and the connect (rebinding)
//! cannot move the request. Each redirect target is checked the same way; redirects, time and
//! body size are capped.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::either::Either;

use super::ssrf;

/// Most redirects followed in one poll.
pub const MAX_REDIRECTS: usize = 5;
/// Most bytes of a body read; a larger one fails the poll.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Resolving, connecting and the TLS handshake, per address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole poll, redirects included.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers a watch may not set: the broker owns the connection and the host it names.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
];

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad URL {url}: {why}")]
    BadUrl { url: String, why: String },
    /// `what` names the address's kind only when the URL spelled the address itself: for a
    /// host name, what it resolves to stays unsaid, so watches cannot map internal DNS.
    #[error(
        "{what}; watches reach public addresses only (a broker started with --allow-private-watch-targets lifts this)"
    )]
    Forbidden { what: String },
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("cannot connect to {host}: {why}")]
    Connect { host: String, why: String },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the body is over {MAX_BODY_BYTES} bytes, the most a watch reads")]
    TooLarge,
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("no answer within {} s", TOTAL_TIMEOUT.as_secs())]
    Timeout,
}

/// What a poll got.
pub struct Fetched {
    pub status: u16,
    pub body: Bytes,
}

/// A URL whose every address passed the SSRF rule: connect to `addrs`, never to a new lookup.
pub struct Checked {
    uri: Uri,
    host: String,
    https: bool,
    addrs: Vec<SocketAddr>,
}

/// Parses `url` (http or https), resolves its host and checks every address.
pub async fn check(url: &str, allow_private: bool) -> Result<Checked, FetchError> {
    let bad = |why: &str| FetchError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("it must start with http:// or https://")),
    };
    let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "user names and passwords in the URL are not supported; send an Authorization header",
        ));
    }
    let host = authority.host().trim_matches(['[', ']']).to_string();
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let resolve = |why: String| FetchError::Resolve {
                host: host.clone(),
                why,
            };
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            .map_err(|_| resolve("timed out".into()))?
            .map_err(|e| resolve(e.to_string()))?
            .collect()
        }
    };
    if addrs.is_empty() {
        return Err(FetchError::Resolve {
            host,
            why: "no address".into(),
        });
    }
    if !allow_private {
        for a in &addrs {
            if let Some(why) = ssrf::refusal(a.ip()) {
                let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
                let what = if literal {
                    format!("{host} is a {why} address")
                } else {
                    format!("{host} resolves to an address that is not public")
                };
                return Err(FetchError::Forbidden { what });
            }
        }
    }
    Ok(Checked {
        uri,
        host,
        https,
        addrs,
    })
}

/// Checks the custom headers of a watch: valid names and values, none the broker sets itself.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    for (name, value) in headers {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("\"{name}\" is not a valid header name"))?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(format!("header \"{name}\" is set by the broker"));
        }
        HeaderValue::from_str(value)
            .map_err(|_| format!("header \"{name}\" has an invalid value"))?;
    }
    Ok(())
}

/// GETs `url` with `headers`, following at most [`MAX_REDIRECTS`] redirects (each target
/// checked again; the custom headers go to the first host only).
pub async fn get(
    url: &str,
    headers: &[(String, String)],
    allow_private: bool,
) -> Result<Fetched, FetchError> {
    tokio::time::timeout(TOTAL_TIMEOUT, follow(url, headers, allow_private))
        .await
        .map_err(|_| FetchError::Timeout)?
}

async fn follow(
    url: &str,
    headers: &[(String, String)],
    allow_private: bool,
) -> Result<Fetched, FetchError> {
    let mut target = check(url, allow_private).await?;
    // The watch's own headers (credentials) go only where the URL points: same scheme, host
    // and port, so a redirect cannot lead them elsewhere or down to plain http.
    let origin = |t: &Checked| (t.https, t.host.clone(), t.uri.port_u16());
    let first = origin(&target);
    for _ in 0..=MAX_REDIRECTS {
        let same_host = origin(&target) == first;
        let (status, location, body) =
            request(&target, if same_host { headers } else { &[] }, None).await?;
        match location {
            Some(next) if (300..400).contains(&status) => {
                let next = absolute(&target.uri, &next).ok_or_else(|| {
                    FetchError::Http(format!("redirect to an unusable location \"{next}\""))
                })?;
                target = check(&next, allow_private).await?;
            }
            _ => return Ok(Fetched { status, body }),
        }
    }
    Err(FetchError::TooManyRedirects)
}

/// A `Location` made absolute against the URL it came from.
fn absolute(base: &Uri, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_string());
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{scheme}://{authority}{dir}/{location}"))
}

fn tls_config() -> Result<Arc<ClientConfig>, FetchError> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    // The public (webpki) roots.
    let config = crate::client::tls::Trust::default()
        .client_config()
        .map_err(|e| FetchError::Http(e.to_string()))?;
    Ok(CONFIG.get_or_init(|| config).clone())
}

/// POSTs a JSON `body` to `url` (no redirects followed, no SSRF rule: for a URL the broker's
/// operator configured, such as the Telegram Bot API's), within `timeout`.
pub async fn post_json(url: &str, body: Vec<u8>, timeout: Duration) -> Result<Fetched, FetchError> {
    let posted = async {
        let target = check(url, true).await?;
        let json = [("content-type".to_string(), "application/json".to_string())];
        let (status, _, body) = request(&target, &json, Some(Bytes::from(body))).await?;
        Ok(Fetched { status, body })
    };
    tokio::time::timeout(timeout, posted)
        .await
        .map_err(|_| FetchError::Timeout)?
}

/// One request on a new connection to one of `target`'s checked addresses (a GET, or a POST of
/// `body`); the status, the `Location` header and the body (capped).
async fn request(
    target: &Checked,
    headers: &[(String, String)],
    body: Option<Bytes>,
) -> Result<(u16, Option<String>, Bytes), FetchError> {
    let connect = |why: String| FetchError::Connect {
        host: target.host.clone(),
        why,
    };
    let mut tcp = None;
    let mut last = String::from("no address");
    for addr in &target.addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    let tcp = tcp.ok_or_else(|| connect(last))?;
    let stream = if target.https {
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| connect(format!("not a name TLS can check: {e}")))?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TlsConnector::from(tls_config()?).connect(name, tcp),
        )
        .await
        .map_err(|_| connect("TLS handshake timed out".into()))?
        .map_err(|e| connect(format!("TLS: {e}")))?;
        Either::Right(tls)
    } else {
        Either::Left(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("watch connection: {e}");
        }
    });
    let path = target.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = target.uri.authority().map_or("", |a| a.as_str());
    let method = if body.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(
            header::USER_AGENT,
            concat!("claudemesh-watch/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::CONNECTION, "close");
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let req = builder
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(FetchError::TooLarge);
    }
    let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(
            |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => FetchError::TooLarge,
                None => FetchError::Http(e.to_string()),
            },
        )?
        .to_bytes();
    Ok((status, location, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_are_made_absolute() {
        let base: Uri = "http://example.com:8080/a/b?q=1".parse().unwrap();
        assert_eq!(
            absolute(&base, "/c").as_deref(),
            Some("http://example.com:8080/c")
        );
        assert_eq!(
            absolute(&base, "c").as_deref(),
            Some("http://example.com:8080/a/c")
        );
        assert_eq!(
            absolute(&base, "//other.org/x").as_deref(),
            Some("http://other.org/x")
        );
        assert_eq!(
            absolute(&base, "https://x.org/").as_deref(),
            Some("https://x.org/")
        );
    }

    #[tokio::test]
    async fn private_targets_are_refused_before_any_connection() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://localhost/",
        ] {
            let e = check(url, false).await.err().expect(url);
            assert!(matches!(e, FetchError::Forbidden { .. }), "{url}: {e}");
        }
        assert!(check("ftp://example.com/", false).await.is_err());
        assert!(check("http://user:pw@example.com/", false).await.is_err());
    }
}
