//! Circuit breaker for one (tenant, provider target): a rolling window of outcomes decides when
//! to stop sending traffic, and half-open probes decide when to start again.
//!
//! # States
//!
//! ```text
//!            failures/requests >= failure_rate            cooldown elapsed,
//!            and requests >= min_requests                 first admit becomes a probe
//!  Closed ─────────────────────────────────▶ Open ─────────────────────────────────▶ HalfOpen
//!    ▲                                        ▲                                         │
//!    │                                        └──── probe failed (cooldown grows) ──────┤
//!    └──────────────────── probe succeeded (window reset) ──────────────────────────────┘
//! ```
//!
//! - **Closed**: every request is [`Admission::Allow`]ed and its [`Outcome`] goes into the window.
//! - **Open**: requests are [`Admission::Reject`]ed with the time left until the cooldown ends,
//!   which the gateway turns into `upstream_unavailable` + `Retry-After`, or a failover.
//! - **HalfOpen**: at most [`CircuitConfig::half_open_probes`] requests are let through as
//!   [`Admission::Probe`]s; everything else is rejected until a probe reports.
//!
//! # Counting
//!
//! The window spans [`CircuitConfig::window_ms`], split into [`CircuitConfig::buckets`] fixed
//! slices of `window_ms / buckets` milliseconds (rounded down), so memory per circuit is fixed. A
//! slice is reused once it falls out of the window, so the effective window is between
//! `buckets - 1` and `buckets` slices long.
//! 5xx, timeouts and connect errors are failures. 429s are counted separately
//! ([`CircuitSnapshot::rate_limited`]): by default they are neither failures nor part of the
//! denominator of the failure rate, so a rate-limited provider never trips the breaker and a burst
//! of 429s does not dilute real failures either. With
//! [`CircuitConfig::count_rate_limited_as_failure`] they count as ordinary failures.
//!
//! Only outcomes of requests admitted while closed count toward the window. Outcomes of ordinary
//! requests that report while the circuit is open or half-open (they were admitted before it
//! opened) are ignored: they describe the past, and the probes describe the present.
//!
//! # Probes
//!
//! A probe holds a *lease* that expires [`CircuitConfig::cooldown_ms`] after it was admitted, so a
//! probe whose caller never reports (dropped future, crashed task) cannot wedge the breaker in
//! half-open: once the lease expires, the next request becomes a probe. Leases are anonymous: a
//! probe report (or [`Circuit::cancel_probe`]) releases the oldest outstanding lease. Report a
//! probe as soon as its status is known (response headers), not at the end of a long stream.
//!
//! A probe's outcome decides alone: a success closes the circuit and clears the window; a failure
//! reopens it. A 429 from a probe (when 429s are not failures) is neutral: the lease is released
//! and the circuit stays half-open, so another probe may go.
//!
//! Each consecutive failed probe doubles the cooldown, up to [`CircuitConfig::max_cooldown_ms`]
//! (set it to `cooldown_ms` or lower for a fixed cooldown); closing resets it.
//!
//! # Time and threads
//!
//! Time is a `u64` count of milliseconds on any clock the caller likes (milliseconds since process
//! start from an `Instant`, or Unix milliseconds); nothing here reads a clock. A `now_ms` older
//! than the newest one seen (clock skew between callers) is treated as the newest one: time never
//! runs backwards inside a circuit.
//!
//! [`Circuit`] is plain data (`Send + Sync`), and [`Circuit::admit`] / [`Circuit::record`] take
//! `&mut self`: the gateway keeps one per (tenant, target) behind a `Mutex` (or a sharded map of
//! them). Every call does `O(buckets + half_open_probes)` work without allocating, so holding the
//! lock for the call is cheap; never hold it across the upstream request.

use serde::{Deserialize, Serialize};

/// Most window slices a circuit keeps; a larger [`CircuitConfig::buckets`] is clamped to this.
pub const MAX_BUCKETS: u32 = 1024;
/// Most concurrent half-open probes; a larger [`CircuitConfig::half_open_probes`] is clamped.
pub const MAX_HALF_OPEN_PROBES: u32 = 1024;

/// What happened to one request sent to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The target answered with anything but a 5xx or a 429 (4xx client errors say nothing
    /// about the target's health).
    Success,
    /// The target answered 5xx.
    ServerError,
    /// No response in time.
    Timeout,
    /// The connection could not be made (DNS, TCP, TLS) or broke before a response.
    ConnectError,
    /// The target answered 429. Counted separately unless
    /// [`CircuitConfig::count_rate_limited_as_failure`].
    RateLimited,
}

