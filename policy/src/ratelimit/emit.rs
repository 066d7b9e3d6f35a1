//! From a [`Reading`] to the headers to add, skipping every name the provider already sent.

use super::model::{Headers, Pool, Reading, Unit};
use super::parse::{self, SF_INT_MAX};
use super::{RATELIMIT, RATELIMIT_POLICY, RETRY_AFTER};

/// The trio names per unit: limit, remaining, reset.
const TRIOS: [(Unit, [&str; 3]); 2] = [
    (
        Unit::Requests,
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
    ),
    (
        Unit::Tokens,
        [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
    ),
];

/// The headers to add for `reading`, in a fixed order: requests trio, tokens trio,
/// `ratelimit-policy`, `ratelimit`, `retry-after`.
pub(crate) fn emit(h: Headers, reading: &Reading) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, value: Option<String>| {
        if let Some(value) = value.filter(|_| !h.has(name)) {
            out.push((name, value));
        }
    };
    for (unit, [limit, remaining, reset]) in TRIOS {
        if let Some(p) = reading.primary(unit) {
            add(limit, p.limit.map(|n| n.to_string()));
            add(remaining, p.remaining.map(|n| n.to_string()));
            add(reset, p.reset_secs.map(|s| format!("{s}s")));
        }
    }
    // A provider that speaks IETF already is left alone: items of ours next to its own
    // would name policies its other field does not have.
    if !h.has(RATELIMIT_POLICY) && !h.has(RATELIMIT) {
        let policies: Vec<&Pool> = reading.pools.iter().filter(|p| policy_ok(p)).collect();
        let limits: Vec<String> = reading
            .pools
            .iter()
            .filter(|p| limit_ok(p, &policies))
            .map(limit_item)
            .collect();
        add(
            RATELIMIT_POLICY,
            join(policies.iter().map(|p| policy_item(p))),
        );
        add(RATELIMIT, join(limits.into_iter()));
    }
    add(RETRY_AFTER, retry_after(h));
    out
}

/// A pool can be advertised as a policy when its quota is known and fits an SF Integer.
fn policy_ok(p: &Pool) -> bool {
    p.limit.is_some_and(|q| q <= SF_INT_MAX) && p.window_secs.is_none_or(|w| w <= SF_INT_MAX)
}

/// A pool gets a service-limit item when its remaining is known and fits an SF Integer. A
/// pool that does not count requests needs its policy item next to it: that is where its unit
/// is declared, and without it a client would read the number as requests.
fn limit_ok(p: &Pool, policies: &[&Pool]) -> bool {
    p.remaining.is_some_and(|r| r <= SF_INT_MAX)
        && (p.unit == Unit::Requests || policies.iter().any(|q| q.name == p.name))
}

/// `"tokens";q=90000;qu="tokens";w=60`
fn policy_item(p: &Pool) -> String {
    let mut item = format!("\"{}\";q={}", p.name, p.limit.unwrap_or(0));
    if p.unit != Unit::Requests {
        item.push_str(&format!(";qu=\"{}\"", p.unit.as_str()));
    }
    if let Some(w) = p.window_secs {
        item.push_str(&format!(";w={w}"));
    }
    item
}

/// `"tokens";r=89000;t=5`
fn limit_item(p: &Pool) -> String {
    let mut item = format!("\"{}\";r={}", p.name, p.remaining.unwrap_or(0));
    if let Some(t) = p.reset_secs.map(|t| t.min(SF_INT_MAX)) {
        item.push_str(&format!(";t={t}"));
    }
    item
}

fn join(items: impl Iterator<Item = String>) -> Option<String> {
    let items: Vec<String> = items.collect();
    (!items.is_empty()).then(|| items.join(", "))
}

/// `retry-after` in whole seconds from `retry-after-ms` (Azure OpenAI), rounded up; only
/// consulted when the provider sent no `retry-after` itself.
fn retry_after(h: Headers) -> Option<String> {
    h.first("retry-after-ms", parse::millis_secs)
        .map(|s| s.to_string())
}
