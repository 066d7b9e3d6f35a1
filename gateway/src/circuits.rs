//! Circuit breakers, one per (tenant, provider target), shared by every request of the process.
//!
//! The decisions are [`latchkey_policy::resilience::circuit`]'s; this module keeps the circuits,
//! feeds them a monotonic clock, and shows them to the admin API and metrics. A lock is held only
//! for one bookkeeping call, never across an upstream request.

use latchkey_policy::resilience::circuit::{
    Admission, Circuit, CircuitConfig, CircuitSnapshot, Outcome,
};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Every circuit of the process.
pub struct CircuitBoard {
    config: CircuitConfig,
    started: Instant,
    circuits: Mutex<HashMap<(String, String), Circuit>>,
}

/// One circuit as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitView {
    /// Tenant.
    pub tenant: String,
    /// Provider target (a provider id).
    pub target: String,
    /// State and window counts.
    #[serde(flatten)]
    pub snapshot: CircuitSnapshot,
}

impl CircuitBoard {
    /// A board whose circuits all use `config`.
    pub fn new(config: CircuitConfig) -> Self {
        CircuitBoard {
            config,
            started: Instant::now(),
            circuits: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn with<T>(&self, tenant: &str, target: &str, f: impl FnOnce(&mut Circuit, u64) -> T) -> T {
        let now = self.now_ms();
        // Circuits are only changed by whole calls; a panic in one leaves them consistent.
        let mut map = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_string(), target.to_string());
        let circuit = map
            .entry(key)
            .or_insert_with(|| Circuit::new(self.config.clone()));
        f(circuit, now)
    }

    /// Whether a request to `target` would be let through now (without taking a probe slot).
    pub fn is_available(&self, tenant: &str, target: &str) -> bool {
        let now = self.now_ms();
        let map = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(tenant.to_string(), target.to_string()))
            .is_none_or(|c| c.is_available(now))
    }

    /// Asks to send one request to `target`.
    pub fn admit(&self, tenant: &str, target: &str) -> Admission {
        self.with(tenant, target, |c, now| c.admit(now))
    }

    /// Records how an admitted request ended.
    pub fn record(&self, tenant: &str, target: &str, outcome: Outcome, was_probe: bool) {
        self.with(tenant, target, |c, now| c.record(now, outcome, was_probe));
    }

    /// Gives a probe slot back (the request never got an answer, e.g. the client left).
    pub fn cancel_probe(&self, tenant: &str, target: &str) {
        self.with(tenant, target, |c, now| c.cancel_probe(now));
    }

    /// Closes a circuit by hand (an operator knows the provider is back).
    pub fn reset(&self, tenant: &str, target: &str) -> bool {
        let mut map = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&(tenant.to_string(), target.to_string())) {
            Some(c) => {
                c.reset();
                true
            }
            None => false,
        }
    }

    /// Every circuit of `tenant` (`None`: all tenants), sorted by tenant and target.
    pub fn snapshot(&self, tenant: Option<&str>) -> Vec<CircuitView> {
        let now = self.now_ms();
        let map = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<CircuitView> = map
            .iter()
            .filter(|((t, _), _)| tenant.is_none_or(|want| want == t))
            .map(|((t, target), c)| CircuitView {
                tenant: t.clone(),
                target: target.clone(),
                snapshot: c.snapshot(now),
            })
            .collect();
        v.sort_by(|a, b| (&a.tenant, &a.target).cmp(&(&b.tenant, &b.target)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_policy::resilience::circuit::StateKind;

    #[test]
    fn opens_per_tenant_and_target_and_resets() {
        let board = CircuitBoard::new(CircuitConfig {
            min_requests: 2,
            ..CircuitConfig::default()
        });
        for _ in 0..2 {
            assert!(board.admit("t", "openai").is_allowed());
            board.record("t", "openai", Outcome::ServerError, false);
        }
        assert!(!board.admit("t", "openai").is_allowed());
        assert!(!board.is_available("t", "openai"));
        assert!(
            board.is_available("u", "openai"),
            "another tenant is unaffected"
        );
        assert!(board.is_available("t", "anthropic"));
        let views = board.snapshot(Some("t"));
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].snapshot.state, StateKind::Open);
        assert!(board.reset("t", "openai"));
        assert!(board.admit("t", "openai").is_allowed());
    }
}
