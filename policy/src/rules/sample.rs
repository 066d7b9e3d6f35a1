//! Sample requests for `latchkey policy test`: a file describing one request, evaluated
//! against a policy without a gateway.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compile::{CompiledPolicy, PolicyError};
use super::eval::{evaluate, Decision};
use super::request::{Extracted, KeyMeta, RequestView};

/// A request described in a file (JSON, or TOML with the body as an inline table):
///
/// ```json
/// {
///   "provider": "openai",
///   "method": "POST",
///   "path": "/v1/chat/completions",
///   "workload": "agents",
///   "key": {"id": "key_1", "name": "ci-bot", "labels": {"team": "research"}},
///   "headers": {"x-team": "research"},
///   "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
/// }
/// ```
///
/// Only `provider` and `path` are required; `method` defaults to `POST`. Without `model`, the
/// model is found the way the gateway finds it (path, then body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    /// Provider namespace.
    pub provider: String,
    /// HTTP method.
    #[serde(default = "post")]
    pub method: String,
    /// Upstream path.
    pub path: String,
    /// Requested model; derived from the path or body when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The proxy key.
    #[serde(default)]
    pub key: SampleKey,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// The proxy key of a [`SampleRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleKey {
    /// Key id.
    #[serde(default)]
    pub id: String,
    /// Key name.
    #[serde(default)]
    pub name: String,
    /// Key labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn post() -> String {
    "POST".to_owned()
}

impl SampleRequest {
    /// Parses a sample file: JSON if it starts with `{`, TOML otherwise.
    pub fn parse(src: &str) -> Result<Self, PolicyError> {
        if src.trim_start().starts_with('{') {
            serde_json::from_str(src).map_err(|e| PolicyError::Parse(e.to_string()))
        } else {
            toml::from_str(src).map_err(|e| PolicyError::Parse(e.to_string()))
        }
    }

    /// Evaluates the sample against `policy`, exactly as the gateway would.
    ///
    /// ```
    /// use latchkey_policy::rules::{Policy, SampleRequest};
    ///
    /// let policy = Policy::from_toml(r#"
    ///     name = "p"
    ///     default = "allow"
    ///     [[rule]]
    ///     id = "mini-only"
    ///     action = "route"
    ///     [rule.match]
    ///     models = ["gpt-4o"]
    ///     [rule.route]
    ///     model = "gpt-4o-mini"
    /// "#)?;
    /// let sample = SampleRequest::parse(r#"{"provider": "openai", "path": "/v1/chat/completions",
    ///     "body": {"model": "gpt-4o", "messages": []}}"#)?;
    /// let decision = sample.evaluate(&policy);
    /// assert_eq!(decision.to_string(), "route by rule mini-only to (same provider) / gpt-4o-mini");
    /// # Ok::<(), latchkey_policy::rules::PolicyError>(())
    /// ```
    pub fn evaluate(&self, policy: &CompiledPolicy) -> Decision {
        let model = self
            .model
            .clone()
            .or_else(|| crate::locks::model::requested_model(&self.path, self.body.as_ref()));
        let labels: Vec<(&str, &str)> = self
            .key
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let view = RequestView {
            provider: &self.provider,
            method: &self.method,
            path: &self.path,
            model: model.as_deref(),
            workload: self.workload.as_deref(),
            key: KeyMeta {
                id: &self.key.id,
                name: &self.key.name,
                labels: &labels,
            },
            headers: &headers,
            body: self.body.as_ref(),
        };
        let extracted = Extracted::from_body(view.body);
        evaluate(policy, &view, &extracted)
    }
}
