//! Whole-meter tests: realistic provider streams fed in every possible split, Bedrock event
//! streams built with a test-only encoder, and the memory caps.

use proptest::prelude::*;
use serde_json::json;

use super::base64;
use super::eventstream::crc32;
use super::{BodyFormat, Usage, UsageMeter, FRAME_CAP, JSON_CAP, SSE_LINE_CAP};

const SSE: &str = "text/event-stream";
const AWS: &str = "application/vnd.amazon.eventstream";

/// OpenAI chat completions, `stream_options.include_usage`: every chunk has `"usage": null`
/// except the last, which has no choices. Non-ASCII text so that splits land inside characters.
const OPENAI_CHAT: &str = concat!(
    "data: {\"id\":\"chatcmpl-AZ1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-AZ1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße, \"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-AZ1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"世界 ✓ 🎉\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-AZ1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-AZ1\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

/// Anthropic messages: input and cache counts in `message_start`, cumulative output in
/// `message_delta`; pings and content events in between.
const ANTHROPIC: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":2}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo — wörld\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

/// Gemini `streamGenerateContent?alt=sse` (CRLF line endings, as Google sends them): every chunk
/// carries `usageMetadata`, the last one the totals; thinking tokens are output.
const GEMINI: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 35,\"thoughtsTokenCount\": 27},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is blue — ça va\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 5,\"totalTokenCount\": 40,\"thoughtsTokenCount\": 27},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \".\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 6,\"totalTokenCount\": 41,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 8}],\"thoughtsTokenCount\": 27},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
);

/// OpenAI Responses API: `usage` is null until `response.completed`.
const RESPONSES: &str = concat!(
    "event: response.created\n",
    "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"in_progress\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n\n",
    "event: response.in_progress\n",
    "data: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"status\":\"in_progress\",\"usage\":null}}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi ☺\"}\n\n",
    "event: response.output_text.done\n",
    "data: {\"type\":\"response.output_text.done\",\"sequence_number\":5,\"item_id\":\"msg_67c9\",\"output_index\":0,\"content_index\":0,\"text\":\"Hi ☺\"}\n\n",
    "event: response.completed\n",
    "data: {\"type\":\"response.completed\",\"sequence_number\":8,\"response\":{\"id\":\"resp_67c9\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"completed\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"type\":\"message\",\"id\":\"msg_67c9\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi ☺\",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48}}}\n\n",
);

fn usage(input_tokens: u64, output_tokens: u64) -> Option<Usage> {
    Some(Usage {
        input_tokens,
        output_tokens,
    })
}

/// Feeds `body` cut at the given (sorted) positions and returns the meter after `finish`.
fn meter_cut(content_type: &str, body: &[u8], cuts: &[usize]) -> (Option<Usage>, UsageMeter) {
    let mut meter = UsageMeter::new(Some(content_type));
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        let cut = cut.clamp(start, body.len());
        meter.feed(&body[start..cut]);
        start = cut;
    }
    (meter.finish(), meter)
}

/// Asserts the same usage for every single split point and for byte-by-byte feeding.
fn assert_every_split(content_type: &str, body: &[u8], want: Option<Usage>) {
    for cut in 0..=body.len() {
        let (got, meter) = meter_cut(content_type, body, &[cut]);
        assert_eq!(got, want, "split at {cut}");
        assert!(!meter.incomplete(), "split at {cut}");
    }
    let every_byte: Vec<usize> = (1..body.len()).collect();
    assert_eq!(meter_cut(content_type, body, &every_byte).0, want);
}

#[test]
fn openai_chat_stream_every_split() {
    assert_every_split(SSE, OPENAI_CHAT.as_bytes(), usage(19, 10));
}

#[test]
fn anthropic_stream_every_split() {
    assert_every_split(SSE, ANTHROPIC.as_bytes(), usage(2572, 15));
}

#[test]
fn gemini_stream_every_split() {
    assert_every_split(SSE, GEMINI.as_bytes(), usage(8, 33));
}

#[test]
fn responses_stream_every_split() {
    assert_every_split(SSE, RESPONSES.as_bytes(), usage(37, 11));
}

