//! Persistence behind one trait, so the embedded SQLite store and the fleet's PostgreSQL store
//! are interchangeable. Nothing secret is stored in plaintext: credentials are sealed
//! ([`crate::envelope`]), keys and admin tokens are HMAC hashes.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::audit::{AuditRecord, ChainHead};
use crate::envelope::Sealed;
use crate::model::{
    AdminToken, Credential, Incident, KeyRecord, KeyStatus, LockdownEntry, ModelEntry,
    PolicyRecord, Provider, ScopeLimits,
};
use async_trait::async_trait;

/// A store failure. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(String),
    /// A uniqueness rule was violated (e.g. a duplicate id).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored row could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything Latchkey persists. Implementations must be safe to share across threads; each call
/// is atomic.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap liveness check (used by `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Reads a metadata value.
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;
    /// Writes a metadata value.
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    /// Custom providers and overrides of built-in ones.
    async fn list_providers(&self, tenant: &str) -> StoreResult<Vec<Provider>>;
    /// Inserts or replaces a provider row.
    async fn put_provider(&self, tenant: &str, provider: &Provider) -> StoreResult<()>;
    /// Deletes a provider row; true when one existed.
    async fn delete_provider(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// Stores a new credential with its first sealed version.
    async fn insert_credential(&self, cred: &Credential, sealed: &Sealed) -> StoreResult<()>;
    /// Lists credentials (metadata only).
    async fn list_credentials(&self, tenant: &str) -> StoreResult<Vec<Credential>>;
    /// One credential (metadata only).
    async fn get_credential(&self, tenant: &str, id: &str) -> StoreResult<Option<Credential>>;
    /// Deletes a credential and destroys its ciphertext; true when one existed.
    async fn delete_credential(&self, tenant: &str, id: &str) -> StoreResult<bool>;
    /// The newest credential for `provider` serving `workload` (any when `None`), with its
    /// active sealed version.
    async fn active_credential(
        &self,
        tenant: &str,
        provider: &str,
        workload: Option<&str>,
    ) -> StoreResult<Option<(Credential, Sealed)>>;

    /// Stores a new proxy key record, every field included (`bound_ip`, sealed `signing`).
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()>;
    /// Looks a key up by its hash (any tenant). The record carries its sealed `signing` secret.
    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<KeyRecord>>;
    /// One key by id.
    async fn get_key(&self, tenant: &str, id: &str) -> StoreResult<Option<KeyRecord>>;
    /// All keys of a tenant.
    async fn list_keys(&self, tenant: &str) -> StoreResult<Vec<KeyRecord>>;
    /// Replaces a key's configuration (matched by tenant and id): name, scope, models, expiry,
    /// `locks`, `updated_at` and `signing` (pass the record as loaded to keep the secret, `None`
    /// removes it). The hash, `status`, `revoked_at`, `suspended_reason` and `bound_ip` are kept
    /// as stored: they change only through [`Store::set_key_status`], [`Store::bind_key_ip`] and
    /// [`Store::set_key_bound_ip`], so an admin edit racing the gateway never undoes a
    /// suspension or an auto-bind.
    async fn update_key(&self, key: &KeyRecord) -> StoreResult<()>;
    /// IP auto-bind: atomically sets the key's `bound_ip` to `ip` only if it is unset
    /// (compare-and-set). Returns the bound address after the call (the winner's, which differs
    /// from `ip` when another request bound the key first), or `None` when the key does not
    /// exist.
    async fn bind_key_ip(&self, tenant: &str, id: &str, ip: &str) -> StoreResult<Option<String>>;
    /// Sets (`Some`, overwriting any binding: an explicit `keys lock`) or clears (`None`: unbind,
    /// so the next request re-binds) the key's `bound_ip`. Returns the updated record, or `None`
    /// when the key does not exist.
    async fn set_key_bound_ip(
        &self,
        tenant: &str,
        id: &str,
        ip: Option<&str>,
    ) -> StoreResult<Option<KeyRecord>>;
    /// Changes a key's status atomically and returns the updated record (`None`: no such key).
    ///
    /// - `Suspended` records `reason` in `suspended_reason`; `Active` (reinstate) clears it.
    /// - `Revoked` sets `revoked_at` (once) and is final.
    /// - Changing a revoked key to anything but `Revoked` fails with [`StoreError::Conflict`]
    ///   and changes nothing: a revoked key is never un-revoked.
    /// - Setting the status a key already has is allowed (a repeated suspend updates the reason).
    async fn set_key_status(
        &self,
        tenant: &str,
        id: &str,
        status: KeyStatus,
        reason: Option<&str>,
    ) -> StoreResult<Option<KeyRecord>>;

    /// Every lockdown switch in force, all tenants (the gateway loads these at start and on
    /// [`crate::notify::Change::Lockdown`]).
    async fn list_lockdowns(&self) -> StoreResult<Vec<LockdownEntry>>;
    /// Turns a lockdown switch on. Idempotent: one entry per `(tenant, provider)`; setting it
    /// again updates `reason` and `created_by` and keeps the original `created_at`.
    async fn set_lockdown(&self, entry: &LockdownEntry) -> StoreResult<()>;
    /// Turns a lockdown switch off; true when it was on. Only the exact `(tenant, provider)`
    /// entry is removed (lifting a provider lockdown leaves a tenant-wide one in force).
    async fn clear_lockdown(&self, tenant: &str, provider: Option<&str>) -> StoreResult<bool>;

    /// Records an incident.
    async fn insert_incident(&self, incident: &Incident) -> StoreResult<()>;
    /// A tenant's incidents, newest first, at most `limit`.
    async fn list_incidents(&self, tenant: &str, limit: i64) -> StoreResult<Vec<Incident>>;
    /// Marks an incident resolved (keeping the first resolution time when already resolved);
    /// false when the tenant has no such incident.
    async fn resolve_incident(&self, tenant: &str, id: &str) -> StoreResult<bool>;

    /// A tenant's policies, by name.
    async fn list_policies(&self, tenant: &str) -> StoreResult<Vec<PolicyRecord>>;
    /// One policy.
    async fn get_policy(&self, tenant: &str, name: &str) -> StoreResult<Option<PolicyRecord>>;
    /// Inserts or replaces a policy (matched by tenant and name).
    async fn put_policy(&self, policy: &PolicyRecord) -> StoreResult<()>;
    /// Deletes a policy; true when one existed. Fails with [`StoreError::Conflict`] (changing
    /// nothing) while a key that is not revoked uses it, or it is the tenant default.
    async fn delete_policy(&self, tenant: &str, name: &str) -> StoreResult<bool>;
    /// The name of the tenant's default policy (applies to keys without a policy of their own).
    async fn tenant_policy(&self, tenant: &str) -> StoreResult<Option<String>>;
    /// Sets (`Some`) or clears (`None`) the tenant's default policy.
    async fn set_tenant_policy(&self, tenant: &str, name: Option<&str>) -> StoreResult<()>;

    /// Tenant-wide and per-workload limits of a tenant.
    async fn list_scope_limits(&self, tenant: &str) -> StoreResult<Vec<ScopeLimits>>;
    /// Inserts or replaces the limits of one scope.
    async fn put_scope_limits(&self, limits: &ScopeLimits) -> StoreResult<()>;
    /// Removes the limits of one scope; true when some existed.
    async fn delete_scope_limits(&self, tenant: &str, scope: &str) -> StoreResult<bool>;

    /// A tenant's model registry, by alias.
    async fn list_models(&self, tenant: &str) -> StoreResult<Vec<ModelEntry>>;
    /// Inserts or replaces a registry entry (matched by tenant and alias).
    async fn put_model(&self, entry: &ModelEntry) -> StoreResult<()>;
    /// Removes a registry entry; true when one existed.
    async fn delete_model(&self, tenant: &str, alias: &str) -> StoreResult<bool>;

    /// Stores an admin token record.
    async fn insert_admin_token(&self, token: &AdminToken) -> StoreResult<()>;
    /// Looks an admin token up by hash.
    async fn admin_token_by_hash(&self, hash: &str) -> StoreResult<Option<AdminToken>>;

    /// The head of an audit chain.
    async fn audit_head(&self, chain: &str) -> StoreResult<ChainHead>;
    /// Appends already-chained rows in one transaction.
    async fn append_audit(&self, rows: &[AuditRecord]) -> StoreResult<()>;
    /// Ids of every chain.
    async fn audit_chains(&self) -> StoreResult<Vec<String>>;
    /// Rows of a chain in stored order, starting after `after_seq`, at most `limit`.
    async fn audit_rows(
        &self,
        chain: &str,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// The newest rows of a tenant across chains, newest first.
    async fn recent_audit(&self, tenant: &str, limit: i64) -> StoreResult<Vec<AuditRecord>>;
}
