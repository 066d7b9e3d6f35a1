//! Which address is the client? Only proxies we trust may tell us.
//!
//! If the direct peer is not a trusted proxy, its socket address is the answer and the
//! `Forwarded` / `X-Forwarded-For` headers are ignored entirely: anyone can write those headers, so
//! honouring them from an untrusted peer would let a client pick the address an IP lock sees.
//!
//! If the peer is trusted, we walk the forwarding chain from the right (the hop nearest to us),
//! skipping addresses that are themselves trusted proxies, and return the first untrusted one.
//!
//! Malformed entries, `unknown` and obfuscated identifiers (`_hidden`) stop the walk: nothing left
//! of them can be attributed to a proxy we trust. We then fall back to the **last trusted-verified
//! hop** — the most recent address we could vouch for (the peer itself, or the last trusted proxy
//! named in the chain). That is a proxy address, which an IP lock will normally not list, so a
//! broken chain fails closed for locked keys instead of trusting an arbitrary left-hand value.
//!
//! If every entry is trusted, the leftmost one is returned (the chain never left our proxies).
//! The walk stops after [`MAX_HOPS`] entries, with the same fallback.

use std::net::IpAddr;

use ipnet::IpNet;

use super::error::LockSpecError;
use super::ip::{canonical, in_any, parse_net};

/// Longest forwarding chain we walk; real chains have a handful of hops.
pub const MAX_HOPS: usize = 32;

/// Parses the operator's list of trusted proxy addresses/CIDR blocks.
///
/// ```
/// use latchkey_policy::locks::client_ip::parse_trusted;
/// let nets = parse_trusted(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
/// assert_eq!(nets.len(), 2);
/// assert!(parse_trusted(&["proxy.local".into()]).is_err());
/// ```
pub fn parse_trusted(entries: &[String]) -> Result<Vec<IpNet>, LockSpecError> {
    entries.iter().map(|e| parse_net(e)).collect()
}

/// Determines the client address for lock checks.
///
/// `peer` is the socket peer. `xff` is the `X-Forwarded-For` value and `forwarded` the RFC 7239
/// `Forwarded` value; when a header appears on several lines, pass them joined with `", "` in
/// order. If `Forwarded` is present (non-blank) it is used and `X-Forwarded-For` is ignored, so a
/// client cannot pick whichever header suits it. The result is canonical (IPv4-mapped IPv6
/// becomes IPv4). See the module docs for the walk and its fallback.
///
/// ```
/// use latchkey_policy::locks::client_ip::{client_ip, parse_trusted};
/// let trusted = parse_trusted(&["10.0.0.0/8".into()]).unwrap();
/// let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
/// // Untrusted peer: headers are ignored.
/// assert_eq!(client_ip(ip("198.51.100.9"), Some("1.2.3.4"), None, &trusted), ip("198.51.100.9"));
/// // Trusted proxy chain: the first untrusted hop from the right.
/// let xff = "203.0.113.5, 10.0.0.2";
/// assert_eq!(client_ip(ip("10.0.0.1"), Some(xff), None, &trusted), ip("203.0.113.5"));
/// let fwd = r#"for="[2001:db8::1]:4711", for=10.0.0.2"#;
/// assert_eq!(client_ip(ip("10.0.0.1"), None, Some(fwd), &trusted), ip("2001:db8::1"));
/// ```
pub fn client_ip(
    peer: IpAddr,
    xff: Option<&str>,
    forwarded: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !in_any(trusted, peer) {
        return peer;
    }
    let forwarded = forwarded.filter(|f| !f.trim().is_empty());
    let xff = xff.filter(|x| !x.trim().is_empty());
    match (forwarded, xff) {
        (Some(f), _) => walk(
            peer,
            split_outside_quotes(f, ',').map(forwarded_for),
            trusted,
        ),
        (None, Some(x)) => walk(peer, x.split(',').map(|e| parse_node(e.trim())), trusted),
        (None, None) => peer,
    }
}

