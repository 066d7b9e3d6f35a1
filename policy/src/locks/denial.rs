//! Why a lock refused a request, mapped to the public error codes of DESIGN.md §6.
//!
//! This is a separate enum from [`crate::access::Denial`] on purpose: the gateway matches that one
//! exhaustively, so adding variants there would break it. Both share the same shape: a public
//! `code()`, an HTTP `status()` and a human `message()`.

use thiserror::Error;

/// Why a signed request was refused. All of them surface as `bad_signature` (401); the reason only
/// picks the message so a client developer can tell a clock problem from a wrong secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFault {
    /// One of the three signature headers is absent.
    Missing,
    /// A header is present but not in the documented format.
    Malformed,
    /// The timestamp lies outside the accepted window (too old or too far in the future).
    Stale,
    /// The MAC does not match: wrong secret, or the method, path, body or nonce was changed.
    BadMac,
    /// The nonce was already used by this key within its lifetime.
    Replayed,
    /// Replay protection could not record the nonce (store full or unreachable). We refuse rather
    /// than accept a request we cannot protect from replay.
    ReplayGuardUnavailable,
}

/// Which lockdown switch refused the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockdownScope {
    /// The whole gateway is locked down.
    Global,
    /// The key's tenant is locked down.
    Tenant,
    /// This provider is locked down for the key's tenant (or for every tenant).
    Provider,
}

/// A refusal by one of the key locks. Each maps to one public error code and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Denial {
    /// `ip_locked` 403: the client address is not allowed for this key.
    #[error("ip_locked")]
    IpLocked,
    /// `geo_blocked` 403: the client's location is not allowed, or could not be determined.
    #[error("geo_blocked")]
    GeoBlocked,
    /// `geo_blocked` 403: the key is geo-locked but no geo database is configured, so the lock
    /// cannot be evaluated (fail closed). Distinct from [`Denial::GeoBlocked`] only for the message.
    #[error("geo_blocked")]
    GeoUnavailable,
    /// `device_mismatch` 403: the device fingerprint is missing or wrong.
    #[error("device_mismatch")]
    DeviceMismatch,
    /// `bad_signature` 401: the signed-request check failed.
    #[error("bad_signature")]
    BadSignature(SignatureFault),
    /// `model_not_allowed` 403: the requested model is outside the key's allow-list, or unknown.
    #[error("model_not_allowed")]
    ModelNotAllowed,
    /// `key_suspended` 403: the key was suspended (for example after a velocity spike).
    #[error("key_suspended")]
    KeySuspended,
    /// `lockdown` 503: an operator lockdown is in force.
    #[error("lockdown")]
    Lockdown(LockdownScope),
}

