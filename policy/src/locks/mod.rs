//! Proxy-key locks: conditions beyond scope that a request must meet to use a key.
//!
//! Everything here is pure decision logic: no I/O, no clock reads (callers pass `now`), no
//! randomness. State that must persist between requests (auto-bind address, nonces, velocity
//! counters) is either returned as a decision for the caller to apply ([`ip::IpDecision::BindTo`])
//! or kept behind a trait ([`nonce::NonceStore`], [`velocity::VelocityCounter`]) with a bounded
//! in-process implementation, so a shared (Redis) one can follow.
//!
//! # Intended order in the gateway
//!
//! 1. [`lockdown::check_lockdown`] — operator kill switches first: cheapest, and they override
//!    everything.
//! 2. [`ip::check_ip`] (with the address from [`client_ip::client_ip`]),
//! 3. [`geo::check_geo`],
//! 4. [`device::check_device`] — steps 2–4 are bundled in [`check_static`]; they need only
//!    request metadata.
//! 5. [`signature::verify`] / [`signature::verify_and_remember`] — needs the whole body hashed.
//! 6. [`model::check_model`] on [`model::requested_model`] — needs the parsed body.
//! 7. [`velocity`] — last, so refused requests do not count toward a key's velocity.
//!
//! Refusals are [`Denial`]s with public codes (`ip_locked`, `geo_blocked`, `device_mismatch`,
//! `bad_signature`, `model_not_allowed`, `key_suspended`, `lockdown`).

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub mod client_ip;
mod denial;
pub mod device;
mod error;
pub mod geo;
pub mod ip;
pub mod lockdown;
pub mod model;
pub mod nonce;
pub mod signature;
pub mod velocity;

pub use denial::{Denial, LockdownScope, SignatureFault};
pub use error::LockSpecError;

use geo::{GeoLock, GeoLookup};
use ip::{IpDecision, IpLock};
use velocity::VelocityThresholds;

/// All locks stored on a proxy key. Every field defaults, so JSON written before a field existed
/// still loads (and means "no such lock").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyLocks {
    /// IP / CIDR lock or auto-bind.
    pub ip: IpLock,
    /// Country / city lock.
    pub geo: GeoLock,
    /// [`device::fingerprint_hash`] of the bound device, if device-locked.
    pub device_hash: Option<String>,
    /// Requests must be signed. The signing secret itself is stored elsewhere (encrypted).
    pub signed: bool,
    /// Abuse thresholds, if velocity detection is on for this key.
    pub velocity: Option<VelocityThresholds>,
}

impl KeyLocks {
    /// True when no lock is configured, so the gateway can skip the lock stage entirely.
    ///
    /// ```
    /// assert!(latchkey_policy::locks::KeyLocks::default().is_unlocked());
    /// ```
    pub fn is_unlocked(&self) -> bool {
        self.ip == IpLock::None
            && self.geo.is_empty()
            && self.device_hash.is_none()
            && !self.signed
            && self.velocity.is_none()
    }
}

/// Request metadata the static locks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// The client address, from [`client_ip::client_ip`].
    pub client_ip: IpAddr,
    /// The geo lookup for `client_ip`. When `locks.geo.is_empty()` it is not consulted, so the
    /// caller may skip the lookup and pass [`GeoLookup::NoDatabase`].
    pub geo: GeoLookup,
    /// The presented device fingerprint (raw header value), if any.
    pub device_fingerprint: Option<&'a str>,
}

/// Result of the static lock checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOutcome {
    /// All static locks pass.
    Pass,
    /// All pass, and the key is auto-bind and unbound: bind it to this address with an atomic
    /// compare-and-set, then re-run the checks with the stored lock if the swap lost a race.
    BindIp(IpAddr),
}

