//! The decrypted credential for a (tenant, provider, workload), cached in memory.
//!
//! Decryption happens once per TTL, not per request. Cached values are [`SecretString`]s, so they
//! are zeroized when evicted, and never printed.

use crate::errors::GatewayError;
use crate::metrics::CacheObserver;
use crate::state::GatewayOptions;
use latchkey_policy::scrub::Scrubber;
use latchkey_vault::envelope::{self, Binding};
use latchkey_vault::rootkey::RootKey;
use latchkey_vault::store::Store;
use latchkey_vault::SecretString;
use moka::future::Cache;
use std::sync::Arc;

/// A credential ready to inject.
#[derive(Debug)]
pub struct Injectable {
    /// Credential id (for audit).
    pub credential_id: String,
    /// The plaintext secret.
    pub secret: SecretString,
    /// Masks this secret (and recognizable fragments of it) in provider responses; built once
    /// per decryption, beside the secret.
    pub scrubber: Scrubber,
}

/// The forms a secret can take on the wire: as stored, base64 (`basic` auth sends
/// `user:password` encoded), the password alone, and the secret parts of an AWS credential.
pub fn secret_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let mut forms = vec![secret.to_string()];
    if let Some((_, password)) = secret.split_once(':') {
        if !password.is_empty() && !secret.trim_start().starts_with('{') {
            forms.push(password.to_string());
        }
    }
    forms.push(base64::engine::general_purpose::STANDARD.encode(secret));
    if let Ok(serde_json::Value::Object(aws)) = serde_json::from_str::<serde_json::Value>(secret) {
        for field in ["secret_access_key", "session_token"] {
            if let Some(v) = aws.get(field).and_then(|v| v.as_str()) {
                forms.push(v.to_string());
            }
        }
    }
    forms
}

/// `tenant \u{1f} provider \u{1f} workload`: one allocation per lookup instead of three.
type CacheKey = String;

fn cache_key(tenant: &str, provider: &str, workload: Option<&str>) -> CacheKey {
    let w = workload.unwrap_or("");
    let mut k = String::with_capacity(tenant.len() + provider.len() + w.len() + 3);
    k.push_str(tenant);
    k.push('\u{1f}');
    k.push_str(provider);
    k.push('\u{1f}');
    if let Some(w) = workload {
        k.push('=');
        k.push_str(w);
    }
    k
}

/// Caches decrypted credentials.
pub struct CredentialCache {
    store: Arc<dyn Store>,
    root: RootKey,
    cache: Cache<CacheKey, Arc<Injectable>>,
    obs: CacheObserver,
}

impl CredentialCache {
    /// A cache with the TTL from `opts`.
    pub fn new(
        store: Arc<dyn Store>,
        root: RootKey,
        opts: &GatewayOptions,
        obs: CacheObserver,
    ) -> Self {
        CredentialCache {
            obs,
            store,
            root,
            cache: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(opts.credential_cache_ttl)
                .build(),
        }
    }

    /// The credential to inject for this tenant, provider and workload.
    pub async fn get(
        &self,
        tenant: &str,
        provider: &str,
        workload: Option<&str>,
    ) -> Result<Arc<Injectable>, GatewayError> {
        let key = cache_key(tenant, provider, workload);
        // Fast path: a plain read; the loader below (and its future) only on a miss.
        if let Some(hit) = self.cache.get(&key).await {
            self.obs.hit.inc();
            return Ok(hit);
        }
        self.obs.miss.inc();
        let timer = self.obs.store.clone();
        let store = self.store.clone();
        let root = self.root.clone();
        let (tenant, provider, workload) = (
            tenant.to_string(),
            provider.to_string(),
            workload.map(str::to_string),
        );
        self.cache
            .try_get_with(key, async move {
                let started = std::time::Instant::now();
                let found = store
                    .active_credential(&tenant, &provider, workload.as_deref())
                    .await;
                timer.observe(started.elapsed().as_secs_f64());
                let found = found
                    .map_err(|e| {
                        tracing::error!(error = %e, "credential lookup failed");
                        GatewayError::new(503, "store_unavailable", "the credential store is unreachable; try again shortly")
                    })?;
                let Some((cred, sealed)) = found else {
                    let scope = workload
                        .map(|w| format!(" for workload {w:?}"))
                        .unwrap_or_default();
                    return Err(GatewayError::new(
                        503,
                        "no_credential",
                        format!("no credential is connected for provider {provider:?}{scope}; run `latchkey connect {provider}`"),
                    ));
                };
                let binding = Binding {
                    tenant: &cred.tenant,
                    credential: &cred.id,
                    version: cred.version,
                };
                let secret = envelope::open(&root, &binding, &sealed).map_err(|_| {
                    tracing::error!(credential = %cred.id, "credential does not decrypt under the root key");
                    GatewayError::internal("the stored credential could not be decrypted")
                })?;
                let scrubber = Scrubber::new(&secret_forms(secret.expose())).map_err(|e| {
                    tracing::error!(credential = %cred.id, error = %e, "cannot build the response scrubber for this credential");
                    GatewayError::internal("the stored credential cannot be used safely")
                })?;
                Ok(Arc::new(Injectable {
                    credential_id: cred.id,
                    secret,
                    scrubber,
                }))
            })
            .await
            .map_err(|e: Arc<GatewayError>| (*e).clone())
    }

    /// Drops every cached credential (after a credential is added, rotated or deleted).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}
