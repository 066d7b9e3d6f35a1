//! What a policy sees of a request: borrowed metadata plus text extracted once from the body.

use serde::Serialize;
use serde_json::Value;

use super::shapes::{self, read::Sink};

/// What the policy knows about the proxy key a request used.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyMeta<'a> {
    /// The key's id.
    pub id: &'a str,
    /// The key's display name.
    pub name: &'a str,
    /// The key's labels as `(name, value)` pairs.
    pub labels: &'a [(&'a str, &'a str)],
}

/// A request as the policy engine sees it. Everything is borrowed; building one costs nothing
/// beyond the `headers` slice, which may stay empty when
/// [`CompiledPolicy::needs_headers`](super::CompiledPolicy::needs_headers) is false.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView<'a> {
    /// Provider namespace (`openai`).
    pub provider: &'a str,
    /// HTTP method (`POST`).
    pub method: &'a str,
    /// Upstream path (`/v1/chat/completions`); a query string is ignored for matching.
    pub path: &'a str,
    /// The requested model, if known (see [`crate::locks::model::requested_model`]).
    pub model: Option<&'a str>,
    /// The workload the request runs as, if any.
    pub workload: Option<&'a str>,
    /// The proxy key.
    pub key: KeyMeta<'a>,
    /// Request headers as `(name, value)` pairs; names compare ASCII case-insensitively and a
    /// repeated header may appear several times. Values that are not UTF-8 can be left out.
    pub headers: &'a [(&'a str, &'a str)],
    /// The parsed JSON body, if the request has one.
    pub body: Option<&'a Value>,
}

impl RequestView<'_> {
    /// Extracts prompt text and tools from [`RequestView::body`]; call it once per request.
    pub fn extract(&self) -> Extracted {
        Extracted::from_body(self.body)
    }
}

/// Text pulled out of a request body once, shared by every rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Extracted {
    /// System text first, then user, assistant and tool-result text in conversation order,
    /// joined by `\n`.
    pub prompt_text: String,
    /// Names of tools offered (definitions) or called, first occurrence order, no duplicates.
    pub tool_names: Vec<String>,
    /// One entry per tool call: its arguments as JSON text (OpenAI's string as sent; structured
    /// arguments of the other shapes encoded compactly).
    pub tool_args: Vec<String>,
}

impl Extracted {
    /// Walks a body in any of the supported shapes (OpenAI chat and responses, Anthropic
    /// messages, Gemini, Bedrock converse and invoke); an absent or non-object body yields
    /// nothing.
    ///
    /// ```
    /// use latchkey_policy::rules::Extracted;
    /// use serde_json::json;
    ///
    /// let body = json!({
    ///     "system": "be brief",
    ///     "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    ///     "tools": [{"name": "shell_exec", "input_schema": {}}]
    /// });
    /// let ex = Extracted::from_body(Some(&body));
    /// assert_eq!(ex.prompt_text, "be brief\nhi");
    /// assert_eq!(ex.tool_names, ["shell_exec"]);
    /// ```
    pub fn from_body(body: Option<&Value>) -> Self {
        let mut ex = Extracted::default();
        if let Some(body) = body {
            shapes::read::walk(body, &mut ex);
        }
        ex
    }

    fn push_text(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if !self.prompt_text.is_empty() {
            self.prompt_text.push('\n');
        }
        self.prompt_text.push_str(s);
    }
}

impl Sink for Extracted {
    fn text(&mut self, s: &String) {
        self.push_text(s);
    }

    fn tool_name(&mut self, s: &String) {
        if !self.tool_names.iter().any(|n| n == s) {
            self.tool_names.push(s.clone());
        }
    }

    fn tool_args(&mut self, v: &Value) {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Null => return,
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        self.tool_args.push(text);
    }

    fn tool_result(&mut self, v: &Value) {
        shapes::for_each_string(v, 0, &mut |s| self.push_text(s));
    }
}
