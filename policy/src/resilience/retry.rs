//! Retry policy: whether a failed attempt may be sent again (to the same target or, via
//! [`failover::pick`](super::failover::pick), another one) and how long to wait first.
//!
//! The rule is about harm: a request is repeated only when repeating it cannot do anything twice.
//!
//! | failure | idempotent method | POST/PATCH/other + idempotency key | POST/PATCH/other |
//! |---|---|---|---|
//! | [`ConnectFailed`](FailureKind::ConnectFailed) (never reached the provider) | retry | retry | retry |
//! | [`ResetBeforeResponse`](FailureKind::ResetBeforeResponse), [`TimeoutBeforeResponse`](FailureKind::TimeoutBeforeResponse) | retry | retry | give up |
//! | status 429, 502, 503, 504 | retry | retry | give up |
//! | any other status | give up | give up | give up |
//! | [`AfterFirstByte`](FailureKind::AfterFirstByte) | give up | give up | give up |
//!
//! Idempotent methods are those of RFC 9110 §9.2.2: `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`,
//! `DELETE` (matched exactly: methods are case-sensitive, and an unknown spelling is treated as
//! non-idempotent). Nothing is retried once a response byte has gone to the client.
//!
//! Waits use full-jitter exponential backoff: `random % min(max_ms, base_ms * 2^attempt)`, where
//! `random` is any uniformly random `u64` from the caller. A provider's `Retry-After` (passed as
//! [`FailureKind::StatusWithRetryAfter`]) is honoured as a lower bound; when it is longer than
//! [`RetryPolicy::max_ms`] the gateway gives up and lets the client see the response and its
//! `Retry-After` rather than hold the connection.

use serde::{Deserialize, Serialize};

/// Retry limits. Every field defaults, so a partial table loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Most attempts in total, the original request included (default 3: the original and 2
    /// retries). 0 is treated as 1 (no retries).
    pub max_attempts: u32,
    /// Backoff base in milliseconds: the cap for the first retry's wait (default 100).
    pub base_ms: u64,
    /// Longest wait in milliseconds (default 2 000); also the longest provider `Retry-After`
    /// honoured.
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_ms: 100,
            max_ms: 2_000,
        }
    }
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The connection was never established (DNS, TCP connect, TLS handshake): the provider never
    /// saw the request.
    ConnectFailed,
    /// The connection broke after the request was (perhaps partly) sent, before any response.
    ResetBeforeResponse,
    /// No response arrived in time; the provider may be working on it.
    TimeoutBeforeResponse,
    /// The provider answered with this status (nothing sent to the client yet).
    Status(u16),
    /// The provider answered with this status and a `Retry-After` of `retry_after_ms`.
    StatusWithRetryAfter {
        /// The HTTP status.
        status: u16,
        /// The provider's `Retry-After`, in milliseconds.
        retry_after_ms: u64,
    },
    /// Something failed after the first response byte reached the client.
    AfterFirstByte,
}

impl FailureKind {
    /// The status failure for `status`, with the provider's `Retry-After` if it sent one.
    ///
    /// ```
    /// use latchkey_policy::resilience::retry::FailureKind;
    /// assert_eq!(FailureKind::from_status(502, None), FailureKind::Status(502));
    /// assert_eq!(
    ///     FailureKind::from_status(429, Some(500)),
    ///     FailureKind::StatusWithRetryAfter { status: 429, retry_after_ms: 500 }
    /// );
    /// ```
    pub fn from_status(status: u16, retry_after_ms: Option<u64>) -> FailureKind {
        match retry_after_ms {
            Some(retry_after_ms) => FailureKind::StatusWithRetryAfter {
                status,
                retry_after_ms,
            },
            None => FailureKind::Status(status),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this many milliseconds, then try again.
    RetryAfter(u64),
    /// Do not retry; answer with the failure.
    GiveUp(GiveUpReason),
}

/// Why [`RetryPolicy::decide`] said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUpReason {
    /// The response had already started reaching the client.
    AfterFirstByte,
    /// The status is not one worth retrying (only 429, 502, 503, 504 are).
    NotRetryableStatus,
    /// The request may have reached the provider, and repeating it could do something twice: a
    /// non-idempotent method without an idempotency key.
    NotIdempotent,
    /// The provider asked to wait longer than [`RetryPolicy::max_ms`].
    RetryAfterTooLong,
    /// [`RetryPolicy::max_attempts`] reached.
    AttemptsExhausted,
}

impl GiveUpReason {
    /// Stable lower-case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::AfterFirstByte => "after_first_byte",
            GiveUpReason::NotIdempotent => "not_idempotent",
            GiveUpReason::NotRetryableStatus => "not_retryable_status",
            GiveUpReason::RetryAfterTooLong => "retry_after_too_long",
            GiveUpReason::AttemptsExhausted => "attempts_exhausted",
        }
    }
}

