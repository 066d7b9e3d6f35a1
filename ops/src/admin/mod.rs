//! The admin API, served on the admin listener under `/api/v1`.
//!
//! Every route but the OpenAPI document requires `Authorization: Bearer lk_adm_…`. Every
//! change is written to the audit chain with the admin token as actor, and pushed to the
//! gateway's caches through a [`ChangeListener`] before the response is sent.

mod circuits;
mod credentials;
mod error;
mod holds;
mod incidents;
mod keys;
mod limits;
mod lockdown;
mod models;
mod policies;
mod providers;
mod system;

pub use circuits::CircuitDesk;
pub use error::ApiError;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;
use latchkey_vault::audit::{AuditEvent, AuditSink};
use latchkey_vault::holds::HoldDesk;
use latchkey_vault::keyfmt::{self, KeyKind};
use latchkey_vault::model::AdminToken;
use latchkey_vault::notify::ChangeListener;
use latchkey_vault::rootkey::RootKey;
use latchkey_vault::store::Store;
use std::sync::Arc;
use std::time::Instant;

/// What the admin handlers share.
pub struct Control {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The root key (sealing credentials, hashing keys).
    pub root: RootKey,
    /// The audit sink.
    pub audit: Arc<dyn AuditSink>,
    /// Caches to notify on change.
    pub listener: Arc<dyn ChangeListener>,
    /// SSRF guard setting, applied to provider base URLs on write.
    pub allow_private_upstreams: bool,
    /// Public URL of the gateway listener (for `latchkey env`).
    pub gateway_url: String,
    /// Store kind for status (`sqlite`).
    pub store_kind: String,
    /// Process start.
    pub started: Instant,
    /// Where security-relevant admin actions are announced (lockdowns, suspensions).
    pub alerts: Option<crate::alerts::Webhook>,
    /// Requests parked for approval.
    pub holds: Arc<dyn HoldDesk>,
    /// The gateway's circuit breakers.
    pub circuits: Arc<dyn CircuitDesk>,
}

/// Admin actions announced on the alert webhook as well as audited.
pub const ALERTED_ACTIONS: [&str; 4] = [
    "lockdown.on",
    "lockdown.off",
    "key.suspend",
    "key.reinstate",
];

impl Control {
    /// Records an admin action.
    pub fn audit(&self, admin: &Admin, action: &str, target: &str, decision: &str) {
        self.audit.record(AuditEvent::now(
            &admin.0.tenant,
            &format!("admin:{}", admin.0.id),
            action,
            target,
            decision,
        ));
    }

    /// Records an admin action with non-secret detail (a JSON object).
    pub fn audit_detail(
        &self,
        admin: &Admin,
        action: &str,
        target: &str,
        decision: &str,
        detail: serde_json::Value,
    ) {
        let mut e = AuditEvent::now(
            &admin.0.tenant,
            &format!("admin:{}", admin.0.id),
            action,
            target,
            decision,
        );
        e.detail = Some(detail.to_string());
        self.audit.record(e);
        if let Some(hook) = self.alerts.clone() {
            if ALERTED_ACTIONS.contains(&action) && decision == "ok" {
                let event = serde_json::json!({
                    "text": format!("Latchkey: {action} on {target} by admin {} ({detail})", admin.0.id),
                    "event": action,
                    "tenant": admin.0.tenant,
                    "target": target,
                    "actor": format!("admin:{}", admin.0.id),
                    "detail": detail,
                });
                // Off the request: the admin's answer never waits for the webhook.
                tokio::spawn(async move { hook.notify(&event).await });
            }
        }
    }
}

type Ctl = State<Arc<Control>>;

/// An authenticated admin (extracted from the bearer token).
pub struct Admin(pub AdminToken);

impl FromRequestParts<Arc<Control>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctl: &Arc<Control>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("send 'Authorization: Bearer lk_adm_…'"))?;
        if keyfmt::parse(token) != Some(KeyKind::Admin) {
            return Err(ApiError::unauthorized("not an admin token"));
        }
        let hash = keyfmt::hash_key(&ctl.root, token);
        match ctl.store.admin_token_by_hash(&hash).await? {
            Some(t) => Ok(Admin(t)),
            None => Err(ApiError::unauthorized("unknown admin token")),
        }
    }
}

/// The admin router.
pub fn router(ctl: Arc<Control>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(system::openapi))
        .route("/api/v1/status", get(system::status))
        .route(
            "/api/v1/providers",
            get(providers::list).post(providers::create),
        )
        .route(
            "/api/v1/providers/{id}",
            get(providers::get_one)
                .patch(providers::patch)
                .delete(providers::delete),
        )
        .route(
            "/api/v1/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/api/v1/credentials/{id}",
            get(credentials::get_one).delete(credentials::delete),
        )
        .route("/api/v1/keys", get(keys::list).post(keys::create))
        .route("/api/v1/keys/{id}", get(keys::get_one).patch(keys::patch))
        .route("/api/v1/keys/{id}/revoke", post(keys::revoke))
        .route("/api/v1/keys/{id}/lock", post(keys::lock))
        .route("/api/v1/keys/{id}/unbind", post(keys::unbind))
        .route("/api/v1/keys/{id}/bind-device", post(keys::bind_device))
        .route("/api/v1/keys/{id}/suspend", post(keys::suspend))
        .route("/api/v1/keys/{id}/reinstate", post(keys::reinstate))
        .route("/api/v1/lockdown", get(lockdown::list).post(lockdown::on))
        .route("/api/v1/lockdown/lift", post(lockdown::lift))
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route(
            "/api/v1/policies",
            get(policies::list).post(policies::apply),
        )
        .route("/api/v1/policies/detach", post(policies::detach))
        .route(
            "/api/v1/policies/{name}",
            get(policies::get_one).delete(policies::delete),
        )
        .route("/api/v1/policies/{name}/attach", post(policies::attach))
        .route("/api/v1/models", get(models::list))
        .route(
            "/api/v1/models/{alias}",
            axum::routing::put(models::put).delete(models::delete),
        )
        .route("/api/v1/limits", get(limits::list))
        .route(
            "/api/v1/limits/{scope}",
            axum::routing::put(limits::put).delete(limits::delete),
        )
        .route("/api/v1/circuits", get(circuits::list))
        .route("/api/v1/circuits/{target}/reset", post(circuits::reset))
        .route("/api/v1/holds", get(holds::list))
        .route("/api/v1/holds/{id}/approve", post(holds::approve))
        .route("/api/v1/holds/{id}/reject", post(holds::reject))
        .route("/api/v1/audit", get(system::audit_list))
        .route("/api/v1/audit/verify", get(system::audit_verify))
        .fallback(|| async { ApiError::not_found("no such admin endpoint") })
        .with_state(ctl)
}
