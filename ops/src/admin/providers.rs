//! `/api/v1/providers`: the catalog merged with custom providers and overrides, with each
//! provider's capability flags.

use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use latchkey_vault::catalog;
use latchkey_vault::model::{AuthScheme, FailoverTarget, Provider, Rotation, Timeouts};
use latchkey_vault::notify::Change;
use latchkey_vault::store::Store;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The catalog merged with a tenant's rows (rows win), sorted by id.
pub async fn merged(store: &dyn Store, tenant: &str) -> Result<Vec<Provider>, ApiError> {
    let mut map: BTreeMap<String, Provider> = catalog::builtin()
        .iter()
        .map(|p| (p.id.clone(), p.clone()))
        .collect();
    for p in store.list_providers(tenant).await? {
        map.insert(p.id.clone(), p);
    }
    Ok(map.into_values().collect())
}

fn view(p: &Provider, credentials: usize) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "base_url": p.base_url,
        "auth": p.auth,
        "body_format": p.body_format,
        "builtin": p.builtin,
        "requires_base_url": p.requires_base_url,
        "sdk_base_path": p.sdk_base_path,
        "env_key": p.env_key,
        "env_base_url": p.env_base_url,
        "credentials": credentials,
        "openai_base_path": p.openai_base_path,
        "failover": p.failover,
        "timeouts": p.timeouts,
        "capabilities": {
            "vaulting": p.vaulting,
            "proxying": p.proxying,
            "auth_scheme": p.auth,
            "idempotency": p.idempotency,
            "rate_limit_headers": p.rate_limit_headers,
            "rotation": p.rotation,
            "openai_compatible": p.openai_base_path.is_some(),
        }
    })
}

async fn credential_counts(
    store: &dyn Store,
    tenant: &str,
) -> Result<BTreeMap<String, usize>, ApiError> {
    let mut counts = BTreeMap::new();
    for c in store.list_credentials(tenant).await? {
        *counts.entry(c.provider).or_insert(0) += 1;
    }
    Ok(counts)
}

/// `GET /api/v1/providers`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let tenant = &admin.0.tenant;
    let counts = credential_counts(ctl.store.as_ref(), tenant).await?;
    let items: Vec<Value> = merged(ctl.store.as_ref(), tenant)
        .await?
        .iter()
        .map(|p| view(p, counts.get(&p.id).copied().unwrap_or(0)))
        .collect();
    Ok(Json(json!({ "providers": items })))
}

async fn find(ctl: &Ctl, tenant: &str, id: &str) -> Result<Provider, ApiError> {
    merged(ctl.store.as_ref(), tenant)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no provider {id:?}")))
}

/// `GET /api/v1/providers/{id}`.
pub async fn get_one(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = find(&ctl, &admin.0.tenant, &id).await?;
    let counts = credential_counts(ctl.store.as_ref(), &admin.0.tenant).await?;
    Ok(Json(view(&p, counts.get(&id).copied().unwrap_or(0))))
}

/// Body of `POST /api/v1/providers` (a custom provider).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProvider {
    id: String,
    #[serde(default)]
    name: Option<String>,
    base_url: String,
    auth: AuthScheme,
    #[serde(default)]
    body_format: Option<String>,
    #[serde(default)]
    idempotency: bool,
    #[serde(default)]
    rate_limit_headers: Option<String>,
    #[serde(default)]
    env_key: Option<String>,
    #[serde(default)]
    env_base_url: Option<String>,
    #[serde(default)]
    failover: Vec<FailoverTarget>,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    openai_base_path: Option<String>,
}

/// Failover targets must name other providers of the tenant, at most 8 of them.
async fn check_failover(
    ctl: &Ctl,
    tenant: &str,
    id: &str,
    targets: &[FailoverTarget],
) -> Result<(), ApiError> {
    if targets.len() > 8 {
        return Err(ApiError::invalid("failover: at most 8 targets"));
    }
    let known = merged(ctl.store.as_ref(), tenant).await?;
    for t in targets {
        if t.provider == id {
            return Err(ApiError::invalid(
                "failover: a provider cannot fail over to itself",
            ));
        }
        if !known.iter().any(|k| k.id == t.provider) {
            return Err(ApiError::invalid(format!(
                "failover: unknown provider {:?}",
                t.provider
            )));
        }
        if t.weight == 0 {
            return Err(ApiError::invalid("failover: weight must be at least 1"));
        }
    }
    Ok(())
}

