//! Replay protection for signed requests: remember each (key, nonce) pair until its timestamp can
//! no longer pass the freshness window.
//!
//! **Sync trait, by choice.** This crate stays free of async runtimes. Verification is split so an
//! async store needs no trait from here: the gateway first calls
//! [`verify`](super::signature::verify) (pure: format, clock window, MAC), and only then records the
//! nonce — with [`LocalNonces`] through [`verify_and_remember`](super::signature::verify_and_remember),
//! or with its own async Redis `SET key NX EX ttl`, mapping the answer through
//! [`NonceVerdict::into_result`]. Checking the MAC first means a client without the key's secret
//! cannot fill the store.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Denial, SignatureFault};

/// What a nonce store says about a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceVerdict {
    /// First use: the nonce is now remembered.
    Fresh,
    /// Already used by this key and not yet expired.
    Replayed,
    /// The store could not record it (full, or unreachable). Treated as a refusal: accepting a
    /// request we cannot protect from replay would silently switch the protection off.
    Unavailable,
}

impl NonceVerdict {
    /// `Fresh` → `Ok`, anything else → the matching `bad_signature` denial.
    ///
    /// ```
    /// use latchkey_policy::locks::nonce::NonceVerdict;
    /// assert!(NonceVerdict::Fresh.into_result().is_ok());
    /// assert!(NonceVerdict::Replayed.into_result().is_err());
    /// ```
    pub fn into_result(self) -> Result<(), Denial> {
        match self {
            NonceVerdict::Fresh => Ok(()),
            NonceVerdict::Replayed => Err(Denial::BadSignature(SignatureFault::Replayed)),
            NonceVerdict::Unavailable => {
                Err(Denial::BadSignature(SignatureFault::ReplayGuardUnavailable))
            }
        }
    }
}

/// Remembers nonces per key. Implementations must make check-and-remember atomic.
///
/// This returns a [`NonceVerdict`] rather than a `bool` so "replayed" and "could not record" get
/// different messages; both refuse.
pub trait NonceStore {
    /// Records `nonce` for `key_id` until `now + ttl_secs` unless it is already recorded and
    /// unexpired. Use [`nonce_ttl`] for `ttl_secs`.
    fn check_and_remember(
        &self,
        key_id: &str,
        nonce: &str,
        now: i64,
        ttl_secs: i64,
    ) -> NonceVerdict;
}

/// How long a nonce must be remembered for a freshness window of `window_secs`.
///
/// A timestamp is accepted while `|now - ts| <= window`, so a request stamped up to `window` in the
/// future stays acceptable until `now + 2 * window`; the nonce must outlive that.
///
/// ```
/// assert_eq!(latchkey_policy::locks::nonce::nonce_ttl(300), 600);
/// ```
pub fn nonce_ttl(window_secs: u64) -> i64 {
    i64::try_from(window_secs.saturating_mul(2)).unwrap_or(i64::MAX)
}

/// In-process nonce store with a hard capacity.
///
/// When full, expired entries are swept; if it is still full the new nonce is **refused**
/// ([`NonceVerdict::Unavailable`]) rather than evicting a live one, because forgetting a live nonce
/// would reopen the replay window for it (fail closed). Size the capacity for the expected signed
/// request rate times [`nonce_ttl`]. A full sweep runs at most once per second of `now`, so a
/// flood against a full store costs a map lookup per request, not a scan.
#[derive(Debug)]
pub struct LocalNonces {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `key id NUL nonce` → expiry (Unix seconds, exclusive). One string, so remembering a
    /// nonce costs one allocation. Key ids and nonces never contain NUL.
    seen: HashMap<String, i64>,
    /// `now` of the last full sweep.
    last_sweep: Option<i64>,
}

