//! The AES-256-GCM envelope for secrets at rest (vault entries, signing keys, TOTP secrets), over
//! `aws-lc-rs`.
//!
//! Format: `version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)`, version
//! [`ENVELOPE_V1`].
//!
//! Invariants:
//! - The key is a [`DerivedKey`]: one HKDF label per purpose and tenant (e.g.
//!   `palisade/vault/v1/<tenant>`), so a ciphertext never opens under another tenant's key.
//! - Every seal draws a fresh random 96-bit nonce inside aws-lc-rs (`RandomizedNonceKey`); the
//!   caller can't supply or reuse one. Random nonces stay safe for up to 2^32 seals per key (NIST SP
//!   800-38D §8.3), far beyond one purpose key's use; rotating the master key re-derives all keys.
//! - The version byte is authenticated (it prefixes the associated data), and `aad` should bind the
//!   ciphertext to its context (tenant, record id, field), so a ciphertext copied elsewhere fails.
//! - A failed open returns only an error: no partial plaintext survives (the buffer is zeroized).

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use secrecy::SecretBox;
use secrecy::zeroize::Zeroizing;

use crate::master::DerivedKey;

/// The envelope version this module writes and reads.
pub const ENVELOPE_V1: u8 = 1;

/// The AES-GCM tag length in bytes.
const TAG_LEN: usize = 16;

/// The smallest valid envelope: version, nonce and tag around an empty plaintext.
pub const MIN_ENVELOPE_BYTES: usize = 1 + NONCE_LEN + TAG_LEN;

/// Why sealing or opening failed. Carries no key, plaintext or ciphertext bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// Shorter than [`MIN_ENVELOPE_BYTES`].
    #[error("sealed data is truncated")]
    Truncated,
    /// The version byte is not one this build reads.
    #[error("sealed data has an unsupported version")]
    UnsupportedVersion,
    /// Wrong key, wrong associated data, or modified ciphertext.
    #[error("sealed data failed authentication")]
    Authentication,
    /// The cryptographic library failed while sealing.
    #[error("encryption failed")]
    Seal,
}

impl AeadError {
    /// A stable machine-readable code for this error.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::UnsupportedVersion => "unsupported_version",
            Self::Authentication => "authentication_failed",
            Self::Seal => "seal_failed",
        }
    }
}

fn cipher(key: &DerivedKey) -> Result<RandomizedNonceKey, AeadError> {
    RandomizedNonceKey::new(&AES_256_GCM, key.expose()).map_err(|_| AeadError::Seal)
}

/// The associated data actually authenticated: the version byte, then the caller's `aad`.
fn bound_aad(version: u8, aad: &[u8]) -> Vec<u8> {
    let mut bound = Vec::with_capacity(1 + aad.len());
    bound.push(version);
    bound.extend_from_slice(aad);
    bound
}

/// Encrypts `plaintext` under `key`, authenticating `aad` with it.
///
/// # Errors
/// [`AeadError::Seal`] if aws-lc-rs fails (e.g. the random generator).
pub fn seal(key: &DerivedKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
    let cipher = cipher(key)?;
    let mut in_out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    in_out.extend_from_slice(plaintext);
    let nonce = cipher
        .seal_in_place_append_tag(Aad::from(bound_aad(ENVELOPE_V1, aad)), &mut in_out)
        .map_err(|_| AeadError::Seal)?;
    let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
    sealed.push(ENVELOPE_V1);
    sealed.extend_from_slice(nonce.as_ref());
    sealed.extend_from_slice(&in_out);
    Ok(sealed)
}

