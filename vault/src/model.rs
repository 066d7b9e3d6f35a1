//! The data model shared by the gateway and the control plane.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The tenant every object belongs to until multi-tenancy is exposed.
pub const DEFAULT_TENANT: &str = "default";

/// How a provider expects its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `NAME: [PREFIX]<secret>`, written `header:NAME[:PREFIX]`.
    Header {
        /// Header name.
        name: String,
        /// Text put before the secret, e.g. `Token `.
        prefix: String,
    },
    /// `?NAME=<secret>` appended to the query, written `query:NAME`.
    Query {
        /// Query parameter name.
        name: String,
    },
    /// `Authorization: Basic base64(<secret>)`; the stored secret is `user:password`.
    Basic,
    /// AWS Signature V4, written `sigv4:SERVICE:REGION` (signing comes with the Bedrock issue).
    SigV4 {
        /// AWS service name, e.g. `bedrock`.
        service: String,
        /// AWS region.
        region: String,
    },
    /// No credential is injected.
    None,
}

/// An auth scheme string that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid auth scheme {0:?}: expected bearer, header:NAME[:PREFIX], query:NAME, basic, sigv4:SERVICE:REGION or none")]
pub struct AuthSchemeError(pub String);

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl FromStr for AuthScheme {
    type Err = AuthSchemeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AuthSchemeError(s.to_string());
        let mut parts = s.splitn(3, ':');
        let kind = parts.next().unwrap_or_default();
        let a = parts.next();
        let b = parts.next();
        match (kind, a, b) {
            ("bearer", None, None) => Ok(AuthScheme::Bearer),
            ("basic", None, None) => Ok(AuthScheme::Basic),
            ("none", None, None) => Ok(AuthScheme::None),
            ("header", Some(name), prefix) if valid_token(name) => Ok(AuthScheme::Header {
                name: name.to_ascii_lowercase(),
                prefix: prefix.unwrap_or_default().to_string(),
            }),
            ("query", Some(name), None) if valid_token(name) => Ok(AuthScheme::Query {
                name: name.to_string(),
            }),
            ("sigv4", Some(service), Some(region))
                if valid_token(service) && valid_token(region) =>
            {
                Ok(AuthScheme::SigV4 {
                    service: service.to_string(),
                    region: region.to_string(),
                })
            }
            _ => Err(err()),
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthScheme::Bearer => f.write_str("bearer"),
            AuthScheme::Basic => f.write_str("basic"),
            AuthScheme::None => f.write_str("none"),
            AuthScheme::Header { name, prefix } if prefix.is_empty() => write!(f, "header:{name}"),
            AuthScheme::Header { name, prefix } => write!(f, "header:{name}:{prefix}"),
            AuthScheme::Query { name } => write!(f, "query:{name}"),
            AuthScheme::SigV4 { service, region } => write!(f, "sigv4:{service}:{region}"),
        }
    }
}

impl Serialize for AuthScheme {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuthScheme {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether and how a provider's credential can be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// Not rotatable through Latchkey.
    #[default]
    None,
    /// A human creates the new key; Latchkey swaps it in.
    Manual,
    /// The provider has an API to mint and revoke keys.
    Api,
}

/// A provider: where requests go and how the credential is injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// Namespace, used in `/proxy/{id}/…`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Upstream base URL (scheme, host, optional port and path prefix).
    pub base_url: String,
    /// How the credential is injected.
    pub auth: AuthScheme,
    /// Body dialect for policy: `openai-chat`, `anthropic-messages`, `bedrock`, `generic`.
    #[serde(default = "generic")]
    pub body_format: String,
    /// Latchkey can store this provider's credential.
    #[serde(default = "yes")]
    pub vaulting: bool,
    /// Latchkey can proxy this provider's API.
    #[serde(default = "yes")]
    pub proxying: bool,
    /// Rotation support.
    #[serde(default)]
    pub rotation: Rotation,
    /// The provider honours an idempotency-key header.
    #[serde(default)]
    pub idempotency: bool,
    /// Which rate-limit header dialect the provider sends (`openai`, `anthropic`, `github`, `none`).
    #[serde(default = "none_str")]
    pub rate_limit_headers: String,
    /// Path an SDK appends to the base URL (`/v1` for OpenAI), used by `latchkey env`.
    #[serde(default)]
    pub sdk_base_path: String,
    /// Environment variable an SDK reads its key from.
    #[serde(default)]
    pub env_key: Option<String>,
    /// Environment variable an SDK reads its base URL from.
    #[serde(default)]
    pub env_base_url: Option<String>,
    /// The base URL is per account/deployment and must be set before use (Azure, Supabase).
    #[serde(default)]
    pub requires_base_url: bool,
    /// Shipped in the built-in catalog (false for custom providers).
    #[serde(default)]
    pub builtin: bool,
    /// Where requests go when this provider cannot take them (its circuit is open, or the
    /// connection fails before anything was sent): other providers of the same tenant, lowest
    /// `priority` first, equal priorities shared by `weight`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<FailoverTarget>,
    /// Upstream timeouts overriding the gateway's defaults.
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// Where the provider serves the OpenAI-compatible API (`/v1` for OpenAI, `/openai/v1` for
    /// Groq, `/v1beta/openai` for Gemini): the gateway's `/v1/{path}` goes to
    /// `base_url + openai_base_path + /{path}`. `None`: not reachable through `/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openai_base_path: Option<String>,
}

