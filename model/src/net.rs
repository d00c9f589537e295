//! Network addresses as settings name them.

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

    #[test]
    fn lists_of_host_and_port_only() {
        assert!(is_host_port_list("a:9042"));
        assert!(is_host_port_list("10.0.0.1:9092,b.example:19092"));
        for bad in ["", "a", "a:", ":9042", "a:99999", "a:9042,", "a:x"] {
            assert!(!is_host_port_list(bad), "{bad:?}");
        }
    }
}
