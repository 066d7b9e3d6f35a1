//! Prometheus metrics of the data plane, served at `/metrics` on the admin listener.
//!
//! Label values are bounded: providers come from the catalog (`none` before one is known),
//! outcomes are `allow` or one of Latchkey's error codes, statuses are classes (`2xx`…).
//!
//! ```
//! let m = latchkey_gateway::metrics::Metrics::new();
//! m.observe_request("openai", "ip_locked", 403, 0.0004);
//! let text = m.render();
//! assert!(text.contains(r#"latchkey_requests_total{outcome="ip_locked",provider="openai",status="4xx"} 1"#));
//! ```

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The gateway's metrics and the registry they live in.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    suspensions: IntCounter,
    ip_binds: IntCounter,
    policy_decisions: IntCounterVec,
    limit_refusals: IntCounterVec,
    tokens: IntCounterVec,
    spend: prometheus::CounterVec,
    holds: IntCounterVec,
    upstream_outcomes: IntCounterVec,
    circuit_state: prometheus::IntGaugeVec,
    overhead: HistogramVec,
    upstream: HistogramVec,
    ttfb: HistogramVec,
    bytes: IntCounterVec,
    cache: IntCounterVec,
    store: HistogramVec,
    audit_depth: prometheus::IntGauge,
    audit_lag: prometheus::Gauge,
}

