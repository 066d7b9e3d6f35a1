//! Device lock: a key is bound to one device fingerprint.
//!
//! Only a hash of the fingerprint is stored, so a database dump does not hand out the value a
//! client must present. The hash is domain-separated so it cannot be confused with any other
//! SHA-256 the system stores, and compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Denial;

/// Request header a client uses to present its device fingerprint (a suggestion for the gateway).
pub const DEVICE_HEADER: &str = "x-device-fingerprint";

/// Domain-separation prefix for fingerprint hashes; bump the version if the scheme ever changes.
const DOMAIN: &[u8] = b"latchkey-device-fingerprint-v1\0";

/// Hex SHA-256 of the trimmed fingerprint under a domain-separation prefix. Store this on the key.
///
/// ```
/// use latchkey_policy::locks::device::fingerprint_hash;
/// let h = fingerprint_hash(" laptop-42 ");
/// assert_eq!(h, fingerprint_hash("laptop-42"));
/// assert_eq!(h.len(), 64);
/// ```
pub fn fingerprint_hash(fingerprint: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(fingerprint.trim().as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks the presented fingerprint (the raw header value, not a hash) against the stored hash.
/// No stored hash means no device lock. A missing or blank fingerprint, or a wrong one, is refused.
///
/// ```
/// use latchkey_policy::locks::device::{check_device, fingerprint_hash};
/// use latchkey_policy::locks::Denial;
/// let stored = fingerprint_hash("laptop-42");
/// assert_eq!(check_device(Some(&stored), Some("laptop-42")), Ok(()));
/// assert_eq!(check_device(Some(&stored), Some("phone-7")), Err(Denial::DeviceMismatch));
/// assert_eq!(check_device(Some(&stored), None), Err(Denial::DeviceMismatch));
/// assert_eq!(check_device(None, None), Ok(()));
/// ```
pub fn check_device(expected_hash: Option<&str>, presented: Option<&str>) -> Result<(), Denial> {
    let Some(expected) = expected_hash else {
        return Ok(());
    };
    let presented = presented
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or(Denial::DeviceMismatch)?;
    let actual = fingerprint_hash(presented);
    // Stored hashes are lower-case hex; tolerate upper-case storage. Lengths are public (64).
    let expected = expected.trim().to_ascii_lowercase();
    if bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(Denial::DeviceMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_domain_separated() {
        let plain = hex::encode(Sha256::digest(b"laptop"));
        assert_ne!(fingerprint_hash("laptop"), plain);
        assert_ne!(fingerprint_hash("laptop"), fingerprint_hash("laptop2"));
    }

    #[test]
    fn pass_and_refuse() {
        let stored = fingerprint_hash("dev-1");
        assert_eq!(check_device(Some(&stored), Some(" dev-1\t")), Ok(()));
        assert_eq!(
            check_device(Some(&stored.to_ascii_uppercase()), Some("dev-1")),
            Ok(())
        );
        assert_eq!(
            check_device(Some(&stored), Some("dev-2")),
            Err(Denial::DeviceMismatch)
        );
        assert_eq!(
            check_device(Some(&stored), Some("  ")),
            Err(Denial::DeviceMismatch)
        );
        assert_eq!(
            check_device(Some(&stored), None),
            Err(Denial::DeviceMismatch)
        );
        // Presenting the stored hash itself is not the fingerprint.
        assert_eq!(
            check_device(Some(&stored), Some(&stored)),
            Err(Denial::DeviceMismatch)
        );
        // A corrupted stored value refuses everything.
        assert_eq!(
            check_device(Some("abc"), Some("dev-1")),
            Err(Denial::DeviceMismatch)
        );
    }

    #[test]
    fn no_lock_ignores_presented_value() {
        assert_eq!(check_device(None, Some("anything")), Ok(()));
    }
}
