//! `/api/v1/keys`: proxy keys, shown once at creation and stored only as hashes, with their
//! locks (IP / CIDR / auto-bind, geo, device, signed requests, velocity) and status
//! (active, suspended, revoked).
//!
//! Lock fields of `POST keys` and `PATCH keys/{id}` (absent: unchanged):
//! - `ip`: `"auto"` (bind to the first client address), `"none"`, or `"CIDR[,CIDR…]"`. Changing
//!   the IP mode clears the auto-bind address.
//! - `countries` (ISO alpha-2) and `cities`: `[]` clears.
//! - `device_fingerprint`: the raw fingerprint the client will send in `x-device-fingerprint`;
//!   only its hash is stored (`locks.device_hash`). `clear_device: true` removes the lock.
//! - `signed`: `true` issues a new signing secret (rotating any previous one) and returns it once
//!   in `signing_secret`; `false` removes it. Only the sealed secret is stored.
//! - `velocity`: `{window_secs?, max_requests?, max_tokens?, max_distinct_ips?}` or `null`.

use super::limits::check_limits;
use super::providers::merged;
use super::{Admin, ApiError, Ctl};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use latchkey_policy::limits::Limits;
use latchkey_policy::locks::device::fingerprint_hash;
use latchkey_policy::locks::geo::GeoLock;
use latchkey_policy::locks::ip::{parse_ip_spec, IpLock};
use latchkey_policy::locks::velocity::VelocityThresholds;
use latchkey_policy::locks::KeyLocks;
use latchkey_vault::envelope::{self, Binding};
use latchkey_vault::keyfmt::{self, KeyKind};
use latchkey_vault::model::{KeyRecord, KeyStatus};
use latchkey_vault::notify::Change;
use latchkey_vault::SecretString;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;

/// Prefix of per-key signing secrets, so a leak scanner can recognise one.
pub const SIGNING_SECRET_PREFIX: &str = "lksig_";
/// Version of the envelope binding a signing secret is sealed under
/// (`Binding { tenant, credential: <key id>, version: 0 }`).
pub const SIGNING_BINDING_VERSION: i64 = 0;

const MAX_FINGERPRINT_BYTES: usize = 1024;
const MAX_REASON_BYTES: usize = 512;
const MAX_MODELS: usize = 256;
const MAX_CITIES: usize = 256;
const MAX_COUNTRIES: usize = 256;

/// `velocity` in a key body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityBody {
    #[serde(default)]
    window_secs: Option<u64>,
    #[serde(default)]
    max_requests: Option<u64>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_distinct_ips: Option<u64>,
}

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
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    countries: Option<Vec<String>>,
    #[serde(default)]
    cities: Option<Vec<String>>,
    #[serde(default)]
    device_fingerprint: Option<String>,
    #[serde(default)]
    signed: bool,
    #[serde(default)]
    velocity: Option<VelocityBody>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    limits: Option<Limits>,
}

/// Body of `PATCH /api/v1/keys/{id}`. `workload`, `expires_at` and `velocity` accept `null` to
/// clear.
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
    ip: Option<String>,
    countries: Option<Vec<String>>,
    cities: Option<Vec<String>>,
    device_fingerprint: Option<String>,
    #[serde(default)]
    clear_device: bool,
    signed: Option<bool>,
    #[serde(default, with = "double_option")]
    velocity: Option<Option<VelocityBody>>,
    #[serde(default, with = "double_option")]
    policy: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    limits: Option<Option<Limits>>,
}

/// A policy a key is about to name must exist.
async fn check_policy(ctl: &Ctl, tenant: &str, name: &str) -> Result<(), ApiError> {
    if ctl.store.get_policy(tenant, name).await?.is_none() {
        return Err(ApiError::invalid(format!(
            "policy: no policy {name:?} (apply it first: latchkey policy apply FILE)"
        )));
    }
    Ok(())
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Lock changes requested by a body, before they are applied.
#[derive(Default)]
struct LockInput {
    ip: Option<String>,
    countries: Option<Vec<String>>,
    cities: Option<Vec<String>>,
    device_fingerprint: Option<String>,
    clear_device: bool,
    velocity: Option<Option<VelocityBody>>,
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

fn check_models(models: &[String]) -> Result<(), ApiError> {
    if models.len() > MAX_MODELS {
        return Err(ApiError::invalid(format!(
            "models: at most {MAX_MODELS} entries"
        )));
    }
    if models
        .iter()
        .any(|m| m.trim().is_empty() || m.len() > 256 || m.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "models: entries must be 1-256 characters without control characters",
        ));
    }
    Ok(())
}

