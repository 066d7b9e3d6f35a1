//! Property tests across the resilience modules.

use proptest::prelude::*;

use super::circuit::{Admission, Circuit, CircuitConfig, Outcome, State, StateKind};
use super::failover::{pick, Target};
use super::retry::{is_idempotent_method, FailureKind, GiveUpReason, RetryDecision, RetryPolicy};

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::ServerError),
        Just(Outcome::Timeout),
        Just(Outcome::ConnectError),
        Just(Outcome::RateLimited),
    ]
}

fn small_config() -> impl Strategy<Value = CircuitConfig> {
    (
        1u64..5_000,
        1u32..20,
        1u32..10,
        0.0f64..=1.0,
        1u64..3_000,
        0u64..20_000,
        1u32..5,
        any::<bool>(),
    )
        .prop_map(
            |(window_ms, buckets, min_requests, failure_rate, cooldown_ms, max, probes, rl)| {
                CircuitConfig {
                    window_ms,
                    buckets,
                    min_requests,
                    failure_rate,
                    cooldown_ms,
                    max_cooldown_ms: max,
                    half_open_probes: probes,
                    count_rate_limited_as_failure: rl,
                }
            },
        )
}

/// Any config at all, out-of-range values included.
fn wild_config() -> impl Strategy<Value = CircuitConfig> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<f64>(),
        any::<u64>(),
        any::<u64>(),
        0u32..3_000,
        any::<bool>(),
    )
        .prop_map(
            |(window_ms, buckets, min_requests, failure_rate, cooldown_ms, max, probes, rl)| {
                CircuitConfig {
                    window_ms,
                    buckets,
                    min_requests,
                    failure_rate,
                    cooldown_ms,
                    max_cooldown_ms: max,
                    half_open_probes: probes,
                    count_rate_limited_as_failure: rl,
                }
            },
        )
}

/// What a well-behaved gateway does to a circuit.
#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Admit,
    /// Report the outcome of the oldest live probe (if any).
    ReportProbe(Outcome),
    /// Report an ordinary request's outcome.
    Record(Outcome),
    /// Drop the oldest live probe without an outcome.
    CancelProbe,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u64..2_000).prop_map(Op::Advance),
        4 => Just(Op::Admit),
        2 => outcome().prop_map(Op::ReportProbe),
        4 => outcome().prop_map(Op::Record),
        1 => Just(Op::CancelProbe),
    ]
}

fn check_snapshot(circuit: &Circuit, now: u64) {
    let snap = circuit.snapshot(now);
    assert!(snap.failures <= snap.requests, "{snap:?}");
    assert!(snap.rate_limited <= snap.requests, "{snap:?}");
    assert!((0.0..=1.0).contains(&snap.failure_rate), "{snap:?}");
    assert!(snap.probes_in_flight <= circuit.config().half_open_probes);
    match snap.state {
        StateKind::Closed => {
            assert_eq!(snap.retry_after_ms, None);
            assert_eq!(snap.opened_at, None);
        }
        StateKind::Open => {
            assert!(snap.retry_after_ms.is_some_and(|ms| ms >= 1));
            assert!(snap.opened_at.is_some());
        }
        StateKind::HalfOpen => assert!(snap.opened_at.is_some()),
    }
}

