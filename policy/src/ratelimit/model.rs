//! What the dialect readers produce: quota pools, read from the provider's headers.

use super::parse;

/// What a pool counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Requests,
    Tokens,
}

impl Unit {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
        }
    }
}

/// One quota the provider reported on: what it allows, what is left, when it resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    /// Its IETF policy name (`requests`, `tokens-minute`, `input-tokens`, `core`, …).
    pub name: String,
    pub unit: Unit,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Whole seconds from now, rounded up.
    pub reset_secs: Option<u64>,
    /// Only when the header names it (`…-minute`, `…-day`).
    pub window_secs: Option<u64>,
}

/// Every pool found, and which one feeds each `x-ratelimit-*-{requests,tokens}` trio.
#[derive(Debug, Default)]
pub(crate) struct Reading {
    pub pools: Vec<Pool>,
    pub requests: Option<usize>,
    pub tokens: Option<usize>,
}

impl Reading {
    /// Adds a pool (when there is one) and returns its index.
    pub(crate) fn push(&mut self, pool: Option<Pool>) -> Option<usize> {
        let pool = pool?;
        self.pools.push(pool);
        Some(self.pools.len() - 1)
    }

    /// The pool closest to running out among `candidates`: the lowest known remaining, then
    /// the later reset; pools without a remaining come last.
    pub(crate) fn tightest(&self, candidates: &[usize]) -> Option<usize> {
        candidates.iter().copied().min_by_key(|&i| {
            let p = self.pools.get(i);
            let remaining = p.and_then(|p| p.remaining);
            let reset = p.and_then(|p| p.reset_secs).unwrap_or(0);
            (
                remaining.is_none(),
                remaining.unwrap_or(u64::MAX),
                std::cmp::Reverse(reset),
            )
        })
    }

    /// The pool feeding a trio.
    pub(crate) fn primary(&self, unit: Unit) -> Option<&Pool> {
        let i = match unit {
            Unit::Requests => self.requests,
            Unit::Tokens => self.tokens,
        }?;
        self.pools.get(i)
    }
}

/// The response's headers, looked up by name without regard to ASCII case.
#[derive(Clone, Copy)]
pub(crate) struct Headers<'a>(pub &'a [(&'a str, &'a str)]);

impl Headers<'_> {
    /// Whether the provider sent a header of this name (whatever its value).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    }

    /// The first value of `name` that `parse` accepts; malformed ones are skipped.
    pub(crate) fn first<T>(&self, name: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        self.0
            .iter()
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .find_map(|(_, v)| parse(v.trim()))
    }

    /// A pool from a `[limit, remaining, reset]` header triple, when any of the three was sent
    /// (even malformed: a pool the provider meant to report is never replaced by another).
    pub(crate) fn pool(
        &self,
        names: [&str; 3],
        name: String,
        unit: Unit,
        window_secs: Option<u64>,
        reset: impl Fn(&str) -> Option<u64>,
    ) -> Option<Pool> {
        let [limit, remaining, reset_name] = names;
        if !names.iter().any(|n| self.has(n)) {
            return None;
        }
        Some(Pool {
            name,
            unit,
            limit: self.first(limit, parse::count),
            remaining: self.first(remaining, parse::count),
            reset_secs: self.first(reset_name, reset),
            window_secs,
        })
    }
}
