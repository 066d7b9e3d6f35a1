//! Policy rules: a declarative format, compiled once per policy version, evaluated per request
//! with no I/O.
//!
//! Policies are attached to keys, and to tenants as defaults. A request is decided by the
//! **first rule that matches**; when none does, by the policy's explicit **default**.
//!
//! # Using it
//!
//! 1. On policy load or change: [`Policy::from_toml`] → [`CompiledPolicy`] (every regex,
//!    substring automaton and glob compiled here, never per request). Share it in an `Arc`.
//! 2. Per request: build a [`RequestView`] (borrowed metadata and the parsed JSON body), call
//!    [`Extracted::from_body`] once (or [`RequestView::extract`]), then [`evaluate`].
//!    [`CompiledPolicy::needs_body`] says whether the body must be buffered and parsed at all.
//! 3. Apply the [`Decision`]: when [`Decision::shadow`] is true, forward unchanged and only
//!    audit ([`Decision::enforced_action`] is then `allow`). For `redact`, call
//!    [`RedactSpec::apply`] on the body, re-serialize it and set `content-length`; for `route`,
//!    use [`Decision::route`].
//!
//! `latchkey policy test` uses [`SampleRequest`] to evaluate a request file and prints the
//! [`Decision`] (its `Display` form names the action and the rule).
//!
//! # Policy format (TOML)
//!
//! ```toml
//! name = "agents"                  # required, non-empty
//! description = "rules for agent keys"   # optional
//! mode = "enforce"                 # "enforce" (default) or "shadow"
//! default = "allow"                # required: allow | block | warn | hold
//! default_message = "no rule matched"    # optional
//!
//! [[rule]]                         # zero or more, evaluated in order
//! id = "no-secrets-in-prompts"     # required, unique, non-empty
//! description = "…"                # optional
//! action = "block"                 # required: allow | block | redact | hold | warn | route
//! message = "prompts may not contain secrets"   # optional
//!
//! [rule.match]                     # optional; omitted = matches every request
//! providers = ["openai", "anthropic"]       # glob
//! methods = ["POST"]                        # glob
//! paths = ["/v1/chat/*"]                    # glob, query string ignored
//! models = ["gpt-4o*"]                      # glob
//! workloads = ["agents"]                    # glob
//! key_ids = ["key_01*"]                     # glob
//! key_names = ["ci-*"]                      # glob
//! key_labels = { team = "research" }        # label name = value glob
//! headers = { "x-team" = "research" }       # header name = value glob
//! prompt_contains = ["ignore previous instructions"]  # substrings, case-insensitive
//! prompt_regex = ["(?i)password\\s*[:=]"]              # regexes over the prompt text
//! tools = ["shell_exec", "fs_*"]            # glob over tool names offered or called
//! tool_args_contains = ["/etc/passwd"]      # substrings of tool-call arguments
//! tool_args_regex = ["rm\\s+-rf"]           # regexes over tool-call arguments
//!
//! [[rule]]
//! id = "cheap-model-for-ci"
//! action = "route"
//! [rule.match]
//! workloads = ["ci"]
//! [rule.route]                     # required for action = "route", forbidden otherwise
//! provider = "anthropic"           # at least one of provider / model
//! model = "claude-3-5-haiku-latest"
//!
//! [[rule]]
//! id = "redact-everything-else"    # no [rule.match]: a catch-all
//! action = "redact"
//! [rule.redact]                    # optional for action = "redact", forbidden otherwise
//! detectors = ["email", "credit_card", "api_key"]   # default: all built-in detectors
//! custom = ["ACME-\\d{6}"]         # extra regexes, redacted as [REDACTED:CUSTOM]
//! scope = "prompt_fields"          # or "all_strings" (for generic JSON bodies)
//! ```
//!
//! The same document can be written in JSON with the same field names (`"rule": [ … ]`,
//! `"match": { … }`); see [`Policy::parse_json`].
//!
//! ## Modes
//!
//! - `enforce`: decisions are applied.
//! - `shadow`: decisions are evaluated and audited exactly as in `enforce` (with
//!   `shadow: true`), but the request is forwarded unchanged. Use it to try a policy on live
//!   traffic before enforcing it.
//!
//! ## Actions
//!
//! | action | effect |
//! |---|---|
//! | `allow` | forward |
//! | `block` | refuse with `403 policy_blocked` and the rule's message |
//! | `redact` | rewrite PII in the body with the rule's detectors (see [`crate::pii`]), forward with a correct `content-length` |
//! | `hold` | park the request until a human approves or denies it |
//! | `warn` | forward, and flag the request in the audit log |
//! | `route` | send to `route.provider` and/or `route.model` instead |
//!
//! The default may be `allow`, `block`, `warn` or `hold`. To redact or route by default, end
//! the rule list with a catch-all rule (a rule without `[rule.match]`).
//!
//! ## Matching
//!
//! - All conditions present in `[rule.match]` must hold (AND); within a list, any entry may
//!   match (OR); within `key_labels` / `headers`, every listed name must be present with a
//!   matching value.
//! - **Globs**: `*` matches any run of characters, including none and including `/`; every
//!   other character matches itself. Glob matching ignores ASCII case (for providers, methods,
//!   paths, models, workloads, keys, label and header values, tool names). Label and header
//!   names also compare case-insensitively.
//! - A condition on something the request does not have never holds: `models` does not match
//!   a request whose model is unknown, `workloads` one without a workload, `headers` one
//!   without that header.
//! - `prompt_contains` / `tool_args_contains` are plain substrings (no metacharacters),
//!   compared case-insensitively (Unicode simple case folding: `É` matches `é`).
//! - `prompt_regex` / `tool_args_regex` use Rust `regex` syntax (no look-around or
//!   back-references; linear time). They are case-sensitive unless they start with `(?i)`;
//!   `^` and `$` anchor at the ends of the whole text unless `(?m)` is used.
//! - Tool-argument conditions hold when any single tool call's arguments match.
//! - Empty lists, empty tables and empty substring/regex patterns are rejected (they would
//!   read as "match anything" or "match nothing" by accident).
//!
//! ## What counts as prompt text, tools and tool arguments
//!
//! The body is parsed once and walked once; the same walk decides what `redact` rewrites.
//!
//! - **Prompt text**: system prompts and instructions, every user / assistant message text,
//!   and tool results, joined by newlines: system parts first, then the conversation in
//!   order. OpenAI chat (`messages[].content`
//!   string or `text` parts), OpenAI responses (`instructions`, `input` string or items),
//!   completions and embeddings (`prompt`, `input`), Anthropic messages and Bedrock invoke with
//!   an Anthropic body (`system` string or blocks, `text` blocks, `tool_result` content), Gemini
//!   (`contents[].parts[].text`, `systemInstruction`, `functionResponse.response`), Bedrock
//!   converse (`messages[].content[].text`, `system[].text`, `toolResult.content`), Bedrock
//!   invoke for other models (`prompt`, `inputText`).
//! - **Tools**: names of tools offered (`tools[].function.name`, `tools[].name`,
//!   `functions[].name`, `tools[].functionDeclarations[].name`,
//!   `toolConfig.tools[].toolSpec.name`) and of tools called in the conversation.
//! - **Tool-call arguments**: one text per call, as JSON: OpenAI `tool_calls[].function.arguments`
//!   and responses `function_call.arguments` as sent, Anthropic `tool_use.input`, Gemini
//!   `functionCall.args` and Bedrock `toolUse.input` encoded compactly
//!   (`{"cmd":"rm -rf /"}`).
//!
//! ## Cost
//!
//! Every glob, substring list and regex is compiled once, when the policy is compiled. Per
//! request the body is walked once; each text field (`prompt_contains`, `prompt_regex`,
//! `tool_args_contains`, `tool_args_regex`) is scanned once by a policy-wide matcher combining
//! all rules' patterns (the regex engine's Aho–Corasick/Teddy literal searchers skip to
//! candidate positions), and a rule's own matcher runs only when that scan found something, to
//! tell which rule it was. Measured on the benchmark's 4 KB chat body with its 20-rule policy
//! (`benches/wrk/`): parsing the body ≈ 8 µs, evaluation ≈ 10 µs (release build, one core); the
//! merged matcher reads every byte when the rules' literals cannot be used to skip (see
//! `benches/RESULTS.md`, "Policy cost").
//!
//! ## Errors
//!
//! [`Policy::from_toml`] rejects, with a [`PolicyError`] naming the field or rule: unknown,
//! missing or mistyped fields (the TOML error names the field and line), an empty name, a
//! `redact`/`route` default, empty or duplicate rule ids, empty condition lists or patterns,
//! invalid regexes (naming the rule, field and pattern), `route` without a usable
//! `[rule.route]`, `[rule.route]`/`[rule.redact]` on a rule with another action, a
//! `[rule.redact]` enabling nothing, unknown detector names and invalid custom patterns.
//!
//! ## Versions
//!
//! [`CompiledPolicy::fingerprint`] is the SHA-256 of the canonical document: equal on every
//! node for the same policy, recorded in audit events. [`CompiledPolicy::generation`] is a
//! process-local counter that changes on every compilation.

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

mod compile;
mod eval;
mod format;
mod glob;
mod request;
mod sample;
pub(crate) mod shapes;

pub use compile::{CompiledPolicy, PolicyError, RedactSpec};
pub use eval::{evaluate, Decision};
pub use format::{Action, Match, Mode, Policy, RedactConfig, Route, Rule};
pub use request::{Extracted, KeyMeta, RequestView};
pub use sample::{SampleKey, SampleRequest};

#[cfg(test)]
mod tests;