/// Validates a raw device fingerprint; returns it trimmed.
fn check_fingerprint(field: &str, fp: &str) -> Result<String, ApiError> {
    let fp = fp.trim();
    if fp.is_empty() || fp.len() > MAX_FINGERPRINT_BYTES || fp.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field}: must be 1-{MAX_FINGERPRINT_BYTES} bytes without control characters"
        )));
    }
    Ok(fp.to_string())
}

fn check_reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    match reason.map(|r| r.trim().to_string()) {
        Some(r) if r.len() > MAX_REASON_BYTES || r.chars().any(char::is_control) => {
            Err(ApiError::invalid(format!(
                "reason: at most {MAX_REASON_BYTES} bytes without control characters"
            )))
        }
        Some(r) if r.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn velocity(v: VelocityBody) -> Result<VelocityThresholds, ApiError> {
    let window_secs = v.window_secs.unwrap_or(60);
    if !(1..=86_400).contains(&window_secs) {
        return Err(ApiError::invalid(
            "velocity.window_secs: must be 1-86400 seconds",
        ));
    }
    for (name, limit) in [
        ("max_requests", v.max_requests),
        ("max_tokens", v.max_tokens),
        ("max_distinct_ips", v.max_distinct_ips),
    ] {
        if limit == Some(0) {
            return Err(ApiError::invalid(format!(
                "velocity.{name}: must be at least 1"
            )));
        }
    }
    if v.max_requests.is_none() && v.max_tokens.is_none() && v.max_distinct_ips.is_none() {
        return Err(ApiError::invalid(
            "velocity: set at least one of max_requests, max_tokens, max_distinct_ips (or send null to turn velocity off)",
        ));
    }
    Ok(VelocityThresholds {
        window_secs,
        max_requests: v.max_requests,
        max_tokens: v.max_tokens,
        max_distinct_ips: v.max_distinct_ips,
    })
}

/// The key's locks as stored (`null` = none).
pub(crate) fn locks_of(rec: &KeyRecord) -> Result<KeyLocks, ApiError> {
    if rec.locks.is_null() {
        return Ok(KeyLocks::default());
    }
    serde_json::from_value(rec.locks.clone()).map_err(|e| {
        tracing::error!(key = %rec.id, error = %e, "stored key locks do not parse");
        ApiError::internal(format!("the stored locks of key {} do not parse", rec.id))
    })
}

fn store_locks(rec: &mut KeyRecord, locks: &KeyLocks) {
    rec.locks = if locks.is_unlocked() {
        Value::Null
    } else {
        // KeyLocks holds only strings, numbers, bools and lists: serializing cannot fail.
        serde_json::to_value(locks).unwrap_or(Value::Null)
    };
}

/// Applies lock fields; returns the names of the fields that were given. The caller clears the
/// auto-bind address when the IP mode changed.
fn apply_locks(locks: &mut KeyLocks, input: LockInput) -> Result<Vec<&'static str>, ApiError> {
    let mut fields = Vec::new();
    if let Some(spec) = input.ip {
        let mut ip = parse_ip_spec(&spec).map_err(|e| ApiError::invalid(format!("ip: {e}")))?;
        // The bound address lives in the key's bound_ip, never inside the stored lock.
        if let IpLock::AutoBind { bound } = &mut ip {
            *bound = None;
        }
        locks.ip = ip;
        fields.push("ip");
    }
    if input.countries.is_some() || input.cities.is_some() {
        let countries = input
            .countries
            .unwrap_or_else(|| locks.geo.countries.clone());
        let cities = input.cities.unwrap_or_else(|| locks.geo.cities.clone());
        if countries.len() > MAX_COUNTRIES {
            return Err(ApiError::invalid(format!(
                "countries: at most {MAX_COUNTRIES} entries"
            )));
        }
        if cities.len() > MAX_CITIES
            || cities
                .iter()
                .any(|c| c.len() > 128 || c.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(format!(
                "cities: at most {MAX_CITIES} names of up to 128 characters"
            )));
        }
        // Validate countries alone first so the error names the right field.
        GeoLock::new(&countries, &[]).map_err(|e| ApiError::invalid(format!("countries: {e}")))?;
        locks.geo = GeoLock::new(&countries, &cities)
            .map_err(|e| ApiError::invalid(format!("cities: {e}")))?;
        fields.push("geo");
    }
    match (input.device_fingerprint, input.clear_device) {
        (Some(_), true) => {
            return Err(ApiError::invalid(
                "device_fingerprint: cannot be combined with clear_device",
            ))
        }
        (Some(fp), false) => {
            let fp = check_fingerprint("device_fingerprint", &fp)?;
            locks.device_hash = Some(fingerprint_hash(&fp));
            fields.push("device");
        }
        (None, true) => {
            locks.device_hash = None;
            fields.push("device");
        }
        (None, false) => {}
    }
    if let Some(v) = input.velocity {
        locks.velocity = v.map(velocity).transpose()?;
        fields.push("velocity");
    }
    Ok(fields)
}

