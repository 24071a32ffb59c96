//! Cryptographic building blocks for Palisade, over vetted crates (RustCrypto `hmac`, `hkdf`, `sha2`,
//! `subtle`, and the operating system's CSPRNG through `rand`).
//!
//! Invariants:
//! - No primitive is implemented here; this crate composes audited ones.
//! - Secret material lives in `secrecy` types and never appears in `Debug` output.
//! - Every comparison of secret-derived bytes is constant-time.
//! - Keys for different purposes are separated by HKDF labels, so one purpose's key never verifies
//!   another's data.

pub mod master;
pub mod signing;

pub use master::{DerivedKey, MasterKey, MasterKeyError};
pub use signing::{SignedToken, TokenError};

/// Fills a fresh array from the operating system's CSPRNG.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::Rng::fill(&mut rand::rng(), &mut out[..]);
    out
}

/// Compares two byte strings in constant time (for equal lengths; the length itself is not secret).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}