#[test]
fn current_tracks_the_stream() {
    let mut meter = UsageMeter::new(Some(SSE));
    let (start, rest) = ANTHROPIC.split_at(ANTHROPIC.find("event: content_block_start").unwrap());
    meter.feed(start.as_bytes());
    assert_eq!(meter.current(), usage(2572, 2));
    meter.feed(rest.as_bytes());
    assert_eq!(meter.current(), usage(2572, 15));
    assert_eq!(meter.finish(), usage(2572, 15));
    // finish is idempotent and later chunks are ignored.
    meter.feed(b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n");
    assert_eq!(meter.finish(), usage(2572, 15));
}

#[test]
fn line_ending_variants_give_the_same_usage() {
    for (name, body) in [("openai", OPENAI_CHAT), ("anthropic", ANTHROPIC)] {
        let want = meter_cut(SSE, body.as_bytes(), &[]).0;
        assert!(want.is_some());
        for ending in ["\r\n", "\r"] {
            let converted = body.replace('\n', ending);
            assert_eq!(
                meter_cut(SSE, converted.as_bytes(), &[]).0,
                want,
                "{name} {ending:?}"
            );
        }
    }
    // Gemini's CRLF stream read with LF endings.
    assert_eq!(
        meter_cut(SSE, GEMINI.replace("\r\n", "\n").as_bytes(), &[]).0,
        usage(8, 33)
    );
}

#[test]
fn multi_line_data_event() {
    let body = "data: {\"choices\":[],\ndata:  \"usage\": {\"prompt_tokens\": 4,\ndata: \"completion_tokens\": 2}}\n\n";
    assert_every_split(SSE, body.as_bytes(), usage(4, 2));
}

#[test]
fn anthropic_delta_with_input_tokens_keeps_cache_counts() {
    let body = ANTHROPIC.replace(
        "\"usage\":{\"output_tokens\":15}",
        "\"usage\":{\"input_tokens\":472,\"output_tokens\":15}",
    );
    assert_eq!(meter_cut(SSE, body.as_bytes(), &[]).0, usage(2572, 15));
}

#[test]
fn over_long_line_is_skipped_without_breaking_later_events() {
    let mut body = Vec::new();
    body.extend_from_slice(b"data: {\"choices\":[{\"delta\":{\"content\":\"");
    body.resize(body.len() + SSE_LINE_CAP, b'a');
    body.extend_from_slice(
        b"\"}}],\"usage\":{\"prompt_tokens\":999999,\"completion_tokens\":1}}\r\n\r\n",
    );
    body.extend_from_slice(OPENAI_CHAT.as_bytes());
    for chunk_len in [1 << 10, 64 << 10, 3 << 20] {
        let mut meter = UsageMeter::new(Some(SSE));
        for chunk in body.chunks(chunk_len) {
            meter.feed(chunk);
            assert!(meter.buffered_bytes() <= SSE_LINE_CAP);
        }
        assert_eq!(meter.finish(), usage(19, 10));
        assert!(meter.incomplete());
        assert!(!meter.gave_up());
    }
}

#[test]
fn no_usage_is_none_not_an_error() {
    // An OpenAI stream requested without include_usage.
    let body = OPENAI_CHAT.replace(
        "\"usage\":{\"prompt_tokens\":19",
        "\"x\":{\"prompt_tokens\":19",
    );
    let (got, meter) = meter_cut(SSE, body.as_bytes(), &[]);
    assert_eq!(got, None);
    assert!(!meter.incomplete());
    assert_eq!(meter_cut(SSE, b"", &[]).0, None);
    assert_eq!(meter_cut("application/json", b"", &[]).0, None);
    assert_eq!(meter_cut(AWS, b"", &[]).0, None);
    assert_eq!(meter_cut("application/json", b"not json", &[]).0, None);
}

#[test]
fn json_bodies() {
    let body = json!({"id": "msg_1", "type": "message", "content": [{"type": "text", "text": "ø"}],
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5}})
    .to_string();
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "text/plain",
    ] {
        assert_every_split(ct, body.as_bytes(), usage(100, 5));
    }
    let mut meter = UsageMeter::new(None);
    assert_eq!(meter.format(), BodyFormat::Json);
    meter.feed(body.as_bytes());
    assert_eq!(meter.current(), None, "JSON is parsed at finish");
    assert_eq!(meter.finish(), usage(100, 5));
    assert_eq!(meter.buffered_bytes(), 0);
    // A BOM is tolerated; Gemini's non-SSE stream is one array of chunks.
    let bom = format!("\u{feff}{body}");
    assert_eq!(
        meter_cut("application/json", bom.as_bytes(), &[]).0,
        usage(100, 5)
    );
    let array = r#"[{"usageMetadata":{"promptTokenCount":3}},{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":7}}]"#;
    assert_eq!(
        meter_cut("application/json", array.as_bytes(), &[]).0,
        usage(3, 7)
    );
}

