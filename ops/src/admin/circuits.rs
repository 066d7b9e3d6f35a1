//! `/api/v1/circuits`: the circuit breakers of the admin's tenant, one per provider target.
//!
//! - `GET circuits`: `{"circuits": [{"target", "state": "closed"|"open"|"half_open",
//!   "requests", "failures", "rate_limited", "failure_rate", "opened_at", "retry_after_ms",
//!   "probes_in_flight", "reopens"}]}` (a target appears once it has carried a request).
//! - `POST circuits/{target}/reset`: closes a circuit by hand (the provider is known to be back).

use super::{Admin, ApiError, Ctl};
use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};

/// What the admin API needs of the gateway's circuit breakers.
pub trait CircuitDesk: Send + Sync {
    /// The tenant's circuits as JSON objects (see the module docs).
    fn list(&self, tenant: &str) -> Vec<Value>;
    /// Closes one circuit; false when it does not exist.
    fn reset(&self, tenant: &str, target: &str) -> bool;
}

/// `GET /api/v1/circuits`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "circuits": ctl.circuits.list(&admin.0.tenant) }),
    ))
}

/// `POST /api/v1/circuits/{target}/reset`.
pub async fn reset(
    ctl: Ctl,
    admin: Admin,
    Path(target): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !ctl.circuits.reset(&admin.0.tenant, &target) {
        return Err(ApiError::not_found(format!(
            "no circuit for {target:?} (it has carried no request yet)"
        )));
    }
    ctl.audit(&admin, "circuit.reset", &target, "ok");
    Ok(Json(json!({ "target": target, "state": "closed" })))
}
