//! # latchkey-ops
//!
//! The control plane:
//!
//! - [`audit`]: the batched, hash-chained audit writer and chain verification.
//! - [`bootstrap`]: first start of a data directory (root-key check, bootstrap admin token).
//! - [`admin`]: the admin API (`/api/v1/…`) served on the admin listener.
//! - [`cli`]: the `latchkey` command line, a client of the admin API.

pub mod admin;
pub mod audit;
pub mod bootstrap;
pub mod cli;
