//! Security counters by time window, for `GET /v1/security/stats` and the Trust Center: denials,
//! rate-limited requests, WAF violations and blocks, failed sign-ins.
//!
//! Invariants:
//! - Counts are kept per minute in a ring of the last 24 hours (1,440 buckets of five counters):
//!   memory is fixed whatever the traffic, and a window's count is exact to the minute.
//! - Counters are per instance (like the Prometheus metrics they accompany); the response says so.
//! - Recording takes one short mutex section; a poisoned lock drops the count rather than failing the
//!   request it describes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use utoipa::ToSchema;

/// Minutes kept.
const MINUTES: u64 = 24 * 60;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    /// Authentication or authorization refused a request.
    Denial,
    /// The rate limiter refused a request.
    RateLimited,
    /// The WAF refused a request body.
    WafViolation,
    /// The WAF blocked a client after a burst of violations, or refused a blocked client.
    WafBlock,
    /// A sign-in step (one-time code, second factor) failed.
    FailedLogin,
}

impl SecurityEvent {
    fn index(self) -> usize {
        match self {
            Self::Denial => 0,
            Self::RateLimited => 1,
            Self::WafViolation => 2,
            Self::WafBlock => 3,
            Self::FailedLogin => 4,
        }
    }
}

/// The counts of one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct WindowCounts {
    /// Requests refused by authentication or authorization.
    pub denials: u64,
    /// Requests refused by the rate limiter.
    pub rate_limited: u64,
    /// Request bodies refused by the WAF.
    pub waf_violations: u64,
    /// Requests refused because their client is blocked, and blocks imposed.
    pub waf_blocks: u64,
    /// Failed sign-in steps.
    pub failed_logins: u64,
}

impl WindowCounts {
    fn add(&mut self, counts: &[u64; 5]) {
        let [d, r, v, b, f] = *counts;
        self.denials += d;
        self.rate_limited += r;
        self.waf_violations += v;
        self.waf_blocks += b;
        self.failed_logins += f;
    }
}

/// Counts by window.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct StatsWindows {
    /// The last minute.
    #[serde(rename = "1m")]
    pub last_minute: WindowCounts,
    /// The last hour.
    #[serde(rename = "1h")]
    pub last_hour: WindowCounts,
    /// The last 24 hours.
    #[serde(rename = "24h")]
    pub last_day: WindowCounts,
    /// Since this instance started.
    pub since_start: WindowCounts,
}

/// The counters.
pub struct SecurityStats {
    started: Instant,
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    /// (minute since start, counts), oldest first.
    minutes: VecDeque<(u64, [u64; 5])>,
    totals: [u64; 5],
}

impl Default for SecurityStats {
    fn default() -> Self {
        Self::new()
    }
}

impl SecurityStats {
    /// Empty counters.
    #[must_use]
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Ring::default()),
        }
    }

    fn minute(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }

    /// Counts one event now.
    pub fn record(&self, event: SecurityEvent) {
        let now = self.minute();
        let Ok(mut ring) = self.inner.lock() else {
            return;
        };
        if ring.minutes.back().is_none_or(|(m, _)| *m != now) {
            ring.minutes.push_back((now, [0; 5]));
        }
        while ring
            .minutes
            .front()
            .is_some_and(|(m, _)| now.saturating_sub(*m) >= MINUTES)
        {
            ring.minutes.pop_front();
        }
        let i = event.index();
        if let Some((_, counts)) = ring.minutes.back_mut()
            && let Some(c) = counts.get_mut(i)
        {
            *c += 1;
        }
        if let Some(t) = ring.totals.get_mut(i) {
            *t += 1;
        }
    }

    /// The counts of every window now.
    #[must_use]
    pub fn windows(&self) -> StatsWindows {
        let now = self.minute();
        let mut out = StatsWindows {
            last_minute: WindowCounts::default(),
            last_hour: WindowCounts::default(),
            last_day: WindowCounts::default(),
            since_start: WindowCounts::default(),
        };
        let Ok(ring) = self.inner.lock() else {
            return out;
        };
        for (minute, counts) in &ring.minutes {
            let age = now.saturating_sub(*minute);
            // "The last minute" is the current minute bucket (up to 60 s old).
            if age == 0 {
                out.last_minute.add(counts);
            }
            if age < 60 {
                out.last_hour.add(counts);
            }
            if age < MINUTES {
                out.last_day.add(counts);
            }
        }
        out.since_start.add(&ring.totals);
        out
    }
}

/// The sign-in steps whose 401 answers count as failed logins: a wrong one-time code, a wrong second
/// factor or recovery code, a spent challenge.
const SIGN_IN_STEPS: [&str; 2] = ["/v1/auth/otp/verify", "/v1/auth/mfa/verify"];

/// Counts a failed login when `path` is a sign-in step answered 401. Observed at the route layer, so
/// every refusal of those handlers counts, whichever branch refused.
pub fn observe_sign_in(metrics: &crate::metrics::Metrics, path: &str, status: http::StatusCode) {
    if status == http::StatusCode::UNAUTHORIZED && SIGN_IN_STEPS.contains(&path) {
        metrics.record_failed_login();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_in_every_window() {
        let stats = SecurityStats::new();
        stats.record(SecurityEvent::RateLimited);
        stats.record(SecurityEvent::RateLimited);
        stats.record(SecurityEvent::FailedLogin);
        stats.record(SecurityEvent::Denial);
        stats.record(SecurityEvent::WafViolation);
        stats.record(SecurityEvent::WafBlock);
        let w = stats.windows();
        for counts in [w.last_minute, w.last_hour, w.last_day, w.since_start] {
            assert_eq!(counts.rate_limited, 2);
            assert_eq!(counts.failed_logins, 1);
            assert_eq!(counts.denials, 1);
            assert_eq!(counts.waf_violations, 1);
            assert_eq!(counts.waf_blocks, 1);
        }
    }
}
