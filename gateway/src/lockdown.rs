//! The lockdown switches in force, read on every request without a lock and reloaded from the
//! store whenever an admin flips one ([`latchkey_vault::notify::Change::Lockdown`]).

use arc_swap::ArcSwap;
use latchkey_policy::locks::lockdown::{Lockdown, ANY_TENANT};
use latchkey_vault::model::{LockdownEntry, ALL_TENANTS};
use latchkey_vault::store::{Store, StoreResult};
use std::sync::Arc;

/// The current lockdown, swapped atomically.
#[derive(Default)]
pub struct LockdownState {
    current: ArcSwap<Lockdown>,
}

impl LockdownState {
    /// The switches in force now.
    pub fn load(&self) -> Arc<Lockdown> {
        self.current.load_full()
    }

    /// Re-reads the switches from the store.
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        let entries = store.list_lockdowns().await?;
        self.current.store(Arc::new(from_entries(&entries)));
        Ok(())
    }
}

/// Folds stored switches into the decision structure.
pub fn from_entries(entries: &[LockdownEntry]) -> Lockdown {
    let mut l = Lockdown::default();
    for e in entries {
        match (&e.provider, e.tenant.as_str()) {
            (None, ALL_TENANTS) => l.global = true,
            (None, tenant) => {
                l.tenants.insert(tenant.to_string());
            }
            (Some(p), tenant) => {
                let t = if tenant == ALL_TENANTS {
                    ANY_TENANT
                } else {
                    tenant
                };
                l.providers.insert((t.to_string(), p.clone()));
            }
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_policy::locks::lockdown::check_lockdown;

    fn entry(tenant: &str, provider: Option<&str>) -> LockdownEntry {
        LockdownEntry {
            tenant: tenant.into(),
            provider: provider.map(str::to_string),
            reason: None,
            created_at: chrono::Utc::now(),
            created_by: "system".into(),
        }
    }

    #[test]
    fn entries_map_to_scopes() {
        assert!(from_entries(&[]).is_clear());
        let l = from_entries(&[entry("*", None)]);
        assert!(check_lockdown(&l, "default", "openai").is_err());
        let l = from_entries(&[entry("default", Some("openai"))]);
        assert!(check_lockdown(&l, "default", "openai").is_err());
        assert!(check_lockdown(&l, "default", "anthropic").is_ok());
        assert!(check_lockdown(&l, "other", "openai").is_ok());
        let l = from_entries(&[entry("*", Some("stripe"))]);
        assert!(check_lockdown(&l, "other", "stripe").is_err());
        let l = from_entries(&[entry("acme", None)]);
        assert!(check_lockdown(&l, "acme", "x").is_err());
        assert!(check_lockdown(&l, "default", "x").is_ok());
    }
}
