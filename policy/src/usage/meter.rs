//! [`UsageMeter`]: usage read from a response body as it streams past.

use serde_json::Value;

use super::eventstream::{FrameDecoder, Message};
use super::shapes::{contains, mentions_usage, Tally};
use super::sse::{extend_capped, SseDecoder};
use super::{base64, Usage};

/// Most bytes of a plain JSON body the meter copies (8 MiB). A longer body is not metered:
/// [`UsageMeter::gave_up`] turns true, the copy is freed and [`UsageMeter::finish`] returns
/// `None`. LLM JSON responses are far smaller unless they carry media (images as base64), and
/// those are billed per image rather than per token anyway.
pub const JSON_CAP: usize = 8 << 20;

/// How a response body is framed, chosen from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyFormat {
    /// One JSON document (`application/json`, `*+json`, or anything unrecognized).
    Json,
    /// Server-sent events (`text/event-stream`): OpenAI, Anthropic, Gemini `alt=sse`, Mistral, …
    Sse,
    /// AWS event-stream frames (`application/vnd.amazon.eventstream`): Bedrock `converse-stream`
    /// and `invoke-with-response-stream`.
    EventStream,
}

impl BodyFormat {
    /// The format for a `Content-Type` header value (parameters and case ignored).
    ///
    /// ```
    /// use latchkey_policy::usage::BodyFormat;
    /// assert_eq!(BodyFormat::from_content_type(Some("Text/Event-Stream; charset=utf-8")), BodyFormat::Sse);
    /// assert_eq!(BodyFormat::from_content_type(Some("application/vnd.amazon.eventstream")), BodyFormat::EventStream);
    /// assert_eq!(BodyFormat::from_content_type(Some("application/problem+json")), BodyFormat::Json);
    /// assert_eq!(BodyFormat::from_content_type(None), BodyFormat::Json);
    /// ```
    pub fn from_content_type(content_type: Option<&str>) -> BodyFormat {
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if essence.eq_ignore_ascii_case("text/event-stream") {
            BodyFormat::Sse
        } else if essence.eq_ignore_ascii_case("application/vnd.amazon.eventstream") {
            BodyFormat::EventStream
        } else {
            BodyFormat::Json
        }
    }
}

/// Reads token usage from a response body fed chunk by chunk, while the gateway forwards the same
/// chunks to the client unchanged.
///
/// Memory is bounded per format, whatever the body's length:
/// - **SSE**: one line and one event's data, at most [`SSE_LINE_CAP`](super::SSE_LINE_CAP) +
///   [`SSE_EVENT_CAP`](super::SSE_EVENT_CAP) (2 MiB), usually a few hundred bytes. Events are
///   folded as they complete: OpenAI's final `usage` chunk (`stream_options.include_usage`),
///   Responses `response.completed` (and `.incomplete` / `.failed`), Anthropic `message_start` +
///   `message_delta` (whose `output_tokens` is cumulative), Gemini's per-chunk `usageMetadata`;
///   the last report of each count wins.
/// - **AWS event stream**: the current message only, at most [`FRAME_CAP`](super::FRAME_CAP)
///   (16 MiB) and only if it arrives in pieces. Converse `metadata` events are read for
///   `usage`; `invoke-with-response-stream` `chunk` events are base64-decoded and folded like
///   the SSE events of the model inside (Anthropic, Llama, Titan), together with the
///   `amazon-bedrock-invocationMetrics` Bedrock adds to the last chunk.
/// - **JSON**: a copy of the body up to [`JSON_CAP`] (8 MiB), parsed by [`finish`](Self::finish).
///
/// The body must be the decoded one: a compressed (`Content-Encoding: gzip`, `br`) body yields
/// nothing, so the gateway either decompresses before feeding or asks the upstream for
/// `identity`.
///
/// ```
/// use latchkey_policy::usage::{Usage, UsageMeter};
///
/// let mut meter = UsageMeter::new(Some("text/event-stream"));
/// let stream = concat!(
///     "event: message_start\n",
///     "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
///     "event: content_block_delta\n",
///     "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
///     "event: message_delta\n",
///     "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
/// );
/// for chunk in stream.as_bytes().chunks(7) {
///     meter.feed(chunk); // the gateway forwards `chunk` to the client as is
/// }
/// assert_eq!(meter.current(), Some(Usage { input_tokens: 25, output_tokens: 15 }));
/// assert_eq!(meter.finish(), Some(Usage { input_tokens: 25, output_tokens: 15 }));
/// assert!(!meter.incomplete());
///
/// // Nothing recognizable: None, which is not an error (an OpenAI stream without
/// // `include_usage`, an error body). The caller falls back to its reservation.
/// let mut meter = UsageMeter::new(Some("application/json"));
/// meter.feed(br#"{"error":{"message":"rate limited"}}"#);
/// assert_eq!(meter.finish(), None);
/// ```
#[derive(Debug)]
pub struct UsageMeter {
    body: Body,
    tally: Tally,
    finished: bool,
}

#[derive(Debug)]
enum Body {
    Json { copy: Vec<u8>, gave_up: bool },
    Sse(SseDecoder),
    EventStream(FrameDecoder),
}

impl UsageMeter {
    /// A meter for a body with this `Content-Type` (see [`BodyFormat::from_content_type`]).
    pub fn new(content_type: Option<&str>) -> Self {
        Self::with_format(BodyFormat::from_content_type(content_type))
    }

