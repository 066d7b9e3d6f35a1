//! Velocity: notice when a key suddenly does far more than usual (requests, tokens, or distinct
//! client addresses inside a rolling window), so the gateway can suspend it and alert.
//!
//! The window slides in sub-buckets: it is split into at most [`BUCKETS`] slices and counts cover
//! the current slice plus enough previous ones to span `window_secs` (rounded up to whole slices,
//! so the effective window is `window_secs` give or take one slice). Memory per key is fixed: the
//! buckets plus at most `max_distinct_ips + 1` addresses (capped by [`MAX_TRACKED_IPS`]).
//!
//! Time never runs backwards inside a window: an observation older than the newest one seen
//! (clock skew between callers) is counted in the newest slice instead of rewriting history.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::ip::canonical;
use super::Denial;

/// Sub-buckets per window.
pub const BUCKETS: usize = 10;
/// Most distinct addresses tracked per key; a larger `max_distinct_ips` is clamped to one less.
pub const MAX_TRACKED_IPS: usize = 4096;

/// Per-key abuse thresholds. A `None` limit is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VelocityThresholds {
    /// Rolling window length in seconds (default 60; 0 is treated as 1).
    pub window_secs: u64,
    /// Most requests per window.
    pub max_requests: Option<u64>,
    /// Most tokens (input + output, as metered) per window.
    pub max_tokens: Option<u64>,
    /// Most distinct client addresses per window.
    pub max_distinct_ips: Option<u64>,
}

impl Default for VelocityThresholds {
    fn default() -> Self {
        VelocityThresholds {
            window_secs: 60,
            max_requests: None,
            max_tokens: None,
            max_distinct_ips: None,
        }
    }
}

/// Which threshold a spike crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeKind {
    /// `max_requests`.
    Requests,
    /// `max_tokens`.
    Tokens,
    /// `max_distinct_ips`.
    DistinctIps,
}

/// A threshold was exceeded: `observed > limit` within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spike {
    /// Which threshold.
    pub kind: SpikeKind,
    /// The value seen in the window, including the observation that crossed the limit.
    pub observed: u64,
    /// The configured limit.
    pub limit: u64,
    /// The window the value was counted over.
    pub window_secs: u64,
}

