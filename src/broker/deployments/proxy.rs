//! The way out for a service whose `network_allow` names hosts. The service keeps its own
//! network namespace (loopback only); this HTTP proxy runs in the broker, on a Unix socket
//! that is bind-mounted read-only into the sandbox, where `claudemesh service-net` relays the
//! service's loopback port to it. It takes `CONNECT host:port` (any TLS or other stream) and
//! plain `GET http://host/…`, lets through only hosts on the [`AllowList`], resolves names
//! itself (the sandbox has no DNS), and answers anything else with an HTTP error and a
//! one-line reason.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::hosts::{AllowList, valid_name};
use super::tunnel::tunnel;

/// The socket's file name in the proxy's directory.
const SOCKET: &str = "proxy.sock";
/// The longest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// Connections one service may have open through its proxy.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections open through all the broker's proxies (two descriptors each).
const MAX_OPEN: usize = 1024;
/// Name lookups at once across the broker. Each blocks a thread of tokio's blocking pool (which
/// the store uses too) until getaddrinfo returns, however long its name servers take.
const MAX_LOOKUPS: usize = 16;
/// A tunnel with no bytes either way for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
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

/// What all the broker's proxies share.
struct Shared {
    open: Arc<Semaphore>,
    lookups: Arc<Semaphore>,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    open: Arc::new(Semaphore::new(MAX_OPEN)),
    lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
});

/// A running proxy; it stops (and its socket goes) when dropped.
pub struct Proxy {
    socket: PathBuf,
    /// The socket's (device, inode): a proxy started later at the same path replaced it.
    bound: (u64, u64),
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
        let bound = file_id(&socket).map_err(failed)?;
        let listener = UnixListener::from_std(std_listener).map_err(failed)?;
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, allow, log, stop.clone()));
        Ok(Proxy {
            socket,
            bound,
            stop,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if file_id(&self.socket).is_ok_and(|id| id == self.bound) {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

/// A place among the broker's open connections and among the service's; `Refusal` (503) when
/// either is full.
fn admit(
    open: &Arc<Semaphore>,
    slots: &Arc<Semaphore>,
) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), Refusal> {
    let Ok(broker) = open.clone().try_acquire_owned() else {
        return Err(Refusal::new(
            503,
            format!("the broker has {MAX_OPEN} proxy connections open"),
        ));
    };
    let Ok(service) = slots.clone().try_acquire_owned() else {
        return Err(Refusal::new(
            503,
            format!("more than {MAX_CONNECTIONS} connections at once"),
        ));
    };
    Ok((broker, service))
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
        let slot = match admit(&SHARED.open, &slots) {
            Ok(slot) => slot,
            Err(busy) => {
                tokio::spawn(async move { busy.send(&mut client).await });
                continue;
            }
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
#[derive(Debug)]
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
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes the client sent after the head (the start of a body, or of the TLS handshake).
    rest: Vec<u8>,
}

async fn read_head(client: &mut (impl AsyncRead + Unpin)) -> Result<Head, Refusal> {
    let too_large = || {
        Refusal::new(
            431,
            format!("the request head is over {MAX_HEAD} bytes or {MAX_HEADERS} headers"),
        )
    };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // Parsed once, when an empty line has arrived; only new bytes are searched for it.
    loop {
        let searched = buf.len().saturating_sub(2);
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|e| Refusal::new(400, format!("cannot read the request: {e}")))?;
        if n == 0 {
            return Err(Refusal::new(400, "the request ended before its head did"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let new = &buf[searched..];
        let ended = new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n");
        if !ended {
            if buf.len() >= MAX_HEAD {
                return Err(too_large());
            }
            continue;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        return match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => Ok(Head {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                minor_version: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect(),
                rest: buf[len..].to_vec(),
            }),
            Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
                Err(too_large())
            }
            // An empty line before the request line.
            Ok(httparse::Status::Partial) => Err(Refusal::new(
                400,
                "not an HTTP request: an empty line before the request",
            )),
            Err(e) => Err(Refusal::new(400, format!("not an HTTP request: {e}"))),
        };
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
            let (host, port) = match v6.split_once(']').ok_or_else(bad)? {
                (host, "") => (host, None),
                (host, after) => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            };
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (host, port)
        }
        // An IPv6 address goes in brackets.
        None => match text.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => return Err(bad()),
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

/// A plain request's target in origin form.
#[derive(Debug, PartialEq)]
struct Plain {
    /// `host[:port]` as the URL gave it: the `Host` header sent on.
    authority: String,
    path: String,
}

/// What the client asked for: where to connect (a host name or an address, without brackets),
/// and for a plain request where to send it.
fn destination(head: &Head) -> Result<(String, u16, Option<Plain>), Refusal> {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = authority(&head.target, None)?;
        return Ok((asked_host(&host)?, port, None));
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
    let plain = Plain {
        authority: rest[..split].to_string(),
        path,
    };
    Ok((asked_host(&host)?, port, Some(plain)))
}

/// The host of a request target when it is an IP address or a host name (nothing a resolver
/// might read otherwise, such as `a\.example.com`), brackets removed.
fn asked_host(host: &str) -> Result<String, Refusal> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(host.to_string());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    valid_name(name).map_err(|why| {
        Refusal::new(
            400,
            format!("\"{}\": {why}", host.chars().take(300).collect::<String>()),
        )
    })?;
    Ok(host.to_string())
}

/// The addresses of `host`: an address itself, else the name's, looked up on tokio's blocking
/// pool while holding one of `lookups` (503 when none frees up within `wait`). The permit goes
/// when getaddrinfo returns, not when the caller stops waiting. A name with a dot is looked up
/// as absolute (`name.`), so the resolver's search domains are never appended.
async fn resolve(
    host: &str,
    port: u16,
    lookups: &Arc<Semaphore>,
    wait: Duration,
) -> Result<Vec<SocketAddr>, Refusal> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let permit = tokio::time::timeout_at(deadline, lookups.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            Refusal::new(
                503,
                format!("the broker is looking up {MAX_LOOKUPS} names already; try again"),
            )
        })?;
    let name = match host.trim_end_matches('.') {
        one_label if !one_label.contains('.') => one_label.to_string(),
        dotted => format!("{dotted}."),
    };
    let lookup = tokio::task::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        let _permit = permit;
        (name.as_str(), port).to_socket_addrs().map(Vec::from_iter)
    });
    match tokio::time::timeout_at(deadline, lookup).await {
        Ok(Ok(Ok(addrs))) => Ok(addrs),
        Ok(Ok(Err(e))) => Err(Refusal::new(
            502,
            format!("cannot reach {host}:{port}: {e}"),
        )),
        Ok(Err(e)) => Err(Refusal::new(502, format!("cannot look up {host}: {e}"))),
        Err(_) => Err(Refusal::new(
            504,
            format!("{host} was not resolved within {} s", wait.as_secs()),
        )),
    }
}

