//! IP lock: a key may be used only from listed addresses/CIDR blocks, or is bound to the first
//! address that uses it ("auto-bind").
//!
//! IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are treated as the IPv4 address everywhere, so a
//! dual-stack listener cannot be used to slip past an IPv4 allow-list.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::{quote, LockSpecError};
use super::Denial;

/// Most entries one allow-list may hold; checks are linear, and a longer list is a config mistake.
pub const MAX_CIDRS: usize = 1024;

/// The IP lock stored on a proxy key.
///
/// Serialized adjacently tagged, e.g. `{"mode":"none"}`,
/// `{"mode":"auto_bind","value":{"bound":"203.0.113.7"}}`,
/// `{"mode":"cidrs","value":["10.0.0.0/8","2001:db8::/32"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", content = "value", rename_all = "snake_case")]
pub enum IpLock {
    /// No IP restriction.
    #[default]
    None,
    /// Bound to the first client address seen; `bound` is `None` until then.
    AutoBind {
        /// The address the key is bound to, once bound.
        bound: Option<IpAddr>,
    },
    /// Only addresses inside one of these networks may use the key. An empty list admits nobody.
    Cidrs(Vec<IpNet>),
}

/// What the caller must do after a passing IP check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpDecision {
    /// The request may proceed.
    Pass,
    /// First request of an unbound auto-bind key: the caller must atomically compare-and-set the
    /// key's binding from `None` to this address, then re-check with the stored lock (another
    /// request may have won the race with a different address).
    BindTo(IpAddr),
}

/// Maps IPv4-mapped IPv6 addresses to IPv4; leaves everything else as is.
///
/// ```
/// use latchkey_policy::locks::ip::canonical;
/// let mapped: std::net::IpAddr = "::ffff:192.0.2.1".parse().unwrap();
/// assert_eq!(canonical(mapped), "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
/// ```
pub fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// Parses one IP address (host network, /32 or /128) or CIDR block. The block is truncated to
/// its network address (`10.1.2.3/8` → `10.0.0.0/8`), and an IPv4-mapped IPv6 block with a prefix
/// of at least 96 becomes the equivalent IPv4 block, matching how client addresses are compared.
///
/// ```
/// use latchkey_policy::locks::ip::parse_net;
/// assert_eq!(parse_net("192.0.2.9").unwrap().to_string(), "192.0.2.9/32");
/// assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
/// assert_eq!(parse_net("2001:db8::1").unwrap().to_string(), "2001:db8::1/128");
/// assert!(parse_net("10.0.0.0/33").is_err());
/// ```
pub fn parse_net(entry: &str) -> Result<IpNet, LockSpecError> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(LockSpecError::Empty);
    }
    let net = match IpNet::from_str(entry) {
        Ok(net) => net,
        Err(_) => match IpAddr::from_str(entry) {
            Ok(addr) => IpNet::from(addr),
            Err(_) => return Err(LockSpecError::InvalidAddress(quote(entry))),
        },
    };
    Ok(unmap_net(net).trunc())
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 covers exactly the IPv4 block `a.b.c.d/(n-96)`.
fn unmap_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                return IpNet::V4(n);
            }
        }
    }
    net
}

