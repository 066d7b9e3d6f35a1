//! Model allow-lists: which model does a request ask for, and may this key use it?
//!
//! The model is found in one of four shapes:
//! - OpenAI / Anthropic / Mistral style: top-level JSON `"model": "…"` in the body.
//! - Gemini: `…/models/{model}:{action}` in the path (`:generateContent`,
//!   `:streamGenerateContent`, `:countTokens`, …), anywhere in the path.
//! - Bedrock: `…/model/{modelId}/{invoke|invoke-with-response-stream|converse|converse-stream}`,
//!   with `modelId` percent-decoded (`anthropic.claude-3%3A0` → `anthropic.claude-3:0`).
//!
//! The path decides for Gemini and Bedrock (that is what the provider routes on). If the path
//! names one model and the body another, the model is treated as **unknown** (`None`): we cannot
//! tell which one the upstream will use, and an unknown model is refused by a non-empty allow-list.

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::Denial;

/// Bedrock runtime actions that carry a model id in the path.
const BEDROCK_ACTIONS: [&str; 4] = [
    "invoke",
    "invoke-with-response-stream",
    "converse",
    "converse-stream",
];

/// The model named by the path (Gemini or Bedrock shape), if any. The query string is ignored.
///
/// ```
/// use latchkey_policy::locks::model::model_from_path;
/// assert_eq!(
///     model_from_path("/v1beta/models/gemini-1.5-pro:generateContent").as_deref(),
///     Some("gemini-1.5-pro")
/// );
/// assert_eq!(
///     model_from_path("/model/anthropic.claude-3%3A0/invoke").as_deref(),
///     Some("anthropic.claude-3:0")
/// );
/// assert_eq!(model_from_path("/v1/chat/completions"), None);
/// ```
pub fn model_from_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "model" => {
                let (Some(id), Some(action)) = (segments.get(i + 1), segments.get(i + 2)) else {
                    continue;
                };
                if BEDROCK_ACTIONS.contains(action) {
                    return decode(id);
                }
            }
            "models" => {
                let Some(next) = segments.get(i + 1) else {
                    continue;
                };
                let decoded = decode(next)?;
                if let Some((model, action)) = decoded.split_once(':') {
                    if !model.is_empty() && !action.is_empty() {
                        return Some(model.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// Percent-decodes a path segment; `None` for an empty result or invalid UTF-8.
fn decode(segment: &str) -> Option<String> {
    let s = percent_decode_str(segment).decode_utf8().ok()?;
    (!s.is_empty()).then(|| s.into_owned())
}

/// The top-level `"model"` string of a JSON body, if any.
///
/// ```
/// use latchkey_policy::locks::model::model_from_body;
/// let body = serde_json::json!({"model": "gpt-4o", "messages": []});
/// assert_eq!(model_from_body(&body).as_deref(), Some("gpt-4o"));
/// ```
pub fn model_from_body(body: &Value) -> Option<String> {
    match body.get("model")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The model a request asks for: the path shape (Gemini, Bedrock) or the JSON body's `"model"`.
/// Disagreeing path and body give `None` (see the module docs).
///
/// ```
/// use latchkey_policy::locks::model::requested_model;
/// let body = serde_json::json!({"model": "claude-3-5-sonnet"});
/// assert_eq!(requested_model("/v1/messages", Some(&body)).as_deref(), Some("claude-3-5-sonnet"));
/// assert_eq!(
///     requested_model("/v1beta/models/gemini-pro:streamGenerateContent?alt=sse", None).as_deref(),
///     Some("gemini-pro")
/// );
/// assert_eq!(requested_model("/v1/messages", None), None);
/// ```
pub fn requested_model(path: &str, body: Option<&Value>) -> Option<String> {
    let from_path = model_from_path(path);
    let from_body = body.and_then(model_from_body);
    match (from_path, from_body) {
        (Some(p), Some(b)) if p != b => None,
        (Some(p), _) => Some(p),
        (None, b) => b,
    }
}

/// Checks `model` against an allow-list. An empty list allows everything. Entries match exactly
/// (case-sensitive, as providers treat model ids), or as a prefix when they end in `*`
/// (`gpt-4o*`, or `*` for any known model).
///
/// A non-empty list with an unknown model (`None`) refuses: the key's owner asked for a
/// restriction, and a request whose model we cannot determine must not slip through it.
///
/// ```
/// use latchkey_policy::locks::model::check_model;
/// use latchkey_policy::locks::Denial;
/// let allowed = vec!["gpt-4o-mini".to_string(), "claude-3-5-*".to_string()];
/// assert_eq!(check_model(&allowed, Some("claude-3-5-haiku")), Ok(()));
/// assert_eq!(check_model(&allowed, Some("gpt-4o")), Err(Denial::ModelNotAllowed));
/// assert_eq!(check_model(&allowed, None), Err(Denial::ModelNotAllowed));
/// assert_eq!(check_model(&[], None), Ok(()));
/// ```
pub fn check_model(allowed: &[String], model: Option<&str>) -> Result<(), Denial> {
    if allowed.is_empty() {
        return Ok(());
    }
    let model = model.ok_or(Denial::ModelNotAllowed)?;
    let ok = allowed.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => entry == model,
    });
    if ok {
        Ok(())
    } else {
        Err(Denial::ModelNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn openai_anthropic_mistral_body() {
        for m in [
            "gpt-4o",
            "claude-3-5-sonnet-20241022",
            "mistral-large-latest",
        ] {
            let body = json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
            assert_eq!(
                requested_model("/v1/chat/completions", Some(&body)).as_deref(),
                Some(m)
            );
        }
        assert_eq!(
            requested_model("/v1/chat/completions", Some(&json!({"model": 4}))),
            None
        );
        assert_eq!(
            requested_model("/v1/chat/completions", Some(&json!({"model": ""}))),
            None
        );
        assert_eq!(
            requested_model("/v1/chat/completions", Some(&json!(["model"]))),
            None
        );
        // Only the top level counts.
        let nested = json!({"input": {"model": "gpt-4o"}});
        assert_eq!(requested_model("/v1/responses", Some(&nested)), None);
    }

    #[test]
    fn gemini_paths() {
        for (path, model) in [
            (
                "/v1beta/models/gemini-1.5-flash:generateContent",
                "gemini-1.5-flash",
            ),
            (
                "/v1beta/models/gemini-1.5-flash:streamGenerateContent?alt=sse",
                "gemini-1.5-flash",
            ),
            (
                "/proxy/gemini/v1/models/gemini-pro:countTokens",
                "gemini-pro",
            ),
            ("/v1beta/models/gemini-pro%3AgenerateContent", "gemini-pro"),
        ] {
            assert_eq!(model_from_path(path).as_deref(), Some(model), "{path}");
        }
        // Listing or describing models names no generation target.
        assert_eq!(model_from_path("/v1beta/models"), None);
        assert_eq!(model_from_path("/v1beta/models/gemini-pro"), None);
        assert_eq!(model_from_path("/v1beta/models/:generateContent"), None);
    }

    #[test]
    fn bedrock_paths() {
        for (path, model) in [
            ("/model/amazon.titan-text-express-v1/invoke", "amazon.titan-text-express-v1"),
            (
                "/proxy/bedrock/model/anthropic.claude-3-sonnet-20240229-v1%3A0/invoke-with-response-stream",
                "anthropic.claude-3-sonnet-20240229-v1:0",
            ),
            ("/model/meta.llama3-8b-instruct-v1%3A0/converse", "meta.llama3-8b-instruct-v1:0"),
            ("/model/anthropic.claude-3%3A0/converse-stream", "anthropic.claude-3:0"),
            (
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x/invoke",
                "arn:aws:bedrock:us-east-1:123:inference-profile/us.x",
            ),
        ] {
            assert_eq!(model_from_path(path).as_deref(), Some(model), "{path}");
        }
        assert_eq!(model_from_path("/model/x/unknown-action"), None);
        assert_eq!(model_from_path("/model/x"), None);
        assert_eq!(model_from_path("/model//invoke"), None);
        assert_eq!(model_from_path("/model/%FF%FE/invoke"), None);
        // Query text is not path.
        assert_eq!(model_from_path("/v1/chat?next=/model/x/invoke"), None);
    }

    #[test]
    fn path_and_body_disagreeing_is_unknown() {
        let body = json!({"model": "cheap-model"});
        assert_eq!(
            requested_model("/v1beta/models/expensive:generateContent", Some(&body)),
            None
        );
        let same = json!({"model": "gemini-pro"});
        assert_eq!(
            requested_model("/v1beta/models/gemini-pro:generateContent", Some(&same)).as_deref(),
            Some("gemini-pro")
        );
    }

    #[test]
    fn allow_list() {
        let allowed: Vec<String> = ["gpt-4o", "claude-*"].map(String::from).to_vec();
        assert_eq!(check_model(&allowed, Some("gpt-4o")), Ok(()));
        assert_eq!(check_model(&allowed, Some("claude-3-opus")), Ok(()));
        assert_eq!(
            check_model(&allowed, Some("gpt-4o-mini")),
            Err(Denial::ModelNotAllowed)
        );
        assert_eq!(
            check_model(&allowed, Some("GPT-4O")),
            Err(Denial::ModelNotAllowed)
        );
        assert_eq!(check_model(&allowed, None), Err(Denial::ModelNotAllowed));
        let any = vec!["*".to_string()];
        assert_eq!(check_model(&any, Some("whatever")), Ok(()));
        assert_eq!(check_model(&any, None), Err(Denial::ModelNotAllowed));
        assert_eq!(check_model(&[], Some("anything")), Ok(()));
    }

    proptest! {
        #[test]
        fn extraction_never_panics(path in ".{0,200}", model in ".{0,40}") {
            let body = json!({"model": model});
            let _ = requested_model(&path, Some(&body));
            let _ = requested_model(&path, None);
        }

        #[test]
        fn extraction_never_panics_on_pathy_input(path in "(/|model|models|invoke|converse|:|%[0-9A-Fa-f]{0,2}|[a-z.-])*") {
            let _ = model_from_path(&path);
        }
    }
}