/// A fresh signing secret: `lksig_` + 64 hex characters (32 random bytes). Clients use the
/// whole string's bytes as the HMAC key.
fn new_signing_secret() -> SecretString {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    SecretString::new(format!(
        "{SIGNING_SECRET_PREFIX}{}",
        keyfmt::hex(raw.as_ref())
    ))
}

/// Generates a signing secret for `rec`, stores its sealed form on the record and returns the
/// plaintext (to be shown once).
fn issue_signing_secret(ctl: &Ctl, rec: &mut KeyRecord, locks: &mut KeyLocks) -> SecretString {
    let secret = new_signing_secret();
    rec.signing = Some(envelope::seal(
        &ctl.root,
        &Binding {
            tenant: &rec.tenant,
            credential: &rec.id,
            version: SIGNING_BINDING_VERSION,
        },
        &secret,
    ));
    locks.signed = true;
    secret
}

/// The key as the admin API shows it: never the hash or the signing secret; `locks` always as
/// a full `KeyLocks` object; `signed` tells whether a signing secret exists.
pub(crate) fn key_json(rec: &KeyRecord) -> Value {
    let mut v = json!(rec);
    v["locks"] = match locks_of(rec) {
        Ok(l) => json!(l),
        Err(_) => rec.locks.clone(),
    };
    v["signed"] = json!(rec.signing.is_some());
    v
}

fn same_ip_mode(a: &IpLock, b: &IpLock) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// `POST /api/v1/keys`: returns the key once, in `key` (and the signing secret once, in
/// `signing_secret`, for a signed key).
pub async fn create(
    ctl: Ctl,
    admin: Admin,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(n) = body?;
    let tenant = admin.0.tenant.clone();
    check_name(&n.name)?;
    check_providers(&ctl, &tenant, &n.providers).await?;
    check_models(&n.models)?;
    if matches!(n.expires_at, Some(t) if t <= Utc::now()) {
        return Err(ApiError::invalid("expires_at is in the past"));
    }
    let mut locks = KeyLocks::default();
    let mut fields = apply_locks(
        &mut locks,
        LockInput {
            ip: n.ip,
            countries: n.countries,
            cities: n.cities,
            device_fingerprint: n.device_fingerprint,
            clear_device: false,
            velocity: n.velocity.map(Some),
        },
    )?;
    if let Some(p) = &n.policy {
        check_policy(&ctl, &tenant, p).await?;
        fields.push("policy");
    }
    let limits = match &n.limits {
        Some(l) => {
            fields.push("limits");
            check_limits(l)?
        }
        None => Value::Null,
    };
    let key = keyfmt::generate(KeyKind::Proxy);
    let now = Utc::now();
    let mut rec = KeyRecord {
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
        created_at: now,
        revoked_at: None,
        locks: Value::Null,
        bound_ip: None,
        signing: None,
        suspended_reason: None,
        updated_at: None,
        policy: n.policy,
        limits,
    };
    let secret = if n.signed {
        fields.push("signed");
        Some(issue_signing_secret(&ctl, &mut rec, &mut locks))
    } else {
        None
    };
    store_locks(&mut rec, &locks);
    ctl.store.insert_key(&rec).await?;
    // A guess of this exact key may sit in the negative cache; clear it.
    ctl.listener
        .changed(Change::Key {
            hash: rec.hash.clone(),
        })
        .await;
    ctl.audit_detail(
        &admin,
        "key.create",
        &rec.id,
        "ok",
        json!({ "locks": fields }),
    );
    let mut v = key_json(&rec);
    v["key"] = json!(key.expose());
    if let Some(s) = &secret {
        v["signing_secret"] = json!(s.expose());
    }
    Ok((StatusCode::CREATED, Json(v)))
}

