//! Signed requests: a key with `signed = true` must prove, per request, that the sender holds the
//! key's signing secret, that the request is recent, and that it was not replayed.
//!
//! # Wire format
//!
//! The client sends three headers:
//! - `x-latchkey-timestamp`: Unix seconds, decimal digits only (at most 18, no leading zero).
//! - `x-latchkey-nonce`: 8–128 characters of `[A-Za-z0-9_-]`, unique per request.
//! - `x-latchkey-signature`: lower- or upper-case hex of HMAC-SHA256(secret, string-to-sign).
//!
//! The string to sign is four lines plus the body hash, joined by `\n`, no trailing newline:
//!
//! ```text
//! {timestamp}\n{nonce}\n{METHOD}\n{path_with_query}\n{hex_sha256(body)}
//! ```
//!
//! - `timestamp` and `nonce`: exactly as sent in the headers.
//! - `METHOD`: the request method, ASCII upper-case (`POST`).
//! - `path_with_query`: the request target exactly as sent on the request line, including the
//!   query string and without scheme or host (`/proxy/openai/v1/chat/completions?x=1`). No
//!   normalization or decoding on either side.
//! - `hex_sha256(body)`: lower-case hex SHA-256 of the exact body bytes (the hash of the empty
//!   string for no body). The gateway must hash the body as received, which means buffering it
//!   (within its size limit) for signed keys.
//!
//! The nonce is inside the MAC on purpose: if it were not, an eavesdropper could replay a signed
//! request with a fresh nonce and replay protection would be worthless.
//!
//! # Verification order
//!
//! [`verify`] checks header presence, then formats, then the timestamp window, then the MAC (in
//! constant time). Only after it passes is the nonce recorded (see [`super::nonce`]), so a client
//! without the secret cannot fill the nonce store.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::nonce::{nonce_ttl, NonceStore};
use super::{Denial, SignatureFault};

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the Unix timestamp.
pub const TIMESTAMP_HEADER: &str = "x-latchkey-timestamp";
/// Header carrying the per-request nonce.
pub const NONCE_HEADER: &str = "x-latchkey-nonce";
/// Header carrying the hex HMAC-SHA256 signature.
pub const SIGNATURE_HEADER: &str = "x-latchkey-signature";
/// Default freshness window: five minutes either way.
pub const DEFAULT_WINDOW_SECS: u64 = 300;

/// The three signature headers as received (`None` when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    /// `x-latchkey-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `x-latchkey-nonce`.
    pub nonce: Option<&'a str>,
    /// `x-latchkey-signature`.
    pub signature: Option<&'a str>,
}

/// Lower-case hex SHA-256 of a body.
///
/// ```
/// use latchkey_policy::locks::signature::body_sha256_hex;
/// assert_eq!(
///     body_sha256_hex(b""),
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Builds the string to sign (see the module docs for the exact format).
///
/// ```
/// use latchkey_policy::locks::signature::string_to_sign;
/// let s = string_to_sign(1700000000, "nonce-123", "post", "/v1/chat?x=1", "ab12");
/// assert_eq!(s, "1700000000\nnonce-123\nPOST\n/v1/chat?x=1\nab12");
/// ```
pub fn string_to_sign(
    timestamp: i64,
    nonce: &str,
    method: &str,
    path_with_query: &str,
    body_sha256_hex: &str,
) -> String {
    format!(
        "{timestamp}\n{nonce}\n{}\n{path_with_query}\n{body_sha256_hex}",
        method.to_ascii_uppercase()
    )
}

fn mac(secret: &[u8], message: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the match keeps the
    // code free of unwrap all the same.
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    };
    m.update(message.as_bytes());
    m
}

