//! TLS on the broker's one port (rustls, no OpenSSL): a certificate from PEM files
//! (`--tls-cert`, `--tls-key`), read again when the files change, or one obtained and renewed
//! over ACME (`--acme`) by rustls-acme, which answers the TLS-ALPN-01 challenge on this same
//! port, keeps the account and certificate in `<data>/acme/` and renews a certificate when
//! two thirds of its lifetime have passed, without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeConfig, AcmeState, is_tls_alpn_challenge};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, crypto::aws_lc_rs};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often certificate files are checked for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// Where the broker's certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsSource {
    /// PEM files: the chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// Obtained over ACME for these names.
    Acme {
        domains: Vec<String>,
        email: Option<String>,
        /// The ACME directory URL (default: Let's Encrypt).
        directory: String,
        /// The CA the directory's own HTTPS certificate is checked against (a test CA such as
        /// pebble's); `None`: the public roots.
        directory_ca: Option<PathBuf>,
    },
}

impl TlsSource {
    /// The name links should carry, when the certificate names one.
    pub fn domain(&self) -> Option<&str> {
        match self {
            TlsSource::Acme { domains, .. } => domains.first().map(String::as_str),
            TlsSource::Files { .. } => None,
        }
    }
}

type Acme = AcmeState<std::io::Error, std::io::Error>;

/// The broker's TLS side, ready to accept.
pub struct Tls {
    config: Arc<ServerConfig>,
    /// For TLS-ALPN-01 challenge handshakes (ACME only).
    challenge: Option<Arc<ServerConfig>>,
    /// Keeps the certificate current: ACME orders and renewals, or file reloads.
    keeper: Keeper,
}

enum Keeper {
    Files(Arc<FileCert>),
    Acme(Box<Acme>),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Tls {
    /// What [`Tls::load`] reads, read and checked without setting anything up: the
    /// certificate and its key, or the CA file of the ACME directory.
    pub fn check(source: &TlsSource) -> Result<(), String> {
        match source {
            TlsSource::Files { cert, key } => read_certified_key(cert, key).map(drop),
            TlsSource::Acme { directory_ca, .. } => acme_trust(directory_ca).map(drop),
        }
    }

    /// Reads the certificate files, or sets up ACME with its cache under `data_dir/acme`.
    pub fn load(source: &TlsSource, data_dir: &Path) -> Result<Tls, String> {
        match source {
            TlsSource::Files { cert, key } => {
                let files = Arc::new(FileCert::load(cert, key)?);
                Ok(Tls {
                    config: Arc::new(server_config(files.clone())?),
                    challenge: None,
                    keeper: Keeper::Files(files),
                })
            }
            TlsSource::Acme {
                domains,
                email,
                directory,
                directory_ca,
            } => {
                let cache = data_dir.join("acme");
                crate::identity::create_private_dir(&cache)
                    .map_err(|e| format!("ACME cache {}: {e}", cache.display()))?;
                let client = acme_trust(directory_ca)?;
                let mut acme = AcmeConfig::new_with_client_config(domains, client)
                    .directory(directory)
                    .cache(DirCache::new(cache));
                if let Some(email) = email {
                    acme = acme.contact_push(format!("mailto:{email}"));
                }
                let state = acme.state();
                let mut config = server_config(state.resolver())?;
                config
                    .alpn_protocols
                    .push(rustls_acme::acme::ACME_TLS_ALPN_NAME.to_vec());
                Ok(Tls {
                    config: Arc::new(config),
                    challenge: Some(state.challenge_rustls_config_with_provider(provider())),
                    keeper: Keeper::Acme(Box::new(state)),
                })
            }
        }
    }

    /// The acceptor for connections, and the task that keeps the certificate current until
    /// `shutdown`.
    pub fn start(self, shutdown: CancellationToken) -> (TlsAcceptor, impl Future<Output = ()>) {
        let acceptor = TlsAcceptor {
            config: self.config,
            challenge: self.challenge,
        };
        let keeper = async move {
            match self.keeper {
                Keeper::Files(files) => loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RELOAD_EVERY) => files.reload_if_changed(),
                    }
                },
                Keeper::Acme(mut state) => loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        event = state.next() => match event {
                            Some(Ok(ok)) => tracing::info!("ACME: {ok:?}"),
                            Some(Err(err)) => {
                                let err = err.to_string();
                                tracing::warn!("ACME: {err}{}", acme_hint(&err));
                            }
                            None => return,
                        },
                    }
                },
            }
        };
        (acceptor, keeper)
    }
}

/// The TLS client ACME talks to its directory with: the public roots, or `--acme-ca-file`.
fn acme_trust(
    directory_ca: &Option<PathBuf>,
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    let trust = crate::client::tls::Trust {
        ca_file: directory_ca.clone(),
        insecure_plaintext: false,
    };
    trust.client_config().map_err(|e| e.to_string())
}

/// What to do about an ACME error, when the error says: an ACME directory whose HTTPS
/// certificate chains to no root we trust is a private or test CA, told with `--acme-ca-file`.
fn acme_hint(err: &str) -> &'static str {
    if err.contains("UnknownIssuer") || err.contains("InvalidCertificate") {
        " (the ACME directory's HTTPS certificate is not signed by a CA this broker trusts: for a private or test ACME server such as pebble, give its CA with --acme-ca-file PEM)"
    } else {
        ""
    }
}

/// Accepts TLS connections; cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    challenge: Option<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// The handshake, within a time limit. `Ok(None)`: an ACME validation handshake, which is
    /// answered by the handshake itself and then closed.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Option<TlsStream<TcpStream>>> {
        let handshake = async {
            let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
            if let Some(challenge) = &self.challenge
                && is_tls_alpn_challenge(&start.client_hello())
            {
                tracing::info!("ACME: answering a TLS-ALPN-01 validation");
                let mut tls = start.into_stream(challenge.clone()).await?;
                let _ = tls.shutdown().await;
                return Ok(None);
            }
            start.into_stream(self.config.clone()).await.map(Some)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })?
    }
}

/// A certificate from PEM files, swapped for the new one when the files change (a renewal by
/// certbot or a proxy's tooling needs no restart).
#[derive(Debug)]
struct FileCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

impl FileCert {
    fn load(cert: &Path, key: &Path) -> Result<FileCert, String> {
        let loaded = read_certified_key(cert, key)?;
        Ok(FileCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((Arc::new(loaded), modified(cert, key))),
        })
    }

    fn reload_if_changed(&self) {
        let stamp = modified(&self.cert, &self.key);
        let unchanged = self.current.read().map(|c| c.1 == stamp).unwrap_or(true);
        if unchanged {
            return;
        }
        match read_certified_key(&self.cert, &self.key) {
            Ok(fresh) => {
                if let Ok(mut c) = self.current.write() {
                    *c = (Arc::new(fresh), stamp);
                }
                tracing::info!("TLS certificate reloaded from {}", self.cert.display());
            }
            // Half-written during a renewal, say: keep serving the old one, try again later.
            Err(e) => tracing::warn!("TLS certificate not reloaded: {e}"),
        }
    }
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}

/// The later of the two files' modification times.
fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    m(cert).max(m(key))
}

/// Reads a PEM chain and its key and checks that they belong together. Errors name the file,
/// never its contents.
fn read_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--tls-key {}: no usable PEM private key ({e})",
            key.display()
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "--tls-key {} does not belong to the certificate in --tls-cert {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}
