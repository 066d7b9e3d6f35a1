//! Usage metering and pricing: how many tokens a provider response used, what that costs, and the
//! most a request could cost before it is sent.
//!
//! Pure like the rest of this crate: no I/O, no clock, no async. The gateway hands in bytes and
//! strings (response chunks, the price file it read) and gets numbers back.
//!
//! - [`usage_from_json`]: the [`Usage`] of a complete (non-streamed) JSON response, recognized by
//!   shape: OpenAI chat / completions / embeddings / Responses, Anthropic messages, Gemini,
//!   Bedrock Converse and InvokeModel (Anthropic, Llama, Titan bodies), Cohere, and every
//!   OpenAI-compatible provider (Mistral, Groq, DeepSeek, …).
//! - [`UsageMeter`]: the same for a response body seen chunk by chunk while the gateway streams it
//!   to the client unchanged: JSON, server-sent events and AWS event-stream frames, with bounded
//!   memory.
//! - [`PriceTable`]: USD per million tokens by provider and model glob, from TOML
//!   ([`PriceTable::builtin`] is compiled in from `policy/data/prices.toml`), and
//!   [`PriceTable::cost_micros`] in whole micro-dollars, rounded up.
//! - [`estimate`]: the worst case of a request before it is sent, for reserve-then-settle budgets.
//!
//! # Reserve, meter, settle
//!
//! ```
//! use latchkey_policy::usage::{estimate, PriceTable, UsageMeter};
//!
//! let prices = PriceTable::builtin();
//! let (provider, model) = ("openai", "gpt-4o-mini");
//!
//! // 1. Before forwarding: reserve the worst case against the budget.
//! let body = br#"{"model":"gpt-4o-mini","max_tokens":100,"stream":true,
//!                 "messages":[{"role":"user","content":"Hi"}]}"#;
//! let request: serde_json::Value = serde_json::from_slice(body).unwrap();
//! let reserved = estimate(&request, body.len(), 4096).cost_micros(prices, provider, model);
//!
//! // 2. While streaming the response to the client: copy each chunk into the meter.
//! let mut meter = UsageMeter::new(Some("text/event-stream; charset=utf-8"));
//! meter.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n");
//! meter.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion");
//! meter.feed(b"_tokens\":12,\"total_tokens\":21}}\n\ndata: [DONE]\n\n");
//!
//! // 3. At the end: settle with the real cost, or keep the reservation if metering failed.
//! let usage = meter.finish();
//! let charged = match usage {
//!     Some(u) if !meter.incomplete() => prices.cost_micros(provider, model, u),
//!     _ => reserved,
//! };
//! assert_eq!(usage.map(|u| (u.input_tokens, u.output_tokens)), Some((9, 12)));
//! assert_eq!(charged, 9); // 9 × $0.15/M + 12 × $0.60/M = 8.55 µ$, rounded up
//! assert!(charged <= reserved);
//! ```

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

mod ask;
mod base64;
mod estimate;
mod eventstream;
mod meter;
mod price;
mod shapes;
mod sse;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use ask::ask_for_stream_usage;
pub use estimate::{estimate, Estimate};
pub use eventstream::FRAME_CAP;
pub use meter::{BodyFormat, UsageMeter, JSON_CAP};
pub use price::{LongContextPrice, Price, PriceEntry, PriceError, PriceTable};
pub use shapes::usage_from_json;
pub use sse::{SSE_EVENT_CAP, SSE_LINE_CAP};

/// Header with Bedrock's input token count on `InvokeModel` / `Converse` responses.
pub const BEDROCK_INPUT_TOKENS_HEADER: &str = "x-amzn-bedrock-input-token-count";
/// Header with Bedrock's output token count on `InvokeModel` / `Converse` responses.
pub const BEDROCK_OUTPUT_TOKENS_HEADER: &str = "x-amzn-bedrock-output-token-count";

/// Tokens one request consumed.
///
/// `input_tokens` counts everything the provider bills as input, prompt-cache reads and writes
/// included (Anthropic and Bedrock report those apart from `input_tokens`; they are added here).
/// `output_tokens` counts everything billed as output, reasoning / thinking tokens included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, cache reads and writes included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
}

impl Usage {
    /// Input plus output (saturating).
    ///
    /// ```
    /// use latchkey_policy::usage::Usage;
    /// assert_eq!(Usage { input_tokens: 10, output_tokens: 5 }.total(), 15);
    /// ```
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The usage Bedrock reports in the [`BEDROCK_INPUT_TOKENS_HEADER`] and
    /// [`BEDROCK_OUTPUT_TOKENS_HEADER`] response headers: the only place it appears for
    /// `InvokeModel` bodies of model families whose JSON carries no counts (Mistral, Cohere, …).
    /// `None` unless at least one header holds a number; a missing one counts as 0.
    ///
    /// ```
    /// use latchkey_policy::usage::Usage;
    /// let u = Usage::from_bedrock_headers(Some("120"), Some(" 40 ")).unwrap();
    /// assert_eq!((u.input_tokens, u.output_tokens), (120, 40));
    /// assert_eq!(Usage::from_bedrock_headers(None, Some("n/a")), None);
    /// ```
    pub fn from_bedrock_headers(input: Option<&str>, output: Option<&str>) -> Option<Usage> {
        let parse = |h: Option<&str>| h.and_then(|v| v.trim().parse::<u64>().ok());
        let (input, output) = (parse(input), parse(output));
        if input.is_none() && output.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
        })
    }
}
