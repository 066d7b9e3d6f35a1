//! Recognizing usage objects by their shape, for whole responses and for streamed events alike.
//!
//! | shape | input | output |
//! |---|---|---|
//! | `usage` (OpenAI chat / completions / embeddings, Mistral, Groq, DeepSeek, …) | `prompt_tokens` | `completion_tokens` |
//! | `usage` (OpenAI Responses, Anthropic) | `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens` | `output_tokens` |
//! | `usage` (Bedrock Converse) | `inputTokens` + `cacheWriteInputTokens` + `cacheReadInputTokens` | `outputTokens` |
//! | `usage.billed_units`, `meta.billed_units` (Cohere v2, v1) | `input_tokens` | `output_tokens` |
//! | `usageMetadata` (Gemini, Vertex) | `promptTokenCount` + `toolUsePromptTokenCount` | `candidatesTokenCount` + `thoughtsTokenCount` |
//! | Bedrock InvokeModel, Llama | `prompt_token_count` | `generation_token_count` |
//! | Bedrock InvokeModel, Titan | `inputTextTokenCount` | `results[].tokenCount` (sum), `totalOutputTextTokenCount` |
//! | `amazon-bedrock-invocationMetrics` | `inputTokenCount` + cache read / write counts | `outputTokenCount` |
//!
//! A `usage` object with none of these but a `total_tokens` is counted as output: the total is
//! all we know, and output is the dearer side.

use serde_json::Value;

use super::Usage;

/// Token counts read so far. Each field stays `None` until some object reports it, so that a later
/// streamed event overrides only what it reports: Anthropic's `message_delta` carries the
/// (cumulative) output count but usually not the cache counts of `message_start`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    input: Option<u64>,
    cache_write: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
}

impl Tally {
    /// What has been seen, or `None` if no object carried any count.
    pub(crate) fn usage(&self) -> Option<Usage> {
        if self.is_empty() {
            return None;
        }
        let input = [self.input, self.cache_write, self.cache_read]
            .into_iter()
            .flatten()
            .fold(0u64, u64::saturating_add);
        Some(Usage {
            input_tokens: input,
            output_tokens: self.output.unwrap_or(0),
        })
    }

    /// Folds one complete JSON value: a response, a streamed event, or an array of streamed
    /// chunks (Gemini's `streamGenerateContent` without `alt=sse` answers with one JSON array).
    /// Every count an object reports replaces the earlier one: providers send cumulative totals,
    /// so the last report is the right one.
    pub(crate) fn fold(&mut self, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|item| self.fold_object(item)),
            _ => self.fold_object(v),
        }
    }

    fn fold_object(&mut self, v: &Value) {
        // Streamed events wrap the usage one level down: Anthropic `message_start` in `message`,
        // OpenAI Responses `response.completed` in `response`, Cohere `message-end` in `delta`.
        for key in ["message", "response", "delta"] {
            if let Some(inner) = v.get(key).filter(|i| i.is_object()) {
                self.merge(object_tally(inner));
            }
        }
        self.merge(object_tally(v));
    }

    fn merge(&mut self, later: Tally) {
        self.input = later.input.or(self.input);
        self.cache_write = later.cache_write.or(self.cache_write);
        self.cache_read = later.cache_read.or(self.cache_read);
        self.output = later.output.or(self.output);
    }

    fn is_empty(&self) -> bool {
        *self == Tally::default()
    }
}