#[test]
fn json_over_the_cap_gives_up() {
    let usage_tail = br#"],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let mut meter = UsageMeter::new(Some("application/json"));
    meter.feed(b"{\"data\":[");
    let filler = vec![b' '; 1 << 20];
    for _ in 0..8 {
        meter.feed(&filler);
        assert!(meter.buffered_bytes() <= JSON_CAP);
    }
    assert!(meter.gave_up());
    assert_eq!(meter.buffered_bytes(), 0, "the copy is freed");
    meter.feed(usage_tail);
    assert_eq!(meter.finish(), None);
    assert!(meter.incomplete());
    // Exactly at the cap is still metered.
    let mut body = b"{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}".to_vec();
    body.resize(JSON_CAP, b' ');
    let (got, meter) = meter_cut("application/json", &body, &[JSON_CAP / 3]);
    assert_eq!(got, usage(1, 2));
    assert!(!meter.gave_up());
}

// ---------------------------------------------------------------------------------------------
// AWS event stream
// ---------------------------------------------------------------------------------------------

/// A header with a string value (type 7).
fn string_header(name: &str, value: &str) -> Vec<u8> {
    let mut h = vec![u8::try_from(name.len()).unwrap()];
    h.extend_from_slice(name.as_bytes());
    h.push(7);
    h.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    h.extend_from_slice(value.as_bytes());
    h
}

/// One header of every other type, to exercise the parser's size table.
fn assorted_headers() -> Vec<u8> {
    let mut h = Vec::new();
    let mut add = |name: &str, kind: u8, value: &[u8]| {
        h.push(u8::try_from(name.len()).unwrap());
        h.extend_from_slice(name.as_bytes());
        h.push(kind);
        h.extend_from_slice(value);
    };
    add("t", 0, &[]);
    add("f", 1, &[]);
    add("byte", 2, &[7]);
    add("short", 3, &[0, 7]);
    add("int", 4, &[0, 0, 0, 7]);
    add("long", 5, &[0; 8]);
    add("bytes", 6, &[0, 3, 1, 2, 3]);
    add("time", 8, &[0, 0, 1, 0x8f, 0, 0, 0, 0]);
    add("uuid", 9, &[0xab; 16]);
    h
}

/// An event-stream message with correct CRCs.
fn frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = u32::try_from(12 + headers.len() + payload.len() + 4).unwrap();
    let mut f = total.to_be_bytes().to_vec();
    f.extend_from_slice(&u32::try_from(headers.len()).unwrap().to_be_bytes());
    f.extend_from_slice(&crc32(&f).to_be_bytes());
    f.extend_from_slice(headers);
    f.extend_from_slice(payload);
    f.extend_from_slice(&crc32(&f).to_be_bytes());
    f
}

/// A Bedrock event message as the SDKs receive it.
fn event(event_type: &str, payload: &serde_json::Value, extra_headers: &[u8]) -> Vec<u8> {
    let mut headers = string_header(":event-type", event_type);
    headers.extend(string_header(":content-type", "application/json"));
    headers.extend(string_header(":message-type", "event"));
    headers.extend_from_slice(extra_headers);
    frame(&headers, payload.to_string().as_bytes())
}

