//! PII redaction: find personal data and secrets in prompt text and replace them with
//! `[REDACTED:KIND]` before a request leaves for the provider.
//!
//! # Detectors
//!
//! | name (policy format) | label | what is redacted |
//! |---|---|---|
//! | `email` | `EMAIL` | `local@domain.tld` (Unicode letters allowed, the top-level domain is at least two letters) |
//! | `phone` | `PHONE` | `+` followed by 8–15 digits (spaces, dots, dashes, parentheses allowed); North American numbers written with separators: `(212) 555-1234`, `212-555-1234`, `212.555.1234`, `1 212 555 1234` (area code and exchange start with 2–9). Bare 10-digit runs are not redacted: too many are ids. |
//! | `credit_card` | `CREDIT_CARD` | 13–19 digits, optionally grouped by one kind of separator (space or dash), with a major network prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) **and** a valid Luhn checksum |
//! | `iban` | `IBAN` | a known country code, that country's exact length (spaces allowed), **and** a valid ISO 7064 mod-97 check |
//! | `us_ssn` (alias `ssn`) | `US_SSN` | `AAA-GG-SSSS` or `AAA GG SSSS`, excluding area 000, 666 and 900–999, group 00, serial 0000 |
//! | `ipv4` | `IPV4` | dotted quads that parse strictly (no leading zeros, octets ≤ 255), not part of a longer dotted number (`1.2.3.4.5`) |
//! | `ipv6` | `IPV6` | addresses that parse strictly (embedded IPv4 allowed), stand alone, with ≥ 2 groups and ≥ 4 hex digits (so `::1` and `std::io` stay) |
//! | `api_key` | `API_KEY` | `sk-…` (OpenAI, Anthropic `sk-ant-…`), `AKIA…`/`ASIA…` (AWS), `ghp_…`/`gho_`/`ghu_`/`ghs_`/`ghr_`/`github_pat_…` (GitHub), `xox[abposr]-…` (Slack), `lk_…`/`lk_mcp_…`/`lk_adm_…` (Latchkey), `AIza…` (Google), `sk_live_…`/`rk_test_…` (Stripe) |
//! | custom regexes | `CUSTOM` | every non-empty match of the pattern (Rust `regex` syntax) |
//!
//! When matches overlap, they are merged into one redaction labelled by the first detector in
//! the order `api_key`, custom, `email`, `credit_card`, `iban`, `us_ssn`, `phone`, `ipv6`,
//! `ipv4`: no part of either match survives.
//!
//! # JSON bodies
//!
//! [`redact_json`] rewrites string **values** only, in place, so the body stays valid JSON;
//! keys and structure are never touched. With [`RedactScope::PromptFields`] only the
//! prompt-bearing fields of the OpenAI, Anthropic, Gemini and Bedrock shapes are rewritten
//! (exactly the fields policy rules read as prompt text, tool-call arguments and tool results;
//! see [`crate::rules`]); `model`, `temperature`, ids, roles and media are left alone. OpenAI
//! tool-call `arguments` are JSON text inside a string: they are parsed, redacted value by value
//! and re-encoded, so they stay valid JSON too. The caller re-serializes the body and sets
//! `content-length` from the new bytes.
//!
//! All patterns are compiled once, in [`Detectors::new`]. Per text, `email`, `api_key` and
//! custom patterns scan the whole text (they are literal-anchored: `@`, `sk-`, …, so the regex
//! engine skips ahead with `memchr`/Teddy); the digit-based detectors run only inside the
//! short numeric runs (and, for `ipv6`, colon runs, for `iban`, `LLdd` word starts) that one
//! byte pass over the text finds, so prose costs a single cheap pass.

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rules::shapes::{self, write::Sink};

mod validate;

/// A kind of personal data or secret. The serde names are the ones used in policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// E-mail addresses.
    Email,
    /// Phone numbers (international with `+`, North American with separators).
    Phone,
    /// Payment card numbers with a valid Luhn checksum.
    CreditCard,
    /// IBANs with a valid mod-97 check.
    Iban,
    /// US Social Security numbers.
    #[serde(alias = "ssn")]
    UsSsn,
    /// IPv4 addresses.
    Ipv4,
    /// IPv6 addresses.
    Ipv6,
    /// API keys and tokens of well-known shapes.
    ApiKey,
    /// A custom regex from the policy (never named in a policy's `detectors` list).
    #[serde(skip_deserializing)]
    Custom,
}

