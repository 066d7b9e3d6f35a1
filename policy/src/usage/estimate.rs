//! The worst case of a request before it is sent, for reserve-then-settle budgets: reserve
//! [`Estimate::cost_micros`], forward, then settle with the metered cost.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PriceTable, Usage};

/// Where each API puts its output cap, most common first; the first one present wins.
const OUTPUT_CAPS: &[&[&str]] = &[
    &["max_tokens"], // OpenAI (legacy), Anthropic, Mistral, Cohere, Bedrock Anthropic
    &["max_completion_tokens"], // OpenAI chat
    &["max_output_tokens"], // OpenAI Responses
    &["generationConfig", "maxOutputTokens"], // Gemini
    &["generation_config", "max_output_tokens"], // Gemini, snake_case spelling
    &["inferenceConfig", "maxTokens"], // Bedrock Converse
    &["inferenceConfig", "max_new_tokens"], // Bedrock InvokeModel, Amazon Nova
    &["max_gen_len"], // Bedrock InvokeModel, Meta Llama
    &["textGenerationConfig", "maxTokenCount"], // Bedrock InvokeModel, Amazon Titan
    &["maxTokenCount"],
];

/// Where each API asks for several alternative completions, each up to the output cap.
const CHOICES: &[&[&str]] = &[
    &["n"],                                    // OpenAI chat / completions
    &["generationConfig", "candidateCount"],   // Gemini
    &["generation_config", "candidate_count"], // Gemini, snake_case spelling
];

/// The most a request can consume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Estimate {
    /// Upper estimate of the prompt: one token per two bytes of request body.
    pub input_tokens: u64,
    /// The request's own output cap (times the number of choices asked for), or the default.
    pub output_tokens: u64,
}

impl Estimate {
    /// The estimate as a [`Usage`], to price or to compare with the metered one.
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }

    /// What the estimate costs, in micro-dollars, rounded up: the amount to reserve. Long-context
    /// rates apply when the estimated input is above their threshold, as they would for real.
    pub fn cost_micros(&self, prices: &PriceTable, provider: &str, model: &str) -> u64 {
        prices.cost_micros(provider, model, self.usage())
    }
}

/// The worst case of a request whose JSON `body` is `body_len` bytes long.
///
/// - `input_tokens` = ⌈`body_len` / 2⌉: a deliberate over-estimate. Real tokenizers produce well
///   under one token per two bytes of JSON for text in Latin scripts (about one per four), and
///   base64 media is billed far below its byte size. Two caveats the settle step absorbs:
///   scripts and symbols that take one token per two or three UTF-8 bytes (some CJK, emoji) can
///   exceed it, and content referenced rather than sent (image URLs, uploaded file ids, Gemini
///   `fileData`, OpenAI `previous_response_id` / `conversation`, cached prompts) is not in the
///   body at all.
/// - `output_tokens` = the request's output cap, from the first field present of `max_tokens`,
///   `max_completion_tokens`, `max_output_tokens` (OpenAI, Anthropic, Responses, Mistral, …),
///   `generationConfig.maxOutputTokens` (Gemini), `inferenceConfig.maxTokens` (Bedrock
///   Converse), `inferenceConfig.max_new_tokens` (Nova), `max_gen_len` (Llama),
///   `textGenerationConfig.maxTokenCount` (Titan); else `default_max_output`. It is multiplied
///   by the number of alternatives asked for (`n`, Gemini `candidateCount`), each of which may
///   reach the cap. Caps include reasoning tokens at every provider, so this bounds them too.
///
/// A request without a cap, such as an embeddings request (`input` and no `messages`), gets
/// `default_max_output`; the caller may pass 0 for paths it knows produce no output.
///
/// ```
/// use latchkey_policy::usage::estimate;
/// use serde_json::json;
///
/// let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
///                   "messages": [{"role": "user", "content": "Hello"}]});
/// let e = estimate(&body, 101, 4096);
/// assert_eq!((e.input_tokens, e.output_tokens), (51, 1024));
///
/// let gemini = json!({"contents": [], "generationConfig": {"maxOutputTokens": 256, "candidateCount": 2}});
/// assert_eq!(estimate(&gemini, 10, 4096).output_tokens, 512);
///
/// let embeddings = json!({"model": "text-embedding-3-small", "input": "Hello"});
/// assert_eq!(estimate(&embeddings, 54, 4096).output_tokens, 4096);
/// ```
pub fn estimate(body: &Value, body_len: usize, default_max_output: u64) -> Estimate {
    let input_tokens = u64::try_from(body_len.div_ceil(2)).unwrap_or(u64::MAX);
    let cap = OUTPUT_CAPS
        .iter()
        .find_map(|path| number_at(body, path))
        .unwrap_or(default_max_output);
    let choices = CHOICES
        .iter()
        .find_map(|path| number_at(body, path))
        .unwrap_or(1)
        .max(1);
    Estimate {
        input_tokens,
        output_tokens: cap.saturating_mul(choices),
    }
}

