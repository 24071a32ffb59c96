//! ES512 compact JWS (RFC 7515) over `aws-lc-rs`: ECDSA on P-521 with SHA-512, signatures in the
//! fixed `r || s` form of RFC 7518 §3.4 (132 bytes).
//!
//! Signing keys are named by the RFC 7638 thumbprint of their public JWK. Verification is strict and
//! fails closed; every check below is a refusal, checked in this order, and the payload is parsed
//! only after the signature has verified:
//! 1. the token is at most [`MAX_TOKEN_BYTES`] and has exactly three non-empty segments;
//! 2. each segment is strict base64url (no padding, URL-safe alphabet only, zero trailing bits);
//! 3. the header is one JSON object with no repeated member names;
//! 4. `alg` is exactly `"ES512"`: `none`, HMAC, other curves and other spellings are refused, so an
//!    attacker can never choose the algorithm;
//! 5. `kid` is a non-empty string of at most [`MAX_KID_BYTES`];
//! 6. none of [`FORBIDDEN_HEADER_PARAMETERS`] is present: a token can never bring its own key
//!    (`jwk`, `jku`, `x5u`, `x5c`, ...) nor demand extensions (`crit`);
//! 7. the signature decodes to exactly 132 bytes (a DER signature is refused);
//! 8. the key comes from the caller's lookup by `kid`, and the signature verifies under it;
//! 9. the payload is one JSON object with no repeated member names.
//!
//! Claims are checked separately with [`validate_claims`]. Errors carry stable codes and never any
//! part of the token.

use std::borrow::Borrow;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P521_SHA512_FIXED, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    ParsedPublicKey,
};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretBox};
use serde_json::{Map, Value};

use crate::B64URL;
use crate::jwk::{P521_COORDINATE_BYTES, ec_p521_thumbprint};

mod claims;
mod strict_json;

pub use claims::{ClaimError, ClaimRules, MAX_LEEWAY, validate_claims};

use strict_json::StrictJsonError;

/// The JWS `alg` value this module signs and accepts (RFC 7518 §3.1).
pub const ALG_ES512: &str = "ES512";

/// The largest compact token [`verify`] reads, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The longest `kid` accepted, in bytes.
pub const MAX_KID_BYTES: usize = 256;

/// The length of an ES512 signature: `r || s`, 66 bytes each (RFC 7518 §3.4).
pub const ES512_SIGNATURE_BYTES: usize = 2 * P521_COORDINATE_BYTES;

/// Header parameters that make [`verify`] refuse a token. Keys named or carried by the token itself
/// are never trusted (RFC 8725 §3.10), `crit` would demand extensions we don't implement (RFC 7515
/// §4.1.11), `b64` changes what is signed (RFC 7797) and `zip` belongs to JWE.
pub const FORBIDDEN_HEADER_PARAMETERS: &[&str] = &[
    "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64", "zip",
];

/// Why a JWS could not be produced, parsed or verified. Messages never include token contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("token is too large")]
    TooLarge,
    /// Not exactly three non-empty dot-separated segments.
    #[error("token is malformed")]
    Malformed,
    /// A segment is not strict unpadded base64url.
    #[error("token segment is not valid base64url")]
    InvalidEncoding,
    /// The header or payload is not well-formed JSON.
    #[error("token header or payload is not valid JSON")]
    InvalidJson,
    /// The header or payload repeats a member name.
    #[error("token header or payload repeats a member name")]
    DuplicateMember,
    /// The header or payload (or the claims given to sign) is not a JSON object.
    #[error("token header or payload is not a JSON object")]
    NotAnObject,
    /// `alg` is missing or is not exactly `ES512`.
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// `kid` is missing, not a string, empty or too long.
    #[error("token key id is missing or invalid")]
    InvalidKid,
    /// The header carries a parameter that is never accepted.
    #[error("token header parameter `{name}` is not accepted")]
    ForbiddenHeader {
        /// The parameter's name, one of [`FORBIDDEN_HEADER_PARAMETERS`].
        name: &'static str,
    },
    /// The signature is not exactly [`ES512_SIGNATURE_BYTES`] long.
    #[error("token signature has the wrong length")]
    InvalidSignatureLength,
    /// No key is known under the token's `kid`.
    #[error("token key id is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// Signing: the extra header tried to set `alg` or `kid`.
    #[error("header parameters `alg` and `kid` are set by the signer")]
    ReservedHeader,
    /// A key (JWK or PKCS#8) was refused.
    #[error("key is not a valid P-521 key")]
    InvalidKey,
    /// The cryptographic library failed (key generation, signing).
    #[error("cryptographic operation failed")]
    Crypto,
}