/// Parses an IP lock specification: `auto` (bind on first use), `none` or `off` (no lock), or a
/// comma-separated list of IP addresses and CIDR blocks (IPv4 and IPv6). Case-insensitive
/// keywords; whitespace around entries is ignored; an empty entry is an error.
///
/// ```
/// use latchkey_policy::locks::ip::{parse_ip_spec, IpLock};
/// assert_eq!(parse_ip_spec("auto").unwrap(), IpLock::AutoBind { bound: None });
/// assert_eq!(parse_ip_spec("off").unwrap(), IpLock::None);
/// let IpLock::Cidrs(nets) = parse_ip_spec("10.0.0.0/8, 2001:db8::/32, 192.0.2.1").unwrap() else {
///     panic!("expected a list")
/// };
/// assert_eq!(nets.len(), 3);
/// assert!(parse_ip_spec("10.0.0.0/8,,").is_err());
/// ```
pub fn parse_ip_spec(spec: &str) -> Result<IpLock, LockSpecError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(LockSpecError::Empty);
    }
    if spec.eq_ignore_ascii_case("auto") {
        return Ok(IpLock::AutoBind { bound: None });
    }
    if spec.eq_ignore_ascii_case("none") || spec.eq_ignore_ascii_case("off") {
        return Ok(IpLock::None);
    }
    let count = spec.split(',').count();
    if count > MAX_CIDRS {
        return Err(LockSpecError::TooMany {
            count,
            max: MAX_CIDRS,
        });
    }
    let nets = spec
        .split(',')
        .map(parse_net)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IpLock::Cidrs(nets))
}

/// Is `addr` (canonicalized) inside any of `nets`?
///
/// ```
/// use latchkey_policy::locks::ip::{in_any, parse_net};
/// let nets = vec![parse_net("10.0.0.0/8").unwrap()];
/// assert!(in_any(&nets, "::ffff:10.9.8.7".parse().unwrap()));
/// assert!(!in_any(&nets, "11.0.0.1".parse().unwrap()));
/// ```
pub fn in_any(nets: &[IpNet], addr: IpAddr) -> bool {
    let addr = canonical(addr);
    nets.iter().any(|n| n.contains(&addr))
}

