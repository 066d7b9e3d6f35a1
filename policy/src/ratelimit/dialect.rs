//! One reader per header dialect: provider headers in, [`Reading`] out.

use super::model::{Headers, Reading, Unit};
use super::parse;

/// Named windows accepted as a suffix in the `openai` dialect (`x-ratelimit-limit-tokens-minute`);
/// a month has no fixed length, so it names a pool but gives it no window.
const WINDOWS: [(&str, Option<u64>); 5] = [
    ("second", Some(1)),
    ("minute", Some(60)),
    ("hour", Some(3_600)),
    ("day", Some(86_400)),
    ("month", None),
];

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI, Azure OpenAI, Groq, …),
/// their windowed forms `…-{requests,tokens}-{minute,day,…}` (Cerebras), and for requests the
/// bare `x-ratelimit-{limit,remaining,reset}` (Together, OpenRouter).
pub(crate) fn openai(h: Headers, now: i64) -> Reading {
    let mut r = Reading::default();
    for unit in [Unit::Requests, Unit::Tokens] {
        let kind = unit.as_str();
        let names = |suffix: &str| {
            ["limit", "remaining", "reset"].map(|f| format!("x-ratelimit-{f}-{kind}{suffix}"))
        };
        let [l, m, s] = names("");
        let mut main = h.pool([&l, &m, &s], kind.into(), unit, None, parse::duration_secs);
        if main.is_none() && unit == Unit::Requests {
            let bare = [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ];
            main = h.pool(bare, kind.into(), unit, None, |v| {
                parse::reset_guess(v, now)
            });
        }
        let main = r.push(main);
        let windowed: Vec<usize> = WINDOWS
            .iter()
            .filter_map(|&(window, secs)| {
                let [l, m, s] = names(&format!("-{window}"));
                let pool = h.pool(
                    [&l, &m, &s],
                    format!("{kind}-{window}"),
                    unit,
                    secs,
                    parse::duration_secs,
                );
                r.push(pool)
            })
            .collect();
        let primary = main.or_else(|| r.tightest(&windowed));
        match unit {
            Unit::Requests => r.requests = primary,
            Unit::Tokens => r.tokens = primary,
        }
    }
    r
}

/// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`,
/// resets as RFC 3339 timestamps. The tokens trio comes from `tokens-*` (Anthropic's own "most
/// restrictive limit in effect"), else from whichever of input/output is closer to running out.
pub(crate) fn anthropic(h: Headers, now: i64) -> Reading {
    let mut r = Reading::default();
    let mut pool = |name: &str, unit: Unit| {
        let names =
            ["limit", "remaining", "reset"].map(|f| format!("anthropic-ratelimit-{name}-{f}"));
        let [l, m, s] = &names;
        let found = h.pool([l, m, s], name.into(), unit, None, |v| {
            parse::rfc3339_until(v, now)
        });
        r.push(found)
    };
    let requests = pool("requests", Unit::Requests);
    let tokens = pool("tokens", Unit::Tokens);
    let input = pool("input-tokens", Unit::Tokens);
    let output = pool("output-tokens", Unit::Tokens);
    r.requests = requests;
    r.tokens = tokens.or_else(|| {
        let split: Vec<usize> = [input, output].into_iter().flatten().collect();
        r.tightest(&split)
    });
    r
}

/// `x-ratelimit-{limit,remaining,reset,used,resource}`, reset as Unix epoch seconds. Remaining
/// falls back to `limit - used`; the IETF policy is named after the resource (`core`, `search`).
pub(crate) fn github(h: Headers, now: i64) -> Reading {
    let mut r = Reading::default();
    let names = [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ];
    let used = "x-ratelimit-used";
    if !(names.iter().any(|n| h.has(n)) || h.has(used)) {
        return r;
    }
    let name = h
        .first("x-ratelimit-resource", policy_name)
        .unwrap_or_else(|| Unit::Requests.as_str().into());
    let limit = h.first(names[0], parse::count);
    let remaining = h.first(names[1], parse::count).or_else(|| {
        let used = h.first(used, parse::count)?;
        Some(limit?.saturating_sub(used))
    });
    let pool = super::model::Pool {
        name,
        unit: Unit::Requests,
        limit,
        remaining,
        reset_secs: h.first(names[2], |v| parse::epoch_until(v, now)),
        window_secs: None,
    };
    r.requests = r.push(Some(pool));
    r
}

/// A provider-supplied name usable as an IETF policy name without escaping.
fn policy_name(v: &str) -> Option<String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    ok.then(|| v.to_string())
}
