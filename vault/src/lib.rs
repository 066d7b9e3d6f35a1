//! # latchkey-vault
//!
//! Everything that touches secret material or persists it:
//!
//! - [`secret`]: zeroizing secret types that never print their contents.
//! - [`rootkey`]: where the root key comes from (`LATCHKEY_ROOT_KEY` or a 0600 key file) and the
//!   sub-keys derived from it.
//! - [`envelope`]: AES-256-GCM envelope encryption with a data key per credential version and AAD
//!   binding (tenant, credential, version), so swapping rows between credentials fails to decrypt.
//! - [`keyfmt`]: the proxy-key format (`lk_…`, `lk_mcp_…`, `lk_adm_…`) with an offline-checkable
//!   CRC32 checksum, and HMAC-SHA256 hashing of keys for storage.
//! - [`model`] and [`catalog`]: the data model and the built-in provider catalog.
//! - [`store`]: the [`store::Store`] trait and its embedded SQLite implementation.
//! - [`audit`]: the audit event, its canonical hash chain and verification.

pub mod audit;
pub mod catalog;
pub mod envelope;
pub mod holds;
pub mod keyfmt;
pub mod model;
pub mod notify;
pub mod rootkey;
pub mod secret;
pub mod ssrf;
pub mod store;

pub use secret::SecretString;
