//! Errors Latchkey itself returns, in the contract's JSON shape:
//! `{"error": {"type": "latchkey_error", "code", "message", "request_id"}}`.

use bytes::Bytes;

/// A refusal or failure made by the gateway (not by the provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code (see the README's error table).
    pub code: &'static str,
    /// Human-readable explanation. Never contains a secret.
    pub message: String,
    /// Extra response headers (`retry-after`, the key's remaining budget).
    pub headers: Vec<(&'static str, String)>,
}

impl GatewayError {
    /// Builds an error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        GatewayError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `missing_key` 401.
    pub fn missing_key() -> Self {
        Self::new(
            401,
            "missing_key",
            "no proxy key: send it as 'Authorization: Bearer lk_…', x-api-key, api-key or x-goog-api-key",
        )
    }

    /// `invalid_key` 401.
    pub fn invalid_key() -> Self {
        Self::new(401, "invalid_key", "the proxy key is not valid")
    }

    /// `unknown_provider` 404.
    pub fn unknown_provider(id: &str) -> Self {
        Self::new(
            404,
            "unknown_provider",
            format!(
                "no provider named {:?}; see GET /api/v1/providers",
                truncate(id)
            ),
        )
    }

    /// `not_found` 404 for paths outside the contract.
    pub fn not_found() -> Self {
        Self::new(
            404,
            "not_found",
            "no such endpoint; proxy requests go to /proxy/{provider}/{path}",
        )
    }

    /// `upstream_unavailable` 503.
    pub fn upstream_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "upstream_unavailable", message)
    }

    /// `upstream_timeout` 504.
    pub fn upstream_timeout(message: impl Into<String>) -> Self {
        Self::new(504, "upstream_timeout", message)
    }

    /// `internal_error` 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal_error", message)
    }

    /// The JSON body.
    pub fn body(&self, request_id: &str) -> Bytes {
        let v = serde_json::json!({
            "error": {
                "type": "latchkey_error",
                "code": self.code,
                "message": self.message,
                "request_id": request_id,
            }
        });
        Bytes::from(v.to_string())
    }
}

/// Client-controlled text echoed in messages is cut short.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = GatewayError::missing_key();
        let v: serde_json::Value = serde_json::from_slice(&e.body("req_1")).unwrap();
        assert_eq!(v["error"]["type"], "latchkey_error");
        assert_eq!(v["error"]["code"], "missing_key");
        assert_eq!(v["error"]["request_id"], "req_1");
        let long = "x".repeat(500);
        assert!(GatewayError::unknown_provider(&long).message.len() < 200);
    }
}