impl JwsError {
    /// A stable machine-readable code for this error.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::InvalidEncoding => "invalid_encoding",
            Self::InvalidJson => "invalid_json",
            Self::DuplicateMember => "duplicate_member",
            Self::NotAnObject => "not_an_object",
            Self::UnsupportedAlgorithm => "unsupported_alg",
            Self::InvalidKid => "invalid_kid",
            Self::ForbiddenHeader { .. } => "forbidden_header",
            Self::InvalidSignatureLength => "invalid_signature_length",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::ReservedHeader => "reserved_header",
            Self::InvalidKey => "invalid_key",
            Self::Crypto => "crypto_failure",
        }
    }
}

impl From<StrictJsonError> for JwsError {
    fn from(e: StrictJsonError) -> Self {
        match e {
            StrictJsonError::Invalid => Self::InvalidJson,
            StrictJsonError::DuplicateMember => Self::DuplicateMember,
            StrictJsonError::NotAnObject => Self::NotAnObject,
        }
    }
}

/// An ES512 public key, parsed and checked to lie on P-521.
#[derive(Clone)]
pub struct Es512VerifyingKey {
    key: ParsedPublicKey,
    x: [u8; P521_COORDINATE_BYTES],
    y: [u8; P521_COORDINATE_BYTES],
    kid: String,
    thumbprint: String,
}

impl std::fmt::Debug for Es512VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es512VerifyingKey")
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl Es512VerifyingKey {
    /// Parses a public JWK: `kty` `"EC"`, `crv` `"P-521"` exactly, `x` and `y` strict base64url of 66
    /// bytes each, and the point on the curve. `kid`, when present, must be a valid key id and becomes
    /// [`Self::kid`]; otherwise the thumbprint is the kid. `alg`, when present, must be `"ES512"`;
    /// `use`, when present, `"sig"`.
    ///
    /// # Errors
    /// [`JwsError::InvalidKey`] for anything else, including a JWK that carries the private part `d`
    /// (a public key set must never hold one).
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwsError> {
        let obj = jwk.as_object().ok_or(JwsError::InvalidKey)?;
        let member = |name: &str| obj.get(name).and_then(Value::as_str);
        if member("kty") != Some("EC") || member("crv") != Some("P-521") {
            return Err(JwsError::InvalidKey);
        }
        // SECURITY: a public key set holding a private key is a leak or a mistake; refuse it.
        if obj.contains_key("d") {
            return Err(JwsError::InvalidKey);
        }
        if obj
            .get("alg")
            .is_some_and(|a| a.as_str() != Some(ALG_ES512))
            || obj.get("use").is_some_and(|u| u.as_str() != Some("sig"))
        {
            return Err(JwsError::InvalidKey);
        }
        let x = decode_coordinate(member("x"))?;
        let y = decode_coordinate(member("y"))?;
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(k)) if valid_kid(k) => Some(k.clone()),
            Some(_) => return Err(JwsError::InvalidKey),
        };
        Self::from_coordinates(x, y, kid)
    }

    /// Builds the key from affine coordinates; aws-lc-rs checks the point lies on P-521.
    fn from_coordinates(
        x: [u8; P521_COORDINATE_BYTES],
        y: [u8; P521_COORDINATE_BYTES],
        kid: Option<String>,
    ) -> Result<Self, JwsError> {
        // SEC 1 §2.3.3 uncompressed point: 0x04 || x || y.
        let mut point = Vec::with_capacity(1 + 2 * P521_COORDINATE_BYTES);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        // SECURITY: `ParsedPublicKey::new` rejects coordinates >= p and points off the curve, so an
        // invalid-curve key can never be used to verify.
        let key = ParsedPublicKey::new(&ECDSA_P521_SHA512_FIXED, &point)
            .map_err(|_| JwsError::InvalidKey)?;
        let thumbprint = ec_p521_thumbprint(&x, &y);
        let kid = kid.unwrap_or_else(|| thumbprint.clone());
        Ok(Self {
            key,
            x,
            y,
            kid,
            thumbprint,
        })
    }

    /// The key id: the JWK's `kid`, or its thumbprint when it had none.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 thumbprint of this key (base64url SHA-256).
    #[must_use]
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// This key as a public JWK for a JWKS document: `kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`.
    #[must_use]
    pub fn to_jwk(&self) -> Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-521",
            "x": B64URL.encode(self.x),
            "y": B64URL.encode(self.y),
            "kid": self.kid,
            "alg": ALG_ES512,
            "use": "sig",
        })
    }

    /// Verifies an ES512 signature over `signing_input` (`header "." payload`).
    fn verify_signature(&self, signing_input: &[u8], signature: &[u8]) -> Result<(), JwsError> {
        if signature.len() != ES512_SIGNATURE_BYTES {
            return Err(JwsError::InvalidSignatureLength);
        }
        self.key
            .verify_sig(signing_input, signature)
            .map_err(|_| JwsError::BadSignature)
    }
}