/// Walks hops right to left. `hops` yields, left to right, `Some(addr)` for a usable entry and
/// `None` for one that stops the walk.
fn walk<I>(peer: IpAddr, hops: I, trusted: &[IpNet]) -> IpAddr
where
    I: DoubleEndedIterator<Item = Option<IpAddr>>,
{
    let mut last_verified = peer;
    for hop in hops.rev().take(MAX_HOPS) {
        let Some(addr) = hop else {
            return last_verified;
        };
        let addr = canonical(addr);
        if !in_any(trusted, addr) {
            return addr;
        }
        last_verified = addr;
    }
    last_verified
}

/// Extracts the `for=` node of one `Forwarded` element (`for=…;proto=…;by=…`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_outside_quotes(element, ';') {
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // Two `for=` in one element: ambiguous, refuse to guess.
            }
            found = Some(unquote(value.trim())?);
        }
    }
    parse_node(&found?)
}

/// Splits on `sep` where it is not inside a double-quoted string (quotes may escape with `\`).
fn split_outside_quotes(s: &str, sep: char) -> impl DoubleEndedIterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if in_quotes && c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
        } else if c == sep && !in_quotes {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts.into_iter()
}

/// Removes RFC 7230 quoted-string quoting; a bare token is returned unchanged. `None` if the quoting
/// is broken.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains('"')).then(|| v.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Parses a node: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:4711`, or a bare IPv6
/// address (seen in X-Forwarded-For). `unknown`, `_obfuscated` and anything else give `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !after.is_empty() && !valid_port(after.strip_prefix(':')?) {
            return None;
        }
        return addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (addr, port) = node.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port is digits (≤ 65535) or an RFC 7239 obfuscated port (`_` followed by token characters).
