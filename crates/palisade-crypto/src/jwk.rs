//! RFC 7638 JWK thumbprints for EC P-521 public keys.
//!
//! The thumbprint is `base64url(SHA-256(canonical JWK))`, where the canonical JWK holds only the
//! required members of an EC key, `crv`, `kty`, `x` and `y`, in lexicographic order with no
//! whitespace (RFC 7638 §3.2). It names our signing keys (`kid`) and binds DPoP proofs (`cnf.jkt`,
//! RFC 9449 §6.1).
//!
//! Invariants:
//! - The thumbprint depends only on the key's coordinates: member order, whitespace and optional
//!   members (`kid`, `alg`, `use`) of the input JWK never change it.
//! - Only valid P-521 keys get a thumbprint; [`jwk_thumbprint`] parses the JWK as strictly as
//!   [`Es512VerifyingKey::from_jwk`] does (point on the curve, 66-byte coordinates).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jws::{Es512VerifyingKey, JwsError};

/// The length in bytes of one P-521 coordinate (RFC 7518 §6.2.1.2: `ceil(521 / 8)`).
pub const P521_COORDINATE_BYTES: usize = 66;

/// The RFC 7638 thumbprint of the P-521 public key with affine coordinates `x` and `y`.
#[must_use]
pub fn ec_p521_thumbprint(
    x: &[u8; P521_COORDINATE_BYTES],
    y: &[u8; P521_COORDINATE_BYTES],
) -> String {
    use base64::Engine as _;
    // SECURITY: the members are written by hand in the RFC 7638 §3.3 order. Their values are
    // base64url strings and constants, which never need JSON escaping, so this is exactly the
    // canonical serialisation.
    let canonical = format!(
        r#"{{"crv":"P-521","kty":"EC","x":"{}","y":"{}"}}"#,
        crate::B64URL.encode(x),
        crate::B64URL.encode(y)
    );
    crate::B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

/// The RFC 7638 thumbprint of an EC P-521 public JWK given as JSON.
///
/// # Errors
/// [`JwsError::InvalidKey`] when the JWK is not a valid P-521 public key (see
/// [`Es512VerifyingKey::from_jwk`]).
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, JwsError> {
    Ok(Es512VerifyingKey::from_jwk(jwk)?.thumbprint().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The P-521 key of RFC 7520 §3.2 ("bilbo.baggins@hobbiton.example").
    const RFC7520_X: &str =
        "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt";
    const RFC7520_Y: &str =
        "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1";
    /// Computed independently with Python (`hashlib.sha256` over `json.dumps(..., sort_keys=True,
    /// separators=(",", ":"))`) and matching the value other JOSE libraries pin for this key.
    const RFC7520_THUMBPRINT: &str = "dHri3SADZkrush5HU_50AoRhcKFryN-PI6jPBtPL55M";

    #[test]
    fn thumbprint_of_the_rfc7520_p521_key_matches_an_independent_computation() {
        let jwk = json!({"kty": "EC", "crv": "P-521", "x": RFC7520_X, "y": RFC7520_Y});
        assert_eq!(jwk_thumbprint(&jwk).unwrap(), RFC7520_THUMBPRINT);
    }

    #[test]
    fn thumbprint_ignores_member_order_whitespace_and_optional_members() {
        let compact =
            format!(r#"{{"kty":"EC","crv":"P-521","x":"{RFC7520_X}","y":"{RFC7520_Y}"}}"#);
        let spaced = format!(
            "{{\n  \"y\" : \"{RFC7520_Y}\",\n\t\"x\": \"{RFC7520_X}\",  \"use\":\"sig\", \"alg\": \"ES512\",\n  \"kid\": \"bilbo.baggins@hobbiton.example\", \"crv\":\"P-521\", \"kty\" :\"EC\" }}"
        );
        let a: Value = serde_json::from_str(&compact).unwrap();
        let b: Value = serde_json::from_str(&spaced).unwrap();
        assert_eq!(jwk_thumbprint(&a).unwrap(), RFC7520_THUMBPRINT);
        assert_eq!(jwk_thumbprint(&b).unwrap(), RFC7520_THUMBPRINT);
    }

    #[test]
    fn thumbprint_is_stable_and_differs_between_keys() {
        let a = crate::jws::Es512SigningKey::generate().unwrap();
        let b = crate::jws::Es512SigningKey::generate().unwrap();
        let ta = jwk_thumbprint(&a.public_jwk()).unwrap();
        assert_eq!(ta, jwk_thumbprint(&a.public_jwk()).unwrap());
        assert_eq!(ta, a.kid());
        assert_eq!(ta.len(), 43, "base64url of 32 bytes, unpadded");
        assert_ne!(ta, jwk_thumbprint(&b.public_jwk()).unwrap());
    }

    #[test]
    fn thumbprint_refuses_keys_that_are_not_p521() {
        let p256 = json!({"kty": "EC", "crv": "P-256", "x": RFC7520_X, "y": RFC7520_Y});
        assert!(jwk_thumbprint(&p256).is_err());
        assert!(jwk_thumbprint(&json!({"kty": "oct", "k": "AAAA"})).is_err());
    }
}