/// An ES512 signing key (P-521 private key) with its key id.
pub struct Es512SigningKey {
    pair: EcdsaKeyPair,
    // SECURITY: kept so that `to_pkcs8` cannot fail; zeroized on drop by `secrecy`.
    pkcs8: SecretBox<Vec<u8>>,
    public: Es512VerifyingKey,
}

impl std::fmt::Debug for Es512SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es512SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl Es512SigningKey {
    /// Generates a new P-521 key from the system CSPRNG; its kid is its RFC 7638 thumbprint.
    ///
    /// # Errors
    /// [`JwsError::Crypto`] if aws-lc-rs fails to generate or serialise the key.
    pub fn generate() -> Result<Self, JwsError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P521_SHA512_FIXED_SIGNING)
            .map_err(|_| JwsError::Crypto)?;
        Self::from_pair(pair, None)
    }

    /// Loads a key from PKCS#8 DER (as stored, decrypted, by the key store) under the given kid.
    ///
    /// # Errors
    /// [`JwsError::InvalidKey`] when the DER is not a valid P-521 private key, or when `kid` is empty
    /// or longer than [`MAX_KID_BYTES`].
    pub fn from_pkcs8(der: &[u8], kid: String) -> Result<Self, JwsError> {
        if !valid_kid(&kid) {
            return Err(JwsError::InvalidKey);
        }
        // SECURITY: aws-lc-rs checks the curve is P-521 and the key pair is consistent.
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, der)
            .map_err(|_| JwsError::InvalidKey)?;
        Self::from_pair(pair, Some(kid))
    }

    fn from_pair(pair: EcdsaKeyPair, kid: Option<String>) -> Result<Self, JwsError> {
        let pkcs8 = pair.to_pkcs8v1().map_err(|_| JwsError::Crypto)?;
        let pkcs8 = SecretBox::new(Box::new(pkcs8.as_ref().to_vec()));
        let public = pair.public_key().as_ref();
        let (x, y) = match public {
            [0x04, rest @ ..] if rest.len() == 2 * P521_COORDINATE_BYTES => {
                rest.split_at(P521_COORDINATE_BYTES)
            }
            _ => return Err(JwsError::Crypto),
        };
        let x = <[u8; P521_COORDINATE_BYTES]>::try_from(x).map_err(|_| JwsError::Crypto)?;
        let y = <[u8; P521_COORDINATE_BYTES]>::try_from(y).map_err(|_| JwsError::Crypto)?;
        let public = Es512VerifyingKey::from_coordinates(x, y, kid)?;
        Ok(Self {
            pair,
            pkcs8,
            public,
        })
    }

    /// The private key as PKCS#8 v1 DER, for encrypted storage (see [`crate::aead::seal`]).
    #[must_use]
    pub fn to_pkcs8(&self) -> SecretBox<Vec<u8>> {
        SecretBox::new(Box::new(self.pkcs8.expose_secret().clone()))
    }

    /// The key id placed in every token's header.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The public half, for verifying this key's own tokens.
    #[must_use]
    pub fn verifying_key(&self) -> &Es512VerifyingKey {
        &self.public
    }

    /// The public JWK: `{"kty":"EC","crv":"P-521","x","y","kid","alg":"ES512","use":"sig"}`.
    #[must_use]
    pub fn public_jwk(&self) -> Value {
        self.public.to_jwk()
    }

    /// Signs `claims` as a compact JWS. The header is `header_extra` (e.g. `{"typ":"at+jwt"}`) plus
    /// `alg` `"ES512"` and this key's `kid`.
    ///
    /// # Errors
    /// [`JwsError::ReservedHeader`] if `header_extra` holds `alg` or `kid` (they are never
    /// overridable), [`JwsError::NotAnObject`] if `claims` is not a JSON object,
    /// [`JwsError::TooLarge`] if the token would exceed [`MAX_TOKEN_BYTES`] (so [`verify`] would
    /// refuse it), [`JwsError::Crypto`] if signing fails.
    pub fn sign(
        &self,
        header_extra: &Map<String, Value>,
        claims: &Value,
    ) -> Result<String, JwsError> {
        // SECURITY: the algorithm and key id are the signer's, never the caller's.
        if header_extra.contains_key("alg") || header_extra.contains_key("kid") {
            return Err(JwsError::ReservedHeader);
        }
        if !claims.is_object() {
            return Err(JwsError::NotAnObject);
        }
        let mut header = header_extra.clone();
        header.insert("alg".to_owned(), Value::from(ALG_ES512));
        header.insert("kid".to_owned(), Value::from(self.public.kid.clone()));
        let header = serde_json::to_vec(&Value::Object(header)).map_err(|_| JwsError::Crypto)?;
        let payload = serde_json::to_vec(claims).map_err(|_| JwsError::Crypto)?;
        let mut token = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        let signature = self
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| JwsError::Crypto)?;
        if signature.as_ref().len() != ES512_SIGNATURE_BYTES {
            return Err(JwsError::Crypto);
        }
        token.push('.');
        token.push_str(&B64URL.encode(signature.as_ref()));
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwsError::TooLarge);
        }
        Ok(token)
    }
}

