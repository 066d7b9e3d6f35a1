//! `/api/v1/limits`: rate limits and spend caps of a whole tenant or of one workload, checked
//! beside each key's own (`limits` on the key object).
//!
//! - `GET limits`: `{"limits": [{"scope": "tenant" | "workload:NAME", "limits": {…}}]}`.
//! - `PUT limits/{scope}`: body `{"rpm"?, "tpm"?, "budget_daily_usd"?, "budget_monthly_usd"?}`
//!   replaces that scope's limits.
//! - `DELETE limits/{scope}`.

use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::Json;
use chrono::Utc;
use latchkey_policy::limits::Limits;
use latchkey_vault::model::{ScopeLimits, TENANT_SCOPE};
use latchkey_vault::notify::Change;
use serde_json::{json, Value};

/// Checks a scope name: `tenant` or `workload:NAME`.
fn check_scope(scope: &str) -> Result<(), ApiError> {
    if scope == TENANT_SCOPE {
        return Ok(());
    }
    match scope.strip_prefix("workload:") {
        Some(w)
            if !w.is_empty()
                && w.len() <= 64
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Ok(())
        }
        _ => Err(ApiError::invalid(
            "scope: must be \"tenant\" or \"workload:NAME\"",
        )),
    }
}

/// Validates a limits object for storage.
pub(crate) fn check_limits(l: &Limits) -> Result<Value, ApiError> {
    l.validate()
        .map_err(|e| ApiError::invalid(format!("limits: {e}")))?;
    Ok(serde_json::to_value(l).unwrap_or(Value::Null))
}

/// `GET /api/v1/limits`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let rows = ctl.store.list_scope_limits(&admin.0.tenant).await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| json!({ "scope": r.scope, "limits": r.limits, "updated_at": r.updated_at }))
        .collect();
    Ok(Json(json!({ "limits": rows })))
}

/// `PUT /api/v1/limits/{scope}`.
pub async fn put(
    ctl: Ctl,
    admin: Admin,
    Path(scope): Path<String>,
    body: Result<Json<Limits>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(l) = body?;
    check_scope(&scope)?;
    let limits = check_limits(&l)?;
    let tenant = admin.0.tenant.clone();
    ctl.store
        .put_scope_limits(&ScopeLimits {
            tenant: tenant.clone(),
            scope: scope.clone(),
            limits: limits.clone(),
            updated_at: Utc::now(),
        })
        .await?;
    ctl.listener.changed(Change::Policies { tenant }).await;
    ctl.audit_detail(&admin, "limits.set", &scope, "ok", limits.clone());
    Ok(Json(json!({ "scope": scope, "limits": limits })))
}

/// `DELETE /api/v1/limits/{scope}`.
pub async fn delete(
    ctl: Ctl,
    admin: Admin,
    Path(scope): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = admin.0.tenant.clone();
    if !ctl.store.delete_scope_limits(&tenant, &scope).await? {
        return Err(ApiError::not_found(format!("no limits for {scope:?}")));
    }
    ctl.listener.changed(Change::Policies { tenant }).await;
    ctl.audit(&admin, "limits.clear", &scope, "ok");
    Ok(Json(json!({ "deleted": scope })))
}
