//! The way out for a service whose `network_allow` names hosts. The service keeps its own
//! network namespace (loopback only); this HTTP proxy runs in the broker, on a Unix socket
//! that is bind-mounted read-only into the sandbox, where `claudemesh service-net` relays the
//! service's loopback port to it. It takes `CONNECT host:port` (any TLS or other stream) and
//! plain `GET http://host/…`, lets through only hosts on the [`AllowList`], resolves names
//! itself (the sandbox has no DNS), and answers anything else with an HTTP error and a
//! one-line reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::hosts::AllowList;

/// The socket's file name in the proxy's directory.
const SOCKET: &str = "proxy.sock";
/// The longest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// Connections one service may have open through its proxy.
pub const MAX_CONNECTIONS: usize = 64;
/// Resolving a name and connecting to one of its addresses, in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers about the hop to the proxy, never forwarded (a plain request is sent with
/// `Connection: close`, so that later requests on the connection cannot go elsewhere).
const HOP_HEADERS: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
];

/// Writes a line to the service's log.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// A running proxy; it stops (and its socket goes) when dropped.
pub struct Proxy {
    socket: PathBuf,
    stop: CancellationToken,
}

impl Proxy {
    /// Serves `allow` on `<dir>/proxy.sock`, `dir` made private to the broker's user.
    pub fn start(dir: &Path, allow: Arc<AllowList>, log: Log) -> Result<Proxy, String> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::PermissionsExt;
        let failed =
            |e: std::io::Error| format!("cannot start the network proxy in {}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(failed)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
        let socket = dir.join(SOCKET);
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
            _ => {}
        }
        // Bound through the directory's descriptor: the full path may be longer than the 108
        // bytes a socket address holds.
        let handle = std::fs::File::open(dir).map_err(failed)?;
        let short = format!("/proc/self/fd/{}/{SOCKET}", handle.as_raw_fd());
        let std_listener = std::os::unix::net::UnixListener::bind(short).map_err(failed)?;
        std_listener.set_nonblocking(true).map_err(failed)?;
        let listener = UnixListener::from_std(std_listener).map_err(failed)?;
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, allow, log, stop.clone()));
        Ok(Proxy { socket, stop })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn accept(listener: UnixListener, allow: Arc<AllowList>, log: Log, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let mut client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    log(&format!("[claudemesh] network proxy: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let busy = Refusal::new(
                503,
                format!("more than {MAX_CONNECTIONS} connections at once"),
            );
            tokio::spawn(async move { busy.send(&mut client).await });
            continue;
        };
        let (allow, log, stop) = (allow.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = relay(client, &allow, &log) => {}
                _ = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
}

/// An answer the proxy gives itself.
struct Refusal {
    status: u16,
    reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    async fn send(&self, client: &mut UnixStream) {
        let title = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            431 => "Request Header Fields Too Large",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Gateway Timeout",
        };
        let body = format!("claudemesh: {}\n", self.reason);
        let answer = format!(
            "HTTP/1.1 {} {title}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        );
        let _ = client.write_all(answer.as_bytes()).await;
        let _ = client.shutdown().await;
    }
}

/// A request head, read and parsed.
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes the client sent after the head (the start of a body, or of the TLS handshake).
    rest: Vec<u8>,
}

async fn read_head(client: &mut UnixStream) -> Result<Head, Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|e| Refusal::new(400, format!("cannot read the request: {e}")))?;
        if n == 0 {
            return Err(Refusal::new(400, "the request ended before its head did"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head {
                    method: req.method.unwrap_or_default().to_string(),
                    target: req.path.unwrap_or_default().to_string(),
                    minor_version: req.version.unwrap_or(1),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    rest: buf[len..].to_vec(),
                };
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal::new(
                    431,
                    format!("the request head is over {MAX_HEAD} bytes or {MAX_HEADERS} headers"),
                ));
            }
            Err(e) => return Err(Refusal::new(400, format!("not an HTTP request: {e}"))),
        }
    }
}

/// `host[:port]` or `[v6][:port]`; `default` when the port is left out (`None`: required).
fn authority(text: &str, default: Option<u16>) -> Result<(String, u16), Refusal> {
    let bad = || {
        Refusal::new(
            400,
            format!(
                "cannot read host and port from \"{}\"",
                text.chars().take(300).collect::<String>()
            ),
        )
    };
    if text.contains('@') {
        return Err(Refusal::new(
            400,
            "credentials in the URL are not passed on",
        ));
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':'))
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        None => default.ok_or_else(bad)?,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// What the client asked for: where to connect, and for a plain request the path to send.
fn destination(head: &Head) -> Result<(String, u16, Option<String>), Refusal> {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = authority(&head.target, None)?;
        return Ok((host, port, None));
    }
    let target = &head.target;
    let scheme_end = "http://".len();
    if target.len() < scheme_end || !target[..scheme_end].eq_ignore_ascii_case("http://") {
        return Err(Refusal::new(
            400,
            "this proxy takes CONNECT host:port and plain http:// URLs (https goes through CONNECT)",
        ));
    }
    let rest = &target[scheme_end..];
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, port) = authority(&rest[..split], Some(80))?;
    let path = match &rest[split..] {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    Ok((host, port, Some(path)))
}