impl Spike {
    /// The refusal for requests after the gateway suspended the key over this spike.
    ///
    /// ```
    /// use latchkey_policy::locks::velocity::{Spike, SpikeKind};
    /// use latchkey_policy::locks::Denial;
    /// let s = Spike { kind: SpikeKind::Requests, observed: 11, limit: 10, window_secs: 60 };
    /// assert_eq!(s.denial(), Denial::KeySuspended);
    /// ```
    pub fn denial(&self) -> Denial {
        Denial::KeySuspended
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Absolute slice number (`now / slice_secs`) this bucket currently holds.
    slice: i64,
    requests: u64,
    tokens: u64,
}

/// Rolling counters for one key. Pure: the caller passes `now` (Unix seconds).
#[derive(Debug, Clone)]
pub struct VelocityWindow {
    thresholds: VelocityThresholds,
    slice_secs: i64,
    /// Slices spanned by the window (≤ BUCKETS).
    span: i64,
    buckets: [Bucket; BUCKETS],
    /// Address → newest slice it was seen in.
    ips: HashMap<IpAddr, i64>,
    /// Newest slice observed; `None` before the first observation.
    newest: Option<i64>,
}

impl VelocityWindow {
    /// An empty window for these thresholds.
    ///
    /// ```
    /// use latchkey_policy::locks::velocity::{SpikeKind, VelocityThresholds, VelocityWindow};
    /// let t = VelocityThresholds { window_secs: 60, max_requests: Some(2), ..Default::default() };
    /// let mut w = VelocityWindow::new(t);
    /// let ip = "203.0.113.1".parse().unwrap();
    /// assert!(w.observe_request(0, ip).is_none());
    /// assert!(w.observe_request(1, ip).is_none());
    /// assert_eq!(w.observe_request(2, ip).map(|s| s.kind), Some(SpikeKind::Requests));
    /// assert!(w.observe_request(120, ip).is_none()); // the window slid past the burst
    /// ```
    pub fn new(thresholds: VelocityThresholds) -> VelocityWindow {
        let window = thresholds.window_secs.max(1);
        let slice_secs = window.div_ceil(BUCKETS as u64);
        let span = window.div_ceil(slice_secs);
        VelocityWindow {
            thresholds,
            slice_secs: i64::try_from(slice_secs).unwrap_or(i64::MAX),
            span: i64::try_from(span).unwrap_or(i64::MAX),
            buckets: [Bucket::default(); BUCKETS],
            ips: HashMap::new(),
            newest: None,
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &VelocityThresholds {
        &self.thresholds
    }

    /// Replaces the thresholds. A different window length restarts counting (the buckets no
    /// longer mean the same thing); changed limits keep the counts.
    pub fn set_thresholds(&mut self, thresholds: VelocityThresholds) {
        if thresholds.window_secs != self.thresholds.window_secs {
            *self = VelocityWindow::new(thresholds);
        } else {
            self.thresholds = thresholds;
        }
    }

    /// True when nothing observed is still inside the window at `now`; such a window can be
    /// dropped without losing information.
    pub fn is_idle(&self, now: i64) -> bool {
        match self.newest {
            None => true,
            Some(newest) => now.div_euclid(self.slice_secs).saturating_sub(newest) >= self.span,
        }
    }

    /// Counts one request from `ip` at `now`. Returns a spike when the requests or distinct
    /// addresses in the window now exceed their limit (requests are reported first).
    pub fn observe_request(&mut self, now: i64, ip: IpAddr) -> Option<Spike> {
        let slice = self.advance(now);
        let b = self.bucket(slice);
        b.requests = b.requests.saturating_add(1);
        let requests = self.sum(slice, |b| b.requests);
        let distinct = self.track_ip(slice, canonical(ip));
        let t = self.thresholds;
        self.spike(SpikeKind::Requests, requests, t.max_requests)
            .or_else(|| self.spike(SpikeKind::DistinctIps, distinct, t.max_distinct_ips))
    }

    /// Counts `tokens` used at `now`. Returns a spike when the tokens in the window now exceed
    /// `max_tokens`.
    ///
    /// ```
    /// use latchkey_policy::locks::velocity::{VelocityThresholds, VelocityWindow};
    /// let t = VelocityThresholds { max_tokens: Some(1000), ..Default::default() };
    /// let mut w = VelocityWindow::new(t);
    /// assert!(w.observe_tokens(0, 1000).is_none());
    /// assert_eq!(w.observe_tokens(1, 1).map(|s| s.observed), Some(1001));
    /// ```
    pub fn observe_tokens(&mut self, now: i64, tokens: u64) -> Option<Spike> {
        let slice = self.advance(now);
        let b = self.bucket(slice);
        b.tokens = b.tokens.saturating_add(tokens);
        let total = self.sum(slice, |b| b.tokens);
        self.spike(SpikeKind::Tokens, total, self.thresholds.max_tokens)
    }

    /// Moves the clock to `now` (never backwards) and returns the current slice.
    fn advance(&mut self, now: i64) -> i64 {
        let slice = now.div_euclid(self.slice_secs);
        let slice = self.newest.map_or(slice, |n| n.max(slice));
        self.newest = Some(slice);
        slice
    }

    /// The bucket for `slice`, cleared if it still holds an older slice.
    fn bucket(&mut self, slice: i64) -> &mut Bucket {
        let b = &mut self.buckets[slice.rem_euclid(BUCKETS as i64) as usize];
        if b.slice != slice {
            *b = Bucket {
                slice,
                ..Bucket::default()
            };
        }
        b
    }

    fn in_window(&self, slice: i64, current: i64) -> bool {
        slice <= current && current.saturating_sub(slice) < self.span
    }

    fn sum(&self, current: i64, field: impl Fn(&Bucket) -> u64) -> u64 {
        self.buckets
            .iter()
            .filter(|b| self.in_window(b.slice, current))
            .fold(0u64, |acc, b| acc.saturating_add(field(b)))
    }

    /// Records `ip` and returns how many distinct addresses the window holds (capped).
    fn track_ip(&mut self, slice: i64, ip: IpAddr) -> u64 {
        let Some(max) = self.thresholds.max_distinct_ips else {
            return 0;
        };
        // One more than the limit is enough to see it crossed.
        let cap = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .min(MAX_TRACKED_IPS);
        if let Some(seen) = self.ips.get_mut(&ip) {
            *seen = slice;
        } else {
            if self.ips.len() >= cap {
                let span = self.span;
                self.ips.retain(|_, s| slice.saturating_sub(*s) < span);
            }
            if self.ips.len() < cap {
                self.ips.insert(ip, slice);
            }
        }
        let span = self.span;
        self.ips
            .values()
            .filter(|s| slice.saturating_sub(**s) < span)
            .count() as u64
    }

    fn spike(&self, kind: SpikeKind, observed: u64, limit: Option<u64>) -> Option<Spike> {
        let limit = limit?;
        let limit = match kind {
            SpikeKind::DistinctIps => limit.min(MAX_TRACKED_IPS as u64 - 1),
            _ => limit,
        };
        (observed > limit).then_some(Spike {
            kind,
            observed,
            limit,
            window_secs: self.thresholds.window_secs,
        })
    }
}

/// Velocity state for many keys. A trait so a shared (Redis) implementation can replace the
/// in-process one for a fleet.
pub trait VelocityCounter {
    /// Counts a request for `key_id`; see [`VelocityWindow::observe_request`].
    fn observe_request(
        &self,
        key_id: &str,
        thresholds: &VelocityThresholds,
        now: i64,
        ip: IpAddr,
    ) -> Option<Spike>;

    /// Counts tokens for `key_id`; see [`VelocityWindow::observe_tokens`].
    fn observe_tokens(
        &self,
        key_id: &str,
        thresholds: &VelocityThresholds,
        now: i64,
        tokens: u64,
    ) -> Option<Spike>;

    /// Drops the state for `key_id` (key revoked, deleted, or un-suspended with a clean slate).
    fn forget(&self, key_id: &str);
}

/// In-process [`VelocityCounter`] holding at most `capacity` keys.
///
/// When full, idle windows are dropped first; if none is idle, the window touched longest ago is
/// evicted. Eviction loses that key's recent history, so detection may miss a spike for it: the
/// trade is deliberate, since refusing traffic because a detector is full would turn a monitoring
/// aid into an outage. Size the capacity above the number of active keys.
#[derive(Debug)]
pub struct LocalVelocity {
    capacity: usize,
    windows: Mutex<HashMap<String, VelocityWindow>>,
}

impl LocalVelocity {
    /// A counter for at most `capacity` keys (at least one).
    ///
    /// ```
    /// use latchkey_policy::locks::velocity::{LocalVelocity, VelocityCounter, VelocityThresholds};
    /// let counter = LocalVelocity::new(10_000);
    /// let t = VelocityThresholds { max_requests: Some(1), ..Default::default() };
    /// let ip = "203.0.113.1".parse().unwrap();
    /// assert!(counter.observe_request("key1", &t, 0, ip).is_none());
    /// assert!(counter.observe_request("key1", &t, 1, ip).is_some());
    /// assert!(counter.observe_request("key2", &t, 1, ip).is_none());
    /// ```
    pub fn new(capacity: usize) -> LocalVelocity {
        LocalVelocity {
            capacity: capacity.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Number of keys with state.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no key has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters stay usable after a panic elsewhere: the worst a poisoned map holds is one
    /// half-counted observation.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VelocityWindow>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_window<R>(
        &self,
        key_id: &str,
        thresholds: &VelocityThresholds,
        now: i64,
        f: impl FnOnce(&mut VelocityWindow) -> R,
    ) -> R {
        let mut map = self.lock();
        if let Some(w) = map.get_mut(key_id) {
            if w.thresholds() != thresholds {
                w.set_thresholds(*thresholds);
            }
            return f(w);
        }
        if map.len() >= self.capacity {
            map.retain(|_, w| !w.is_idle(now));
        }
        if map.len() >= self.capacity {
            let oldest = map
                .iter()
                .min_by_key(|(_, w)| w.newest)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let w = map
            .entry(key_id.to_string())
            .or_insert_with(|| VelocityWindow::new(*thresholds));
        f(w)
    }
}

impl VelocityCounter for LocalVelocity {
    fn observe_request(
        &self,
        key_id: &str,
        thresholds: &VelocityThresholds,
        now: i64,
        ip: IpAddr,
    ) -> Option<Spike> {
        self.with_window(key_id, thresholds, now, |w| w.observe_request(now, ip))
    }

    fn observe_tokens(
        &self,
        key_id: &str,
        thresholds: &VelocityThresholds,
        now: i64,
        tokens: u64,
    ) -> Option<Spike> {
        self.with_window(key_id, thresholds, now, |w| w.observe_tokens(now, tokens))
    }

    fn forget(&self, key_id: &str) {
        self.lock().remove(key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal")
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(n))
    }

    fn thresholds(req: Option<u64>, tok: Option<u64>, ips: Option<u64>) -> VelocityThresholds {
        VelocityThresholds {
            window_secs: 60,
            max_requests: req,
            max_tokens: tok,
            max_distinct_ips: ips,
        }
    }

    #[test]
    fn requests_fire_exactly_past_the_threshold() {
        let mut w = VelocityWindow::new(thresholds(Some(5), None, None));
        for i in 0..5 {
            assert_eq!(w.observe_request(i, ip("1.1.1.1")), None, "request {i}");
        }
        assert_eq!(
            w.observe_request(5, ip("1.1.1.1")),
            Some(Spike {
                kind: SpikeKind::Requests,
                observed: 6,
                limit: 5,
                window_secs: 60
            })
        );
    }

    #[test]
    fn tokens_fire_exactly_past_the_threshold() {
        let mut w = VelocityWindow::new(thresholds(None, Some(100), None));
        assert_eq!(w.observe_tokens(0, 60), None);
        assert_eq!(w.observe_tokens(1, 40), None);
        let s = w.observe_tokens(2, 1).expect("spike");
        assert_eq!((s.kind, s.observed, s.limit), (SpikeKind::Tokens, 101, 100));
    }

    #[test]
    fn distinct_ips_fire_and_stay_bounded() {
        let mut w = VelocityWindow::new(thresholds(None, None, Some(3)));
        for n in 0..3 {
            assert_eq!(w.observe_request(0, v4(n)), None);
        }
        // Repeats do not count twice; IPv4-mapped is the same address.
        assert_eq!(w.observe_request(1, v4(0)), None);
        assert_eq!(w.observe_request(1, ip("::ffff:0.0.0.1")), None);
        let s = w.observe_request(2, v4(3)).expect("spike");
        assert_eq!((s.kind, s.observed), (SpikeKind::DistinctIps, 4));
        for n in 4..1000 {
            assert!(w.observe_request(2, v4(n)).is_some());
        }
        assert!(w.ips.len() <= 4);
    }

    #[test]
    fn window_slides() {
        // 60 s window → 6 s slices, 10 of them.
        let mut w = VelocityWindow::new(thresholds(Some(3), None, None));
        let a = ip("1.1.1.1");
        assert_eq!(w.observe_request(0, a), None); // slice 0
        assert_eq!(w.observe_request(30, a), None); // slice 5
        assert_eq!(w.observe_request(59, a), None); // slice 9: 3 in window
                                                    // At 60 (slice 10) slice 0 has left the window: still 3, no spike.
        assert_eq!(w.observe_request(60, a), None);
        // A fourth inside the same window fires.
        assert_eq!(w.observe_request(61, a).map(|s| s.observed), Some(4));
        // Much later everything has expired.
        assert_eq!(w.observe_request(10_000, a), None);
    }

    #[test]
    fn distinct_ips_expire_with_the_window() {
        let mut w = VelocityWindow::new(thresholds(None, None, Some(2)));
        assert_eq!(w.observe_request(0, v4(1)), None);
        assert_eq!(w.observe_request(0, v4(2)), None);
        // At 60 the first two are out of the window.
        assert_eq!(w.observe_request(60, v4(3)), None);
        assert_eq!(w.observe_request(60, v4(4)), None);
        assert!(w.observe_request(61, v4(5)).is_some());
    }

    #[test]
    fn time_does_not_run_backwards() {
        let mut w = VelocityWindow::new(thresholds(Some(2), None, None));
        let a = ip("1.1.1.1");
        assert_eq!(w.observe_request(100, a), None);
        assert_eq!(w.observe_request(0, a), None); // counted at 100
        assert!(w.observe_request(-5000, a).is_some());
    }

    #[test]
    fn short_windows_and_zero() {
        let t = VelocityThresholds {
            window_secs: 5,
            max_requests: Some(1),
            ..Default::default()
        };
        let mut w = VelocityWindow::new(t);
        let a = ip("1.1.1.1");
        assert_eq!(w.observe_request(0, a), None);
        assert!(w.observe_request(4, a).is_some());
        assert_eq!(w.observe_request(10, a), None);
        let t0 = VelocityThresholds {
            window_secs: 0,
            max_requests: Some(1),
            ..Default::default()
        };
        let mut w = VelocityWindow::new(t0);
        assert_eq!(w.observe_request(0, a), None);
        assert!(w.observe_request(0, a).is_some());
        assert_eq!(w.observe_request(1, a), None);
    }

    #[test]
    fn no_thresholds_never_fire() {
        let mut w = VelocityWindow::new(VelocityThresholds::default());
        for i in 0..1000 {
            assert_eq!(w.observe_request(i, v4(i as u32)), None);
            assert_eq!(w.observe_tokens(i, u64::MAX), None);
        }
        assert!(w.ips.is_empty());
    }

    #[test]
    fn changing_window_resets_changing_limit_keeps_counts() {
        let mut w = VelocityWindow::new(thresholds(Some(10), None, None));
        for i in 0..5 {
            assert_eq!(w.observe_request(i, ip("1.1.1.1")), None);
        }
        w.set_thresholds(thresholds(Some(5), None, None));
        assert!(w.observe_request(5, ip("1.1.1.1")).is_some());
        let mut t = thresholds(Some(5), None, None);
        t.window_secs = 120;
        w.set_thresholds(t);
        assert_eq!(w.observe_request(6, ip("1.1.1.1")), None);
    }

    #[test]
    fn idle_detection() {
        let mut w = VelocityWindow::new(thresholds(None, None, None));
        assert!(w.is_idle(0));
        w.observe_request(0, ip("1.1.1.1"));
        assert!(!w.is_idle(59));
        assert!(w.is_idle(60));
    }

    #[test]
    fn local_counter_is_per_key_and_bounded() {
        let c = LocalVelocity::new(2);
        let t = thresholds(Some(1), None, None);
        let a = ip("1.1.1.1");
        assert_eq!(c.observe_request("k1", &t, 0, a), None);
        assert_eq!(c.observe_request("k2", &t, 1, a), None);
        assert!(c.observe_request("k1", &t, 2, a).is_some());
        // A third key evicts the least recently active (k2 at slice 0 vs k1 at slice 0: either).
        assert_eq!(c.observe_request("k3", &t, 3, a), None);
        assert_eq!(c.len(), 2);
        // Idle windows are swept before anything live is evicted.
        assert_eq!(c.observe_request("k4", &t, 1000, a), None);
        assert_eq!(c.len(), 1);
        c.forget("k4");
        assert!(c.is_empty());
    }

    #[test]
    fn local_counter_tokens_and_threshold_updates() {
        let c = LocalVelocity::new(10);
        let t = thresholds(None, Some(10), None);
        assert_eq!(c.observe_tokens("k", &t, 0, 10), None);
        assert!(c.observe_tokens("k", &t, 1, 1).is_some());
        let looser = thresholds(None, Some(100), None);
        assert_eq!(c.observe_tokens("k", &looser, 2, 1), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(
            window in proptest::prelude::any::<u64>(),
            times in proptest::collection::vec(proptest::prelude::any::<i64>(), 1..20),
            tokens in proptest::prelude::any::<u64>(),
        ) {
            let mut w = VelocityWindow::new(VelocityThresholds {
                window_secs: window,
                max_requests: Some(3),
                max_tokens: Some(10),
                max_distinct_ips: Some(u64::MAX),
            });
            for (i, now) in times.into_iter().enumerate() {
                let _ = w.observe_request(now, v4(i as u32));
                let _ = w.observe_tokens(now, tokens);
                let _ = w.is_idle(now);
            }
        }
    }

    #[test]
    fn older_json_loads() {
        let t: VelocityThresholds = serde_json::from_str(r#"{"max_requests":100}"#).expect("json");
        assert_eq!(t.window_secs, 60);
        assert_eq!(t.max_requests, Some(100));
        assert_eq!(t.max_tokens, None);
    }
}