impl Outcome {
    /// The outcome of a response with this HTTP status: 429 is [`Outcome::RateLimited`], 5xx is
    /// [`Outcome::ServerError`], anything else [`Outcome::Success`].
    ///
    /// ```
    /// use latchkey_policy::resilience::circuit::Outcome;
    /// assert_eq!(Outcome::from_status(200), Outcome::Success);
    /// assert_eq!(Outcome::from_status(404), Outcome::Success);
    /// assert_eq!(Outcome::from_status(429), Outcome::RateLimited);
    /// assert_eq!(Outcome::from_status(503), Outcome::ServerError);
    /// ```
    pub fn from_status(status: u16) -> Outcome {
        match status {
            429 => Outcome::RateLimited,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }

    /// Whether this outcome counts as a failure, given whether 429s do.
    pub fn is_failure(self, count_rate_limited_as_failure: bool) -> bool {
        match self {
            Outcome::Success => false,
            Outcome::ServerError | Outcome::Timeout | Outcome::ConnectError => true,
            Outcome::RateLimited => count_rate_limited_as_failure,
        }
    }

    /// Stable lower-case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
            Outcome::ConnectError => "connect_error",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// Breaker tuning. Every field defaults, so a partial TOML/JSON table loads.
///
/// Out-of-range values never panic: [`Circuit::new`] clamps them (see each field), and
/// [`CircuitConfig::validate`] reports them for config loaders that prefer to refuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitConfig {
    /// Rolling window length in milliseconds (default 30 000). Clamped up to `buckets`, so each
    /// slice spans at least 1 ms.
    pub window_ms: u64,
    /// Slices the window is split into (default 10; clamped to `1..=`[`MAX_BUCKETS`]).
    pub buckets: u32,
    /// Fewest counted requests in the window before the breaker may open (default 20; 0 is
    /// treated as 1).
    pub min_requests: u32,
    /// Failure rate (`0.0..=1.0`) at or above which the breaker opens (default 0.5). At least one
    /// failure is always required, so 0.0 means "any failure once `min_requests` is reached".
    /// Clamped to `0.0..=1.0`; NaN means the default.
    pub failure_rate: f64,
    /// How long the breaker stays open before probing, in milliseconds (default 15 000; 0 is
    /// treated as 1). Also the lifetime of a probe lease.
    pub cooldown_ms: u64,
    /// Cap for the cooldown, which doubles after each consecutive failed probe (default
    /// 120 000). A value at or below `cooldown_ms` keeps the cooldown fixed.
    pub max_cooldown_ms: u64,
    /// Most probes in flight at once while half-open (default 1; clamped to
    /// `1..=`[`MAX_HALF_OPEN_PROBES`]).
    pub half_open_probes: u32,
    /// Count 429s as failures (default `false`: they are tallied separately and ignored by the
    /// failure rate).
    pub count_rate_limited_as_failure: bool,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            window_ms: 30_000,
            buckets: 10,
            min_requests: 20,
            failure_rate: 0.5,
            cooldown_ms: 15_000,
            max_cooldown_ms: 120_000,
            half_open_probes: 1,
            count_rate_limited_as_failure: false,
        }
    }
}

/// A [`CircuitConfig`] value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CircuitConfigError {
    /// `buckets` is 0 or above [`MAX_BUCKETS`].
    #[error("circuit buckets must be between 1 and {MAX_BUCKETS}, got {0}")]
    Buckets(u32),
    /// `window_ms` is shorter than `buckets` milliseconds.
    #[error("circuit window_ms ({window_ms}) must be at least buckets ({buckets})")]
    WindowTooShort {
        /// The configured window.
        window_ms: u64,
        /// The configured slice count.
        buckets: u32,
    },
    /// `min_requests` is 0.
    #[error("circuit min_requests must be at least 1")]
    MinRequests,
    /// `failure_rate` is NaN or outside `0.0..=1.0`.
    #[error("circuit failure_rate must be between 0.0 and 1.0, got {0}")]
    FailureRate(f64),
    /// `cooldown_ms` is 0.
    #[error("circuit cooldown_ms must be at least 1")]
    Cooldown,
    /// `half_open_probes` is 0 or above [`MAX_HALF_OPEN_PROBES`].
    #[error("circuit half_open_probes must be between 1 and {MAX_HALF_OPEN_PROBES}, got {0}")]
    HalfOpenProbes(u32),
}

impl CircuitConfig {
    /// Check every field is in range; [`Circuit::new`] would otherwise clamp silently.
    ///
    /// ```
    /// use latchkey_policy::resilience::circuit::{CircuitConfig, CircuitConfigError};
    /// assert!(CircuitConfig::default().validate().is_ok());
    /// let bad = CircuitConfig { failure_rate: 1.5, ..CircuitConfig::default() };
    /// assert_eq!(bad.validate(), Err(CircuitConfigError::FailureRate(1.5)));
    /// ```
    pub fn validate(&self) -> Result<(), CircuitConfigError> {
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(CircuitConfigError::Buckets(self.buckets));
        }
        if self.window_ms < u64::from(self.buckets) {
            return Err(CircuitConfigError::WindowTooShort {
                window_ms: self.window_ms,
                buckets: self.buckets,
            });
        }
        if self.min_requests == 0 {
            return Err(CircuitConfigError::MinRequests);
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(CircuitConfigError::FailureRate(self.failure_rate));
        }
        if self.cooldown_ms == 0 {
            return Err(CircuitConfigError::Cooldown);
        }
        if self.half_open_probes == 0 || self.half_open_probes > MAX_HALF_OPEN_PROBES {
            return Err(CircuitConfigError::HalfOpenProbes(self.half_open_probes));
        }
        Ok(())
    }

    /// The same config with every field clamped into range (what [`Circuit::new`] uses).
    pub fn normalized(&self) -> CircuitConfig {
        let buckets = self.buckets.clamp(1, MAX_BUCKETS);
        let failure_rate = if self.failure_rate.is_nan() {
            CircuitConfig::default().failure_rate
        } else {
            self.failure_rate.clamp(0.0, 1.0)
        };
        let cooldown_ms = self.cooldown_ms.max(1);
        CircuitConfig {
            window_ms: self.window_ms.max(u64::from(buckets)),
            buckets,
            min_requests: self.min_requests.max(1),
            failure_rate,
            cooldown_ms,
            max_cooldown_ms: self.max_cooldown_ms.max(cooldown_ms),
            half_open_probes: self.half_open_probes.clamp(1, MAX_HALF_OPEN_PROBES),
            count_rate_limited_as_failure: self.count_rate_limited_as_failure,
        }
    }
}

/// What the gateway may do with one request, from [`Circuit::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send it, then [`Circuit::record`] the outcome with `was_probe = false`.
    Allow,
    /// Half-open: send it as a probe, then [`Circuit::record`] the outcome with
    /// `was_probe = true` (or [`Circuit::cancel_probe`] if it never got an answer).
    Probe,
    /// Open (or half-open with every probe slot taken): fail fast with `upstream_unavailable`
    /// or fail over. `retry_after_ms` (always ≥ 1) is when the circuit may next let a request
    /// through.
    Reject {
        /// Milliseconds until the circuit may admit again.
        retry_after_ms: u64,
    },
}

