//! The access check every request passes first: is the key usable, and may it reach this
//! provider?

/// What the access check needs to know about a key.
#[derive(Debug, Clone, Copy)]
pub struct KeyFacts<'a> {
    /// The key was revoked.
    pub revoked: bool,
    /// Expiry as Unix seconds, if the key expires.
    pub expires_at: Option<i64>,
    /// Providers the key may reach; `*` means any.
    pub providers: &'a [String],
}

/// Why a request is refused. Each maps to one public error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// `key_revoked`.
    Revoked,
    /// `key_expired`.
    Expired,
    /// `provider_not_allowed`.
    ProviderNotAllowed,
}

impl Denial {
    /// The public error code.
    pub fn code(self) -> &'static str {
        match self {
            Denial::Revoked => "key_revoked",
            Denial::Expired => "key_expired",
            Denial::ProviderNotAllowed => "provider_not_allowed",
        }
    }
}

/// Decides whether a key may send a request to `provider` at time `now` (Unix seconds).
/// Revocation is checked before expiry, expiry before scope.
///
/// ```
/// use latchkey_policy::access::{check, Denial, KeyFacts};
/// let providers = vec!["openai".to_string()];
/// let key = KeyFacts { revoked: false, expires_at: Some(100), providers: &providers };
/// assert_eq!(check(&key, "openai", 50), Ok(()));
/// assert_eq!(check(&key, "openai", 100), Err(Denial::Expired));
/// assert_eq!(check(&key, "stripe", 50), Err(Denial::ProviderNotAllowed));
/// ```
pub fn check(key: &KeyFacts<'_>, provider: &str, now: i64) -> Result<(), Denial> {
    if key.revoked {
        return Err(Denial::Revoked);
    }
    if matches!(key.expires_at, Some(t) if now >= t) {
        return Err(Denial::Expired);
    }
    if !key.providers.iter().any(|p| p == "*" || p == provider) {
        return Err(Denial::ProviderNotAllowed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_checks() {
        let any = vec!["*".to_string()];
        let k = KeyFacts {
            revoked: true,
            expires_at: Some(0),
            providers: &[],
        };
        assert_eq!(check(&k, "x", 10), Err(Denial::Revoked));
        let k = KeyFacts {
            revoked: false,
            expires_at: Some(0),
            providers: &[],
        };
        assert_eq!(check(&k, "x", 10), Err(Denial::Expired));
        let k = KeyFacts {
            revoked: false,
            expires_at: None,
            providers: &any,
        };
        assert_eq!(check(&k, "anything", 10), Ok(()));
        let k = KeyFacts {
            revoked: false,
            expires_at: None,
            providers: &[],
        };
        assert_eq!(check(&k, "openai", 10), Err(Denial::ProviderNotAllowed));
    }
}