proptest! {
    /// Driven the way the gateway drives it, the breaker never has more than
    /// `half_open_probes` live probes out at once, and its reports stay consistent.
    #[test]
    fn never_more_probes_than_allowed(
        config in small_config(),
        ops in proptest::collection::vec(op(), 0..300),
    ) {
        let mut circuit = Circuit::new(config);
        let lease = circuit.config().cooldown_ms;
        let limit = circuit.config().half_open_probes as usize;
        let mut now = 0u64;
        // Admission times of probes the model still considers live.
        let mut live: Vec<u64> = Vec::new();
        for op in ops {
            live.retain(|&at| at + lease > now);
            match op {
                Op::Advance(ms) => now += ms,
                Op::Admit => {
                    let before = circuit.state(now);
                    match circuit.admit(now) {
                        Admission::Allow => prop_assert_eq!(before, State::Closed),
                        Admission::Probe => {
                            live.push(now);
                            prop_assert!(live.len() <= limit, "{} live probes > {}", live.len(), limit);
                        }
                        Admission::Reject { retry_after_ms } => {
                            prop_assert!(retry_after_ms >= 1);
                            prop_assert!(before != State::Closed);
                        }
                    }
                }
                Op::ReportProbe(outcome) => {
                    if !live.is_empty() {
                        live.remove(0);
                        circuit.record(now, outcome, true);
                    }
                }
                Op::Record(outcome) => circuit.record(now, outcome, false),
                Op::CancelProbe => {
                    if !live.is_empty() {
                        live.remove(0);
                        circuit.cancel_probe(now);
                    }
                }
            }
            if let State::HalfOpen { in_flight } = circuit.state(now) {
                prop_assert!(in_flight as usize <= limit);
            }
            check_snapshot(&circuit, now);
        }
    }

    /// Arbitrary configs, arbitrary (even backwards) times and arbitrary misuse never panic.
    #[test]
    fn arbitrary_sequences_never_panic(
        config in wild_config(),
        ops in proptest::collection::vec(
            (any::<u64>(), 0u8..5, outcome(), any::<bool>()),
            0..200,
        ),
    ) {
        let mut circuit = Circuit::new(config);
        for (now, kind, outcome, was_probe) in ops {
            match kind {
                0 => {
                    let _ = circuit.admit(now);
                }
                1 => circuit.record(now, outcome, was_probe),
                2 => circuit.cancel_probe(now),
                3 => {
                    let _ = circuit.is_available(now);
                }
                _ => circuit.reset(),
            }
            check_snapshot(&circuit, now);
        }
    }

    /// Closed circuits only open once enough requests were counted.
    #[test]
    fn never_opens_below_min_requests(
        config in small_config(),
        outcomes in proptest::collection::vec(outcome(), 0..30),
    ) {
        let min = config.min_requests as usize;
        let mut circuit = Circuit::new(config);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            circuit.record(0, outcome, false);
            if i + 1 < min {
                prop_assert_eq!(circuit.state(0), State::Closed);
            }
        }
    }

    /// 429s alone never open a circuit unless configured to.
    #[test]
    fn rate_limits_alone_never_trip(
        mut config in small_config(),
        times in proptest::collection::vec(0u64..100, 0..100),
    ) {
        config.count_rate_limited_as_failure = false;
        let mut circuit = Circuit::new(config);
        let mut now = 0;
        for dt in times {
            now += dt;
            prop_assert_eq!(circuit.admit(now), Admission::Allow);
            circuit.record(now, Outcome::RateLimited, false);
        }
    }

    /// `pick` never returns a tried, unavailable or drained target, always prefers the lowest
    /// eligible priority, finds something whenever something is eligible, and is deterministic.
    #[test]
    fn pick_respects_tried_and_availability(
        specs in proptest::collection::vec((0usize..8, 0u32..5, 0u32..4), 0..12),
        tried_ids in proptest::collection::vec(0usize..8, 0..5),
        down_ids in proptest::collection::vec(0usize..8, 0..5),
        random in any::<u64>(),
    ) {
        let targets: Vec<Target> = specs
            .iter()
            .map(|&(id, weight, priority)| Target { id: format!("t{id}"), weight, priority })
            .collect();
        let tried: Vec<String> = tried_ids.iter().map(|i| format!("t{i}")).collect();
        let down: Vec<String> = down_ids.iter().map(|i| format!("t{i}")).collect();
        let available = |id: &str| !down.iter().any(|d| d == id);
        let eligible: Vec<&Target> = targets
            .iter()
            .filter(|t| t.weight > 0 && !tried.contains(&t.id) && available(&t.id))
            .collect();
        let picked = pick(&targets, available, &tried, random);
        match picked {
            None => prop_assert!(eligible.is_empty()),
            Some(t) => {
                prop_assert!(!tried.contains(&t.id));
                prop_assert!(available(&t.id));
                prop_assert!(t.weight > 0);
                let best = eligible.iter().map(|e| e.priority).min();
                prop_assert_eq!(Some(t.priority), best);
            }
        }
        prop_assert_eq!(picked, pick(&targets, available, &tried, random));
    }

    /// Every retry wait is within `max_ms`, and the safety rules hold for any input.
    #[test]
    fn retry_decisions_are_bounded_and_safe(
        max_attempts in 0u32..10,
        base_ms in any::<u64>(),
        max_ms in 0u64..1_000_000,
        attempt in any::<u32>(),
        method in prop_oneof![
            Just("GET".to_string()), Just("POST".to_string()), Just("PATCH".to_string()),
            Just("PUT".to_string()), Just("DELETE".to_string()), "[A-Za-z]{0,8}",
        ],
        key in any::<bool>(),
        failure in prop_oneof![
            Just(FailureKind::ConnectFailed),
            Just(FailureKind::ResetBeforeResponse),
            Just(FailureKind::TimeoutBeforeResponse),
            Just(FailureKind::AfterFirstByte),
            any::<u16>().prop_map(FailureKind::Status),
            (any::<u16>(), any::<u64>()).prop_map(|(status, retry_after_ms)| {
                FailureKind::StatusWithRetryAfter { status, retry_after_ms }
            }),
        ],
        random in any::<u64>(),
    ) {
        let policy = RetryPolicy { max_attempts, base_ms, max_ms };
        let backoff = policy.backoff_ms(attempt, random);
        prop_assert!(backoff <= max_ms);
        let decision = policy.decide(attempt, &method, key, failure, random);
        if let RetryDecision::RetryAfter(wait) = decision {
            prop_assert!(wait <= max_ms);
            prop_assert!(u64::from(attempt) + 1 < u64::from(max_attempts));
            prop_assert!(failure != FailureKind::AfterFirstByte);
            if failure != FailureKind::ConnectFailed {
                prop_assert!(key || is_idempotent_method(&method));
            }
        }
        if failure == FailureKind::AfterFirstByte {
            prop_assert_eq!(decision, RetryDecision::GiveUp(GiveUpReason::AfterFirstByte));
        }
    }
}