impl PiiKind {
    /// Every built-in detector (all kinds except [`PiiKind::Custom`]).
    pub const BUILTIN: [PiiKind; 8] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CreditCard,
        PiiKind::Iban,
        PiiKind::UsSsn,
        PiiKind::Ipv4,
        PiiKind::Ipv6,
        PiiKind::ApiKey,
    ];

    /// The name used in policies (`credit_card`).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Iban => "iban",
            PiiKind::UsSsn => "us_ssn",
            PiiKind::Ipv4 => "ipv4",
            PiiKind::Ipv6 => "ipv6",
            PiiKind::ApiKey => "api_key",
            PiiKind::Custom => "custom",
        }
    }

    /// The replacement written in place of a match: `[REDACTED:CREDIT_CARD]`.
    pub fn replacement(self) -> &'static str {
        match self {
            PiiKind::Email => "[REDACTED:EMAIL]",
            PiiKind::Phone => "[REDACTED:PHONE]",
            PiiKind::CreditCard => "[REDACTED:CREDIT_CARD]",
            PiiKind::Iban => "[REDACTED:IBAN]",
            PiiKind::UsSsn => "[REDACTED:US_SSN]",
            PiiKind::Ipv4 => "[REDACTED:IPV4]",
            PiiKind::Ipv6 => "[REDACTED:IPV6]",
            PiiKind::ApiKey => "[REDACTED:API_KEY]",
            PiiKind::Custom => "[REDACTED:CUSTOM]",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many matches of one kind were redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What was found.
    pub kind: PiiKind,
    /// How many redactions carry this kind's label.
    pub count: usize,
}

/// Building [`Detectors`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// A custom pattern is not a valid regex.
    #[error("invalid custom redaction pattern `{pattern}`: {error}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// The regex compiler's explanation.
        error: String,
    },
    /// A custom pattern is empty (it would match everywhere).
    #[error("custom redaction pattern is empty")]
    EmptyPattern,
}

/// Which string values of a JSON body [`redact_json`] rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactScope {
    /// Only prompt text, tool-call arguments and tool results in the OpenAI, Anthropic, Gemini
    /// and Bedrock shapes (the fields policy rules read).
    #[default]
    PromptFields,
    /// Every string value anywhere in the body (for `generic` provider bodies). Keys are still
    /// never touched.
    AllStrings,
}

/// Candidate check: the span to redact, or `None` to leave the candidate alone.
type Check = fn(&str, Range<usize>) -> Option<Range<usize>>;

/// Where in a text a detector can match at all.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    /// Anywhere: run over the whole text.
    Full,
    /// Only inside runs of `[0-9 .()+-]` holding at least 4 digits (phone, card, SSN, IPv4:
    /// every character those patterns match is in that set).
    Numeric,
    /// Only inside runs of `[0-9A-Fa-f:.]` holding at least 2 colons (IPv6).
    Hex,
    /// Only at word starts of the form `LLdd` (IBAN).
    IbanStart,
}

struct Entry {
    kind: PiiKind,
    regex: Regex,
    check: Option<Check>,
    region: Region,
}

/// A compiled set of detectors: built once per policy version, shared by every request.
pub struct Detectors {
    kinds: Vec<PiiKind>,
    custom: Vec<String>,
    /// In priority order (see the module docs).
    entries: Vec<Entry>,
}

impl fmt::Debug for Detectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detectors")
            .field("kinds", &self.kinds)
            .field("custom", &self.custom)
            .finish_non_exhaustive()
    }
}

const EMAIL: &str =
    r"[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}][\p{L}\p{N}\-]*(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}";
const PHONE: &str = r"(?-u)\+[0-9][0-9 .\-()]{5,22}[0-9]|(?:\b1[ .\-]?)?(?:\([2-9][0-9]{2}\)[ .\-]?|\b[2-9][0-9]{2}[ .\-])[2-9][0-9]{2}[ .\-][0-9]{4}\b";
const CREDIT_CARD: &str = r"(?-u)\b[0-9](?:[ \-]?[0-9]){12,18}\b";
const IBAN: &str = r"(?-u)\b[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,32}";
const US_SSN: &str = r"(?-u)\b[0-9]{3}[ \-][0-9]{2}[ \-][0-9]{4}\b";
const IPV4: &str = r"(?-u)\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b";
const IPV6: &str = r"(?i-u)(?:[0-9a-f]{0,4}:){2,6}[0-9]{1,3}(?:\.[0-9]{1,3}){3}|(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}";
const API_KEY: &str = r"(?-u)\b(?:sk-[A-Za-z0-9_\-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}\b|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|xox[abposr]-[A-Za-z0-9\-]{10,}|lk_(?:mcp_|adm_)?[A-Za-z0-9]{20,}|AIza[A-Za-z0-9_\-]{35}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,})";

