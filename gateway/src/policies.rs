//! Each tenant's compiled policies, scope limits and model registry, read on every request without a lock.
//!
//! A tenant's set is loaded from the store on its first request and rebuilt whenever an admin
//! changes a policy, the tenant default or a scope limit
//! ([`latchkey_vault::notify::Change::Policies`]). A rebuild compiles every policy once and then
//! swaps the whole set in one atomic step: a request holds the `Arc` it started with, so it is
//! decided entirely by the old version or entirely by the new one, never by a mix.

use arc_swap::ArcSwap;
use latchkey_policy::limits::Limits;
use latchkey_policy::rules::{CompiledPolicy, Policy};
use latchkey_vault::model::{ModelEntry, TENANT_SCOPE};
use latchkey_vault::store::{Store, StoreResult};
use std::collections::HashMap;
use std::sync::Arc;

/// One tenant's policies and limits.
#[derive(Default)]
pub struct TenantRules {
    /// The tenant's default policy name, if any.
    pub default: Option<String>,
    /// Every stored policy, compiled; `Err` holds why a stored document no longer compiles.
    pub policies: HashMap<String, Result<Arc<CompiledPolicy>, String>>,
    /// Tenant-wide limits.
    pub tenant_limits: Option<Limits>,
    /// Per-workload limits.
    pub workload_limits: HashMap<String, Limits>,
    /// The model registry of `/v1`, by alias.
    pub models: HashMap<String, ModelEntry>,
}

/// Why the policy a key names cannot be applied (the gateway fails closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyMissing {
    /// The named policy does not exist (deleted while cached, or never applied).
    #[error("policy {0:?} does not exist")]
    Unknown(String),
    /// The stored document does not compile.
    #[error("policy {0:?} cannot be compiled: {1}")]
    Broken(String, String),
}

impl TenantRules {
    /// The policy that decides for a key: its own (`key_policy`), else the tenant default, else
    /// none.
    pub fn policy_for(
        &self,
        key_policy: Option<&str>,
    ) -> Result<Option<&Arc<CompiledPolicy>>, PolicyMissing> {
        let Some(name) = key_policy.or(self.default.as_deref()) else {
            return Ok(None);
        };
        match self.policies.get(name) {
            Some(Ok(p)) => Ok(Some(p)),
            Some(Err(why)) => Err(PolicyMissing::Broken(name.to_string(), why.clone())),
            None => Err(PolicyMissing::Unknown(name.to_string())),
        }
    }

    /// Builds the set from what the store holds.
    pub async fn load(store: &dyn Store, tenant: &str) -> StoreResult<TenantRules> {
        let mut rules = TenantRules {
            default: store.tenant_policy(tenant).await?,
            ..TenantRules::default()
        };
        for rec in store.list_policies(tenant).await? {
            let compiled = Policy::from_toml(&rec.document)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            if let Err(why) = &compiled {
                tracing::error!(tenant, policy = %rec.name, error = %why, "stored policy does not compile; keys using it are refused");
            }
            rules.policies.insert(rec.name, compiled);
        }
        for scope in store.list_scope_limits(tenant).await? {
            let limits: Limits = match serde_json::from_value(scope.limits.clone()) {
                Ok(l) => l,
                Err(e) => {
                    // Fail closed: a limit we cannot read becomes "nothing allowed" rather than
                    // "no limit".
                    tracing::error!(tenant, scope = %scope.scope, error = %e, "stored limits are unreadable; treating them as zero");
                    Limits {
                        rpm: Some(0),
                        tpm: Some(0),
                        budget_daily_usd: Some(0.0),
                        budget_monthly_usd: Some(0.0),
                    }
                }
            };
            if scope.scope == TENANT_SCOPE {
                rules.tenant_limits = Some(limits);
            } else if let Some(w) = scope.scope.strip_prefix("workload:") {
                rules.workload_limits.insert(w.to_string(), limits);
            }
        }
        rules.models = store
            .list_models(tenant)
            .await?
            .into_iter()
            .map(|m| (m.alias.clone(), m))
            .collect();
        Ok(rules)
    }
}

