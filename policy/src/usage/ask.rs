//! Asking a provider to report usage on streams that would otherwise carry none.

use serde_json::Value;

/// Providers whose streamed chat completions report usage only when asked with
/// `stream_options.include_usage` (the others in the catalog report it by default, or reject
/// unknown fields).
const ASK_PROVIDERS: [&str; 2] = ["openai", "azure-openai"];

/// For an OpenAI streamed chat completion (`"stream": true` to a `…/chat/completions` path of
/// `openai` or `azure-openai`) that does not already say, sets
/// `stream_options.include_usage = true` so the stream ends with a usage chunk the gateway can
/// meter. Returns whether the body changed.
///
/// The client sees one extra final chunk with an empty `choices` array, which the official SDKs
/// handle. A client that set `include_usage` either way is left alone.
///
/// ```
/// use latchkey_policy::usage::ask_for_stream_usage;
/// use serde_json::json;
///
/// let mut body = json!({"model": "gpt-4o-mini", "stream": true, "messages": []});
/// assert!(ask_for_stream_usage("openai", "/v1/chat/completions", Some(&mut body)));
/// assert_eq!(body["stream_options"]["include_usage"], json!(true));
/// // Not a stream, or not OpenAI: unchanged.
/// let mut body = json!({"model": "gpt-4o-mini", "messages": []});
/// assert!(!ask_for_stream_usage("openai", "/v1/chat/completions", Some(&mut body)));
/// let mut body = json!({"stream": true, "messages": []});
/// assert!(!ask_for_stream_usage("mistral", "/v1/chat/completions", Some(&mut body)));
/// ```
pub fn ask_for_stream_usage(provider: &str, path: &str, body: Option<&mut Value>) -> bool {
    if !ASK_PROVIDERS.contains(&provider) || !path.ends_with("/chat/completions") {
        return false;
    }
    let Some(obj) = body.and_then(Value::as_object_mut) else {
        return false;
    };
    if obj.get("stream") != Some(&Value::Bool(true)) {
        return false;
    }
    match obj.get_mut("stream_options") {
        Some(Value::Object(opts)) => {
            if opts.contains_key("include_usage") {
                return false;
            }
            opts.insert("include_usage".into(), Value::Bool(true));
        }
        Some(_) => return false,
        None => {
            obj.insert(
                "stream_options".into(),
                serde_json::json!({ "include_usage": true }),
            );
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_other_stream_options_and_respects_the_clients_choice() {
        let mut b = json!({"stream": true, "stream_options": {"foo": 1}});
        assert!(ask_for_stream_usage(
            "azure-openai",
            "/openai/deployments/x/chat/completions",
            Some(&mut b)
        ));
        assert_eq!(
            b["stream_options"],
            json!({"foo": 1, "include_usage": true})
        );
        let mut b = json!({"stream": true, "stream_options": {"include_usage": false}});
        assert!(!ask_for_stream_usage(
            "openai",
            "/v1/chat/completions",
            Some(&mut b)
        ));
        assert_eq!(b["stream_options"]["include_usage"], json!(false));
        assert!(!ask_for_stream_usage(
            "openai",
            "/v1/chat/completions",
            None
        ));
        let mut b = json!({"stream": true});
        assert!(!ask_for_stream_usage(
            "openai",
            "/v1/embeddings",
            Some(&mut b)
        ));
    }
}
