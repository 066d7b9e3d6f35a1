//! The Pingora [`ProxyHttp`] implementation: the request's journey, stage by stage.

use crate::credentials::Injectable;
use crate::errors::GatewayError;
use crate::extract;
use crate::failover::{self, Chosen};
use crate::idempotency;
use crate::inject;
use crate::limits::{self, CounterError};
use crate::locks;
use crate::metering::{self, Charge, Metering};
use crate::openai;
use crate::policy::{self, Subject, Verdict};
use crate::providers::RoutedProvider;
use crate::resolve::ResolvedKey;
use crate::route::{self, Route};
use crate::sigv4;
use crate::state::GatewayState;
use crate::velocity;
use async_trait::async_trait;
use bytes::Bytes;
use latchkey_policy::access::{self, KeyFacts};
use latchkey_policy::limits::{Ask, ScopeKind};
use latchkey_policy::locks::model;
use latchkey_policy::resilience::circuit::Outcome;
use latchkey_policy::resilience::retry::{FailureKind, RetryDecision};
use latchkey_policy::usage;
use latchkey_vault::audit::AuditEvent;
use latchkey_vault::model::{AuthScheme, KeyStatus};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The gateway service.
pub struct Gateway {
    state: Arc<GatewayState>,
}

impl Gateway {
    /// A gateway over shared state.
    pub fn new(state: Arc<GatewayState>) -> Self {
        Gateway { state }
    }
}

/// Per-request state carried between Pingora's phases.
pub struct RequestCtx {
    request_id: String,
    started: Instant,
    key: Option<Arc<ResolvedKey>>,
    /// The body, when a lock needed it before the provider was contacted.
    body: Option<Bytes>,
    /// The client address the locks saw.
    client: Option<std::net::IpAddr>,
    provider: Option<Arc<RoutedProvider>>,
    rest: String,
    carrier: &'static str,
    credential: Option<Arc<Injectable>>,
    peer: Option<SocketAddr>,
    /// Set when Latchkey refused or failed the request itself.
    error: Option<GatewayError>,
    audit: bool,
    /// The body to forward instead of the client's (a policy redacted or re-routed it).
    upstream_body: Option<Bytes>,
    /// The policy decision, for the audit log.
    verdict: Option<Verdict>,
    /// A `warn` rule matched: forward, and flag it.
    warned: bool,
    /// The model the request is for (after any policy re-route), for pricing.
    model: Option<String>,
    /// The budget reservation to settle when the response is done.
    charge: Option<Charge>,
    /// Whether the response must be metered (budgets or token velocity).
    meter_wanted: bool,
    /// The response meter, once the response header arrived.
    metering: Option<Metering>,
    /// The provider the request is for (after any policy route), whose targets failover picks.
    primary: Option<Arc<RoutedProvider>>,
    /// The target of the current attempt.
    target: Option<Chosen>,
    /// Its circuit has been told how the attempt ended.
    outcome_recorded: bool,
    /// Targets that failed to connect, in order.
    tried: Vec<String>,
    /// Attempts made so far (0-based index of the current one).
    attempt: u32,
    /// The next attempt's target and the wait before it, set when a retry is decided.
    retarget: Option<(Chosen, u64)>,
    /// When the whole exchange must be over (the provider's `total_ms`).
    deadline: Option<Instant>,
    /// When the request was handed to the provider connection (the last attempt's).
    sent_at: Option<Instant>,
    /// Seconds from `sent_at` to the response header.
    ttfb: Option<f64>,
    /// Response body bytes passed to the client.
    response_bytes: u64,
    /// The `Idempotency-Key` Latchkey adds for a provider that honours one, when the client sent
    /// none (the same for every attempt of this request).
    idempotency_key: Option<String>,
    /// Masks the injected credential in the response body as it streams.
    scrub: Option<latchkey_policy::scrub::ScrubStream>,
}

fn new_request_id() -> String {
    format!("req_{:016x}", rand::random::<u64>())
}

