//! # latchkey-ops
//!
//! The control plane:
//!
//! - [`audit`]: the batched, hash-chained audit writer and chain verification.
//! - [`bootstrap`]: first start of a data directory (root-key check, bootstrap admin token).
//! - [`admin`]: the admin API (`/api/v1/…`) served on the admin listener.
//! - [`alerts`]: the alert webhook (Slack-compatible) for security events.
//! - [`cli`]: the `latchkey` command line, a client of the admin API.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod bootstrap;
pub mod cli;
