//! `/api/v1/policies`: policy documents, attached to keys and to the tenant as its default.
//!
//! - `GET policies`: every policy (without its document), with the keys using it and whether it
//!   is the tenant default.
//! - `POST policies`: `{"document": "<TOML>", "key"?: "key_…", "tenant_default"?: true}`.
//!   Compiles the document (a broken one is refused with the compiler's message, naming the rule
//!   and field), stores it under its `name` (replacing an older version), optionally attaches it,
//!   and makes the gateway use it from its next request.
//! - `GET policies/{name}`: one policy with its document.
//! - `DELETE policies/{name}`: refused (409) while a key or the tenant default uses it.
//! - `POST policies/{name}/attach` and `POST policies/detach`: `{"key": "key_…"}` or
//!   `{"tenant_default": true}`.

use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::Json;
use chrono::Utc;
use latchkey_policy::rules::{CompiledPolicy, Mode, Policy};
use latchkey_vault::model::{KeyStatus, PolicyRecord};
use latchkey_vault::notify::Change;
use serde::Deserialize;
use serde_json::{json, Value};

/// Body of `POST /api/v1/policies`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    document: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    tenant_default: bool,
}

/// Body of `POST /api/v1/policies/{name}/attach` and `POST /api/v1/policies/detach`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AttachBody {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    tenant_default: bool,
}

/// Largest accepted policy document.
const MAX_DOCUMENT: usize = 256 * 1024;

fn summary(rec: &PolicyRecord, keys: &[String], is_default: bool) -> Value {
    json!({
        "name": rec.name,
        "mode": rec.mode,
        "rules": rec.rules,
        "fingerprint": rec.fingerprint,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "updated_by": rec.updated_by,
        "keys": keys,
        "tenant_default": is_default,
    })
}

/// Key ids of the tenant that name `policy`.
async fn users(ctl: &Ctl, tenant: &str, policy: &str) -> Result<Vec<String>, ApiError> {
    Ok(ctl
        .store
        .list_keys(tenant)
        .await?
        .into_iter()
        .filter(|k| k.policy.as_deref() == Some(policy) && k.status != KeyStatus::Revoked)
        .map(|k| k.id)
        .collect())
}

async fn changed(ctl: &Ctl, tenant: &str) {
    ctl.listener
        .changed(Change::Policies {
            tenant: tenant.to_string(),
        })
        .await;
}

/// Points a key (or the tenant default) at `name` (`None`: detach).
async fn attach_to(
    ctl: &Ctl,
    tenant: &str,
    body: &AttachBody,
    name: Option<&str>,
) -> Result<&'static str, ApiError> {
    match (&body.key, body.tenant_default) {
        (Some(_), true) => Err(ApiError::invalid(
            "give either key or tenant_default, not both",
        )),
        (None, false) => Err(ApiError::invalid("give key or tenant_default")),
        (None, true) => {
            ctl.store.set_tenant_policy(tenant, name).await?;
            Ok("tenant_default")
        }
        (Some(id), false) => {
            let mut rec = ctl
                .store
                .get_key(tenant, id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))?;
            if rec.status == KeyStatus::Revoked {
                return Err(ApiError::conflict("a revoked key cannot be changed"));
            }
            rec.policy = name.map(str::to_string);
            rec.updated_at = Some(Utc::now());
            ctl.store.update_key(&rec).await?;
            ctl.listener
                .changed(Change::Key {
                    hash: rec.hash.clone(),
                })
                .await;
            Ok("key")
        }
    }
}

/// Compiles a document, or explains why it does not compile.
pub fn compile(document: &str) -> Result<CompiledPolicy, ApiError> {
    if document.len() > MAX_DOCUMENT {
        return Err(ApiError::invalid(format!(
            "document: larger than {} KiB",
            MAX_DOCUMENT / 1024
        )));
    }
    Policy::from_toml(document).map_err(|e| ApiError::invalid(format!("document: {e}")))
}

/// `GET /api/v1/policies`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let tenant = &admin.0.tenant;
    let default = ctl.store.tenant_policy(tenant).await?;
    let keys = ctl.store.list_keys(tenant).await?;
    let policies: Vec<Value> = ctl
        .store
        .list_policies(tenant)
        .await?
        .iter()
        .map(|p| {
            let users: Vec<String> = keys
                .iter()
                .filter(|k| {
                    k.policy.as_deref() == Some(p.name.as_str()) && k.status != KeyStatus::Revoked
                })
                .map(|k| k.id.clone())
                .collect();
            summary(p, &users, default.as_deref() == Some(p.name.as_str()))
        })
        .collect();
    Ok(Json(
        json!({ "policies": policies, "tenant_default": default }),
    ))
}