    /// A meter for a body of a known format.
    pub fn with_format(format: BodyFormat) -> Self {
        let body = match format {
            BodyFormat::Json => Body::Json {
                copy: Vec::new(),
                gave_up: false,
            },
            BodyFormat::Sse => Body::Sse(SseDecoder::default()),
            BodyFormat::EventStream => Body::EventStream(FrameDecoder::default()),
        };
        UsageMeter {
            body,
            tally: Tally::default(),
            finished: false,
        }
    }

    /// The format this meter reads.
    pub fn format(&self) -> BodyFormat {
        match self.body {
            Body::Json { .. } => BodyFormat::Json,
            Body::Sse(_) => BodyFormat::Sse,
            Body::EventStream(_) => BodyFormat::EventStream,
        }
    }

    /// Reads the next chunk of the body. Chunks may be cut anywhere. Ignored after
    /// [`finish`](Self::finish).
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.finished {
            return;
        }
        let tally = &mut self.tally;
        match &mut self.body {
            Body::Json { copy, gave_up } => {
                if *gave_up {
                    return;
                }
                if copy.len() + chunk.len() > JSON_CAP {
                    *gave_up = true;
                    *copy = Vec::new();
                    return;
                }
                extend_capped(copy, chunk, JSON_CAP);
            }
            Body::Sse(decoder) => decoder.feed(chunk, &mut |data| fold_json(tally, data)),
            Body::EventStream(decoder) => {
                decoder.feed(chunk, &mut |message| fold_aws_message(tally, message))
            }
        }
    }

    /// Ends the body and returns its usage: `None` when nothing in it carried token counts (an
    /// error response, an OpenAI stream requested without `stream_options.include_usage`, a
    /// body the meter [gave up](Self::gave_up) on). Frees the meter's buffers; calling it again
    /// returns the same answer.
    pub fn finish(&mut self) -> Option<Usage> {
        if !self.finished {
            self.finished = true;
            let tally = &mut self.tally;
            match &mut self.body {
                Body::Json { copy, gave_up } => {
                    if !*gave_up {
                        let json = copy.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(copy);
                        fold_json(tally, json);
                    }
                    *copy = Vec::new();
                }
                Body::Sse(decoder) => decoder.finish(&mut |data| fold_json(tally, data)),
                Body::EventStream(decoder) => decoder.finish(),
            }
        }
        self.tally.usage()
    }

    /// The usage seen so far (streams report input early and output at the end). Always `None`
    /// for a JSON body before [`finish`](Self::finish): it is parsed whole.
    pub fn current(&self) -> Option<Usage> {
        self.tally.usage()
    }

    /// Whether the meter stopped reading the body: a JSON body over [`JSON_CAP`], or an AWS
    /// event stream whose framing was lost (corrupt prelude, message over
    /// [`FRAME_CAP`](super::FRAME_CAP)). [`finish`](Self::finish) then reports only what came
    /// before (for JSON: nothing).
    pub fn gave_up(&self) -> bool {
        match &self.body {
            Body::Json { gave_up, .. } => *gave_up,
            Body::Sse(_) => false,
            Body::EventStream(decoder) => decoder.gave_up(),
        }
    }

    /// Whether some of the body went unread: [`gave_up`](Self::gave_up), an SSE line or event
    /// over its cap (dropped), or an event-stream message that failed its CRC, had malformed
    /// headers or was cut off at the end. [`finish`](Self::finish) may then be missing or an
    /// under-count, so a budget should keep at least the reservation.
    pub fn incomplete(&self) -> bool {
        match &self.body {
            Body::Json { gave_up, .. } => *gave_up,
            Body::Sse(decoder) => decoder.dropped() > 0,
            Body::EventStream(decoder) => decoder.gave_up() || decoder.skipped() > 0,
        }
    }

    /// Bytes the meter holds right now (for a memory gauge; see the bounds above).
    pub fn buffered_bytes(&self) -> usize {
        match &self.body {
            Body::Json { copy, .. } => copy.len(),
            Body::Sse(decoder) => decoder.buffered(),
            Body::EventStream(decoder) => decoder.buffered(),
        }
    }
}

/// Parses one JSON document (a body, an SSE event's data, a decoded Bedrock chunk) and folds it,
/// skipping the parse when no usage field can be in it; non-JSON (`[DONE]`) is ignored.
fn fold_json(tally: &mut Tally, json: &[u8]) {
    if !mentions_usage(json) {
        return;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(json) {
        tally.fold(&v);
    }
}

/// One Bedrock event-stream message: Converse events are folded as they are;
/// `invoke-with-response-stream` wraps the model's own event as `{"bytes": "<base64>"}`.
/// Exceptions (`:message-type` `exception` / `error`) carry no usage.
fn fold_aws_message(tally: &mut Tally, message: Message<'_>) {
    if message.message_type.is_some_and(|t| t != "event") {
        return;
    }
    // Most messages are text deltas: parse only those that can hold counts or a wrapped event.
    if !mentions_usage(message.payload) && !contains(message.payload, b"\"bytes\"") {
        return;
    }
    let Ok(v) = serde_json::from_slice::<Value>(message.payload) else {
        return;
    };
    match v.get("bytes").and_then(Value::as_str) {
        Some(encoded) => {
            if let Some(inner) = base64::decode(encoded) {
                fold_json(tally, &inner);
            }
        }
        None => tally.fold(&v),
    }
}