/// `GET /api/v1/keys`.
pub async fn list(ctl: Ctl, admin: Admin) -> Result<Json<Value>, ApiError> {
    let keys = ctl.store.list_keys(&admin.0.tenant).await?;
    let keys: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn load(ctl: &Ctl, tenant: &str, id: &str) -> Result<KeyRecord, ApiError> {
    ctl.store
        .get_key(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))
}

fn refuse_revoked(rec: &KeyRecord) -> Result<(), ApiError> {
    if rec.status == KeyStatus::Revoked {
        return Err(ApiError::conflict("a revoked key cannot be changed"));
    }
    Ok(())
}

/// `GET /api/v1/keys/{id}`.
pub async fn get_one(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(key_json(&load(&ctl, &admin.0.tenant, &id).await?)))
}

async fn changed(ctl: &Ctl, rec: &KeyRecord) {
    ctl.listener
        .changed(Change::Key {
            hash: rec.hash.clone(),
        })
        .await;
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
    refuse_revoked(&rec)?;
    let mut fields: Vec<&'static str> = Vec::new();
    if let Some(name) = p.name {
        check_name(&name)?;
        rec.name = name;
        fields.push("name");
    }
    if let Some(providers) = p.providers {
        check_providers(&ctl, &tenant, &providers).await?;
        rec.providers = providers;
        fields.push("providers");
    }
    if let Some(w) = p.workload {
        rec.workload = w;
        fields.push("workload");
    }
    if let Some(m) = p.models {
        check_models(&m)?;
        rec.models = m;
        fields.push("models");
    }
    if let Some(e) = p.expires_at {
        rec.expires_at = e;
        fields.push("expires_at");
    }
    let mut locks = locks_of(&rec)?;
    let old_ip = locks.ip.clone();
    fields.extend(apply_locks(
        &mut locks,
        LockInput {
            ip: p.ip,
            countries: p.countries,
            cities: p.cities,
            device_fingerprint: p.device_fingerprint,
            clear_device: p.clear_device,
            velocity: p.velocity,
        },
    )?);
    if let Some(policy) = p.policy {
        if let Some(name) = &policy {
            check_policy(&ctl, &tenant, name).await?;
        }
        rec.policy = policy;
        fields.push("policy");
    }
    if let Some(l) = p.limits {
        rec.limits = match &l {
            Some(l) => check_limits(l)?,
            None => Value::Null,
        };
        fields.push("limits");
    }
    let secret = match p.signed {
        Some(true) => {
            fields.push("signed");
            Some(issue_signing_secret(&ctl, &mut rec, &mut locks))
        }
        Some(false) => {
            fields.push("signed");
            rec.signing = None;
            locks.signed = false;
            None
        }
        None => None,
    };
    store_locks(&mut rec, &locks);
    rec.updated_at = Some(Utc::now());
    ctl.store.update_key(&rec).await?;
    if !same_ip_mode(&old_ip, &locks.ip) {
        // A new IP mode starts unbound; an auto-bind key binds again on its next request.
        if let Some(r) = ctl.store.set_key_bound_ip(&tenant, &id, None).await? {
            rec = r;
        }
    } else if let Some(r) = ctl.store.get_key(&tenant, &id).await? {
        rec = r;
    }
    changed(&ctl, &rec).await;
    ctl.audit_detail(
        &admin,
        "key.update",
        &rec.id,
        "ok",
        json!({ "fields": fields }),
    );
    let mut v = key_json(&rec);
    if let Some(s) = &secret {
        v["signing_secret"] = json!(s.expose());
    }
    Ok(Json(v))
}

