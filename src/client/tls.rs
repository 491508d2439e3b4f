//! The one way a client opens a socket to a broker (WebSocket, HTTP calls, file transfers,
//! hooks, bench): `wss://` / `https://` with TLS verified against the Mozilla roots shipped in
//! `webpki-roots` or, given a CA file, against that file only; `ws://` / `http://` to loopback
//! only, unless `CLAUDEMESH_INSECURE_PLAINTEXT=1` says the network is trusted. Off loopback, the
//! admin token, invite codes, file tokens and every frame would otherwise travel in clear.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::either::Either;

use super::ClientError;
use crate::net;

/// Names a PEM file of the certificate authority (or the self-signed certificate) to trust
/// instead of the public roots.
pub const CA_FILE_ENV: &str = "CLAUDEMESH_CA_FILE";
/// `1` lets clients speak plain `ws://` / `http://` to a host that is not loopback.
pub const INSECURE_PLAINTEXT_ENV: &str = "CLAUDEMESH_INSECURE_PLAINTEXT";

/// A connection to a broker: plain TCP (loopback) or TLS.
pub type BrokerStream = Either<TcpStream, TlsStream<TcpStream>>;

/// Which brokers a client accepts: the certificates, and whether plain text may leave loopback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trust {
    /// Trust only the certificates in this PEM file; `None`: the public (webpki) roots.
    pub ca_file: Option<PathBuf>,
    /// Plain `ws://` / `http://` to hosts that are not loopback (`CLAUDEMESH_INSECURE_PLAINTEXT`).
    pub insecure_plaintext: bool,
}

impl Trust {
    /// `--ca-file` when given, else `CLAUDEMESH_CA_FILE`, else what the mesh's config
    /// remembered from `create` / `join`.
    pub fn resolve(flag: Option<&Path>, remembered: Option<&Path>) -> Trust {
        let env = std::env::var_os(CA_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Trust {
            ca_file: flag
                .map(Path::to_path_buf)
                .or(env)
                .or_else(|| remembered.map(Path::to_path_buf)),
            insecure_plaintext: plaintext_allowed(),
        }
    }

    /// The CA file as an absolute path, to be remembered in a mesh's config.
    pub fn remembered(&self) -> Option<PathBuf> {
        self.ca_file
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
    }

    /// A rustls client config for these roots, speaking HTTP/1.1 (also for the WebSocket).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, ClientError> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                let unreadable = |e: &dyn std::fmt::Display| {
                    ClientError::Untrusted(format!(
                        "cannot read the CA file {} (--ca-file / {CA_FILE_ENV}): {e}",
                        path.display()
                    ))
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| unreadable(&e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| unreadable(&e))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(unreadable(&"it holds no usable PEM certificate"));
                }
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Connect(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Whether `CLAUDEMESH_INSECURE_PLAINTEXT` allows plain text off loopback.
pub fn plaintext_allowed() -> bool {
    std::env::var(INSECURE_PLAINTEXT_ENV)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// Where a URL points: whether it wants TLS, its host (no brackets) and port.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let bad = |why: &str| ClientError::Connect(format!("bad broker URL {url}: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("https" | "wss") => true,
            Some("http" | "ws") => false,
            _ => return Err(bad("it must start with https://, wss://, http:// or ws://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad("it has no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Endpoint { tls, host, port })
    }

    /// Refuses plain text to anything but loopback (unless `trust` allows it); a host name is
    /// judged by the addresses it resolves to, and only those are connected to.
    pub fn usable_addresses(
        &self,
        resolved: Vec<SocketAddr>,
        trust: &Trust,
    ) -> Result<Vec<SocketAddr>, ClientError> {
        if self.tls || trust.insecure_plaintext {
            return Ok(resolved);
        }
        let local: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|a| net::is_loopback(a.ip()))
            .collect();
        if local.is_empty() {
            return Err(ClientError::Untrusted(format!(
                "refusing plain text to {host}:{port}, which is not loopback: the admin token, invite codes, file tokens and every message's metadata would cross the network unencrypted. Use https:// or wss:// (a broker started with --tls-cert or --acme, or behind a TLS proxy), or set {INSECURE_PLAINTEXT_ENV}=1 if you trust this network",
                host = self.host,
                port = self.port,
            )));
        }
        Ok(local)
    }
}

/// Opens a connection for `url` (TLS for `https://` and `wss://`), within `timeout`.
pub async fn connect(
    url: &str,
    trust: &Trust,
    timeout: Duration,
) -> Result<BrokerStream, ClientError> {
    let endpoint = Endpoint::parse(url)?;
    // Checked before any lookup of a name that is plainly not loopback.
    if let Ok(ip) = endpoint.host.parse() {
        endpoint.usable_addresses(vec![SocketAddr::new(ip, endpoint.port)], trust)?;
    }
    let config = if endpoint.tls {
        Some(trust.client_config()?)
    } else {
        None
    };
    let attempt = async {
        let resolved: Vec<SocketAddr> =
            tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|e| {
                    ClientError::Connect(format!("cannot resolve {}: {e}", endpoint.host))
                })?
                .collect();
        let mut last = None;
        for addr in endpoint.usable_addresses(resolved, trust)? {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return match &config {
                        None => Ok(Either::Left(tcp)),
                        Some(config) => handshake(&endpoint, trust, config.clone(), tcp)
                            .await
                            .map(Either::Right),
                    };
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ClientError::Connect(match last {
            Some(e) => format!("cannot reach {url}: {e}"),
            None => format!("cannot reach {url}: {} has no address", endpoint.host),
        }))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ClientError::Connect(format!("timed out connecting to {url}")))?
}