/// What `ip` reaches on the broker host's side when it is the host itself or its link (cloud
/// metadata answers at 169.254.169.254): a name's DNS may say anything, so these take the
/// address listed as such.
fn host_only(ip: IpAddr) -> Option<&'static str> {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if ip.is_loopback() || ip.is_unspecified() {
        Some("this host itself")
    } else if link_local {
        Some("link-local: this host's link, cloud metadata")
    } else {
        None
    }
}

/// Resolves `host` (no DNS inside the sandbox: here) and connects to the first address that
/// answers. A name never leads to the broker host's own loopback or a link-local address:
/// that takes the address listed as such.
async fn connect(host: &str, port: u16, allow: &AllowList) -> Result<TcpStream, Refusal> {
    let unreachable =
        |e: std::io::Error| Refusal::new(502, format!("cannot reach {host}:{port}: {e}"));
    let started = Instant::now();
    let addrs = resolve(host, port, &SHARED.lookups, CONNECT_TIMEOUT).await?;
    let attempt = async {
        let mut last = std::io::Error::other("no address");
        for addr in addrs {
            // 0.0.0.0 reaches this host too; ::ffff:127.0.0.1 is 127.0.0.1.
            let ip = addr.ip().to_canonical();
            if let Some(what) = host_only(ip)
                && !allow.allows(&ip.to_string(), port)
            {
                last = std::io::Error::other(format!(
                    "it resolves to {ip} ({what}), which network_allow does not list"
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
    tokio::time::timeout(CONNECT_TIMEOUT.saturating_sub(started.elapsed()), attempt)
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

/// The head of a plain request as sent on: origin form, without the hop's headers, with
/// `Host` taken from the URL (RFC 9112 §3.2.2) and `Connection: close`.
fn plain_head(head: &Head, plain: &Plain) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.{}\r\nHost: {}\r\n",
        head.method, plain.path, head.minor_version, plain.authority
    )
    .into_bytes();
    for (name, value) in &head.headers {
        if !HOP_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
            && !name.eq_ignore_ascii_case("host")
        {
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

/// Serves one client connection: checks, connects, then copies both ways until either ends
/// or neither sends anything for [`IDLE_TIMEOUT`].
async fn relay(mut client: UnixStream, allow: &AllowList, log: &Log) {
    let opened = async {
        let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client))
            .await
            .unwrap_or_else(|_| Err(Refusal::new(400, "no request head within 30 s")))?;
        let (host, port, plain) = destination(&head)?;
        if !allow.allows(&host, port) {
            return Err(Refusal::new(
                403,
                format!("{host}:{port} is not in this service's network_allow"),
            ));
        }
        let mut upstream = connect(&host, port, allow).await?;
        let first = match plain {
            None => {
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .map_err(|e| Refusal::new(502, e.to_string()))?;
                head.rest
            }
            Some(plain) => plain_head(&head, &plain),
        };
        upstream
            .write_all(&first)
            .await
            .map_err(|e| Refusal::new(502, format!("{host}:{port}: {e}")))?;
        Ok(upstream)
    };
    match opened.await {
        Ok(mut upstream) => tunnel(&mut client, &mut upstream, IDLE_TIMEOUT).await,
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
        let d = |m, t| {
            destination(&head(m, t))
                .map(|(h, p, plain)| (h, p, plain.map(|p| p.path)))
                .map_err(|r| r.status)
        };
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
        // After `[v6]`, only `:PORT` or nothing.
        assert_eq!(d("CONNECT", "[::1]x:443").unwrap_err(), 400);
        assert_eq!(d("GET", "http://[::1]junk/").unwrap_err(), 400);
        assert_eq!(d("GET", "http://[::1]/").unwrap().1, 80);
        // The Host header sent on is the URL's.
        assert_eq!(
            destination(&head("GET", "http://Example.com:8080/x"))
                .unwrap()
                .2,
            Some(Plain {
                authority: "Example.com:8080".into(),
                path: "/x".into()
            })
        );
    }

    #[test]
    fn an_asked_host_must_be_a_name_or_an_address() {
        let d = |m, t| destination(&head(m, t)).map_err(|r| r.status);
        for bad in [
            "a\\.example.com:443",
            "a%2e.example.com:443",
            "a_b.example.com:443",
            "1.2.3:443",
            "0xa.0x1:443",
            "fe80::1%eth0:443",
            "[1.2.3.4]:443",
            "::1:443",
        ] {
            assert_eq!(d("CONNECT", bad).unwrap_err(), 400, "{bad}");
        }
        assert_eq!(d("GET", "http://a\\.example.com/").unwrap_err(), 400);
        assert_eq!(
            d("CONNECT", "API.example.com.:443").unwrap().0,
            "API.example.com."
        );
        assert_eq!(d("CONNECT", "10.0.0.2:443").unwrap().0, "10.0.0.2");
    }

    #[test]
    fn a_plain_request_is_sent_with_the_urls_host() {
        let mut h = head("GET", "http://api.example.com/x");
        h.headers = vec![
            ("Host".into(), b"evil.example.net".to_vec()),
            ("Accept".into(), b"*/*".to_vec()),
            ("Proxy-Authorization".into(), b"secret".to_vec()),
        ];
        let (_, _, plain) = destination(&h).map_err(|r| r.status).unwrap();
        let sent = String::from_utf8(plain_head(&h, &plain.unwrap())).unwrap();
        assert_eq!(
            sent,
            "GET /x HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    /// Reads a head written in `pieces`.
    async fn head_from(pieces: &[&[u8]]) -> Result<Head, u16> {
        let (mut w, mut r) = tokio::io::duplex(64 * 1024);
        for p in pieces {
            w.write_all(p).await.unwrap();
        }
        drop(w);
        read_head(&mut r).await.map_err(|e| e.status)
    }

    #[tokio::test]
    async fn a_head_ends_at_its_empty_line_wherever_the_reads_split_it() {
        let h = head_from(&[
            b"CONNECT a.example.com:443 HTTP/1.1\r\nHost: a\r\n\r",
            b"\nTLS",
        ])
        .await
        .unwrap();
        assert_eq!(
            (h.target.as_str(), h.rest.as_slice()),
            ("a.example.com:443", &b"TLS"[..])
        );
        let h = head_from(&[b"GET http://a.example.com/ HTTP/1.0\n", b"\n"])
            .await
            .unwrap();
        assert_eq!(h.minor_version, 0);
        assert_eq!(
            head_from(&[b"GET / HTTP/1.1\r\nHost: a\r\n"])
                .await
                .unwrap_err(),
            400
        );
        assert_eq!(
            head_from(&[b"\r\n\r\nGET / HTTP/1.1"]).await.unwrap_err(),
            400
        );
        let long = vec![b'a'; MAX_HEAD];
        assert_eq!(head_from(&[b"GET /", &long]).await.unwrap_err(), 431);
        let many = "X: y\r\n".repeat(MAX_HEADERS + 1);
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(head_from(&[many.as_bytes()]).await.unwrap_err(), 431);
    }

    #[tokio::test]
    async fn lookups_wait_for_a_free_place_and_are_refused_503_without_one() {
        let lookups = Arc::new(Semaphore::new(1));
        let held = lookups.clone().acquire_owned().await.unwrap();
        let wait = Duration::from_millis(200);
        let refused = resolve("localhost", 80, &lookups, wait).await.unwrap_err();
        assert_eq!(refused.status, 503, "{}", refused.reason);
        // An address needs no lookup.
        assert_eq!(
            resolve("127.0.0.1", 80, &lookups, wait)
                .await
                .unwrap()
                .len(),
            1
        );
        drop(held);
        let found = resolve("localhost", 80, &lookups, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(found.iter().any(|a| a.ip().is_loopback()), "{found:?}");
        // The place is given back once the lookup is done.
        assert_eq!(lookups.available_permits(), 1);
    }

    #[test]
    fn the_broker_and_each_service_cap_open_connections() {
        let (open, slots) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(2)));
        let first = admit(&open, &slots).map_err(|r| r.status).unwrap();
        assert_eq!(admit(&open, &slots).map_err(|r| r.status).unwrap_err(), 503);
        drop(first);
        assert!(admit(&open, &slots).is_ok());
        assert_eq!(slots.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_proxy_removes_only_its_own_socket() {
        let dir = tempfile::tempdir().unwrap();
        let allow = Arc::new(AllowList::parse(&["127.0.0.1".to_string()]).unwrap());
        let log: Log = Arc::new(|_: &str| {});
        let old = Proxy::start(dir.path(), allow.clone(), log.clone()).unwrap();
        let new = Proxy::start(dir.path(), allow, log).unwrap();
        drop(old);
        assert!(
            new.socket().exists(),
            "the newer proxy's socket is still there"
        );
        drop(new);
        assert!(!dir.path().join(SOCKET).exists());
    }
    #[tokio::test]
    async fn the_host_and_its_link_take_their_address_listed_as_such() {
        // Something listens on loopback, so a refusal is the rule's, not a closed port's.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let named = AllowList::parse(&["*.example.com".to_string()]).unwrap();
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
        ] {
            let refused = connect(ip, port, &named).await.unwrap_err();
            assert_eq!(refused.status, 502, "{ip}: {}", refused.reason);
            assert!(
                refused.reason.contains("network_allow does not list"),
                "{}",
                refused.reason
            );
        }
        let listed = AllowList::parse(&["127.0.0.1".to_string()]).unwrap();
        assert!(connect("127.0.0.1", port, &listed).await.is_ok());
        assert_eq!(host_only("10.0.0.2".parse().unwrap()), None);
        assert_eq!(host_only("2001:4860::8888".parse().unwrap()), None);
    }
}
