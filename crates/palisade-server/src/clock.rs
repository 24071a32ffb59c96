//! The server's notion of "now" for authentication-time decisions: OTP challenge expiry, the MFA
//! token's lifetime, TOTP time steps, `auth_time` and the step-up window, and access-token `iat`/`exp`
//! checks.
//!
//! SECURITY: in the release binary [`Clock`] is the system clock and nothing else: the offset field
//! and [`Clock::advance`] exist only with the `test-auth` feature, which only the dev-only test kit
//! enables, so no configuration or request can skew the time the server decides with. Tests use the
//! offset to prove that expired codes and stale step-ups are refused without sleeping.
//!
//! Not every `now_utc()` goes through here: timestamps that are only recorded (audit `at`, `created_at`
//! set by the stores) and shared-state windows (rate limits, replay caches, which Redis keeps with its
//! own clock) stay on the system clock.

use time::OffsetDateTime;

/// A source of the current time. Cheap to clone; clones share the offset.
#[derive(Clone, Default)]
pub struct Clock {
    #[cfg(feature = "test-auth")]
    offset_secs: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").finish_non_exhaustive()
    }
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time (UTC).
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        #[cfg(feature = "test-auth")]
        {
            let offset = self.offset_secs.load(std::sync::atomic::Ordering::SeqCst);
            now.checked_add(time::Duration::seconds(offset))
                .unwrap_or(now)
        }
        #[cfg(not(feature = "test-auth"))]
        now
    }

    /// Moves this clock (and every clone) forward by `by` (test kit only).
    #[cfg(feature = "test-auth")]
    pub fn advance(&self, by: time::Duration) {
        self.offset_secs
            .fetch_add(by.whole_seconds(), std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_follows_real_time() {
        let before = OffsetDateTime::now_utc();
        let now = Clock::system().now();
        assert!(now >= before && now - before < time::Duration::seconds(5));
    }
}
