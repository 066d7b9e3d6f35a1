//! `/api/v1/credentials`: write-only credential values, readable metadata.

use super::providers::merged;
use super::{Admin, ApiError, Ctl};
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use latchkey_vault::envelope::{self, Binding};
use latchkey_vault::keyfmt;
use latchkey_vault::model::{AuthScheme, Credential};
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

/// An AWS credential for a SigV4 provider: JSON `{"access_key_id", "secret_access_key",
/// "session_token"?, "region"?}` (the AWS CLI's `AccessKeyId`/`SecretAccessKey`/`SessionToken`
/// spelling too), stored compact. Errors name fields, never values.
fn aws_credential(value: &SecretString) -> Result<SecretString, ApiError> {
    let shape = "an AWS credential must be JSON {\"access_key_id\", \"secret_access_key\", \"session_token\"?, \"region\"?}";
    let v: Value = serde_json::from_str(value.expose()).map_err(|_| ApiError::invalid(shape))?;
    let field = |a: &str, b: &str| {
        v.get(a)
            .or_else(|| v.get(b))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (Some(id), Some(secret)) = (
        field("access_key_id", "AccessKeyId"),
        field("secret_access_key", "SecretAccessKey"),
    ) else {
        return Err(ApiError::invalid(shape));
    };
    if id.starts_with("lk_") {
        return Err(ApiError::invalid(
            "access_key_id is a Latchkey proxy key; store the real AWS credential",
        ));
    }
    let mut out = serde_json::Map::new();
    out.insert("access_key_id".into(), id.into());
    out.insert("secret_access_key".into(), secret.into());
    if let Some(t) = field("session_token", "SessionToken") {
        out.insert("session_token".into(), t.into());
    }
    if let Some(r) = field("region", "Region") {
        out.insert("region".into(), r.into());
    }
    Ok(SecretString::new(Value::Object(out).to_string()))
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
    let mut value = n.value.0;
    if value.expose().trim().is_empty() {
        return Err(ApiError::invalid("value is empty"));
    }
    if let AuthScheme::SigV4 { .. } = provider.auth {
        value = aws_credential(&value)?;
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