/// `converse-stream`: usage arrives in the final `metadata` event.
fn converse_stream() -> Vec<u8> {
    [
        event("messageStart", &json!({"p": "abcd", "role": "assistant"}), &[]),
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "Bonjour à tous"}, "p": "abcdefghij"}),
            &assorted_headers(),
        ),
        event("contentBlockStop", &json!({"contentBlockIndex": 0, "p": "ab"}), &[]),
        event("messageStop", &json!({"stopReason": "end_turn", "p": "abcdefgh"}), &[]),
        event(
            "metadata",
            &json!({"usage": {"inputTokens": 25, "outputTokens": 118, "totalTokens": 143,
                               "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 0},
                    "metrics": {"latencyMs": 1790}, "p": "abcdefghijklmnopqr"}),
            &[],
        ),
    ]
    .concat()
}

/// `invoke-with-response-stream` with an Anthropic model: each `chunk` carries a base64 Anthropic
/// event; Bedrock adds its invocation metrics to the last one.
fn invoke_stream(with_metrics: bool) -> Vec<u8> {
    let chunk = |inner: serde_json::Value| {
        let bytes = base64::encode(inner.to_string().as_bytes());
        event(
            "chunk",
            &json!({"bytes": bytes, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"}),
            &[],
        )
    };
    let mut stop = json!({"type": "message_stop"});
    if with_metrics {
        stop["amazon-bedrock-invocationMetrics"] = json!({"inputTokenCount": 21,
            "outputTokenCount": 44, "invocationLatency": 1462, "firstByteLatency": 402});
    }
    [
        chunk(
            json!({"type": "message_start", "message": {"id": "msg_bdrk_01", "type": "message",
            "role": "assistant", "model": "claude-3-5-haiku-20241022", "content": [],
            "usage": {"input_tokens": 21, "output_tokens": 1}}}),
        ),
        chunk(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        chunk(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Hallo Welt, schön!"}})),
        chunk(json!({"type": "content_block_stop", "index": 0})),
        chunk(
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 43}}),
        ),
        chunk(stop),
    ]
    .concat()
}

#[test]
fn converse_stream_every_split() {
    assert_every_split(AWS, &converse_stream(), usage(1025, 118));
}

#[test]
fn invoke_stream_every_split() {
    // Bedrock's invocation metrics come last and win over the model's own counts.
    assert_every_split(AWS, &invoke_stream(true), usage(21, 44));
    assert_every_split(AWS, &invoke_stream(false), usage(21, 43));
}

#[test]
fn invoke_stream_llama_and_titan_chunks() {
    let chunk = |inner: serde_json::Value| {
        event(
            "chunk",
            &json!({"bytes": base64::encode(inner.to_string().as_bytes())}),
            &[],
        )
    };
    let llama = [
        chunk(
            json!({"generation": "Hi", "prompt_token_count": 12, "generation_token_count": 1,
            "stop_reason": null}),
        ),
        chunk(json!({"generation": " there", "prompt_token_count": null,
            "generation_token_count": 2, "stop_reason": "stop"})),
    ]
    .concat();
    assert_eq!(meter_cut(AWS, &llama, &[]).0, usage(12, 2));
    let titan = chunk(
        json!({"outputText": "Hi", "index": 0, "totalOutputTextTokenCount": 9,
        "completionReason": "FINISH", "inputTextTokenCount": 4}),
    );
    assert_eq!(meter_cut(AWS, &titan, &[]).0, usage(4, 9));
}

#[test]
fn event_stream_exceptions_and_junk_payloads_are_ignored() {
    let mut headers = string_header(":exception-type", "throttlingException");
    headers.extend(string_header(":message-type", "exception"));
    let exception = frame(
        &headers,
        br#"{"message":"Too many requests","usage":{"inputTokens":5}}"#,
    );
    let not_json = event("chunk", &json!("x"), &[]);
    let bad_base64 = event("chunk", &json!({"bytes": "!!!"}), &[]);
    let body = [exception, not_json, bad_base64, converse_stream()].concat();
    let (got, meter) = meter_cut(AWS, &body, &[]);
    assert_eq!(got, usage(1025, 118));
    assert!(!meter.incomplete());
}

#[test]
fn event_stream_corruption() {
    let good = converse_stream();
    // A payload byte flipped in the metadata message: that message is skipped, framing survives.
    let mut flipped = good.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x20;
    let (got, meter) = meter_cut(AWS, &flipped, &[]);
    assert_eq!(got, None);
    assert!(meter.incomplete() && !meter.gave_up());
    // A corrupt prelude (length byte) loses the framing: give up, keep what came before.
    let mut body = invoke_stream(true);
    let first_len =
        usize::try_from(u32::from_be_bytes([body[0], body[1], body[2], body[3]])).unwrap();
    body[first_len + 2] ^= 0x01; // the second message's total length
    let (got, meter) = meter_cut(AWS, &body, &[]);
    assert_eq!(got, usage(21, 1), "only message_start was read");
    assert!(meter.gave_up() && meter.incomplete());
    // A stream cut off mid-message.
    let (got, meter) = meter_cut(AWS, &good[..good.len() - 3], &[]);
    assert_eq!(got, None);
    assert!(meter.incomplete() && !meter.gave_up());
}

#[test]
fn event_stream_frame_cap() {
    // A message announcing more than FRAME_CAP is refused before anything is buffered.
    let total = u32::try_from(FRAME_CAP + 1).unwrap();
    let mut prelude = total.to_be_bytes().to_vec();
    prelude.extend_from_slice(&0u32.to_be_bytes());
    prelude.extend_from_slice(&crc32(&prelude).to_be_bytes());
    let mut meter = UsageMeter::new(Some(AWS));
    meter.feed(&prelude);
    meter.feed(&vec![0; 1 << 20]);
    assert!(meter.gave_up());
    assert_eq!(meter.buffered_bytes(), 0);
    // A big message under the cap arriving in pieces is buffered (only it) and read.
    let padding = "x".repeat(3 << 20);
    let big = event(
        "metadata",
        &json!({"usage": {"inputTokens": 1, "outputTokens": 2}, "p": padding}),
        &[],
    );
    let mut meter = UsageMeter::new(Some(AWS));
    for chunk in big.chunks(64 << 10) {
        meter.feed(chunk);
        assert!(meter.buffered_bytes() <= big.len());
    }
    assert_eq!(meter.finish(), usage(1, 2));
    assert!(!meter.incomplete());
}

#[test]
fn meter_can_live_in_request_context() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<UsageMeter>();
    send_sync::<super::PriceTable>();
}