/// Signs a request: lower-case hex HMAC-SHA256 over [`string_to_sign`]. For clients and tests.
///
/// ```
/// use latchkey_policy::locks::signature::{body_sha256_hex, sign};
/// let sig = sign(b"secret", 1700000000, "nonce-123", "POST", "/v1/chat", &body_sha256_hex(b"{}"));
/// assert_eq!(sig.len(), 64);
/// ```
pub fn sign(
    secret: &[u8],
    timestamp: i64,
    nonce: &str,
    method: &str,
    path_with_query: &str,
    body_sha256_hex: &str,
) -> String {
    let msg = string_to_sign(timestamp, nonce, method, path_with_query, body_sha256_hex);
    hex::encode(mac(secret, &msg).finalize().into_bytes())
}

/// Is this a valid nonce: 8–128 characters of `[A-Za-z0-9_-]`?
///
/// ```
/// use latchkey_policy::locks::signature::valid_nonce;
/// assert!(valid_nonce("abcd-1234_XY"));
/// assert!(!valid_nonce("short"));
/// assert!(!valid_nonce("has space in it"));
/// ```
pub fn valid_nonce(nonce: &str) -> bool {
    (8..=128).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses the timestamp header: 1–18 ASCII digits (so it always fits `i64`), no sign, no leading
/// zero. Leading zeros are refused because the string to sign carries the canonical decimal form:
/// accepting `0001000` would make the signed text differ from the header text.
fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Verifies a signed request's headers against the key's secret at time `now` (Unix seconds).
/// The timestamp must satisfy `|now - timestamp| <= window_secs`. Does **not** check the nonce
/// for replay; call [`verify_and_remember`] or record it yourself afterwards.
///
/// ```
/// use latchkey_policy::locks::signature::{body_sha256_hex, sign, verify, SignedHeaders};
/// use latchkey_policy::locks::{Denial, SignatureFault};
/// let body = body_sha256_hex(br#"{"model":"gpt-4o"}"#);
/// let sig = sign(b"k3y", 1000, "nonce-0001", "POST", "/v1/chat", &body);
/// let h = SignedHeaders { timestamp: Some("1000"), nonce: Some("nonce-0001"), signature: Some(&sig) };
/// assert_eq!(verify(b"k3y", &h, "POST", "/v1/chat", &body, 1010, 300), Ok(()));
/// assert_eq!(
///     verify(b"k3y", &h, "POST", "/v1/chat", &body, 2000, 300),
///     Err(Denial::BadSignature(SignatureFault::Stale))
/// );
/// assert_eq!(
///     verify(b"wrong", &h, "POST", "/v1/chat", &body, 1010, 300),
///     Err(Denial::BadSignature(SignatureFault::BadMac))
/// );
/// ```
pub fn verify(
    secret: &[u8],
    headers: &SignedHeaders<'_>,
    method: &str,
    path_with_query: &str,
    body_sha256_hex: &str,
    now: i64,
    window_secs: u64,
) -> Result<(), Denial> {
    let fault = Denial::BadSignature;
    let (Some(ts), Some(nonce), Some(sig)) = (headers.timestamp, headers.nonce, headers.signature)
    else {
        return Err(fault(SignatureFault::Missing));
    };
    let ts_value = parse_timestamp(ts.trim()).ok_or(fault(SignatureFault::Malformed))?;
    let nonce = nonce.trim();
    if !valid_nonce(nonce) {
        return Err(fault(SignatureFault::Malformed));
    }
    let sig = sig.trim();
    if sig.len() != 64 {
        return Err(fault(SignatureFault::Malformed));
    }
    let sig = hex::decode(sig).map_err(|_| fault(SignatureFault::Malformed))?;
    if now.abs_diff(ts_value) > window_secs {
        return Err(fault(SignatureFault::Stale));
    }
    let msg = string_to_sign(ts_value, nonce, method, path_with_query, body_sha256_hex);
    // `verify_slice` compares in constant time.
    mac(secret, &msg)
        .verify_slice(&sig)
        .map_err(|_| fault(SignatureFault::BadMac))
}

/// [`verify`], then record the nonce in `store` for `key_id` (replay protection). The nonce is
/// only recorded once the MAC is valid.
///
/// ```
/// use latchkey_policy::locks::nonce::LocalNonces;
/// use latchkey_policy::locks::signature::{body_sha256_hex, sign, verify_and_remember, SignedHeaders};
/// use latchkey_policy::locks::{Denial, SignatureFault};
/// let store = LocalNonces::new(100);
/// let body = body_sha256_hex(b"");
/// let sig = sign(b"k3y", 1000, "nonce-0001", "GET", "/v1/models", &body);
/// let h = SignedHeaders { timestamp: Some("1000"), nonce: Some("nonce-0001"), signature: Some(&sig) };
/// let check = || verify_and_remember(b"k3y", &h, "GET", "/v1/models", &body, 1000, 300, "key1", &store);
/// assert_eq!(check(), Ok(()));
/// assert_eq!(check(), Err(Denial::BadSignature(SignatureFault::Replayed)));
/// ```
#[allow(clippy::too_many_arguments)] // Mirrors `verify` plus the two replay inputs.
pub fn verify_and_remember(
    secret: &[u8],
    headers: &SignedHeaders<'_>,
    method: &str,
    path_with_query: &str,
    body_sha256_hex: &str,
    now: i64,
    window_secs: u64,
    key_id: &str,
    store: &dyn NonceStore,
) -> Result<(), Denial> {
    verify(
        secret,
        headers,
        method,
        path_with_query,
        body_sha256_hex,
        now,
        window_secs,
    )?;
    // `verify` validated the nonce, so it is present.
    let nonce = headers.nonce.map(str::trim).unwrap_or_default();
    store
        .check_and_remember(key_id, nonce, now, nonce_ttl(window_secs))
        .into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locks::nonce::LocalNonces;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"per-key-signing-secret";
    const NONCE: &str = "abcDEF-123_xyz";

    fn signed(ts: i64, method: &str, path: &str, body: &[u8]) -> (String, String, String) {
        let h = body_sha256_hex(body);
        (ts.to_string(), sign(SECRET, ts, NONCE, method, path, &h), h)
    }

    fn headers<'a>(ts: &'a str, nonce: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            timestamp: Some(ts),
            nonce: Some(nonce),
            signature: Some(sig),
        }
    }

    fn err(f: SignatureFault) -> Result<(), Denial> {
        Err(Denial::BadSignature(f))
    }

    #[test]
    fn known_vector() {
        // Independent check of the format: HMAC over the literal string.
        let msg =
            "1700000000\nnonce-123\nPOST\n/v1/chat?x=1\n".to_string() + &body_sha256_hex(b"{}");
        let expected = hex::encode(mac(b"secret", &msg).finalize().into_bytes());
        assert_eq!(
            sign(
                b"secret",
                1700000000,
                "nonce-123",
                "post",
                "/v1/chat?x=1",
                &body_sha256_hex(b"{}")
            ),
            expected
        );
    }

    #[test]
    fn valid_signature_passes_and_method_case_is_ignored() {
        let (ts, sig, h) = signed(1000, "post", "/proxy/openai/v1/chat?a=b", b"{}");
        let hd = headers(&ts, NONCE, &sig);
        assert_eq!(
            verify(
                SECRET,
                &hd,
                "POST",
                "/proxy/openai/v1/chat?a=b",
                &h,
                1000,
                300
            ),
            Ok(())
        );
        let upper = sig.to_ascii_uppercase();
        let hd = headers(&ts, NONCE, &upper);
        assert_eq!(
            verify(
                SECRET,
                &hd,
                "POST",
                "/proxy/openai/v1/chat?a=b",
                &h,
                1000,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn missing_headers() {
        let (ts, sig, h) = signed(1000, "GET", "/", b"");
        let mut hd = headers(&ts, NONCE, &sig);
        hd.signature = None;
        assert_eq!(
            verify(SECRET, &hd, "GET", "/", &h, 1000, 300),
            err(SignatureFault::Missing)
        );
        assert_eq!(
            verify(SECRET, &SignedHeaders::default(), "GET", "/", &h, 1000, 300),
            err(SignatureFault::Missing)
        );
    }

    #[test]
    fn malformed_headers() {
        let (ts, sig, h) = signed(1000, "GET", "/", b"");
        for (t, n, s) in [
            ("-1000", NONCE, sig.as_str()),
            ("+1000", NONCE, sig.as_str()),
            ("1000.5", NONCE, sig.as_str()),
            ("01000", NONCE, sig.as_str()),
            ("99999999999999999999", NONCE, sig.as_str()),
            (ts.as_str(), "short", sig.as_str()),
            (ts.as_str(), "bad nonce with spaces", sig.as_str()),
            (ts.as_str(), NONCE, "zz"),
            (ts.as_str(), NONCE, &"g".repeat(64)),
        ] {
            assert_eq!(
                verify(SECRET, &headers(t, n, s), "GET", "/", &h, 1000, 300),
                err(SignatureFault::Malformed),
                "{t} {n} {s}"
            );
        }
    }

    #[test]
    fn stale_in_both_directions() {
        let (ts, sig, h) = signed(1000, "GET", "/", b"");
        let hd = headers(&ts, NONCE, &sig);
        assert_eq!(verify(SECRET, &hd, "GET", "/", &h, 1300, 300), Ok(()));
        assert_eq!(verify(SECRET, &hd, "GET", "/", &h, 700, 300), Ok(()));
        assert_eq!(
            verify(SECRET, &hd, "GET", "/", &h, 1301, 300),
            err(SignatureFault::Stale)
        );
        assert_eq!(
            verify(SECRET, &hd, "GET", "/", &h, 699, 300),
            err(SignatureFault::Stale)
        );
        assert_eq!(
            verify(SECRET, &hd, "GET", "/", &h, i64::MIN, 300),
            err(SignatureFault::Stale)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let (ts, sig, h) = signed(1000, "POST", "/v1/chat?x=1", b"{\"model\":\"a\"}");
        let hd = headers(&ts, NONCE, &sig);
        let other_body = body_sha256_hex(b"{\"model\":\"b\"}");
        assert_eq!(
            verify(SECRET, &hd, "POST", "/v1/chat?x=1", &other_body, 1000, 300),
            err(SignatureFault::BadMac)
        );
        assert_eq!(
            verify(SECRET, &hd, "POST", "/v1/chat?x=2", &h, 1000, 300),
            err(SignatureFault::BadMac)
        );
        assert_eq!(
            verify(SECRET, &hd, "PUT", "/v1/chat?x=1", &h, 1000, 300),
            err(SignatureFault::BadMac)
        );
        // Swapping the nonce breaks the MAC: a replay with a new nonce does not verify.
        let hd2 = headers(&ts, "another-nonce-1", &sig);
        assert_eq!(
            verify(SECRET, &hd2, "POST", "/v1/chat?x=1", &h, 1000, 300),
            err(SignatureFault::BadMac)
        );
        // Moving the timestamp breaks it too.
        let hd3 = headers("1001", NONCE, &sig);
        assert_eq!(
            verify(SECRET, &hd3, "POST", "/v1/chat?x=1", &h, 1000, 300),
            err(SignatureFault::BadMac)
        );
    }

    #[test]
    fn replayed_nonce_is_rejected() {
        let store = LocalNonces::new(100);
        let (ts, sig, h) = signed(1000, "GET", "/v1/models", b"");
        let hd = headers(&ts, NONCE, &sig);
        let run =
            |now| verify_and_remember(SECRET, &hd, "GET", "/v1/models", &h, now, 300, "k1", &store);
        assert_eq!(run(1000), Ok(()));
        assert_eq!(run(1001), err(SignatureFault::Replayed));
        assert_eq!(run(1300), err(SignatureFault::Replayed));
        // Too old now anyway: stale wins before the store is consulted.
        assert_eq!(run(1301), err(SignatureFault::Stale));
    }

    #[test]
    fn bad_mac_does_not_consume_the_nonce() {
        let store = LocalNonces::new(100);
        let (ts, sig, h) = signed(1000, "GET", "/", b"");
        let hd = headers(&ts, NONCE, &sig);
        assert_eq!(
            verify_and_remember(b"wrong", &hd, "GET", "/", &h, 1000, 300, "k1", &store),
            err(SignatureFault::BadMac)
        );
        assert!(store.is_empty());
        assert_eq!(
            verify_and_remember(SECRET, &hd, "GET", "/", &h, 1000, 300, "k1", &store),
            Ok(())
        );
    }

    #[test]
    fn full_store_refuses() {
        let store = LocalNonces::new(0);
        let (ts, sig, h) = signed(1000, "GET", "/", b"");
        let hd = headers(&ts, NONCE, &sig);
        assert_eq!(
            verify_and_remember(SECRET, &hd, "GET", "/", &h, 1000, 300, "k1", &store),
            err(SignatureFault::ReplayGuardUnavailable)
        );
    }

    /// Flips one byte of `s` at `idx` to a different printable ASCII byte.
    fn mutate(s: &str, idx: usize, delta: u8) -> String {
        let mut b = s.as_bytes().to_vec();
        let i = idx % b.len();
        b[i] = b' ' + ((b[i] - b' ' + 1 + delta % 94) % 95);
        String::from_utf8(b).expect("ascii")
    }

    proptest! {
        #[test]
        fn sign_then_verify_roundtrips(
            secret in proptest::collection::vec(any::<u8>(), 0..64),
            ts in 0i64..4_000_000_000,
            skew in -300i64..=300,
            nonce in "[A-Za-z0-9_-]{8,128}",
            method in "[A-Za-z]{1,10}",
            path in "/[ -~]{0,100}",
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let h = body_sha256_hex(&body);
            let sig = sign(&secret, ts, &nonce, &method, &path, &h);
            let ts_s = ts.to_string();
            let hd = headers(&ts_s, &nonce, &sig);
            prop_assert_eq!(verify(&secret, &hd, &method, &path, &h, ts + skew, 300), Ok(()));
        }

        #[test]
        fn any_single_byte_mutation_fails(
            ts in 0i64..4_000_000_000,
            path in "/[ -~]{0,60}",
            method in "[A-Z]{3,7}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
            which in 0usize..3,
            idx in any::<usize>(),
            delta in any::<u8>(),
        ) {
            let h = body_sha256_hex(&body);
            let sig = sign(SECRET, ts, NONCE, &method, &path, &h);
            let ts_s = ts.to_string();
            let hd = headers(&ts_s, NONCE, &sig);
            let (m, p, bh) = match which {
                0 => (method.clone(), path.clone(), mutate(&h, idx, delta)),
                1 => (method.clone(), mutate(&path, idx, delta), h.clone()),
                _ => (mutate(&method, idx, delta), path.clone(), h.clone()),
            };
            // Method case is normalized by design, so a case-only change is not a mutation.
            prop_assume!(!m.eq_ignore_ascii_case(&method) || p != path || bh != h);
            prop_assert_eq!(verify(SECRET, &hd, &m, &p, &bh, ts, 300), err(SignatureFault::BadMac));
        }

        #[test]
        fn verify_never_panics(
            ts in ".{0,30}",
            nonce in ".{0,140}",
            sig in ".{0,80}",
            now in any::<i64>(),
            window in any::<u64>(),
        ) {
            let hd = headers(&ts, &nonce, &sig);
            let _ = verify(SECRET, &hd, "GET", "/", "", now, window);
        }
    }
}