/// A non-negative whole number at `path`. A number written with a fraction (`1024.0`) is rounded
/// up; null, negative, text and other types count as absent.
fn number_at(body: &Value, path: &[&str]) -> Option<u64> {
    let v = path.iter().try_fold(body, |v, key| v.get(key))?;
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // The cast saturates at u64::MAX for huge values.
    (f.is_finite() && f >= 0.0).then(|| f.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::{estimate, Estimate};
    use crate::usage::{PriceTable, Usage};
    use serde_json::{json, Value};

    fn out(body: Value) -> u64 {
        estimate(&body, 0, 777).output_tokens
    }

    #[test]
    fn input_is_half_the_body_rounded_up() {
        assert_eq!(estimate(&json!({}), 0, 0).input_tokens, 0);
        assert_eq!(estimate(&json!({}), 1, 0).input_tokens, 1);
        assert_eq!(estimate(&json!({}), 2, 0).input_tokens, 1);
        assert_eq!(estimate(&json!({}), 1001, 0).input_tokens, 501);
        assert_eq!(
            estimate(&json!({}), usize::MAX, 0).input_tokens,
            (usize::MAX / 2 + 1) as u64
        );
    }

    #[test]
    fn picks_each_cap_field() {
        assert_eq!(out(json!({"max_tokens": 10})), 10);
        assert_eq!(out(json!({"max_completion_tokens": 11})), 11);
        assert_eq!(out(json!({"max_output_tokens": 12})), 12);
        assert_eq!(
            out(json!({"generationConfig": {"maxOutputTokens": 13}})),
            13
        );
        assert_eq!(
            out(json!({"generation_config": {"max_output_tokens": 14}})),
            14
        );
        assert_eq!(out(json!({"inferenceConfig": {"maxTokens": 15}})), 15);
        assert_eq!(out(json!({"inferenceConfig": {"max_new_tokens": 16}})), 16);
        assert_eq!(out(json!({"max_gen_len": 17})), 17);
        assert_eq!(
            out(json!({"textGenerationConfig": {"maxTokenCount": 18}})),
            18
        );
        assert_eq!(out(json!({"maxTokenCount": 19})), 19);
    }

    #[test]
    fn first_present_field_wins_and_junk_is_absent() {
        assert_eq!(
            out(json!({"max_tokens": 10, "max_completion_tokens": 99})),
            10
        );
        assert_eq!(
            out(json!({"max_tokens": null, "max_completion_tokens": 99})),
            99
        );
        assert_eq!(out(json!({"max_tokens": "10"})), 777);
        assert_eq!(out(json!({"max_tokens": -5})), 777);
        assert_eq!(out(json!({"max_tokens": 100.2})), 101);
        assert_eq!(out(json!({"generationConfig": 5})), 777);
        assert_eq!(out(json!([1, 2])), 777);
        assert_eq!(out(json!({"messages": []})), 777);
        assert_eq!(
            out(json!({"input": ["a", "b"], "model": "text-embedding-3-large"})),
            777
        );
    }

    #[test]
    fn alternatives_multiply_the_cap() {
        assert_eq!(out(json!({"max_tokens": 100, "n": 3})), 300);
        assert_eq!(out(json!({"n": 2})), 1554);
        assert_eq!(out(json!({"max_tokens": 100, "n": 0})), 100);
        assert_eq!(
            out(json!({"generationConfig": {"maxOutputTokens": 50, "candidateCount": 4}})),
            200
        );
        assert_eq!(out(json!({"max_tokens": u64::MAX, "n": 2})), u64::MAX);
    }

    #[test]
    fn cost_of_the_estimate() {
        let e = Estimate {
            input_tokens: 1_000,
            output_tokens: 1_000,
        };
        assert_eq!(
            e.usage(),
            Usage {
                input_tokens: 1_000,
                output_tokens: 1_000
            }
        );
        let prices = PriceTable::builtin();
        assert_eq!(e.cost_micros(prices, "openai", "gpt-4o-mini"), 750);
        // An over-threshold estimate is priced at the long-context rates.
        let long = Estimate {
            input_tokens: 300_000,
            output_tokens: 0,
        };
        assert_eq!(
            long.cost_micros(prices, "gemini", "gemini-2.5-pro"),
            750_000
        );
    }
}
