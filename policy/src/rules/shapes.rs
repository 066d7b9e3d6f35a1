//! Where prompt text, tool names and tool-call arguments live in the request bodies of the
//! providers we understand.
//!
//! The walk is written **once** (by the macro below) and instantiated twice: a read-only walker
//! that feeds [`Extracted`](super::Extracted) for rule matching, and a mutable walker that
//! feeds PII redaction ([`crate::pii::redact_json`]). So what a policy sees as "prompt text" is
//! exactly what redaction rewrites; the two can never drift apart.
//!
//! Shapes covered (the walk dispatches on field names, so it needs no provider hint and a body
//! mixing shapes is handled too):
//!
//! | shape | prompt text | tool names | tool-call arguments / results |
//! |---|---|---|---|
//! | OpenAI chat | `messages[].content` (string or parts with `text`) | `tools[].function.name`, `functions[].name` | `messages[].tool_calls[].function.arguments`, `function_call.arguments`; `role: tool` content |
//! | OpenAI responses | `instructions`, `input` (string, strings, or items with `content`) | `tools[].name` | items `function_call.arguments`, `function_call_output.output` |
//! | OpenAI completions / embeddings | `prompt`, `input` (string or strings) | – | – |
//! | Anthropic messages (also Bedrock invoke) | `system` (string or blocks), `messages[].content` blocks `text` | `tools[].name` | `tool_use.input`, `tool_result.content` |
//! | Gemini | `contents[].parts[].text`, `systemInstruction` / `system_instruction` | `tools[].functionDeclarations[].name` | `functionCall.args`, `functionResponse.response` |
//! | Bedrock converse | `messages[].content[].text`, `system[].text` | `toolConfig.tools[].toolSpec.name` | `toolUse.input`, `toolResult.content[]` (`text`, `json`) |
//! | Bedrock invoke, other models | `prompt`, `inputText` | – | – |
//!
//! Never walked: keys, `model`, sampling parameters, ids, roles, media (`image_url`, base64
//! `data`, `source`, …), tool descriptions and JSON schemas.

/// Nesting depth beyond which the walk stops. Real bodies nest a handful of levels; the limit
/// only guarantees a bounded stack for hostile values built outside `serde_json`'s parser.
pub(crate) const MAX_DEPTH: usize = 64;

/// The kind of content block an object is, read from its `type` field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockType {
    /// Anthropic `tool_use` / `server_tool_use`.
    ToolUse,
    /// Anthropic `tool_result`.
    ToolResult,
    /// OpenAI responses `function_call` (also `custom_tool_call`).
    FunctionCall,
    /// OpenAI responses `function_call_output` (also `custom_tool_call_output`).
    FunctionCallOutput,
    /// Anything else, or no `type`.
    Other,
}

impl BlockType {
    pub(crate) fn of(ty: Option<&serde_json::Value>) -> Self {
        match ty.and_then(serde_json::Value::as_str) {
            Some("tool_use" | "server_tool_use") => BlockType::ToolUse,
            Some("tool_result") => BlockType::ToolResult,
            Some("function_call" | "custom_tool_call") => BlockType::FunctionCall,
            Some("function_call_output" | "custom_tool_call_output") => {
                BlockType::FunctionCallOutput
            }
            _ => BlockType::Other,
        }
    }
}

