//! Model prices: USD per million tokens by provider and model glob, and costs in micro-dollars.
//!
//! ```toml
//! # USD per million tokens
//! [default]              # any model no entry matches (conservative on purpose)
//! input = 15.0
//! output = 75.0
//!
//! [[model]]
//! provider = "openai"    # glob, optional (default "*")
//! model = "gpt-4o-mini*" # glob; the first entry matching provider and model wins
//! input = 0.15
//! output = 0.60
//!
//! [[model]]
//! model = "*gemini-2.5-pro*"
//! input = 1.25
//! output = 10.0
//! # Above this many input tokens the whole request is billed at the long-context rates.
//! long_context = { above_input_tokens = 200_000, input = 2.50, output = 15.0 }
//! ```
//!
//! Globs: `*` matches any run of characters, everything else itself, ignoring ASCII case.
//! Unknown keys are errors, so a typo (`ouptut`) cannot silently price a model at zero.
//!
//! Costs are computed in integers: a price is turned into pico-dollars per token (exact to
//! $0.000001 per million tokens), multiplied by the token counts in 128 bits, and divided up
//! into micro-dollars, rounding up, so a budget is never under-charged by rounding.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::Usage;

const BUILTIN_TOML: &str = include_str!("../../data/prices.toml");

/// Highest accepted price, USD per million tokens: far above any real one, low enough that the
/// integer arithmetic cannot overflow.
const MAX_PRICE: f64 = 1_000_000.0;

/// The price of one model. Serializable for display; tables are read from TOML only
/// ([`PriceTable::from_toml`]), where every rate is validated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// Higher rates for requests with a long prompt (Gemini Pro, Claude Sonnet 4 with 1M
    /// context), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextPrice>,
}

/// Rates that replace a [`Price`]'s when a request's input exceeds a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LongContextPrice {
    /// The rates apply when `input_tokens` is greater than this.
    pub above_input_tokens: u64,
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// A flat price in USD per million input and output tokens.
    pub fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Price {
            input_per_mtok,
            output_per_mtok,
            long_context: None,
        }
    }

    /// The (input, output) rates in USD per million tokens for a request with this many input
    /// tokens.
    pub fn rates_for(&self, input_tokens: u64) -> (f64, f64) {
        match self.long_context {
            Some(long) if input_tokens > long.above_input_tokens => {
                (long.input_per_mtok, long.output_per_mtok)
            }
            _ => (self.input_per_mtok, self.output_per_mtok),
        }
    }

    /// What `usage` costs, in micro-dollars, rounded up (saturating at `u64::MAX`). Negative or
    /// non-finite rates (only possible in a hand-built `Price`; parsed tables reject them) count
    /// as zero.
    ///
    /// ```
    /// use latchkey_policy::usage::{Price, Usage};
    /// let p = Price::new(0.15, 0.60); // gpt-4o-mini
    /// let u = Usage { input_tokens: 1_000, output_tokens: 500 };
    /// assert_eq!(p.cost_micros(u), 450); // $0.00015 + $0.0003 = 450 µ$
    /// assert_eq!(p.cost_micros(Usage { input_tokens: 1, output_tokens: 0 }), 1); // 0.15 µ$ → 1
    /// ```
    pub fn cost_micros(&self, usage: Usage) -> u64 {
        let (input_rate, output_rate) = self.rates_for(usage.input_tokens);
        let pico = u128::from(usage.input_tokens) * pico_per_token(input_rate)
            + u128::from(usage.output_tokens) * pico_per_token(output_rate);
        u64::try_from(pico.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// USD per million tokens is micro-dollars per token; ×10⁶ gives pico-dollars per token. Rounding
/// to the nearest integer removes binary floating-point noise (0.15 × 10⁶ = 150000.00000000003).
fn pico_per_token(usd_per_mtok: f64) -> u128 {
    let pico = (usd_per_mtok * 1e6).round();
    if pico.is_finite() && pico > 0.0 {
        // In range: parsed prices are at most MAX_PRICE, and the cast saturates anyway.
        pico as u128
    } else {
        0
    }
}

/// One `[[model]]` entry of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceEntry {
    /// Provider glob (the gateway's provider id, e.g. `openai`, `bedrock`).
    pub provider: String,
    /// Model glob.
    pub model: String,
    /// The price of matching models.
    pub price: Price,
}

impl PriceEntry {
    fn matches(&self, provider: &str, model: &str) -> bool {
        glob_match(&self.provider, provider) && glob_match(&self.model, model)
    }
}

/// Prices by provider and model: ordered entries (first match wins) and a default.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    default: Price,
    entries: Vec<PriceEntry>,
}

