//! Idempotency keys for providers that honour them (Stripe's `Idempotency-Key` on `POST`).
//!
//! When the client sends none, Latchkey adds one derived from the request itself — the proxy
//! key, method, path and query, the body, and a 10-minute window — so a client that retries the
//! same request (a timeout, a dropped connection) sends the same key and the provider performs
//! it once; Latchkey's own retries reuse it too. Two identical requests meant to happen twice
//! within the same window would be merged: such a client sends its own key (the official Stripe
//! SDKs do), which Latchkey never replaces.

use latchkey_vault::model::Provider;
use pingora::http::RequestHeader;
use sha2::{Digest, Sha256};

/// The header.
pub const HEADER: &str = "idempotency-key";

/// Seconds a derived key stays the same for an identical request.
pub const WINDOW_SECS: i64 = 600;

/// Whether Latchkey adds a key to this request: the provider honours keys, the method is
/// `POST`, and the client sent none.
pub fn applies(provider: &Provider, req: &RequestHeader) -> bool {
    provider.idempotency && req.method == http::Method::POST && !req.headers.contains_key(HEADER)
}

/// The key for a request: `lk-` + 32 hex digits of SHA-256 over its identity.
///
/// ```
/// use latchkey_gateway::idempotency::derive;
/// let req = pingora::http::RequestHeader::build("POST", b"/v1/charges?expand=x", None).unwrap();
/// let a = derive("key_1", &req, "/v1/charges", b"amount=100", 1_700_000_000);
/// assert_eq!(a, derive("key_1", &req, "/v1/charges", b"amount=100", 1_700_000_010));
/// assert_ne!(a, derive("key_1", &req, "/v1/charges", b"amount=200", 1_700_000_000));
/// assert!(a.starts_with("lk-") && a.len() == 35);
/// ```
pub fn derive(key_id: &str, req: &RequestHeader, path: &str, body: &[u8], now: i64) -> String {
    let mut h = Sha256::new();
    for part in [
        key_id.as_bytes(),
        req.method.as_str().as_bytes(),
        path.as_bytes(),
        req.uri.query().unwrap_or("").as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(now.div_euclid(WINDOW_SECS).to_be_bytes());
    h.update(Sha256::digest(body));
    let digest = h.finalize();
    format!("lk-{}", hex_prefix(&digest, 16))
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}
