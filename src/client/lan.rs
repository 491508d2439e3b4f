//! Finding brokers on the LAN: browses mDNS / DNS-SD for `_claudemesh._tcp` (what `claudemesh
//! broker --lan` announces). Used by `claudemesh discover` and by `create`/`join` given
//! `--broker lan:NAME`. What comes back is a hint: anyone on the LAN can announce a broker.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};
use serde::Serialize;

use crate::client::ClientError;
use crate::client::tls::Trust;
use crate::protocol::lan::{
    SERVICE_TYPE, TXT_FINGERPRINT, TXT_URL, fingerprint, instance_name, key_proof_message,
};

/// One broker announced on the LAN.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LanBroker {
    /// The instance name (`--lan-name`, by default the broker's host name).
    pub name: String,
    /// Where to reach it: its `--public-url`, else the first address it was seen at.
    pub url: String,
    /// `sha256:…` of the broker's key, as the broker prints it at start; `None` when the
    /// advert carries none.
    pub fingerprint: Option<String>,
    pub host: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum LanError {
    #[error("cannot browse the LAN with mDNS: {0}")]
    Mdns(String),
    #[error("the advert of \"{name}\" carries no key fingerprint, so nothing ties it to a broker")]
    NoFingerprint { name: String },
    #[error(
        "the broker at {url} did not prove it holds the key \"{name}\" is announced with ({why}): someone else may be answering for it"
    )]
    NotProven {
        name: String,
        url: String,
        why: String,
    },
    /// The proof could not be asked for: no answer, or an answer not trusted (TLS, plain text).
    #[error("cannot ask the broker at {url} to prove its key: {why}")]
    Unreachable { url: String, why: String },
}

/// Asks the broker at `broker.url` to sign a fresh challenge (`GET /broker-key`) and checks the
/// answer against the advertised fingerprint: whoever copies a fingerprint into an advert of
/// their own cannot pass. (It cannot tell whether that broker is the one a person meant: that
/// is the fingerprint's job, compared by a person.)
pub async fn prove_key(broker: &LanBroker, trust: &Trust) -> Result<(), LanError> {
    let Some(expected) = &broker.fingerprint else {
        return Err(LanError::NoFingerprint {
            name: broker.name.clone(),
        });
    };
    let not_proven = |why: String| LanError::NotProven {
        name: broker.name.clone(),
        url: broker.url.clone(),
        why,
    };
    let challenge = hex::encode(crate::crypto::random_bytes::<32>());
    let url = format!(
        "{}/broker-key?challenge={challenge}",
        broker.url.trim_end_matches('/')
    );
    let resp = crate::client::http::request_with("GET", &url, &[], None, trust)
        .await
        .map_err(|e| match e {
            ClientError::Connect(why) | ClientError::Untrusted(why) => LanError::Unreachable {
                url: broker.url.clone(),
                why,
            },
            e => not_proven(e.to_string()),
        })?;
    if !resp.is_success() {
        return Err(not_proven(format!(
            "GET /broker-key answered {}",
            resp.status
        )));
    }
    let v = resp.json();
    let bytes = |field: &str| hex::decode(v[field].as_str().unwrap_or_default()).ok();
    let public: Option<[u8; 32]> = bytes("publicKey").and_then(|b| b.try_into().ok());
    let signature: Option<[u8; 64]> = bytes("signature").and_then(|b| b.try_into().ok());
    let (Some(public), Some(signature)) = (public, signature) else {
        return Err(not_proven("its answer lacks publicKey or signature".into()));
    };
    if fingerprint(&public) != *expected {
        return Err(not_proven(format!("its key is {}", fingerprint(&public))));
    }
    if !crate::crypto::verify(
        &signature,
        key_proof_message(&challenge).as_bytes(),
        &public,
    ) {
        return Err(not_proven(
            "the signature over our challenge is wrong".into(),
        ));
    }
    Ok(())
}

/// Every broker that answers within `timeout`, sorted by name.
pub async fn browse(timeout: Duration) -> Result<Vec<LanBroker>, LanError> {
    browse_until(timeout, |_| false).await
}

/// Browses until a broker named `name` answers (returned at once) or `timeout` passes; then
/// everything seen, so the caller can name the brokers that did answer.
pub async fn find(name: &str, timeout: Duration) -> Result<Vec<LanBroker>, LanError> {
    browse_until(timeout, |b| b.name == name).await
}

async fn browse_until(
    timeout: Duration,
    done: impl Fn(&LanBroker) -> bool,
) -> Result<Vec<LanBroker>, LanError> {
    let daemon = ServiceDaemon::new().map_err(|e| LanError::Mdns(e.to_string()))?;
    let events = daemon
        .browse(SERVICE_TYPE)
        .map_err(|e| LanError::Mdns(e.to_string()))?;
    let mut seen = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv_async()).await {
        match event {
            ServiceEvent::ServiceResolved(service) => {
                let addresses: Vec<IpAddr> = {
                    let mut a: Vec<IpAddr> = service
                        .get_addresses()
                        .iter()
                        .map(|ip| ip.to_ip_addr())
                        .collect();
                    // IPv4 first: it works without an interface scope in a URL.
                    a.sort_by_key(|ip| (ip.is_ipv6(), *ip));
                    a
                };
                let Some(first) = addresses.first() else {
                    continue;
                };
                let url = service
                    .get_property_val_str(TXT_URL)
                    .map(str::to_string)
                    .unwrap_or_else(|| match first {
                        IpAddr::V4(ip) => format!("http://{ip}:{}", service.get_port()),
                        IpAddr::V6(ip) => format!("http://[{ip}]:{}", service.get_port()),
                    });
                let broker = LanBroker {
                    name: instance_name(service.get_fullname()),
                    url,
                    fingerprint: service
                        .get_property_val_str(TXT_FINGERPRINT)
                        .map(str::to_string),
                    host: service.get_hostname().to_string(),
                    port: service.get_port(),
                    addresses,
                };
                let found = done(&broker);
                seen.insert(service.get_fullname().to_string(), broker);
                if found {
                    break;
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                seen.remove(&fullname);
            }
            _ => {}
        }
    }
    let _ = daemon.shutdown();
    let mut brokers: Vec<LanBroker> = seen.into_values().collect();
    brokers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(brokers)
}
