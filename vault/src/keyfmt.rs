//! Proxy-key format and hashing.
//!
//! A key is `prefix + 32 random base62 chars (≈190 bits) + 6 base62 chars of CRC32` over the
//! prefix and the random part. The checksum lets a scanner (or the gateway, before any lookup)
//! tell a real key from a typo offline. Keys are stored only as HMAC-SHA256 under a server
//! secret derived from the root key, so a database dump cannot verify a guessed key.

use crate::rootkey::RootKey;
use crate::secret::SecretString;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 32;
const CHECK_LEN: usize = 6;

/// The kinds of key Latchkey issues, by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `lk_`: a proxy key for the data plane.
    Proxy,
    /// `lk_mcp_`: an MCP key.
    Mcp,
    /// `lk_adm_`: an admin API token.
    Admin,
}

impl KeyKind {
    /// The prefix of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Proxy => "lk_",
            KeyKind::Mcp => "lk_mcp_",
            KeyKind::Admin => "lk_adm_",
        }
    }
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    // 62^6 > 2^32, so the whole CRC always fits.
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

/// Generates a new key of `kind`.
///
/// ```
/// use latchkey_vault::keyfmt::{generate, parse, KeyKind};
/// let k = generate(KeyKind::Proxy);
/// assert!(k.expose().starts_with("lk_"));
/// assert_eq!(parse(k.expose()), Some(KeyKind::Proxy));
/// ```
pub fn generate(kind: KeyKind) -> SecretString {
    let mut rng = rand::rngs::OsRng;
    let mut body = String::with_capacity(kind.prefix().len() + RANDOM_LEN + CHECK_LEN);
    body.push_str(kind.prefix());
    for _ in 0..RANDOM_LEN {
        body.push(BASE62[rng.gen_range(0..62)] as char);
    }
    let check = checksum(&body);
    body.push_str(&check);
    SecretString::new(body)
}

/// Checks a key's shape and checksum offline; returns its kind when it is well formed.
pub fn parse(key: &str) -> Option<KeyKind> {
    let kind = if key.starts_with("lk_adm_") {
        KeyKind::Admin
    } else if key.starts_with("lk_mcp_") {
        KeyKind::Mcp
    } else if key.starts_with("lk_") {
        KeyKind::Proxy
    } else {
        return None;
    };
    let rest = &key[kind.prefix().len()..];
    if rest.len() != RANDOM_LEN + CHECK_LEN || !rest.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (body, check) = key.split_at(key.len() - CHECK_LEN);
    (checksum(body) == check).then_some(kind)
}

/// A short, non-secret label for a key (prefix and first 4 random chars), for listings and logs.
pub fn display_prefix(key: &str) -> String {
    let kind_len = parse(key).map(|k| k.prefix().len()).unwrap_or(3);
    let end = (kind_len + 4).min(key.len());
    format!("{}…", &key[..end])
}

/// HMAC-SHA256 of a key under the server secret, hex-encoded: the only form a key is stored in.
pub fn hash_key(root: &RootKey, key: &str) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(root.hmac_key().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(key.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// [`hash_key`] with the HMAC key schedule computed once, for the gateway's hot path: each call
/// clones the keyed state instead of re-deriving it from the root key.
///
/// ```
/// use latchkey_vault::keyfmt::{hash_key, KeyHasher};
/// use latchkey_vault::rootkey::RootKey;
/// let root = RootKey::from_bytes([7u8; 32]);
/// assert_eq!(KeyHasher::new(&root).hash("lk_example"), hash_key(&root, "lk_example"));
/// ```
#[derive(Clone)]
pub struct KeyHasher {
    keyed: Hmac<Sha256>,
}

impl KeyHasher {
    /// Keys the HMAC with the root key's server secret.
    pub fn new(root: &RootKey) -> Self {
        KeyHasher {
            keyed: Hmac::<Sha256>::new_from_slice(root.hmac_key().as_bytes())
                .expect("HMAC takes any key length"),
        }
    }

    /// The stored form of `key` (same as [`hash_key`]).
    pub fn hash(&self, key: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(key.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher([redacted])")
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// A random identifier such as `key_3fA9…` for database rows (not secret).
pub fn new_id(prefix: &str) -> String {
    let mut rng = rand::rngs::OsRng;
    let mut s = String::with_capacity(prefix.len() + 17);
    s.push_str(prefix);
    s.push('_');
    for _ in 0..16 {
        s.push(BASE62[rng.gen_range(0..62)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_typos_do_not() {
        for kind in [KeyKind::Proxy, KeyKind::Mcp, KeyKind::Admin] {
            let k = generate(kind);
            assert_eq!(parse(k.expose()), Some(kind));
            assert_eq!(k.len(), kind.prefix().len() + 38);
            // flip one character of the random part
            let mut bytes = k.expose().as_bytes().to_vec();
            let i = kind.prefix().len() + 5;
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(parse(std::str::from_utf8(&bytes).unwrap()), None);
        }
        assert_eq!(parse("sk-abc"), None);
        assert_eq!(parse("lk_short"), None);
        assert_eq!(parse("lk_ééééééééééééééééééééééééééééééééééééé"), None);
    }

    #[test]
    fn hash_depends_on_root_and_key() {
        let a = RootKey::from_bytes([1; 32]);
        let b = RootKey::from_bytes([2; 32]);
        let k = generate(KeyKind::Proxy);
        assert_eq!(hash_key(&a, k.expose()), hash_key(&a, k.expose()));
        assert_ne!(hash_key(&a, k.expose()), hash_key(&b, k.expose()));
        assert_eq!(hash_key(&a, k.expose()).len(), 64);
    }

    #[test]
    fn display_prefix_is_short() {
        let k = generate(KeyKind::Admin);
        let p = display_prefix(k.expose());
        assert!(p.starts_with("lk_adm_"));
        assert_eq!(p.chars().count(), 7 + 4 + 1);
    }
}