/// `POST /api/v1/keys/{id}/revoke`: takes effect on the very next request.
pub async fn revoke(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = ctl
        .store
        .set_key_status(&admin.0.tenant, &id, KeyStatus::Revoked, None)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))?;
    changed(&ctl, &rec).await;
    ctl.audit(&admin, "key.revoke", &rec.id, "ok");
    Ok(Json(key_json(&rec)))
}

/// Parses an optional JSON body: an empty body is `T::default()`.
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Body of `POST /api/v1/keys/{id}/lock`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockIp {
    ip: String,
}

/// `POST /api/v1/keys/{id}/lock` `{"ip": "IP"}`: binds the key to one address explicitly. The
/// key's IP lock becomes auto-bind with `bound_ip` set to this address (replacing any CIDR list
/// or earlier binding), so `unbind` later lets the next request re-bind.
pub async fn lock(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
    body: Result<Json<LockIp>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let addr: IpAddr = b.ip.trim().parse().map_err(|_| {
        ApiError::invalid(format!(
            "ip: not a single IP address: {:?}",
            b.ip.chars().take(64).collect::<String>()
        ))
    })?;
    let addr = addr.to_canonical().to_string();
    let tenant = admin.0.tenant.clone();
    let mut rec = load(&ctl, &tenant, &id).await?;
    refuse_revoked(&rec)?;
    let mut locks = locks_of(&rec)?;
    locks.ip = IpLock::AutoBind { bound: None };
    store_locks(&mut rec, &locks);
    rec.updated_at = Some(Utc::now());
    ctl.store.update_key(&rec).await?;
    let rec = ctl
        .store
        .set_key_bound_ip(&tenant, &id, Some(&addr))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))?;
    changed(&ctl, &rec).await;
    ctl.audit_detail(&admin, "key.lock", &rec.id, "ok", json!({ "ip": addr }));
    Ok(Json(key_json(&rec)))
}

/// `POST /api/v1/keys/{id}/unbind`: forgets the auto-bind address; the next request re-binds.
pub async fn unbind(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = admin.0.tenant.clone();
    refuse_revoked(&load(&ctl, &tenant, &id).await?)?;
    let rec = ctl
        .store
        .set_key_bound_ip(&tenant, &id, None)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))?;
    changed(&ctl, &rec).await;
    ctl.audit(&admin, "key.unbind", &rec.id, "ok");
    Ok(Json(key_json(&rec)))
}

/// Body of `POST /api/v1/keys/{id}/bind-device`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindDevice {
    fingerprint: String,
}

/// `POST /api/v1/keys/{id}/bind-device` `{"fingerprint": "…"}`: locks the key to a device; only
/// the fingerprint's hash is stored.
pub async fn bind_device(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
    body: Result<Json<BindDevice>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body?;
    let fp = check_fingerprint("fingerprint", &b.fingerprint)?;
    let tenant = admin.0.tenant.clone();
    let mut rec = load(&ctl, &tenant, &id).await?;
    refuse_revoked(&rec)?;
    let mut locks = locks_of(&rec)?;
    locks.device_hash = Some(fingerprint_hash(&fp));
    store_locks(&mut rec, &locks);
    rec.updated_at = Some(Utc::now());
    ctl.store.update_key(&rec).await?;
    let rec = load(&ctl, &tenant, &id).await?;
    changed(&ctl, &rec).await;
    ctl.audit(&admin, "key.bind_device", &rec.id, "ok");
    Ok(Json(key_json(&rec)))
}

