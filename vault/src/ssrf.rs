//! SSRF guard for upstream base URLs.
//!
//! A provider base URL may not point at loopback, private, link-local, unique-local or otherwise
//! internal addresses unless the operator allows it (`allow_private_upstreams`). The check runs
//! when a base URL is set and again on every resolved address, so DNS cannot smuggle one in.

use std::net::IpAddr;

/// True when `ip` is an internal address an upstream must not use by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 carrier-grade NAT
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
        }
    }
}

/// True when a URL host names an internal target without resolving it (`localhost`, literal IPs).
pub fn host_is_internal(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    h.parse::<IpAddr>().map(is_internal).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(s.parse().unwrap()), "{s}");
        }
        for s in ["8.8.8.8", "104.18.6.192", "2606:4700::1111"] {
            assert!(!is_internal(s.parse().unwrap()), "{s}");
        }
        assert!(host_is_internal("localhost"));
        assert!(host_is_internal("[::1]"));
        assert!(!host_is_internal("api.openai.com"));
    }
}