/// A token whose signature verified: its protected header and its payload (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The protected header; `alg` is `"ES512"` and `kid` a string.
    pub header: Map<String, Value>,
    /// The payload, always a JSON object. Check its claims with [`validate_claims`].
    pub payload: Value,
}

impl Verified {
    /// The header's `kid`.
    #[must_use]
    pub fn kid(&self) -> &str {
        self.header.get("kid").and_then(Value::as_str).unwrap_or("")
    }

    /// The header's `typ`, if it is a string (e.g. `at+jwt`).
    #[must_use]
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
}

/// Verifies a compact ES512 JWS, looking its key up by `kid`. See the module docs for every check.
///
/// `lookup` receives the header's `kid` and returns the key (by reference, clone, `Arc`, ...) or
/// `None` when it is unknown, retired or otherwise not acceptable.
///
/// # Errors
/// The first [`JwsError`] met, in the order of the module docs.
pub fn verify<K, F>(token: &str, lookup: F) -> Result<Verified, JwsError>
where
    K: Borrow<Es512VerifyingKey>,
    F: FnOnce(&str) -> Option<K>,
{
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(JwsError::Malformed);
    };
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(JwsError::Malformed);
    }

    let header_json = decode_segment(header_b64)?;
    let payload_json = decode_segment(payload_b64)?;
    let signature = decode_segment(signature_b64)?;
    let header = strict_json::parse_object(&header_json)?;
    check_header(&header)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(JwsError::InvalidKid)?;

    if signature.len() != ES512_SIGNATURE_BYTES {
        return Err(JwsError::InvalidSignatureLength);
    }
    let key = lookup(kid).ok_or(JwsError::UnknownKey)?;
    // SECURITY: the signing input is the exact bytes received, `header "." payload` (RFC 7515 §5.2).
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .as_bytes()
        .get(..signing_input_len)
        .ok_or(JwsError::Malformed)?;
    key.borrow().verify_signature(signing_input, &signature)?;

    // SECURITY: the payload's JSON is parsed only once the signature has verified.
    let payload = strict_json::parse_object(&payload_json)?;
    Ok(Verified {
        header,
        payload: Value::Object(payload),
    })
}

/// Checks `alg`, `kid` and the forbidden parameters of a parsed header.
fn check_header(header: &Map<String, Value>) -> Result<(), JwsError> {
    // SECURITY: exact, case-sensitive match; the key type never decides the algorithm.
    if header.get("alg").and_then(Value::as_str) != Some(ALG_ES512) {
        return Err(JwsError::UnsupportedAlgorithm);
    }
    match header.get("kid") {
        Some(Value::String(kid)) if valid_kid(kid) => {}
        _ => return Err(JwsError::InvalidKid),
    }
    if let Some(name) = FORBIDDEN_HEADER_PARAMETERS
        .iter()
        .find(|name| header.contains_key(**name))
    {
        return Err(JwsError::ForbiddenHeader { name });
    }
    Ok(())
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_BYTES
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, JwsError> {
    B64URL
        .decode(segment)
        .map_err(|_| JwsError::InvalidEncoding)
}

fn decode_coordinate(value: Option<&str>) -> Result<[u8; P521_COORDINATE_BYTES], JwsError> {
    let bytes = B64URL
        .decode(value.ok_or(JwsError::InvalidKey)?)
        .map_err(|_| JwsError::InvalidKey)?;
    <[u8; P521_COORDINATE_BYTES]>::try_from(bytes.as_slice()).map_err(|_| JwsError::InvalidKey)
}

#[cfg(test)]
mod tests;
