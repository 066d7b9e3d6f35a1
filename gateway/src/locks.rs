//! The lock stage: lockdown, client IP (with auto-bind), geo, device, then — for keys that need
//! the body — request signature and model allow-list.
//!
//! The decisions are made by [`latchkey_policy::locks`]; this module only gathers the facts
//! (the client address, the geo lookup, headers, the buffered body) and performs the one write
//! a lock can cause: binding an auto-bind key to its first client IP, atomically in the store.

use crate::errors::GatewayError;
use crate::resolve::ResolvedKey;
use crate::state::GatewayState;
use http::HeaderMap;
use latchkey_policy::locks::geo::{GeoFacts, GeoLookup};
use latchkey_policy::locks::{
    self, client_ip, lockdown, model, signature, Denial, LockOutcome, RequestFacts,
};
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// The header a device-locked key's client sends its fingerprint in.
pub use latchkey_policy::locks::device::DEVICE_HEADER;

/// Largest body the gateway reads before contacting the provider, for keys whose locks need it
/// (signed requests; a model allow-list when the model is not in the path). Pingora 0.9 can
/// replay a body read this early only from its 64 KiB retry buffer.
pub const MAX_INSPECTED_BODY: usize = 64 * 1024;

/// Turns a lock refusal into the public error.
pub fn refusal(denial: Denial) -> GatewayError {
    let message = match denial {
        Denial::GeoUnavailable => {
            "this key is geo-locked but no geo database is configured (geoip_database)".to_string()
        }
        other => other.message().to_string(),
    };
    GatewayError::new(denial.status(), denial.code(), message)
}

/// The client's address: the socket peer, or the forwarded-for chain when the peer is a trusted
/// proxy (headers from anyone else are ignored, so spoofing them does not help).
pub fn client_address(state: &GatewayState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if state.options.trusted_proxies.is_empty() {
        return locks::ip::canonical(peer);
    }
    let joined = |name: &str| -> Option<String> {
        let parts: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    let xff = joined("x-forwarded-for");
    let fwd = joined("forwarded");
    client_ip::client_ip(
        peer,
        xff.as_deref(),
        fwd.as_deref(),
        &state.options.trusted_proxies,
    )
}

/// Lockdown: refuses every request of a locked-down scope.
pub fn check_lockdown(state: &GatewayState, tenant: &str, provider: &str) -> Result<(), Denial> {
    let current = state.lockdown.load();
    if current.is_clear() {
        return Ok(());
    }
    lockdown::check_lockdown(&current, tenant, provider)
}

fn geo_lookup(state: &GatewayState, key: &ResolvedKey, ip: IpAddr) -> GeoLookup {
    if key.locks.geo.is_empty() {
        return GeoLookup::NoDatabase;
    }
    let Some(db) = state.geo.as_ref() else {
        return GeoLookup::NoDatabase;
    };
    if key.locks.geo.cities.is_empty() {
        // Country-only lock: skip decoding (and allocating) the city name.
        return match db.lookup_country(ip) {
            Some(cc) => GeoLookup::Found(GeoFacts {
                country: Some(cc.as_str().to_string()),
                city: None,
            }),
            None => GeoLookup::NotFound,
        };
    }
    match db.lookup(ip) {
        crate::geo::GeoLookupResult::Found(loc) => GeoLookup::Found(GeoFacts {
            country: Some(loc.country.as_str().to_string()),
            city: loc.city,
        }),
        crate::geo::GeoLookupResult::NotFound => GeoLookup::NotFound,
    }
}

/// IP, geo and device locks. Binds an auto-bind key on its first request; when two first
/// requests race from different addresses, the store's compare-and-set picks one and the other
/// is refused.
pub async fn check_static(
    state: &GatewayState,
    key: &ResolvedKey,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<Option<IpAddr>, GatewayError> {
    if key.locks.ip == locks::ip::IpLock::None
        && key.locks.geo.is_empty()
        && key.locks.device_hash.is_none()
    {
        return Ok(None);
    }
    let facts = RequestFacts {
        client_ip: client,
        geo: geo_lookup(state, key, client),
        device_fingerprint: headers.get(DEVICE_HEADER).and_then(|v| v.to_str().ok()),
    };
    match locks::check_static(&key.locks, &facts).map_err(refusal)? {
        LockOutcome::Pass => Ok(None),
        LockOutcome::BindIp(ip) => {
            let wanted = ip.to_string();
            let winner = state
                .store
                .bind_key_ip(&key.tenant, &key.id, &wanted)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, key = %key.id, "binding a key to its first IP failed");
                    GatewayError::new(
                        503,
                        "store_unavailable",
                        "the key store is unreachable; try again shortly",
                    )
                })?;
            // Whoever won, the cached record is stale now.
            state.keys.invalidate(&key.hash).await;
            match winner {
                Some(w) if w == wanted => Ok(Some(ip)),
                _ => Err(refusal(Denial::IpLocked)),
            }
        }
    }
}

/// Does this key's lock set need the request body before the provider is contacted?
pub fn needs_body(key: &ResolvedKey, path: &str) -> bool {
    key.locks.signed || (!key.models.is_empty() && model::model_from_path(path).is_none())
}

/// Signature and model allow-list, given the whole body (`None` when it was not read because
/// no stage needs it) and the body parsed as JSON (`None` when it is empty or not JSON).
pub fn check_body(
    state: &GatewayState,
    key: &ResolvedKey,
    req: &RequestHeader,
    body: Option<&[u8]>,
    json: Option<&serde_json::Value>,
    now: i64,
) -> Result<(), GatewayError> {
    let path = req.uri.path();
    let path_and_query = req.uri.path_and_query().map_or(path, |p| p.as_str());
    let method = req.method.as_str();
    let headers = &req.headers;
    if let Some(secret) = key.signing.as_ref() {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let signed = signature::SignedHeaders {
            timestamp: header(signature::TIMESTAMP_HEADER),
            nonce: header(signature::NONCE_HEADER),
            signature: header(signature::SIGNATURE_HEADER),
        };
        let digest = signature::body_sha256_hex(body.unwrap_or_default());
        signature::verify_and_remember(
            secret.expose().as_bytes(),
            &signed,
            method,
            path_and_query,
            &digest,
            now,
            state.options.signature_window_secs,
            &key.id,
            state.nonces.as_ref(),
        )
        .map_err(refusal)?;
    }
    // A request that carries no body and names no model in its path (listing models, reading a
    // file) asks for no model, so the allow-list has nothing to refuse. One with a body that
    // names no model the gateway can read is refused: fail closed.
    let names_no_model =
        body.is_none_or(|b| b.is_empty()) && model::model_from_path(path).is_none();
    if !key.models.is_empty() && !names_no_model {
        let requested = model::requested_model(path, json);
        model::check_model(&key.models, requested.as_deref()).map_err(|d| {
            let mut e = refusal(d);
            if let Some(m) = requested {
                e.message = format!("this proxy key may not use model {m:?}");
            }
            e
        })?;
    }
    Ok(())
}
