//! HMAC-SHA256 signed opaque tokens (pagination cursors, later signed URLs).
//!
//! Format: `base64url(payload) "." base64url(HMAC-SHA256(key, context "\n" payload))`. The context binds
//! the token to its use and tenant (e.g. `cursor:<tenant>:/v1/users`), so a cursor minted for one
//! tenant or list never verifies for another. Verification is constant-time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::master::DerivedKey;

type HmacSha256 = Hmac<Sha256>;

/// Why a token failed verification. Deliberately uninformative.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid signed token")]
pub struct TokenError;

/// Signs and verifies opaque tokens under one derived key.
#[derive(Debug)]
pub struct SignedToken {
    key: DerivedKey,
}

impl SignedToken {
    /// A signer over a derived key.
    #[must_use]
    pub fn new(key: DerivedKey) -> Self {
        Self { key }
    }

    fn mac(&self, context: &str, payload: &[u8]) -> Result<HmacSha256, TokenError> {
        let mut mac = HmacSha256::new_from_slice(self.key.expose()).map_err(|_| TokenError)?;
        mac.update(context.as_bytes());
        mac.update(b"\n");
        mac.update(payload);
        Ok(mac)
    }

    /// Signs `payload` for `context`.
    ///
    /// # Errors
    /// Never in practice (HMAC accepts any key length); kept fallible to avoid panics.
    pub fn sign(&self, context: &str, payload: &[u8]) -> Result<String, TokenError> {
        let tag = self.mac(context, payload)?.finalize().into_bytes();
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// Verifies a token for `context` and returns its payload.
    ///
    /// # Errors
    /// [`TokenError`] when the token is malformed, oversized, or its tag does not match.
    pub fn verify(&self, context: &str, token: &str) -> Result<Vec<u8>, TokenError> {
        if token.len() > 1024 {
            return Err(TokenError);
        }
        let (payload_b64, tag_b64) = token.split_once('.').ok_or(TokenError)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError)?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| TokenError)?;
        // SECURITY: `verify_slice` compares in constant time.
        self.mac(context, &payload)?
            .verify_slice(&tag)
            .map_err(|_| TokenError)?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;
    use secrecy::SecretString;

    fn signer() -> SignedToken {
        let mk = MasterKey::new(SecretString::from(
            "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G".to_owned(),
        ));
        SignedToken::new(mk.derive("test"))
    }

    #[test]
    fn a_token_verifies_only_in_its_context_and_untampered() {
        let s = signer();
        let t = s.sign("cursor:a", b"0192").unwrap();
        assert_eq!(s.verify("cursor:a", &t).unwrap(), b"0192");
        assert!(s.verify("cursor:b", &t).is_err());
        let (p, tag) = t.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(b"0193"));
        assert!(s.verify("cursor:a", &forged).is_err());
        assert!(s.verify("cursor:a", p).is_err());
        assert!(s.verify("cursor:a", "").is_err());
        assert!(s.verify("cursor:a", &"A".repeat(5000)).is_err());
        assert!(
            s.verify("cursor:a", &format!("{p}.{}", &tag[..tag.len() - 2]))
                .is_err()
        );
    }
}
