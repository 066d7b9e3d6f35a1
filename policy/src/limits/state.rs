//! What the [`Ledger`](super::Ledger) remembers per scope: the rate window and the spend of the
//! current day and month.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::calendar::Clock;
use super::scope::{Ask, LimitKind};
use super::window::Window;

/// What a scope has used, as of one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Requests in the last 60 seconds.
    pub requests: u64,
    /// Tokens in the last 60 seconds (reserved, or actual once settled).
    pub tokens: u64,
    /// Spend since 00:00 UTC today, in micro-dollars (reserved, or actual once settled).
    pub daily_spend_micros: u64,
    /// Spend since 00:00 UTC on the 1st of this month, in micro-dollars.
    pub monthly_spend_micros: u64,
}

impl Usage {
    /// The usage counted against limits of `kind`, in that limit's unit.
    pub fn get(&self, kind: LimitKind) -> u64 {
        match kind {
            LimitKind::Requests => self.requests,
            LimitKind::Tokens => self.tokens,
            LimitKind::DailySpend => self.daily_spend_micros,
            LimitKind::MonthlySpend => self.monthly_spend_micros,
        }
    }
}

/// Spend within one budget period (a day or a month, numbered by [`Clock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Period {
    /// The period `spent` belongs to; `i64::MIN` when nothing was ever spent.
    index: i64,
    spent: u64,
}

impl Period {
    const NONE: Period = Period {
        index: i64::MIN,
        spent: 0,
    };

    /// Spend in period `index`: 0 once the tracked period is over (that is how budgets reset).
    fn spent_in(&self, index: i64) -> u64 {
        if self.index == index {
            self.spent
        } else {
            0
        }
    }

    /// Adds `amount` to period `index`, starting it afresh if it is not the tracked one.
    fn add(&mut self, index: i64, amount: u64) {
        if self.index != index {
            *self = Period { index, spent: 0 };
        }
        self.spent = self.spent.saturating_add(amount);
    }

    /// Replaces `reserved` by `actual` in period `reserved_in`, as of period `current`.
    fn settle(&mut self, reserved_in: i64, current: i64, reserved: u64, actual: u64) {
        if self.index == reserved_in {
            // Also when that period is already over: harmless, and it keeps a late settle from
            // charging today for yesterday's request.
            self.spent = self.spent.saturating_sub(reserved).saturating_add(actual);
        } else if self.index < reserved_in && reserved_in == current {
            // The record of the reservation's (still current) period is gone: the scope was
            // swept while the reservation was out, which only happens when it reserved nothing.
            // Start the period with what the request actually cost, so it still counts.
            *self = Period {
                index: reserved_in,
                spent: actual,
            };
        }
        // Otherwise the period the cost belongs to is over and no longer tracked: nothing to do.
    }
}

/// One scope's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScopeState {
    /// The scope id, shared with the map key and every outstanding reservation, so handing it to
    /// a reservation is a reference-count bump rather than a string copy.
    pub(crate) id: Arc<str>,
    pub(crate) window: Window,
    day: Period,
    month: Period,
}

impl ScopeState {
    /// Fresh, empty counters for scope `id`.
    pub(crate) fn new(id: Arc<str>) -> Self {
        Self {
            id,
            window: Window::new(),
            day: Period::NONE,
            month: Period::NONE,
        }
    }

    /// Usage as of `clock`.
    pub(crate) fn usage(&self, clock: &Clock) -> Usage {
        let (requests, tokens) = self.window.usage(clock.sec);
        Usage {
            requests,
            tokens,
            daily_spend_micros: self.day.spent_in(clock.day),
            monthly_spend_micros: self.month.spent_in(clock.month),
        }
    }

    /// Counts one request of `ask` at `clock`.
    pub(crate) fn record(&mut self, clock: &Clock, ask: Ask) {
        self.window.record(clock.sec, 1, ask.tokens);
        self.day.add(clock.day, ask.cost_micros);
        self.month.add(clock.month, ask.cost_micros);
    }

    /// Replaces what a reservation made at second `sec`, day `day` and month `month` reserved by
    /// what it actually used, as of `clock`.
    pub(crate) fn settle(
        &mut self,
        clock: &Clock,
        (sec, day, month): (i64, i64, i64),
        reserved: Ask,
        actual: Ask,
    ) {
        self.window
            .settle_tokens(clock.sec, sec, reserved.tokens, actual.tokens);
        self.day
            .settle(day, clock.day, reserved.cost_micros, actual.cost_micros);
        self.month
            .settle(month, clock.month, reserved.cost_micros, actual.cost_micros);
    }

    /// True when nothing is counted in any window or period as of `clock`: forgetting the scope
    /// then changes no decision.
    pub(crate) fn is_idle(&self, clock: &Clock) -> bool {
        self.window.is_idle(clock.sec)
            && self.day.spent_in(clock.day) == 0
            && self.month.spent_in(clock.month) == 0
    }
}
