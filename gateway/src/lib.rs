//! # latchkey-gateway
//!
//! The data plane, a Pingora [`ProxyHttp`](pingora::proxy::ProxyHttp). A request travels through
//! one module per stage, in this order:
//!
//! 1. [`route`]: which endpoint (`/healthz`, `/readyz`, `/proxy/{provider}/…`).
//! 2. [`extract`]: find the proxy key in the accepted headers.
//! 3. [`resolve`]: turn the key into its record through a bounded cache (with negative caching).
//! 4. access check ([`latchkey_policy::access`]): revoked, suspended, expired, provider scope.
//! 5. [`locks`]: lockdown ([`lockdown`]), client IP with auto-bind, geo ([`geo`]), device, and —
//!    for keys that need the body — request signature and model allow-list.
//! 6. [`velocity`]: rolling-window abuse detection that auto-suspends a key.
//! 7. [`policy`]: the key's policy ([`policies`] holds each tenant's, compiled): block, warn,
//!    redact, re-route, or [hold](latchkey_vault::holds) for a human's approval.
//! 8. [`limits`]: reserve the request's worst case against rate limits and budgets.
//! 9. [`providers`]: the tenant's provider table and the upstream it names.
//! 10. [`credentials`]: the decrypted credential, cached in memory and zeroized on eviction.
//! 11. [`inject`]: strip the proxy key, inject the real credential per the auth scheme.
//! 12. [`dns`]: the upstream's socket address, resolved asynchronously and cached.
//!
//! On the way back, [`metering`] reads token usage from the streaming response and settles the
//! reservation. [`proxy`] wires the stages into Pingora; [`errors`] renders Latchkey's JSON
//! errors; [`metrics`] counts every request by provider and outcome.

pub mod circuits;
pub mod credentials;
pub mod dns;
pub mod errors;
pub mod extract;
pub mod failover;
pub mod geo;
pub mod idempotency;
pub mod inject;
pub mod limits;
pub mod lockdown;
pub mod locks;
pub mod metering;
pub mod metrics;
pub mod openai;
pub mod policies;
pub mod policy;
pub mod providers;
pub mod proxy;
pub mod proxy_protocol;
pub mod resolve;
pub mod route;
pub mod sigv4;
pub mod state;
pub mod velocity;

pub use proxy::Gateway;
pub use state::{GatewayOptions, GatewayState};
