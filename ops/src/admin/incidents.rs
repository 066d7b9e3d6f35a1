//! `/api/v1/incidents`: security incidents (e.g. a key auto-suspended after a velocity spike).

use super::{Admin, ApiError, Ctl};
use axum::extract::{Path, Query};
use axum::Json;
use latchkey_vault::model::Incident;
use serde::Deserialize;
use serde_json::{json, Value};

/// Query of `GET /api/v1/incidents`.
#[derive(Deserialize)]
pub struct IncidentQuery {
    limit: Option<i64>,
}

/// An incident as the API shows it: `detail` as the JSON it holds (text if it is not JSON).
pub(crate) fn incident_json(i: &Incident) -> Value {
    let mut v = json!(i);
    v["detail"] = serde_json::from_str(&i.detail).unwrap_or_else(|_| json!(i.detail));
    v["resolved"] = json!(i.resolved_at.is_some());
    v
}

/// `GET /api/v1/incidents?limit=N`: newest first.
pub async fn list(
    ctl: Ctl,
    admin: Admin,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let rows = ctl.store.list_incidents(&admin.0.tenant, limit).await?;
    let rows: Vec<Value> = rows.iter().map(incident_json).collect();
    Ok(Json(json!({ "incidents": rows })))
}

/// `POST /api/v1/incidents/{id}/resolve`: idempotent; keeps the first resolution time.
pub async fn resolve(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !ctl.store.resolve_incident(&admin.0.tenant, &id).await? {
        return Err(ApiError::not_found(format!("no incident {id:?}")));
    }
    ctl.audit(&admin, "incident.resolve", &id, "ok");
    Ok(Json(json!({ "id": id, "resolved": true })))
}
