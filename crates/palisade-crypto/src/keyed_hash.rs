//! Keyed hashing (HMAC-SHA256, RFC 2104) of short-lived and bearer secrets before they are stored:
//! OTP codes, refresh tokens, API keys, recovery codes.
//!
//! Invariants:
//! - Only the keyed hash is stored, never the secret. Because the key lives outside the database
//!   (derived from the master key), a leaked table can't be brute-forced offline, even for 6-digit
//!   codes whose plain SHA-256 would fall at once.
//! - One [`KeyedHasher`] per purpose, each over its own derived key (e.g. `palisade/otp/v1`,
//!   `palisade/refresh/v1`), so a hash from one purpose never matches another's.
//! - [`KeyedHasher::verify`] compares in constant time.

use aws_lc_rs::hmac;

use crate::master::DerivedKey;

/// The output length of [`KeyedHasher::hash`], in bytes.
pub const KEYED_HASH_BYTES: usize = 32;

/// HMAC-SHA256 under one purpose key.
pub struct KeyedHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHasher([REDACTED])")
    }
}

impl KeyedHasher {
    /// A hasher over a purpose key derived from the master key.
    #[must_use]
    pub fn new(key: DerivedKey) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.expose()),
        }
    }

    /// `HMAC-SHA256(key, input)`.
    #[must_use]
    pub fn hash(&self, input: &[u8]) -> [u8; KEYED_HASH_BYTES] {
        let tag = hmac::sign(&self.key, input);
        let mut out = [0u8; KEYED_HASH_BYTES];
        for (o, b) in out.iter_mut().zip(tag.as_ref()) {
            *o = *b;
        }
        out
    }

    /// Whether `expected` is the keyed hash of `input`, compared in constant time. A wrong-length
    /// `expected` is simply `false`.
    #[must_use]
    pub fn verify(&self, input: &[u8], expected: &[u8]) -> bool {
        // SECURITY: constant-time comparison (`subtle`) of the full 32 bytes.
        crate::ct_eq(&self.hash(input), expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;
    use secrecy::SecretString;

    fn hasher(label: &str) -> KeyedHasher {
        let mk = MasterKey::new(SecretString::from(
            "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G".to_owned(),
        ));
        KeyedHasher::new(mk.derive(label))
    }

    #[test]
    fn hashes_are_stable_and_verify() {
        let h = hasher("palisade/otp/v1");
        let d = h.hash(b"123456");
        assert_eq!(d, h.hash(b"123456"));
        assert!(h.verify(b"123456", &d));
        assert!(!h.verify(b"123457", &d));
        assert!(!h.verify(b"123456", &d[..31]));
        assert!(!h.verify(b"123456", &[]));
    }

    #[test]
    fn purposes_do_not_share_hashes() {
        let otp = hasher("palisade/otp/v1");
        let refresh = hasher("palisade/refresh/v1");
        assert_ne!(otp.hash(b"x"), refresh.hash(b"x"));
        assert!(!refresh.verify(b"x", &otp.hash(b"x")));
    }

    #[test]
    fn matches_hmac_sha256_from_rustcrypto() {
        use ::hmac::Mac as _;
        let mk = MasterKey::new(SecretString::from(
            "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G".to_owned(),
        ));
        let key = mk.derive("palisade/otp/v1");
        let mut mac = ::hmac::Hmac::<sha2::Sha256>::new_from_slice(key.expose()).unwrap();
        mac.update(b"input");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(KeyedHasher::new(key).hash(b"input"), expected);
    }

    #[test]
    fn debug_output_is_redacted() {
        assert_eq!(format!("{:?}", hasher("a")), "KeyedHasher([REDACTED])");
    }
}
