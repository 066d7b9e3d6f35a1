//! The in-process bookkeeping: reserve the worst case before a request, settle the actual usage
//! after it. See the [module docs](super) for the semantics.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::calendar::Clock;
use super::exceeded::Exceeded;
use super::scope::{Ask, LimitKind, Scope, ScopeKind};
use super::state::{ScopeState, Usage};
use super::window::{Measure, WINDOW_SECS_U64};

/// Rate-limit and budget state of every scope seen recently. Plain data: the gateway keeps one
/// behind a `Mutex` and holds the lock only for the duration of a call.
#[derive(Clone)]
pub struct Ledger {
    scopes: HashMap<Arc<str>, ScopeState>,
    /// Newest `now_ms` seen. Earlier ones (callers whose clock read lost the race for the lock)
    /// are treated as this one, so time never runs backwards inside the ledger.
    latest_ms: i64,
}

/// A successful [`Ledger::reserve`]: the reservation to settle, and what is left.
#[derive(Debug)]
#[must_use = "settle the reservation once the request is done, or the worst case stays counted"]
pub struct Grant {
    /// Pass to [`Ledger::settle`] once the actual usage is known.
    pub reservation: Reservation,
    /// Remaining allowance after this reservation, for every configured limit of every scope,
    /// in scope order then [`LimitKind::ALL`] order.
    pub headroom: Vec<Headroom>,
}

/// What one [`Ledger::reserve`] recorded, to be replaced by the actual usage with
/// [`Ledger::settle`]. Not `Clone`: settling consumes it, so it can be settled only once.
///
/// Dropping it unsettled is safe but conservative: the worst case stays counted.
#[derive(Debug)]
#[must_use = "settle the reservation once the request is done, or the worst case stays counted"]
pub struct Reservation {
    /// Distinct ids of the scopes it was recorded in.
    scopes: Vec<Arc<str>>,
    reserved: Ask,
    /// Second, day and month it was recorded in.
    second: i64,
    day: i64,
    month: i64,
}

impl Reservation {
    /// Tokens reserved (the ask's worst case).
    pub fn tokens(&self) -> u64 {
        self.reserved.tokens
    }

    /// Cost reserved in micro-dollars (the ask's worst case).
    pub fn cost_micros(&self) -> u64 {
        self.reserved.cost_micros
    }

    /// Ids of the scopes the reservation was recorded in (duplicates removed).
    pub fn scope_ids(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|id| &**id)
    }
}