/// The [`Usage`] of a complete JSON response, recognized by shape (see the table in the module
/// source); `None` when the value carries no token counts (an error body, a non-LLM API).
///
/// A JSON array is read as a sequence of streamed chunks (Gemini's `streamGenerateContent`
/// without `alt=sse`), the last report of each count winning.
///
/// ```
/// use latchkey_policy::usage::usage_from_json;
/// use serde_json::json;
///
/// let openai = json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 30}});
/// let u = usage_from_json(&openai).unwrap();
/// assert_eq!((u.input_tokens, u.output_tokens), (12, 30));
///
/// // Anthropic: cache reads and writes are billed as input too.
/// let anthropic = json!({"type": "message", "usage": {"input_tokens": 10,
///     "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 7}});
/// assert_eq!(usage_from_json(&anthropic).unwrap().input_tokens, 1110);
///
/// // Gemini: thinking tokens are billed as output.
/// let gemini = json!({"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 20,
///     "thoughtsTokenCount": 80}});
/// assert_eq!(usage_from_json(&gemini).unwrap().output_tokens, 100);
///
/// assert_eq!(usage_from_json(&json!({"error": {"message": "overloaded"}})), None);
/// ```
pub fn usage_from_json(v: &Value) -> Option<Usage> {
    let mut tally = Tally::default();
    tally.fold(v);
    tally.usage()
}

/// Whether raw JSON bytes can contain a field [`Tally::fold`] reads. A cheap pre-filter so that
/// the meter parses only the few streamed events that carry counts, not every text delta. Keep
/// in step with [`object_tally`].
pub(crate) fn mentions_usage(json: &[u8]) -> bool {
    const NEEDLES: [&[u8]; 4] = [
        b"usage",        // usage, usageMetadata
        b"oken_count",   // prompt_token_count, generation_token_count
        b"okenCount",    // Gemini, Titan, Bedrock invocation metrics
        b"billed_units", // Cohere v1
    ];
    NEEDLES.iter().any(|needle| contains(json, needle))
}

/// Whether `needle` occurs in `haystack` (naive search: both are short or the scan is rare).
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The counts an object reports about itself, at its top level.
fn object_tally(v: &Value) -> Tally {
    let mut t = Tally::default();
    if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
        t.merge(usage_object(usage));
    }
    if let Some(billed) = v.get("meta").and_then(|m| m.get("billed_units")) {
        t.merge(billed_units(billed));
    }
    if let Some(g) = v.get("usageMetadata").filter(|g| g.is_object()) {
        t.merge(Tally {
            input: add(
                count(g, "promptTokenCount"),
                count(g, "toolUsePromptTokenCount"),
            ),
            output: add(
                count(g, "candidatesTokenCount"),
                count(g, "thoughtsTokenCount"),
            ),
            ..Tally::default()
        });
    }
    // Bedrock InvokeModel bodies of Meta Llama (whole response and each streamed chunk).
    t.merge(Tally {
        input: count(v, "prompt_token_count"),
        output: count(v, "generation_token_count"),
        ..Tally::default()
    });
    // Bedrock InvokeModel bodies of Amazon Titan.
    t.merge(Tally {
        input: count(v, "inputTextTokenCount"),
        output: titan_output(v),
        ..Tally::default()
    });
    // Bedrock appends its own billing counts to the last streamed chunk; they win.
    if let Some(m) = v
        .get("amazon-bedrock-invocationMetrics")
        .filter(|m| m.is_object())
    {
        t.merge(Tally {
            input: count(m, "inputTokenCount"),
            cache_write: count(m, "cacheWriteInputTokenCount"),
            cache_read: count(m, "cacheReadInputTokenCount"),
            output: count(m, "outputTokenCount"),
        });
    }
    t
}

/// A `usage` object of any of the OpenAI, Anthropic, Converse or Cohere v2 shapes.
fn usage_object(u: &Value) -> Tally {
    let t = Tally {
        input: first(u, &["prompt_tokens", "input_tokens", "inputTokens"]),
        cache_write: first(u, &["cache_creation_input_tokens", "cacheWriteInputTokens"]),
        cache_read: first(u, &["cache_read_input_tokens", "cacheReadInputTokens"]),
        output: first(u, &["completion_tokens", "output_tokens", "outputTokens"]),
    };
    if !t.is_empty() {
        return t;
    }
    if let Some(billed) = u.get("billed_units") {
        return billed_units(billed);
    }
    Tally {
        output: first(u, &["total_tokens", "totalTokens"]),
        ..Tally::default()
    }
}

