//! The OpenAI-compatible endpoint, `/v1/{path}`: picks the provider for a request that names no
//! provider, from the tenant's model registry or the key, then hands it to the regular pipeline
//! as `/proxy/{provider}{openai_base_path}/{path}`.
//!
//! - A `model` that is a registry alias goes to the alias's provider, with the body's `model`
//!   rewritten to the exact model id.
//! - A `model` that is some entry's exact id goes to that entry's provider unchanged.
//! - With a registry, any other model is refused (`model_not_allowed`): the registry is the list
//!   of what `/v1` serves. Without one, requests go to the key's first provider.
//! - `GET /v1/models` answers from the registry: the aliases the key may use (its provider
//!   scope and model allow-list), in OpenAI's list format.

use crate::errors::GatewayError;
use crate::policies::TenantRules;
use crate::resolve::ResolvedKey;
use crate::state::GatewayState;
use bytes::Bytes;
use latchkey_policy::locks::model::check_model;
use latchkey_vault::model::ModelEntry;
use serde_json::{json, Value};

/// Where a `/v1` request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    /// Through the pipeline to this provider and upstream path; `body` is the rewritten body
    /// when an alias changed the model.
    Forward {
        /// Provider id.
        provider: String,
        /// Upstream path (the provider's `openai_base_path` + the `/v1` path).
        rest: String,
        /// The body with the exact model id, when it was rewritten.
        body: Option<Bytes>,
    },
    /// Answered by the gateway itself (`GET /v1/models` from the registry).
    Answer(Bytes),
}

/// Decides where a `/v1` request goes. `body` is the request's JSON body, when it has one.
pub async fn route(
    state: &GatewayState,
    key: &ResolvedKey,
    rules: &TenantRules,
    method: &str,
    rest: &str,
    body: Option<&Value>,
) -> Result<Destination, GatewayError> {
    if method == "GET" && rest.trim_end_matches('/') == "/models" && !rules.models.is_empty() {
        return Ok(Destination::Answer(models_list(key, rules)));
    }
    let requested = body.and_then(|b| b.get("model")).and_then(Value::as_str);
    let (provider, rewrite) = match requested {
        Some(m) if !rules.models.is_empty() => {
            let entry = rules
                .models
                .get(m)
                .or_else(|| rules.models.values().find(|e| e.model == m))
                .ok_or_else(|| {
                    GatewayError::new(
                        403,
                        "model_not_allowed",
                        format!("model {m:?} is not in this workspace's model registry; GET /v1/models lists what this key may use"),
                    )
                })?;
            let rewrite = (entry.model != m).then(|| entry.model.clone());
            (entry.provider.clone(), rewrite)
        }
        _ => (default_provider(key)?, None),
    };
    let routed = state.providers.get(&key.tenant, &provider).await?;
    let base = routed
        .provider
        .openai_base_path
        .clone()
        .ok_or_else(|| {
            GatewayError::new(
                404,
                "unknown_provider",
                format!("provider {provider:?} does not serve the OpenAI-compatible API through /v1; use /proxy/{provider}/…"),
            )
        })?;
    let body = match (rewrite, body) {
        (Some(model), Some(b)) => {
            let mut b = b.clone();
            b["model"] = Value::String(model);
            serde_json::to_vec(&b).ok().map(Bytes::from)
        }
        _ => None,
    };
    Ok(Destination::Forward {
        provider,
        rest: format!("{}{rest}", base.trim_end_matches('/')),
        body,
    })
}

/// The key's first named provider (`openai` when it may use any).
fn default_provider(key: &ResolvedKey) -> Result<String, GatewayError> {
    match key.providers.iter().find(|p| p.as_str() != "*") {
        Some(p) => Ok(p.clone()),
        None if key.providers.iter().any(|p| p == "*") => Ok("openai".into()),
        None => Err(GatewayError::new(
            403,
            "provider_not_allowed",
            "this proxy key may not use any provider",
        )),
    }
}

/// What the key may ask for: aliases whose provider is in its scope and whose exact model
/// passes its allow-list.
fn usable<'a>(
    key: &'a ResolvedKey,
    rules: &'a TenantRules,
) -> impl Iterator<Item = &'a ModelEntry> {
    rules.models.values().filter(move |e| {
        key.allows_provider(&e.provider) && check_model(&key.models, Some(&e.model)).is_ok()
    })
}

fn models_list(key: &ResolvedKey, rules: &TenantRules) -> Bytes {
    let mut data: Vec<Value> = usable(key, rules)
        .map(|e| {
            json!({
                "id": e.alias,
                "object": "model",
                "created": e.updated_at.timestamp(),
                "owned_by": e.provider,
            })
        })
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Bytes::from(json!({ "object": "list", "data": data }).to_string())
}