/// What one limit of one scope has left, for response headers such as
/// `x-ratelimit-remaining-requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headroom {
    /// The level of the scope.
    pub scope: ScopeKind,
    /// The limit.
    pub kind: LimitKind,
    /// The limit's value: requests, tokens or micro-dollars.
    pub limit: u64,
    /// What is left of it, same unit (after the reservation, in a [`Grant`]).
    pub remaining: u64,
    /// Seconds until `remaining` grows. Per-minute limits: until the oldest counted request or
    /// token leaves the window (0 if nothing is counted). Spends: until the next 00:00 UTC
    /// (daily) or 1st of a month (monthly).
    pub reset_secs: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Ledger {
    // The per-second buckets of every scope would drown a log line; show the size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("scopes", &self.scopes.len())
            .field("latest_ms", &self.latest_ms)
            .finish()
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self {
            scopes: HashMap::new(),
            latest_ms: i64::MIN,
        }
    }

    /// Number of scopes with state (see [`Ledger::sweep`]).
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// True when no scope has state.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Reserves `ask` (and one request) in every scope, or in none.
    ///
    /// Every configured limit of every scope is checked first; only if all of them hold is the
    /// ask recorded, in all scopes. Otherwise nothing is recorded and the first failing check
    /// is returned, in the order `scopes` are given, then [`LimitKind::ALL`] order within a
    /// scope. A scope id given twice is recorded once.
    ///
    /// A limit passes when `used + max(asked, 1) <= limit`: the ask counts as at least one unit,
    /// so a limit with nothing left refuses even requests priced at 0 (a limit of 0 refuses
    /// everything).
    ///
    /// Work is `O(scopes × 60)`; the only allocations are the [`Grant`]'s two small vectors (and
    /// the id, the first time a scope is seen).
    pub fn reserve(
        &mut self,
        scopes: &[Scope<'_>],
        ask: Ask,
        now_ms: i64,
    ) -> Result<Grant, Exceeded> {
        let clock = self.observe(now_ms);
        for scope in scopes {
            if scope.limits.is_empty() {
                continue;
            }
            let state = self.scopes.get(scope.id);
            let usage = state.map_or_else(Usage::default, |s| s.usage(&clock));
            for kind in LimitKind::ALL {
                let Some(limit) = scope.limits.limit(kind) else {
                    continue;
                };
                let (used, asked) = (usage.get(kind), ask.amount(kind));
                if used.saturating_add(asked.max(1)) > limit {
                    return Err(refusal(scope, state, kind, limit, used, asked, &clock));
                }
            }
        }

        let mut ids = Vec::with_capacity(scopes.len());
        for (i, scope) in scopes.iter().enumerate() {
            if scopes[..i].iter().any(|earlier| earlier.id == scope.id) {
                continue;
            }
            let id = match self.scopes.get_mut(scope.id) {
                Some(state) => {
                    state.record(&clock, ask);
                    Arc::clone(&state.id)
                }
                None => {
                    let id: Arc<str> = Arc::from(scope.id);
                    let mut state = ScopeState::new(Arc::clone(&id));
                    state.record(&clock, ask);
                    self.scopes.insert(Arc::clone(&id), state);
                    id
                }
            };
            ids.push(id);
        }

        Ok(Grant {
            reservation: Reservation {
                scopes: ids,
                reserved: ask,
                second: clock.sec,
                day: clock.day,
                month: clock.month,
            },
            headroom: self.headroom_at(scopes, &clock),
        })
    }

    /// Replaces what `reservation` reserved by what the request actually used.
    ///
    /// Tokens are corrected in the second they were reserved in while it is still inside the
    /// 60-second window (after that they no longer count anyway). Cost is corrected in the day
    /// and month it was reserved in, while that period is tracked; a period that has rolled
    /// over since is not charged (nor is the new one). The request itself stays counted.
    ///
    /// Actual usage above the reservation is added in full: a provider returning more than the
    /// worst case the caller computed is the only way a cap can be overrun, and then by exactly
    /// that excess. Until usage falls back under the cap, that scope refuses everything.
    ///
    /// Pass `0, 0` for a request that never reached the provider.
    pub fn settle(
        &mut self,
        reservation: Reservation,
        actual_tokens: u64,
        actual_cost_micros: u64,
        now_ms: i64,
    ) {
        let clock = self.observe(now_ms);
        let reserved_at = (reservation.second, reservation.day, reservation.month);
        let actual = Ask::new(actual_tokens, actual_cost_micros);
        for id in reservation.scopes {
            if let Some(state) = self.scopes.get_mut(&*id) {
                state.settle(&clock, reserved_at, reservation.reserved, actual);
                continue;
            }
            // Swept while the reservation was out (possible only if it reserved nothing that
            // still counts): keep the scope only if the actual usage still counts.
            let mut state = ScopeState::new(Arc::clone(&id));
            state.settle(&clock, reserved_at, reservation.reserved, actual);
            if !state.is_idle(&clock) {
                self.scopes.insert(id, state);
            }
        }
    }

    /// Remaining allowance of every configured limit of every scope at `now_ms`, without
    /// reserving anything. Same shape as [`Grant::headroom`].
    pub fn headroom(&self, scopes: &[Scope<'_>], now_ms: i64) -> Vec<Headroom> {
        self.headroom_at(scopes, &self.clock_at(now_ms))
    }

    /// What scope `scope_id` has used as of `now_ms` (all zeros if it has no state).
    pub fn usage(&self, scope_id: &str, now_ms: i64) -> Usage {
        let clock = self.clock_at(now_ms);
        self.scopes
            .get(scope_id)
            .map_or_else(Usage::default, |s| s.usage(&clock))
    }

    /// Forgets every scope with nothing counted in its window, day or month as of `now_ms`.
    /// Forgetting such a scope changes no decision, so memory stays bounded by the scopes active
    /// this month. Call it periodically (e.g. every minute); it is `O(scopes × 60)`.
    pub fn sweep(&mut self, now_ms: i64) {
        let clock = self.observe(now_ms);
        self.scopes.retain(|_, state| !state.is_idle(&clock));
    }

    /// Advances the ledger's time to `now_ms` (if later) and returns the clock to act at.
    fn observe(&mut self, now_ms: i64) -> Clock {
        self.latest_ms = self.latest_ms.max(now_ms);
        Clock::at(self.latest_ms)
    }

    /// The clock to read at, without advancing the ledger's time.
    fn clock_at(&self, now_ms: i64) -> Clock {
        Clock::at(self.latest_ms.max(now_ms))
    }

    fn headroom_at(&self, scopes: &[Scope<'_>], clock: &Clock) -> Vec<Headroom> {
        let configured = |scope: &Scope<'_>| {
            LimitKind::ALL
                .iter()
                .filter(|kind| scope.limits.limit(**kind).is_some())
                .count()
        };
        let mut out = Vec::with_capacity(scopes.iter().map(configured).sum());
        for scope in scopes {
            if scope.limits.is_empty() {
                continue;
            }
            let state = self.scopes.get(scope.id);
            let usage = state.map_or_else(Usage::default, |s| s.usage(clock));
            for kind in LimitKind::ALL {
                let Some(limit) = scope.limits.limit(kind) else {
                    continue;
                };
                let reset_secs = match kind {
                    LimitKind::Requests | LimitKind::Tokens => state.map_or(0, |s| {
                        s.window.secs_until_next_release(clock.sec, measure(kind))
                    }),
                    LimitKind::DailySpend => clock.secs_to_next_day(),
                    LimitKind::MonthlySpend => clock.secs_to_next_month(),
                };
                out.push(Headroom {
                    scope: scope.kind,
                    kind,
                    limit,
                    remaining: limit.saturating_sub(usage.get(kind)),
                    reset_secs,
                });
            }
        }
        out
    }
}

fn measure(kind: LimitKind) -> Measure {
    if kind == LimitKind::Requests {
        Measure::Requests
    } else {
        Measure::Tokens
    }
}

/// Builds the refusal for `kind` on `scope`, where `used + max(asked, 1) > limit`.
fn refusal(
    scope: &Scope<'_>,
    state: Option<&ScopeState>,
    kind: LimitKind,
    limit: u64,
    used: u64,
    asked: u64,
    clock: &Clock,
) -> Exceeded {
    let needed = asked.max(1);
    let never_fits = needed > limit;
    let retry_after_secs = match kind {
        LimitKind::Requests | LimitKind::Tokens if never_fits => WINDOW_SECS_U64,
        LimitKind::Requests | LimitKind::Tokens => {
            // Wait for enough of the window to slide out that used + needed <= limit.
            let excess = used.saturating_add(needed) - limit;
            state
                .and_then(|s| s.window.secs_until_freed(clock.sec, measure(kind), excess))
                .unwrap_or(WINDOW_SECS_U64)
        }
        LimitKind::DailySpend => clock.secs_to_next_day(),
        LimitKind::MonthlySpend => clock.secs_to_next_month(),
    };
    Exceeded {
        kind,
        scope: scope.kind,
        scope_id: scope.id.to_owned(),
        limit,
        used,
        asked,
        retry_after_secs,
        never_fits,
    }
}