/// The stages that run before Pingora connects upstream. Returns the refusal, if any.
async fn admit(
    state: &Arc<GatewayState>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    provider_id: &str,
    rest: &str,
) -> Result<(), GatewayError> {
    let mut provider_id = Cow::Borrowed(provider_id);
    let mut rest = Cow::Borrowed(rest);
    let presented =
        extract::presented(&session.req_header().headers).ok_or_else(GatewayError::missing_key)?;
    ctx.carrier = presented.header;
    // `/v1` resolved the key already to pick the provider: one lookup per request.
    let key = match ctx.key.clone() {
        Some(k) => k,
        None => state.keys.resolve(presented.key).await?,
    };
    ctx.key = Some(key.clone());

    let facts = KeyFacts {
        revoked: key.status == KeyStatus::Revoked,
        expires_at: key.expires_at.map(|t| t.timestamp()),
        providers: &key.providers,
    };
    let now = chrono::Utc::now().timestamp();
    if key.status == KeyStatus::Suspended {
        let why = key
            .suspended_reason
            .as_deref()
            .unwrap_or("suspended by an admin");
        return Err(GatewayError::new(
            403,
            "key_suspended",
            format!("this proxy key is suspended ({why}); an admin can reinstate it"),
        ));
    }
    if let Err(denial) = access::check(&facts, &provider_id, now) {
        let (status, message) = match denial {
            access::Denial::Revoked => (401, "this proxy key has been revoked".to_string()),
            access::Denial::Expired => (401, "this proxy key has expired".to_string()),
            access::Denial::ProviderNotAllowed => (
                403,
                format!("this proxy key may not use provider {provider_id:?}"),
            ),
        };
        return Err(GatewayError::new(status, denial.code(), message));
    }

    // The provider definition (a cache read), so refusals below are attributed to it.
    let mut routed = state.providers.get(&key.tenant, &provider_id).await?;
    ctx.provider = Some(routed.clone());

    // Locks, in the order of policy::locks: lockdown, IP, geo, device, signature, model; then
    // velocity, so refused requests never count against a key.
    locks::check_lockdown(state, &key.tenant, &provider_id).map_err(locks::refusal)?;
    let peer = match session.client_addr().and_then(|a| a.as_inet()) {
        // Behind the PROXY protocol relay, the socket peer is the relay; the client is the
        // one its header announced (believed only from trusted proxies).
        Some(a) if state.options.proxy_protocol => state.proxied.lookup(a).unwrap_or(a.ip()),
        Some(a) => a.ip(),
        None => std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let client = locks::client_address(state, peer, &session.req_header().headers);
    ctx.client = Some(client);
    if locks::check_static(state, &key, client, &session.req_header().headers)
        .await?
        .is_some()
    {
        state.metrics.ip_bound();
        let mut event = AuditEvent::now(
            &key.tenant,
            &format!("key:{}", key.id),
            "key.bind_ip",
            &key.id,
            "ok",
        );
        event.detail = Some(serde_json::json!({ "ip": client.to_string() }).to_string());
        state.audit.record(event);
    }
    // The tenant's policies and limits: a lock-free read after its first request.
    let rules = tenant_rules(state, &key.tenant, &ctx.request_id).await?;
    let policy = rules
        .policy_for(key.policy.as_deref())
        .map_err(|e| GatewayError::new(503, "policy_unavailable", e.to_string()))?
        .cloned();
    let wants_estimate = limits::needs_estimate(&key, &rules);
    // Only JSON bodies are model calls worth estimating; uploads and forms cost nothing to read.
    let json_body = is_json(session.req_header());
    let wants_usage = (wants_estimate || velocity::watches_tokens(&key)) && json_body;

    // The body, read once (within Pingora's retry buffer) and parsed once, only when a stage
    // needs it: signature, model allow-list, a policy that reads prompts, or a budget estimate.
    let needs_body = locks::needs_body(&key, session.req_header().uri.path())
        || policy.as_ref().is_some_and(|p| p.needs_body())
        || wants_usage
        || routed.provider.failover.iter().any(|f| f.model.is_some())
        || idempotency::applies(&routed.provider, session.req_header())
        // SigV4 signs the body's hash.
        || matches!(routed.provider.auth, AuthScheme::SigV4 { .. });
    if needs_body && ctx.body.is_none() {
        ctx.body = Some(read_body(session).await?);
    }
    let mut json: Option<serde_json::Value> = ctx
        .body
        .as_deref()
        .filter(|b| !b.is_empty())
        .and_then(|b| serde_json::from_slice(b).ok());
    if key.locks.signed || !key.models.is_empty() {
        locks::check_body(
            state,
            &key,
            session.req_header(),
            ctx.body.as_deref(),
            json.as_ref(),
            now,
        )?;
    }
    velocity::observe(state, &key, client, now).await?;
    ctx.model = model::requested_model(&rest, json.as_ref());

    // Policy: block, flag, redact, re-route or hold.
    let mut rewrite = false;
    if let Some(policy) = &policy {
        let effects = policy::enforce(
            state,
            &key,
            policy,
            Subject {
                provider: &provider_id,
                method: session.req_header().method.as_str(),
                path: &rest,
                model: ctx.model.as_deref(),
                headers: &session.req_header().headers,
                body: json.as_mut(),
                request_id: &ctx.request_id,
            },
            &mut ctx.verdict,
        )
        .await?;
        ctx.warned = effects.warned;
        rewrite = effects.body_changed;
        if let Some(info) = effects.hold {
            // Watch the client while the request waits: its body must be read first, so
            // that watching the socket cannot eat the body.
            if ctx.body.is_none() && !session.as_mut().is_body_done() {
                ctx.body = Some(read_body(session).await?);
            }
            let downstream = session.as_mut();
            let client_gone = async move {
                let _ = downstream.read_body_or_idle(true).await;
            };
            policy::hold(state, info, client_gone).await?;
        }
        if let Some(route) = effects.route {
            if let Some(model) = route.model {
                match json.as_mut().and_then(|j| j.get_mut("model")) {
                    Some(slot @ serde_json::Value::String(_)) => {
                        *slot = serde_json::Value::String(model.clone());
                        rewrite = true;
                    }
                    _ => {
                        if let Some(old) = ctx.model.as_deref() {
                            rest = Cow::Owned(rest.replacen(old, &model, 1));
                        }
                    }
                }
                ctx.model = Some(model);
            }
            if let Some(p) = route.provider.filter(|p| *p != *provider_id) {
                routed = state.providers.get(&key.tenant, &p).await?;
                locks::check_lockdown(state, &key.tenant, &p).map_err(locks::refusal)?;
                provider_id = Cow::Owned(p);
                ctx.provider = Some(routed.clone());
            }
        }
    }

    // Limits: reserve the worst case now, settle the metered usage after the response.
    if key.limits.is_some() || rules.tenant_limits.is_some() || !rules.workload_limits.is_empty() {
        let ids = limits::ScopeIds::of(&key);
        let scopes = limits::scopes(&key, &rules, &ids);
        if !scopes.is_empty() {
            // A request without a JSON body (a listing, an upload, a form) generates no
            // tokens: nothing to reserve beyond the request itself.
            let (tokens, cost) = if let (true, Some(body)) = (wants_estimate, json.as_ref()) {
                let est = usage::estimate(
                    body,
                    ctx.body.as_ref().map_or(0, |b| b.len()),
                    state.options.default_max_output_tokens,
                );
                let cost = est.cost_micros(
                    &state.prices,
                    &provider_id,
                    ctx.model.as_deref().unwrap_or(""),
                );
                (est.input_tokens + est.output_tokens, cost)
            } else {
                (0, 0)
            };
            let now_ms = chrono::Utc::now().timestamp_millis();
            match state
                .counters
                .reserve(&scopes, Ask::new(tokens, cost), now_ms)
                .await
            {
                Ok(granted) => {
                    ctx.charge = Some(Charge {
                        reserved: granted.reserved,
                        worst_tokens: tokens,
                        worst_cost_micros: cost,
                    });
                }
                Err(CounterError::Exceeded(e)) => {
                    state
                        .metrics
                        .limit_refused(e.scope.as_str(), e.kind.as_str());
                    let own: Vec<_> = scopes
                        .iter()
                        .filter(|s| s.kind == ScopeKind::Key)
                        .copied()
                        .collect();
                    let headroom = state.counters.headroom(&own, now_ms).await;
                    return Err(limits::refusal(&e, &headroom));
                }
                Err(CounterError::Unavailable(why)) => {
                    tracing::error!(request_id = %ctx.request_id, error = %why, "limit counters unavailable");
                    return Err(GatewayError::new(
                        503,
                        "limits_unavailable",
                        "rate limits cannot be checked right now",
                    ));
                }
            }
        }
    }
    // The upstream target: the provider, or a failover target when its circuit is open.
    let chosen = failover::choose(state, &key.tenant, &routed.provider, &[])?;
    if let (Some(model), Some(slot)) = (
        chosen.model.as_ref(),
        json.as_mut().and_then(|j| j.get_mut("model")),
    ) {
        *slot = serde_json::Value::String(model.clone());
        rewrite = true;
    }
    ctx.meter_wanted = ctx.charge.is_some() || velocity::watches_tokens(&key);
    if ctx.meter_wanted && usage::ask_for_stream_usage(&provider_id, &rest, json.as_mut()) {
        rewrite = true;
    }
    if rewrite {
        if let Some(j) = &json {
            let bytes = serde_json::to_vec(j)
                .map_err(|_| GatewayError::internal("the rewritten body could not be encoded"))?;
            ctx.upstream_body = Some(Bytes::from(bytes));
        }
    }

    if idempotency::applies(&routed.provider, session.req_header()) {
        ctx.idempotency_key = Some(idempotency::derive(
            &key.id,
            session.req_header(),
            &rest,
            ctx.upstream_body
                .as_deref()
                .or(ctx.body.as_deref())
                .unwrap_or_default(),
            chrono::Utc::now().timestamp(),
        ));
    }
    ctx.rest = rest.into_owned();
    ctx.primary = Some(routed);
    ctx.deadline = ctx
        .primary
        .as_ref()
        .and_then(|p| p.provider.timeouts.total_ms)
        .map(|ms| ctx.started + std::time::Duration::from_millis(ms));
    bind_target(state, ctx, &key, chosen).await
}

/// Makes `chosen` the target of the next attempt: its provider definition, lockdown, credential
/// and address. On failure the circuit's probe slot, if taken, is given back.
async fn bind_target(
    state: &Arc<GatewayState>,
    ctx: &mut RequestCtx,
    key: &ResolvedKey,
    chosen: Chosen,
) -> Result<(), GatewayError> {
    let result = bind_target_inner(state, ctx, key, &chosen).await;
    match result {
        Ok(()) => {
            ctx.target = Some(chosen);
            ctx.outcome_recorded = false;
            Ok(())
        }
        Err(e) => {
            if chosen.probe {
                state.circuits.cancel_probe(&key.tenant, &chosen.provider);
            }
            Err(e)
        }
    }
}

async fn bind_target_inner(
    state: &Arc<GatewayState>,
    ctx: &mut RequestCtx,
    key: &ResolvedKey,
    chosen: &Chosen,
) -> Result<(), GatewayError> {
    let routed = match ctx.primary.as_ref() {
        Some(p) if p.provider.id == chosen.provider => p.clone(),
        _ => {
            let r = state.providers.get(&key.tenant, &chosen.provider).await?;
            locks::check_lockdown(state, &key.tenant, &chosen.provider).map_err(locks::refusal)?;
            r
        }
    };
    let provider_id = &routed.provider.id;
    if !routed.provider.proxying {
        return Err(GatewayError::new(
            403,
            "provider_not_proxied",
            format!("provider {provider_id:?} is vault-only and cannot be proxied"),
        ));
    }
    let upstream = routed
        .upstream
        .as_ref()
        .map_err(|why| GatewayError::new(503, "provider_not_configured", why.clone()))?;
    ctx.credential = if routed.provider.auth != AuthScheme::None {
        Some(
            state
                .credentials
                .get(&key.tenant, provider_id, key.workload.as_deref())
                .await?,
        )
    } else {
        None
    };
    ctx.peer = Some(state.dns.lookup(&upstream.host, upstream.port).await?);
    ctx.provider = Some(routed);
    Ok(())
}

/// Rewrites the body's `model` for a retry on a target that names the model differently.
fn retarget_model(ctx: &mut RequestCtx, model: &str) {
    let source = ctx.upstream_body.as_ref().or(ctx.body.as_ref());
    let Some(mut json) = source.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
    else {
        return;
    };
    if let Some(slot) = json.get_mut("model") {
        *slot = serde_json::Value::String(model.to_string());
        if let Ok(bytes) = serde_json::to_vec(&json) {
            ctx.upstream_body = Some(Bytes::from(bytes));
            ctx.model = Some(model.to_string());
        }
    }
}

/// Records how the current attempt ended in its target's circuit (once per attempt).
fn record_outcome(state: &GatewayState, ctx: &mut RequestCtx, outcome: Outcome) {
    if ctx.outcome_recorded {
        return;
    }
    if let (Some(t), Some(k)) = (&ctx.target, &ctx.key) {
        state
            .circuits
            .record(&k.tenant, &t.provider, outcome, t.probe);
        state
            .metrics
            .upstream_outcome(&t.provider, outcome.as_str());
        ctx.outcome_recorded = true;
    }
}

/// After attempt `ctx.attempt` failed with `failure`, decides whether to try again and where.
fn plan_retry(
    state: &GatewayState,
    ctx: &mut RequestCtx,
    method: &str,
    has_key: bool,
    failure: FailureKind,
) -> bool {
    let (Some(primary), Some(key)) = (ctx.primary.clone(), ctx.key.clone()) else {
        return false;
    };
    if let Some(t) = &ctx.target {
        ctx.tried.push(t.provider.clone());
    }
    let decision =
        state
            .options
            .retry
            .decide(ctx.attempt, method, has_key, failure, rand::random());
    let RetryDecision::RetryAfter(wait_ms) = decision else {
        return false;
    };
    // Another target first; with none left, the same one again (the failure may be transient).
    let next = failover::choose(state, &key.tenant, &primary.provider, &ctx.tried)
        .or_else(|_| failover::choose(state, &key.tenant, &primary.provider, &[]));
    match next {
        Ok(chosen) => {
            ctx.attempt += 1;
            ctx.retarget = Some((chosen, wait_ms));
            true
        }
        Err(_) => false,
    }
}

/// `/v1/…`: finds the provider and upstream path (or answers `GET /v1/models` itself: `None`).
async fn openai_route(
    state: &Arc<GatewayState>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    rest: &str,
) -> Result<Option<(String, String)>, GatewayError> {
    let presented =
        extract::presented(&session.req_header().headers).ok_or_else(GatewayError::missing_key)?;
    let key = state.keys.resolve(presented.key).await?;
    let rules = tenant_rules(state, &key.tenant, &ctx.request_id).await?;
    let json_body = is_json(session.req_header());
    if json_body && !rules.models.is_empty() {
        // The model decides the provider: read the body (kept for the later stages).
        ctx.body = Some(read_body(session).await?);
    }
    let json: Option<serde_json::Value> = ctx
        .body
        .as_deref()
        .filter(|b| !b.is_empty())
        .and_then(|b| serde_json::from_slice(b).ok());
    let method = session.req_header().method.as_str().to_string();
    let destination = openai::route(state, &key, &rules, &method, rest, json.as_ref()).await?;
    // Kept for the audit, and so `admit` does not look the key up again.
    ctx.key = Some(key);
    match destination {
        openai::Destination::Answer(body) => {
            respond_json(session, ctx, 200, body)
                .await
                .map_err(|_| GatewayError::internal("could not write the response"))?;
            Ok(None)
        }
        openai::Destination::Forward {
            provider,
            rest,
            body,
        } => {
            if let Some(b) = body {
                ctx.body = Some(b.clone());
                ctx.upstream_body = Some(b);
            }
            Ok(Some((provider, rest)))
        }
    }
}

/// Adds the normalized rate-limit headers the provider's own dialect lets Latchkey derive
/// (`x-ratelimit-*-requests|tokens`, IETF `ratelimit-policy`/`ratelimit`); the provider's headers
/// stay as they are.
fn normalize_rate_limits(ctx: &RequestCtx, resp: &mut ResponseHeader) -> pingora::Result<()> {
    let Some(p) = ctx.provider.as_ref() else {
        return Ok(());
    };
    let dialect = p.provider.rate_limit_headers.as_str();
    if dialect == "none" && !resp.headers.contains_key("retry-after-ms") {
        return Ok(());
    }
    // The common case, a response without rate-limit headers, costs one pass over the names.
    if !resp
        .headers
        .keys()
        .any(|k| latchkey_policy::ratelimit::is_relevant(k.as_str()))
    {
        return Ok(());
    }
    let pairs: Vec<(&str, &str)> = resp
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let added =
        latchkey_policy::ratelimit::normalize(dialect, &pairs, chrono::Utc::now().timestamp());
    for (name, value) in added.headers {
        resp.insert_header(name, value)?;
    }
    Ok(())
}

/// Signs the upstream request with the AWS credential stored for the provider.
fn sign_sigv4(
    req: &mut RequestHeader,
    ctx: &RequestCtx,
    service: &str,
    region: &str,
) -> Result<(), GatewayError> {
    let Some(cred) = ctx.credential.as_ref() else {
        return Err(GatewayError::internal("no AWS credential to sign with"));
    };
    let aws = sigv4::AwsCredential::parse(cred.secret.expose()).map_err(|_| {
        GatewayError::new(
            503,
            "provider_not_configured",
            "the stored AWS credential is not valid JSON with access_key_id and secret_access_key; connect it again",
        )
    })?;
    if let Some(r) = aws.region.as_deref().filter(|r| *r != region) {
        return Err(GatewayError::new(
            503,
            "provider_not_configured",
            format!("the AWS credential is for region {r:?} but the provider signs for {region:?}; set the provider's base_url and auth (sigv4:{service}:{r}) to that region"),
        ));
    }
    let host = req
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = req.uri.path().to_string();
    let query = req.uri.query().map(str::to_string);
    let body: &[u8] = ctx
        .upstream_body
        .as_deref()
        .or(ctx.body.as_deref())
        .unwrap_or_default();
    let signed = {
        let headers = sigv4::headers_to_sign(&req.headers);
        sigv4::sign(&sigv4::SignInput {
            credential: &aws,
            method: req.method.as_str(),
            host: &host,
            path: &path,
            query: query.as_deref(),
            headers: &headers,
            body,
            service,
            region,
            time: std::time::SystemTime::now(),
        })
        .map_err(GatewayError::from)?
    };
    for (name, value) in signed {
        let mut v = http::HeaderValue::from_str(&value)
            .map_err(|_| GatewayError::internal("could not set a signature header"))?;
        v.set_sensitive(true);
        req.insert_header(name, v)
            .map_err(|_| GatewayError::internal("could not set a signature header"))?;
    }
    Ok(())
}

/// Whether a response carries a body the client will read (not `HEAD`, not 1xx/204/304, and not
/// a switched protocol such as a WebSocket, whose frames must not be rewritten).
fn has_body(req: &RequestHeader, resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    req.method != http::Method::HEAD
        && !(100..200).contains(&status)
        && status != 204
        && status != 304
}

/// Masks the credential in response header values.
fn scrub_headers(
    scrubber: &latchkey_policy::scrub::Scrubber,
    resp: &mut ResponseHeader,
) -> pingora::Result<()> {
    let leaking: Vec<(http::HeaderName, Vec<u8>)> = resp
        .headers
        .iter()
        .filter(|(_, v)| scrubber.contains_any(v.as_bytes()))
        .map(|(k, v)| (k.clone(), scrubber.scrub(v.as_bytes()).into_owned()))
        .collect();
    for (name, value) in leaking {
        let v = http::HeaderValue::from_bytes(&value)
            .unwrap_or_else(|_| http::HeaderValue::from_static("[REDACTED]"));
        resp.insert_header(name, v)?;
    }
    Ok(())
}

/// Whether the request body is `application/json` or any `+json` media type.
fn is_json(req: &RequestHeader) -> bool {
    let Some(ct) = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().as_bytes();
    essence.eq_ignore_ascii_case(b"application/json")
        || essence.len() >= 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
}

/// The tenant's policies, limits and model registry (a lock-free read after its first request).
async fn tenant_rules(
    state: &GatewayState,
    tenant: &str,
    request_id: &str,
) -> Result<Arc<crate::policies::TenantRules>, GatewayError> {
    state
        .policies
        .get(state.store.as_ref(), tenant)
        .await
        .map_err(|e| {
            tracing::error!(%request_id, error = %e, "cannot load the tenant's policies and model registry");
            GatewayError::new(
                503,
                "store_unavailable",
                "policies and the model registry cannot be loaded right now",
            )
        })
}

/// Reads the whole request body before the provider is contacted, within Pingora's 64 KiB
/// retry buffer (which is what replays it upstream); anything larger is refused with 413.
async fn read_body(session: &mut Session) -> Result<Bytes, GatewayError> {
    let too_large = || {
        GatewayError::new(
            413,
            "payload_too_large",
            format!(
                "request bodies Latchkey must inspect (signed requests, model allow-lists, policies that read prompts, token budgets) may be at most {} KiB",
                locks::MAX_INSPECTED_BODY / 1024
            ),
        )
    };
    if let Some(len) = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if len > locks::MAX_INSPECTED_BODY {
            return Err(too_large());
        }
    }
    session.enable_retry_buffering();
    let mut body = bytes::BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > locks::MAX_INSPECTED_BODY {
                    return Err(too_large());
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "reading the request body failed");
                return Err(GatewayError::new(
                    400,
                    "bad_request",
                    "the request body could not be read",
                ));
            }
        }
    }
    Ok(body.freeze())
}

