//! The built-in provider catalog, compiled in from `vault/catalog/providers.toml`, and the
//! validation every provider (built-in or custom) goes through.

use crate::model::Provider;
use crate::ssrf;
use serde::Deserialize;
use std::sync::OnceLock;

const CATALOG_TOML: &str = include_str!("../catalog/providers.toml");

#[derive(Deserialize)]
struct CatalogFile {
    provider: Vec<Provider>,
}

/// The built-in providers, parsed once.
///
/// ```
/// let openai = latchkey_vault::catalog::builtin().iter().find(|p| p.id == "openai").unwrap();
/// assert_eq!(openai.base_url, "https://api.openai.com");
/// ```
pub fn builtin() -> &'static [Provider] {
    static CATALOG: OnceLock<Vec<Provider>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        // The file is part of the binary and checked by a unit test, so a parse failure is a
        // build defect, not an input error.
        let file: CatalogFile =
            toml::from_str(CATALOG_TOML).expect("built-in provider catalog is valid TOML");
        file.provider
            .into_iter()
            .map(|mut p| {
                p.builtin = true;
                p
            })
            .collect()
    })
}

/// A base URL split into the parts the gateway needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `true` for https.
    pub tls: bool,
    /// Host name or IP literal (no brackets).
    pub host: String,
    /// Port (default 443/80).
    pub port: u16,
    /// Path prefix without trailing slash (may be empty).
    pub path_prefix: String,
}

/// Why a provider definition was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The namespace is not a lowercase slug.
    #[error("provider id {0:?} must be 1-48 chars of a-z, 0-9 and '-'")]
    BadId(String),
    /// The base URL does not parse or is not http(s).
    #[error(
        "base_url {0:?} must be an absolute http:// or https:// URL without query or credentials"
    )]
    BadUrl(String),
    /// The base URL targets an internal address and the operator has not allowed it.
    #[error("base_url {0:?} points at a loopback, private or link-local address; set allow_private_upstreams = true (or LATCHKEY_ALLOW_PRIVATE_UPSTREAMS=1) to allow it")]
    PrivateUpstream(String),
}

/// Parses a base URL into an [`Upstream`].
pub fn parse_base_url(url: &str) -> Result<Upstream, ProviderError> {
    let bad = || ProviderError::BadUrl(url.to_string());
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad()),
    };
    let auth = uri.authority().ok_or_else(bad)?;
    if auth.as_str().contains('@') || uri.query().is_some() {
        return Err(bad());
    }
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(bad());
    }
    let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path_prefix = uri.path().trim_end_matches('/').to_string();
    Ok(Upstream {
        tls,
        host,
        port,
        path_prefix,
    })
}

/// Validates a provider definition, including the SSRF guard on its base URL.
pub fn validate(p: &Provider, allow_private: bool) -> Result<Upstream, ProviderError> {
    let id_ok = !p.id.is_empty()
        && p.id.len() <= 48
        && p.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return Err(ProviderError::BadId(p.id.clone()));
    }
    let up = parse_base_url(&p.base_url)?;
    if !allow_private && ssrf::host_is_internal(&up.host) {
        return Err(ProviderError::PrivateUpstream(p.base_url.clone()));
    }
    Ok(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_required_providers_and_all_validate() {
        let ids: Vec<&str> = builtin().iter().map(|p| p.id.as_str()).collect();
        for want in [
            "openai",
            "anthropic",
            "gemini",
            "mistral",
            "groq",
            "together",
            "fireworks",
            "deepseek",
            "xai",
            "perplexity",
            "cohere",
            "openrouter",
            "cerebras",
            "azure-openai",
            "bedrock",
            "stripe",
            "github",
            "vercel",
            "supabase",
            "slack",
            "twilio",
            "sendgrid",
        ] {
            assert!(ids.contains(&want), "missing {want}");
        }
        for p in builtin() {
            validate(p, false).unwrap();
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "duplicate provider ids");
    }

    #[test]
    fn base_urls_parse() {
        let u = parse_base_url("https://api.groq.com/openai/").unwrap();
        assert_eq!(
            u,
            Upstream {
                tls: true,
                host: "api.groq.com".into(),
                port: 443,
                path_prefix: "/openai".into()
            }
        );
        let u = parse_base_url("http://[::1]:9000").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("::1", 9000, false));
        for bad in [
            "ftp://x",
            "api.openai.com",
            "https://u:p@x.com",
            "https://x.com/?a=1",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssrf_guard_refuses_private_unless_allowed() {
        let mut p = builtin()[0].clone();
        p.base_url = "http://127.0.0.1:9999".into();
        assert!(matches!(
            validate(&p, false),
            Err(ProviderError::PrivateUpstream(_))
        ));
        assert!(validate(&p, true).is_ok());
        p.base_url = "http://169.254.169.254/latest".into();
        assert!(validate(&p, false).is_err());
    }
}