/// `POST /api/v1/policies`: apply (create or replace) a policy.
pub async fn apply(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<ApplyBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let tenant = admin.0.tenant.clone();
    let compiled = compile(&b.document)?;
    let now = Utc::now();
    let previous = ctl.store.get_policy(&tenant, compiled.name()).await?;
    let rec = PolicyRecord {
        tenant: tenant.clone(),
        name: compiled.name().to_string(),
        document: b.document,
        fingerprint: compiled.fingerprint().to_string(),
        mode: match compiled.mode() {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
        .into(),
        rules: compiled.rule_ids().count(),
        created_at: previous.as_ref().map_or(now, |p| p.created_at),
        updated_at: now,
        updated_by: format!("admin:{}", admin.0.id),
    };
    ctl.store.put_policy(&rec).await?;
    // The new version is live from here, even if attaching it below fails.
    changed(&ctl, &tenant).await;
    let attach = AttachBody {
        key: b.key,
        tenant_default: b.tenant_default,
    };
    let attached = if attach.key.is_some() || attach.tenant_default {
        Some(attach_to(&ctl, &tenant, &attach, Some(&rec.name)).await?)
    } else {
        None
    };
    changed(&ctl, &tenant).await;
    ctl.audit_detail(
        &admin,
        "policy.apply",
        &rec.name,
        "ok",
        json!({
            "fingerprint": rec.fingerprint,
            "mode": rec.mode,
            "rules": rec.rules,
            "replaced": previous.map(|p| p.fingerprint),
            "attached": attached.map(|a| match a {
                "key" => json!({ "key": attach.key }),
                _ => json!({ "tenant_default": true }),
            }),
        }),
    );
    let users = users(&ctl, &tenant, &rec.name).await?;
    let is_default = ctl.store.tenant_policy(&tenant).await?.as_deref() == Some(rec.name.as_str());
    Ok(Json(summary(&rec, &users, is_default)))
}

/// `GET /api/v1/policies/{name}`.
pub async fn get_one(
    ctl: Ctl,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = &admin.0.tenant;
    let rec = ctl
        .store
        .get_policy(tenant, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy {name:?}")))?;
    let users = users(&ctl, tenant, &name).await?;
    let is_default = ctl.store.tenant_policy(tenant).await?.as_deref() == Some(name.as_str());
    let mut v = summary(&rec, &users, is_default);
    v["document"] = json!(rec.document);
    Ok(Json(v))
}

/// `DELETE /api/v1/policies/{name}`.
pub async fn delete(
    ctl: Ctl,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = admin.0.tenant.clone();
    if !ctl.store.delete_policy(&tenant, &name).await? {
        return Err(ApiError::not_found(format!("no policy {name:?}")));
    }
    changed(&ctl, &tenant).await;
    ctl.audit(&admin, "policy.delete", &name, "ok");
    Ok(Json(json!({ "deleted": name })))
}

/// `POST /api/v1/policies/{name}/attach`.
pub async fn attach(
    ctl: Ctl,
    admin: Admin,
    Path(name): Path<String>,
    body: Result<Json<AttachBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let tenant = admin.0.tenant.clone();
    if ctl.store.get_policy(&tenant, &name).await?.is_none() {
        return Err(ApiError::not_found(format!("no policy {name:?}")));
    }
    let target = attach_to(&ctl, &tenant, &b, Some(&name)).await?;
    changed(&ctl, &tenant).await;
    let detail = match target {
        "key" => json!({ "key": b.key }),
        _ => json!({ "tenant_default": true }),
    };
    ctl.audit_detail(&admin, "policy.attach", &name, "ok", detail.clone());
    Ok(Json(json!({ "policy": name, "attached": detail })))
}

/// `POST /api/v1/policies/detach`.
pub async fn detach(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<AttachBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let tenant = admin.0.tenant.clone();
    let target = attach_to(&ctl, &tenant, &b, None).await?;
    changed(&ctl, &tenant).await;
    let detail = match target {
        "key" => json!({ "key": b.key }),
        _ => json!({ "tenant_default": true }),
    };
    let audit_target = match (target, &b.key) {
        ("key", Some(k)) => k.as_str(),
        _ => "tenant_default",
    };
    ctl.audit_detail(&admin, "policy.detach", audit_target, "ok", detail.clone());
    Ok(Json(json!({ "detached": detail })))
}