impl Denial {
    /// The public error code, as listed in DESIGN.md §6.
    ///
    /// ```
    /// use latchkey_policy::locks::{Denial, SignatureFault};
    /// assert_eq!(Denial::GeoUnavailable.code(), "geo_blocked");
    /// assert_eq!(Denial::BadSignature(SignatureFault::Stale).code(), "bad_signature");
    /// ```
    pub fn code(self) -> &'static str {
        match self {
            Denial::IpLocked => "ip_locked",
            Denial::GeoBlocked | Denial::GeoUnavailable => "geo_blocked",
            Denial::DeviceMismatch => "device_mismatch",
            Denial::BadSignature(_) => "bad_signature",
            Denial::ModelNotAllowed => "model_not_allowed",
            Denial::KeySuspended => "key_suspended",
            Denial::Lockdown(_) => "lockdown",
        }
    }

    /// The HTTP status the gateway answers with.
    ///
    /// ```
    /// use latchkey_policy::locks::{Denial, LockdownScope};
    /// assert_eq!(Denial::IpLocked.status(), 403);
    /// assert_eq!(Denial::Lockdown(LockdownScope::Global).status(), 503);
    /// ```
    pub fn status(self) -> u16 {
        match self {
            Denial::BadSignature(_) => 401,
            Denial::Lockdown(_) => 503,
            Denial::IpLocked
            | Denial::GeoBlocked
            | Denial::GeoUnavailable
            | Denial::DeviceMismatch
            | Denial::ModelNotAllowed
            | Denial::KeySuspended => 403,
        }
    }

    /// A human explanation for the error body. Static text only: it never echoes a secret, a
    /// fingerprint, a signature or any other request-supplied value.
    ///
    /// ```
    /// use latchkey_policy::locks::Denial;
    /// assert!(Denial::GeoUnavailable.message().contains("no geo database"));
    /// ```
    pub fn message(self) -> &'static str {
        match self {
            Denial::IpLocked => "this proxy key may not be used from this IP address",
            Denial::GeoBlocked => "this proxy key may not be used from this location",
            Denial::GeoUnavailable => {
                "this proxy key is geo-locked but no geo database is configured on the gateway"
            }
            Denial::DeviceMismatch => "this proxy key is bound to a different device",
            Denial::BadSignature(fault) => match fault {
                SignatureFault::Missing => {
                    "this proxy key requires signed requests: x-latchkey-timestamp, \
                     x-latchkey-nonce and x-latchkey-signature headers are required"
                }
                SignatureFault::Malformed => "a request signature header is malformed",
                SignatureFault::Stale => {
                    "the request timestamp is outside the accepted window; check the client clock"
                }
                SignatureFault::BadMac => "the request signature does not match",
                SignatureFault::Replayed => "this request nonce was already used",
                SignatureFault::ReplayGuardUnavailable => {
                    "replay protection is temporarily unavailable; retry shortly"
                }
            },
            Denial::ModelNotAllowed => {
                "this proxy key may not use the requested model (or the model could not be determined)"
            }
            Denial::KeySuspended => "this proxy key is suspended",
            Denial::Lockdown(scope) => match scope {
                LockdownScope::Global => "the gateway is in lockdown",
                LockdownScope::Tenant => "this workspace is in lockdown",
                LockdownScope::Provider => "this provider is in lockdown",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Denial; 14] = [
        Denial::IpLocked,
        Denial::GeoBlocked,
        Denial::GeoUnavailable,
        Denial::DeviceMismatch,
        Denial::BadSignature(SignatureFault::Missing),
        Denial::BadSignature(SignatureFault::Malformed),
        Denial::BadSignature(SignatureFault::Stale),
        Denial::BadSignature(SignatureFault::BadMac),
        Denial::BadSignature(SignatureFault::Replayed),
        Denial::BadSignature(SignatureFault::ReplayGuardUnavailable),
        Denial::ModelNotAllowed,
        Denial::KeySuspended,
        Denial::Lockdown(LockdownScope::Global),
        Denial::Lockdown(LockdownScope::Provider),
    ];

    #[test]
    fn codes_and_statuses_match_the_contract() {
        let expect = [
            ("ip_locked", 403),
            ("geo_blocked", 403),
            ("geo_blocked", 403),
            ("device_mismatch", 403),
            ("bad_signature", 401),
            ("bad_signature", 401),
            ("bad_signature", 401),
            ("bad_signature", 401),
            ("bad_signature", 401),
            ("bad_signature", 401),
            ("model_not_allowed", 403),
            ("key_suspended", 403),
            ("lockdown", 503),
            ("lockdown", 503),
        ];
        for (d, (code, status)) in ALL.iter().zip(expect) {
            assert_eq!(d.code(), code, "{d:?}");
            assert_eq!(d.status(), status, "{d:?}");
            assert_eq!(d.to_string(), code);
            assert!(!d.message().is_empty());
        }
    }

    #[test]
    fn geo_messages_differ() {
        assert_ne!(
            Denial::GeoBlocked.message(),
            Denial::GeoUnavailable.message()
        );
    }
}