impl LocalNonces {
    /// A store that holds at most `capacity` live nonces.
    ///
    /// ```
    /// use latchkey_policy::locks::nonce::{LocalNonces, NonceStore, NonceVerdict};
    /// let store = LocalNonces::new(1000);
    /// assert_eq!(store.check_and_remember("key1", "n0nce-abc", 100, 600), NonceVerdict::Fresh);
    /// assert_eq!(store.check_and_remember("key1", "n0nce-abc", 101, 600), NonceVerdict::Replayed);
    /// assert_eq!(store.check_and_remember("key2", "n0nce-abc", 101, 600), NonceVerdict::Fresh);
    /// ```
    pub fn new(capacity: usize) -> LocalNonces {
        LocalNonces {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Number of remembered nonces (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map stays consistent even if a holder panicked (each operation is a single insert or
    /// retain), so a poisoned lock is recovered rather than turned into a panic on every request.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl NonceStore for LocalNonces {
    fn check_and_remember(
        &self,
        key_id: &str,
        nonce: &str,
        now: i64,
        ttl_secs: i64,
    ) -> NonceVerdict {
        let mut inner = self.lock();
        let mut id = String::with_capacity(key_id.len() + 1 + nonce.len());
        id.push_str(key_id);
        id.push('\0');
        id.push_str(nonce);
        if matches!(inner.seen.get(&id), Some(&expiry) if expiry > now) {
            return NonceVerdict::Replayed;
        }
        if inner.seen.len() >= self.capacity && !inner.seen.contains_key(&id) {
            if inner.last_sweep.is_some_and(|t| t >= now) {
                return NonceVerdict::Unavailable;
            }
            inner.seen.retain(|_, expiry| *expiry > now);
            inner.last_sweep = Some(now);
            if inner.seen.len() >= self.capacity {
                return NonceVerdict::Unavailable;
            }
        }
        inner.seen.insert(id, now.saturating_add(ttl_secs.max(0)));
        NonceVerdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_is_detected_until_expiry() {
        let s = LocalNonces::new(10);
        assert_eq!(
            s.check_and_remember("k", "nonce-1", 0, 10),
            NonceVerdict::Fresh
        );
        assert_eq!(
            s.check_and_remember("k", "nonce-1", 9, 10),
            NonceVerdict::Replayed
        );
        // Expired: the timestamp window no longer admits it, so it may be recorded again.
        assert_eq!(
            s.check_and_remember("k", "nonce-1", 10, 10),
            NonceVerdict::Fresh
        );
    }

    #[test]
    fn nonces_are_per_key() {
        let s = LocalNonces::new(10);
        assert_eq!(
            s.check_and_remember("a", "nonce-1", 0, 10),
            NonceVerdict::Fresh
        );
        assert_eq!(
            s.check_and_remember("b", "nonce-1", 0, 10),
            NonceVerdict::Fresh
        );
        assert_eq!(
            s.check_and_remember("a", "nonce-1", 0, 10),
            NonceVerdict::Replayed
        );
    }

    #[test]
    fn full_store_refuses_instead_of_forgetting() {
        let s = LocalNonces::new(2);
        assert_eq!(s.check_and_remember("k", "n1", 0, 100), NonceVerdict::Fresh);
        assert_eq!(s.check_and_remember("k", "n2", 0, 100), NonceVerdict::Fresh);
        assert_eq!(
            s.check_and_remember("k", "n3", 1, 100),
            NonceVerdict::Unavailable
        );
        // Live nonces were not evicted.
        assert_eq!(
            s.check_and_remember("k", "n1", 2, 100),
            NonceVerdict::Replayed
        );
        assert_eq!(s.len(), 2);
        // Once they expire, the sweep frees room.
        assert_eq!(
            s.check_and_remember("k", "n3", 100, 100),
            NonceVerdict::Fresh
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn sweep_runs_at_most_once_per_second() {
        let s = LocalNonces::new(2);
        assert_eq!(s.check_and_remember("k", "n1", 0, 5), NonceVerdict::Fresh);
        assert_eq!(s.check_and_remember("k", "n2", 0, 100), NonceVerdict::Fresh);
        assert_eq!(
            s.check_and_remember("k", "n3", 4, 100),
            NonceVerdict::Unavailable
        );
        // The sweep at 4 found nothing expired; at 5 n1 has expired and a new sweep may run.
        assert_eq!(s.check_and_remember("k", "n3", 5, 100), NonceVerdict::Fresh);
        assert_eq!(
            s.check_and_remember("k", "n4", 5, 100),
            NonceVerdict::Unavailable
        );
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let s = LocalNonces::new(0);
        assert_eq!(
            s.check_and_remember("k", "n1", 0, 5),
            NonceVerdict::Unavailable
        );
        assert!(s.is_empty());
    }

    #[test]
    fn verdict_mapping() {
        assert_eq!(
            NonceVerdict::Unavailable.into_result(),
            Err(Denial::BadSignature(SignatureFault::ReplayGuardUnavailable))
        );
    }

    #[test]
    fn ttl_saturates() {
        assert_eq!(nonce_ttl(u64::MAX), i64::MAX);
    }
}