/// Checks the client address against the key's IP lock.
///
/// ```
/// use latchkey_policy::locks::ip::{check_ip, parse_ip_spec, IpDecision, IpLock};
/// use latchkey_policy::locks::Denial;
/// let client = "203.0.113.7".parse().unwrap();
/// let lock = parse_ip_spec("203.0.113.0/24").unwrap();
/// assert_eq!(check_ip(&lock, client), Ok(IpDecision::Pass));
/// let lock = parse_ip_spec("198.51.100.0/24").unwrap();
/// assert_eq!(check_ip(&lock, client), Err(Denial::IpLocked));
/// let lock = IpLock::AutoBind { bound: None };
/// assert_eq!(check_ip(&lock, client), Ok(IpDecision::BindTo(client)));
/// ```
pub fn check_ip(lock: &IpLock, client: IpAddr) -> Result<IpDecision, Denial> {
    let client = canonical(client);
    match lock {
        IpLock::None => Ok(IpDecision::Pass),
        IpLock::AutoBind { bound: None } => Ok(IpDecision::BindTo(client)),
        IpLock::AutoBind { bound: Some(b) } if canonical(*b) == client => Ok(IpDecision::Pass),
        IpLock::AutoBind { bound: Some(_) } => Err(Denial::IpLocked),
        IpLock::Cidrs(nets) if in_any(nets, client) => Ok(IpDecision::Pass),
        IpLock::Cidrs(_) => Err(Denial::IpLocked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal")
    }

    #[test]
    fn no_lock_passes() {
        assert_eq!(check_ip(&IpLock::None, ip("1.2.3.4")), Ok(IpDecision::Pass));
    }

    #[test]
    fn cidr_v4_and_v6() {
        let lock = parse_ip_spec("10.0.0.0/8, 2001:db8::/32").expect("spec");
        assert_eq!(check_ip(&lock, ip("10.255.0.1")), Ok(IpDecision::Pass));
        assert_eq!(
            check_ip(&lock, ip("2001:db8:ffff::1")),
            Ok(IpDecision::Pass)
        );
        assert_eq!(check_ip(&lock, ip("11.0.0.1")), Err(Denial::IpLocked));
        assert_eq!(check_ip(&lock, ip("2001:db9::1")), Err(Denial::IpLocked));
    }

    #[test]
    fn bare_ip_is_host_route() {
        let lock = parse_ip_spec("192.0.2.1,2001:db8::5").expect("spec");
        assert_eq!(check_ip(&lock, ip("192.0.2.1")), Ok(IpDecision::Pass));
        assert_eq!(check_ip(&lock, ip("192.0.2.2")), Err(Denial::IpLocked));
        assert_eq!(check_ip(&lock, ip("2001:db8::5")), Ok(IpDecision::Pass));
        assert_eq!(check_ip(&lock, ip("2001:db8::6")), Err(Denial::IpLocked));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        let lock = parse_ip_spec("192.0.2.0/24").expect("spec");
        assert_eq!(
            check_ip(&lock, ip("::ffff:192.0.2.9")),
            Ok(IpDecision::Pass)
        );
        assert_eq!(
            check_ip(&lock, ip("::ffff:192.0.3.9")),
            Err(Denial::IpLocked)
        );
        // A mapped block in the spec becomes the IPv4 block.
        let lock = parse_ip_spec("::ffff:192.0.2.0/120").expect("spec");
        assert_eq!(
            lock,
            IpLock::Cidrs(vec![parse_net("192.0.2.0/24").expect("net")])
        );
        assert_eq!(check_ip(&lock, ip("192.0.2.200")), Ok(IpDecision::Pass));
    }

    #[test]
    fn auto_bind() {
        let unbound = IpLock::AutoBind { bound: None };
        assert_eq!(
            check_ip(&unbound, ip("::ffff:198.51.100.1")),
            Ok(IpDecision::BindTo(ip("198.51.100.1")))
        );
        let bound = IpLock::AutoBind {
            bound: Some(ip("198.51.100.1")),
        };
        assert_eq!(check_ip(&bound, ip("198.51.100.1")), Ok(IpDecision::Pass));
        assert_eq!(
            check_ip(&bound, ip("::ffff:198.51.100.1")),
            Ok(IpDecision::Pass)
        );
        assert_eq!(check_ip(&bound, ip("198.51.100.2")), Err(Denial::IpLocked));
        let bound6 = IpLock::AutoBind {
            bound: Some(ip("2001:db8::1")),
        };
        assert_eq!(check_ip(&bound6, ip("2001:db8::1")), Ok(IpDecision::Pass));
        assert_eq!(check_ip(&bound6, ip("2001:db8::2")), Err(Denial::IpLocked));
    }

    #[test]
    fn empty_list_admits_nobody() {
        assert_eq!(
            check_ip(&IpLock::Cidrs(vec![]), ip("1.2.3.4")),
            Err(Denial::IpLocked)
        );
    }

    #[test]
    fn spec_errors() {
        assert_eq!(parse_ip_spec("  "), Err(LockSpecError::Empty));
        assert_eq!(parse_ip_spec("1.2.3.4,"), Err(LockSpecError::Empty));
        assert!(matches!(
            parse_ip_spec("1.2.3.4/40"),
            Err(LockSpecError::InvalidAddress(_))
        ));
        assert!(matches!(
            parse_ip_spec("example.com"),
            Err(LockSpecError::InvalidAddress(_))
        ));
        assert!(matches!(
            parse_ip_spec("fe80::1%eth0"),
            Err(LockSpecError::InvalidAddress(_))
        ));
        let many = vec!["10.0.0.1"; MAX_CIDRS + 1].join(",");
        assert!(matches!(
            parse_ip_spec(&many),
            Err(LockSpecError::TooMany { .. })
        ));
        assert_eq!(
            parse_ip_spec(" AUTO ").expect("auto"),
            IpLock::AutoBind { bound: None }
        );
        assert_eq!(parse_ip_spec("None").expect("none"), IpLock::None);
    }

    #[test]
    fn json_shapes() {
        let lock = parse_ip_spec("10.0.0.0/8,2001:db8::/32").expect("spec");
        let json = serde_json::to_string(&lock).expect("json");
        assert_eq!(
            json,
            r#"{"mode":"cidrs","value":["10.0.0.0/8","2001:db8::/32"]}"#
        );
        assert_eq!(serde_json::from_str::<IpLock>(&json).expect("back"), lock);
        let none = serde_json::to_string(&IpLock::None).expect("json");
        assert_eq!(none, r#"{"mode":"none"}"#);
        let bound = IpLock::AutoBind {
            bound: Some(ip("203.0.113.7")),
        };
        let json = serde_json::to_string(&bound).expect("json");
        assert_eq!(
            json,
            r#"{"mode":"auto_bind","value":{"bound":"203.0.113.7"}}"#
        );
        assert_eq!(serde_json::from_str::<IpLock>(&json).expect("back"), bound);
    }

    /// Naive reference: compare the top `prefix` bits of two addresses as integers.
    fn naive_contains(net: u128, prefix: u8, bits: u8, addr: u128) -> bool {
        if prefix == 0 {
            return true;
        }
        let shift = u32::from(bits - prefix);
        (net >> shift) == (addr >> shift)
    }

    proptest! {
        #[test]
        fn cidr_v4_matches_naive(net in any::<u32>(), prefix in 0u8..=32, addr in any::<u32>()) {
            let spec = format!("{}/{}", std::net::Ipv4Addr::from(net), prefix);
            let lock = parse_ip_spec(&spec).expect("valid spec");
            let got = check_ip(&lock, IpAddr::from(std::net::Ipv4Addr::from(addr))).is_ok();
            prop_assert_eq!(got, naive_contains(u128::from(net), prefix, 32, u128::from(addr)));
        }

        #[test]
        fn cidr_v6_matches_naive(net in any::<u128>(), prefix in 0u8..=128, addr in any::<u128>()) {
            // Mapped addresses are canonicalized to IPv4 on both sides; keep the reference simple.
            let mapped = |x: u128| (x >> 32) == 0xffff;
            prop_assume!(!mapped(net) && !mapped(addr));
            let spec = format!("{}/{}", std::net::Ipv6Addr::from(net), prefix);
            let lock = parse_ip_spec(&spec).expect("valid spec");
            let got = check_ip(&lock, IpAddr::from(std::net::Ipv6Addr::from(addr))).is_ok();
            prop_assert_eq!(got, naive_contains(net, prefix, 128, addr));
        }

        #[test]
        fn cidr_near_addresses_match_naive(net in any::<u128>(), prefix in 0u8..=128, low in 0u32..=128, noise in any::<u128>()) {
            // Flip only low bits so many samples land inside the block (random pairs rarely do).
            let mask = if low == 128 { u128::MAX } else { (1u128 << low) - 1 };
            let addr = net ^ (noise & mask);
            let mapped = |x: u128| (x >> 32) == 0xffff;
            prop_assume!(!mapped(net) && !mapped(addr));
            let spec = format!("{}/{}", std::net::Ipv6Addr::from(net), prefix);
            let lock = parse_ip_spec(&spec).expect("valid spec");
            let got = check_ip(&lock, IpAddr::from(std::net::Ipv6Addr::from(addr))).is_ok();
            prop_assert_eq!(got, naive_contains(net, prefix, 128, addr));
            let (n4, a4) = (net as u32, addr as u32);
            let p4 = prefix % 33;
            let spec = format!("{}/{}", std::net::Ipv4Addr::from(n4), p4);
            let lock = parse_ip_spec(&spec).expect("valid spec");
            let got = check_ip(&lock, IpAddr::from(std::net::Ipv4Addr::from(a4))).is_ok();
            prop_assert_eq!(got, naive_contains(u128::from(n4), p4, 32, u128::from(a4)));
        }

        #[test]
        fn parse_ip_spec_never_panics(s in ".{0,200}") {
            let _ = parse_ip_spec(&s);
        }

        #[test]
        fn parse_ip_spec_never_panics_on_addressy_input(s in "[0-9a-fA-F:./, %-]{0,80}") {
            let _ = parse_ip_spec(&s);
        }
    }
}