/// Why a price table was refused.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// Not valid TOML, or not the price-table format (unknown key, missing field, wrong type).
    #[error("price table: {0}")]
    Toml(#[from] toml::de::Error),
    /// A complete table must say what unlisted models cost.
    #[error("price table has no [default] section: it is required to price models no entry lists")]
    MissingDefault,
    /// A price that is negative, not finite or absurdly high.
    #[error("price table: {field} of {entry} is {value}; prices are USD per million tokens, 0 to 1000000")]
    InvalidPrice {
        /// `[default]` or the entry's model pattern.
        entry: String,
        /// Which field (`input`, `output`, `long_context.input`, …).
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// An entry whose model pattern is empty (it would match only an empty model name).
    #[error("price table: [[model]] number {index} has an empty model pattern")]
    EmptyModel {
        /// 1-based position of the entry in its file.
        index: usize,
    },
}

impl PriceTable {
    /// Parses a complete table; it must have a `[default]`.
    ///
    /// ```
    /// use latchkey_policy::usage::{PriceError, PriceTable};
    /// let t = PriceTable::from_toml(r#"
    ///     [default]
    ///     input = 10
    ///     output = 30
    ///     [[model]]
    ///     provider = "openai"
    ///     model = "gpt-4o-mini*"
    ///     input = 0.15
    ///     output = 0.60
    /// "#).unwrap();
    /// assert_eq!(t.price("openai", "GPT-4o-mini-2024-07-18").input_per_mtok, 0.15);
    /// assert_eq!(t.price("azure-openai", "gpt-4o-mini").input_per_mtok, 10.0);
    /// assert!(matches!(PriceTable::from_toml("[[model]]\nmodel = \"x\"\ninput = 1\noutput = 1"),
    ///     Err(PriceError::MissingDefault)));
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, PriceError> {
        let (default, entries) = parse(text)?;
        Ok(PriceTable {
            default: default.ok_or(PriceError::MissingDefault)?,
            entries,
        })
    }

    /// The table compiled in from `policy/data/prices.toml` (parsed once).
    pub fn builtin() -> &'static PriceTable {
        static BUILTIN: OnceLock<PriceTable> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The file is part of the binary and checked by a unit test, so a parse failure is
            // a build defect, not an input error.
            PriceTable::from_toml(BUILTIN_TOML).expect("built-in price table is valid")
        })
    }

    /// `base` (normally [`builtin`](Self::builtin)) with an operator's file laid over it. The
    /// overrides may omit `[default]` (the base one stays). Their entries are tried before every
    /// base entry, so they replace base entries for the models they match (a base entry with the
    /// very same provider and model patterns is dropped) and add models the base lacks. Mind
    /// that a broad override glob (`gpt-4o*`) also shadows more specific base entries
    /// (`gpt-4o-mini*`).
    ///
    /// ```
    /// use latchkey_policy::usage::PriceTable;
    /// let ours = PriceTable::merged(PriceTable::builtin(), r#"
    ///     [[model]]
    ///     provider = "openai"
    ///     model = "ft:gpt-4o-mini*"   # our fine-tune
    ///     input = 0.30
    ///     output = 1.20
    /// "#).unwrap();
    /// assert_eq!(ours.price("openai", "ft:gpt-4o-mini:acme::abc").output_per_mtok, 1.20);
    /// assert_eq!(ours.price("openai", "gpt-4o-mini"), PriceTable::builtin().price("openai", "gpt-4o-mini"));
    /// ```
    pub fn merged(base: &PriceTable, overrides: &str) -> Result<Self, PriceError> {
        let (default, mut entries) = parse(overrides)?;
        let same_patterns = |a: &PriceEntry, b: &PriceEntry| {
            a.provider.eq_ignore_ascii_case(&b.provider) && a.model.eq_ignore_ascii_case(&b.model)
        };
        let kept: Vec<PriceEntry> = base
            .entries
            .iter()
            .filter(|b| !entries.iter().any(|o| same_patterns(o, b)))
            .cloned()
            .collect();
        entries.extend(kept);
        Ok(PriceTable {
            default: default.unwrap_or(base.default),
            entries,
        })
    }

    /// The price of `model` at `provider`: the first matching entry's, else the default. Pass
    /// `""` for a model the gateway could not determine; it gets the default.
    pub fn price(&self, provider: &str, model: &str) -> Price {
        self.lookup(provider, model)
            .map_or(self.default, |entry| entry.price)
    }

    /// The entry that prices `model` at `provider`, or `None` when the default applies (worth a
    /// warning: the model is unlisted).
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&PriceEntry> {
        self.entries.iter().find(|e| e.matches(provider, model))
    }

    /// What `usage` of `model` at `provider` costs, in micro-dollars, rounded up.
    ///
    /// ```
    /// use latchkey_policy::usage::{PriceTable, Usage};
    /// let t = PriceTable::builtin();
    /// let u = Usage { input_tokens: 1_000_000, output_tokens: 1_000_000 };
    /// assert_eq!(t.cost_micros("openai", "gpt-4o-mini", u), 750_000); // $0.15 + $0.60
    /// // An unlisted model is priced at the (deliberately high) default.
    /// assert_eq!(t.cost_micros("acme", "mystery-1", u), 90_000_000); // $15 + $75
    /// ```
    pub fn cost_micros(&self, provider: &str, model: &str, usage: Usage) -> u64 {
        self.price(provider, model).cost_micros(usage)
    }

    /// The price of unlisted models.
    pub fn default_price(&self) -> Price {
        self.default
    }

    /// The entries in match order.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }
}

