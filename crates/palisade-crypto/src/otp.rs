//! One-time numeric codes (sign-in by email or SMS) and opaque bearer tokens (refresh tokens).
//!
//! Invariants:
//! - Every value comes straight from the operating system's CSPRNG.
//! - Numeric codes are uniform over all `10^digits` values: `rand`'s `Uniform` distribution uses
//!   Lemire's method with rejection, so there is no modulo bias. They have 6 to 8 digits; a request
//!   outside that range is clamped, so a code is never shorter than 6 digits.
//! - Opaque tokens carry 256 random bits after a public prefix (`prt_` for refresh tokens), which
//!   lets scanners and the log redactor recognise them.
//! - Both are returned as `SecretString`: only their keyed hash (see [`crate::keyed_hash`]) is
//!   stored, and they never appear in `Debug` output.

use base64::Engine as _;
use rand::distr::{Distribution as _, Uniform};
use secrecy::SecretString;

/// The fewest digits [`numeric_code`] produces.
pub const MIN_CODE_DIGITS: u8 = 6;
/// The most digits [`numeric_code`] produces.
pub const MAX_CODE_DIGITS: u8 = 8;
/// The prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "prt_";
/// The random bytes in an [`opaque_token`].
pub const OPAQUE_TOKEN_BYTES: usize = 32;

/// A uniformly random code of `digits` decimal digits, zero-padded (`"004217"`). `digits` is clamped
/// to [`MIN_CODE_DIGITS`]..=[`MAX_CODE_DIGITS`].
#[must_use]
pub fn numeric_code(digits: u8) -> SecretString {
    // SECURITY: clamping up, never down, keeps at least 10^6 possible codes.
    let digits = digits.clamp(MIN_CODE_DIGITS, MAX_CODE_DIGITS);
    let upper = 10_u32.pow(u32::from(digits));
    let mut rng = crate::os_rng();
    let value = match Uniform::new(0, upper) {
        Ok(uniform) => uniform.sample(&mut rng),
        // Unreachable: `upper` is at least 10^6, so the range is never empty. Should it happen,
        // `random_range` is still uniform (to within 2^-96) rather than a fixed value.
        Err(_) => rand::Rng::random_range(&mut rng, 0..upper),
    };
    let width = usize::from(digits);
    SecretString::from(format!("{value:0width$}"))
}

/// `prefix` followed by base64url of [`OPAQUE_TOKEN_BYTES`] random bytes (43 characters), e.g.
/// `opaque_token(REFRESH_TOKEN_PREFIX)` → `prt_…`.
#[must_use]
pub fn opaque_token(prefix: &str) -> SecretString {
    let bytes: [u8; OPAQUE_TOKEN_BYTES] = crate::os_random_bytes();
    SecretString::from(format!("{prefix}{}", crate::B64URL.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;
    use std::collections::HashSet;

    #[test]
    fn codes_have_the_requested_number_of_digits() {
        for digits in 6..=8 {
            for _ in 0..200 {
                let c = numeric_code(digits);
                let c = c.expose_secret();
                assert_eq!(c.len(), usize::from(digits));
                assert!(c.bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }

    #[test]
    fn code_length_is_clamped_to_six_through_eight() {
        assert_eq!(numeric_code(0).expose_secret().len(), 6);
        assert_eq!(numeric_code(4).expose_secret().len(), 6);
        assert_eq!(numeric_code(9).expose_secret().len(), 8);
        assert_eq!(numeric_code(u8::MAX).expose_secret().len(), 8);
    }

    #[test]
    fn codes_are_spread_over_the_whole_range() {
        // A coarse sanity check, not a statistical test: 2000 six-digit codes should nearly all be
        // distinct and each leading digit should appear.
        let codes: Vec<String> = (0..2000)
            .map(|_| numeric_code(6).expose_secret().to_owned())
            .collect();
        let distinct: HashSet<&String> = codes.iter().collect();
        assert!(distinct.len() > 1950);
        let leading: HashSet<u8> = codes.iter().map(|c| c.as_bytes()[0]).collect();
        assert_eq!(leading.len(), 10);
    }

    #[test]
    fn opaque_tokens_carry_the_prefix_and_256_random_bits() {
        let t = opaque_token(REFRESH_TOKEN_PREFIX);
        let t = t.expose_secret();
        let body = t.strip_prefix("prt_").unwrap();
        assert_eq!(body.len(), 43);
        assert_eq!(crate::B64URL.decode(body).unwrap().len(), 32);
        assert_ne!(t, opaque_token(REFRESH_TOKEN_PREFIX).expose_secret());
        assert!(!format!("{:?}", opaque_token("prt_")).contains("prt_"));
    }
}
