//! Errors from parsing operator-supplied lock specifications (CLI flags, admin API fields,
//! config). These are about configuration, not requests, so they may quote the bad entry.

use thiserror::Error;

/// Longest slice of a bad entry quoted back in an error, so a pasted megabyte stays out of logs.
const QUOTE_LIMIT: usize = 64;

/// A lock specification could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LockSpecError {
    /// The specification (or one comma-separated entry of it) is empty.
    #[error("empty lock specification")]
    Empty,
    /// An entry is not an IP address or CIDR block.
    #[error("not an IP address or CIDR block: {0:?}")]
    InvalidAddress(String),
    /// A country entry is not a two-letter ISO 3166-1 alpha-2 code.
    #[error("not a two-letter country code: {0:?}")]
    InvalidCountry(String),
    /// More entries than a lock may hold.
    #[error("too many entries: {count} (at most {max})")]
    TooMany {
        /// How many entries were given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Copies at most [`QUOTE_LIMIT`] characters of `s` for an error message.
pub(crate) fn quote(s: &str) -> String {
    s.chars().take(QUOTE_LIMIT).collect()
}
