//! The root key and the keys derived from it.
//!
//! The root key never encrypts data directly. HKDF-SHA256 derives one sub-key per purpose:
//! wrapping data keys, hashing proxy keys, and a check value stored in the database so that a
//! wrong root key is reported at startup instead of producing garbage later.

use crate::secret::KeyBytes;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use std::io::Write;
use std::path::Path;
use thiserror::Error;

/// Environment variable holding a base64-encoded 32-byte root key.
pub const ROOT_KEY_ENV: &str = "LATCHKEY_ROOT_KEY";

/// Why a root key could not be loaded.
#[derive(Debug, Error)]
pub enum RootKeyError {
    /// The value is not base64 or not 32 bytes long.
    #[error("{source_name} must be base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)")]
    Malformed {
        /// Where the bad value came from.
        source_name: String,
    },
    /// The key file could not be read or created.
    #[error("root key file {path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        err: std::io::Error,
    },
}

/// The root key plus its derived sub-keys.
#[derive(Clone)]
pub struct RootKey {
    wrap: KeyBytes,
    hmac: KeyBytes,
    check: KeyBytes,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

fn derive(root: &[u8; 32], info: &[u8]) -> KeyBytes {
    let hk = Hkdf::<Sha256>::new(Some(b"latchkey root v1"), root);
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    hk.expand(info, &mut out)
        .expect("32 bytes is a valid HKDF output length");
    KeyBytes(out)
}

impl RootKey {
    /// Builds the key set from raw root bytes.
    pub fn from_bytes(mut root: [u8; 32]) -> Self {
        let key = RootKey {
            wrap: derive(&root, b"wrap data keys"),
            hmac: derive(&root, b"hash proxy keys"),
            check: derive(&root, b"key check value"),
        };
        zeroize::Zeroize::zeroize(&mut root);
        key
    }

    /// Parses a base64 root key; `source_name` names where it came from in errors.
    pub fn from_base64(value: &str, source_name: &str) -> Result<Self, RootKeyError> {
        let malformed = || RootKeyError::Malformed {
            source_name: source_name.to_string(),
        };
        let mut raw = B64.decode(value.trim()).map_err(|_| malformed())?;
        let result = <[u8; 32]>::try_from(raw.as_slice())
            .map(Self::from_bytes)
            .map_err(|_| malformed());
        zeroize::Zeroize::zeroize(&mut raw);
        result
    }

    /// Loads the root key from `LATCHKEY_ROOT_KEY` when set, otherwise from `path`, creating the
    /// file (mode 0600) with a fresh random key when it does not exist. Returns the key and whether
    /// a new key file was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), RootKeyError> {
        if let Ok(v) = std::env::var(ROOT_KEY_ENV) {
            if !v.trim().is_empty() {
                return Ok((Self::from_base64(&v, ROOT_KEY_ENV)?, false));
            }
        }
        let io = |err| RootKeyError::Io {
            path: path.display().to_string(),
            err,
        };
        match std::fs::read_to_string(path) {
            Ok(s) => Ok((Self::from_base64(&s, &path.display().to_string())?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut raw = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut raw);
                let encoded = B64.encode(raw);
                write_private_file(path, encoded.as_bytes()).map_err(io)?;
                Ok((Self::from_bytes(raw), true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Key that wraps per-version data keys.
    pub fn wrap_key(&self) -> &KeyBytes {
        &self.wrap
    }

    /// Server secret under which proxy keys and admin tokens are HMAC-hashed.
    pub fn hmac_key(&self) -> &KeyBytes {
        &self.hmac
    }

    /// A value stored beside the data that proves the same root key is in use. It is derived
    /// one-way, so it reveals nothing about the key.
    pub fn check_value(&self) -> String {
        use sha2::Digest;
        let digest = Sha256::digest(self.check.as_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..16])
    }
}

/// Creates `path` with mode 0600 (never readable by others, even briefly) and writes `data`.
pub fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_file_and_reloads_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        let (a, created) = RootKey::load_or_create(&p).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (b, created) = RootKey::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.check_value(), b.check_value());
    }

    #[test]
    fn malformed_key_is_a_clear_error() {
        let err = RootKey::from_base64("not-base64!!", "LATCHKEY_ROOT_KEY").unwrap_err();
        assert!(err.to_string().contains("LATCHKEY_ROOT_KEY"));
        let short = B64.encode([1u8; 16]);
        assert!(RootKey::from_base64(&short, "x").is_err());
    }

    #[test]
    fn different_roots_have_different_check_values() {
        let a = RootKey::from_bytes([1; 32]);
        let b = RootKey::from_bytes([2; 32]);
        assert_ne!(a.check_value(), b.check_value());
        assert_ne!(a.wrap_key().as_bytes(), a.hmac_key().as_bytes());
    }
}