/// A model registry entry: what a client asks for on `/v1` (`gpt-4o`, `claude-sonnet`, `fast`)
/// and the provider and exact model it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Owning tenant.
    pub tenant: String,
    /// The name clients use in `model`.
    pub alias: String,
    /// The provider that serves it (must have an `openai_base_path`).
    pub provider: String,
    /// The provider's exact model id (replaces `model` in the request body).
    pub model: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One failover target of a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverTarget {
    /// The provider to send to instead (its own base URL and credential are used).
    pub provider: String,
    /// Lower goes first; the provider itself is priority 0 (default 1).
    #[serde(default = "one")]
    pub priority: u32,
    /// Share among targets of equal priority (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// The equivalent model on that provider (rewrites the body's `model`), if it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

fn one() -> u32 {
    1
}

/// Upstream timeouts in milliseconds; unset fields keep the gateway's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Establishing the connection (TCP and TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// Waiting for any read: the response header (time to first byte) and each later chunk
    /// (idle time between chunks of a stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_ms: Option<u64>,
    /// The whole exchange, from admission to the last byte of the response; a response still
    /// streaming at that point is cut off with an explicit error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
}

impl Timeouts {
    /// Whether no timeout is set.
    pub fn is_empty(&self) -> bool {
        self.connect_ms.is_none() && self.read_ms.is_none() && self.total_ms.is_none()
    }
}

fn generic() -> String {
    "generic".into()
}
fn none_str() -> String {
    "none".into()
}
fn yes() -> bool {
    true
}

/// A stored credential's metadata. Its value is never part of this struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// `cred_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Provider namespace.
    pub provider: String,
    /// Human label.
    pub label: String,
    /// Workload labels this credential serves (`production`, `ci`, …).
    pub workloads: Vec<String>,
    /// The active version number.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Status of a proxy key.
///
/// Transitions (enforced by [`crate::store::Store::set_key_status`]): `active` ⇄ `suspended`,
/// either → `revoked`; `revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Permanently revoked.
    Revoked,
    /// Temporarily blocked (a velocity spike or an admin); an admin can reinstate it.
    Suspended,
}

/// A proxy key as stored: only its HMAC hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `key_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Name given at creation.
    pub name: String,
    /// HMAC-SHA256 of the key under the server secret (hex).
    #[serde(skip_serializing, default)]
    pub hash: String,
    /// Non-secret display prefix, e.g. `lk_Ab3x…`.
    pub prefix: String,
    /// Providers this key may reach; `*` means any.
    pub providers: Vec<String>,
    /// Workload label selecting which credential is injected; none means any.
    pub workload: Option<String>,
    /// Model allow-list (empty: any). Enforced by the locks issue.
    pub models: Vec<String>,
    /// Expiry time, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Status.
    pub status: KeyStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key's locks: opaque JSON of `latchkey_policy::locks::KeyLocks`, written by the control
    /// plane and read by the gateway; `null` means no locks. The vault does not interpret it.
    /// Its IP auto-bind address is not kept here but in [`KeyRecord::bound_ip`].
    #[serde(default)]
    pub locks: serde_json::Value,
    /// The address an auto-bind key is bound to (set by [`crate::store::Store::bind_key_ip`],
    /// cleared by an unbind); `None` while unbound.
    #[serde(default)]
    pub bound_ip: Option<String>,
    /// The per-key request-signing secret, sealed with [`crate::envelope`] under
    /// `Binding { tenant, credential: <key id>, version: 0 }`. Never serialized: the store keeps
    /// it in columns of its own, so it appears in no API output and no cache entry built from JSON.
    #[serde(skip)]
    pub signing: Option<crate::envelope::Sealed>,
    /// Why the key is suspended (while `status` is `suspended`).
    #[serde(default)]
    pub suspended_reason: Option<String>,
    /// Last change by the store's status / binding calls or by an admin update.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Name of the policy attached to this key (a [`PolicyRecord`] of the same tenant); `None`
    /// means the tenant's default policy, if any, applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The key's own rate limits and spend caps: opaque JSON of
    /// `latchkey_policy::limits::Limits`; `null` means none.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub limits: serde_json::Value,
}

