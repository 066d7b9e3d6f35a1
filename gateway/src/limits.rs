//! Rate limits and budgets: reserve a request's worst case before it is forwarded, settle the
//! metered usage after the response.
//!
//! The counters sit behind [`Counters`], so the fleet can keep them in Redis; [`LocalCounters`]
//! is the in-process implementation (one [`Ledger`] behind a mutex, held only for the
//! bookkeeping call, never across the upstream request).
//!
//! A request is counted in up to three scopes: its key (`limits` on the key), its workload and
//! its tenant (`/api/v1/limits`). Refusals are `rate_limited` (rpm, tpm) or `budget_exceeded`
//! (daily/monthly spend), 429, with `retry-after` and the key's own remaining allowance in the
//! normalized `x-ratelimit-*` headers.

use crate::errors::GatewayError;
use crate::policies::TenantRules;
use crate::resolve::ResolvedKey;
use async_trait::async_trait;
use latchkey_policy::limits::{
    micros_to_usd, Ask, Exceeded, Grant, Headroom, Ledger, LimitKind, Limits, Reservation, Scope,
    ScopeKind,
};
use std::sync::Mutex;

/// What a reservation is, for whichever [`Counters`] made it.
#[derive(Debug)]
pub enum Reserved {
    /// Made by [`LocalCounters`].
    Local(Reservation),
}

/// Why counting failed.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// A limit would be exceeded.
    #[error("{0}")]
    Exceeded(Exceeded),
    /// The counters cannot be reached (a shared backend is down).
    #[error("limit counters unavailable: {0}")]
    Unavailable(String),
}

/// A successful reservation.
#[derive(Debug)]
pub struct Granted {
    /// Settle it once the response is done.
    pub reserved: Reserved,
    /// What is left on every configured limit.
    pub headroom: Vec<Headroom>,
}