/// Hit and miss counters of one cache, and the store latency of its loads.
#[derive(Clone)]
pub struct CacheObserver {
    /// Lookups answered from memory.
    pub hit: IntCounter,
    /// Lookups that went to the store.
    pub miss: IntCounter,
    /// Time of the store call a miss made.
    pub store: prometheus::Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "latchkey_requests_total",
                "Requests through the gateway, by provider, outcome (allow or the refusal code) and status class.",
            ),
            &["provider", "outcome", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "latchkey_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by provider.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["provider"],
        )
        .expect("valid metric");
        let suspensions = IntCounter::new(
            "latchkey_key_suspensions_total",
            "Proxy keys suspended automatically after a velocity spike.",
        )
        .expect("valid metric");
        let ip_binds = IntCounter::new(
            "latchkey_key_ip_binds_total",
            "Auto-bind keys bound to their first client IP.",
        )
        .expect("valid metric");
        let policy_decisions = IntCounterVec::new(
            Opts::new(
                "latchkey_policy_decisions_total",
                "Policy decisions, by policy, action and mode (enforce or shadow).",
            ),
            &["policy", "action", "mode"],
        )
        .expect("valid metric");
        let limit_refusals = IntCounterVec::new(
            Opts::new(
                "latchkey_limit_refusals_total",
                "Requests refused by a rate limit or budget, by scope (key, workload, tenant) and limit.",
            ),
            &["scope", "limit"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new(
                "latchkey_tokens_total",
                "Tokens metered from provider responses, by provider and direction (input, output).",
            ),
            &["provider", "direction"],
        )
        .expect("valid metric");
        let spend = prometheus::CounterVec::new(
            Opts::new(
                "latchkey_spend_usd_total",
                "Spend metered from provider responses and priced from the price table, in US dollars.",
            ),
            &["provider"],
        )
        .expect("valid metric");
        let holds = IntCounterVec::new(
            Opts::new(
                "latchkey_holds_total",
                "Requests held for approval, by outcome (approved, rejected, timeout, queue_full).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let upstream_outcomes = IntCounterVec::new(
            Opts::new(
                "latchkey_upstream_attempts_total",
                "Attempts sent to provider targets, by target and outcome (success, server_error, timeout, connect_error, rate_limited).",
            ),
            &["target", "outcome"],
        )
        .expect("valid metric");
        let circuit_state = prometheus::IntGaugeVec::new(
            Opts::new(
                "latchkey_circuit_state",
                "Circuit breaker state per tenant and provider target: 0 closed, 1 open, 2 half-open.",
            ),
            &["tenant", "target"],
        )
        .expect("valid metric");
        let latency = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
                &["provider"],
            )
            .expect("valid metric")
        };
        let overhead = latency(
            "latchkey_gateway_overhead_seconds",
            "Time Latchkey spent before handing the request to the provider connection (checks, policy, limits, credential, connect), by provider.",
        );
        let upstream = latency(
            "latchkey_upstream_duration_seconds",
            "Time from sending the request to the provider until the end of its response, by provider.",
        );
        let ttfb = latency(
            "latchkey_upstream_ttfb_seconds",
            "Time from sending the request to the provider until its response header arrived, by provider.",
        );
        let bytes = IntCounterVec::new(
            Opts::new(
                "latchkey_bytes_total",
                "Body bytes proxied, by provider and direction (request, response).",
            ),
            &["provider", "direction"],
        )
        .expect("valid metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "latchkey_cache_lookups_total",
                "In-memory cache lookups, by cache (keys, credentials) and result (hit, miss).",
            ),
            &["cache", "result"],
        )
        .expect("valid metric");
        let store = HistogramVec::new(
            HistogramOpts::new(
                "latchkey_store_duration_seconds",
                "Store calls made on cache misses, by operation.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 5.0,
            ]),
            &["op"],
        )
        .expect("valid metric");
        let audit_depth = prometheus::IntGauge::new(
            "latchkey_audit_queue_depth",
            "Audit events queued and not yet stored.",
        )
        .expect("valid metric");
        let audit_lag = prometheus::Gauge::new(
            "latchkey_audit_lag_seconds",
            "How long the oldest event of the last stored audit batch waited in the queue.",
        )
        .expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(overhead.clone()),
            Box::new(upstream.clone()),
            Box::new(ttfb.clone()),
            Box::new(bytes.clone()),
            Box::new(cache.clone()),
            Box::new(store.clone()),
            Box::new(audit_depth.clone()),
            Box::new(audit_lag.clone()),
            Box::new(upstream_outcomes.clone()),
            Box::new(circuit_state.clone()),
            Box::new(duration.clone()),
            Box::new(suspensions.clone()),
            Box::new(ip_binds.clone()),
            Box::new(policy_decisions.clone()),
            Box::new(limit_refusals.clone()),
            Box::new(tokens.clone()),
            Box::new(spend.clone()),
            Box::new(holds.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            duration,
            suspensions,
            ip_binds,
            policy_decisions,
            limit_refusals,
            tokens,
            spend,
            holds,
            upstream_outcomes,
            circuit_state,
            overhead,
            upstream,
            ttfb,
            bytes,
            cache,
            store,
            audit_depth,
            audit_lag,
        }
    }

    /// The hit/miss counters of cache `cache` and the latency histogram of store operation `op`.
    pub fn cache_observer(&self, cache: &str, op: &str) -> CacheObserver {
        CacheObserver {
            hit: self.cache.with_label_values(&[cache, "hit"]),
            miss: self.cache.with_label_values(&[cache, "miss"]),
            store: self.store.with_label_values(&[op]),
        }
    }

    /// Records the phases of one proxied request (seconds; `None` where it did not get there).
    pub fn observe_phases(
        &self,
        provider: &str,
        overhead: Option<f64>,
        ttfb: Option<f64>,
        upstream: Option<f64>,
    ) {
        if let Some(v) = overhead {
            self.overhead.with_label_values(&[provider]).observe(v);
        }
        if let Some(v) = ttfb {
            self.ttfb.with_label_values(&[provider]).observe(v);
        }
        if let Some(v) = upstream {
            self.upstream.with_label_values(&[provider]).observe(v);
        }
    }

    /// Adds proxied body bytes.
    pub fn bytes(&self, provider: &str, request: u64, response: u64) {
        if request > 0 {
            self.bytes
                .with_label_values(&[provider, "request"])
                .inc_by(request);
        }
        if response > 0 {
            self.bytes
                .with_label_values(&[provider, "response"])
                .inc_by(response);
        }
    }

    /// Sets the audit queue gauges.
    pub fn audit_queue(&self, depth: Option<u64>, lag_seconds: Option<f64>) {
        if let Some(d) = depth {
            self.audit_depth.set(d as i64);
        }
        if let Some(l) = lag_seconds {
            self.audit_lag.set(l);
        }
    }

    /// Counts one attempt's outcome at a provider target.
    pub fn upstream_outcome(&self, target: &str, outcome: &str) {
        self.upstream_outcomes
            .with_label_values(&[target, outcome])
            .inc();
    }

    /// Sets a circuit's state gauge (0 closed, 1 open, 2 half-open).
    pub fn circuit_state(&self, tenant: &str, target: &str, state: i64) {
        self.circuit_state
            .with_label_values(&[tenant, target])
            .set(state);
    }

    /// Counts a policy decision.
    pub fn policy_decision(&self, policy: &str, action: &str, mode: &str) {
        self.policy_decisions
            .with_label_values(&[policy, action, mode])
            .inc();
    }

    /// Counts a refusal by a rate limit or budget.
    pub fn limit_refused(&self, scope: &str, limit: &str) {
        self.limit_refusals.with_label_values(&[scope, limit]).inc();
    }

    /// Adds metered usage and its price.
    pub fn usage(&self, provider: &str, input: u64, output: u64, usd: f64) {
        self.tokens
            .with_label_values(&[provider, "input"])
            .inc_by(input);
        self.tokens
            .with_label_values(&[provider, "output"])
            .inc_by(output);
        if usd > 0.0 {
            self.spend.with_label_values(&[provider]).inc_by(usd);
        }
    }

    /// Counts how a hold ended.
    pub fn hold(&self, outcome: &str) {
        self.holds.with_label_values(&[outcome]).inc();
    }

    /// Counts one finished request.
    pub fn observe_request(&self, provider: &str, outcome: &str, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "none",
        };
        self.requests
            .with_label_values(&[provider, outcome, class])
            .inc();
        self.duration
            .with_label_values(&[provider])
            .observe(seconds);
    }

    /// Counts an automatic key suspension.
    pub fn key_suspended(&self) {
        self.suspensions.inc();
    }

    /// Counts an auto-bind.
    pub fn ip_bound(&self) {
        self.ip_binds.inc();
    }

    /// The registry, for callers that add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
