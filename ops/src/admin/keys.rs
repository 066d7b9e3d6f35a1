//! `/api/v1/keys`: proxy keys, shown once at creation and stored only as hashes.

use super::providers::merged;
use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use latchkey_vault::keyfmt::{self, KeyKind};
use latchkey_vault::model::{KeyRecord, KeyStatus};
use latchkey_vault::notify::Change;
use serde::Deserialize;
use serde_json::{json, Value};

/// Body of `POST /api/v1/keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    providers: Vec<String>,
    #[serde(default)]
    workload: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

async fn check_providers(ctl: &Ctl, tenant: &str, providers: &[String]) -> Result<(), ApiError> {
    if providers.is_empty() {
        return Err(ApiError::invalid(
            "providers must name at least one provider (or \"*\" for any)",
        ));
    }
    let known = merged(ctl.store.as_ref(), tenant).await?;
    for p in providers {
        if p != "*" && !known.iter().any(|k| &k.id == p) {
            return Err(ApiError::invalid(format!("unknown provider {p:?}")));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::invalid("name must be 1-128 characters"));
    }
    Ok(())
}

/// `POST /api/v1/keys`: returns the key once, in `key`.
pub async fn create(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(n) = body?;
    let tenant = admin.0.tenant.clone();
    check_name(&n.name)?;
    check_providers(&ctl, &tenant, &n.providers).await?;
    if matches!(n.expires_at, Some(t) if t <= Utc::now()) {
        return Err(ApiError::invalid("expires_at is in the past"));
    }
    let key = keyfmt::generate(KeyKind::Proxy);
    let rec = KeyRecord {
        id: keyfmt::new_id("key"),
        tenant,
        name: n.name,
        hash: keyfmt::hash_key(&ctl.root, key.expose()),
        prefix: keyfmt::display_prefix(key.expose()),
        providers: n.providers,
        workload: n.workload,
        models: n.models,
        expires_at: n.expires_at,
        status: KeyStatus::Active,
        created_at: Utc::now(),
        revoked_at: None,
    };
    ctl.store.insert_key(&rec).await?;
    // A guess of this exact key may sit in the negative cache; clear it.
    ctl.listener
        .changed(Change::Key {
            hash: rec.hash.clone(),
        })
        .await;
    ctl.audit(&admin, "key.create", &rec.id, "ok");
    let mut v = json!(rec);
    v["key"] = json!(key.expose());
    Ok((StatusCode::CREATED, Json(v)))
}

/// `GET /api/v1/keys`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let keys = ctl.store.list_keys(&admin.0.tenant).await?;
    Ok(Json(json!({ "keys": keys })))
}

async fn load(ctl: &Ctl, tenant: &str, id: &str) -> Result<KeyRecord, ApiError> {
    ctl.store
        .get_key(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))
}

/// `GET /api/v1/keys/{id}`.
pub async fn get_one(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(load(&ctl, &admin.0.tenant, &id).await?)))
}

/// Body of `PATCH /api/v1/keys/{id}`. `workload` and `expires_at` accept `null` to clear.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    name: Option<String>,
    providers: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    workload: Option<Option<String>>,
    models: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    expires_at: Option<Option<DateTime<Utc>>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// `PATCH /api/v1/keys/{id}`.
pub async fn patch(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
    body: Result<Json<KeyPatch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(p) = body?;
    let tenant = admin.0.tenant.clone();
    let mut rec = load(&ctl, &tenant, &id).await?;
    if rec.status == KeyStatus::Revoked {
        return Err(ApiError::conflict("a revoked key cannot be changed"));
    }
    if let Some(name) = p.name {
        check_name(&name)?;
        rec.name = name;
    }
    if let Some(providers) = p.providers {
        check_providers(&ctl, &tenant, &providers).await?;
        rec.providers = providers;
    }
    if let Some(w) = p.workload {
        rec.workload = w;
    }
    if let Some(m) = p.models {
        rec.models = m;
    }
    if let Some(e) = p.expires_at {
        rec.expires_at = e;
    }
    ctl.store.update_key(&rec).await?;
    ctl.listener
        .changed(Change::Key {
            hash: rec.hash.clone(),
        })
        .await;
    ctl.audit(&admin, "key.update", &rec.id, "ok");
    Ok(Json(json!(rec)))
}

/// `POST /api/v1/keys/{id}/revoke`: takes effect on the very next request.
pub async fn revoke(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut rec = load(&ctl, &admin.0.tenant, &id).await?;
    if rec.status != KeyStatus::Revoked {
        rec.status = KeyStatus::Revoked;
        rec.revoked_at = Some(Utc::now());
        ctl.store.update_key(&rec).await?;
    }
    ctl.listener
        .changed(Change::Key {
            hash: rec.hash.clone(),
        })
        .await;
    ctl.audit(&admin, "key.revoke", &rec.id, "ok");
    Ok(Json(json!(rec)))
}
