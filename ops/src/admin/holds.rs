//! `/api/v1/holds`: requests a policy parked for human approval.
//!
//! - `GET holds`: pending holds of the admin's tenant, oldest first.
//! - `POST holds/{id}/approve`: the parked request goes to the provider (once).
//! - `POST holds/{id}/reject`, optional body `{"reason": "…"}`: the client gets `policy_blocked`.
//!
//! Deciding a hold that was already decided, timed out or abandoned by its client answers 404.

use super::{Admin, ApiError, Ctl};
use axum::body::Bytes;
use axum::extract::Path;
use axum::Json;
use latchkey_vault::holds::HoldError;
use serde::Deserialize;
use serde_json::{json, Value};

/// Body of `POST /api/v1/holds/{id}/reject`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    #[serde(default)]
    reason: Option<String>,
}

/// `GET /api/v1/holds`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "holds": ctl.holds.list(&admin.0.tenant) })))
}

fn decide(
    ctl: &Ctl,
    admin: &Admin,
    id: &str,
    approve: bool,
    reason: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    let by = format!("admin:{}", admin.0.id);
    let info = ctl
        .holds
        .decide(&admin.0.tenant, id, approve, &by, reason)
        .map_err(|e| match e {
            HoldError::NotFound => ApiError::not_found(format!(
                "no pending hold {id:?} (it may have been decided or timed out)"
            )),
            other => ApiError::conflict(other.to_string()),
        })?;
    let verdict = if approve { "approved" } else { "rejected" };
    ctl.audit_detail(
        admin,
        if approve {
            "hold.approve"
        } else {
            "hold.reject"
        },
        id,
        "ok",
        json!({ "key": info.key_id, "rule": info.rule, "reason": reason }),
    );
    Ok(Json(json!({ "id": id, "decision": verdict, "hold": info })))
}

/// `POST /api/v1/holds/{id}/approve`.
pub async fn approve(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(&ctl, &admin, &id, true, None)
}

/// `POST /api/v1/holds/{id}/reject`.
pub async fn reject(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: Reject = if body.iter().all(u8::is_ascii_whitespace) {
        Reject::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("body: {e}")))?
    };
    let reason = r.reason.map(|s| s.chars().take(500).collect::<String>());
    decide(&ctl, &admin, &id, false, reason.as_deref())
}