/// Every tenant's [`TenantRules`] seen so far.
#[derive(Default)]
pub struct PolicyBook {
    tenants: ArcSwap<HashMap<String, Arc<TenantRules>>>,
    /// Serializes loads so two first requests do not race a reload.
    loading: tokio::sync::Mutex<()>,
}

impl PolicyBook {
    /// The tenant's rules: a lock-free read, or one store load on the tenant's first request.
    pub async fn get(&self, store: &dyn Store, tenant: &str) -> StoreResult<Arc<TenantRules>> {
        if let Some(r) = self.tenants.load().get(tenant) {
            return Ok(r.clone());
        }
        let _guard = self.loading.lock().await;
        if let Some(r) = self.tenants.load().get(tenant) {
            return Ok(r.clone());
        }
        let rules = Arc::new(TenantRules::load(store, tenant).await?);
        self.install(tenant, rules.clone());
        Ok(rules)
    }

    /// Rebuilds a tenant's rules now (after an admin change), if it was loaded at all.
    pub async fn reload(&self, store: &dyn Store, tenant: &str) -> StoreResult<()> {
        let _guard = self.loading.lock().await;
        if !self.tenants.load().contains_key(tenant) {
            return Ok(());
        }
        let rules = Arc::new(TenantRules::load(store, tenant).await?);
        self.install(tenant, rules);
        Ok(())
    }

    /// Forgets a tenant (the next request loads it again).
    pub fn forget(&self, tenant: &str) {
        self.tenants.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(tenant);
            m
        });
    }

    fn install(&self, tenant: &str, rules: Arc<TenantRules>) {
        self.tenants.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(tenant.to_string(), rules.clone());
            m
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use latchkey_vault::model::{PolicyRecord, ScopeLimits};
    use latchkey_vault::store::SqliteStore;

    fn record(name: &str, doc: &str) -> PolicyRecord {
        PolicyRecord {
            tenant: "default".into(),
            name: name.into(),
            document: doc.into(),
            fingerprint: String::new(),
            mode: "enforce".into(),
            rules: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            updated_by: "test".into(),
        }
    }

    #[tokio::test]
    async fn loads_compiles_and_swaps_on_reload() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .put_policy(&record("p", "name = \"p\"\ndefault = \"allow\"\n"))
            .await
            .unwrap();
        store
            .put_policy(&record("broken", "name = \"broken\"\n"))
            .await
            .unwrap();
        store.set_tenant_policy("default", Some("p")).await.unwrap();
        store
            .put_scope_limits(&ScopeLimits {
                tenant: "default".into(),
                scope: "workload:ci".into(),
                limits: serde_json::json!({"rpm": 5}),
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
        let book = PolicyBook::default();
        let before = book.get(&store, "default").await.unwrap();
        assert_eq!(before.policy_for(None).unwrap().unwrap().name(), "p");
        assert!(matches!(
            before.policy_for(Some("broken")),
            Err(PolicyMissing::Broken(..))
        ));
        assert!(matches!(
            before.policy_for(Some("gone")),
            Err(PolicyMissing::Unknown(..))
        ));
        assert_eq!(before.workload_limits["ci"].rpm, Some(5));

        store
            .put_policy(&record("p", "name = \"p\"\ndefault = \"block\"\n"))
            .await
            .unwrap();
        book.reload(&store, "default").await.unwrap();
        let after = book.get(&store, "default").await.unwrap();
        // The request that started before keeps its version; new ones see the new one.
        assert_eq!(
            before.policy_for(None).unwrap().unwrap().default_action(),
            latchkey_policy::rules::Action::Allow
        );
        assert_eq!(
            after.policy_for(None).unwrap().unwrap().default_action(),
            latchkey_policy::rules::Action::Block
        );
    }
}
