//! The provider table of a tenant: the built-in catalog merged with the tenant's custom
//! providers and overrides, validated once per load (not per request).

use crate::errors::GatewayError;
use latchkey_vault::catalog::{self, Upstream};
use latchkey_vault::model::Provider;
use latchkey_vault::store::Store;
use moka::future::Cache;
use std::collections::HashMap;
use std::sync::Arc;

/// A provider with its parsed upstream, or the reason it cannot be used.
#[derive(Debug)]
pub struct RoutedProvider {
    /// The definition.
    pub provider: Provider,
    /// The parsed base URL, or why it was refused (SSRF guard, bad URL, not configured).
    pub upstream: Result<Upstream, String>,
}

type Table = Arc<HashMap<String, Arc<RoutedProvider>>>;

/// Merges the catalog with store rows (store rows win) into a validated table.
pub fn build_table(
    rows: Vec<Provider>,
    allow_private: bool,
) -> HashMap<String, Arc<RoutedProvider>> {
    let mut merged: HashMap<String, Provider> = catalog::builtin()
        .iter()
        .map(|p| (p.id.clone(), p.clone()))
        .collect();
    for p in rows {
        merged.insert(p.id.clone(), p);
    }
    merged
        .into_iter()
        .map(|(id, provider)| {
            let upstream = if provider.requires_base_url {
                Err(format!(
                    "provider {id:?} needs its own base URL; set it with `PATCH /api/v1/providers/{id}` {{\"base_url\": \"https://…\"}}"
                ))
            } else {
                catalog::validate(&provider, allow_private).map_err(|e| e.to_string())
            };
            (id, Arc::new(RoutedProvider { provider, upstream }))
        })
        .collect()
}

/// Per-tenant provider tables, loaded lazily and dropped on change.
pub struct ProviderTable {
    store: Arc<dyn Store>,
    allow_private: bool,
    tables: Cache<String, Table>,
}

impl ProviderTable {
    /// An empty table set.
    pub fn new(store: Arc<dyn Store>, allow_private: bool) -> Self {
        ProviderTable {
            store,
            allow_private,
            tables: Cache::builder().max_capacity(10_000).build(),
        }
    }

    /// The provider `id` of `tenant`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Arc<RoutedProvider>, GatewayError> {
        // Fast path: a plain read; the loader (and its future) only on a miss.
        if let Some(table) = self.tables.get(tenant).await {
            return table
                .get(id)
                .cloned()
                .ok_or_else(|| GatewayError::unknown_provider(id));
        }
        let store = self.store.clone();
        let allow = self.allow_private;
        let t = tenant.to_string();
        let table = self
            .tables
            .try_get_with(tenant.to_string(), async move {
                store
                    .list_providers(&t)
                    .await
                    .map(|rows| Arc::new(build_table(rows, allow)))
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "provider table load failed");
                GatewayError::new(
                    503,
                    "store_unavailable",
                    "the provider table could not be loaded",
                )
            })?;
        table
            .get(id)
            .cloned()
            .ok_or_else(|| GatewayError::unknown_provider(id))
    }

    /// Drops a tenant's table; the next request reloads it.
    pub async fn invalidate(&self, tenant: &str) {
        self.tables.invalidate(tenant).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_guard_applies() {
        let mut openai = catalog::builtin()
            .iter()
            .find(|p| p.id == "openai")
            .unwrap()
            .clone();
        openai.base_url = "http://127.0.0.1:1234".into();
        let t = build_table(vec![openai.clone()], false);
        assert!(t["openai"]
            .upstream
            .as_ref()
            .unwrap_err()
            .contains("private"));
        let t = build_table(vec![openai], true);
        assert_eq!(t["openai"].upstream.as_ref().unwrap().port, 1234);
        assert!(t["azure-openai"].upstream.is_err());
        assert!(t["anthropic"].upstream.is_ok());
    }
}
