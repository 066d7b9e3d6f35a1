//! `/api/v1/credentials`: write-only credential values, readable metadata.

use super::providers::merged;
use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use latchkey_vault::envelope::{self, Binding};
use latchkey_vault::keyfmt;
use latchkey_vault::model::Credential;
use latchkey_vault::notify::Change;
use latchkey_vault::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

const MAX_VALUE_BYTES: usize = 16 * 1024;

/// Body of `POST /api/v1/credentials`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    provider: String,
    value: SecretValue,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    workloads: Vec<String>,
}

/// The credential value as received: zeroized on drop, never printed.
pub struct SecretValue(SecretString);

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretValue(SecretString::new(s)))
    }
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// `POST /api/v1/credentials`.
pub async fn create(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<NewCredential>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // The parse error text could quote a value, so it is not echoed here.
    let Json(n) = body.map_err(|_| {
        ApiError::invalid(
            "body must be JSON {\"provider\": string, \"value\": string, \"label\"?: string, \"workloads\"?: [string]}",
        )
    })?;
    let tenant = admin.0.tenant.clone();
    let provider = merged(ctl.store.as_ref(), &tenant)
        .await?
        .into_iter()
        .find(|p| p.id == n.provider)
        .ok_or_else(|| ApiError::not_found(format!("no provider {:?}", n.provider)))?;
    if !provider.vaulting {
        return Err(ApiError::invalid(format!(
            "provider {:?} does not support vaulting",
            provider.id
        )));
    }
    let value = n.value.0;
    if value.expose().trim().is_empty() {
        return Err(ApiError::invalid("value is empty"));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::invalid("value is longer than 16 KiB"));
    }
    if value.expose().chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "value contains control characters (a trailing newline from `echo` is trimmed by the CLI)",
        ));
    }
    for w in &n.workloads {
        if !valid_label(w) {
            return Err(ApiError::invalid(format!(
                "workload label {w:?} must be 1-64 chars of a-z, 0-9, '-', '_', '.', ':'"
            )));
        }
    }
    let label = n.label.unwrap_or_else(|| provider.id.clone());
    if label.len() > 128 {
        return Err(ApiError::invalid("label is longer than 128 characters"));
    }
    let cred = Credential {
        id: keyfmt::new_id("cred"),
        tenant: tenant.clone(),
        provider: provider.id.clone(),
        label,
        workloads: n.workloads,
        version: 1,
        created_at: chrono::Utc::now(),
    };
    let sealed = envelope::seal(
        &ctl.root,
        &Binding {
            tenant: &cred.tenant,
            credential: &cred.id,
            version: cred.version,
        },
        &value,
    );
    drop(value);
    ctl.store.insert_credential(&cred, &sealed).await?;
    ctl.listener
        .changed(Change::Credentials {
            tenant,
            provider: cred.provider.clone(),
        })
        .await;
    ctl.audit(&admin, "credential.create", &cred.id, "ok");
    Ok((StatusCode::CREATED, Json(json!(cred))))
}

/// `GET /api/v1/credentials`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let creds = ctl.store.list_credentials(&admin.0.tenant).await?;
    Ok(Json(json!({ "credentials": creds })))
}

/// `GET /api/v1/credentials/{id}`.
pub async fn get_one(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = ctl
        .store
        .get_credential(&admin.0.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no credential {id:?}")))?;
    Ok(Json(json!(c)))
}

/// `DELETE /api/v1/credentials/{id}`: destroys the ciphertext; requests stop using it at once.
pub async fn delete(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = admin.0.tenant.clone();
    let c = ctl
        .store
        .get_credential(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no credential {id:?}")))?;
    ctl.store.delete_credential(&tenant, &id).await?;
    ctl.listener
        .changed(Change::Credentials {
            tenant,
            provider: c.provider,
        })
        .await;
    ctl.audit(&admin, "credential.delete", &id, "ok");
    Ok(Json(json!({ "id": id, "deleted": true })))
}
