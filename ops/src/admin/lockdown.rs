//! `/api/v1/lockdown`: the emergency kill switch. While a switch is on, the gateway refuses every
//! request it covers with `lockdown` (503) before any secret is used; it stays on until lifted.
//!
//! Body of `POST lockdown` and `POST lockdown/lift`:
//! `{"scope": "global" | "tenant" | "provider", "provider"?: "openai", "reason"?: "…"}`.
//! - `global`: every tenant (with `provider`: that provider for every tenant).
//! - `tenant`: the admin's tenant, every provider (the default without `provider`).
//! - `provider`: one provider of the admin's tenant (the default with `provider`).
//!
//! Lifting removes exactly the switch named by the same body; lifting one that is not on
//! answers 200 with `"lifted": false`.

use super::providers::merged;
use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::Json;
use chrono::Utc;
use latchkey_vault::model::{LockdownEntry, ALL_TENANTS};
use latchkey_vault::notify::Change;
use serde::Deserialize;
use serde_json::{json, Value};

/// Body of `POST /api/v1/lockdown` and `POST /api/v1/lockdown/lift`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LockdownBody {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// The `(tenant, provider)` a body names, and a label for the audit target.
async fn resolve(
    ctl: &Ctl,
    admin: &Admin,
    b: &LockdownBody,
) -> Result<(String, Option<String>, String), ApiError> {
    let tenant = admin.0.tenant.clone();
    let provider = b
        .provider
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    if let Some(p) = &provider {
        let known = merged(ctl.store.as_ref(), &tenant).await?;
        if !known.iter().any(|k| &k.id == p) {
            return Err(ApiError::invalid(format!(
                "provider: unknown provider {p:?}"
            )));
        }
    }
    let scope = b.scope.as_deref().unwrap_or(if provider.is_some() {
        "provider"
    } else {
        "tenant"
    });
    match (scope, provider) {
        ("global", None) => Ok((ALL_TENANTS.into(), None, "global".into())),
        ("global", Some(p)) => Ok((ALL_TENANTS.into(), Some(p.clone()), format!("*/{p}"))),
        ("tenant", None) => Ok((tenant.clone(), None, format!("tenant:{tenant}"))),
        ("tenant", Some(_)) => Err(ApiError::invalid(
            "provider: not allowed with scope \"tenant\" (use scope \"provider\")",
        )),
        ("provider", Some(p)) => Ok((tenant.clone(), Some(p.clone()), format!("{tenant}/{p}"))),
        ("provider", None) => Err(ApiError::invalid(
            "provider: required with scope \"provider\"",
        )),
        (other, _) => Err(ApiError::invalid(format!(
            "scope: must be \"global\", \"tenant\" or \"provider\", not {:?}",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// The switches that affect the admin's tenant (its own and the every-tenant ones).
async fn in_force(ctl: &Ctl, tenant: &str) -> Result<Vec<LockdownEntry>, ApiError> {
    Ok(ctl
        .store
        .list_lockdowns()
        .await?
        .into_iter()
        .filter(|e| e.tenant == tenant || e.tenant == ALL_TENANTS)
        .collect())
}

fn scope_of(e: &LockdownEntry) -> &'static str {
    match (e.tenant.as_str(), &e.provider) {
        (ALL_TENANTS, _) => "global",
        (_, None) => "tenant",
        (_, Some(_)) => "provider",
    }
}

fn entry_json(e: &LockdownEntry) -> Value {
    let mut v = json!(e);
    v["scope"] = json!(scope_of(e));
    v
}

fn status_json(entries: &[LockdownEntry]) -> Value {
    json!({
        "active": !entries.is_empty(),
        "lockdowns": entries.iter().map(entry_json).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/lockdown`: the switches in force for the admin's tenant.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    Ok(Json(status_json(&in_force(&ctl, &admin.0.tenant).await?)))
}

/// `POST /api/v1/lockdown`: turns a switch on (idempotent).
pub async fn on(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<LockdownBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let (tenant, provider, target) = resolve(&ctl, &admin, &b).await?;
    let reason = match b.reason.map(|r| r.trim().to_string()) {
        Some(r) if r.len() > 512 || r.chars().any(char::is_control) => {
            return Err(ApiError::invalid(
                "reason: at most 512 bytes without control characters",
            ))
        }
        Some(r) if r.is_empty() => None,
        other => other,
    };
    let entry = LockdownEntry {
        tenant,
        provider,
        reason: reason.clone(),
        created_at: Utc::now(),
        created_by: format!("admin:{}", admin.0.id),
    };
    ctl.store.set_lockdown(&entry).await?;
    ctl.listener.changed(Change::Lockdown).await;
    ctl.audit_detail(
        &admin,
        "lockdown.on",
        &target,
        "ok",
        json!({ "scope": scope_of(&entry), "provider": entry.provider, "reason": reason }),
    );
    let entries = in_force(&ctl, &admin.0.tenant).await?;
    let mut v = status_json(&entries);
    v["lockdown"] = entries
        .iter()
        .find(|e| e.tenant == entry.tenant && e.provider == entry.provider)
        .map(entry_json)
        .unwrap_or_else(|| entry_json(&entry));
    Ok(Json(v))
}

/// `POST /api/v1/lockdown/lift`: turns the switch named by the body off.
pub async fn lift(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<LockdownBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let (tenant, provider, target) = resolve(&ctl, &admin, &b).await?;
    let lifted = ctl
        .store
        .clear_lockdown(&tenant, provider.as_deref())
        .await?;
    ctl.listener.changed(Change::Lockdown).await;
    ctl.audit_detail(
        &admin,
        "lockdown.off",
        &target,
        if lifted { "ok" } else { "noop" },
        json!({ "provider": provider, "lifted": lifted }),
    );
    let mut v = status_json(&in_force(&ctl, &admin.0.tenant).await?);
    v["lifted"] = json!(lifted);
    Ok(Json(v))
}