/// Body of `POST /api/v1/keys/{id}/suspend` (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Suspend {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/keys/{id}/suspend` `{"reason"?}`: refuses the key with `key_suspended` until an
/// admin reinstates it.
pub async fn suspend(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: Suspend = optional_body(&body)?;
    let reason = check_reason(b.reason)?.unwrap_or_else(|| "suspended by an admin".into());
    let rec = ctl
        .store
        .set_key_status(&admin.0.tenant, &id, KeyStatus::Suspended, Some(&reason))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))?;
    changed(&ctl, &rec).await;
    ctl.audit_detail(
        &admin,
        "key.suspend",
        &rec.id,
        "ok",
        json!({ "reason": reason }),
    );
    Ok(Json(key_json(&rec)))
}

/// `POST /api/v1/keys/{id}/reinstate`: a suspended key becomes active again (an active key is
/// left as is; a revoked key is a 409).
pub async fn reinstate(
    ctl: Ctl,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = admin.0.tenant.clone();
    let before = load(&ctl, &tenant, &id).await?;
    if before.status == KeyStatus::Revoked {
        return Err(ApiError::conflict(
            "a revoked key cannot be reinstated; create a new key",
        ));
    }
    let rec = ctl
        .store
        .set_key_status(&tenant, &id, KeyStatus::Active, None)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id:?}")))?;
    changed(&ctl, &rec).await;
    ctl.audit_detail(
        &admin,
        "key.reinstate",
        &rec.id,
        "ok",
        json!({ "previous_status": before.status, "previous_reason": before.suspended_reason }),
    );
    Ok(Json(key_json(&rec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LockInput {
        LockInput::default()
    }

    #[test]
    fn lock_fields_validate_and_name_the_field() {
        let mut l = KeyLocks::default();
        let e = apply_locks(
            &mut l,
            LockInput {
                ip: Some("10.0.0.0/33".into()),
                ..input()
            },
        )
        .err()
        .unwrap();
        assert!(format!("{e:?}").contains("ip: "), "{e:?}");
        let e = apply_locks(
            &mut l,
            LockInput {
                countries: Some(vec!["Germany".into()]),
                ..input()
            },
        )
        .err()
        .unwrap();
        assert!(format!("{e:?}").contains("countries: "), "{e:?}");
        let e = apply_locks(
            &mut l,
            LockInput {
                velocity: Some(Some(VelocityBody {
                    window_secs: None,
                    max_requests: None,
                    max_tokens: None,
                    max_distinct_ips: None,
                })),
                ..input()
            },
        )
        .err()
        .unwrap();
        assert!(format!("{e:?}").contains("velocity"), "{e:?}");
        assert!(l.is_unlocked(), "a failed change leaves nothing behind");
    }

    #[test]
    fn lock_fields_apply() {
        let mut l = KeyLocks::default();
        let f = apply_locks(
            &mut l,
            LockInput {
                ip: Some("auto".into()),
                countries: Some(vec!["de".into()]),
                cities: Some(vec!["Berlin".into()]),
                device_fingerprint: Some(" dev-1 ".into()),
                velocity: Some(Some(VelocityBody {
                    window_secs: Some(30),
                    max_requests: Some(100),
                    max_tokens: None,
                    max_distinct_ips: Some(3),
                })),
                ..input()
            },
        )
        .unwrap();
        assert_eq!(f, ["ip", "geo", "device", "velocity"]);
        assert_eq!(l.ip, IpLock::AutoBind { bound: None });
        assert_eq!(l.geo.countries, ["DE"]);
        assert_eq!(l.device_hash, Some(fingerprint_hash("dev-1")));
        assert_eq!(l.velocity.unwrap().window_secs, 30);
        // Only cities given: countries are kept.
        apply_locks(
            &mut l,
            LockInput {
                cities: Some(vec![]),
                clear_device: true,
                velocity: Some(None),
                ..input()
            },
        )
        .unwrap();
        assert_eq!(l.geo.countries, ["DE"]);
        assert!(l.geo.cities.is_empty());
        assert!(l.device_hash.is_none() && l.velocity.is_none());
    }

    #[test]
    fn signing_secrets_are_random_and_prefixed() {
        let a = new_signing_secret();
        let b = new_signing_secret();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(SIGNING_SECRET_PREFIX));
        assert_eq!(a.len(), SIGNING_SECRET_PREFIX.len() + 64);
    }
}