/// The built-in pattern, check and region for a kind (`None` for [`PiiKind::Custom`]).
fn builtin(kind: PiiKind) -> Option<(&'static str, Option<Check>, Region)> {
    Some(match kind {
        PiiKind::Email => (EMAIL, None, Region::Full),
        PiiKind::Phone => (PHONE, Some(validate::phone as Check), Region::Numeric),
        PiiKind::CreditCard => (
            CREDIT_CARD,
            Some(validate::credit_card as Check),
            Region::Numeric,
        ),
        PiiKind::Iban => (IBAN, Some(validate::iban as Check), Region::IbanStart),
        PiiKind::UsSsn => (US_SSN, Some(validate::us_ssn as Check), Region::Numeric),
        PiiKind::Ipv4 => (IPV4, Some(validate::ipv4 as Check), Region::Numeric),
        PiiKind::Ipv6 => (IPV6, Some(validate::ipv6 as Check), Region::Hex),
        PiiKind::ApiKey => (API_KEY, None, Region::Full),
        PiiKind::Custom => return None,
    })
}

/// Built-in regexes are compiled once per process and shared (a `Regex` clone is cheap), so
/// compiling many tenants' policies does not recompile them each time.
fn builtin_regex(kind: PiiKind, pattern: &'static str) -> Result<Regex, PiiError> {
    static CACHE: [OnceLock<Regex>; 9] = [const { OnceLock::new() }; 9];
    let slot = &CACHE[kind.index()];
    if let Some(re) = slot.get() {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern).map_err(|e| PiiError::InvalidPattern {
        pattern: pattern.to_owned(),
        error: e.to_string(),
    })?;
    Ok(slot.get_or_init(|| re).clone())
}

/// Priority when matches overlap (also the order entries are kept in).
const PRIORITY: [PiiKind; 9] = [
    PiiKind::ApiKey,
    PiiKind::Custom,
    PiiKind::Email,
    PiiKind::CreditCard,
    PiiKind::Iban,
    PiiKind::UsSsn,
    PiiKind::Phone,
    PiiKind::Ipv6,
    PiiKind::Ipv4,
];

impl Detectors {
    /// Compiles the chosen built-in detectors plus custom regexes (Rust `regex` syntax; write
    /// `(?i)` for case-insensitive). [`PiiKind::Custom`] in `kinds` is ignored; duplicates are
    /// harmless.
    ///
    /// ```
    /// use latchkey_policy::pii::{Detectors, PiiKind};
    ///
    /// let d = Detectors::new(&[PiiKind::Email], &[r"ACME-\d{6}".to_string()])?;
    /// let (out, findings) = latchkey_policy::pii::redact_text("mail a@b.io re ACME-123456", &d);
    /// assert_eq!(out, "mail [REDACTED:EMAIL] re [REDACTED:CUSTOM]");
    /// assert_eq!(findings.len(), 2);
    /// assert!(Detectors::new(&[], &["(".to_string()]).is_err());
    /// # Ok::<(), latchkey_policy::pii::PiiError>(())
    /// ```
    pub fn new(kinds: &[PiiKind], custom: &[String]) -> Result<Self, PiiError> {
        let mut chosen: Vec<PiiKind> = Vec::new();
        for &k in kinds {
            if k != PiiKind::Custom && !chosen.contains(&k) {
                chosen.push(k);
            }
        }
        let mut entries = Vec::new();
        for kind in PRIORITY {
            if kind == PiiKind::Custom {
                for pattern in custom {
                    if pattern.is_empty() {
                        return Err(PiiError::EmptyPattern);
                    }
                    let regex = Regex::new(pattern).map_err(|e| PiiError::InvalidPattern {
                        pattern: pattern.clone(),
                        error: e.to_string(),
                    })?;
                    entries.push(Entry {
                        kind,
                        regex,
                        check: None,
                        region: Region::Full,
                    });
                }
            } else if chosen.contains(&kind) {
                if let Some((pattern, check, region)) = builtin(kind) {
                    let regex = builtin_regex(kind, pattern)?;
                    entries.push(Entry {
                        kind,
                        regex,
                        check,
                        region,
                    });
                }
            }
        }
        Ok(Detectors {
            kinds: chosen,
            custom: custom.to_vec(),
            entries,
        })
    }

