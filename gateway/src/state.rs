//! Shared gateway state: the store, the root key, the caches, the audit sink.

use crate::credentials::CredentialCache;
use crate::dns::DnsCache;
use crate::geo::GeoDb;
use crate::limits::{Counters, LocalCounters};
use crate::lockdown::LockdownState;
use crate::policies::PolicyBook;
use crate::providers::ProviderTable;
use crate::proxy_protocol::ProxiedPeers;
use crate::resolve::KeyResolver;
use crate::velocity::{NoNotifier, Notifier};
use async_trait::async_trait;
use ipnet::IpNet;
use latchkey_policy::locks::nonce::{LocalNonces, NonceStore};
use latchkey_policy::locks::velocity::{LocalVelocity, VelocityCounter};
use latchkey_policy::usage::PriceTable;
use latchkey_vault::audit::AuditSink;
use latchkey_vault::holds::LocalHolds;
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
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed. Empty: none.
    pub trusted_proxies: Vec<IpNet>,
    /// Accepted clock skew for signed requests, in seconds.
    pub signature_window_secs: u64,
    /// Most signed-request nonces remembered at once (each for twice the window). When full,
    /// signed requests are refused rather than replay protection weakened.
    pub nonce_capacity: usize,
    /// How long a request held by a policy waits for an admin's decision.
    pub hold_timeout: Duration,
    /// Most requests held at once; more are refused with `hold_queue_full`.
    pub hold_capacity: usize,
    /// Output tokens assumed for the worst case of a request that sets no `max_tokens`.
    pub default_max_output_tokens: u64,
    /// Model prices for budgets (the built-in table, or it merged with an operator's file).
    pub prices: Arc<PriceTable>,
    /// Circuit breaker tuning, for every (tenant, provider target).
    pub circuit: latchkey_policy::resilience::circuit::CircuitConfig,
    /// Retry limits and backoff.
    pub retry: latchkey_policy::resilience::retry::RetryPolicy,
    /// Mask the injected credential (and recognizable fragments of it) in provider responses.
    pub scrub_responses: bool,
    /// Cut an upgraded (WebSocket) session off at its next client frame once its key is revoked
    /// or suspended.
    pub cut_off_revoked_sessions: bool,
    /// Connections arrive through the PROXY protocol relay
    /// ([`crate::proxy_protocol`]); the client address comes from [`GatewayState::proxied`].
    pub proxy_protocol: bool,
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
            trusted_proxies: Vec::new(),
            signature_window_secs: latchkey_policy::locks::signature::DEFAULT_WINDOW_SECS,
            nonce_capacity: 1_000_000,
            hold_timeout: crate::policy::DEFAULT_HOLD_TIMEOUT,
            hold_capacity: 1_000,
            default_max_output_tokens: 4_096,
            prices: Arc::new(PriceTable::builtin().clone()),
            proxy_protocol: false,
            cut_off_revoked_sessions: true,
            scrub_responses: true,
            circuit: Default::default(),
            retry: Default::default(),
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
    /// The geo database, when one is configured.
    pub geo: Option<Arc<GeoDb>>,
    /// Lockdown switches.
    pub lockdown: LockdownState,
    /// Seen request-signature nonces (replay protection).
    pub nonces: Arc<dyn NonceStore + Send + Sync>,
    /// Per-key velocity windows.
    pub velocity: Arc<dyn VelocityCounter + Send + Sync>,
    /// Where alerts (auto-suspensions) go.
    pub notifier: Arc<dyn Notifier>,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Each tenant's compiled policies and scope limits.
    pub policies: PolicyBook,
    /// Rate-limit and budget counters.
    pub counters: Arc<dyn Counters>,
    /// Requests parked for approval.
    pub holds: Arc<LocalHolds>,
    /// Model prices, for budgets.
    pub prices: Arc<PriceTable>,
    /// Clients behind PROXY protocol connections, by relay connection.
    pub proxied: Arc<ProxiedPeers>,
    /// Circuit breakers per (tenant, provider target).
    pub circuits: crate::circuits::CircuitBoard,
    /// Set when the process starts shutting down or hands its sockets to a new process;
    /// `/readyz` then answers 503 so load balancers stop sending traffic.
    pub draining: std::sync::atomic::AtomicBool,
}

impl GatewayState {
    /// Builds the state.
    pub fn new(
        store: Arc<dyn Store>,
        root: RootKey,
        audit: Arc<dyn AuditSink>,
        options: GatewayOptions,
    ) -> Arc<Self> {
        Self::with_extras(store, root, audit, options, None, Arc::new(NoNotifier))
    }

    /// Builds the state with a geo database and a notifier (the server's full wiring).
    pub fn with_extras(
        store: Arc<dyn Store>,
        root: RootKey,
        audit: Arc<dyn AuditSink>,
        options: GatewayOptions,
        geo: Option<Arc<GeoDb>>,
        notifier: Arc<dyn Notifier>,
    ) -> Arc<Self> {
        let nonces = Arc::new(LocalNonces::new(options.nonce_capacity));
        let holds = Arc::new(LocalHolds::new(options.hold_capacity));
        let prices = options.prices.clone();
        let circuit_config = options.circuit.clone();
        let metrics = crate::metrics::Metrics::new();
        Arc::new(GatewayState {
            keys: KeyResolver::new(
                store.clone(),
                root.clone(),
                &options,
                metrics.cache_observer("keys", "key_by_hash"),
            ),
            credentials: CredentialCache::new(
                store.clone(),
                root,
                &options,
                metrics.cache_observer("credentials", "active_credential"),
            ),
            providers: ProviderTable::new(store.clone(), options.allow_private_upstreams),
            dns: DnsCache::new(options.allow_private_upstreams),
            store,
            audit,
            options,
            geo,
            lockdown: LockdownState::default(),
            nonces,
            velocity: Arc::new(LocalVelocity::new(100_000)),
            notifier,
            metrics,
            policies: PolicyBook::default(),
            counters: Arc::new(LocalCounters::default()),
            holds,
            prices,
            proxied: Arc::new(ProxiedPeers::default()),
            draining: std::sync::atomic::AtomicBool::new(false),
            circuits: crate::circuits::CircuitBoard::new(circuit_config),
        })
    }
}

impl GatewayState {
    /// The Prometheus exposition, with point-in-time gauges (circuit states) refreshed first.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .audit_queue(self.audit.queue_depth(), self.audit.lag_seconds());
        for c in self.circuits.snapshot(None) {
            self.metrics
                .circuit_state(&c.tenant, &c.target, c.snapshot.state.as_gauge());
        }
        self.metrics.render()
    }
}

#[async_trait]
impl ChangeListener for GatewayState {
    async fn changed(&self, change: Change) {
        match change {
            Change::Key { hash } => self.keys.invalidate(&hash).await,
            Change::Credentials { .. } => self.credentials.invalidate_all(),
            Change::Providers { tenant } => self.providers.invalidate(&tenant).await,
            Change::Policies { tenant } => {
                if let Err(e) = self.policies.reload(self.store.as_ref(), &tenant).await {
                    // Serving the old set would ignore the admin's change; make the next
                    // request load it again instead.
                    tracing::error!(error = %e, %tenant, "could not reload policies");
                    self.policies.forget(&tenant);
                }
            }
            Change::Lockdown => {
                if let Err(e) = self.lockdown.reload(self.store.as_ref()).await {
                    tracing::error!(error = %e, "could not reload lockdown switches");
                }
            }
        }
    }
}
