//! Key digests and time-to-live conversions shared by both backends, so they agree on what a key
//! is and which durations are acceptable.
//!
//! Invariants:
//! - The caller's key is only ever stored as its SHA-256 digest (fixed size, no raw identifiers).
//! - A time to live is at least 1 ms (sub-millisecond values round up) and at most [`MAX_TTL`]; zero
//!   is refused rather than silently meaning "already expired" or "forever".

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::StateError;

/// The digest of a caller's key.
pub(crate) type KeyDigest = [u8; 32];

/// The longest accepted time to live (100 years): far beyond any token or window, far below any
/// overflow of `Instant` or Redis's millisecond expiry.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The SHA-256 digest of `key`.
pub(crate) fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// `digest(key)` in lowercase hex, for Redis key names.
pub(crate) fn hex_digest(key: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64);
    for byte in digest(key) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Checks a time to live and returns it in whole milliseconds, rounded up.
pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64, StateError> {
    if ttl.is_zero() {
        return Err(StateError::internal("zero time to live"));
    }
    if ttl > MAX_TTL {
        return Err(StateError::internal("time to live too long"));
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).map_err(|_| StateError::internal("time to live too long"))
}

/// The time left until `until`, or `None` when it has passed. Measured on this host's clock, the
/// clock that also judged the token's expiry; Redis then gets a relative time to live, so clock skew
/// between hosts cannot shorten a revocation.
pub(crate) fn remaining(until: OffsetDateTime) -> Result<Option<Duration>, StateError> {
    let left = until - OffsetDateTime::now_utc();
    if left <= time::Duration::ZERO {
        return Ok(None);
    }
    Duration::try_from(left)
        .map(Some)
        .map_err(|_| StateError::internal("revocation expiry out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::from_micros(1)).ok(), Some(1));
        assert_eq!(ttl_millis(Duration::from_micros(1_500)).ok(), Some(2));
        assert_eq!(ttl_millis(Duration::from_secs(3)).ok(), Some(3_000));
    }

    #[test]
    fn zero_and_absurd_ttls_are_refused() {
        assert!(matches!(
            ttl_millis(Duration::ZERO),
            Err(StateError::Internal(_))
        ));
        assert!(matches!(
            ttl_millis(MAX_TTL + Duration::from_secs(1)),
            Err(StateError::Internal(_))
        ));
    }

    #[test]
    fn hex_digest_is_sha256() {
        assert_eq!(
            hex_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn past_expiry_has_nothing_remaining() {
        let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        assert!(matches!(remaining(past), Ok(None)));
        let future = OffsetDateTime::now_utc() + time::Duration::minutes(5);
        assert!(matches!(remaining(future), Ok(Some(d)) if d > Duration::from_secs(290)));
    }
}