/// Defines a walker module over `&Value` (no `mut` token) or `&mut Value` (`mut` token).
/// The body is identical text in both cases: pattern matching on `Value::Object(map)` yields
/// `&Map` or `&mut Map`, and `for (k, v) in map` iterates shared or unique references.
macro_rules! define_walker {
    ($(#[$meta:meta])* $name:ident $(, $m:tt)?) => {
        $(#[$meta])*
        pub(crate) mod $name {
            use serde_json::Value;

            use super::{BlockType, MAX_DEPTH};

            /// Receives the parts of a body the walk finds. (`&String` rather than `&str`: the
            /// same text is instantiated with `&mut String`, which redaction needs.)
            #[allow(clippy::ptr_arg)]
            pub(crate) trait Sink {
                /// A string of prompt text (user, system, assistant, tool result).
                fn text(&mut self, s: &$($m)? String);
                /// A tool name, offered (definition) or called.
                fn tool_name(&mut self, s: &$($m)? String);
                /// Tool-call arguments: a JSON-encoded string (OpenAI) or a JSON value.
                fn tool_args(&mut self, v: &$($m)? Value);
                /// A structured tool result (every string inside is prompt text).
                fn tool_result(&mut self, v: &$($m)? Value);
            }

            /// Walks a request body, calling `sink` for every part found: system prompts
            /// first, then the conversation, then tool definitions, whatever the key order
            /// of the JSON object (so the joined prompt text is the same for every shape).
            pub(crate) fn walk(root: &$($m)? Value, sink: &mut impl Sink) {
                let Value::Object(map) = root else { return };
                for phase in 0..3 {
                    for (key, v) in &$($m)? *map {
                        match (phase, key.as_str()) {
                            (0, "system" | "instructions") => content(v, sink, 1),
                            (0, "systemInstruction" | "system_instruction") => item(v, sink, 1),
                            (1, "messages" | "contents") => items(v, sink, 1),
                            (1, "input" | "prompt" | "inputText") => content(v, sink, 1),
                            (2, "tools" | "functions") => tool_defs(v, sink),
                            (2, "toolConfig" | "tool_config") => {
                                if let Value::Object(cfg) = v {
                                    for (k, tools) in cfg {
                                        if k == "tools" {
                                            tool_defs(tools, sink);
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }

            /// An array of messages / items / blocks / parts.
            fn items(v: &$($m)? Value, sink: &mut impl Sink, depth: usize) {
                if let Value::Array(list) = v {
                    for it in list {
                        item(it, sink, depth + 1);
                    }
                }
            }

            /// Text-bearing content: a string, an array of strings or blocks, or one block.
            fn content(v: &$($m)? Value, sink: &mut impl Sink, depth: usize) {
                if depth > MAX_DEPTH {
                    return;
                }
                match v {
                    Value::String(s) => sink.text(s),
                    Value::Array(list) => {
                        for it in list {
                            item(it, sink, depth + 1);
                        }
                    }
                    Value::Object(_) => item(v, sink, depth + 1),
                    _ => {}
                }
            }

            /// One message, item, content block or part, in any of the shapes.
            fn item(v: &$($m)? Value, sink: &mut impl Sink, depth: usize) {
                if depth > MAX_DEPTH {
                    return;
                }
                let map = match v {
                    Value::String(s) => return sink.text(s),
                    Value::Object(map) => map,
                    _ => return,
                };
                let ty = BlockType::of(map.get("type"));
                for (key, v) in map {
                    match (key.as_str(), ty) {
                        ("text", _) => {
                            if let Value::String(s) = v {
                                sink.text(s);
                            }
                        }
                        ("content" | "parts", _) => content(v, sink, depth + 1),
                        ("output", BlockType::FunctionCallOutput) => content(v, sink, depth + 1),
                        ("name", BlockType::ToolUse | BlockType::FunctionCall) => {
                            if let Value::String(s) = v {
                                sink.tool_name(s);
                            }
                        }
                        ("input", BlockType::ToolUse)
                        | ("arguments", BlockType::FunctionCall) => sink.tool_args(v),
                        ("tool_calls", _) => {
                            if let Value::Array(calls) = v {
                                for call in calls {
                                    if let Value::Object(call) = call {
                                        for (k, f) in call {
                                            if k == "function" {
                                                call_obj(f, "arguments", sink);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        ("function_call", _) => call_obj(v, "arguments", sink),
                        ("functionCall", _) => call_obj(v, "args", sink),
                        ("toolUse", _) => call_obj(v, "input", sink),
                        ("functionResponse", _) => {
                            if let Value::Object(resp) = v {
                                for (k, r) in resp {
                                    if k == "response" {
                                        sink.tool_result(r);
                                    }
                                }
                            }
                        }
                        ("toolResult", _) => {
                            if let Value::Object(res) = v {
                                for (k, c) in res {
                                    if k == "content" {
                                        content(c, sink, depth + 1);
                                    }
                                }
                            }
                        }
                        ("json", _) => sink.tool_result(v),
                        _ => {}
                    }
                }
            }

            /// A tool call object `{name, <args_key>}`.
            fn call_obj(v: &$($m)? Value, args_key: &str, sink: &mut impl Sink) {
                if let Value::Object(call) = v {
                    for (k, x) in call {
                        if k == "name" {
                            if let Value::String(s) = x {
                                sink.tool_name(s);
                            }
                        } else if k == args_key {
                            sink.tool_args(x);
                        }
                    }
                }
            }

            /// `tools` / `functions`: tool definitions in any of the shapes.
            fn tool_defs(v: &$($m)? Value, sink: &mut impl Sink) {
                let Value::Array(defs) = v else { return };
                for def in defs {
                    let Value::Object(def) = def else { continue };
                    for (k, x) in def {
                        match (k.as_str(), x) {
                            ("name", Value::String(s)) => sink.tool_name(s),
                            ("function" | "toolSpec", Value::Object(inner)) => {
                                for (k, n) in inner {
                                    if let ("name", Value::String(s)) = (k.as_str(), n) {
                                        sink.tool_name(s);
                                    }
                                }
                            }
                            (
                                "functionDeclarations" | "function_declarations",
                                Value::Array(decls),
                            ) => {
                                for d in decls {
                                    if let Value::Object(d) = d {
                                        for (k, n) in d {
                                            if let ("name", Value::String(s)) = (k.as_str(), n) {
                                                sink.tool_name(s);
                                            }
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    };
}

define_walker!(
    /// Read-only walk, used to build [`Extracted`](super::Extracted).
    read
);
define_walker!(
    /// Mutable walk, used by PII redaction to rewrite string values in place.
    write,
    mut
);

/// Calls `f` on every string value inside `v` (recursively; never on keys).
pub(crate) fn for_each_string(v: &serde_json::Value, depth: usize, f: &mut impl FnMut(&str)) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| for_each_string(x, depth + 1, f)),
        serde_json::Value::Object(o) => o.values().for_each(|x| for_each_string(x, depth + 1, f)),
        _ => {}
    }
}

/// Calls `f` on every string value inside `v` mutably (recursively; never on keys).
pub(crate) fn for_each_string_mut(
    v: &mut serde_json::Value,
    depth: usize,
    f: &mut impl FnMut(&mut String),
) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a
            .iter_mut()
            .for_each(|x| for_each_string_mut(x, depth + 1, f)),
        serde_json::Value::Object(o) => o
            .values_mut()
            .for_each(|x| for_each_string_mut(x, depth + 1, f)),
        _ => {}
    }
}
