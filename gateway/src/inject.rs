//! Rewriting the upstream request: strip the proxy key, point the request at the provider's
//! path, and inject the real credential per the provider's auth scheme.

use crate::errors::GatewayError;
use crate::extract::KEY_HEADERS;
use base64::Engine;
use http::HeaderValue;
use latchkey_policy::locks::{device, signature};
use latchkey_vault::catalog::Upstream;
use latchkey_vault::model::AuthScheme;
use latchkey_vault::SecretString;
use pingora::http::RequestHeader;

/// Request headers that carry Latchkey lock material and are removed before forwarding.
pub const LOCK_HEADERS: [&str; 4] = [
    device::DEVICE_HEADER,
    signature::TIMESTAMP_HEADER,
    signature::NONCE_HEADER,
    signature::SIGNATURE_HEADER,
];

/// Builds the upstream path and query: `prefix + rest`, with the client's query preserved and,
/// for `query:NAME` schemes, the credential appended (any client-sent `NAME` is dropped).
pub fn upstream_path(
    upstream: &Upstream,
    rest: &str,
    query: Option<&str>,
    query_auth: Option<(&str, &SecretString)>,
) -> String {
    let mut out = String::with_capacity(upstream.path_prefix.len() + rest.len() + 64);
    out.push_str(&upstream.path_prefix);
    out.push_str(rest);
    let mut first = true;
    let mut push = |out: &mut String, part: &str| {
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(part);
    };
    if let Some(q) = query {
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let name = part.split('=').next().unwrap_or_default();
            if matches!(query_auth, Some((n, _)) if n == name) {
                continue;
            }
            push(&mut out, part);
        }
    }
    if let Some((name, secret)) = query_auth {
        let mut part = String::with_capacity(name.len() + secret.len() + 8);
        part.push_str(name);
        part.push('=');
        percent_encode_into(secret.expose(), &mut part);
        push(&mut out, &part);
    }
    out
}

fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

fn sensitive(value: String) -> Result<HeaderValue, GatewayError> {
    let mut v = HeaderValue::try_from(value).map_err(|_| {
        GatewayError::internal("the stored credential contains characters not allowed in a header")
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn host_header(up: &Upstream) -> String {
    let host = if up.host.contains(':') {
        format!("[{}]", up.host)
    } else {
        up.host.clone()
    };
    let default_port = if up.tls { 443 } else { 80 };
    if up.port == default_port {
        host
    } else {
        format!("{host}:{}", up.port)
    }
}

/// Rewrites `req` for the upstream. `carrier` is the header that carried the proxy key.
pub fn rewrite(
    req: &mut RequestHeader,
    upstream: &Upstream,
    rest: &str,
    auth: &AuthScheme,
    secret: &SecretString,
    carrier: &str,
) -> Result<(), GatewayError> {
    // The carrier always goes; the other key headers go too when they hold a Latchkey key, so a
    // proxy key never reaches a provider whichever header it sat in.
    req.remove_header(carrier);
    for name in KEY_HEADERS {
        let holds_key = req
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("lk_"));
        if holds_key {
            req.remove_header(name);
        }
    }
    // Latchkey's own lock headers (device fingerprint, request signature) are for the gateway
    // only: a provider never sees them.
    for name in LOCK_HEADERS {
        if req.headers.contains_key(name) {
            req.remove_header(name);
        }
    }

    let query_auth = match auth {
        AuthScheme::Query { name } => Some((name.as_str(), secret)),
        _ => None,
    };
    let query = req.uri.query().map(str::to_string);
    let path = upstream_path(upstream, rest, query.as_deref(), query_auth);
    let uri: http::Uri = path
        .parse()
        .map_err(|_| GatewayError::new(400, "bad_request", "the request path is not valid"))?;
    req.set_uri(uri);

    let set = |req: &mut RequestHeader, name: &str, v: HeaderValue| {
        req.insert_header(name.to_string(), v)
            .map_err(|_| GatewayError::internal("could not set an upstream header"))
    };
    set(req, "host", sensitive(host_header(upstream))?)?;
    match auth {
        AuthScheme::Bearer => set(
            req,
            "authorization",
            sensitive(format!("Bearer {}", secret.expose()))?,
        )?,
        AuthScheme::Header { name, prefix } => set(
            req,
            name,
            sensitive(format!("{prefix}{}", secret.expose()))?,
        )?,
        AuthScheme::Basic => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(secret.expose());
            set(req, "authorization", sensitive(format!("Basic {b64}"))?)?
        }
        AuthScheme::Query { .. } | AuthScheme::None => {}
        AuthScheme::SigV4 { .. } => {
            // The client's own SigV4 headers (made with the proxy key) go; the request is
            // signed again, last, once its final body and headers are known
            // (`crate::proxy`, with `crate::sigv4`).
            for name in crate::sigv4::CLIENT_AUTH_HEADERS {
                req.remove_header(name);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Upstream {
        Upstream {
            tls: true,
            host: "api.example.com".into(),
            port: 443,
            path_prefix: "/base".into(),
        }
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn bearer_injection_strips_key() {
        let mut r = req(
            "/proxy/openai/v1/chat?x=1",
            &[("authorization", "Bearer lk_abc"), ("x-api-key", "lk_abc")],
        );
        let s = SecretString::new("sk-real".into());
        rewrite(
            &mut r,
            &up(),
            "/v1/chat",
            &AuthScheme::Bearer,
            &s,
            "authorization",
        )
        .unwrap();
        assert_eq!(r.uri.to_string(), "/base/v1/chat?x=1");
        assert_eq!(r.headers["authorization"], "Bearer sk-real");
        assert!(r.headers.get("x-api-key").is_none());
        assert_eq!(r.headers["host"], "api.example.com");
    }

    #[test]
    fn header_query_basic_schemes() {
        let s = SecretString::new("s k&=".into());
        let mut r = req("/p?key=client&a=b", &[("x-api-key", "lk_1")]);
        let scheme: AuthScheme = "query:key".parse().unwrap();
        rewrite(&mut r, &up(), "/v1", &scheme, &s, "x-api-key").unwrap();
        assert_eq!(r.uri.to_string(), "/base/v1?a=b&key=s%20k%26%3D");
        assert!(r.headers.get("x-api-key").is_none());

        let mut r = req("/p", &[("x-api-key", "lk_1")]);
        let scheme: AuthScheme = "header:x-api-key".parse().unwrap();
        let s = SecretString::new("real".into());
        rewrite(&mut r, &up(), "/", &scheme, &s, "x-api-key").unwrap();
        assert_eq!(r.headers["x-api-key"], "real");

        let mut r = req("/p", &[("authorization", "Bearer lk_1")]);
        let s = SecretString::new("user:pass".into());
        rewrite(&mut r, &up(), "/", &AuthScheme::Basic, &s, "authorization").unwrap();
        assert_eq!(r.headers["authorization"], "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn host_header_keeps_non_default_port() {
        let mut u = up();
        u.port = 8443;
        assert_eq!(host_header(&u), "api.example.com:8443");
        u.host = "::1".into();
        assert_eq!(host_header(&u), "[::1]:8443");
    }

    #[test]
    fn bad_secret_is_an_error_without_the_secret() {
        let mut r = req("/p", &[]);
        let s = SecretString::new("bad\nvalue".into());
        let e = rewrite(&mut r, &up(), "/", &AuthScheme::Bearer, &s, "authorization").unwrap_err();
        assert!(!e.message.contains("bad"));
    }
}