// The file format. Separate from the public types so the TOML keys stay short (`input`) while
// the API says what the unit is (`input_per_mtok`).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<RawPrice>,
    #[serde(default)]
    model: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
    long_context: Option<RawLong>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default = "any")]
    provider: String,
    model: String,
    input: f64,
    output: f64,
    long_context: Option<RawLong>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLong {
    above_input_tokens: u64,
    input: f64,
    output: f64,
}

fn any() -> String {
    "*".to_string()
}

type Parsed = (Option<Price>, Vec<PriceEntry>);

fn parse(text: &str) -> Result<Parsed, PriceError> {
    let raw: RawFile = toml::from_str(text)?;
    let default = raw
        .default
        .map(|d| price(d.input, d.output, d.long_context, "[default]"))
        .transpose()?;
    let entries = raw
        .model
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.model.is_empty() {
                return Err(PriceError::EmptyModel { index: i + 1 });
            }
            Ok(PriceEntry {
                price: price(e.input, e.output, e.long_context, &e.model)?,
                provider: e.provider,
                model: e.model,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((default, entries))
}

fn price(input: f64, output: f64, long: Option<RawLong>, entry: &str) -> Result<Price, PriceError> {
    let check = |field: &'static str, value: f64| {
        if value.is_finite() && (0.0..=MAX_PRICE).contains(&value) {
            Ok(value)
        } else {
            Err(PriceError::InvalidPrice {
                entry: entry.to_string(),
                field,
                value,
            })
        }
    };
    let long_context = long
        .map(|l| {
            Ok::<_, PriceError>(LongContextPrice {
                above_input_tokens: l.above_input_tokens,
                input_per_mtok: check("long_context.input", l.input)?,
                output_per_mtok: check("long_context.output", l.output)?,
            })
        })
        .transpose()?;
    Ok(Price {
        input_per_mtok: check("input", input)?,
        output_per_mtok: check("output", output)?,
        long_context,
    })
}

/// `*` matches any run of bytes (including none), every other byte itself ignoring ASCII case.
/// Classic greedy matching with backtracking to the last star: O(pattern × text) at worst, no
/// recursion. Byte-wise is sound for UTF-8: literal bytes must match exactly, and ASCII folding
/// never touches the bytes of multi-byte characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last star was, and the text position it is currently taken to match up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&b'*') {
            star = Some((pi, ti));
            pi += 1;
        } else if p.get(pi).is_some_and(|c| c.eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            // Let the star swallow one more byte and retry the rest.
            star = Some((star_pi, star_ti + 1));
            pi = star_pi + 1;
            ti = star_ti + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::{glob_match, Price, PriceError, PriceTable, BUILTIN_TOML};
    use crate::usage::Usage;

    const TABLE: &str = r#"
        [default]
        input = 10.0
        output = 30.0

        [[model]]
        provider = "openai"
        model = "gpt-4o-mini*"
        input = 0.15
        output = 0.60

        [[model]]
        provider = "openai"
        model = "gpt-4o*"
        input = 2.5
        output = 10

        [[model]]
        model = "*claude-sonnet-4*"
        input = 3
        output = 15
        long_context = { above_input_tokens = 200000, input = 6, output = 22.5 }
    "#;

    fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
        Usage {
            input_tokens,
            output_tokens,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("gpt-4o*", "GPT-4O-mini"));
        assert!(!glob_match("gpt-4o*", "gpt-4"));
        assert!(glob_match(
            "*claude-sonnet-4*",
            "us.anthropic.claude-sonnet-4-20250514-v1:0"
        ));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("*-mini", "o4-mini"));
        assert!(!glob_match("*-mini", "o4-mini-high"));
        assert!(glob_match("ab*ba", "abba"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("gpt-4o", "gpt-4o"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(glob_match("é*", "é-model"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("**x**", "x"));
    }

    #[test]
    fn first_match_wins_and_unknown_falls_to_default() {
        let t = PriceTable::from_toml(TABLE).unwrap();
        assert_eq!(
            t.price("openai", "gpt-4o-mini-2024-07-18"),
            Price::new(0.15, 0.60)
        );
        assert_eq!(
            t.price("openai", "gpt-4o-2024-08-06"),
            Price::new(2.5, 10.0)
        );
        // Provider glob: the OpenAI entries do not apply to another provider.
        assert_eq!(t.price("azure-openai", "gpt-4o"), Price::new(10.0, 30.0));
        assert_eq!(
            t.price("bedrock", "anthropic.claude-sonnet-4-5-v1:0")
                .input_per_mtok,
            3.0
        );
        assert_eq!(t.price("openai", ""), Price::new(10.0, 30.0));
        assert!(t.lookup("openai", "o3").is_none());
        assert_eq!(
            t.lookup("openai", "gpt-4o").map(|e| e.model.as_str()),
            Some("gpt-4o*")
        );
    }

    #[test]
    fn costs_round_up_and_use_long_context_rates() {
        let t = PriceTable::from_toml(TABLE).unwrap();
        // 3 tokens × $0.15/M = 0.45 µ$ → 1; 1M × 0.15 exactly 150_000 (no float noise).
        assert_eq!(t.cost_micros("openai", "gpt-4o-mini", usage(3, 0)), 1);
        assert_eq!(
            t.cost_micros("openai", "gpt-4o-mini", usage(1_000_000, 0)),
            150_000
        );
        assert_eq!(
            t.cost_micros("openai", "gpt-4o-mini", usage(1_000, 1_000)),
            750
        );
        assert_eq!(t.cost_micros("openai", "gpt-4o-mini", usage(1_001, 0)), 151);
        assert_eq!(t.cost_micros("openai", "gpt-4o-mini", usage(0, 0)), 0);
        let sonnet = "claude-sonnet-4-5";
        assert_eq!(
            t.cost_micros("anthropic", sonnet, usage(200_000, 1_000)),
            615_000
        );
        // One token over the threshold: the whole request at 6 / 22.5.
        assert_eq!(
            t.cost_micros("anthropic", sonnet, usage(200_001, 1_000)),
            1_222_506
        );
        // Saturates rather than wrapping.
        let huge = Price::new(1_000_000.0, 1_000_000.0).cost_micros(usage(u64::MAX, u64::MAX));
        assert_eq!(huge, u64::MAX);
        assert_eq!(Price::new(f64::NAN, -1.0).cost_micros(usage(5, 5)), 0);
    }

    #[test]
    fn merge_overrides_and_extends() {
        let base = PriceTable::from_toml(TABLE).unwrap();
        let merged = PriceTable::merged(
            &base,
            r#"
            [[model]]
            provider = "OpenAI"
            model = "GPT-4o*"
            input = 5
            output = 20

            [[model]]
            provider = "mistral"
            model = "mistral-large*"
            input = 2
            output = 6
            "#,
        )
        .unwrap();
        assert_eq!(
            merged.price("openai", "gpt-4o-2024-08-06"),
            Price::new(5.0, 20.0)
        );
        // The override's broad glob comes first, so it also shadows the base's gpt-4o-mini.
        assert_eq!(merged.price("openai", "gpt-4o-mini"), Price::new(5.0, 20.0));
        assert_eq!(
            merged.price("mistral", "mistral-large-latest"),
            Price::new(2.0, 6.0)
        );
        assert_eq!(merged.price("x", "y"), base.default_price());
        // The replaced base entry is gone, the others stay after the overrides.
        assert_eq!(merged.entries().len(), 4);
        let with_default = PriceTable::merged(&base, "[default]\ninput = 1\noutput = 2").unwrap();
        assert_eq!(with_default.default_price(), Price::new(1.0, 2.0));
        assert_eq!(with_default.entries(), base.entries());
    }

    #[test]
    fn refuses_bad_tables() {
        assert!(matches!(
            PriceTable::from_toml("[[model]]\nmodel = \"x\"\ninput = 1\noutput = 1"),
            Err(PriceError::MissingDefault)
        ));
        assert!(matches!(
            PriceTable::from_toml(""),
            Err(PriceError::MissingDefault)
        ));
        for bad in [
            "[default]\ninput = -1\noutput = 1",
            "[default]\ninput = nan\noutput = 1",
            "[default]\ninput = inf\noutput = 1",
            "[default]\ninput = 1\noutput = 2e6",
            "[default]\ninput = 1\noutput = 1\nlong_context = { above_input_tokens = 1, input = -2, output = 1 }",
        ] {
            assert!(
                matches!(PriceTable::from_toml(bad), Err(PriceError::InvalidPrice { .. })),
                "{bad}"
            );
        }
        for bad in [
            "[default]\ninput = 1\nouptut = 1",
            "[default]\ninput = 1",
            "[default]\ninput = \"1\"\noutput = 1",
            "[default]\ninput = 1\noutput = 1\n[[model]]\ninput = 1\noutput = 1",
            "[default]\ninput = 1\noutput = 1\n[[model]]\nmodel = \"x\"\nprovder = \"y\"\ninput = 1\noutput = 1",
            "not toml",
        ] {
            assert!(matches!(PriceTable::from_toml(bad), Err(PriceError::Toml(_))), "{bad}");
        }
        let empty =
            "[default]\ninput = 1\noutput = 1\n[[model]]\nmodel = \"\"\ninput = 1\noutput = 1";
        assert!(matches!(
            PriceTable::from_toml(empty),
            Err(PriceError::EmptyModel { index: 1 })
        ));
        let err = PriceTable::from_toml("[default]\ninput = -1\noutput = 1").unwrap_err();
        assert!(
            err.to_string().contains("input of [default] is -1"),
            "{err}"
        );
    }

    #[test]
    fn builtin_table_parses_and_prices_well_known_models() {
        let t = PriceTable::from_toml(BUILTIN_TOML).unwrap();
        assert_eq!(&t, PriceTable::builtin());
        let p = |provider: &str, model: &str| {
            let price = t.price(provider, model);
            (price.input_per_mtok, price.output_per_mtok)
        };
        assert_eq!(p("openai", "gpt-4o-mini"), (0.15, 0.60));
        assert_eq!(p("openai", "gpt-4o-mini-2024-07-18"), (0.15, 0.60));
        assert_eq!(p("openai", "gpt-4o"), (2.50, 10.0));
        assert_eq!(p("openai", "gpt-4o-2024-05-13"), (5.0, 15.0));
        assert_eq!(p("openai", "gpt-4.1-mini-2025-04-14"), (0.40, 1.60));
        assert_eq!(p("openai", "gpt-4.1"), (2.0, 8.0));
        assert_eq!(p("openai", "o3"), (2.0, 8.0));
        assert_eq!(p("openai", "o3-mini"), (1.10, 4.40));
        assert_eq!(p("openai", "o1-pro"), (150.0, 600.0));
        assert_eq!(p("openai", "o4-mini-2025-04-16"), (1.10, 4.40));
        assert_eq!(p("openai", "gpt-5-pro"), (15.0, 120.0));
        assert_eq!(p("openai", "text-embedding-3-small"), (0.02, 0.0));
        assert_eq!(p("anthropic", "claude-opus-4-1-20250805"), (15.0, 75.0));
        assert_eq!(p("anthropic", "claude-opus-4-5-20251101"), (5.0, 25.0));
        assert_eq!(p("anthropic", "claude-sonnet-4-5-20250929"), (3.0, 15.0));
        assert_eq!(p("anthropic", "claude-3-5-haiku-latest"), (0.80, 4.0));
        assert_eq!(p("anthropic", "claude-haiku-4-5"), (1.0, 5.0));
        assert_eq!(
            p("bedrock", "us.anthropic.claude-3-haiku-20240307-v1:0"),
            (0.25, 1.25)
        );
        assert_eq!(p("gemini", "gemini-2.5-pro"), (1.25, 10.0));
        assert_eq!(p("gemini", "gemini-2.5-flash-lite"), (0.10, 0.40));
        assert_eq!(p("gemini", "gemini-2.5-flash"), (0.30, 2.50));
        assert_eq!(p("gemini", "gemini-2.0-flash-001"), (0.10, 0.40));
        assert_eq!(p("gemini", "gemini-1.5-flash-8b"), (0.0375, 0.15));
        assert_eq!(p("groq", "llama-3.3-70b-versatile"), (0.59, 0.79));
        assert_eq!(p("deepseek", "deepseek-chat"), (0.28, 0.42));
        assert_eq!(p("unknown", "unknown-model"), (15.0, 75.0));
        // Long-context tiers are wired for Gemini Pro.
        let long = t.price("gemini", "gemini-2.5-pro").rates_for(300_000);
        assert_eq!(long, (2.50, 15.0));
        // Every entry must be reachable: an entry shadowed by an earlier, broader one is a bug
        // in the file (its own pattern, used as a model name, must find it first).
        for (i, e) in t.entries().iter().enumerate() {
            let name = e.model.replace('*', "");
            let provider = e.provider.replace('*', "x");
            let first = t.entries().iter().position(|o| o.matches(&provider, &name));
            assert_eq!(first, Some(i), "entry {} ({}) is shadowed", i, e.model);
        }
    }
}
