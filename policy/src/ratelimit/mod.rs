//! Normalized rate-limit headers: whatever rate-limit headers a provider sends, work out the
//! headers to add so that every response carries one set, and keep the provider's own.
//!
//! Pure like the rest of this crate: no I/O, no clock (the caller passes `now_unix`).
//! [`normalize`] takes the provider's dialect (the catalog's `rate_limit_headers` field) and
//! its response headers, and returns [`Normalized`]: the headers to **add**. It never returns
//! a name the provider already sent (compared without regard to ASCII case), so appending them
//! keeps every provider header as it was.
//!
//! # The normalized set
//!
//! | header | value |
//! |---|---|
//! | `x-ratelimit-limit-requests`, `x-ratelimit-limit-tokens` | integer quota |
//! | `x-ratelimit-remaining-requests`, `x-ratelimit-remaining-tokens` | integer left |
//! | `x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens` | seconds until reset: `"12s"` |
//! | `ratelimit-policy` | IETF quota policies: `"requests";q=60, "tokens";q=90000;qu="tokens"` |
//! | `ratelimit` | IETF service limits: `"requests";r=59;t=12, "tokens";r=89000;t=5` |
//! | `retry-after` | integer seconds, only derived from `retry-after-ms` (never invented) |
//!
//! **Reset format**: whole seconds from now, rounded *up*, with an `s` suffix (`"0s"`, `"1s"`,
//! `"360s"`), the same format the gateway's own limits use. It is a valid Go / OpenAI duration,
//! so OpenAI-style clients parse it; a sub-second reset (`20ms`) becomes `"1s"` and a reset
//! already past becomes `"0s"`. The IETF `t` parameter carries the same number.
//!
//! **IETF fields** follow draft-ietf-httpapi-ratelimit-headers-11 (23 May 2026):
//! `RateLimit-Policy` is a list of `"name";q=<quota>[;qu=<unit>][;w=<window>]` and
//! `RateLimit` a list of `"name";r=<remaining>[;t=<seconds>]` (RFC 9651 structured fields),
//! one item per quota the provider reported. The field names are added lowercase
//! (`ratelimit-policy`, `ratelimit`), as HTTP/2 requires. Only what can be derived is emitted:
//! - a policy item needs the quota; `w` only when the header names its window (`…-minute`,
//!   `…-day`): OpenAI's limits may be per minute or per day, so none is assumed;
//! - token quotas carry `qu="tokens"`. The draft's unit registry holds only `requests`,
//!   `content-bytes` and `concurrent-requests`; without a unit a client would read the token
//!   quota as requests, a far more permissive policy, which an intermediary must not convey.
//!   For the same reason a token item appears in `ratelimit` only when its policy item (which
//!   declares the unit) is in `ratelimit-policy`;
//! - a service-limit item needs the remaining; `t` when the reset is known;
//! - values beyond an RFC 9651 Integer (15 digits) are left out of the IETF fields;
//! - if the provider already sends either IETF field, neither is added.
//!
//! # Dialects
//!
//! | normalized | `openai` | `anthropic` | `github` |
//! |---|---|---|---|
//! | `x-ratelimit-limit-requests` | kept (else bare `x-ratelimit-limit`, else `…-requests-<window>`) | `anthropic-ratelimit-requests-limit` | `x-ratelimit-limit` |
//! | `x-ratelimit-remaining-requests` | kept (same fallbacks) | `anthropic-ratelimit-requests-remaining` | `x-ratelimit-remaining`, else `limit − x-ratelimit-used` |
//! | `x-ratelimit-reset-requests` | kept (same fallbacks) | `anthropic-ratelimit-requests-reset` (RFC 3339) | `x-ratelimit-reset` (epoch seconds) |
//! | `x-ratelimit-*-tokens` | kept (else `…-tokens-<window>`) | `anthropic-ratelimit-tokens-*`, else the tighter of `input-tokens-*` / `output-tokens-*` | — |
//! | IETF policy names | `requests`, `tokens`, `requests-day`, `tokens-minute`, … | `requests`, `tokens`, `input-tokens`, `output-tokens` | `x-ratelimit-resource` (`core`, `search`, …), else `requests` |
//! | `retry-after` | from `retry-after-ms` | from `retry-after-ms` | from `retry-after-ms` |
//!
//! `none`, and any dialect name not listed in [`DIALECTS`], only derive `retry-after` from
//! `retry-after-ms`. Dialect names are matched without regard to case or surrounding space.
//!
//! Details per dialect:
//! - **`openai`** (OpenAI, Azure OpenAI, Groq; Mistral, Cerebras, Together, OpenRouter when
//!   set to it): resets are Go durations (`1s`, `6m0s`, `20ms`, `2m59.56s`) or bare decimal
//!   seconds (Cerebras: `11.38`). Cerebras' `x-ratelimit-{limit,remaining,reset}-requests-day`
//!   / `-tokens-minute` (and any `-second`, `-minute`, `-hour`, `-day`, `-month` suffix) are
//!   pools with a window; with several for one unit the trio reports the one with the least
//!   remaining (the one a client hits first). The bare `x-ratelimit-{limit,remaining,reset}`
//!   (Together, OpenRouter) count requests, and as their reset format varies, a bare integer
//!   ≥ 10^12 is read as epoch milliseconds, ≥ 10^9 as epoch seconds, and smaller as seconds.
//!   Azure OpenAI often sends only the remaining counts: only those are derived.
//! - **`anthropic`**: `anthropic-ratelimit-tokens-*` is Anthropic's "most restrictive limit in
//!   effect" and feeds the tokens trio; without it the trio is the whole input or output pool
//!   (never a mix) with the least remaining. Input and output pools also get IETF items.
//!   `anthropic-ratelimit-unified-*` (subscription OAuth) and `anthropic-priority-*` headers
//!   are not mapped.
//! - **`github`**: one request quota per resource; `graphql` counts points, reported as is.
//!
//! Mistral, Together, OpenRouter, Cerebras, DeepSeek and xAI are catalogued `none` today; set
//! them to `openai` to use the readings above (Mistral is reported to send the plain OpenAI
//! names or `-minute` / `-month` windowed ones; DeepSeek documents no rate-limit headers).
//! Not mapped, for want of a documented format: Gemini, Cohere, Bedrock, the SaaS providers
//! (Stripe, Slack, Twilio, … are `none`) and any provider-specific extras. A header whose
//! value does not parse (negative, fractional count, unknown unit, impossible date, …) is
//! skipped and nothing is derived from it; nothing here panics on input.
//!
//! # Example
//!
//! ```
//! use latchkey_policy::ratelimit::normalize;
//!
//! let now = 1_700_000_000; // 2023-11-14T22:13:20Z
//! let upstream = [
//!     ("anthropic-ratelimit-requests-limit", "50"),
//!     ("anthropic-ratelimit-requests-remaining", "49"),
//!     ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:32Z"),
//!     ("anthropic-ratelimit-tokens-limit", "90000"),
//!     ("anthropic-ratelimit-tokens-remaining", "89000"),
//!     ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:25Z"),
//! ];
//! let added = normalize("anthropic", &upstream, now);
//! assert_eq!(added.get("x-ratelimit-remaining-requests"), Some("49"));
//! assert_eq!(added.get("x-ratelimit-reset-requests"), Some("12s"));
//! assert_eq!(added.get("x-ratelimit-limit-tokens"), Some("90000"));
//! assert_eq!(
//!     added.get("ratelimit-policy"),
//!     Some(r#""requests";q=50, "tokens";q=90000;qu="tokens""#)
//! );
//! assert_eq!(added.get("ratelimit"), Some(r#""requests";r=49;t=12, "tokens";r=89000;t=5"#));
//!
//! // OpenAI already sends the trios: only the IETF fields are added.
//! let upstream = [
//!     ("x-ratelimit-limit-requests", "60"),
//!     ("x-ratelimit-remaining-requests", "59"),
//!     ("x-ratelimit-reset-requests", "1s"),
//! ];
//! let added = normalize("openai", &upstream, now);
//! assert_eq!(
//!     added.headers,
//!     vec![
//!         ("ratelimit-policy", r#""requests";q=60"#.to_string()),
//!         ("ratelimit", r#""requests";r=59;t=1"#.to_string()),
//!     ]
//! );
//! ```

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

