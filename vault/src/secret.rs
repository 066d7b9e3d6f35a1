//! Secret values that wipe themselves from memory and never print.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string (a provider credential, a proxy key in flight).
///
/// `Debug` and `Display` print `[redacted]`, so a secret that ends up in a log line or a panic
/// message reveals nothing. The bytes are zeroed when the value is dropped.
///
/// ```
/// use latchkey_vault::SecretString;
/// let s = SecretString::new("sk-live-123".to_string());
/// assert_eq!(format!("{s:?}"), "[redacted]");
/// assert_eq!(s.expose(), "sk-live-123");
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a string; the caller's copy is moved in, not cloned.
    pub fn new(s: String) -> Self {
        SecretString(s)
    }

    /// The plaintext. Call sites are the few places that must see it (injection, scrubbing).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// 32 bytes of key material that are zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyBytes(pub(crate) [u8; 32]);

impl KeyBytes {
    /// Wraps raw key bytes.
    pub fn from_array(bytes: [u8; 32]) -> Self {
        KeyBytes(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes([redacted])")
    }
}
