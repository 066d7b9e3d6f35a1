//! Human approval holds: a request a policy marked `hold` waits here until an admin approves or
//! rejects it, or until its timeout passes.
//!
//! The gateway parks the request with [`LocalHolds::park`] and awaits [`Parked::wait`]; the admin
//! API lists and decides through the [`HoldDesk`] trait. The queue is bounded (a flood of held
//! requests is refused with [`HoldError::QueueFull`] instead of eating memory), and every hold
//! is decided at most once: the first decision removes it, so a second approval, or an approval
//! after the timeout, finds nothing. Because the parked request itself continues after approval,
//! an approved request reaches the provider exactly once.
//!
//! Holds live in the memory of the node that parked them (a fleet routes the admin's decision to
//! that node; see the fleet guide).
//!
//! ```
//! use latchkey_vault::holds::{HoldDesk, HoldInfo, HoldOutcome, LocalHolds};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let holds = LocalHolds::new(100);
//! let parked = holds.park(HoldInfo::new("default", "key_1", "openai", "POST", "/v1/chat/completions", "needs-review")).unwrap();
//! let id = parked.id().to_string();
//! holds.decide("default", &id, true, "admin:adm_1", None).unwrap();
//! assert!(matches!(parked.wait(Duration::from_secs(1)).await, HoldOutcome::Approved { .. }));
//! # });
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What an admin sees of a held request. Never the body: it may hold the very data the policy
/// is protecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    /// `hold_…`.
    pub id: String,
    /// Tenant of the key.
    pub tenant: String,
    /// The proxy key that sent the request.
    pub key_id: String,
    /// Provider namespace.
    pub provider: String,
    /// HTTP method.
    pub method: String,
    /// Upstream path.
    pub path: String,
    /// The requested model, if known.
    pub model: Option<String>,
    /// The policy rule that asked for the hold (or `default`).
    pub rule: String,
    /// The rule's message, if any.
    pub message: Option<String>,
    /// The request id the client will see.
    pub request_id: Option<String>,
    /// When it was parked.
    pub created_at: DateTime<Utc>,
    /// When it times out (set by [`LocalHolds::park`] callers through [`Parked::wait`]).
    pub expires_at: Option<DateTime<Utc>>,
}

impl HoldInfo {
    /// A hold description with a fresh id, stamped now.
    pub fn new(
        tenant: &str,
        key_id: &str,
        provider: &str,
        method: &str,
        path: &str,
        rule: &str,
    ) -> Self {
        HoldInfo {
            id: crate::keyfmt::new_id("hold"),
            tenant: tenant.into(),
            key_id: key_id.into(),
            provider: provider.into(),
            method: method.into(),
            path: path.into(),
            model: None,
            rule: rule.into(),
            message: None,
            request_id: None,
            created_at: Utc::now(),
            expires_at: None,
        }
    }
}

/// How a hold ended, as the parked request learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Approved: forward the request.
    Approved {
        /// Who approved (`admin:adm_…`).
        by: String,
    },
    /// Rejected: refuse the request.
    Rejected {
        /// Who rejected.
        by: String,
        /// Why, if they said.
        reason: Option<String>,
    },
    /// Nobody decided in time.
    TimedOut,
}

/// Why a hold call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// The queue is at capacity.
    #[error("too many requests are waiting for approval ({0} at most)")]
    QueueFull(usize),
    /// No such hold in this tenant (never existed, already decided, timed out or abandoned).
    #[error("no pending hold with that id (it may have been decided or timed out)")]
    NotFound,
}

