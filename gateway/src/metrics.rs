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
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
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