/// Decrypts an envelope made by [`seal`] with the same `key` and `aad`.
///
/// # Errors
/// [`AeadError::Truncated`], [`AeadError::UnsupportedVersion`], or [`AeadError::Authentication`]
/// for a wrong key, wrong `aad` or any modification.
pub fn open(key: &DerivedKey, aad: &[u8], sealed: &[u8]) -> Result<SecretBox<Vec<u8>>, AeadError> {
    if sealed.len() < MIN_ENVELOPE_BYTES {
        return Err(AeadError::Truncated);
    }
    let (version, rest) = sealed.split_first().ok_or(AeadError::Truncated)?;
    if *version != ENVELOPE_V1 {
        return Err(AeadError::UnsupportedVersion);
    }
    let (nonce, ciphertext) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(AeadError::Truncated)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AeadError::Truncated)?;
    let cipher = cipher(key).map_err(|_| AeadError::Authentication)?;
    // SECURITY: aws-lc-rs may leave partial output in the buffer on failure; `Zeroizing` wipes it.
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let plaintext_len = cipher
        .open_in_place(
            nonce,
            Aad::from(bound_aad(*version, aad)),
            buffer.as_mut_slice(),
        )
        .map_err(|_| AeadError::Authentication)?
        .len();
    buffer.truncate(plaintext_len);
    Ok(SecretBox::new(Box::new(std::mem::take(&mut *buffer))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;
    use secrecy::{ExposeSecret as _, SecretString};

    fn key(label: &str) -> DerivedKey {
        MasterKey::new(SecretString::from(
            "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G".to_owned(),
        ))
        .derive(label)
    }

    #[test]
    fn sealed_data_round_trips_and_has_the_documented_layout() {
        let k = key("palisade/vault/v1/t1");
        let sealed = seal(&k, b"t1/secret/db", b"hunter2").unwrap();
        assert_eq!(sealed.len(), 1 + 12 + 7 + 16);
        assert_eq!(sealed[0], ENVELOPE_V1);
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let opened = open(&k, b"t1/secret/db", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), b"hunter2");
        let empty = seal(&k, b"", b"").unwrap();
        assert_eq!(empty.len(), MIN_ENVELOPE_BYTES);
        assert!(open(&k, b"", &empty).unwrap().expose_secret().is_empty());
    }

    #[test]
    fn the_wrong_key_or_aad_fails() {
        let sealed = seal(&key("palisade/vault/v1/t1"), b"t1/a", b"secret").unwrap();
        assert_eq!(
            open(&key("palisade/vault/v1/t2"), b"t1/a", &sealed).unwrap_err(),
            AeadError::Authentication
        );
        assert_eq!(
            open(&key("palisade/vault/v1/t1"), b"t1/b", &sealed).unwrap_err(),
            AeadError::Authentication
        );
        assert_eq!(
            open(&key("palisade/vault/v1/t1"), b"", &sealed).unwrap_err(),
            AeadError::Authentication
        );
    }

    #[test]
    fn any_flipped_bit_fails() {
        let k = key("palisade/vault/v1/t1");
        let sealed = seal(&k, b"aad", b"secret value").unwrap();
        for i in 1..sealed.len() {
            for bit in [0x01_u8, 0x80] {
                let mut tampered = sealed.clone();
                tampered[i] ^= bit;
                assert_eq!(
                    open(&k, b"aad", &tampered).unwrap_err(),
                    AeadError::Authentication,
                    "byte {i}"
                );
            }
        }
        let mut versioned = sealed.clone();
        versioned[0] = 2;
        assert_eq!(
            open(&k, b"aad", &versioned).unwrap_err(),
            AeadError::UnsupportedVersion
        );
    }

    #[test]
    fn truncated_data_fails() {
        let k = key("palisade/vault/v1/t1");
        let sealed = seal(&k, b"aad", b"secret value").unwrap();
        for len in 0..sealed.len() {
            assert!(open(&k, b"aad", &sealed[..len]).is_err(), "len {len}");
        }
        assert_eq!(
            open(&k, b"aad", &sealed[..MIN_ENVELOPE_BYTES - 1]).unwrap_err(),
            AeadError::Truncated
        );
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = key("palisade/vault/v1/t1");
        let a = seal(&k, b"aad", b"same").unwrap();
        let b = seal(&k, b"aad", b"same").unwrap();
        assert_ne!(a[1..13], b[1..13]);
        assert_ne!(a, b);
    }

    #[test]
    fn errors_have_stable_codes() {
        assert_eq!(AeadError::Authentication.code(), "authentication_failed");
        assert_eq!(AeadError::Truncated.code(), "truncated");
    }
}