/// Whether `method` is idempotent per RFC 9110 (exact, case-sensitive match).
///
/// ```
/// use latchkey_policy::resilience::retry::is_idempotent_method;
/// assert!(is_idempotent_method("GET") && is_idempotent_method("DELETE"));
/// assert!(!is_idempotent_method("POST") && !is_idempotent_method("get"));
/// ```
pub fn is_idempotent_method(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether a provider status is worth another attempt (if the request may be repeated).
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

impl RetryPolicy {
    /// Decide what follows a failed attempt.
    ///
    /// `attempt` is the 0-based number of the attempt that just failed (0 = the original
    /// request), so a retry is possible while `attempt + 1 < max_attempts`. `random` is any
    /// uniformly random `u64` (the jitter). The checks run in the order of [`GiveUpReason`]'s
    /// variants, so the reason given is the most fundamental one.
    ///
    /// ```
    /// use latchkey_policy::resilience::retry::{FailureKind, GiveUpReason, RetryDecision, RetryPolicy};
    ///
    /// let policy = RetryPolicy::default(); // 3 attempts, 100 ms base, 2 s cap
    ///
    /// // A POST whose connection never opened is safe to resend: wait random % 100 ms.
    /// assert_eq!(
    ///     policy.decide(0, "POST", false, FailureKind::ConnectFailed, 1_234),
    ///     RetryDecision::RetryAfter(34)
    /// );
    /// // A POST that may have reached the provider is not, without an idempotency key ...
    /// assert_eq!(
    ///     policy.decide(0, "POST", false, FailureKind::Status(503), 1_234),
    ///     RetryDecision::GiveUp(GiveUpReason::NotIdempotent)
    /// );
    /// // ... but is with one. The second retry's wait is capped at 200 ms.
    /// assert_eq!(
    ///     policy.decide(1, "POST", true, FailureKind::Status(503), 1_234),
    ///     RetryDecision::RetryAfter(34)
    /// );
    /// // Three attempts made: done.
    /// assert_eq!(
    ///     policy.decide(2, "GET", false, FailureKind::ConnectFailed, 0),
    ///     RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
    /// );
    /// ```
    pub fn decide(
        &self,
        attempt: u32,
        method: &str,
        has_idempotency_key: bool,
        failure: FailureKind,
        random: u64,
    ) -> RetryDecision {
        let repeatable = has_idempotency_key || is_idempotent_method(method);
        let retry_after_ms = match failure {
            FailureKind::AfterFirstByte => {
                return RetryDecision::GiveUp(GiveUpReason::AfterFirstByte)
            }
            FailureKind::ConnectFailed => None,
            FailureKind::ResetBeforeResponse | FailureKind::TimeoutBeforeResponse => {
                if !repeatable {
                    return RetryDecision::GiveUp(GiveUpReason::NotIdempotent);
                }
                None
            }
            FailureKind::Status(status) => {
                if !is_retryable_status(status) {
                    return RetryDecision::GiveUp(GiveUpReason::NotRetryableStatus);
                }
                if !repeatable {
                    return RetryDecision::GiveUp(GiveUpReason::NotIdempotent);
                }
                None
            }
            FailureKind::StatusWithRetryAfter {
                status,
                retry_after_ms,
            } => {
                if !is_retryable_status(status) {
                    return RetryDecision::GiveUp(GiveUpReason::NotRetryableStatus);
                }
                if !repeatable {
                    return RetryDecision::GiveUp(GiveUpReason::NotIdempotent);
                }
                if retry_after_ms > self.max_ms {
                    return RetryDecision::GiveUp(GiveUpReason::RetryAfterTooLong);
                }
                Some(retry_after_ms)
            }
        };
        if attempt.saturating_add(1) >= self.max_attempts.max(1) {
            return RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted);
        }
        let backoff = self.backoff_ms(attempt, random);
        RetryDecision::RetryAfter(retry_after_ms.map_or(backoff, |hint| hint.max(backoff)))
    }

    /// The full-jitter wait before retrying after attempt `attempt` (0-based):
    /// `random % min(max_ms, base_ms * 2^attempt)`, or 0 when that cap is 0. Never above
    /// `max_ms`; never overflows.
    ///
    /// ```
    /// use latchkey_policy::resilience::retry::RetryPolicy;
    /// let policy = RetryPolicy::default();
    /// assert_eq!(policy.backoff_ms(0, 250), 50); // cap 100
    /// assert_eq!(policy.backoff_ms(3, 1_250), 450); // cap 800
    /// assert!(policy.backoff_ms(40, u64::MAX) < 2_000); // cap 2 000
    /// ```
    pub fn backoff_ms(&self, attempt: u32, random: u64) -> u64 {
        let cap = self
            .base_ms
            .saturating_mul(2u64.saturating_pow(attempt))
            .min(self.max_ms);
        if cap == 0 {
            0
        } else {
            random % cap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METHODS: [&str; 9] = [
        "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH", "CONNECT",
    ];

    fn retries(method: &str, key: bool, failure: FailureKind) -> bool {
        matches!(
            RetryPolicy::default().decide(0, method, key, failure, 7),
            RetryDecision::RetryAfter(_)
        )
    }

    #[test]
    fn defaults() {
        let p = RetryPolicy::default();
        assert_eq!((p.max_attempts, p.base_ms, p.max_ms), (3, 100, 2_000));
        let loaded: RetryPolicy = serde_json::from_str(r#"{"max_ms": 500}"#).unwrap();
        assert_eq!(loaded, RetryPolicy { max_ms: 500, ..p });
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"retries": 1}"#).is_err());
    }

    #[test]
    fn connect_failures_always_retry() {
        for method in METHODS {
            for key in [false, true] {
                assert!(retries(method, key, FailureKind::ConnectFailed), "{method}");
            }
        }
        assert!(retries("get", false, FailureKind::ConnectFailed));
    }

    #[test]
    fn nothing_retries_after_the_first_byte() {
        for method in METHODS {
            for key in [false, true] {
                assert_eq!(
                    RetryPolicy::default().decide(0, method, key, FailureKind::AfterFirstByte, 0),
                    RetryDecision::GiveUp(GiveUpReason::AfterFirstByte)
                );
            }
        }
    }

    #[test]
    fn maybe_delivered_failures_need_idempotence_or_a_key() {
        let maybe_delivered = [
            FailureKind::ResetBeforeResponse,
            FailureKind::TimeoutBeforeResponse,
            FailureKind::Status(429),
            FailureKind::Status(502),
            FailureKind::Status(503),
            FailureKind::Status(504),
            FailureKind::from_status(503, Some(10)),
        ];
        for failure in maybe_delivered {
            for method in METHODS {
                let idempotent = is_idempotent_method(method);
                assert_eq!(
                    retries(method, false, failure),
                    idempotent,
                    "{method} {failure:?}"
                );
                assert!(retries(method, true, failure), "{method} {failure:?} + key");
            }
            assert_eq!(
                RetryPolicy::default().decide(0, "POST", false, failure, 0),
                RetryDecision::GiveUp(GiveUpReason::NotIdempotent)
            );
            // Lower-case spellings are not the standard methods.
            assert!(!retries("get", false, failure));
        }
    }

    #[test]
    fn other_statuses_never_retry() {
        for status in [
            200, 400, 401, 403, 404, 408, 409, 413, 500, 501, 505, 599, 0,
        ] {
            for method in METHODS {
                for key in [false, true] {
                    assert_eq!(
                        RetryPolicy::default().decide(
                            0,
                            method,
                            key,
                            FailureKind::Status(status),
                            0
                        ),
                        RetryDecision::GiveUp(GiveUpReason::NotRetryableStatus),
                        "{method} {status}"
                    );
                }
            }
        }
        assert_eq!(
            RetryPolicy::default().decide(
                0,
                "GET",
                false,
                FailureKind::from_status(500, Some(1)),
                0
            ),
            RetryDecision::GiveUp(GiveUpReason::NotRetryableStatus)
        );
    }

    #[test]
    fn attempts_are_limited() {
        let p = RetryPolicy::default();
        let f = FailureKind::ConnectFailed;
        assert!(matches!(
            p.decide(0, "GET", false, f, 0),
            RetryDecision::RetryAfter(_)
        ));
        assert!(matches!(
            p.decide(1, "GET", false, f, 0),
            RetryDecision::RetryAfter(_)
        ));
        for attempt in [2, 3, u32::MAX] {
            assert_eq!(
                p.decide(attempt, "GET", false, f, 0),
                RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
            );
        }
        for max_attempts in [0, 1] {
            let none = RetryPolicy { max_attempts, ..p };
            assert_eq!(
                none.decide(0, "GET", false, f, 0),
                RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
            );
        }
    }

    #[test]
    fn retry_after_is_a_lower_bound_within_max() {
        let p = RetryPolicy::default();
        let f = FailureKind::from_status(429, Some(1_500));
        // backoff for attempt 0 is < 100, so the hint wins.
        assert_eq!(
            p.decide(0, "GET", false, f, 99),
            RetryDecision::RetryAfter(1_500)
        );
        // A hint shorter than the backoff draw does not shorten it.
        let short = FailureKind::from_status(503, Some(10));
        assert_eq!(
            p.decide(0, "GET", false, short, 99),
            RetryDecision::RetryAfter(99)
        );
        assert_eq!(
            p.decide(
                0,
                "GET",
                false,
                FailureKind::from_status(429, Some(2_000)),
                0
            ),
            RetryDecision::RetryAfter(2_000)
        );
        assert_eq!(
            p.decide(
                0,
                "GET",
                false,
                FailureKind::from_status(429, Some(2_001)),
                0
            ),
            RetryDecision::GiveUp(GiveUpReason::RetryAfterTooLong)
        );
    }

    #[test]
    fn backoff_grows_then_caps() {
        let p = RetryPolicy::default();
        // With random = cap - 1 the wait is the cap minus one.
        let expected_caps = [100, 200, 400, 800, 1_600, 2_000, 2_000];
        for (attempt, cap) in expected_caps.iter().enumerate() {
            let attempt = attempt as u32;
            assert_eq!(p.backoff_ms(attempt, cap - 1), cap - 1, "attempt {attempt}");
            assert_eq!(p.backoff_ms(attempt, *cap), 0, "attempt {attempt}");
        }
        for attempt in [63, 64, 65, u32::MAX] {
            assert!(p.backoff_ms(attempt, u64::MAX) < 2_000);
        }
    }

    #[test]
    fn zero_backoff_settings_mean_immediate_retry() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_ms: 0,
            max_ms: 2_000,
        };
        assert_eq!(p.backoff_ms(5, u64::MAX), 0);
        let p = RetryPolicy {
            max_attempts: 3,
            base_ms: 100,
            max_ms: 0,
        };
        assert_eq!(
            p.decide(0, "GET", false, FailureKind::ConnectFailed, 99),
            RetryDecision::RetryAfter(0)
        );
    }

    #[test]
    fn reason_names() {
        assert_eq!(GiveUpReason::NotIdempotent.as_str(), "not_idempotent");
        assert_eq!(
            serde_json::to_value(GiveUpReason::AttemptsExhausted).unwrap(),
            "attempts_exhausted"
        );
        assert!(is_retryable_status(504) && !is_retryable_status(500));
    }
}
