//! Lockdown: operator kill switches that stop traffic for everyone, a tenant, or one provider,
//! regardless of what any key allows. Checked before every other lock.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{Denial, LockdownScope};

/// Tenant wildcard in [`Lockdown::providers`]: `("*", "openai")` locks `openai` for every tenant.
pub const ANY_TENANT: &str = "*";

/// The lockdown switches in force.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Lockdown {
    /// Everything is locked down.
    pub global: bool,
    /// Tenants locked down entirely.
    pub tenants: HashSet<String>,
    /// `(tenant, provider)` pairs locked down; the tenant may be [`ANY_TENANT`]. Serialized as
    /// two-element arrays.
    pub providers: HashSet<(String, String)>,
}

impl Lockdown {
    /// True when no switch is on (the gateway can skip the check).
    ///
    /// ```
    /// assert!(latchkey_policy::locks::lockdown::Lockdown::default().is_clear());
    /// ```
    pub fn is_clear(&self) -> bool {
        !self.global && self.tenants.is_empty() && self.providers.is_empty()
    }
}

/// Refuses the request if a lockdown covers it; the broadest matching scope is reported.
///
/// ```
/// use latchkey_policy::locks::lockdown::{check_lockdown, Lockdown};
/// use latchkey_policy::locks::{Denial, LockdownScope};
/// let mut l = Lockdown::default();
/// assert_eq!(check_lockdown(&l, "acme", "openai"), Ok(()));
/// l.providers.insert(("acme".into(), "openai".into()));
/// assert_eq!(
///     check_lockdown(&l, "acme", "openai"),
///     Err(Denial::Lockdown(LockdownScope::Provider))
/// );
/// assert_eq!(check_lockdown(&l, "acme", "anthropic"), Ok(()));
/// ```
pub fn check_lockdown(lockdown: &Lockdown, tenant: &str, provider: &str) -> Result<(), Denial> {
    if lockdown.global {
        return Err(Denial::Lockdown(LockdownScope::Global));
    }
    if lockdown.tenants.contains(tenant) {
        return Err(Denial::Lockdown(LockdownScope::Tenant));
    }
    // Iterating avoids building an owned (tenant, provider) key per request; the set is tiny.
    let provider_locked = lockdown
        .providers
        .iter()
        .any(|(t, p)| p == provider && (t == tenant || t == ANY_TENANT));
    if provider_locked {
        return Err(Denial::Lockdown(LockdownScope::Provider));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_passes() {
        assert_eq!(check_lockdown(&Lockdown::default(), "t", "p"), Ok(()));
    }

    #[test]
    fn global_beats_everything() {
        let l = Lockdown {
            global: true,
            ..Default::default()
        };
        assert_eq!(
            check_lockdown(&l, "t", "p"),
            Err(Denial::Lockdown(LockdownScope::Global))
        );
        assert_eq!(Denial::Lockdown(LockdownScope::Global).status(), 503);
        assert_eq!(Denial::Lockdown(LockdownScope::Global).code(), "lockdown");
    }

    #[test]
    fn tenant_scope() {
        let mut l = Lockdown::default();
        l.tenants.insert("acme".into());
        assert_eq!(
            check_lockdown(&l, "acme", "openai"),
            Err(Denial::Lockdown(LockdownScope::Tenant))
        );
        assert_eq!(check_lockdown(&l, "globex", "openai"), Ok(()));
    }

    #[test]
    fn provider_scope_and_wildcard() {
        let mut l = Lockdown::default();
        l.providers.insert(("acme".into(), "openai".into()));
        l.providers.insert((ANY_TENANT.into(), "bedrock".into()));
        assert_eq!(
            check_lockdown(&l, "acme", "openai"),
            Err(Denial::Lockdown(LockdownScope::Provider))
        );
        assert_eq!(check_lockdown(&l, "globex", "openai"), Ok(()));
        assert_eq!(
            check_lockdown(&l, "globex", "bedrock"),
            Err(Denial::Lockdown(LockdownScope::Provider))
        );
        assert!(!l.is_clear());
    }

    #[test]
    fn json_roundtrip_and_defaults() {
        let mut l = Lockdown::default();
        l.providers.insert(("acme".into(), "openai".into()));
        let json = serde_json::to_string(&l).expect("json");
        assert!(json.contains(r#"["acme","openai"]"#), "{json}");
        assert_eq!(serde_json::from_str::<Lockdown>(&json).expect("back"), l);
        let old: Lockdown = serde_json::from_str(r#"{"global":true}"#).expect("json");
        assert!(old.global && old.tenants.is_empty());
    }
}