async fn respond_json(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    body: Bytes,
) -> pingora::Result<()> {
    let extra = ctx.error.as_ref().map_or(&[][..], |e| &e.headers[..]);
    let mut h = ResponseHeader::build(status, Some(4 + extra.len()))?;
    for (name, value) in extra {
        h.insert_header(*name, value.as_str())?;
    }
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    h.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

fn map_upstream_error(e: &Error) -> Option<GatewayError> {
    use ErrorType::*;
    if *e.esource() == ErrorSource::Downstream {
        return None;
    }
    Some(match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
            GatewayError::upstream_timeout("the provider did not answer in time")
        }
        HTTPStatus(code) => GatewayError::new(*code, "upstream_error", "the request failed"),
        _ if *e.esource() == ErrorSource::Upstream => GatewayError::upstream_unavailable(format!(
            "the provider could not be reached ({})",
            e.etype().as_str()
        )),
        _ => GatewayError::internal("the gateway failed to proxy the request"),
    })
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            request_id: new_request_id(),
            started: Instant::now(),
            key: None,
            body: None,
            client: None,
            provider: None,
            rest: String::new(),
            carrier: "authorization",
            credential: None,
            peer: None,
            error: None,
            audit: true,
            upstream_body: None,
            verdict: None,
            warned: false,
            model: None,
            charge: None,
            meter_wanted: false,
            metering: None,
            primary: None,
            target: None,
            outcome_recorded: false,
            tried: Vec::new(),
            attempt: 0,
            retarget: None,
            deadline: None,
            sent_at: None,
            ttfb: None,
            response_bytes: 0,
            idempotency_key: None,
            scrub: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        if self
            .state
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Answer with `Connection: close` so the client opens its next connection to the
            // process taking over (or another node) instead of reusing one this process is
            // about to close while the client may be sending on it.
            session.set_keepalive(None);
        }
        let path = session.req_header().uri.path().to_string();
        let outcome = match route::classify(&path) {
            Route::Health => {
                ctx.audit = false;
                respond_json(
                    session,
                    ctx,
                    200,
                    Bytes::from_static(b"{\"status\":\"ok\"}"),
                )
                .await?;
                return Ok(true);
            }
            Route::Ready => {
                ctx.audit = false;
                let draining = self
                    .state
                    .draining
                    .load(std::sync::atomic::Ordering::Relaxed);
                let (status, body) = match self.state.store.ping().await {
                    // Shutting down or handing over to a new process: tell the load balancer
                    // to stop sending traffic while in-flight requests finish.
                    Ok(()) if draining => (503, r#"{"status":"draining","store":"ok"}"#),
                    Ok(()) => (200, r#"{"status":"ready","store":"ok","catalog":"loaded"}"#),
                    Err(_) => (503, r#"{"status":"not_ready","store":"unreachable"}"#),
                };
                respond_json(session, ctx, status, Bytes::from_static(body.as_bytes())).await?;
                return Ok(true);
            }
            Route::NotFound => Err(GatewayError::not_found()),
            Route::Proxy { provider, rest } => {
                admit(&self.state, session, ctx, provider, rest).await
            }
            Route::OpenAi { rest } => match openai_route(&self.state, session, ctx, rest).await {
                Ok(Some((provider, rest))) => {
                    admit(&self.state, session, ctx, &provider, &rest).await
                }
                Ok(None) => return Ok(true),
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(()) => Ok(false),
            Err(err) => {
                let body = err.body(&ctx.request_id);
                let status = err.status;
                ctx.error = Some(err);
                respond_json(session, ctx, status, body).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        if let Some((chosen, wait_ms)) = ctx.retarget.take() {
            // A retry: wait the jittered backoff, then bind the next target.
            if wait_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            }
            let model = chosen.model.clone();
            let Some(key) = ctx.key.clone() else {
                return Err(Error::explain(ErrorType::InternalError, "no key"));
            };
            if let Err(e) = bind_target(&self.state, ctx, &key, chosen).await {
                let status = e.status;
                ctx.error = Some(e);
                return Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "failover target unusable",
                ));
            }
            if let Some(m) = model {
                retarget_model(ctx, &m);
            }
        }
        let (Some(routed), Some(addr)) = (ctx.provider.as_ref(), ctx.peer) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream selected",
            ));
        };
        let up = routed
            .upstream
            .as_ref()
            .map_err(|_| Error::explain(ErrorType::InternalError, "provider not routable"))?;
        let sni = if up.host.parse::<std::net::IpAddr>().is_ok() {
            String::new()
        } else {
            up.host.clone()
        };
        let mut peer = HttpPeer::new(addr, up.tls, sni);
        let o = &self.state.options;
        let t = &routed.provider.timeouts;
        let ms = std::time::Duration::from_millis;
        peer.options.connection_timeout = Some(t.connect_ms.map_or(o.connect_timeout, ms));
        peer.options.read_timeout = Some(t.read_ms.map_or(o.read_timeout, ms));
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(routed) = ctx.provider.as_ref() else {
            return Err(Error::explain(ErrorType::InternalError, "no provider"));
        };
        let Ok(up) = routed.upstream.as_ref() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "provider not routable",
            ));
        };
        let empty = latchkey_vault::SecretString::new(String::new());
        let secret = ctx.credential.as_ref().map(|c| &c.secret).unwrap_or(&empty);
        if let Err(e) = inject::rewrite(
            upstream_request,
            up,
            &ctx.rest,
            &routed.provider.auth,
            secret,
            ctx.carrier,
        ) {
            let status = e.status;
            ctx.error = Some(e);
            return Err(Error::explain(
                ErrorType::HTTPStatus(status),
                "request rewrite failed",
            ));
        }
        ctx.sent_at = Some(Instant::now());
        if let Some(k) = &ctx.idempotency_key {
            upstream_request.insert_header(idempotency::HEADER, k.as_str())?;
        }
        if ctx.meter_wanted || self.state.options.scrub_responses {
            // Usage is read, and secrets masked, in the response as it streams by: ask for it
            // uncompressed.
            upstream_request.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        }
        if let AuthScheme::SigV4 { service, region } = &routed.provider.auth {
            // Signed last, over the final headers and body, on every attempt.
            if let Err(e) = sign_sigv4(upstream_request, ctx, service, region) {
                let status = e.status;
                ctx.error = Some(e);
                return Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "SigV4 signing failed",
                ));
            }
        }
        if let Some(body) = &ctx.upstream_body {
            // A policy rewrote the body: announce its real length.
            upstream_request.remove_header(&http::header::TRANSFER_ENCODING);
            upstream_request.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if session.was_upgraded() {
            // A WebSocket (or other upgraded) session: frames pass untouched, but a key revoked
            // or suspended since the upgrade is cut off at its next frame.
            if self.state.options.cut_off_revoked_sessions {
                if let Some(k) = &ctx.key {
                    let still = self.state.keys.current(&k.hash).await;
                    if !still.is_some_and(|r| r.status == KeyStatus::Active) {
                        tracing::info!(request_id = %ctx.request_id, key = %k.id, "upgraded session cut off: the key is no longer active");
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(401),
                            "the proxy key was revoked during the session",
                        ));
                    }
                }
            }
            return Ok(());
        }
        if ctx.upstream_body.is_none() {
            return Ok(());
        }
        // The client's body was read whole before the upstream was chosen, so Pingora replays
        // it here in one piece; forward the rewritten body in its place. A non-final chunk
        // becomes empty rather than `None`, which would end the upstream body early.
        if end_of_stream {
            *body = ctx.upstream_body.clone();
        } else if body.is_some() {
            *body = Some(Bytes::new());
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // The provider never saw this attempt: always safe to try again or elsewhere.
        let outcome = if matches!(e.etype(), ErrorType::ConnectTimedout) {
            Outcome::Timeout
        } else {
            Outcome::ConnectError
        };
        record_outcome(&self.state, ctx, outcome);
        let method = session.req_header().method.as_str().to_string();
        if plan_retry(&self.state, ctx, &method, false, FailureKind::ConnectFailed) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        // A pooled connection the provider had closed: Pingora's own retry on a fresh one.
        e.retry.decide_reuse(client_reused);
        if client_reused || ctx.outcome_recorded || session.response_written().is_some() {
            return e;
        }
        // No response yet: the provider may or may not have seen the request.
        let timed_out = matches!(e.etype(), ErrorType::ReadTimedout);
        record_outcome(
            &self.state,
            ctx,
            if timed_out {
                Outcome::Timeout
            } else {
                Outcome::ConnectError
            },
        );
        let req = session.req_header();
        let method = req.method.as_str().to_string();
        let has_key =
            req.headers.contains_key(idempotency::HEADER) || ctx.idempotency_key.is_some();
        // A retry replays the body, so it must have been read whole (or be empty).
        let replayable = ctx.body.is_some()
            || req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0")
            || (!req.headers.contains_key(http::header::CONTENT_LENGTH)
                && !req.headers.contains_key(http::header::TRANSFER_ENCODING));
        let failure = if timed_out {
            FailureKind::TimeoutBeforeResponse
        } else {
            FailureKind::ResetBeforeResponse
        };
        if replayable && plan_retry(&self.state, ctx, &method, has_key, failure) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.ttfb = ctx.sent_at.map(|t| t.elapsed().as_secs_f64());
        record_outcome(
            &self.state,
            ctx,
            Outcome::from_status(upstream_response.status.as_u16()),
        );
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(t) = &ctx.target {
            upstream_response.insert_header("x-latchkey-target", t.provider.as_str())?;
        }
        normalize_rate_limits(ctx, upstream_response)?;
        if self.state.options.scrub_responses {
            if let Some(cred) = ctx.credential.as_ref().filter(|c| !c.scrubber.is_empty()) {
                // Providers echo keys in error messages: mask them in headers always, and in
                // the body as it streams.
                scrub_headers(&cred.scrubber, upstream_response)?;
                if has_body(session.req_header(), upstream_response) {
                    // A masked body changes length: announce it chunked, so the connection
                    // stays reusable (a response with neither length nor chunking would be
                    // delimited by closing the connection).
                    if upstream_response
                        .headers
                        .contains_key(http::header::CONTENT_LENGTH)
                    {
                        upstream_response.remove_header(&http::header::CONTENT_LENGTH);
                        upstream_response
                            .insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                    }
                    upstream_response.remove_header(&http::header::ETAG);
                    ctx.scrub = Some(cred.scrubber.stream());
                }
            }
        }
        if ctx.warned {
            if let Some(v) = &ctx.verdict {
                let rule = v.rule.as_deref().unwrap_or("default");
                upstream_response
                    .insert_header("x-latchkey-policy-warning", format!("{}/{rule}", v.policy))?;
            }
        }
        if ctx.meter_wanted {
            ctx.metering = Some(Metering::start(upstream_response));
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        if let Some(chunk) = body.as_ref() {
            ctx.response_bytes += chunk.len() as u64;
            if let Some(m) = ctx.metering.as_mut() {
                m.feed(chunk);
            }
        }
        if let Some(s) = ctx.scrub.as_mut() {
            let mut out = match body.take() {
                Some(b) => match s.push(&b) {
                    Cow::Borrowed(x) => b.slice_ref(x),
                    Cow::Owned(v) => Bytes::from(v),
                },
                None => Bytes::new(),
            };
            if end_of_stream {
                let tail = s.finish();
                if !tail.is_empty() {
                    out = Bytes::from([&out[..], &tail[..]].concat());
                }
            }
            // An empty non-final chunk stays `Some(empty)` (Pingora skips it); `None` only at
            // the end.
            *body = if out.is_empty() && end_of_stream {
                None
            } else {
                Some(out)
            };
        }
        if ctx.deadline.is_some_and(|d| Instant::now() > d) {
            // Past the provider's total timeout: cut the response off visibly (the client
            // sees a broken transfer, never a clean end).
            ctx.error = Some(GatewayError::upstream_timeout(
                "the provider's response took longer than its total timeout",
            ));
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "total timeout exceeded",
            ));
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = match ctx.error.clone() {
            Some(err) => Some(err),
            None => map_upstream_error(e),
        };
        let Some(err) = err else {
            // The client went away; nothing to answer.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let status = err.status;
        if session.response_written().is_none() {
            // Pingora will not reuse this connection after an upstream failure; say so, so the
            // client does not send its next request into a closed socket.
            session.set_keepalive(None);
            let body = err.body(&ctx.request_id);
            ctx.error = Some(err);
            if let Err(write_err) = respond_json(session, ctx, status, body).await {
                tracing::debug!(error = %write_err, "could not write error response");
            }
        } else {
            ctx.error = Some(err);
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if !ctx.outcome_recorded {
            // Admitted but never answered: a timeout counts against the target; anything
            // else (the client left, Latchkey refused) just frees a probe slot.
            match &ctx.error {
                Some(e) if e.code == "upstream_timeout" => {
                    record_outcome(&self.state, ctx, Outcome::Timeout)
                }
                Some(e) if e.code == "upstream_unavailable" => {
                    record_outcome(&self.state, ctx, Outcome::ConnectError)
                }
                _ => {
                    if let (Some(t), Some(k)) = (&ctx.target, &ctx.key) {
                        if t.probe {
                            self.state.circuits.cancel_probe(&k.tenant, &t.provider);
                        }
                    }
                }
            }
        }
        if !ctx.audit {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16() as i64)
            .or(ctx.error.as_ref().map(|e| e.status as i64));
        let (tenant, actor) = match &ctx.key {
            Some(k) => (k.tenant.as_str(), format!("key:{}", k.id)),
            None => (
                latchkey_vault::model::DEFAULT_TENANT,
                "anonymous".to_string(),
            ),
        };
        let decision = match (&ctx.error, &ctx.verdict) {
            (Some(e), _) => format!("deny:{}", e.code),
            (None, Some(v)) if !v.shadow => v.action.as_str().to_string(),
            (None, _) => "allow".to_string(),
        };
        let provider_id = ctx
            .provider
            .as_ref()
            .map_or("none", |p| p.provider.id.as_str());
        let settled = if ctx.charge.is_some() || ctx.metering.is_some() {
            metering::settle(
                &self.state,
                ctx.key.as_deref(),
                provider_id,
                ctx.model.as_deref(),
                ctx.metering.take(),
                ctx.charge.take(),
            )
            .await
        } else {
            None
        };
        let elapsed = ctx.started.elapsed();
        self.state.metrics.observe_request(
            ctx.provider
                .as_ref()
                .map_or("none", |p| p.provider.id.as_str()),
            ctx.error.as_ref().map_or("allow", |e| e.code),
            status.unwrap_or(0) as u16,
            elapsed.as_secs_f64(),
        );
        if let Some(sent) = ctx.sent_at {
            let overhead = sent.saturating_duration_since(ctx.started).as_secs_f64();
            self.state.metrics.observe_phases(
                provider_id,
                Some(overhead),
                ctx.ttfb,
                Some(sent.elapsed().as_secs_f64()),
            );
            let request_bytes = session
                .req_header()
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            self.state
                .metrics
                .bytes(provider_id, request_bytes, ctx.response_bytes);
        }
        let path = session.req_header().uri.path();
        // The access log: one structured line per request, never a secret (enable with
        // RUST_LOG=latchkey::access=info; off by default so it costs nothing under load).
        tracing::info!(
            target: "latchkey::access",
            request_id = %ctx.request_id,
            actor = %actor,
            method = %session.req_header().method,
            path,
            provider = provider_id,
            target = ctx.target.as_ref().map(|t| t.provider.as_str()),
            status,
            decision = %decision,
            latency_ms = elapsed.as_millis() as u64,
        );
        let mut event = AuditEvent::now(tenant, &actor, "proxy.request", path, &decision);
        event.provider = ctx.provider.as_ref().map(|p| p.provider.id.clone());
        event.status = status;
        event.latency_ms = Some(elapsed.as_millis() as i64);
        event.request_id = Some(ctx.request_id.clone());
        if ctx.verdict.is_some() || settled.is_some() {
            // Written by hand (see `Verdict::write_json`): this runs on every decided request.
            let mut d = String::with_capacity(320);
            d.push('{');
            if let Some(c) = &ctx.credential {
                d.push_str(r#""credential":"#);
                policy::push_json_str(&mut d, &c.credential_id);
                d.push(',');
            }
            if let Some(v) = &ctx.verdict {
                d.push_str(r#""policy":"#);
                v.write_json(&mut d);
                d.push(',');
            }
            if let Some(s) = &settled {
                let opt = |n: Option<u64>| n.map_or("null".to_string(), |n| n.to_string());
                d.push_str(&format!(
                    r#""usage":{{"input_tokens":{},"output_tokens":{},"charged_tokens":{},"cost_usd":{},"estimated":{},"model":"#,
                    opt(s.usage.map(|u| u.input_tokens)),
                    opt(s.usage.map(|u| u.output_tokens)),
                    s.tokens,
                    s.cost_micros as f64 / 1_000_000.0,
                    s.estimated,
                ));
                policy::push_opt_str(&mut d, ctx.model.as_deref());
                d.push_str("},");
            }
            d.pop();
            d.push('}');
            event.detail = Some(d);
        } else if let Some(c) = &ctx.credential {
            // Credential ids are `cred_` + base62, so no JSON escaping is needed.
            event.detail = Some(format!(r#"{{"credential":"{}"}}"#, c.credential_id));
        }
        self.state.audit.record(event);
    }
}
