//! Network addresses as settings and services name them, and where a request came from.

use std::net::{IpAddr, SocketAddr};

/// The peer of the connection a request came on. The HTTP server puts it on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// A range of addresses: `192.0.2.0/24`, `2001:db8::/32`, or one address (`192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.parse::<ipnet::IpNet>() {
            Ok(net) => Some(Self(net)),
            Err(_) => text.parse::<IpAddr>().ok().map(|ip| Self(ip.into())),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:192.0.2.7`) as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer's, unless the peer is one of `trusted_proxies`; then the
/// nearest address in `X-Forwarded-For` (read right to left) that is not a trusted proxy
/// itself. An entry that is no address ends the walk at the last address trusted so far, so
/// a client cannot forge its way past the proxies by writing into the header.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[Cidr],
) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let mut client = canonical(peer);
    if !trusted(client) {
        return client;
    }
    let hops = forwarded_for.unwrap_or("").rsplit(',');
    for hop in hops {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !trusted(client) {
            break;
        }
    }
    client
}

/// Whether `text` is a comma-separated list of `host:port` (a cluster's contact points):
/// each with a host and a port that fits in 16 bits.
pub fn is_host_port_list(text: &str) -> bool {
    let host_port = |s: &str| {
        s.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    !text.is_empty() && text.split(',').all(host_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).expect(c)).collect()
    }

    #[test]
    fn ranges_and_single_addresses_parse_and_contain() {
        let net = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        let one = Cidr::parse("192.0.2.7").expect("one address");
        assert!(one.contains("192.0.2.7".parse().expect("ip")));
        assert!(!one.contains("192.0.2.8".parse().expect("ip")));
        assert!(Cidr::parse("2001:db8::/32").is_some());
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0",
            "x",
            "10.0.0.0/",
            "/8",
            "2001:db8::/129",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // Not through a trusted proxy: the header is the client's to forge, so ignored.
        assert_eq!(
            client_address(ip("203.0.113.9"), Some("198.51.100.1"), &proxies),
            ip("203.0.113.9")
        );
        // Through one proxy, and through two.
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("198.51.100.1"), &proxies),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("198.51.100.1, 10.0.0.3"), &proxies),
            ip("198.51.100.1")
        );
        // What the client wrote before its address is not believed.
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("192.0.2.1, 198.51.100.1"), &proxies),
            ip("198.51.100.1")
        );
        // A malformed entry stops the walk at the last trusted hop.
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("198.51.100.1, garbage"), &proxies),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), None, &proxies),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn lists_of_host_and_port_only() {
        assert!(is_host_port_list("a:9042"));
        assert!(is_host_port_list("10.0.0.1:9092,b.example:19092"));
        for bad in ["", "a", "a:", ":9042", "a:99999", "a:9042,", "a:x"] {
            assert!(!is_host_port_list(bad), "{bad:?}");
        }
    }
}
