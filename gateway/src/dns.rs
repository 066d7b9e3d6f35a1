//! Upstream address resolution, off the request's critical path where possible.
//!
//! Pingora's `HttpPeer::new` with a host name resolves synchronously and panics on failure, so
//! the gateway resolves with tokio's resolver, caches the answer for a minute and hands Pingora a
//! socket address. Resolved addresses go through the SSRF guard too, so a public name that
//! resolves to a private address is refused.

use crate::errors::GatewayError;
use latchkey_vault::ssrf;
use moka::future::Cache;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Caches host → address answers.
pub struct DnsCache {
    allow_private: bool,
    cache: Cache<(String, u16), SocketAddr>,
}

impl DnsCache {
    /// A cache with a 60 s TTL.
    pub fn new(allow_private: bool) -> Self {
        DnsCache {
            allow_private,
            cache: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// The address to connect to for `host:port`.
    pub async fn lookup(&self, host: &str, port: u16) -> Result<SocketAddr, GatewayError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.admit(SocketAddr::new(ip, port), host);
        }
        let h = host.to_string();
        let allow = self.allow_private;
        self.cache
            .try_get_with((host.to_string(), port), async move {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((h.as_str(), port))
                    .await
                    .map_err(|e| format!("cannot resolve {h}: {e}"))?
                    .collect();
                addrs
                    .iter()
                    .find(|a| allow || !ssrf::is_internal(a.ip()))
                    .copied()
                    .ok_or_else(|| {
                        if addrs.is_empty() {
                            format!("cannot resolve {h}: no addresses")
                        } else {
                            format!("{h} resolves only to private addresses (SSRF guard)")
                        }
                    })
            })
            .await
            .map_err(|e| GatewayError::upstream_unavailable(e.as_str()))
    }

    fn admit(&self, addr: SocketAddr, host: &str) -> Result<SocketAddr, GatewayError> {
        if !self.allow_private && ssrf::is_internal(addr.ip()) {
            return Err(GatewayError::new(
                403,
                "upstream_forbidden",
                format!("upstream {host} is a private address (SSRF guard)"),
            ));
        }
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_guard() {
        let d = DnsCache::new(false);
        assert_eq!(
            d.lookup("127.0.0.1", 80).await.unwrap_err().code,
            "upstream_forbidden"
        );
        let d = DnsCache::new(true);
        assert_eq!(
            d.lookup("127.0.0.1", 81).await.unwrap(),
            "127.0.0.1:81".parse().unwrap()
        );
        assert_eq!(d.lookup("localhost", 82).await.unwrap().port(), 82);
        let d = DnsCache::new(false);
        assert_eq!(
            d.lookup("localhost", 82).await.unwrap_err().code,
            "upstream_unavailable"
        );
    }
}