// ---------------------------------------------------------------------------------------------
// Random chunkings
// ---------------------------------------------------------------------------------------------

fn fixtures() -> Vec<(&'static str, Vec<u8>, Option<Usage>)> {
    vec![
        (SSE, OPENAI_CHAT.as_bytes().to_vec(), usage(19, 10)),
        (SSE, ANTHROPIC.as_bytes().to_vec(), usage(2572, 15)),
        (SSE, GEMINI.as_bytes().to_vec(), usage(8, 33)),
        (SSE, RESPONSES.as_bytes().to_vec(), usage(37, 11)),
        (AWS, converse_stream(), usage(1025, 118)),
        (AWS, invoke_stream(true), usage(21, 44)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_chunking_gives_the_same_usage(
        fixture in 0usize..6,
        mut cuts in proptest::collection::vec(0usize..4096, 0..40),
    ) {
        let all = fixtures();
        let (ct, body, want) = &all[fixture];
        cuts.sort_unstable();
        let (got, meter) = meter_cut(ct, body, &cuts);
        prop_assert_eq!(got, *want);
        prop_assert!(!meter.incomplete());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        format in 0usize..3,
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..512), 0..16),
    ) {
        let ct = [SSE, AWS, "application/json"][format];
        let mut meter = UsageMeter::new(Some(ct));
        for chunk in &chunks {
            meter.feed(chunk);
            prop_assert!(meter.buffered_bytes() <= FRAME_CAP);
        }
        let _ = meter.finish();
        prop_assert_eq!(meter.buffered_bytes(), 0);
    }
}
