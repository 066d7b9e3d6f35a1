//! The refusal [`Ledger::reserve`](super::Ledger::reserve) returns, with a message a person can
//! act on.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::MICROS_PER_USD;
use super::scope::{LimitKind, ScopeKind};

/// A request refused because one limit of one scope would be exceeded. Nothing was recorded.
///
/// Its [`Display`](fmt::Display) is the human-readable message for the error body, e.g.
/// `key limit of 60 requests per minute reached; retry in 12s` or
/// `key budget of $5.00 per day is spent; resets in 3h12m`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exceeded {
    /// The limit that refused.
    pub kind: LimitKind,
    /// The level of the scope whose limit it is.
    pub scope: ScopeKind,
    /// The id of that scope, as passed in [`Scope::id`](super::Scope::id).
    pub scope_id: String,
    /// The limit, in its unit: requests, tokens or micro-dollars.
    pub limit: u64,
    /// What was already used in the current window or period, same unit.
    pub used: u64,
    /// What the request asked for, same unit (1 for requests).
    pub asked: u64,
    /// Whole seconds to wait before the same request could pass, at least 1. For the per-minute
    /// limits: until enough of the window has slid out for the ask to fit (60 if it never
    /// fits). For spends: until the next 00:00 UTC (daily) or the next 1st of a month (monthly).
    pub retry_after_secs: u64,
    /// True when waiting cannot help: the limit is 0, or the ask alone is larger than the limit
    /// (e.g. `max_tokens` above the key's `tpm`, or a worst-case cost above the budget). The
    /// gateway may say so instead of inviting a retry.
    pub never_fits: bool,
}

impl Exceeded {
    /// The public error code: `rate_limited` or `budget_exceeded` (see [`LimitKind::code`]).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl std::error::Error for Exceeded {}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = self.scope;
        let remaining = self.limit.saturating_sub(self.used);
        let wait = Duration(self.retry_after_secs);
        match self.kind {
            LimitKind::Requests | LimitKind::Tokens => {
                let unit = if self.kind == LimitKind::Requests {
                    "requests"
                } else {
                    "tokens"
                };
                let limit = self.limit;
                let what = format_args!("{scope} limit of {limit} {unit} per minute");
                if limit == 0 {
                    write!(f, "{what} allows no requests")
                } else if self.never_fits {
                    let asked = self.asked;
                    write!(
                        f,
                        "request may use up to {asked} {unit}, more than the {what}"
                    )
                } else if remaining == 0 {
                    write!(f, "{what} reached; retry in {wait}")
                } else {
                    let asked = self.asked;
                    write!(
                        f,
                        "{what} has {remaining} left, fewer than the {asked} this request may \
                         use; retry in {wait}"
                    )
                }
            }
            LimitKind::DailySpend | LimitKind::MonthlySpend => {
                let period = if self.kind == LimitKind::DailySpend {
                    "day"
                } else {
                    "month"
                };
                let (limit, asked) = (Usd(self.limit), Usd(self.asked));
                let what = format_args!("{scope} budget of {limit} per {period}");
                if self.limit == 0 {
                    write!(f, "{what} allows no requests")
                } else if self.never_fits {
                    write!(f, "request may cost up to {asked}, more than the {what}")
                } else if remaining == 0 {
                    write!(f, "{what} is spent; resets in {wait}")
                } else {
                    let remaining = Usd(remaining);
                    write!(
                        f,
                        "{what} has {remaining} left, less than the {asked} this request may \
                         cost; resets in {wait}"
                    )
                }
            }
        }
    }
}

/// Micro-dollars shown as dollars: cents when exact (`$5.00`), else only the digits needed
/// (`$0.0015`). Integer arithmetic, so `$0.10` never prints as `$0.09999`.
struct Usd(u64);

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dollars = self.0 / MICROS_PER_USD;
        let mut fraction = self.0 % MICROS_PER_USD;
        let mut digits = 6;
        while digits > 2 && fraction.is_multiple_of(10) {
            fraction /= 10;
            digits -= 1;
        }
        write!(f, "${dollars}.{fraction:0digits$}")
    }
}

/// Seconds shown as the two largest units: `45s`, `12m5s`, `3h12m`, `2d4h`.
struct Duration(u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        let (days, hours, minutes, seconds) =
            (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
        let (big, big_unit, small, small_unit) = if days > 0 {
            (days, 'd', hours, 'h')
        } else if hours > 0 {
            (hours, 'h', minutes, 'm')
        } else if minutes > 0 {
            (minutes, 'm', seconds, 's')
        } else {
            return write!(f, "{seconds}s");
        };
        if small == 0 {
            write!(f, "{big}{big_unit}")
        } else {
            write!(f, "{big}{big_unit}{small}{small_unit}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_formatting() {
        assert_eq!(Usd(5_000_000).to_string(), "$5.00");
        assert_eq!(Usd(100_000).to_string(), "$0.10");
        assert_eq!(Usd(1_500).to_string(), "$0.0015");
        assert_eq!(Usd(1).to_string(), "$0.000001");
        assert_eq!(Usd(0).to_string(), "$0.00");
        assert_eq!(Usd(12_345_670_000).to_string(), "$12345.67");
    }

    #[test]
    fn duration_formatting() {
        assert_eq!(Duration(1).to_string(), "1s");
        assert_eq!(Duration(60).to_string(), "1m");
        assert_eq!(Duration(725).to_string(), "12m5s");
        assert_eq!(Duration(3 * 3_600 + 12 * 60 + 7).to_string(), "3h12m");
        assert_eq!(Duration(2 * 86_400 + 4 * 3_600).to_string(), "2d4h");
    }
}