/// Cohere's billed units (what is charged, without the hidden system prompt).
fn billed_units(b: &Value) -> Tally {
    Tally {
        input: count(b, "input_tokens"),
        output: count(b, "output_tokens"),
        ..Tally::default()
    }
}

/// Titan: `results[].tokenCount` in a whole response, `totalOutputTextTokenCount` in a chunk.
fn titan_output(v: &Value) -> Option<u64> {
    let from_results = v
        .get("results")
        .and_then(Value::as_array)
        .map(|results| results.iter().map(|r| count(r, "tokenCount")))
        .and_then(|counts| counts.reduce(add))
        .flatten();
    from_results.or_else(|| count(v, "totalOutputTextTokenCount"))
}

/// A non-negative integer field; anything else (null, negative, fractional, text) is absent.
fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

fn first(v: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| count(v, k))
}

/// Sum of the present values; `None` only when both are absent.
fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        _ => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::{mentions_usage, usage_from_json, Tally};
    use crate::usage::Usage;
    use serde_json::{json, Value};

    fn u(v: Value) -> Option<(u64, u64)> {
        usage_from_json(&v).map(|u| (u.input_tokens, u.output_tokens))
    }

    #[test]
    fn openai_chat_completions_and_embeddings() {
        let chat = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}
        });
        assert_eq!(u(chat), Some((19, 10)));
        // o-series: reasoning tokens are already inside completion_tokens.
        let reasoning = json!({"usage": {"prompt_tokens": 50, "completion_tokens": 900,
            "completion_tokens_details": {"reasoning_tokens": 800}}});
        assert_eq!(u(reasoning), Some((50, 900)));
        let legacy = json!({"object": "text_completion", "choices": [{"text": "x"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}});
        assert_eq!(u(legacy), Some((5, 7)));
        let embeddings = json!({"object": "list", "data": [{"embedding": [0.1]}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}});
        assert_eq!(u(embeddings), Some((8, 0)));
    }

    #[test]
    fn openai_responses_and_anthropic() {
        let responses = json!({"object": "response", "status": "completed",
            "usage": {"input_tokens": 37, "input_tokens_details": {"cached_tokens": 20},
                      "output_tokens": 11, "output_tokens_details": {"reasoning_tokens": 4},
                      "total_tokens": 48}});
        assert_eq!(u(responses), Some((37, 11)));
        let anthropic = json!({"id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 2095, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 503}});
        assert_eq!(u(anthropic), Some((2095, 503)));
        let cached = json!({"usage": {"input_tokens": 3, "cache_creation_input_tokens": 1200,
            "cache_read_input_tokens": null, "output_tokens": 9}});
        assert_eq!(u(cached), Some((1203, 9)));
    }

    #[test]
    fn gemini() {
        let g = json!({"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"},
                "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 32,
                "totalTokenCount": 543, "thoughtsTokenCount": 500,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11}]},
            "modelVersion": "gemini-2.5-flash"});
        assert_eq!(u(g), Some((11, 532)));
        let tools = json!({"usageMetadata": {"promptTokenCount": 10,
            "toolUsePromptTokenCount": 90, "candidatesTokenCount": 1}});
        assert_eq!(u(tools), Some((100, 1)));
        // A blocked prompt: no candidates, still billed for the prompt.
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}});
        assert_eq!(u(blocked), Some((7, 0)));
        // streamGenerateContent without alt=sse: one array of chunks; the last count wins.
        let array = json!([
            {"usageMetadata": {"promptTokenCount": 4}},
            {"usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3}},
            {"usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 9}}
        ]);
        assert_eq!(u(array), Some((4, 9)));
    }

    #[test]
    fn bedrock_converse_and_invoke() {
        let converse = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 30, "outputTokens": 628, "totalTokens": 658,
                      "cacheReadInputTokens": 100, "cacheWriteInputTokens": 5},
            "metrics": {"latencyMs": 1275}});
        assert_eq!(u(converse), Some((135, 628)));
        let invoke_anthropic = json!({"id": "msg_bdrk_1", "type": "message",
            "content": [{"type": "text", "text": "Hi"}],
            "usage": {"input_tokens": 14, "output_tokens": 4}});
        assert_eq!(u(invoke_anthropic), Some((14, 4)));
        let llama = json!({"generation": "Hi", "prompt_token_count": 17,
            "generation_token_count": 42, "stop_reason": "stop"});
        assert_eq!(u(llama), Some((17, 42)));
        let titan = json!({"inputTextTokenCount": 6, "results": [
            {"tokenCount": 20, "outputText": "a", "completionReason": "FINISH"},
            {"tokenCount": 5, "outputText": "b", "completionReason": "FINISH"}]});
        assert_eq!(u(titan), Some((6, 25)));
        let titan_embed = json!({"embedding": [0.5], "inputTextTokenCount": 9});
        assert_eq!(u(titan_embed), Some((9, 0)));
    }

    #[test]
    fn cohere() {
        let v2 = json!({"id": "c1", "finish_reason": "COMPLETE",
            "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 20},
                      "tokens": {"input_tokens": 71, "output_tokens": 20}}});
        assert_eq!(u(v2), Some((5, 20)));
        let v1 = json!({"text": "Hi", "meta": {"billed_units": {"input_tokens": 3, "output_tokens": 8}}});
        assert_eq!(u(v1), Some((3, 8)));
    }

    #[test]
    fn nothing_to_read() {
        assert_eq!(u(json!({"error": {"type": "overloaded_error"}})), None);
        assert_eq!(u(json!({"usage": null})), None);
        assert_eq!(u(json!({"usage": {}})), None);
        assert_eq!(
            u(json!({"usage": {"prompt_tokens": -1, "completion_tokens": "9"}})),
            None
        );
        assert_eq!(u(json!("usage")), None);
        assert_eq!(u(json!([])), None);
        // Only a total: counted as output (the dearer side).
        assert_eq!(u(json!({"usage": {"total_tokens": 40}})), Some((0, 40)));
    }

    #[test]
    fn later_reports_override_field_by_field() {
        let mut t = Tally::default();
        t.fold(
            &json!({"type": "message_start", "message": {"usage": {"input_tokens": 10,
            "cache_read_input_tokens": 500, "output_tokens": 1}}}),
        );
        t.fold(&json!({"type": "message_delta", "usage": {"output_tokens": 40}}));
        assert_eq!(
            t.usage(),
            Some(Usage {
                input_tokens: 510,
                output_tokens: 40
            })
        );
        // A delta that also repeats input_tokens keeps the cache count it does not mention.
        t.fold(
            &json!({"type": "message_delta", "usage": {"input_tokens": 10, "output_tokens": 41}}),
        );
        assert_eq!(
            t.usage(),
            Some(Usage {
                input_tokens: 510,
                output_tokens: 41
            })
        );
    }

    #[test]
    fn huge_counts_saturate() {
        let v = json!({"usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 5,
            "output_tokens": 1}});
        assert_eq!(u(v), Some((u64::MAX, 1)));
    }

    #[test]
    fn prefilter_lets_every_recognized_shape_through() {
        for text in [
            r#"{"usage":{}}"#,
            r#"{"usageMetadata":{}}"#,
            r#"{"prompt_token_count":1}"#,
            r#"{"inputTextTokenCount":1}"#,
            r#"{"amazon-bedrock-invocationMetrics":{"inputTokenCount":1}}"#,
            r#"{"meta":{"billed_units":{}}}"#,
        ] {
            assert!(mentions_usage(text.as_bytes()), "{text}");
        }
        assert!(!mentions_usage(
            br#"{"choices":[{"delta":{"content":"hi"}}]}"#
        ));
        assert!(!mentions_usage(b""));
    }
}
