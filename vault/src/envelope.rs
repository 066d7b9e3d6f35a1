//! Envelope encryption of credential values.
//!
//! Each credential version gets its own random 256-bit data key (DEK). The value is sealed with
//! AES-256-GCM under the DEK; the DEK is sealed under the root-derived wrapping key. Both seals
//! carry the same associated data, `latchkey:v1:{tenant}:{credential}:{version}`, so a ciphertext
//! copied onto another credential's row (or another version) no longer opens.

use crate::rootkey::RootKey;
use crate::secret::SecretString;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use thiserror::Error;
use zeroize::Zeroizing;

/// What binds a sealed value to its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    /// Tenant id.
    pub tenant: &'a str,
    /// Credential id.
    pub credential: &'a str,
    /// Version number.
    pub version: i64,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "latchkey:v1:{}:{}:{}",
            self.tenant, self.credential, self.version
        )
        .into_bytes()
    }
}

/// A sealed credential value as stored: nothing here is secret without the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// AES-GCM ciphertext of the value (tag appended).
    pub ciphertext: Vec<u8>,
    /// Nonce for the value.
    pub nonce: Vec<u8>,
    /// The data key, sealed under the wrapping key (tag appended).
    pub wrapped_key: Vec<u8>,
    /// Nonce for the wrapped key.
    pub key_nonce: Vec<u8>,
}

/// Decryption failed: wrong root key, tampered row, or a row moved to another binding.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("credential ciphertext does not open under this root key and binding")]
pub struct OpenError;

fn nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// Seals `value` for `binding`.
///
/// ```
/// use latchkey_vault::{envelope, rootkey::RootKey, SecretString};
/// let root = RootKey::from_bytes([7; 32]);
/// let b = envelope::Binding { tenant: "default", credential: "cred_1", version: 1 };
/// let sealed = envelope::seal(&root, &b, &SecretString::new("sk-123".into()));
/// assert_eq!(envelope::open(&root, &b, &sealed).unwrap().expose(), "sk-123");
/// ```
pub fn seal(root: &RootKey, binding: &Binding<'_>, value: &SecretString) -> Sealed {
    let aad = binding.aad();
    let mut dek = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(dek.as_mut());
    let value_nonce = nonce();
    let key_nonce = nonce();
    let data_cipher = Aes256Gcm::new(dek.as_ref().into());
    // Encryption with a fresh 32-byte key and 12-byte nonce cannot fail for inputs < 64 GiB.
    let ciphertext = data_cipher
        .encrypt(
            Nonce::from_slice(&value_nonce),
            Payload {
                msg: value.expose().as_bytes(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of a small value");
    let wrap_cipher = Aes256Gcm::new(root.wrap_key().as_bytes().into());
    let wrapped_key = wrap_cipher
        .encrypt(
            Nonce::from_slice(&key_nonce),
            Payload {
                msg: dek.as_ref(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of a data key");
    Sealed {
        ciphertext,
        nonce: value_nonce.to_vec(),
        wrapped_key,
        key_nonce: key_nonce.to_vec(),
    }
}

/// Opens a sealed value; fails on any mismatch of root key, binding or bytes.
pub fn open(
    root: &RootKey,
    binding: &Binding<'_>,
    sealed: &Sealed,
) -> Result<SecretString, OpenError> {
    if sealed.nonce.len() != 12 || sealed.key_nonce.len() != 12 {
        return Err(OpenError);
    }
    let aad = binding.aad();
    let wrap_cipher = Aes256Gcm::new(root.wrap_key().as_bytes().into());
    let dek = Zeroizing::new(
        wrap_cipher
            .decrypt(
                Nonce::from_slice(&sealed.key_nonce),
                Payload {
                    msg: &sealed.wrapped_key,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError)?,
    );
    if dek.len() != 32 {
        return Err(OpenError);
    }
    let data_cipher = Aes256Gcm::new(dek.as_slice().into());
    let plain = data_cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError)?;
    String::from_utf8(plain)
        .map(SecretString::new)
        .map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            OpenError
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(cred: &str, version: i64) -> Binding<'_> {
        Binding {
            tenant: "t1",
            credential: cred,
            version,
        }
    }

    #[test]
    fn round_trip_and_ciphertext_hides_value() {
        let root = RootKey::from_bytes([9; 32]);
        let secret = SecretString::new("sk-very-secret-value".into());
        let s = seal(&root, &b("c1", 1), &secret);
        assert!(!s
            .ciphertext
            .windows(secret.len())
            .any(|w| w == secret.expose().as_bytes()));
        assert_eq!(open(&root, &b("c1", 1), &s).unwrap(), secret);
    }

    #[test]
    fn wrong_root_or_moved_row_fails() {
        let root = RootKey::from_bytes([9; 32]);
        let other = RootKey::from_bytes([8; 32]);
        let s = seal(&root, &b("c1", 1), &SecretString::new("v".into()));
        assert_eq!(open(&other, &b("c1", 1), &s), Err(OpenError));
        assert_eq!(open(&root, &b("c2", 1), &s), Err(OpenError));
        assert_eq!(open(&root, &b("c1", 2), &s), Err(OpenError));
        let mut tampered = s.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(open(&root, &b("c1", 1), &tampered), Err(OpenError));
        let mut short = s;
        short.nonce.truncate(3);
        assert_eq!(open(&root, &b("c1", 1), &short), Err(OpenError));
    }
}