/// Resolves `host` (no DNS inside the sandbox: here) and connects to the first address that
/// answers. A name never leads to the broker host's own loopback (a name's DNS may say
/// anything): that takes `127.0.0.1` or `::1` listed as such.
async fn connect(host: &str, port: u16, allow: &AllowList) -> Result<TcpStream, Refusal> {
    let unreachable =
        |e: std::io::Error| Refusal::new(502, format!("cannot reach {host}:{port}: {e}"));
    let attempt = async {
        let mut last = std::io::Error::other("no address");
        for addr in tokio::net::lookup_host((host, port))
            .await
            .map_err(unreachable)?
        {
            // 0.0.0.0 reaches this host too; ::ffff:127.0.0.1 is 127.0.0.1.
            let ip = addr.ip().to_canonical();
            if (ip.is_loopback() || ip.is_unspecified()) && !allow.allows(&ip.to_string(), port) {
                last = std::io::Error::other(format!(
                    "it resolves to {ip} (this host itself), which network_allow does not list"
                ));
                continue;
            }
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(unreachable(last))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Refusal::new(
                504,
                format!(
                    "{host}:{port} did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            ))
        })
}

/// Serves one client connection: checks, connects, then copies both ways until either ends.
async fn relay(mut client: UnixStream, allow: &AllowList, log: &Log) {
    let opened = async {
        let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client))
            .await
            .unwrap_or_else(|_| Err(Refusal::new(400, "no request head within 30 s")))?;
        let (host, port, path) = destination(&head)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !allow.allows(&host, port) {
            return Err(Refusal::new(
                403,
                format!("{host}:{port} is not in this service's network_allow"),
            ));
        }
        let mut upstream = connect(&host, port, allow).await?;
        let first = match path {
            None => {
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .map_err(|e| Refusal::new(502, e.to_string()))?;
                head.rest
            }
            Some(path) => {
                let mut out = format!("{} {path} HTTP/1.{}\r\n", head.method, head.minor_version)
                    .into_bytes();
                for (name, value) in &head.headers {
                    if !HOP_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                        out.extend_from_slice(name.as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(value);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                out.extend_from_slice(b"Connection: close\r\n\r\n");
                out.extend_from_slice(&head.rest);
                out
            }
        };
        upstream
            .write_all(&first)
            .await
            .map_err(|e| Refusal::new(502, format!("{host}:{port}: {e}")))?;
        Ok(upstream)
    };
    match opened.await {
        Ok(mut upstream) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(refusal) => {
            log(&format!(
                "[claudemesh] network: {} {}",
                refusal.status, refusal.reason
            ));
            refusal.send(&mut client).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str) -> Head {
        Head {
            method: method.into(),
            target: target.into(),
            minor_version: 1,
            headers: Vec::new(),
            rest: Vec::new(),
        }
    }

    #[test]
    fn destinations_are_read_from_connect_and_absolute_urls() {
        let d = |m, t| destination(&head(m, t)).map_err(|r| r.status);
        assert_eq!(
            d("CONNECT", "api.example.com:443").unwrap(),
            ("api.example.com".into(), 443, None)
        );
        assert_eq!(
            d("CONNECT", "[::1]:8443").unwrap(),
            ("::1".into(), 8443, None)
        );
        assert_eq!(
            d("CONNECT", "api.example.com").unwrap_err(),
            400,
            "CONNECT needs a port"
        );
        assert_eq!(
            d("GET", "http://127.0.0.1:8080/a?b=c").unwrap(),
            ("127.0.0.1".into(), 8080, Some("/a?b=c".into()))
        );
        assert_eq!(
            d("GET", "HTTP://Example.com").unwrap(),
            ("Example.com".into(), 80, Some("/".into()))
        );
        assert_eq!(d("GET", "http://h?x").unwrap().2, Some("/?x".into()));
        assert_eq!(d("GET", "/relative").unwrap_err(), 400);
        assert_eq!(d("GET", "https://example.com/").unwrap_err(), 400);
        assert_eq!(d("GET", "http://user:pw@example.com/").unwrap_err(), 400);
        assert_eq!(d("GET", "http://example.com:0/").unwrap_err(), 400);
    }
}
