//! Budgets and rate limits: pure reserve-then-settle bookkeeping.
//!
//! Pure like the rest of this crate: no I/O, no clock reads, no async. Time is passed in as
//! `now_ms`, Unix epoch milliseconds (UTC), because budgets follow the UTC calendar.
//!
//! # Model
//!
//! A request is counted against one or more [`Scope`]s (its key, workload and tenant), each with
//! its own [`Limits`]:
//!
//! | limit | unit | window | refusal code |
//! |---|---|---|---|
//! | [`Limits::rpm`] | requests | sliding 60 s, per-second buckets | `rate_limited` |
//! | [`Limits::tpm`] | tokens (input + output) | sliding 60 s, per-second buckets | `rate_limited` |
//! | [`Limits::budget_daily_usd`] | micro-dollars | UTC day, resets 00:00 UTC | `budget_exceeded` |
//! | [`Limits::budget_monthly_usd`] | micro-dollars | UTC month, resets 00:00 UTC on the 1st | `budget_exceeded` |
//!
//! Budgets are configured in dollars and kept in integer micro-dollars (`$1 = 1_000_000`, see
//! [`usd_to_micros`]) so sums are exact. The rate window counts exactly to one second: what was
//! recorded during second `s` counts until second `s + 60` begins.
//!
//! # Reserve, then settle
//!
//! 1. Before forwarding, the caller works out the request's worst case, an [`Ask`] (prompt
//!    tokens + `max_tokens`, and their price), and calls [`Ledger::reserve`]. It is atomic
//!    across every scope and every limit: either all limits hold for `used + ask` and the
//!    request (1), its tokens and its cost are recorded in every scope, or nothing is recorded
//!    and the first failing check is returned as [`Exceeded`] (scopes in the order given, then
//!    requests, tokens, daily spend, monthly spend). A limit holds when
//!    `used + max(asked, 1) <= limit`, so a limit of 0, or one with nothing left, refuses every
//!    request, including those priced at 0.
//! 2. The [`Grant`] carries the [`Reservation`] and the [`Headroom`] left on every configured
//!    limit, for `x-ratelimit-remaining-*` / `x-ratelimit-reset-*` headers.
//! 3. When the response is done, [`Ledger::settle`] consumes the reservation (so it cannot be
//!    settled twice) and replaces the reserved tokens and cost with the actual ones, in the
//!    second, day and month they were reserved in. Requests are never un-counted.
//!
//! Because concurrent requests each hold their worst case until they settle, a cap holds under
//! any interleaving, **except** when a provider reports more than the caller's worst case: the
//! excess is recorded in full (it was really spent), so a cap can be overrun by exactly what a
//! provider returned beyond the ask, and the scope then refuses until usage is back under it.
//!
//! [`Exceeded::retry_after_secs`] is the wait before the same request could pass: for
//! requests/tokens, until enough of the window slides out (60 and [`Exceeded::never_fits`] when
//! the ask alone is larger than the limit); for spends, until the next UTC day or month.
//!
//! # Things a caller must know
//!
//! - **Scope ids are global**: state is keyed by [`Scope::id`] alone, so include the tenant
//!   (`"t1/key_abc"`). Limits are passed on every call and not stored, so a config change
//!   applies to the next call, against usage already counted.
//! - **Time** never runs backwards inside a ledger: a `now_ms` older than the newest one seen
//!   (clock reads that lost the race for the lock) is treated as the newest one. A wildly
//!   future `now_ms` therefore freezes the ledger in that future; pass a sane wall clock.
//! - **Threads**: [`Ledger`] is plain `Send + Sync` data with `&mut self` methods; keep one
//!   behind a `Mutex` per process and hold the lock only for the call, never across the
//!   upstream request. Each call is `O(scopes × 60)`.
//! - **Memory**: about 1.5 KiB per scope with state. Call [`Ledger::sweep`] periodically; it
//!   forgets scopes with nothing counted in their window, day or month, which changes no
//!   decision. A scope that spent anything this month is kept until the month ends.
//! - **Dropped reservations** (cancelled request, panic) stay counted at their worst case until
//!   they age out of the window / period: conservative, never over the cap. Settle with `0, 0`
//!   when the request never reached the provider.
//! - **Late settles** across a UTC day or month boundary correct the period the reservation was
//!   made in (which no longer matters once it is over) and never charge the new one.
//! - Only one process's usage is seen; this is not a distributed limiter.
//!
//! # Example
//!
//! ```
//! use latchkey_policy::limits::{Ask, Ledger, LimitKind, Limits, Scope, ScopeKind};
//!
//! let key_limits = Limits { rpm: Some(60), budget_daily_usd: Some(5.0), ..Limits::default() };
//! let tenant_limits = Limits { budget_monthly_usd: Some(100.0), ..Limits::default() };
//! let scopes = [
//!     Scope::new(ScopeKind::Key, "t1/key_abc", &key_limits),
//!     Scope::new(ScopeKind::Tenant, "t1", &tenant_limits),
//! ];
//! let mut ledger = Ledger::new(); // in the gateway: one Mutex<Ledger> per process
//! let now_ms = 1_700_000_000_000;
//!
//! // Worst case: 1,000 prompt tokens + max_tokens 500, at most $0.02.
//! let grant = ledger.reserve(&scopes, Ask::new(1_500, 20_000), now_ms).expect("within limits");
//! let requests = grant.headroom.iter().find(|h| h.kind == LimitKind::Requests).unwrap();
//! assert_eq!(requests.remaining, 59); // -> x-ratelimit-remaining-requests: 59
//!
//! // ... forward the request; the provider reports 1,180 tokens costing $0.0143 ...
//! ledger.settle(grant.reservation, 1_180, 14_300, now_ms + 2_000);
//! assert_eq!(ledger.usage("t1/key_abc", now_ms + 2_000).daily_spend_micros, 14_300);
//!
//! // An ask that does not fit is refused, and nothing is recorded.
//! let refused = ledger.reserve(&scopes, Ask::new(10, 6_000_000), now_ms + 3_000).unwrap_err();
//! assert_eq!(refused.code(), "budget_exceeded");
//! assert!(refused.never_fits); // $6 can never fit a $5 daily budget
//! assert_eq!(ledger.usage("t1", now_ms + 3_000).requests, 1);
//! ```

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

mod calendar;
mod config;
mod exceeded;
mod ledger;
mod scope;
mod state;
mod window;

pub use config::{
    micros_to_usd, usd_to_micros, Limits, LimitsError, MAX_BUDGET_USD, MICROS_PER_USD,
};
pub use exceeded::Exceeded;
pub use ledger::{Grant, Headroom, Ledger, Reservation};
pub use scope::{Ask, LimitKind, Scope, ScopeKind};
pub use state::Usage;

#[cfg(test)]
mod tests;