impl Admission {
    /// Whether the request may be sent (as an ordinary request or a probe).
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Admission::Reject { .. })
    }

    /// Whether the request is a probe (report it with `was_probe = true`).
    pub fn is_probe(&self) -> bool {
        matches!(self, Admission::Probe)
    }

    /// For a rejection, the `Retry-After` header value: whole seconds, rounded up, at least 1.
    ///
    /// ```
    /// use latchkey_policy::resilience::circuit::Admission;
    /// assert_eq!(Admission::Reject { retry_after_ms: 1 }.retry_after_secs(), Some(1));
    /// assert_eq!(Admission::Reject { retry_after_ms: 15_001 }.retry_after_secs(), Some(16));
    /// assert_eq!(Admission::Allow.retry_after_secs(), None);
    /// ```
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Admission::Reject { retry_after_ms } => Some(retry_after_ms.div_ceil(1000).max(1)),
            _ => None,
        }
    }
}

/// The breaker's state as a request arriving now would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Traffic flows; outcomes are counted.
    Closed,
    /// Traffic is refused until `until_ms`.
    Open {
        /// When the cooldown ends (caller's clock, milliseconds).
        until_ms: u64,
    },
    /// Probing: `in_flight` probes hold unexpired leases.
    HalfOpen {
        /// Outstanding probe leases.
        in_flight: u32,
    },
}

impl State {
    /// The state's name without its data.
    pub fn kind(&self) -> StateKind {
        match self {
            State::Closed => StateKind::Closed,
            State::Open { .. } => StateKind::Open,
            State::HalfOpen { .. } => StateKind::HalfOpen,
        }
    }
}

/// A state's name: serialized as `"closed"`, `"open"`, `"half_open"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// See [`State::Closed`].
    Closed,
    /// See [`State::Open`].
    Open,
    /// See [`State::HalfOpen`].
    HalfOpen,
}

impl StateKind {
    /// `"closed"`, `"open"` or `"half_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Closed => "closed",
            StateKind::Open => "open",
            StateKind::HalfOpen => "half_open",
        }
    }

    /// Gauge value for metrics: closed 0, open 1, half-open 2.
    pub fn as_gauge(self) -> i64 {
        match self {
            StateKind::Closed => 0,
            StateKind::Open => 1,
            StateKind::HalfOpen => 2,
        }
    }
}

/// A point-in-time view of one circuit, for `GET /api/v1/circuits`, `latchkey status` and
/// metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitSnapshot {
    /// The state a request arriving at the snapshot time would see.
    pub state: StateKind,
    /// Outcomes in the rolling window (429s included).
    pub requests: u64,
    /// Failures in the window (429s included only with `count_rate_limited_as_failure`).
    pub failures: u64,
    /// 429s in the window.
    pub rate_limited: u64,
    /// `failures` over the counted requests (`requests`, minus the 429s unless they count as
    /// failures); 0.0 when nothing was counted.
    pub failure_rate: f64,
    /// When the current outage began (the Closed→Open transition; caller's clock, milliseconds);
    /// kept through half-open and reopenings, cleared on close.
    pub opened_at: Option<u64>,
    /// Milliseconds until a request may be admitted, when none would be now.
    pub retry_after_ms: Option<u64>,
    /// Probes holding unexpired leases.
    pub probes_in_flight: u32,
    /// Consecutive failed probes in the current outage (each doubles the cooldown).
    pub reopens: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// `now_ms / bucket_ms` of the slice these counts belong to.
    epoch: u64,
    requests: u32,
    failures: u32,
    rate_limited: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    requests: u64,
    failures: u64,
    rate_limited: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until_ms: u64 },
    HalfOpen,
}

/// One circuit breaker. See the [module docs](self) for states, counting and threading.
///
/// ```
/// use latchkey_policy::resilience::circuit::{Admission, Circuit, CircuitConfig, Outcome, StateKind};
///
/// let config = CircuitConfig { min_requests: 4, cooldown_ms: 1_000, ..CircuitConfig::default() };
/// let mut circuit = Circuit::new(config);
///
/// // Four 503s in a row: 100 % failures over the minimum of 4 requests opens the circuit.
/// for t in 0..4 {
///     assert_eq!(circuit.admit(t), Admission::Allow);
///     circuit.record(t, Outcome::ServerError, false);
/// }
/// assert_eq!(circuit.admit(10), Admission::Reject { retry_after_ms: 993 });
///
/// // After the cooldown one probe goes through; its success closes the circuit.
/// assert_eq!(circuit.admit(1_003), Admission::Probe);
/// assert!(!circuit.admit(1_004).is_allowed()); // only one probe at a time
/// circuit.record(1_050, Outcome::Success, true);
/// assert_eq!(circuit.snapshot(1_050).state, StateKind::Closed);
/// assert_eq!(circuit.admit(1_051), Admission::Allow);
/// ```
#[derive(Debug, Clone)]
pub struct Circuit {
    config: CircuitConfig,
    bucket_ms: u64,
    buckets: Vec<Bucket>,
    phase: Phase,
    /// Expiry times of outstanding probe leases, oldest first; `len() <= half_open_probes`.
    leases: Vec<u64>,
    latest_ms: u64,
    opened_at_ms: Option<u64>,
    reopens: u32,
}

impl Circuit {
    /// A closed circuit with an empty window. The config is [normalized](CircuitConfig::normalized).
    pub fn new(config: CircuitConfig) -> Circuit {
        let config = config.normalized();
        let bucket_ms = (config.window_ms / u64::from(config.buckets)).max(1);
        let slices = usize::try_from(config.buckets).unwrap_or(1);
        let probes = usize::try_from(config.half_open_probes).unwrap_or(1);
        Circuit {
            bucket_ms,
            buckets: vec![Bucket::default(); slices],
            phase: Phase::Closed,
            leases: Vec::with_capacity(probes),
            latest_ms: 0,
            opened_at_ms: None,
            reopens: 0,
            config,
        }
    }

