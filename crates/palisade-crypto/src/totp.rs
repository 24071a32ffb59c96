//! TOTP (RFC 6238) over the `totp-rs` crate: HMAC-SHA-1, 6 digits, 30-second steps, the parameters
//! every authenticator app supports.
//!
//! Invariants:
//! - Secrets are 20 random bytes from the OS CSPRNG (160 bits, RFC 4226 §4 R6); loaded secrets must
//!   have at least 128 bits. They live in `secrecy` types, are stored only encrypted (see
//!   [`crate::aead`]) and never appear in `Debug` output.
//! - [`TotpSecret::verify`] compares every candidate code in constant time and always computes all
//!   `2 * skew + 1` candidates, so neither the code nor which step matched shows in the timing.
//!   (`totp-rs`'s own `check` also compares in constant time, but returns only a bool and underflows
//!   near time zero; we need the matched step.)
//! - Replay protection lives with the caller: `verify` returns the matched time step, and the caller
//!   refuses any step at or before the last one it accepted for that user.

use secrecy::{ExposeSecret as _, SecretBox, SecretString};
use totp_rs::{Algorithm, TOTP};

/// Digits in a code.
pub const TOTP_DIGITS: usize = 6;
/// Seconds per time step.
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Bytes in a generated secret.
pub const TOTP_SECRET_BYTES: usize = 20;
/// The fewest secret bytes accepted when loading one (128 bits, RFC 4226 §4 R6).
pub const TOTP_MIN_SECRET_BYTES: usize = 16;
/// The most secret bytes accepted when loading one.
pub const TOTP_MAX_SECRET_BYTES: usize = 64;

/// Why a TOTP operation failed. Carries no secret or code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// A loaded secret is shorter than 128 bits or longer than 512.
    #[error("TOTP secret has an invalid length")]
    InvalidSecret,
    /// The issuer or account name is empty or contains `:` (which would split the otpauth label).
    #[error("TOTP issuer or account name is invalid")]
    InvalidLabel,
}

impl TotpError {
    /// A stable machine-readable code for this error.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::InvalidSecret => "invalid_secret",
            Self::InvalidLabel => "invalid_label",
        }
    }
}

/// A user's TOTP shared secret.
pub struct TotpSecret {
    bytes: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

impl TotpSecret {
    /// A new random 160-bit secret.
    #[must_use]
    pub fn generate() -> Self {
        let bytes: [u8; TOTP_SECRET_BYTES] = crate::os_random_bytes();
        Self {
            bytes: SecretBox::new(Box::new(bytes.to_vec())),
        }
    }

    /// Loads a stored secret (after decryption).
    ///
    /// # Errors
    /// [`TotpError::InvalidSecret`] unless it has [`TOTP_MIN_SECRET_BYTES`] to
    /// [`TOTP_MAX_SECRET_BYTES`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TotpError> {
        if !(TOTP_MIN_SECRET_BYTES..=TOTP_MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(TotpError::InvalidSecret);
        }
        Ok(Self {
            bytes: SecretBox::new(Box::new(bytes.to_vec())),
        })
    }

    /// The raw secret, for sealing with [`crate::aead::seal`] before storage.
    #[must_use]
    pub fn expose_bytes(&self) -> &[u8] {
        self.bytes.expose_secret()
    }

    /// The secret in unpadded RFC 4648 base32, as authenticator apps take it for manual entry.
    #[must_use]
    pub fn base32(&self) -> SecretString {
        SecretString::from(self.totp(TOTP_DIGITS).get_secret_base32())
    }

