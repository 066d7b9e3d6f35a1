//! The velocity stage, last before routing: counts the request in the key's rolling window and,
//! when a threshold is crossed, suspends the key, records an incident, audits it and notifies.
//!
//! Counting happens after every other check, so refused requests do not count against a key.
//! The suspension write runs off the request path; the cached record is dropped at once so the
//! next request already sees the suspended key.

use crate::errors::GatewayError;
use crate::resolve::ResolvedKey;
use crate::state::GatewayState;
use latchkey_policy::locks::velocity::Spike;
use latchkey_vault::audit::AuditEvent;
use latchkey_vault::model::{Incident, KeyStatus};
use std::net::IpAddr;
use std::sync::Arc;

/// Receives alerts (a webhook, Slack, …). Implementations must not block: queue and return.
pub trait Notifier: Send + Sync {
    /// Sends one alert; `payload` is a JSON object without secrets.
    fn notify(&self, payload: serde_json::Value);
}

/// A notifier that drops alerts (no webhook configured).
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _payload: serde_json::Value) {}
}

/// Counts this request; refuses it with `key_suspended` when it crosses a threshold.
pub async fn observe(
    state: &Arc<GatewayState>,
    key: &ResolvedKey,
    client: IpAddr,
    now: i64,
) -> Result<(), GatewayError> {
    let Some(thresholds) = key.locks.velocity.as_ref() else {
        return Ok(());
    };
    let Some(spike) = state
        .velocity
        .observe_request(&key.id, thresholds, now, client)
    else {
        return Ok(());
    };
    state.metrics.key_suspended();
    suspend(state, key, &spike).await;
    let denial = spike.denial();
    Err(GatewayError::new(
        denial.status(),
        denial.code(),
        format!(
            "this proxy key was suspended: {} in {} s exceeded the limit of {}; an admin can reinstate it",
            describe(&spike),
            spike.window_secs,
            spike.limit
        ),
    ))
}

/// Counts the tokens a finished response used. A spike suspends the key for its next requests
/// (this one has already been answered).
pub async fn observe_tokens(state: &Arc<GatewayState>, key: &ResolvedKey, tokens: u64, now: i64) {
    let Some(thresholds) = key.locks.velocity.as_ref() else {
        return;
    };
    if thresholds.max_tokens.is_none() {
        return;
    }
    if let Some(spike) = state
        .velocity
        .observe_tokens(&key.id, thresholds, now, tokens)
    {
        state.metrics.key_suspended();
        suspend(state, key, &spike).await;
    }
}

/// Whether this key's token velocity is watched (so responses must be metered).
pub fn watches_tokens(key: &ResolvedKey) -> bool {
    key.locks
        .velocity
        .as_ref()
        .is_some_and(|t| t.max_tokens.is_some())
}

fn describe(spike: &Spike) -> String {
    use latchkey_policy::locks::velocity::SpikeKind::*;
    match spike.kind {
        Requests => format!("{} requests", spike.observed),
        Tokens => format!("{} tokens", spike.observed),
        DistinctIps => format!("{} distinct source IPs", spike.observed),
    }
}

async fn suspend(state: &Arc<GatewayState>, key: &ResolvedKey, spike: &Spike) {
    state.keys.invalidate(&key.hash).await;
    let reason = format!("velocity: {} in {} s", describe(spike), spike.window_secs);
    let detail = serde_json::json!({
        "key_id": key.id,
        "key_name": key.name,
        "kind": format!("{:?}", spike.kind).to_lowercase(),
        "observed": spike.observed,
        "limit": spike.limit,
        "window_secs": spike.window_secs,
    });
    let state = state.clone();
    let (tenant, id, name) = (key.tenant.clone(), key.id.clone(), key.name.clone());
    // Off the request path: the store write, the incident, the audit event and the alert.
    tokio::spawn(async move {
        match state
            .store
            .set_key_status(&tenant, &id, KeyStatus::Suspended, Some(&reason))
            .await
        {
            Ok(Some(rec)) => state.keys.invalidate(&rec.hash).await,
            Ok(None) => return,
            Err(e) => tracing::error!(error = %e, key = %id, "could not suspend key"),
        }
        state.velocity.forget(&id);
        let incident = Incident::new(&tenant, Some(&id), "velocity", detail.to_string());
        if let Err(e) = state.store.insert_incident(&incident).await {
            tracing::error!(error = %e, key = %id, "could not record incident");
        }
        let mut event = AuditEvent::now(&tenant, "system", "key.suspend", &id, "ok");
        event.detail = Some(detail.to_string());
        state.audit.record(event);
        tracing::warn!(key = %id, %reason, incident = %incident.id, "key auto-suspended");
        state.notifier.notify(serde_json::json!({
            "text": format!("Latchkey suspended proxy key {name} ({id}): {reason}. Incident {}.", incident.id),
            "event": "key.suspended",
            "tenant": tenant,
            "key_id": id,
            "incident_id": incident.id,
            "detail": detail,
        }));
    });
}