    /// The (normalized) config in use.
    pub fn config(&self) -> &CircuitConfig {
        &self.config
    }

    /// Decide whether a request may go to the target now.
    ///
    /// May move Open→HalfOpen (the cooldown has ended: this request becomes the first probe) and
    /// expires stale probe leases. Every [`Admission::Allow`] and [`Admission::Probe`] should be
    /// followed by one [`Circuit::record`] (or [`Circuit::cancel_probe`] for a probe).
    pub fn admit(&mut self, now_ms: u64) -> Admission {
        let now = self.observe(now_ms);
        match self.phase {
            Phase::Closed => Admission::Allow,
            Phase::Open { until_ms } if now < until_ms => Admission::Reject {
                retry_after_ms: until_ms - now,
            },
            Phase::Open { .. } => {
                self.phase = Phase::HalfOpen;
                self.leases.clear();
                self.take_probe(now)
            }
            Phase::HalfOpen => {
                self.expire_leases(now);
                self.take_probe(now)
            }
        }
    }

    /// Report how a request admitted by [`Circuit::admit`] ended. `was_probe` is whether it was
    /// admitted as [`Admission::Probe`].
    ///
    /// - Closed: the outcome enters the window; the circuit opens if the window now has at least
    ///   `min_requests` counted requests and a failure rate at or above `failure_rate`.
    /// - Half-open, probe: releases the oldest lease; success closes (and clears the window),
    ///   failure reopens with a longer cooldown, a non-failure 429 changes nothing else.
    /// - Open, or half-open and not a probe: ignored (a stale report from before the outage).
    pub fn record(&mut self, now_ms: u64, outcome: Outcome, was_probe: bool) {
        let now = self.observe(now_ms);
        let count_rl = self.config.count_rate_limited_as_failure;
        match self.phase {
            Phase::Closed => {
                self.count(now, outcome);
                self.maybe_trip(now);
            }
            Phase::HalfOpen if was_probe => {
                self.release_lease(now);
                if outcome.is_failure(count_rl) {
                    self.reopen(now);
                } else if outcome != Outcome::RateLimited {
                    self.close();
                }
            }
            Phase::HalfOpen | Phase::Open { .. } => {}
        }
    }

    /// A probe ended without an outcome worth judging (the client went away before the target
    /// answered): release its lease so another probe may go at once, without changing state.
    /// Does nothing unless half-open.
    pub fn cancel_probe(&mut self, now_ms: u64) {
        let now = self.observe(now_ms);
        if self.phase == Phase::HalfOpen {
            self.release_lease(now);
        }
    }

    /// Close the circuit and forget everything (an operator's manual reset).
    pub fn reset(&mut self) {
        self.close();
    }

