//! Status, audit and the OpenAPI document.

use super::{Admin, ApiError, Ctl};
use crate::audit::verify_all;
use axum::extract::Query;
use axum::Json;
use latchkey_vault::model::{KeyStatus, ALL_TENANTS};
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/v1/status`.
pub async fn status(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let tenant = &admin.0.tenant;
    let store_ok = ctl.store.ping().await.is_ok();
    let credentials = ctl.store.list_credentials(tenant).await?.len();
    let keys = ctl.store.list_keys(tenant).await?;
    let count = |st: KeyStatus| keys.iter().filter(|k| k.status == st).count();
    let (active, suspended) = (count(KeyStatus::Active), count(KeyStatus::Suspended));
    let lockdowns = ctl
        .store
        .list_lockdowns()
        .await?
        .into_iter()
        .filter(|e| &e.tenant == tenant || e.tenant == ALL_TENANTS)
        .count();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": ctl.started.elapsed().as_secs(),
        "gateway_url": ctl.gateway_url,
        "store": { "kind": ctl.store_kind, "ok": store_ok },
        "tenant": tenant,
        "credentials": credentials,
        "keys": { "total": keys.len(), "active": active, "suspended": suspended },
        "lockdown": { "active": lockdowns > 0, "switches": lockdowns },
        "circuits": ctl.circuits.list(tenant),
    })))
}

/// Query of `GET /api/v1/audit`.
#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/audit?limit=N`: newest events first.
pub async fn audit_list(
    ctl: Ctl,
    admin: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = ctl.store.recent_audit(&admin.0.tenant, limit).await?;
    Ok(Json(json!({ "events": rows })))
}

/// `GET /api/v1/audit/verify`: walks every chain; names the first broken link.
pub async fn audit_verify(ctl: Ctl, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let chains = verify_all(ctl.store.as_ref()).await?;
    let ok = chains.iter().all(|c| c.ok);
    Ok(Json(json!({ "ok": ok, "chains": chains })))
}

/// `GET /api/v1/openapi.json` (no auth: it describes, it does not reveal).
pub async fn openapi() -> Json<Value> {
    // The document is part of the binary and parsed in a unit test.
    Json(serde_json::from_str(include_str!("../../openapi.json")).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_parses() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        assert_eq!(v["openapi"], "3.0.3");
        assert!(v["paths"]["/api/v1/keys"].is_object());
    }
}