/// What the admin API needs of the holds, wherever they live.
pub trait HoldDesk: Send + Sync {
    /// Pending holds of a tenant, oldest first.
    fn list(&self, tenant: &str) -> Vec<HoldInfo>;
    /// Approves (`approve`) or rejects a pending hold; returns it. The first decision wins.
    fn decide(
        &self,
        tenant: &str,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<HoldInfo, HoldError>;
}

struct Pending {
    info: HoldInfo,
    tx: oneshot::Sender<HoldOutcome>,
}

/// The in-process hold queue.
pub struct LocalHolds {
    capacity: usize,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl LocalHolds {
    /// A queue holding at most `capacity` requests at once.
    pub fn new(capacity: usize) -> Self {
        LocalHolds {
            capacity,
            pending: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Parks a request. Await [`Parked::wait`] for the decision; dropping the [`Parked`] (the
    /// client went away) withdraws the hold.
    pub fn park(&self, info: HoldInfo) -> Result<Parked, HoldError> {
        let (tx, rx) = oneshot::channel();
        let id = info.id.clone();
        let mut pending = lock(&self.pending);
        if pending.len() >= self.capacity {
            return Err(HoldError::QueueFull(self.capacity));
        }
        pending.insert(id.clone(), Pending { info, tx });
        Ok(Parked {
            id,
            rx: Some(rx),
            pending: self.pending.clone(),
        })
    }

    /// How many requests are waiting.
    pub fn len(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map half-updated (single inserts and
    // removes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HoldDesk for LocalHolds {
    fn list(&self, tenant: &str) -> Vec<HoldInfo> {
        let mut v: Vec<HoldInfo> = lock(&self.pending)
            .values()
            .filter(|p| p.info.tenant == tenant)
            .map(|p| p.info.clone())
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    fn decide(
        &self,
        tenant: &str,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
    ) -> Result<HoldInfo, HoldError> {
        let mut pending = lock(&self.pending);
        match pending.get(id) {
            Some(p) if p.info.tenant == tenant => {}
            _ => return Err(HoldError::NotFound),
        }
        let Some(p) = pending.remove(id) else {
            return Err(HoldError::NotFound);
        };
        drop(pending);
        let outcome = if approve {
            HoldOutcome::Approved { by: by.into() }
        } else {
            HoldOutcome::Rejected {
                by: by.into(),
                reason: reason.map(str::to_string),
            }
        };
        // The receiver is gone only if the request was abandoned in this very instant; the
        // hold is then over either way.
        if p.tx.send(outcome).is_err() {
            return Err(HoldError::NotFound);
        }
        Ok(p.info)
    }
}

/// A parked request's side of a hold.
pub struct Parked {
    id: String,
    rx: Option<oneshot::Receiver<HoldOutcome>>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl Parked {
    /// The hold's id (what an admin approves).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for a decision, at most `timeout`. On timeout the hold is withdrawn, so a late
    /// approval finds nothing; a decision racing the timeout wins if it got there first.
    ///
    /// Dropping the future before it completes (the client went away) withdraws the hold.
    pub async fn wait(mut self, timeout: Duration) -> HoldOutcome {
        let Some(rx) = self.rx.as_mut() else {
            return HoldOutcome::TimedOut;
        };
        let outcome = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => HoldOutcome::TimedOut,
            Err(_) => {
                let withdrawn = lock(&self.pending).remove(&self.id).is_some();
                if withdrawn {
                    HoldOutcome::TimedOut
                } else {
                    // Someone decided between the timer firing and the lock: honour it.
                    self.rx
                        .as_mut()
                        .and_then(|rx| rx.try_recv().ok())
                        .unwrap_or(HoldOutcome::TimedOut)
                }
            }
        };
        // Over: nothing left to withdraw on drop.
        self.rx = None;
        outcome
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if self.rx.is_some() {
            // Never awaited to the end (the client disconnected): withdraw the hold.
            lock(&self.pending).remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(tenant: &str) -> HoldInfo {
        HoldInfo::new(
            tenant,
            "key_1",
            "openai",
            "POST",
            "/v1/chat/completions",
            "r1",
        )
    }

    #[tokio::test]
    async fn approve_reject_and_first_decision_wins() {
        let holds = LocalHolds::new(10);
        let a = holds.park(info("t")).unwrap();
        let b = holds.park(info("t")).unwrap();
        assert_eq!(holds.list("t").len(), 2);
        assert!(holds.list("other").is_empty());
        let (ida, idb) = (a.id().to_string(), b.id().to_string());
        holds.decide("t", &ida, true, "admin:x", None).unwrap();
        assert_eq!(
            holds.decide("t", &ida, false, "admin:y", None),
            Err(HoldError::NotFound)
        );
        holds
            .decide("t", &idb, false, "admin:x", Some("no"))
            .unwrap();
        assert_eq!(
            a.wait(Duration::from_secs(1)).await,
            HoldOutcome::Approved {
                by: "admin:x".into()
            }
        );
        assert_eq!(
            b.wait(Duration::from_secs(1)).await,
            HoldOutcome::Rejected {
                by: "admin:x".into(),
                reason: Some("no".into())
            }
        );
        assert!(holds.is_empty());
    }

    #[tokio::test]
    async fn another_tenant_cannot_decide() {
        let holds = LocalHolds::new(10);
        let a = holds.park(info("t")).unwrap();
        assert_eq!(
            holds.decide("u", a.id(), true, "admin:x", None),
            Err(HoldError::NotFound)
        );
        assert_eq!(holds.len(), 1);
    }

    #[tokio::test]
    async fn timeout_withdraws_and_late_approval_finds_nothing() {
        let holds = LocalHolds::new(10);
        let a = holds.park(info("t")).unwrap();
        let id = a.id().to_string();
        assert_eq!(
            a.wait(Duration::from_millis(20)).await,
            HoldOutcome::TimedOut
        );
        assert_eq!(
            holds.decide("t", &id, true, "admin:x", None),
            Err(HoldError::NotFound)
        );
        assert!(holds.is_empty());
    }

    #[tokio::test]
    async fn a_wait_dropped_midway_withdraws_the_hold() {
        let holds = LocalHolds::new(10);
        let a = holds.park(info("t")).unwrap();
        let id = a.id().to_string();
        let waiting = a.wait(Duration::from_secs(10));
        // The client goes away while its request waits.
        let _ = tokio::time::timeout(Duration::from_millis(20), waiting).await;
        assert!(holds.is_empty());
        assert_eq!(
            holds.decide("t", &id, true, "admin:x", None),
            Err(HoldError::NotFound)
        );
    }

    #[tokio::test]
    async fn bounded_and_abandoned_holds_free_their_slot() {
        let holds = LocalHolds::new(2);
        let a = holds.park(info("t")).unwrap();
        let _b = holds.park(info("t")).unwrap();
        assert_eq!(holds.park(info("t")).err(), Some(HoldError::QueueFull(2)));
        drop(a);
        assert_eq!(holds.len(), 1);
        assert!(holds.park(info("t")).is_ok());
    }
}