    /// The state a request arriving at `now_ms` would see (an open circuit whose cooldown has
    /// ended reports half-open with no probes). Does not change anything.
    pub fn state(&self, now_ms: u64) -> State {
        let now = now_ms.max(self.latest_ms);
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { until_ms } if now < until_ms => State::Open { until_ms },
            Phase::Open { .. } => State::HalfOpen { in_flight: 0 },
            Phase::HalfOpen => State::HalfOpen {
                in_flight: self.live_leases(now),
            },
        }
    }

    /// Whether [`Circuit::admit`] at `now_ms` would let a request through (as an ordinary request
    /// or a probe). Read-only, for [`failover::pick`](super::failover::pick)'s `is_available`;
    /// the answer can change before `admit` runs, so still call `admit` on the picked target.
    pub fn is_available(&self, now_ms: u64) -> bool {
        match self.state(now_ms) {
            State::Closed => true,
            State::Open { .. } => false,
            State::HalfOpen { in_flight } => in_flight < self.config.half_open_probes,
        }
    }

    /// A serializable view for the admin API, `latchkey status` and metrics. Does not change
    /// anything.
    ///
    /// ```
    /// use latchkey_policy::resilience::circuit::{Circuit, CircuitConfig, Outcome};
    /// let mut circuit = Circuit::new(CircuitConfig::default());
    /// circuit.record(0, Outcome::Success, false);
    /// circuit.record(1, Outcome::Timeout, false);
    /// circuit.record(2, Outcome::RateLimited, false);
    /// let snap = circuit.snapshot(3);
    /// assert_eq!((snap.requests, snap.failures, snap.rate_limited), (3, 1, 1));
    /// assert_eq!(snap.failure_rate, 0.5); // the 429 is not part of the rate
    /// let json = serde_json::to_value(&snap).unwrap();
    /// assert_eq!(json["state"], "closed");
    /// ```
    pub fn snapshot(&self, now_ms: u64) -> CircuitSnapshot {
        let now = now_ms.max(self.latest_ms);
        let totals = self.totals(now);
        let counted = self.counted(&totals);
        let failure_rate = if counted == 0 {
            0.0
        } else {
            (totals.failures as f64 / counted as f64).clamp(0.0, 1.0)
        };
        let state = self.state(now);
        let retry_after_ms = match state {
            State::Closed => None,
            State::Open { until_ms } => Some(until_ms.saturating_sub(now).max(1)),
            State::HalfOpen { in_flight } => {
                if in_flight < self.config.half_open_probes {
                    None
                } else {
                    Some(self.earliest_lease_wait(now))
                }
            }
        };
        CircuitSnapshot {
            state: state.kind(),
            requests: totals.requests,
            failures: totals.failures,
            rate_limited: totals.rate_limited,
            failure_rate,
            opened_at: self.opened_at_ms,
            retry_after_ms,
            probes_in_flight: match state {
                State::HalfOpen { in_flight } => in_flight,
                _ => 0,
            },
            reopens: self.reopens,
        }
    }

    /// Clamp `now_ms` so time never runs backwards.
    fn observe(&mut self, now_ms: u64) -> u64 {
        self.latest_ms = self.latest_ms.max(now_ms);
        self.latest_ms
    }

    fn take_probe(&mut self, now: u64) -> Admission {
        if self.live_leases(now) < self.config.half_open_probes {
            self.leases
                .push(now.saturating_add(self.config.cooldown_ms));
            Admission::Probe
        } else {
            Admission::Reject {
                retry_after_ms: self.earliest_lease_wait(now),
            }
        }
    }

    fn live_leases(&self, now: u64) -> u32 {
        let live = self.leases.iter().filter(|&&expiry| expiry > now).count();
        u32::try_from(live).unwrap_or(u32::MAX)
    }

    fn earliest_lease_wait(&self, now: u64) -> u64 {
        self.leases
            .iter()
            .copied()
            .filter(|&expiry| expiry > now)
            .min()
            .map_or(1, |expiry| expiry.saturating_sub(now).max(1))
    }

    fn expire_leases(&mut self, now: u64) {
        self.leases.retain(|&expiry| expiry > now);
    }

    fn release_lease(&mut self, now: u64) {
        // Leases are pushed in time order with a fixed lifetime, so the first is the oldest
        // live one once expired ones are gone.
        self.expire_leases(now);
        if !self.leases.is_empty() {
            self.leases.remove(0);
        }
    }

    fn cooldown(&self, reopens: u32) -> u64 {
        let factor = 2u64.saturating_pow(reopens);
        self.config
            .cooldown_ms
            .saturating_mul(factor)
            .min(self.config.max_cooldown_ms)
    }

    fn trip(&mut self, now: u64) {
        self.reopens = 0;
        self.opened_at_ms = Some(now);
        self.phase = Phase::Open {
            until_ms: now.saturating_add(self.cooldown(0)),
        };
        self.leases.clear();
    }

    fn reopen(&mut self, now: u64) {
        self.reopens = self.reopens.saturating_add(1);
        if self.opened_at_ms.is_none() {
            self.opened_at_ms = Some(now);
        }
        self.phase = Phase::Open {
            until_ms: now.saturating_add(self.cooldown(self.reopens)),
        };
        self.leases.clear();
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.buckets.fill(Bucket::default());
        self.leases.clear();
        self.opened_at_ms = None;
        self.reopens = 0;
    }

    fn count(&mut self, now: u64, outcome: Outcome) {
        let epoch = now / self.bucket_ms;
        let len = self.buckets.len() as u64;
        if len == 0 {
            return;
        }
        let slot = usize::try_from(epoch % len).unwrap_or(0);
        let failure = outcome.is_failure(self.config.count_rate_limited_as_failure);
        if let Some(bucket) = self.buckets.get_mut(slot) {
            if bucket.epoch != epoch {
                *bucket = Bucket {
                    epoch,
                    ..Bucket::default()
                };
            }
            bucket.requests = bucket.requests.saturating_add(1);
            if failure {
                bucket.failures = bucket.failures.saturating_add(1);
            }
            if outcome == Outcome::RateLimited {
                bucket.rate_limited = bucket.rate_limited.saturating_add(1);
            }
        }
    }

    /// Sum of the slices still inside the window at `now`.
    fn totals(&self, now: u64) -> Totals {
        let epoch = now / self.bucket_ms;
        let len = self.buckets.len() as u64;
        let mut totals = Totals::default();
        for bucket in &self.buckets {
            // `bucket.epoch <= epoch` always holds (time never runs backwards); a slice counts
            // while it is one of the newest `len` slices.
            if bucket.epoch <= epoch && epoch - bucket.epoch < len {
                totals.requests += u64::from(bucket.requests);
                totals.failures += u64::from(bucket.failures);
                totals.rate_limited += u64::from(bucket.rate_limited);
            }
        }
        totals
    }

    /// Requests that take part in the failure rate.
    fn counted(&self, totals: &Totals) -> u64 {
        if self.config.count_rate_limited_as_failure {
            totals.requests
        } else {
            totals.requests.saturating_sub(totals.rate_limited)
        }
    }

    fn maybe_trip(&mut self, now: u64) {
        let totals = self.totals(now);
        let counted = self.counted(&totals);
        if counted >= u64::from(self.config.min_requests)
            && totals.failures > 0
            && totals.failures as f64 >= self.config.failure_rate * counted as f64
        {
            self.trip(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_requests: u32) -> CircuitConfig {
        CircuitConfig {
            window_ms: 10_000,
            buckets: 10,
            min_requests,
            failure_rate: 0.5,
            cooldown_ms: 1_000,
            max_cooldown_ms: 8_000,
            half_open_probes: 1,
            count_rate_limited_as_failure: false,
        }
    }

    fn feed(circuit: &mut Circuit, now: u64, outcome: Outcome, n: u32) {
        for _ in 0..n {
            assert!(circuit.admit(now).is_allowed());
            circuit.record(now, outcome, false);
        }
    }

    /// Trip a `config(4)` circuit at time `now`.
    fn open_at(now: u64) -> Circuit {
        let mut c = Circuit::new(config(4));
        feed(&mut c, now, Outcome::ServerError, 4);
        assert_eq!(
            c.state(now),
            State::Open {
                until_ms: now + 1_000
            }
        );
        c
    }

    #[test]
    fn defaults_match_the_issue() {
        let d = CircuitConfig::default();
        assert_eq!(
            (
                d.window_ms,
                d.buckets,
                d.min_requests,
                d.cooldown_ms,
                d.half_open_probes
            ),
            (30_000, 10, 20, 15_000, 1)
        );
        assert_eq!(d.failure_rate, 0.5);
        assert!(!d.count_rate_limited_as_failure);
        assert!(d.validate().is_ok());
    }

    #[test]
    fn config_loads_partial_tables_and_refuses_unknown_fields() {
        let c: CircuitConfig = serde_json::from_str(r#"{"min_requests": 5}"#).unwrap();
        assert_eq!(c.min_requests, 5);
        assert_eq!(c.window_ms, 30_000);
        assert!(serde_json::from_str::<CircuitConfig>(r#"{"min_request": 5}"#).is_err());
    }

    #[test]
    fn validate_reports_each_bad_field() {
        let base = CircuitConfig::default();
        let cases = [
            (
                CircuitConfig {
                    buckets: 0,
                    ..base.clone()
                },
                CircuitConfigError::Buckets(0),
            ),
            (
                CircuitConfig {
                    buckets: MAX_BUCKETS + 1,
                    ..base.clone()
                },
                CircuitConfigError::Buckets(MAX_BUCKETS + 1),
            ),
            (
                CircuitConfig {
                    window_ms: 5,
                    ..base.clone()
                },
                CircuitConfigError::WindowTooShort {
                    window_ms: 5,
                    buckets: 10,
                },
            ),
            (
                CircuitConfig {
                    min_requests: 0,
                    ..base.clone()
                },
                CircuitConfigError::MinRequests,
            ),
            (
                CircuitConfig {
                    cooldown_ms: 0,
                    ..base.clone()
                },
                CircuitConfigError::Cooldown,
            ),
            (
                CircuitConfig {
                    half_open_probes: 0,
                    ..base.clone()
                },
                CircuitConfigError::HalfOpenProbes(0),
            ),
        ];
        for (config, error) in cases {
            assert_eq!(config.validate(), Err(error));
        }
        let nan = CircuitConfig {
            failure_rate: f64::NAN,
            ..base
        };
        assert!(matches!(
            nan.validate(),
            Err(CircuitConfigError::FailureRate(_))
        ));
    }

    #[test]
    fn normalization_makes_any_config_usable() {
        let wild = CircuitConfig {
            window_ms: 0,
            buckets: u32::MAX,
            min_requests: 0,
            failure_rate: f64::NAN,
            cooldown_ms: 0,
            max_cooldown_ms: 0,
            half_open_probes: 0,
            count_rate_limited_as_failure: false,
        };
        let n = wild.normalized();
        assert!(n.validate().is_ok(), "{n:?}");
        assert_eq!(n.failure_rate, 0.5);
        let mut c = Circuit::new(wild);
        c.record(0, Outcome::Timeout, false);
        assert_eq!(c.state(0), State::Open { until_ms: 1 });
        assert_eq!(c.admit(1), Admission::Probe);
    }

    #[test]
    fn outcome_classification() {
        assert!(!Outcome::Success.is_failure(true));
        for o in [
            Outcome::ServerError,
            Outcome::Timeout,
            Outcome::ConnectError,
        ] {
            assert!(o.is_failure(false));
        }
        assert!(!Outcome::RateLimited.is_failure(false));
        assert!(Outcome::RateLimited.is_failure(true));
        assert_eq!(Outcome::from_status(599), Outcome::ServerError);
        assert_eq!(Outcome::from_status(499), Outcome::Success);
        assert_eq!(Outcome::ConnectError.as_str(), "connect_error");
    }

    #[test]
    fn closed_admits_everything() {
        let mut c = Circuit::new(config(4));
        for t in 0..100 {
            assert_eq!(c.admit(t), Admission::Allow);
        }
        assert_eq!(c.snapshot(100).state, StateKind::Closed);
    }

    #[test]
    fn stays_closed_below_min_requests() {
        let mut c = Circuit::new(config(4));
        feed(&mut c, 0, Outcome::ServerError, 3);
        assert_eq!(c.state(0), State::Closed);
        let snap = c.snapshot(0);
        assert_eq!((snap.requests, snap.failures), (3, 3));
        assert_eq!(snap.failure_rate, 1.0);
    }

    #[test]
    fn opens_at_min_requests_and_threshold() {
        let mut c = Circuit::new(config(4));
        feed(&mut c, 0, Outcome::Success, 2);
        feed(&mut c, 0, Outcome::Timeout, 1);
        assert_eq!(c.state(0), State::Closed);
        feed(&mut c, 0, Outcome::ConnectError, 1); // 2 of 4 = 50 %
        assert_eq!(c.state(0), State::Open { until_ms: 1_000 });
        assert_eq!(c.snapshot(0).opened_at, Some(0));
    }

    #[test]
    fn stays_closed_below_failure_rate() {
        let mut c = Circuit::new(config(4));
        feed(&mut c, 0, Outcome::Success, 6);
        feed(&mut c, 0, Outcome::ServerError, 5); // 5 of 11 < 50 %
        assert_eq!(c.state(0), State::Closed);
        feed(&mut c, 0, Outcome::ServerError, 1); // 6 of 12
        assert_eq!(c.state(0).kind(), StateKind::Open);
    }

    #[test]
    fn zero_rate_needs_a_failure() {
        let mut c = Circuit::new(CircuitConfig {
            failure_rate: 0.0,
            ..config(2)
        });
        feed(&mut c, 0, Outcome::Success, 10);
        assert_eq!(c.state(0), State::Closed);
        feed(&mut c, 0, Outcome::Timeout, 1);
        assert_eq!(c.state(0).kind(), StateKind::Open);
    }

    #[test]
    fn rate_limits_do_not_trip_by_default() {
        let mut c = Circuit::new(config(4));
        feed(&mut c, 0, Outcome::RateLimited, 50);
        assert_eq!(c.state(0), State::Closed);
        let snap = c.snapshot(0);
        assert_eq!(
            (snap.requests, snap.failures, snap.rate_limited),
            (50, 0, 50)
        );
        assert_eq!(snap.failure_rate, 0.0);
        // Nor do they count toward min_requests or dilute the rate.
        feed(&mut c, 0, Outcome::ServerError, 3);
        assert_eq!(c.state(0), State::Closed);
        feed(&mut c, 0, Outcome::ServerError, 1);
        assert_eq!(c.state(0).kind(), StateKind::Open);
    }

    #[test]
    fn rate_limits_trip_when_configured() {
        let mut c = Circuit::new(CircuitConfig {
            count_rate_limited_as_failure: true,
            ..config(4)
        });
        feed(&mut c, 0, Outcome::RateLimited, 4);
        assert_eq!(c.state(0).kind(), StateKind::Open);
        let snap = c.snapshot(0);
        assert_eq!((snap.requests, snap.failures, snap.rate_limited), (4, 4, 4));
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        // 10 s window in 1 s slices.
        let mut c = Circuit::new(config(4));
        feed(&mut c, 0, Outcome::ServerError, 3);
        let snap = c.snapshot(9_999);
        assert_eq!((snap.requests, snap.failures), (3, 3), "still inside");
        // At 10 s the slice from t=0 has left the window: a fourth failure is only the first.
        feed(&mut c, 10_000, Outcome::ServerError, 1);
        assert_eq!(c.state(10_000), State::Closed);
        let snap = c.snapshot(10_000);
        assert_eq!((snap.requests, snap.failures), (1, 1));
        feed(&mut c, 10_500, Outcome::ServerError, 2);
        assert_eq!(c.state(10_500), State::Closed);
        feed(&mut c, 10_900, Outcome::ServerError, 1);
        assert_eq!(c.state(10_900).kind(), StateKind::Open);
    }

    #[test]
    fn a_reused_slice_forgets_its_old_counts() {
        let mut c = Circuit::new(config(100));
        feed(&mut c, 500, Outcome::ServerError, 5);
        // 10 slices later the same slot is reused.
        feed(&mut c, 10_500, Outcome::Success, 1);
        let snap = c.snapshot(10_500);
        assert_eq!((snap.requests, snap.failures), (1, 0));
        // Long silence: everything is gone.
        assert_eq!(c.snapshot(1_000_000).requests, 0);
    }

    #[test]
    fn open_rejects_with_retry_after_until_cooldown() {
        let mut c = open_at(100);
        assert_eq!(
            c.admit(100),
            Admission::Reject {
                retry_after_ms: 1_000
            }
        );
        let snap = c.snapshot(600);
        assert_eq!(snap.state, StateKind::Open);
        assert_eq!(snap.retry_after_ms, Some(500));
        assert_eq!(snap.opened_at, Some(100));
        assert_eq!(c.admit(1_099), Admission::Reject { retry_after_ms: 1 });
    }

    #[test]
    fn first_admit_after_cooldown_is_a_probe_and_others_wait() {
        let mut c = open_at(0);
        assert_eq!(c.snapshot(1_000).state, StateKind::HalfOpen);
        assert_eq!(c.admit(1_000), Admission::Probe);
        assert_eq!(c.state(1_000), State::HalfOpen { in_flight: 1 });
        assert_eq!(
            c.admit(1_010),
            Admission::Reject {
                retry_after_ms: 990
            }
        );
        let snap = c.snapshot(1_010);
        assert_eq!(
            (snap.state, snap.probes_in_flight, snap.retry_after_ms),
            (StateKind::HalfOpen, 1, Some(990))
        );
    }

    #[test]
    fn probe_success_closes_and_clears_the_window() {
        let mut c = open_at(0);
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.record(1_200, Outcome::Success, true);
        assert_eq!(c.state(1_200), State::Closed);
        let snap = c.snapshot(1_200);
        assert_eq!(
            (snap.requests, snap.failures, snap.opened_at, snap.reopens),
            (0, 0, None, 0)
        );
        // A fresh window: three failures are not enough to reopen.
        feed(&mut c, 1_300, Outcome::ServerError, 3);
        assert_eq!(c.state(1_300), State::Closed);
    }

    #[test]
    fn probe_failure_reopens_with_growing_cooldown() {
        let mut c = open_at(0);
        let mut now = 1_000;
        for expected in [2_000, 4_000, 8_000, 8_000] {
            assert_eq!(c.admit(now), Admission::Probe);
            c.record(now, Outcome::Timeout, true);
            assert_eq!(
                c.state(now),
                State::Open {
                    until_ms: now + expected
                }
            );
            assert_eq!(c.snapshot(now).opened_at, Some(0), "outage start kept");
            now += expected;
        }
        assert_eq!(c.snapshot(now).reopens, 4);
        // Recovery resets the cooldown.
        assert_eq!(c.admit(now), Admission::Probe);
        c.record(now, Outcome::Success, true);
        feed(&mut c, now, Outcome::ServerError, 4);
        assert_eq!(
            c.state(now),
            State::Open {
                until_ms: now + 1_000
            }
        );
    }

    #[test]
    fn fixed_cooldown_when_max_is_not_above_base() {
        let mut c = Circuit::new(CircuitConfig {
            max_cooldown_ms: 0,
            ..config(4)
        });
        feed(&mut c, 0, Outcome::ServerError, 4);
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.record(1_000, Outcome::ServerError, true);
        assert_eq!(c.state(1_000), State::Open { until_ms: 2_000 });
    }

    #[test]
    fn probe_rate_limit_is_neutral() {
        let mut c = open_at(0);
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.record(1_100, Outcome::RateLimited, true);
        assert_eq!(c.state(1_100), State::HalfOpen { in_flight: 0 });
        assert_eq!(c.admit(1_100), Admission::Probe);
    }

    #[test]
    fn probe_rate_limit_reopens_when_counted_as_failure() {
        let mut c = Circuit::new(CircuitConfig {
            count_rate_limited_as_failure: true,
            ..config(4)
        });
        feed(&mut c, 0, Outcome::RateLimited, 4);
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.record(1_000, Outcome::RateLimited, true);
        assert_eq!(c.state(1_000).kind(), StateKind::Open);
    }

    #[test]
    fn abandoned_probe_lease_expires_after_cooldown() {
        let mut c = open_at(0);
        assert_eq!(c.admit(1_000), Admission::Probe);
        // The probe's caller vanished. Until the lease ends, others are refused ...
        assert!(!c.admit(1_999).is_allowed());
        // ... then the next request becomes a probe.
        assert_eq!(c.admit(2_000), Admission::Probe);
        assert_eq!(c.state(2_000), State::HalfOpen { in_flight: 1 });
        c.record(2_100, Outcome::Success, true);
        assert_eq!(c.state(2_100), State::Closed);
    }

    #[test]
    fn late_report_of_an_expired_probe_still_counts() {
        let mut c = open_at(0);
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.record(5_000, Outcome::ServerError, true);
        assert_eq!(c.state(5_000).kind(), StateKind::Open);
    }

    #[test]
    fn cancelled_probe_frees_its_slot() {
        let mut c = open_at(0);
        assert_eq!(c.admit(1_000), Admission::Probe);
        assert!(!c.admit(1_001).is_allowed());
        c.cancel_probe(1_002);
        assert_eq!(c.state(1_002), State::HalfOpen { in_flight: 0 });
        assert_eq!(c.admit(1_003), Admission::Probe);
        // Cancelling outside half-open changes nothing.
        let mut closed = Circuit::new(config(4));
        closed.cancel_probe(0);
        assert_eq!(closed.state(0), State::Closed);
    }

    #[test]
    fn concurrent_probe_limit() {
        let mut c = Circuit::new(CircuitConfig {
            half_open_probes: 3,
            ..config(4)
        });
        feed(&mut c, 0, Outcome::ServerError, 4);
        for t in 0..3 {
            assert_eq!(c.admit(1_000 + t), Admission::Probe);
        }
        assert_eq!(
            c.admit(1_010),
            Admission::Reject {
                retry_after_ms: 990
            }
        );
        assert_eq!(c.state(1_010), State::HalfOpen { in_flight: 3 });
        // A neutral report frees exactly one slot.
        c.record(1_020, Outcome::RateLimited, true);
        assert_eq!(c.admit(1_021), Admission::Probe);
        assert!(!c.admit(1_022).is_allowed());
        // One success closes, whatever the others are doing.
        c.record(1_030, Outcome::Success, true);
        assert_eq!(c.admit(1_031), Admission::Allow);
        // A straggler probe reporting after close is counted like any request.
        c.record(1_040, Outcome::ServerError, true);
        assert_eq!(c.snapshot(1_040).failures, 1);
    }

    #[test]
    fn stale_ordinary_reports_are_ignored_while_open_or_half_open() {
        let mut c = open_at(0);
        c.record(10, Outcome::Success, false);
        c.record(10, Outcome::Success, true); // a "probe" report while open: stale too
        assert_eq!(c.state(10).kind(), StateKind::Open);
        assert_eq!(c.admit(1_000), Admission::Probe);
        c.record(1_001, Outcome::Success, false);
        assert_eq!(c.state(1_001), State::HalfOpen { in_flight: 1 });
        assert_eq!(c.snapshot(1_001).requests, 4);
    }

    #[test]
    fn time_never_runs_backwards() {
        let mut c = open_at(5_000);
        // A caller with a lagging clock cannot shorten or skip the cooldown.
        assert_eq!(
            c.admit(0),
            Admission::Reject {
                retry_after_ms: 1_000
            }
        );
        assert_eq!(c.admit(6_000), Admission::Probe);
        c.record(3, Outcome::Success, true);
        assert_eq!(c.state(0), State::Closed);
    }

    #[test]
    fn availability_mirrors_admit() {
        let mut c = open_at(0);
        assert!(!c.is_available(999));
        assert!(c.is_available(1_000));
        assert_eq!(c.admit(1_000), Admission::Probe);
        assert!(!c.is_available(1_001));
        assert!(c.is_available(2_000), "lease expired");
        c.record(1_002, Outcome::Success, true);
        assert!(c.is_available(1_002));
    }

    #[test]
    fn reset_closes_and_forgets() {
        let mut c = open_at(0);
        c.reset();
        assert_eq!(c.admit(1), Admission::Allow);
        assert_eq!(c.snapshot(1).requests, 0);
    }

    #[test]
    fn snapshot_serializes_for_the_admin_api() {
        let c = open_at(0);
        let json = serde_json::to_value(c.snapshot(250)).unwrap();
        assert_eq!(json["state"], "open");
        assert_eq!(json["requests"], 4);
        assert_eq!(json["failures"], 4);
        assert_eq!(json["rate_limited"], 0);
        assert_eq!(json["failure_rate"], 1.0);
        assert_eq!(json["opened_at"], 0);
        assert_eq!(json["retry_after_ms"], 750);
        let back: CircuitSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back, c.snapshot(250));
        assert_eq!(StateKind::HalfOpen.as_str(), "half_open");
        assert_eq!(StateKind::Open.as_gauge(), 1);
    }

    #[test]
    fn admission_helpers() {
        assert!(Admission::Allow.is_allowed());
        assert!(Admission::Probe.is_allowed() && Admission::Probe.is_probe());
        let reject = Admission::Reject { retry_after_ms: 0 };
        assert!(!reject.is_allowed());
        assert_eq!(reject.retry_after_secs(), Some(1));
        assert_eq!(
            Admission::Reject {
                retry_after_ms: 2_000
            }
            .retry_after_secs(),
            Some(2)
        );
    }
}