/// `POST /api/v1/providers`.
pub async fn create(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<NewProvider>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(n) = body?;
    let tenant = admin.0.tenant.clone();
    check_failover(&ctl, &tenant, &n.id, &n.failover).await?;
    if find(&ctl, &tenant, &n.id).await.is_ok() {
        return Err(ApiError::conflict(format!(
            "provider {:?} exists; use PATCH to change it",
            n.id
        )));
    }
    let p = Provider {
        name: n.name.unwrap_or_else(|| n.id.clone()),
        id: n.id,
        base_url: n.base_url,
        auth: n.auth,
        body_format: n.body_format.unwrap_or_else(|| "generic".into()),
        vaulting: true,
        proxying: true,
        rotation: Rotation::Manual,
        idempotency: n.idempotency,
        rate_limit_headers: n.rate_limit_headers.unwrap_or_else(|| "none".into()),
        sdk_base_path: String::new(),
        env_key: n.env_key,
        env_base_url: n.env_base_url,
        requires_base_url: false,
        builtin: false,
        failover: n.failover,
        timeouts: n.timeouts,
        openai_base_path: n.openai_base_path,
    };
    catalog::validate(&p, ctl.allow_private_upstreams)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    ctl.store.put_provider(&tenant, &p).await?;
    ctl.listener.changed(Change::Providers { tenant }).await;
    ctl.audit(&admin, "provider.create", &p.id, "ok");
    Ok((StatusCode::CREATED, Json(view(&p, 0))))
}

/// Body of `PATCH /api/v1/providers/{id}`: any subset of these fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderPatch {
    name: Option<String>,
    base_url: Option<String>,
    auth: Option<AuthScheme>,
    body_format: Option<String>,
    proxying: Option<bool>,
    idempotency: Option<bool>,
    rate_limit_headers: Option<String>,
    failover: Option<Vec<FailoverTarget>>,
    timeouts: Option<Timeouts>,
    openai_base_path: Option<String>,
}

/// `PATCH /api/v1/providers/{id}`.
pub async fn patch(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
    body: Result<Json<ProviderPatch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(patch) = body?;
    let tenant = admin.0.tenant.clone();
    let mut p = find(&ctl, &tenant, &id).await?;
    if let Some(v) = patch.name {
        p.name = v;
    }
    if let Some(v) = patch.base_url {
        p.base_url = v;
        p.requires_base_url = false;
    }
    if let Some(v) = patch.auth {
        p.auth = v;
    }
    if let Some(v) = patch.body_format {
        p.body_format = v;
    }
    if let Some(v) = patch.proxying {
        p.proxying = v;
    }
    if let Some(v) = patch.idempotency {
        p.idempotency = v;
    }
    if let Some(v) = patch.rate_limit_headers {
        p.rate_limit_headers = v;
    }
    if let Some(v) = patch.failover {
        check_failover(&ctl, &tenant, &id, &v).await?;
        p.failover = v;
    }
    if let Some(v) = patch.timeouts {
        p.timeouts = v;
    }
    if let Some(v) = patch.openai_base_path {
        p.openai_base_path = Some(v);
    }
    catalog::validate(&p, ctl.allow_private_upstreams)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    ctl.store.put_provider(&tenant, &p).await?;
    ctl.listener
        .changed(Change::Providers {
            tenant: tenant.clone(),
        })
        .await;
    ctl.audit(&admin, "provider.update", &id, "ok");
    let counts = credential_counts(ctl.store.as_ref(), &tenant).await?;
    Ok(Json(view(&p, counts.get(&id).copied().unwrap_or(0))))
}

/// `DELETE /api/v1/providers/{id}`: removes a custom provider, or resets a built-in one to the
/// catalog's definition.
pub async fn delete(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = admin.0.tenant.clone();
    let existed = ctl.store.delete_provider(&tenant, &id).await?;
    let builtin = catalog::builtin().iter().any(|p| p.id == id);
    if !existed && !builtin {
        return Err(ApiError::not_found(format!("no provider {id:?}")));
    }
    ctl.listener.changed(Change::Providers { tenant }).await;
    ctl.audit(&admin, "provider.delete", &id, "ok");
    Ok(Json(json!({
        "id": id,
        "deleted": existed && !builtin,
        "reset_to_catalog": builtin,
    })))
}
