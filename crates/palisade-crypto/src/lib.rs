//! Cryptographic building blocks for Palisade, over vetted crates: RustCrypto `hmac`, `hkdf`, `sha2` and
//! `subtle`; `aws-lc-rs` for ECDSA P-521 (ES512), AES-256-GCM and HMAC; `totp-rs` for RFC 6238; and the
//! operating system's CSPRNG through `rand`.
//!
//! Modules:
//! - [`master`]: the master key and HKDF purpose keys.
//! - [`signing`]: HMAC-signed opaque tokens (cursors, signed URLs).
//! - [`jws`]: ES512 compact JWS signing, strict verification and JWT claim checks.
//! - [`jwk`]: RFC 7638 thumbprints of P-521 public keys.
//! - [`aead`]: the AES-256-GCM envelope for secrets at rest.
//! - [`keyed_hash`]: HMAC-SHA256 hashing of OTP codes, refresh tokens and API keys.
//! - [`otp`]: one-time numeric codes and opaque bearer tokens.
//! - [`totp`]: RFC 6238 TOTP secrets, enrolment URIs and verification.
//! - [`recovery`]: MFA recovery codes.
//!
//! Invariants:
//! - No primitive is implemented here; this crate composes audited ones.
//! - Secret material lives in `secrecy` types and never appears in `Debug` output.
//! - Every comparison of secret-derived bytes is constant-time.
//! - Keys for different purposes are separated by HKDF labels, so one purpose's key never verifies
//!   another's data.
//! - Errors never carry token, key or code contents, so they are safe to log.
//!
//! No test here measures time: constant-time behaviour is inherited from the audited comparisons
//! (`subtle`, `aws-lc-rs`) and checked by review, because timing tests are flaky on shared machines.

pub mod aead;
pub mod jwk;
pub mod jws;
pub mod keyed_hash;
pub mod master;
pub mod otp;
pub mod recovery;
pub mod signing;
pub mod totp;

pub use aead::AeadError;
pub use jws::{
    ClaimError, ClaimRules, Es512SigningKey, Es512VerifyingKey, JwsError, Verified, validate_claims,
};
pub use keyed_hash::KeyedHasher;
pub use master::{DerivedKey, MasterKey, MasterKeyError};
pub use signing::{SignedToken, TokenError};
pub use totp::{TotpError, TotpSecret};

/// Strict base64url (RFC 4648 §5) as JOSE requires (RFC 7515 §2): no padding on encode, and on decode
/// padding, characters outside the URL-safe alphabet and non-zero trailing bits are all refused, so
/// each byte string has exactly one accepted encoding.
pub(crate) const B64URL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Fills a fresh array straight from the operating system's CSPRNG (`getrandom`).
///
/// SECURITY: should the OS generator fail, `rand` panics here rather than return predictable bytes, so
/// no secret is ever issued from a broken source.
pub(crate) fn os_random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::RngCore::fill_bytes(&mut os_rng(), &mut out);
    out
}

/// The operating system's CSPRNG as an infallible `Rng` (panics inside `rand` on OS failure).
pub(crate) fn os_rng() -> rand::rand_core::UnwrapErr<rand::rngs::OsRng> {
    rand::TryRngCore::unwrap_err(rand::rngs::OsRng)
}

/// Fills a fresh array from the operating system's CSPRNG.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::Rng::fill(&mut rand::rng(), &mut out[..]);
    out
}

/// SHA-256 of `input`: an unkeyed digest for cache keys and lookups of high-entropy values (a bearer
/// token's verification cache, a content address). Hash low-entropy secrets (OTP codes) with
/// [`KeyedHasher`] instead, which a leaked table can't brute-force.
#[must_use]
pub fn fingerprint(input: &[u8]) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(input).into()
}

/// Compares two byte strings in constant time (for equal lengths; the length itself is not secret).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_is_sha256() {
        // FIPS 180-2 example: SHA-256("abc").
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = super::fingerprint(b"abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }
}