mod dialect;
mod emit;
mod model;
mod parse;

use model::{Headers, Reading};

/// The dialect names [`normalize`] understands (the catalog's `rate_limit_headers` values).
pub const DIALECTS: [&str; 4] = ["openai", "anthropic", "github", "none"];

/// The IETF quota-policy field, as added (lowercase).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";

/// The IETF service-limit field, as added (lowercase).
pub const RATELIMIT: &str = "ratelimit";

/// The standard wait field; added only when derived from `retry-after-ms`.
pub const RETRY_AFTER: &str = "retry-after";

/// Every header name [`normalize`] may add, in the order it adds them.
pub const HEADER_NAMES: [&str; 9] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    RATELIMIT_POLICY,
    RATELIMIT,
    RETRY_AFTER,
];

/// The headers to add to a provider's response, in [`HEADER_NAMES`] order, each name at most
/// once and none the provider already sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    /// `(name, value)` pairs; names are lowercase and from [`HEADER_NAMES`].
    pub headers: Vec<(&'static str, String)>,
}

impl Normalized {
    /// The value to add for `name` (ASCII case ignored), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }
}

/// The normalized rate-limit headers to add to a response whose provider speaks `dialect`
/// (`openai`, `anthropic`, `github`, `none`; see [`DIALECTS`]) and sent `headers`.
///
/// `now_unix` is the current time in Unix seconds; timestamps the provider sends (Anthropic's
/// RFC 3339 resets, GitHub's epoch resets) are turned into seconds from it. Header names are
/// matched without regard to ASCII case; values are trimmed; malformed values are skipped.
/// See the [module documentation](self) for the mapping.
pub fn normalize(dialect: &str, headers: &[(&str, &str)], now_unix: i64) -> Normalized {
    // Most responses carry no rate-limit header at all: say so without building any name.
    if !headers.iter().any(|(k, _)| is_relevant(k)) {
        return Normalized {
            headers: Vec::new(),
        };
    }
    let h = Headers(headers);
    let dialect = dialect.trim();
    let reading = if dialect.eq_ignore_ascii_case("openai") {
        dialect::openai(h, now_unix)
    } else if dialect.eq_ignore_ascii_case("anthropic") {
        dialect::anthropic(h, now_unix)
    } else if dialect.eq_ignore_ascii_case("github") {
        dialect::github(h, now_unix)
    } else {
        Reading::default()
    };
    Normalized {
        headers: emit::emit(h, &reading),
    }
}

/// Whether a header can feed the normalized set: a `…ratelimit…` or `retry-after…` header.
pub fn is_relevant(name: &str) -> bool {
    let contains = |needle: &[u8]| {
        name.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    contains(b"ratelimit") || contains(b"retry-after")
}

#[cfg(test)]
mod tests;