    /// The built-in kinds enabled, in the order given.
    pub fn kinds(&self) -> &[PiiKind] {
        &self.kinds
    }

    /// The custom patterns, as written.
    pub fn custom_patterns(&self) -> &[String] {
        &self.custom
    }

    /// Whether no detector is enabled (redaction is then a no-op).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Redacts `text`, adding to `counts`; `None` when nothing was found (no allocation).
    fn redact_str(&self, text: &str, counts: &mut Counts) -> Option<String> {
        if self.entries.is_empty() || text.is_empty() {
            return None;
        }
        let regions = Regions::find(text, &self.entries);
        // (span, priority): priority is the entry index, lower wins.
        let mut spans: Vec<(Range<usize>, usize)> = Vec::new();
        for (prio, entry) in self.entries.iter().enumerate() {
            match entry.region {
                Region::Full => {
                    scan(entry, prio, text, 0..text.len(), usize::MAX, &mut spans);
                }
                Region::Numeric => {
                    for run in regions.numeric.iter().filter(|r| r.may_hold(entry.kind)) {
                        scan(
                            entry,
                            prio,
                            text,
                            widen(text, &run.range),
                            usize::MAX,
                            &mut spans,
                        );
                    }
                }
                Region::Hex => {
                    for run in &regions.hex {
                        scan(entry, prio, text, widen(text, run), usize::MAX, &mut spans);
                    }
                }
                Region::IbanStart => {
                    let mut done = 0;
                    for &start in &regions.iban {
                        if start >= done {
                            let window = widen(text, &(start..start + IBAN_WINDOW));
                            done = scan(entry, prio, text, window, 1, &mut spans);
                        }
                    }
                }
            }
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort_by_key(|(r, p)| (r.start, *p));
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut i = 0;
        while i < spans.len() {
            let (first, mut prio) = spans[i].clone();
            let start = first.start;
            let mut end = first.end;
            i += 1;
            while i < spans.len() && spans[i].0.start < end {
                end = end.max(spans[i].0.end);
                prio = prio.min(spans[i].1);
                i += 1;
            }
            let kind = self.entries.get(prio).map_or(PiiKind::Custom, |e| e.kind);
            out.push_str(text.get(last..start).unwrap_or_default());
            out.push_str(kind.replacement());
            counts.0[kind.index()] += 1;
            last = end;
        }
        out.push_str(text.get(last..).unwrap_or_default());
        Some(out)
    }
}

/// Longest IBAN text: 34 characters plus a space every four.
const IBAN_WINDOW: usize = 44;

/// `range` grown by one character on each side (for `\b` context), clamped to `text` and to
/// character boundaries.
fn widen(text: &str, range: &Range<usize>) -> Range<usize> {
    let mut lo = range.start.saturating_sub(1);
    while lo > 0 && !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = (range.end + 1).min(text.len());
    while hi < text.len() && !text.is_char_boundary(hi) {
        hi += 1;
    }
    lo..hi
}

/// Runs `entry` over `text[window]` (at most `limit` accepted matches), validating each
/// candidate against the whole text; a rejected candidate is retried one character later so a
/// greedy false candidate cannot hide a real one. Returns where scanning stopped.
fn scan(
    entry: &Entry,
    prio: usize,
    text: &str,
    window: Range<usize>,
    limit: usize,
    spans: &mut Vec<(Range<usize>, usize)>,
) -> usize {
    let Some(hay) = text.get(window.clone()) else {
        return window.end;
    };
    let base = window.start;
    let mut at = 0;
    let mut accepted = 0;
    while at <= hay.len() && accepted < limit {
        let Some(m) = entry.regex.find_at(hay, at) else {
            break;
        };
        let span = (base + m.start())..(base + m.end());
        let ok = match entry.check {
            _ if span.is_empty() => None,
            Some(check) => check(text, span.clone()),
            None => Some(span.clone()),
        };
        match ok {
            Some(found) if found.start < found.end => {
                at = (found.end - base).max(m.start() + 1);
                spans.push((found, prio));
                accepted += 1;
            }
            _ => at = next_char_boundary(hay, m.start()),
        }
        while at < hay.len() && !hay.is_char_boundary(at) {
            at += 1;
        }
    }
    base + at.min(hay.len())
}

/// A run of `[0-9 .()+-]` and what it holds.
struct NumericRun {
    range: Range<usize>,
    digits: usize,
    dots: usize,
    plus: bool,
}

impl NumericRun {
    /// Whether a detector's pattern can match in this run at all (saves a regex call on the
    /// many short numbers of ordinary prose: dates, versions, amounts).
    fn may_hold(&self, kind: PiiKind) -> bool {
        match kind {
            PiiKind::CreditCard => self.digits >= 13,
            PiiKind::UsSsn => self.digits >= 9,
            PiiKind::Phone => self.digits >= 10 || (self.plus && self.digits >= 8),
            PiiKind::Ipv4 => self.dots >= 3,
            _ => true,
        }
    }
}

/// The parts of a text where region-restricted detectors can match, found in one byte pass.
#[derive(Default)]
struct Regions {
    numeric: Vec<NumericRun>,
    hex: Vec<Range<usize>>,
    iban: Vec<usize>,
}

impl Regions {
    fn find(text: &str, entries: &[Entry]) -> Regions {
        let wants = |r: Region| entries.iter().any(|e| e.region == r);
        let (numeric, hex, iban) = (
            wants(Region::Numeric),
            wants(Region::Hex),
            wants(Region::IbanStart),
        );
        let mut out = Regions::default();
        if !(numeric || hex || iban) {
            return out;
        }
        let b = text.as_bytes();
        // Numeric runs, and IBAN starts (`LLdd` not preceded by a letter or digit). Skip from
        // digit to digit; only the bytes around digits are looked at twice.
        if numeric || iban {
            let member = |c: u8| matches!(c, b'0'..=b'9' | b' ' | b'.' | b'-' | b'(' | b')' | b'+');
            let mut i = 0;
            while let Some(off) = b
                .get(i..)
                .and_then(|t| t.iter().position(u8::is_ascii_digit))
            {
                let d = i + off;
                let mut lo = d;
                while lo > 0 && member(b[lo - 1]) {
                    lo -= 1;
                }
                if iban
                    && lo == d
                    && d >= 2
                    && b.get(d + 1).is_some_and(u8::is_ascii_digit)
                    && b[d - 1].is_ascii_alphabetic()
                    && b[d - 2].is_ascii_alphabetic()
                    && (d == 2 || !b[d - 3].is_ascii_alphanumeric())
                {
                    out.iban.push(d - 2);
                }
                let mut run = NumericRun {
                    range: lo..d,
                    digits: 0,
                    dots: 0,
                    plus: false,
                };
                let mut hi = lo;
                while hi < b.len() && member(b[hi]) {
                    match b[hi] {
                        b'0'..=b'9' => run.digits += 1,
                        b'.' => run.dots += 1,
                        b'+' => run.plus = true,
                        _ => {}
                    }
                    hi += 1;
                }
                run.range.end = hi;
                if numeric && run.digits >= 4 {
                    out.numeric.push(run);
                }
                i = hi.max(d + 1);
            }
        }
        // Hex-and-colon runs around colons.
        if hex {
            let mut from = 0;
            while let Some(off) = text.get(from..).and_then(|t| t.find(':')) {
                let colon = from + off;
                let hexish = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
                let mut lo = colon;
                while lo > 0 && hexish(b[lo - 1]) {
                    lo -= 1;
                }
                let mut hi = colon + 1;
                while hi < b.len() && hexish(b[hi]) {
                    hi += 1;
                }
                if b[lo..hi].iter().filter(|&&c| c == b':').count() >= 2 {
                    out.hex.push(lo..hi);
                }
                from = hi;
            }
        }
        out
    }
}

fn next_char_boundary(text: &str, at: usize) -> usize {
    let mut i = at + 1;
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Redaction counts by kind.
#[derive(Default)]
struct Counts([usize; 9]);

impl Counts {
    fn findings(&self) -> Vec<Finding> {
        let all = PiiKind::BUILTIN.into_iter().chain([PiiKind::Custom]);
        all.filter_map(|kind| {
            let count = self.0[kind.index()];
            (count > 0).then_some(Finding { kind, count })
        })
        .collect()
    }
}

/// Redacts every detected item in `text`, returning the new text and what was found (one
/// [`Finding`] per kind, in [`PiiKind::BUILTIN`] order then custom).
///
/// ```
/// use latchkey_policy::pii::{redact_text, Detectors, Finding, PiiKind};
///
/// let d = Detectors::new(&PiiKind::BUILTIN, &[])?;
/// let (out, found) = redact_text("card 4111 1111 1111 1111, not 4111 1111 1111 1112", &d);
/// assert_eq!(out, "card [REDACTED:CREDIT_CARD], not 4111 1111 1111 1112");
/// assert_eq!(found, vec![Finding { kind: PiiKind::CreditCard, count: 1 }]);
/// # Ok::<(), latchkey_policy::pii::PiiError>(())
/// ```
pub fn redact_text(text: &str, detectors: &Detectors) -> (String, Vec<Finding>) {
    let mut counts = Counts::default();
    let out = detectors
        .redact_str(text, &mut counts)
        .unwrap_or_else(|| text.to_owned());
    (out, counts.findings())
}

/// Redacts string values of a JSON body in place and returns what was found. Keys, numbers,
/// structure and (with [`RedactScope::PromptFields`]) every non-prompt field are untouched,
/// so the value always re-serializes to valid JSON. An empty result means the body was not
/// modified and the original bytes may be forwarded as they are.
///
/// ```
/// use latchkey_policy::pii::{redact_json, Detectors, PiiKind, RedactScope};
/// use serde_json::json;
///
/// let d = Detectors::new(&[PiiKind::Email], &[])?;
/// let mut body = json!({
///     "model": "gpt-4o@example.com",
///     "messages": [{"role": "user", "content": "write to bob@example.com"}]
/// });
/// let found = redact_json(&mut body, &d, RedactScope::PromptFields);
/// assert_eq!(found[0].count, 1);
/// assert_eq!(body["messages"][0]["content"], "write to [REDACTED:EMAIL]");
/// assert_eq!(body["model"], "gpt-4o@example.com"); // not a prompt field
/// let bytes = serde_json::to_vec(&body).unwrap(); // caller sets content-length from this
/// # let _ = bytes;
/// # Ok::<(), latchkey_policy::pii::PiiError>(())
/// ```
pub fn redact_json(body: &mut Value, detectors: &Detectors, scope: RedactScope) -> Vec<Finding> {
    let mut sink = JsonRedactor {
        detectors,
        counts: Counts::default(),
    };
    if !detectors.is_empty() {
        match scope {
            RedactScope::PromptFields => shapes::write::walk(body, &mut sink),
            RedactScope::AllStrings => sink.all_strings(body),
        }
    }
    sink.counts.findings()
}

struct JsonRedactor<'d> {
    detectors: &'d Detectors,
    counts: Counts,
}

impl JsonRedactor<'_> {
    fn string(&mut self, s: &mut String) {
        if let Some(new) = self.detectors.redact_str(s, &mut self.counts) {
            *s = new;
        }
    }

    fn all_strings(&mut self, v: &mut Value) {
        shapes::for_each_string_mut(v, 0, &mut |s| self.string(s));
    }
}

impl Sink for JsonRedactor<'_> {
    fn text(&mut self, s: &mut String) {
        self.string(s);
    }

    fn tool_name(&mut self, _: &mut String) {}

    fn tool_args(&mut self, v: &mut Value) {
        match v {
            // OpenAI encodes arguments as JSON text: redact inside the decoded value so the
            // re-encoded text is still valid JSON (and no match can straddle a quote).
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(mut inner) if inner.is_object() || inner.is_array() => {
                    let before = self.counts.0;
                    self.all_strings(&mut inner);
                    if before != self.counts.0 {
                        if let Ok(text) = serde_json::to_string(&inner) {
                            *s = text;
                        }
                    }
                }
                _ => self.string(s),
            },
            other => self.all_strings(other),
        }
    }

    fn tool_result(&mut self, v: &mut Value) {
        self.all_strings(v);
    }
}

#[cfg(test)]
mod tests;
