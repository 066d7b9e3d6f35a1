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
//! 7. [`providers`]: the tenant's provider table and the upstream it names.
//! 8. [`credentials`]: the decrypted credential, cached in memory and zeroized on eviction.
//! 9. [`inject`]: strip the proxy key, inject the real credential per the auth scheme.
//! 10. [`dns`]: the upstream's socket address, resolved asynchronously and cached.
//!
//! [`proxy`] wires the stages into Pingora; [`errors`] renders Latchkey's JSON errors;
//! [`metrics`] counts every request by provider and outcome.

pub mod credentials;
pub mod dns;
pub mod errors;
pub mod extract;
pub mod geo;
pub mod inject;
pub mod lockdown;
pub mod locks;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod resolve;
pub mod route;
pub mod state;
pub mod velocity;

pub use proxy::Gateway;
pub use state::{GatewayOptions, GatewayState};