/// Rate-limit and budget counters shared by every request of a process (or a fleet).
#[async_trait]
pub trait Counters: Send + Sync {
    /// Atomically checks every limit of every scope for `ask` and records it, or records nothing.
    async fn reserve(
        &self,
        scopes: &[Scope<'_>],
        ask: Ask,
        now_ms: i64,
    ) -> Result<Granted, CounterError>;
    /// Replaces a reservation's worst case by the actual usage.
    async fn settle(&self, reserved: Reserved, tokens: u64, cost_micros: u64, now_ms: i64);
    /// What is left, without recording anything.
    async fn headroom(&self, scopes: &[Scope<'_>], now_ms: i64) -> Vec<Headroom>;
}

/// The in-process counters.
#[derive(Default)]
pub struct LocalCounters {
    ledger: Mutex<Ledger>,
}

/// How often (in reservations) the ledger forgets idle scopes.
const SWEEP_EVERY: u64 = 4096;

impl LocalCounters {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // The ledger is only mutated by whole calls; a panic inside one leaves it consistent.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Counters for LocalCounters {
    async fn reserve(
        &self,
        scopes: &[Scope<'_>],
        ask: Ask,
        now_ms: i64,
    ) -> Result<Granted, CounterError> {
        let mut ledger = self.ledger();
        let granted = ledger.reserve(scopes, ask, now_ms);
        if rand::random::<u64>().is_multiple_of(SWEEP_EVERY) {
            ledger.sweep(now_ms);
        }
        granted
            .map(
                |Grant {
                     reservation,
                     headroom,
                 }| Granted {
                    reserved: Reserved::Local(reservation),
                    headroom,
                },
            )
            .map_err(CounterError::Exceeded)
    }

    async fn settle(&self, reserved: Reserved, tokens: u64, cost_micros: u64, now_ms: i64) {
        let Reserved::Local(r) = reserved;
        self.ledger().settle(r, tokens, cost_micros, now_ms);
    }

    async fn headroom(&self, scopes: &[Scope<'_>], now_ms: i64) -> Vec<Headroom> {
        self.ledger().headroom(scopes, now_ms)
    }
}

/// The scopes a key's requests count against: key, workload, tenant (those with limits).
pub fn scopes<'a>(
    key: &'a ResolvedKey,
    rules: &'a TenantRules,
    ids: &'a ScopeIds,
) -> Vec<Scope<'a>> {
    let mut v = Vec::with_capacity(3);
    if let Some(l) = &key.limits {
        v.push(Scope::new(ScopeKind::Key, &key.scope_id, l));
    }
    if let (Some(w), Some(id)) = (key.workload.as_deref(), ids.workload.as_deref()) {
        if let Some(l) = rules.workload_limits.get(w) {
            v.push(Scope::new(ScopeKind::Workload, id, l));
        }
    }
    if let Some(l) = &rules.tenant_limits {
        v.push(Scope::new(ScopeKind::Tenant, &ids.tenant, l));
    }
    v
}

/// Ids of the shared scopes of a key (the key's own id lives in [`ResolvedKey::scope_id`]).
pub struct ScopeIds {
    workload: Option<String>,
    tenant: String,
}

impl ScopeIds {
    /// The workload and tenant scope ids of a key.
    pub fn of(key: &ResolvedKey) -> Self {
        ScopeIds {
            workload: key
                .workload
                .as_deref()
                .map(|w| format!("{}/workload/{w}", key.tenant)),
            tenant: format!("{}/tenant", key.tenant),
        }
    }
}

/// Whether any scope of this key has a limit that needs tokens or spend (and so the body, to
/// estimate the worst case).
pub fn needs_estimate(key: &ResolvedKey, rules: &TenantRules) -> bool {
    let costly = |l: &Limits| {
        l.tpm.is_some() || l.budget_daily_usd.is_some() || l.budget_monthly_usd.is_some()
    };
    key.limits.as_ref().is_some_and(costly)
        || rules.tenant_limits.as_ref().is_some_and(costly)
        || key
            .workload
            .as_deref()
            .and_then(|w| rules.workload_limits.get(w))
            .is_some_and(costly)
}

/// The 429 for an exceeded limit, with `retry-after` and the key's remaining allowance.
pub fn refusal(e: &Exceeded, key_headroom: &[Headroom]) -> GatewayError {
    let mut err = GatewayError::new(429, e.code(), e.to_string());
    if !e.never_fits {
        // Waiting cannot help a request larger than the limit: no retry-after then, so an
        // SDK does not sleep until tomorrow only to be refused again.
        err = err.with_header("retry-after", e.retry_after_secs.to_string());
    }
    for (name, value) in headroom_headers(key_headroom) {
        err = err.with_header(name, value);
    }
    err
}

/// Normalized rate-limit headers for one scope's headroom: the OpenAI-style
/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` trio, the key's remaining budget in
/// `x-latchkey-budget-remaining-usd`, and the IETF `ratelimit-policy` / `ratelimit` fields for
/// the request limit.
pub fn headroom_headers(headroom: &[Headroom]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut budget: Option<(u64, u64)> = None;
    for h in headroom.iter().filter(|h| h.scope == ScopeKind::Key) {
        match h.kind {
            LimitKind::Requests => {
                out.push(("x-ratelimit-limit-requests", h.limit.to_string()));
                out.push(("x-ratelimit-remaining-requests", h.remaining.to_string()));
                out.push(("x-ratelimit-reset-requests", format!("{}s", h.reset_secs)));
                out.push(("ratelimit-policy", format!("\"key\";q={};w=60", h.limit)));
                out.push((
                    "ratelimit",
                    format!("\"key\";r={};t={}", h.remaining, h.reset_secs),
                ));
            }
            LimitKind::Tokens => {
                out.push(("x-ratelimit-limit-tokens", h.limit.to_string()));
                out.push(("x-ratelimit-remaining-tokens", h.remaining.to_string()));
                out.push(("x-ratelimit-reset-tokens", format!("{}s", h.reset_secs)));
            }
            LimitKind::DailySpend | LimitKind::MonthlySpend => {
                // The tighter of the two is what the key can still spend.
                budget = Some(match budget {
                    Some((r, s)) if r <= h.remaining => (r, s),
                    _ => (h.remaining, h.reset_secs),
                });
            }
        }
    }
    if let Some((remaining, reset)) = budget {
        out.push((
            "x-latchkey-budget-remaining-usd",
            format!("{:.6}", micros_to_usd(remaining)),
        ));
        out.push(("x-latchkey-budget-reset", format!("{reset}s")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_counters_reserve_refuse_and_settle() {
        let c = LocalCounters::default();
        let limits = Limits {
            rpm: Some(2),
            ..Limits::default()
        };
        let scopes = [Scope::new(ScopeKind::Key, "t/key/k", &limits)];
        let a = c.reserve(&scopes, Ask::new(0, 0), 1_000).await.unwrap();
        let _b = c.reserve(&scopes, Ask::new(0, 0), 1_000).await.unwrap();
        let Err(CounterError::Exceeded(e)) = c.reserve(&scopes, Ask::new(0, 0), 1_000).await else {
            panic!("third request within the minute must be refused");
        };
        assert_eq!(e.code(), "rate_limited");
        let err = refusal(&e, &c.headroom(&scopes, 1_000).await);
        assert_eq!(err.status, 429);
        let header = |n: &str| {
            err.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header("x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        assert_eq!(header("x-ratelimit-limit-requests").as_deref(), Some("2"));
        assert!(header("retry-after").is_some());
        c.settle(a.reserved, 0, 0, 2_000).await;
    }
}
