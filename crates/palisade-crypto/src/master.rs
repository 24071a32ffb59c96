//! The master key and the purpose keys derived from it.
//!
//! The operator supplies one master secret (`secrets.master_key`, at least 32 bytes). Every other key
//! (cursor signing, later token encryption, vault, webhooks) is derived with HKDF-SHA256 (RFC 5869)
//! under a distinct `info` label, so rotating the master key rotates everything and no purpose key can
//! be used for another purpose.
//!
//! A development key is generated on first start when none is configured. It is written with a marker
//! prefix so production mode recognises and refuses it.

use base64::Engine;
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

/// The prefix of generated development keys; production refuses a key that carries it.
pub const DEV_KEY_MARKER: &str = "palisade-dev-key:";

/// The shortest acceptable master key, in bytes.
pub const MIN_MASTER_KEY_BYTES: usize = 32;

/// Why a master key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    /// Shorter than [`MIN_MASTER_KEY_BYTES`].
    #[error("is shorter than {MIN_MASTER_KEY_BYTES} bytes")]
    TooShort,
    /// A value from documentation or examples, or one with almost no distinct characters.
    #[error("is a default or example value")]
    Default,
    /// Generated for development (carries [`DEV_KEY_MARKER`]).
    #[error("was generated for development")]
    GeneratedForDevelopment,
}

/// Values that appear in documentation and examples; never acceptable as a real key.
const KNOWN_DEFAULTS: &[&str] = &[
    "changeme",
    "change-me",
    "secret",
    "password",
    "replace-me",
    "REPLACE-ME-WITH-32-OR-MORE-RANDOM-BYTES",
    "palisade",
];

/// The deployment's master secret.
pub struct MasterKey {
    secret: SecretString,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// Wraps a configured secret without judging it (see [`MasterKey::weakness`]).
    #[must_use]
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    /// A new development key: 32 random bytes, base64url, behind [`DEV_KEY_MARKER`].
    #[must_use]
    pub fn generate_development() -> SecretString {
        let bytes: [u8; 32] = crate::random_bytes();
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        SecretString::from(format!("{DEV_KEY_MARKER}{encoded}"))
    }

    /// Whether this key was generated for development.
    #[must_use]
    pub fn is_development(&self) -> bool {
        self.secret.expose_secret().starts_with(DEV_KEY_MARKER)
    }

    /// Why this key is not fit for production, if it is not.
    #[must_use]
    pub fn weakness(&self) -> Option<MasterKeyError> {
        let s = self.secret.expose_secret().trim();
        if self.is_development() {
            return Some(MasterKeyError::GeneratedForDevelopment);
        }
        let lowered = s.to_ascii_lowercase();
        if KNOWN_DEFAULTS
            .iter()
            .any(|d| lowered == d.to_ascii_lowercase() || lowered.starts_with("replace-me"))
        {
            return Some(MasterKeyError::Default);
        }
        if s.len() < MIN_MASTER_KEY_BYTES {
            return Some(MasterKeyError::TooShort);
        }
        let mut distinct: Vec<char> = s.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 8 {
            return Some(MasterKeyError::Default);
        }
        None
    }

    /// Derives the 32-byte key for one purpose. `label` names the purpose, e.g. `palisade/cursor/v1`.
    #[must_use]
    pub fn derive(&self, label: &str) -> DerivedKey {
        let hk = Hkdf::<Sha256>::new(
            Some(b"palisade/master/v1"),
            self.secret.expose_secret().as_bytes(),
        );
        let mut okm = [0u8; 32];
        // SECURITY: HKDF-SHA256 can expand to 255*32 bytes; 32 never fails, and a failure would leave
        // zeros, so treat it as impossible but still refuse to hand out a zero key.
        if hk.expand(label.as_bytes(), &mut okm).is_err() {
            okm = crate::random_bytes();
        }
        DerivedKey(SecretBox::new(Box::new(okm)))
    }
}

/// A 32-byte purpose key derived from the master key.
pub struct DerivedKey(SecretBox<[u8; 32]>);

impl DerivedKey {
    /// The key bytes, for handing to a MAC or AEAD.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> MasterKey {
        MasterKey::new(SecretString::from(s.to_owned()))
    }

    #[test]
    fn weak_keys_are_named() {
        assert_eq!(key("short").weakness(), Some(MasterKeyError::TooShort));
        assert_eq!(key("changeme").weakness(), Some(MasterKeyError::Default));
        assert_eq!(
            key("REPLACE-ME-WITH-32-OR-MORE-RANDOM-BYTES").weakness(),
            Some(MasterKeyError::Default)
        );
        assert_eq!(
            key(&"a".repeat(64)).weakness(),
            Some(MasterKeyError::Default)
        );
        let dev = MasterKey::new(MasterKey::generate_development());
        assert_eq!(
            dev.weakness(),
            Some(MasterKeyError::GeneratedForDevelopment)
        );
        assert_eq!(key("k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G").weakness(), None);
    }

    #[test]
    fn derived_keys_differ_by_label_and_are_stable() {
        let k = key("k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G");
        assert_eq!(k.derive("a").expose(), k.derive("a").expose());
        assert_ne!(k.derive("a").expose(), k.derive("b").expose());
        assert!(!format!("{k:?}").contains("k9V2"));
    }
}
