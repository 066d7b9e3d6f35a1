//! Resilience decisions for the upstream leg: circuit breakers, failover target selection and
//! retry policy.
//!
//! Pure logic like the rest of this crate: no I/O, no clock reads, no randomness of its own.
//! Time is passed in as `u64` milliseconds (`now_ms`) on whatever monotonic-enough clock the
//! caller uses, and jitter as a caller-supplied random `u64`, so every decision is reproducible in
//! tests.
//!
//! - [`circuit`]: one [`Circuit`](circuit::Circuit) per (tenant, provider target) — a bucketed
//!   rolling window of [`Outcome`](circuit::Outcome)s, Closed → Open → HalfOpen → Closed, with
//!   leased probes and a [`CircuitSnapshot`](circuit::CircuitSnapshot) for
//!   `GET /api/v1/circuits`, `latchkey status` and metrics.
//! - [`failover`]: [`pick`](failover::pick) the next target from prioritized, weighted lists,
//!   skipping targets already tried and those whose circuit would reject.
//! - [`retry`]: [`RetryPolicy::decide`](retry::RetryPolicy::decide) whether a failed attempt may
//!   be repeated (connect failures always; otherwise idempotent methods or requests with an
//!   idempotency key; never after the first response byte) and how long to wait.
//!
//! # How the gateway combines them
//!
//! ```
//! use std::collections::HashMap;
//! use latchkey_policy::resilience::circuit::{Circuit, CircuitConfig, Outcome};
//! use latchkey_policy::resilience::failover::{pick, Target};
//! use latchkey_policy::resilience::retry::{FailureKind, RetryDecision, RetryPolicy};
//!
//! let targets = vec![Target::new("openai-us", 0), Target::new("openai-eu", 1)];
//! // In the gateway: one Mutex<Circuit> per (tenant, target), shared by all requests.
//! let mut circuits: HashMap<String, Circuit> = targets
//!     .iter()
//!     .map(|t| (t.id.clone(), Circuit::new(CircuitConfig::default())))
//!     .collect();
//! let policy = RetryPolicy::default();
//! // A stand-in upstream: the US region refuses connections.
//! let send = |id: &str| if id == "openai-us" { Err(FailureKind::ConnectFailed) } else { Ok(200u16) };
//!
//! let (now_ms, random) = (0, 12_345); // from the caller's clock and RNG
//! let mut tried: Vec<String> = Vec::new();
//! let mut attempt = 0;
//! let answer = loop {
//!     let available = |id: &str| circuits.get(id).is_some_and(|c| c.is_available(now_ms));
//!     let Some(target) = pick(&targets, available, &tried, random) else {
//!         break Err("upstream_unavailable"); // 503 + Retry-After from the circuits
//!     };
//!     let Some(circuit) = circuits.get_mut(&target.id) else { break Err("no circuit") };
//!     let admission = circuit.admit(now_ms);
//!     if !admission.is_allowed() {
//!         tried.push(target.id.clone()); // lost a race for the probe slot: fail over
//!         continue;
//!     }
//!     match send(&target.id) {
//!         Ok(status) => {
//!             circuit.record(now_ms, Outcome::from_status(status), admission.is_probe());
//!             break Ok((target.id.clone(), status));
//!         }
//!         Err(failure) => {
//!             circuit.record(now_ms, Outcome::ConnectError, admission.is_probe());
//!             tried.push(target.id.clone());
//!             match policy.decide(attempt, "POST", false, failure, random) {
//!                 RetryDecision::RetryAfter(_wait_ms) => attempt += 1, // sleep, then go again
//!                 RetryDecision::GiveUp(_) => break Err("upstream_unavailable"),
//!             }
//!         }
//!     }
//! };
//! assert_eq!(answer, Ok(("openai-eu".to_string(), 200)));
//! ```

// Every public item here is part of the gateway's contract; keep it documented.
#![deny(missing_docs)]

pub mod circuit;
pub mod failover;
pub mod retry;

#[cfg(test)]
mod tests;
