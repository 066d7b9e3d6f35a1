//! Change notifications from the control plane to whatever caches store data.
//!
//! On a single node the admin API calls the gateway's caches directly; in a fleet the same
//! [`Change`]s travel over Redis pub/sub. Listeners must apply a change before returning, so the
//! very next request sees it (a revoked key is refused on the next request).

use async_trait::async_trait;

/// Something that changed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A proxy key (identified by its hash) was updated or revoked.
    Key {
        /// The key's HMAC hash.
        hash: String,
    },
    /// Credentials of a tenant's provider were added, rotated or deleted.
    Credentials {
        /// Tenant.
        tenant: String,
        /// Provider namespace.
        provider: String,
    },
    /// A tenant's providers were added, changed or removed.
    Providers {
        /// Tenant.
        tenant: String,
    },
    /// A lockdown switch was turned on or off; reload them all with
    /// [`crate::store::Store::list_lockdowns`].
    Lockdown,
    /// A tenant's policies, its default policy, its scope limits or its model registry changed;
    /// reload them with [`crate::store::Store::list_policies`] and friends.
    Policies {
        /// Tenant.
        tenant: String,
    },
}

/// Receives [`Change`]s.
#[async_trait]
pub trait ChangeListener: Send + Sync {
    /// Applies a change; returns once caches no longer serve the old state.
    async fn changed(&self, change: Change);
}

/// A listener that does nothing (tools and tests without a gateway).
pub struct NoListener;

#[async_trait]
impl ChangeListener for NoListener {
    async fn changed(&self, _change: Change) {}
}