impl KeyRecord {
    /// Whether this key may reach `provider`.
    pub fn allows_provider(&self, provider: &str) -> bool {
        self.providers.iter().any(|p| p == "*" || p == provider)
    }
}

/// An operator lockdown switch: while it exists, secret use stops for everything it covers.
///
/// Scopes: `tenant == "*"` and no provider is global; a tenant and no provider is that whole
/// tenant; a provider narrows the switch to that provider (for one tenant, or every tenant with
/// `"*"`). At most one entry exists per `(tenant, provider)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockdownEntry {
    /// Tenant id, or `"*"` for every tenant.
    pub tenant: String,
    /// Provider namespace, or `None` for every provider.
    pub provider: Option<String>,
    /// Why (free text from the operator).
    pub reason: Option<String>,
    /// When the switch was turned on.
    pub created_at: DateTime<Utc>,
    /// Who turned it on (`admin:adm_…`, `system`).
    pub created_by: String,
}

/// Tenant value of a [`LockdownEntry`] that covers every tenant.
pub const ALL_TENANTS: &str = "*";

/// A security incident, e.g. a key auto-suspended after a velocity spike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `inc_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// The key involved, if any.
    pub key_id: Option<String>,
    /// What happened: `velocity`, …
    pub kind: String,
    /// Details as JSON text (never secret values).
    pub detail: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When an admin resolved it.
    pub resolved_at: Option<DateTime<Utc>>,
}

impl Incident {
    /// A new, unresolved incident with a fresh `inc_…` id, stamped now. `detail` should be a
    /// JSON object as text and must not contain secret values.
    pub fn new(tenant: &str, key_id: Option<&str>, kind: &str, detail: String) -> Self {
        Incident {
            id: crate::keyfmt::new_id("inc"),
            tenant: tenant.into(),
            key_id: key_id.map(str::to_string),
            kind: kind.into(),
            detail,
            created_at: Utc::now(),
            resolved_at: None,
        }
    }
}

/// A policy document stored for a tenant: the TOML text exactly as applied, plus what the control
/// plane learned when it compiled it. The vault does not interpret the document; the gateway
/// compiles it with `latchkey_policy::rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Owning tenant.
    pub tenant: String,
    /// The policy's `name` (unique per tenant).
    pub name: String,
    /// The document (TOML).
    pub document: String,
    /// SHA-256 of the canonical document (`CompiledPolicy::fingerprint`), so audit events can
    /// name the exact version that decided.
    pub fingerprint: String,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// How many rules it has.
    pub rules: usize,
    /// First applied.
    pub created_at: DateTime<Utc>,
    /// Last applied.
    pub updated_at: DateTime<Utc>,
    /// Who applied it last (`admin:adm_…`).
    pub updated_by: String,
}

/// Rate limits and spend caps that apply to a whole tenant or to one workload of it, beside
/// each key's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeLimits {
    /// Owning tenant.
    pub tenant: String,
    /// `tenant`, or `workload:NAME`.
    pub scope: String,
    /// Opaque JSON of `latchkey_policy::limits::Limits`.
    pub limits: serde_json::Value,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// [`ScopeLimits::scope`] of tenant-wide limits.
pub const TENANT_SCOPE: &str = "tenant";

/// [`ScopeLimits::scope`] of a workload's limits.
pub fn workload_scope(workload: &str) -> String {
    format!("workload:{workload}")
}

/// An admin API token, stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminToken {
    /// `adm_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Name.
    pub name: String,
    /// HMAC-SHA256 hash (hex).
    #[serde(skip_serializing, default)]
    pub hash: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_schemes_round_trip() {
        for s in [
            "bearer",
            "basic",
            "none",
            "header:x-api-key",
            "header:authorization:Token ",
            "query:key",
            "sigv4:bedrock:us-east-1",
        ] {
            let a: AuthScheme = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        for bad in [
            "",
            "bearer:x",
            "header:",
            "header:bad name",
            "sigv4:x",
            "jwt",
        ] {
            assert!(bad.parse::<AuthScheme>().is_err(), "{bad}");
        }
    }
}
