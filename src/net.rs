//! Addresses: what counts as loopback (plain text may stay there, nowhere else), and which
//! address a broker listening on a wildcard (`0.0.0.0`, `[::]`) is reached at by others.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// 127.0.0.0/8, `::1`, and `::ffff:127.x.y.z`: traffic to these never leaves the machine.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `localhost` and names under `.localhost` (RFC 6761), which resolve to loopback.
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The address of this machine that traffic to the outside leaves from, for links of a
/// broker that listens on a wildcard address: the address of the interface holding the
/// default route (IPv4 first, then IPv6). Asking the kernel to route a UDP socket sends no
/// packet. `None` on a machine with no route out (links would then be unusable).
pub fn reachable_address() -> Option<IpAddr> {
    // Documentation addresses (RFC 5737, RFC 3849): only their route is looked up.
    let probes: [(IpAddr, IpAddr); 2] = [
        (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        ),
        (
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ),
    ];
    probes.into_iter().find_map(|(any, probe)| {
        let socket = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
        socket.connect(SocketAddr::new(probe, 9)).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !is_loopback(ip)).then_some(ip)
    })
}

/// `host:port` for a URL (IPv6 in brackets).
pub fn url_authority(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_127_8_and_v6_one_and_mapped() {
        for loopback in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(loopback.parse().unwrap()), "{loopback}");
        }
        for outside in [
            "0.0.0.0",
            "::",
            "10.0.0.1",
            "192.0.2.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_loopback(outside.parse().unwrap()), "{outside}");
        }
        assert!(is_localhost_name("localhost") && is_localhost_name("Api.LOCALHOST."));
        assert!(!is_localhost_name("localhost.example") && !is_localhost_name("mylocalhost"));
    }

    #[test]
    fn a_reachable_address_is_never_a_wildcard_or_loopback() {
        if let Some(ip) = reachable_address() {
            assert!(!ip.is_unspecified() && !is_loopback(ip), "{ip}");
        }
        assert_eq!(url_authority("::1".parse().unwrap(), 7), "[::1]:7");
    }
}
