//! `claudemesh broker --lan`: the broker announces itself on the local network with mDNS /
//! DNS-SD (`_claudemesh._tcp`), so `claudemesh discover` and `create --broker lan:NAME` find it
//! without configuration. The advert carries the broker's URL and key fingerprint; it is a
//! hint, and anyone on the LAN could send one, so trust still comes from keys.

use std::net::SocketAddr;

use mdns_sd::{ServiceDaemon, ServiceInfo};

use crate::protocol::lan::{SERVICE_TYPE, TXT_FINGERPRINT, TXT_URL, TXT_VERSION};

/// A running advert; [`LanAdvert::stop`] says goodbye so browsers drop it at once.
pub struct LanAdvert {
    daemon: ServiceDaemon,
    fullname: String,
}

impl LanAdvert {
    /// Announces `name` at `listen`'s address (every interface's when it is 0.0.0.0 / [::]).
    pub fn start(
        name: &str,
        listen: SocketAddr,
        public_url: &str,
        fingerprint: &str,
    ) -> Result<LanAdvert, String> {
        if let Some(why) = loopback_refusal(listen) {
            return Err(why);
        }
        let mut properties = vec![
            (TXT_VERSION, "1".to_string()),
            (TXT_FINGERPRINT, fingerprint.to_string()),
        ];
        // A URL naming 0.0.0.0 would mislead; browsers then use the address the advert came from.
        if !names_unspecified_host(public_url) {
            properties.push((TXT_URL, public_url.to_string()));
        }
        let host = format!("{}-claudemesh.local.", dns_label(name));
        let ip = if listen.ip().is_unspecified() {
            String::new()
        } else {
            listen.ip().to_string()
        };
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            name,
            &host,
            ip,
            listen.port(),
            &properties[..],
        )
        .map_err(|e| format!("--lan: cannot describe the service: {e}"))?;
        if listen.ip().is_unspecified() {
            info = info.enable_addr_auto();
        }
        let fullname = info.get_fullname().to_string();
        let daemon = ServiceDaemon::new().map_err(|e| format!("--lan: cannot start mDNS: {e}"))?;
        daemon
            .register(info)
            .map_err(|e| format!("--lan: cannot announce the broker: {e}"))?;
        tracing::info!("announced on the LAN as \"{name}\" ({SERVICE_TYPE})");
        Ok(LanAdvert { daemon, fullname })
    }

    /// Withdraws the advert (an mDNS goodbye) and stops the responder.
    pub async fn stop(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), done.recv_async()).await;
        }
        let _ = self.daemon.shutdown();
    }
}

/// Why `--lan` cannot go with this listen address, if it cannot: a loopback address is
/// reachable from this machine only.
pub fn loopback_refusal(listen: SocketAddr) -> Option<String> {
    listen.ip().is_loopback().then(|| format!(
        "--lan tells other machines where this broker is, but it listens on {listen}, which only this machine can reach: add --listen 0.0.0.0:{} (or this machine's LAN address)",
        listen.port()
    ))
}

fn names_unspecified_host(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.starts_with("0.0.0.0") || rest.starts_with("[::]")
}

/// `name` as a DNS label: lowercase letters, digits and dashes.
fn dns_label(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(40)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "broker".into()
    } else {
        label.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_broker_is_not_announced() {
        let err = LanAdvert::start(
            "x",
            "127.0.0.1:7900".parse().unwrap(),
            "http://127.0.0.1:7900",
            "fp",
        )
        .err()
        .expect("refused");
        assert!(err.contains("--listen 0.0.0.0:7900"), "{err}");
    }

    #[test]
    fn host_labels_are_dns_safe() {
        assert_eq!(dns_label("Bob's Office.lan"), "bob-s-office-lan");
        assert_eq!(dns_label("..."), "broker");
        assert!(names_unspecified_host("http://0.0.0.0:7900"));
        assert!(names_unspecified_host("http://[::]:7900"));
        assert!(!names_unspecified_host("https://mesh.example.com"));
    }
}
