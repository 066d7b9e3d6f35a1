//! Shared gateway state: the store, the root key, the caches, the audit sink.

use crate::credentials::CredentialCache;
use crate::dns::DnsCache;
use crate::providers::ProviderTable;
use crate::resolve::KeyResolver;
use async_trait::async_trait;
use latchkey_vault::audit::AuditSink;
use latchkey_vault::notify::{Change, ChangeListener};
use latchkey_vault::rootkey::RootKey;
use latchkey_vault::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Gateway tunables.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Allow providers whose base URL resolves to loopback/private/link-local addresses.
    pub allow_private_upstreams: bool,
    /// How long a resolved key record is cached.
    pub key_cache_ttl: Duration,
    /// How long an unknown key is remembered as unknown.
    pub negative_cache_ttl: Duration,
    /// Most key records (and as many negative entries) held in memory.
    pub key_cache_capacity: u64,
    /// How long a decrypted credential stays in memory.
    pub credential_cache_ttl: Duration,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream idle read timeout (time between bytes; long for slow model responses).
    pub read_timeout: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            allow_private_upstreams: false,
            key_cache_ttl: Duration::from_secs(300),
            negative_cache_ttl: Duration::from_secs(30),
            key_cache_capacity: 100_000,
            credential_cache_ttl: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
        }
    }
}

/// Everything the pipeline stages share. Cheap to clone behind an `Arc`.
pub struct GatewayState {
    /// The persistent store (never awaited on the hot path for cached keys).
    pub store: Arc<dyn Store>,
    /// Key resolution cache.
    pub keys: KeyResolver,
    /// Decrypted-credential cache.
    pub credentials: CredentialCache,
    /// Provider tables per tenant.
    pub providers: ProviderTable,
    /// Upstream address cache.
    pub dns: DnsCache,
    /// Where audit events go.
    pub audit: Arc<dyn AuditSink>,
    /// Tunables.
    pub options: GatewayOptions,
}

impl GatewayState {
    /// Builds the state.
    pub fn new(
        store: Arc<dyn Store>,
        root: RootKey,
        audit: Arc<dyn AuditSink>,
        options: GatewayOptions,
    ) -> Arc<Self> {
        Arc::new(GatewayState {
            keys: KeyResolver::new(store.clone(), root.clone(), &options),
            credentials: CredentialCache::new(store.clone(), root, &options),
            providers: ProviderTable::new(store.clone(), options.allow_private_upstreams),
            dns: DnsCache::new(options.allow_private_upstreams),
            store,
            audit,
            options,
        })
    }
}

#[async_trait]
impl ChangeListener for GatewayState {
    async fn changed(&self, change: Change) {
        match change {
            Change::Key { hash } => self.keys.invalidate(&hash).await,
            Change::Credentials { .. } => self.credentials.invalidate_all(),
            Change::Providers { tenant } => self.providers.invalidate(&tenant).await,
        }
    }
}