/// Runs the static locks in order: IP → geo → device. The first refusal wins.
///
/// ```
/// use latchkey_policy::locks::{check_static, Denial, KeyLocks, LockOutcome, RequestFacts};
/// use latchkey_policy::locks::{geo::GeoLookup, ip::parse_ip_spec, device::fingerprint_hash};
/// let locks = KeyLocks {
///     ip: parse_ip_spec("203.0.113.0/24").unwrap(),
///     device_hash: Some(fingerprint_hash("laptop-1")),
///     ..Default::default()
/// };
/// let mut facts = RequestFacts {
///     client_ip: "203.0.113.8".parse().unwrap(),
///     geo: GeoLookup::NoDatabase,
///     device_fingerprint: Some("laptop-1"),
/// };
/// assert_eq!(check_static(&locks, &facts), Ok(LockOutcome::Pass));
/// facts.device_fingerprint = None;
/// assert_eq!(check_static(&locks, &facts), Err(Denial::DeviceMismatch));
/// ```
pub fn check_static(locks: &KeyLocks, facts: &RequestFacts<'_>) -> Result<LockOutcome, Denial> {
    let ip = ip::check_ip(&locks.ip, facts.client_ip)?;
    geo::check_geo(&locks.geo, &facts.geo)?;
    device::check_device(locks.device_hash.as_deref(), facts.device_fingerprint)?;
    Ok(match ip {
        IpDecision::Pass => LockOutcome::Pass,
        IpDecision::BindTo(addr) => LockOutcome::BindIp(addr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::GeoFacts;

    fn facts(ip: &str, geo: GeoLookup, dev: Option<&'static str>) -> RequestFacts<'static> {
        RequestFacts {
            client_ip: ip.parse().expect("test literal"),
            geo,
            device_fingerprint: dev,
        }
    }

    fn de() -> GeoLookup {
        GeoLookup::Found(GeoFacts {
            country: Some("DE".into()),
            city: None,
        })
    }

    #[test]
    fn no_locks_pass() {
        let f = facts("198.51.100.1", GeoLookup::NoDatabase, None);
        assert_eq!(
            check_static(&KeyLocks::default(), &f),
            Ok(LockOutcome::Pass)
        );
    }

    #[test]
    fn order_is_ip_then_geo_then_device() {
        let locks = KeyLocks {
            ip: ip::parse_ip_spec("10.0.0.0/8").expect("spec"),
            geo: GeoLock::new(&["DE"], &[]).expect("geo"),
            device_hash: Some(device::fingerprint_hash("dev")),
            ..Default::default()
        };
        let all_wrong = facts("11.0.0.1", GeoLookup::NotFound, None);
        assert_eq!(check_static(&locks, &all_wrong), Err(Denial::IpLocked));
        let geo_wrong = facts("10.0.0.1", GeoLookup::NoDatabase, None);
        assert_eq!(
            check_static(&locks, &geo_wrong),
            Err(Denial::GeoUnavailable)
        );
        let dev_wrong = facts("10.0.0.1", de(), Some("other"));
        assert_eq!(
            check_static(&locks, &dev_wrong),
            Err(Denial::DeviceMismatch)
        );
        let ok = facts("10.0.0.1", de(), Some("dev"));
        assert_eq!(check_static(&locks, &ok), Ok(LockOutcome::Pass));
    }

    #[test]
    fn auto_bind_reports_binding_only_if_everything_passes() {
        let locks = KeyLocks {
            ip: IpLock::AutoBind { bound: None },
            device_hash: Some(device::fingerprint_hash("dev")),
            ..Default::default()
        };
        let f = facts("2001:db8::1", GeoLookup::NoDatabase, Some("dev"));
        assert_eq!(
            check_static(&locks, &f),
            Ok(LockOutcome::BindIp("2001:db8::1".parse().expect("ip")))
        );
        // A request that fails a later lock must not bind the key.
        let f = facts("2001:db8::1", GeoLookup::NoDatabase, None);
        assert_eq!(check_static(&locks, &f), Err(Denial::DeviceMismatch));
    }

    #[test]
    fn json_defaults_and_roundtrip() {
        let old: KeyLocks = serde_json::from_str("{}").expect("json");
        assert!(old.is_unlocked());
        let partial: KeyLocks = serde_json::from_str(r#"{"signed":true}"#).expect("json");
        assert!(partial.signed && partial.ip == IpLock::None);
        let full = KeyLocks {
            ip: ip::parse_ip_spec("10.0.0.0/8,::1").expect("spec"),
            geo: GeoLock::new(&["FR"], &["Paris"]).expect("geo"),
            device_hash: Some(device::fingerprint_hash("d")),
            signed: true,
            velocity: Some(VelocityThresholds {
                max_requests: Some(100),
                ..Default::default()
            }),
        };
        let json = serde_json::to_string(&full).expect("json");
        assert_eq!(serde_json::from_str::<KeyLocks>(&json).expect("back"), full);
        assert!(!full.is_unlocked());
    }
}
