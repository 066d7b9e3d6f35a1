//! `/api/v1/models`: the model registry of the OpenAI-compatible `/v1` endpoint.
//!
//! - `GET models`: `{"models": [{"alias", "provider", "model", "updated_at"}]}`.
//! - `PUT models/{alias}`: `{"provider": "groq", "model": "llama-3.3-70b-versatile"}` — a client
//!   asking `/v1` for `alias` is sent to that provider with that exact model.
//! - `DELETE models/{alias}`.
//!
//! The provider must exist and serve the OpenAI-compatible API (have an `openai_base_path`).

use super::providers::merged;
use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::Json;
use chrono::Utc;
use latchkey_vault::model::ModelEntry;
use latchkey_vault::notify::Change;
use serde::Deserialize;
use serde_json::{json, Value};

/// Body of `PUT /api/v1/models/{alias}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    provider: String,
    model: String,
}

fn check_name(field: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 200 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::invalid(format!(
            "{field}: 1 to 200 characters without spaces"
        )));
    }
    Ok(())
}

/// `GET /api/v1/models`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let models = ctl.store.list_models(&admin.0.tenant).await?;
    Ok(Json(json!({ "models": models })))
}

/// `PUT /api/v1/models/{alias}`.
pub async fn put(
    ctl: Ctl,
    admin: Admin,
    Path(alias): Path<String>,
    body: Result<Json<ModelBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    check_name("alias", &alias)?;
    check_name("model", &b.model)?;
    let tenant = admin.0.tenant.clone();
    let providers = merged(ctl.store.as_ref(), &tenant).await?;
    let Some(p) = providers.iter().find(|p| p.id == b.provider) else {
        return Err(ApiError::invalid(format!(
            "provider: unknown provider {:?}",
            b.provider
        )));
    };
    if p.openai_base_path.is_none() {
        return Err(ApiError::invalid(format!(
            "provider: {:?} does not serve the OpenAI-compatible API (set its openai_base_path first)",
            b.provider
        )));
    }
    let entry = ModelEntry {
        tenant: tenant.clone(),
        alias: alias.clone(),
        provider: b.provider,
        model: b.model,
        updated_at: Utc::now(),
    };
    ctl.store.put_model(&entry).await?;
    ctl.listener.changed(Change::Policies { tenant }).await;
    ctl.audit_detail(
        &admin,
        "model.set",
        &alias,
        "ok",
        json!({ "provider": entry.provider, "model": entry.model }),
    );
    Ok(Json(json!(entry)))
}

/// `DELETE /api/v1/models/{alias}`.
pub async fn delete(
    ctl: Ctl,
    admin: Admin,
    Path(alias): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = admin.0.tenant.clone();
    if !ctl.store.delete_model(&tenant, &alias).await? {
        return Err(ApiError::not_found(format!("no model alias {alias:?}")));
    }
    ctl.listener.changed(Change::Policies { tenant }).await;
    ctl.audit(&admin, "model.remove", &alias, "ok");
    Ok(Json(json!({ "deleted": alias })))
}