async fn handshake(
    endpoint: &Endpoint,
    trust: &Trust,
    config: Arc<ClientConfig>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| {
        ClientError::Untrusted(format!(
            "{} is not a name TLS can check: {e}",
            endpoint.host
        ))
    })?;
    TlsConnector::from(config).connect(name, tcp).await.map_err(|e| {
        let hint = match &trust.ca_file {
            // `openssl req -x509` makes CA certificates unless told otherwise.
            _ if e.to_string().contains("CaUsedAsEndEntity") => {
                "; the broker serves a CA certificate as its own: make the self-signed certificate with basicConstraints CA:FALSE (openssl req -x509 ... -addext basicConstraints=critical,CA:FALSE), or sign it with a CA".to_string()
            }
            None => format!(
                "; if the broker has a self-signed certificate or one from a private CA, pass --ca-file with that certificate (or set {CA_FILE_ENV})"
            ),
            Some(path) => format!("; the broker's certificate must be issued for {} by the CA in {}", endpoint.host, path.display()),
        };
        ClientError::Untrusted(format!(
            "TLS with {}:{} failed: {e}{hint}",
            endpoint.host, endpoint.port
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_say_tls_host_and_port() {
        let e = Endpoint::parse("wss://broker.example/ws").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "broker.example", 443)
        );
        let e = Endpoint::parse("http://[::1]:7900/i/x").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port), (false, "::1", 7900));
        assert!(Endpoint::parse("ftp://h/").is_err());
    }

    #[test]
    fn plain_text_stays_on_loopback() {
        let strict = Trust::default();
        let plain = Endpoint::parse("ws://h:1/ws").unwrap();
        let outside: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let err = plain
            .usable_addresses(vec![outside], &strict)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not loopback") && err.contains(INSECURE_PLAINTEXT_ENV),
            "{err}"
        );
        // A name that resolves to both is only ever reached on loopback.
        assert_eq!(
            plain
                .usable_addresses(vec![outside, local], &strict)
                .unwrap(),
            vec![local]
        );
        let tls = Endpoint::parse("wss://h:1/ws").unwrap();
        assert_eq!(
            tls.usable_addresses(vec![outside], &strict).unwrap(),
            vec![outside]
        );
        let allowed = Trust {
            insecure_plaintext: true,
            ..Trust::default()
        };
        assert_eq!(
            plain.usable_addresses(vec![outside], &allowed).unwrap(),
            vec![outside]
        );
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = Trust {
            ca_file: Some(empty),
            ..Trust::default()
        }
        .client_config()
        .unwrap_err()
        .to_string();
        assert!(err.contains("no usable PEM certificate"), "{err}");
        let missing = Trust {
            ca_file: Some(dir.path().join("missing.pem")),
            ..Trust::default()
        };
        assert!(
            missing
                .client_config()
                .unwrap_err()
                .to_string()
                .contains("cannot read the CA file")
        );
        assert!(Trust::default().client_config().is_ok());
    }
}
