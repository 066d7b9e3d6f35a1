//! Key resolution: presented key → key record, through a bounded in-process cache.
//!
//! The checksum is checked first, offline, so typos and random strings never reach the cache or
//! the store. Unknown keys are cached as unknown for a short TTL, so a flood of guesses with
//! valid checksums costs one store lookup per distinct key at most per TTL.

use crate::errors::GatewayError;
use crate::metrics::CacheObserver;
use crate::state::GatewayOptions;
use latchkey_policy::limits::Limits;
use latchkey_policy::locks::KeyLocks;
use latchkey_vault::envelope::{self, Binding};
use latchkey_vault::keyfmt::{self, KeyKind};
use latchkey_vault::model::KeyRecord;
use latchkey_vault::rootkey::RootKey;
use latchkey_vault::store::Store;
use latchkey_vault::SecretString;
use moka::future::Cache;
use std::sync::Arc;

/// A key record ready for the pipeline: its locks parsed and its signing secret decrypted once
/// per cache fill, never per request.
#[derive(Debug)]
pub struct ResolvedKey {
    /// The stored record.
    pub record: KeyRecord,
    /// The parsed locks (`record.locks` with `record.bound_ip` folded into an auto-bind lock).
    pub locks: KeyLocks,
    /// The decrypted per-key signing secret, for keys that require signed requests.
    pub signing: Option<SecretString>,
    /// The key's own limits (`record.limits` parsed); `None` when it has none.
    pub limits: Option<Limits>,
    /// The key's budget scope id (`tenant/key/ID`), built once.
    pub scope_id: String,
}

impl std::ops::Deref for ResolvedKey {
    type Target = KeyRecord;
    fn deref(&self) -> &KeyRecord {
        &self.record
    }
}

/// Parses a record's locks and opens its signing secret. A record whose locks do not parse or
/// whose secret does not decrypt is refused (fail closed) rather than served unlocked.
pub fn prepare(root: &RootKey, record: KeyRecord) -> Result<ResolvedKey, String> {
    let mut locks: KeyLocks = if record.locks.is_null() {
        KeyLocks::default()
    } else {
        serde_json::from_value(record.locks.clone())
            .map_err(|e| format!("key {} has unreadable locks: {e}", record.id))?
    };
    if let latchkey_policy::locks::ip::IpLock::AutoBind { bound } = &mut locks.ip {
        if bound.is_none() {
            *bound = match record.bound_ip.as_deref() {
                Some(ip) => Some(
                    ip.parse()
                        .map_err(|_| format!("key {} has an unreadable bound IP", record.id))?,
                ),
                None => None,
            };
        }
    }
    let signing = match (&record.signing, locks.signed) {
        (Some(sealed), true) => {
            let binding = Binding {
                tenant: &record.tenant,
                credential: &record.id,
                version: 0,
            };
            Some(
                envelope::open(root, &binding, sealed)
                    .map_err(|_| format!("key {} signing secret does not decrypt", record.id))?,
            )
        }
        (None, true) => {
            return Err(format!(
                "key {} requires signatures but has no secret",
                record.id
            ))
        }
        _ => None,
    };
    let limits = if record.limits.is_null() {
        None
    } else {
        let l: Limits = serde_json::from_value(record.limits.clone())
            .map_err(|e| format!("key {} has unreadable limits: {e}", record.id))?;
        (!l.is_empty()).then_some(l)
    };
    Ok(ResolvedKey {
        scope_id: format!("{}/key/{}", record.tenant, record.id),
        limits,
        record,
        locks,
        signing,
    })
}

/// Resolves presented keys to records.
pub struct KeyResolver {
    store: Arc<dyn Store>,
    root: RootKey,
    hasher: keyfmt::KeyHasher,
    known: Cache<String, Arc<ResolvedKey>>,
    unknown: Cache<String, ()>,
    obs: CacheObserver,
}

impl KeyResolver {
    /// A resolver with the cache sizes and TTLs from `opts`.
    pub fn new(
        store: Arc<dyn Store>,
        root: RootKey,
        opts: &GatewayOptions,
        obs: CacheObserver,
    ) -> Self {
        KeyResolver {
            obs,
            store,
            hasher: keyfmt::KeyHasher::new(&root),
            root,
            known: Cache::builder()
                .max_capacity(opts.key_cache_capacity)
                .time_to_live(opts.key_cache_ttl)
                .build(),
            unknown: Cache::builder()
                .max_capacity(opts.key_cache_capacity)
                .time_to_live(opts.negative_cache_ttl)
                .build(),
        }
    }

    /// The current record of a key already resolved once, by its hash: from the cache, or the
    /// store after an admin change dropped it. `None` when it no longer exists or cannot be
    /// read (callers treat that as "no longer valid").
    pub async fn current(&self, hash: &str) -> Option<Arc<ResolvedKey>> {
        if let Some(rec) = self.known.get(hash).await {
            return Some(rec);
        }
        let rec = self.store.key_by_hash(hash).await.ok()??;
        let resolved = Arc::new(prepare(&self.root, rec).ok()?);
        self.known.insert(hash.to_string(), resolved.clone()).await;
        Some(resolved)
    }

    /// Resolves a presented key. Errors: `invalid_key` for malformed or unknown keys, or a
    /// `upstream_unavailable`-style 503 when the store cannot be reached on a cache miss.
    pub async fn resolve(&self, presented: &str) -> Result<Arc<ResolvedKey>, GatewayError> {
        if keyfmt::parse(presented) != Some(KeyKind::Proxy) {
            return Err(GatewayError::invalid_key());
        }
        let hash = self.hasher.hash(presented);
        if let Some(rec) = self.known.get(&hash).await {
            self.obs.hit.inc();
            return Ok(rec);
        }
        if self.unknown.contains_key(&hash) {
            self.obs.hit.inc();
            return Err(GatewayError::invalid_key());
        }
        self.obs.miss.inc();
        let store = self.store.clone();
        let root = self.root.clone();
        let timer = self.obs.store.clone();
        let found = self
            .known
            .try_get_with(hash.clone(), async move {
                let started = std::time::Instant::now();
                let looked_up = store.key_by_hash(&hash).await;
                timer.observe(started.elapsed().as_secs_f64());
                match looked_up {
                    Ok(Some(rec)) => prepare(&root, rec).map(Arc::new).map_err(Some),
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(e.to_string())),
                }
            })
            .await;
        match found {
            Ok(rec) => Ok(rec),
            Err(e) => match e.as_ref() {
                None => {
                    let hash = self.hasher.hash(presented);
                    self.unknown.insert(hash, ()).await;
                    Err(GatewayError::invalid_key())
                }
                Some(msg) => {
                    tracing::error!(error = %msg, "key lookup failed");
                    Err(GatewayError::new(
                        503,
                        "store_unavailable",
                        "the key store is unreachable; try again shortly",
                    ))
                }
            },
        }
    }

    /// Forgets a key so the next request reads the store again.
    pub async fn invalidate(&self, hash: &str) {
        self.known.invalidate(hash).await;
        self.unknown.invalidate(hash).await;
    }
}
