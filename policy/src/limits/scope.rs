//! What a request is counted against ([`Scope`]), what it asks for ([`Ask`]) and the kinds of
//! limit it can hit ([`LimitKind`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::Limits;

/// The level a [`Scope`] sits at. Used in messages ("key limit of …") and headroom reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// One proxy key.
    Key,
    /// A workload (a group of keys used by one agent or service).
    Workload,
    /// A whole tenant.
    Tenant,
}

impl ScopeKind {
    /// Lower-case name, as in configuration and messages: `key`, `workload`, `tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::Workload => "workload",
            ScopeKind::Tenant => "tenant",
        }
    }
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a request is counted against: its kind, a globally unique id and its limits.
///
/// Borrowed, so building the scopes of a request costs nothing: the caller keeps ids and
/// [`Limits`] in its key/tenant records and lends them for the call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scope<'a> {
    /// The level of this scope.
    pub kind: ScopeKind,
    /// Identifies the scope's state in the [`Ledger`](super::Ledger). Must be unique across
    /// all scopes of all tenants and kinds, so build it from the full path, e.g. `"t1/key_abc"`,
    /// `"t1/wl/support-bot"`, `"t1"`.
    pub id: &'a str,
    /// The limits to enforce on this scope for this request.
    pub limits: &'a Limits,
}

impl<'a> Scope<'a> {
    /// A scope of `kind` with state `id` and `limits`.
    pub fn new(kind: ScopeKind, id: &'a str, limits: &'a Limits) -> Self {
        Self { kind, id, limits }
    }
}

/// A kind of limit. The order of the variants is the order limits are checked in, per scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Requests per minute ([`Limits::rpm`]).
    Requests,
    /// Tokens per minute ([`Limits::tpm`]).
    Tokens,
    /// Spend per UTC day ([`Limits::budget_daily_usd`]).
    DailySpend,
    /// Spend per UTC month ([`Limits::budget_monthly_usd`]).
    MonthlySpend,
}

impl LimitKind {
    /// Every kind, in checking order.
    pub const ALL: [LimitKind; 4] = [
        LimitKind::Requests,
        LimitKind::Tokens,
        LimitKind::DailySpend,
        LimitKind::MonthlySpend,
    ];

    /// The public error code the gateway answers with when this limit refuses a request:
    /// `rate_limited` for the per-minute limits, `budget_exceeded` for the spends.
    pub fn code(self) -> &'static str {
        match self {
            LimitKind::Requests | LimitKind::Tokens => "rate_limited",
            LimitKind::DailySpend | LimitKind::MonthlySpend => "budget_exceeded",
        }
    }

    /// Snake-case name: `requests`, `tokens`, `daily_spend`, `monthly_spend`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::DailySpend => "daily_spend",
            LimitKind::MonthlySpend => "monthly_spend",
        }
    }

    /// True for the per-minute limits (counted in the sliding window).
    pub fn is_rate(self) -> bool {
        matches!(self, LimitKind::Requests | LimitKind::Tokens)
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request may consume at most, worked out by the caller before it is sent: the prompt
/// tokens plus the `max_tokens` it may generate, and the price of that many tokens.
///
/// Reserving the worst case is what makes the caps hold under concurrency: a request is only let
/// through if the cap still holds when it costs as much as it possibly can. Every reservation
/// also counts one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ask {
    /// Most tokens (input + output) the request can use.
    pub tokens: u64,
    /// Most the request can cost, in micro-dollars.
    pub cost_micros: u64,
}

impl Ask {
    /// An ask for at most `tokens` tokens costing at most `cost_micros` micro-dollars.
    pub fn new(tokens: u64, cost_micros: u64) -> Self {
        Self {
            tokens,
            cost_micros,
        }
    }

    /// The amount of `kind` this ask consumes: 1 request, its tokens, or its cost (for both
    /// spends).
    pub fn amount(&self, kind: LimitKind) -> u64 {
        match kind {
            LimitKind::Requests => 1,
            LimitKind::Tokens => self.tokens,
            LimitKind::DailySpend | LimitKind::MonthlySpend => self.cost_micros,
        }
    }
}