fn valid_port(p: &str) -> bool {
    match p.strip_prefix('_') {
        Some(obf) => {
            !obf.is_empty()
                && obf
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        }
        None => p.parse::<u16>().is_ok() && p.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal")
    }

    fn trusted() -> Vec<IpNet> {
        parse_trusted(&["10.0.0.0/8".into(), "fd00::/8".into()]).expect("trusted")
    }

    #[test]
    fn untrusted_peer_ignores_spoofed_headers() {
        let t = trusted();
        let peer = ip("198.51.100.9");
        assert_eq!(client_ip(peer, Some("1.2.3.4"), None, &t), peer);
        assert_eq!(client_ip(peer, None, Some("for=1.2.3.4"), &t), peer);
        assert_eq!(
            client_ip(peer, Some("10.0.0.5"), Some("for=10.0.0.5"), &t),
            peer
        );
    }

    #[test]
    fn trusted_peer_without_headers_is_the_client() {
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, None, &trusted()),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("  "), Some(""), &trusted()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn xff_chain_of_trusted_proxies() {
        let t = trusted();
        // client, spoofed-left-entry, real client, proxy 2, proxy 3 → peer is proxy 4.
        let xff = "6.6.6.6, 203.0.113.5, 10.1.1.1, 10.2.2.2";
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(xff), None, &t),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn xff_all_trusted_gives_leftmost() {
        let xff = "10.9.9.9, 10.1.1.1";
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(xff), None, &trusted()),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn xff_ipv6_and_mapped() {
        let t = trusted();
        assert_eq!(
            client_ip(
                ip("::ffff:10.0.0.1"),
                Some("2001:db8::7, fd00::1"),
                None,
                &t
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("::ffff:203.0.113.5"), None, &t),
            ip("203.0.113.5")
        );
        // Mapped form of a trusted address is trusted too.
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                Some("203.0.113.5, ::ffff:10.3.3.3"),
                None,
                &t
            ),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn xff_malformed_falls_back_to_last_verified_hop() {
        let t = trusted();
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                Some("203.0.113.5, garbage, 10.2.2.2"),
                None,
                &t
            ),
            ip("10.2.2.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("203.0.113.5, unknown"), None, &t),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("203.0.113.5,,10.2.2.2"), None, &t),
            ip("10.2.2.2")
        );
    }

    #[test]
    fn xff_with_ports() {
        let t = trusted();
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("203.0.113.5:5555"), None, &t),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("[2001:db8::9]:443"), None, &t),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn forwarded_quoted_ipv6_with_port() {
        let t = trusted();
        let fwd = r#"for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9;by=10.0.0.1"#;
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, Some(fwd), &t),
            ip("2001:db8:cafe::17")
        );
        let fwd = r#"For="[2001:db8:cafe::17]""#;
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, Some(fwd), &t),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn forwarded_takes_precedence_over_xff() {
        let t = trusted();
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("6.6.6.6"), Some("for=203.0.113.5"), &t),
            ip("203.0.113.5")
        );
        // Even when Forwarded is broken, XFF is not consulted.
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("6.6.6.6"), Some("for=unknown"), &t),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_obfuscated_and_unknown_stop_the_walk() {
        let t = trusted();
        let fwd = "for=203.0.113.5, for=_hidden, for=10.2.2.2";
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, Some(fwd), &t),
            ip("10.2.2.2")
        );
        let fwd = "for=203.0.113.5, for=unknown";
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, Some(fwd), &t),
            ip("10.0.0.1")
        );
        // Element without for= cannot be attributed.
        let fwd = "for=203.0.113.5, proto=https";
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, Some(fwd), &t),
            ip("10.0.0.1")
        );
        // Obfuscated port is fine.
        let fwd = "for=\"203.0.113.5:_p1\"";
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, Some(fwd), &t),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn forwarded_malformed_quoting() {
        let t = trusted();
        for bad in [
            r#"for="[2001:db8::1]"#,
            r#"for=[2001:db8::1]:99999"#,
            r#"for="1.2.3.4"x"#,
            r#"for=1.2.3.4;for=5.6.7.8"#,
            "for",
        ] {
            assert_eq!(
                client_ip(ip("10.0.0.1"), None, Some(bad), &t),
                ip("10.0.0.1"),
                "{bad}"
            );
        }
        // A comma inside quotes does not split elements.
        let fwd = r#"for=203.0.113.5;ext="a,b""#;
        assert_eq!(
            client_ip(ip("10.0.0.1"), None, Some(fwd), &t),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn walk_is_bounded() {
        let t = trusted();
        let mut hops = vec!["203.0.113.5".to_string()];
        hops.extend((0..MAX_HOPS).map(|i| format!("10.0.{}.{}", i / 200, i % 200 + 1)));
        let xff = hops.join(", ");
        // The real client sits beyond MAX_HOPS trusted entries: we stop at the last verified one.
        let got = client_ip(ip("10.0.0.1"), Some(&xff), None, &t);
        assert!(in_any(&t, got));
    }

    proptest! {
        #[test]
        fn untrusted_peer_always_wins(
            peer in any::<u32>(),
            xff in ".{0,120}",
            fwd in ".{0,120}",
        ) {
            // Peers outside 10/8 are untrusted.
            let peer = IpAddr::from(std::net::Ipv4Addr::from(peer));
            prop_assume!(!in_any(&trusted(), peer));
            prop_assert_eq!(client_ip(peer, Some(&xff), Some(&fwd), &trusted()), peer);
            prop_assert_eq!(client_ip(peer, Some(&xff), None, &trusted()), peer);
        }

        #[test]
        fn untrusted_v6_peer_always_wins(peer in any::<u128>(), xff in "[0-9a-f:., ]{0,80}") {
            let peer = canonical(IpAddr::from(std::net::Ipv6Addr::from(peer)));
            prop_assume!(!in_any(&trusted(), peer));
            prop_assert_eq!(client_ip(peer, Some(&xff), None, &trusted()), peer);
        }

        #[test]
        fn parsers_never_panic(
            xff in ".{0,200}",
            fwd in "(for|For|proto|by|=|;|,|\"|\\[|\\]|:|_|[0-9a-f.]|\\\\| ){0,80}",
        ) {
            let _ = client_ip(ip("10.0.0.1"), Some(&xff), Some(&fwd), &trusted());
            let _ = client_ip(ip("10.0.0.1"), Some(&xff), None, &trusted());
            let _ = parse_trusted(std::slice::from_ref(&xff));
        }
    }
}