    /// The `otpauth://totp/<issuer>:<account>?secret=…&issuer=…` URI for enrolment QR codes (the
    /// de-facto Key Uri Format). It holds the secret, hence the `SecretString`.
    ///
    /// # Errors
    /// [`TotpError::InvalidLabel`] if `issuer` or `account` is empty or contains `:`.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<SecretString, TotpError> {
        if issuer.is_empty() || account.is_empty() {
            return Err(TotpError::InvalidLabel);
        }
        let totp = TOTP::new(
            Algorithm::SHA1,
            TOTP_DIGITS,
            0,
            TOTP_STEP_SECONDS,
            self.bytes.expose_secret().clone(),
            Some(issuer.to_owned()),
            account.to_owned(),
        )
        .map_err(|_| TotpError::InvalidLabel)?;
        Ok(SecretString::from(totp.get_url()))
    }

    /// The code for the time step containing `now_unix`, as an authenticator app would show it. For
    /// test harnesses acting as the user's device.
    #[must_use]
    pub fn code_at(&self, now_unix: u64) -> SecretString {
        SecretString::from(self.totp(TOTP_DIGITS).generate(now_unix))
    }

    /// Checks `code` against the steps from `skew_steps` before to `skew_steps` after the one
    /// containing `now_unix` (RFC 6238 §5.2 recommends a skew of 1), and returns the matched time
    /// step (`unix_time / 30`). When several steps match, the one nearest the current step wins,
    /// the earlier one on a tie.
    ///
    /// `code` must be exactly 6 ASCII digits; normalising user input (spaces) is the caller's job.
    /// The caller must refuse a returned step at or before the last step it accepted (replay).
    #[must_use]
    pub fn verify(&self, code: &str, now_unix: u64, skew_steps: u8) -> Option<u64> {
        if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp(TOTP_DIGITS);
        let current = now_unix / TOTP_STEP_SECONDS;
        let skew = u64::from(skew_steps);
        let mut best: Option<(u64, u64)> = None; // (distance from current, step)
        for step in current.saturating_sub(skew)..=current.saturating_add(skew) {
            let Some(at) = step.checked_mul(TOTP_STEP_SECONDS) else {
                continue;
            };
            let candidate = totp.generate(at);
            // SECURITY: constant-time comparison, and no early exit: every candidate is computed.
            if crate::ct_eq(candidate.as_bytes(), code.as_bytes()) {
                let distance = step.abs_diff(current);
                if best.is_none_or(|(d, _)| distance < d) {
                    best = Some((distance, step));
                }
            }
        }
        best.map(|(_, step)| step)
    }

    /// A `totp-rs` generator over this secret. `new_unchecked` is safe: the secret length was
    /// checked on construction and the digit count is a constant in 6..=8.
    fn totp(&self, digits: usize) -> TOTP {
        TOTP::new_unchecked(
            Algorithm::SHA1,
            digits,
            0,
            TOTP_STEP_SECONDS,
            self.bytes.expose_secret().clone(),
            None,
            String::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: the SHA-1 seed and 8-digit codes.
    #[test]
    fn matches_the_rfc6238_sha1_test_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let totp = secret.totp(8);
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time), code, "t = {time}");
        }
    }

    #[test]
    fn six_digit_codes_are_the_low_digits_of_the_rfc_codes() {
        // RFC 4226 §5.3 truncation: the 6-digit code is the 8-digit code mod 10^6.
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(secret.code_at(59).expose_secret(), "287082");
        assert_eq!(secret.code_at(1_111_111_109).expose_secret(), "081804");
        assert_eq!(secret.verify("287082", 59, 0), Some(1));
        assert_eq!(secret.verify("081804", 1_111_111_109, 1), Some(37_037_036));
    }

    #[test]
    fn verify_accepts_within_the_skew_and_returns_the_step() {
        let s = TotpSecret::generate();
        let now = 1_700_000_015;
        let step = now / 30;
        let code = s.code_at(now);
        assert_eq!(s.verify(code.expose_secret(), now, 0), Some(step));
        let previous = s.code_at(now - 30);
        assert_eq!(s.verify(previous.expose_secret(), now, 1), Some(step - 1));
        let next = s.code_at(now + 30);
        assert_eq!(s.verify(next.expose_secret(), now, 1), Some(step + 1));
        let old = s.code_at(now - 60);
        if old.expose_secret() != code.expose_secret()
            && old.expose_secret() != previous.expose_secret()
            && old.expose_secret() != next.expose_secret()
        {
            assert_eq!(s.verify(old.expose_secret(), now, 1), None);
            assert_eq!(s.verify(old.expose_secret(), now, 2), Some(step - 2));
        }
    }

    #[test]
    fn verify_refuses_malformed_codes() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        for bad in [
            "",
            "28708",
            "2870822",
            " 287082",
            "287 082",
            "２８７０８２",
            "28708a",
        ] {
            assert_eq!(s.verify(bad, 59, 1), None, "{bad:?}");
        }
    }

    #[test]
    fn verify_near_time_zero_does_not_underflow() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let code = s.code_at(0);
        assert_eq!(s.verify(code.expose_secret(), 0, 5), Some(0));
        // The far end of time must not overflow either; whether it matches doesn't matter.
        let _ = s.verify("000000", u64::MAX, u8::MAX);
    }

    #[test]
    fn generated_secrets_are_160_bits_and_distinct() {
        let a = TotpSecret::generate();
        let b = TotpSecret::generate();
        assert_eq!(a.expose_bytes().len(), 20);
        assert_ne!(a.expose_bytes(), b.expose_bytes());
        assert_eq!(a.base32().expose_secret().len(), 32);
        assert_eq!(format!("{a:?}"), "TotpSecret([REDACTED])");
    }

    #[test]
    fn loaded_secrets_need_at_least_128_bits() {
        assert_eq!(
            TotpSecret::from_bytes(&[0; 15]).unwrap_err(),
            TotpError::InvalidSecret
        );
        assert_eq!(
            TotpSecret::from_bytes(&[0; 65]).unwrap_err(),
            TotpError::InvalidSecret
        );
        assert!(TotpSecret::from_bytes(&[0; 16]).is_ok());
    }

    #[test]
    fn base32_and_otpauth_uri_follow_the_key_uri_format() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(
            s.base32().expose_secret(),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        let uri = s.otpauth_uri("Palisade", "ada@example.com").unwrap();
        assert_eq!(
            uri.expose_secret(),
            "otpauth://totp/Palisade:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Palisade"
        );
        let spaced = s.otpauth_uri("Acme Corp", "a b").unwrap();
        assert!(
            spaced
                .expose_secret()
                .starts_with("otpauth://totp/Acme%20Corp:a%20b?")
        );
        assert_eq!(
            s.otpauth_uri("Pali:sade", "a").unwrap_err(),
            TotpError::InvalidLabel
        );
        assert_eq!(
            s.otpauth_uri("Palisade", "a:b").unwrap_err(),
            TotpError::InvalidLabel
        );
        assert_eq!(s.otpauth_uri("", "a").unwrap_err(), TotpError::InvalidLabel);
        assert_eq!(
            s.otpauth_uri("Palisade", "").unwrap_err(),
            TotpError::InvalidLabel
        );
    }
}
