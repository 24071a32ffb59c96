//! Rate limiting with GCRA (the generic cell rate algorithm, ITU-T I.371 "virtual scheduling"): one
//! stored number per key, the *theoretical arrival time* (TAT), and no background refill.
//!
//! A [`Quota`] of `per_second` with `burst` admits `burst` requests at once and then one request
//! every `1 / per_second`. With the emission interval `T = 1/per_second` and capacity `C = burst·T`,
//! a request at `now` is allowed when `max(TAT, now) + T ≤ now + C`, and then
//! `TAT := max(TAT, now) + T`. A key whose TAT is in the past holds its full burst, exactly as a key
//! never seen: so an idle entry can be forgotten at any moment without changing any decision, which
//! is what keeps the in-process table bounded.
//!
//! Backends:
//! - [`MemoryLimiter`] (embedded default): a sharded table of `u64 → TAT` behind one mutex per shard;
//!   keys are 64-bit SipHash values under a per-process random key (unpredictable, so callers cannot
//!   aim collisions; an accidental collision of two live keys among a million has a probability of
//!   about 3·10⁻⁸ and only makes the two share a bucket).
//! - the Redis limiter: one atomic Lua script per decision (`EVALSHA`, falling back to `EVAL` when the
//!   script cache lacks it, as the `redis` crate's `Script` does), keyed
//!   `<prefix>rl:<sha256 hex of the key>`, timed by Redis's own clock (`TIME`) so instances with skewed
//!   clocks share one timeline.
//! - [`FallbackLimiter`] wraps the Redis limiter: when Redis cannot answer within the operation
//!   timeout it decides with a per-instance [`MemoryLimiter`] instead.
//!
//! Invariants:
//! - SECURITY: there is no path to "no limit". A failed Redis decision falls back to the in-process
//!   limiter (per-instance limits: with N instances a client may get up to N times its quota while
//!   Redis is down); a full in-process table refuses new keys with [`StateError::Unavailable`], which
//!   callers answer as a refusal.
//! - Degradation is visible: [`RateLimiter::health`] reports it, with a count of fallback decisions.
//! - While degraded, Redis is retried at most once per [`PROBE_INTERVAL`], so an outage does not add
//!   the operation timeout to every request.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::StateError;

/// How often a degraded limiter tries Redis again.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Shards of the in-process table (a power of two).
const SHARDS: usize = 64;

/// A rate: `per_second` sustained, `burst` at once. Both at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    per_second: u32,
    burst: u32,
}

impl Quota {
    /// The tightest quota: one request per second, no burst beyond it.
    pub const STRICTEST: Self = Self {
        per_second: 1,
        burst: 1,
    };

    /// A quota.
    ///
    /// # Errors
    /// [`StateError::Config`] when either value is zero or `per_second` exceeds 1,000,000 (the
    /// emission interval is kept in whole microseconds).
    pub fn new(per_second: u32, burst: u32) -> Result<Self, StateError> {
        if per_second == 0 || burst == 0 {
            return Err(StateError::Config(
                "a quota needs per_second and burst of at least 1",
            ));
        }
        if per_second > 1_000_000 {
            return Err(StateError::Config(
                "a quota's per_second is at most 1,000,000",
            ));
        }
        Ok(Self { per_second, burst })
    }

    /// Sustained requests per second.
    #[must_use]
    pub fn per_second(self) -> u32 {
        self.per_second
    }

    /// Requests admitted at once.
    #[must_use]
    pub fn burst(self) -> u32 {
        self.burst
    }

    /// The emission interval `T` in microseconds (rounded up, so the rate is never exceeded).
    #[must_use]
    pub fn interval_us(self) -> u64 {
        1_000_000_u64.div_ceil(u64::from(self.per_second))
    }

    /// Seconds a drained bucket needs to refill completely (`burst / per_second`, rounded up, at
    /// least 1): the window of the `RateLimit-Policy` header.
    #[must_use]
    pub fn window_secs(self) -> u64 {
        u64::from(self.burst)
            .div_ceil(u64::from(self.per_second))
            .max(1)
    }
}

/// The outcome of one decision, enough for `RateLimit`, `RateLimit-Policy` and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (it was counted).
    pub allowed: bool,
    /// Requests that may still be made at once after this one.
    pub remaining: u32,
    /// Time until the bucket is full again (every request of the burst available).
    pub reset: Duration,
    /// When denied: time until one request would be allowed. Zero when allowed.
    pub retry_after: Duration,
}

/// Health of a limiter, for readiness and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterHealth {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Whether decisions are currently taken per instance because Redis is unreachable.
    pub degraded: bool,
    /// Decisions taken by the per-instance fallback since start.
    pub fallback_decisions: u64,
}

/// A rate limiter.
///
/// SECURITY: treat `Err` from [`check`](Self::check) as a refusal.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request on `key` against `quota` and says whether it may proceed. A denied request
    /// is not counted.
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, StateError>;

    /// The limiter's backend and whether it is degraded.
    fn health(&self) -> LimiterHealth;
}

/// The GCRA step on a stored TAT (µs, any epoch shared with `now`). Returns the decision and, when
/// allowed, the new TAT to store.
#[must_use]
pub fn gcra(stored_tat: u64, now: u64, quota: Quota) -> (Decision, Option<u64>) {
    let interval = quota.interval_us();
    let capacity = interval.saturating_mul(u64::from(quota.burst));
    let tat = stored_tat.max(now);
    let new_tat = tat.saturating_add(interval);
    let limit_at = now.saturating_add(capacity);
    if new_tat > limit_at {
        let decision = Decision {
            allowed: false,
            remaining: 0,
            reset: Duration::from_micros(tat - now),
            retry_after: Duration::from_micros(new_tat - limit_at),
        };
        return (decision, None);
    }
    let remaining = (limit_at - new_tat) / interval;
    let decision = Decision {
        allowed: true,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset: Duration::from_micros(new_tat - now),
        retry_after: Duration::ZERO,
    };
    (decision, Some(new_tat))
}

/// The table's keys are already SipHash values under a random key, so the map hashes them no
/// further.
#[derive(Default, Clone, Copy)]
struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed (through `write_u64`); fold anything else in, never panic.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Table = HashMap<u64, u64, std::hash::BuildHasherDefault<PreHashed>>;

/// The in-process limiter: bounded, sharded, exact for one instance.
pub struct MemoryLimiter {
    shards: Vec<Mutex<Table>>,
    per_shard: usize,
    hasher: RandomState,
    epoch: Instant,
}

impl MemoryLimiter {
    /// A limiter holding at most about `max_entries` keys (rounded up to a multiple of the shard
    /// count). Idle keys (whose bucket is full again) are dropped when a shard fills up.
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        // Offset by one second so a fresh key's TAT (0) is always in the past.
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(1_000_000)
    }

    /// The decision for `key`, synchronously (the in-process table never waits on I/O).
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when the key is new and its shard is full of live keys;
    /// [`StateError::Internal`] on a poisoned lock.
    pub fn decide(&self, key: &str, quota: Quota) -> Result<Decision, StateError> {
        let hash = self.hasher.hash_one(key);
        // The shard comes from the high bits, the map's buckets from the low ones.
        let index = usize::try_from(hash >> 58).unwrap_or(0) % SHARDS;
        let shard = self
            .shards
            .get(index)
            .ok_or_else(|| StateError::internal("limiter shard out of range"))?;
        let mut table = shard
            .lock()
            .map_err(|_| StateError::internal("limiter lock poisoned"))?;
        let now = self.now_us();
        let stored = table.get(&hash).copied();
        let (decision, new_tat) = gcra(stored.unwrap_or(0), now, quota);
        if let Some(new_tat) = new_tat {
            if stored.is_none() && table.len() >= self.per_shard {
                // Forgetting an idle key changes no decision (its bucket is full either way).
                table.retain(|_, tat| *tat > now);
                if table.len() >= self.per_shard {
                    return Err(StateError::unavailable("rate limiter table is full"));
                }
            }
            table.insert(hash, new_tat);
        }
        Ok(decision)
    }

    /// Keys held (live or idle but not yet dropped).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |t| t.len()))
            .sum()
    }

    /// Whether the table is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, StateError> {
        self.decide(key, quota)
    }

    fn health(&self) -> LimiterHealth {
        LimiterHealth {
            backend: "memory",
            degraded: false,
            fallback_decisions: 0,
        }
    }
}

/// Tracks whether a shared backend is degraded and when to probe it again. Shared by the limiter
/// and the block list of one state.
#[derive(Debug)]
pub(crate) struct Degradation {
    degraded: AtomicBool,
    retry_at_us: AtomicU64,
    fallbacks: AtomicU64,
    epoch: Instant,
}

impl Degradation {
    pub(crate) fn new() -> Self {
        Self {
            degraded: AtomicBool::new(false),
            retry_at_us: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether to try the shared backend now (not degraded, or a probe is due).
    pub(crate) fn try_shared(&self) -> bool {
        !self.degraded.load(Ordering::Relaxed)
            || self.now_us() >= self.retry_at_us.load(Ordering::Relaxed)
    }

    pub(crate) fn succeeded(&self) {
        self.degraded.store(false, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        let probe = u64::try_from(PROBE_INTERVAL.as_micros()).unwrap_or(u64::MAX);
        self.retry_at_us
            .store(self.now_us().saturating_add(probe), Ordering::Relaxed);
        self.degraded.store(true, Ordering::Relaxed);
    }

    pub(crate) fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

/// A shared limiter that falls back to a per-instance one while the shared backend cannot answer.
pub(crate) struct FallbackLimiter<S> {
    shared: S,
    local: MemoryLimiter,
    health: std::sync::Arc<Degradation>,
}

impl<S> FallbackLimiter<S> {
    pub(crate) fn new(
        shared: S,
        local: MemoryLimiter,
        health: std::sync::Arc<Degradation>,
    ) -> Self {
        Self {
            shared,
            local,
            health,
        }
    }
}

/// The shared half of a [`FallbackLimiter`].
#[async_trait]
pub(crate) trait SharedLimiter: Send + Sync {
    async fn shared_check(&self, key: &str, quota: Quota) -> Result<Decision, StateError>;
}

#[async_trait]
impl<T: SharedLimiter + ?Sized> SharedLimiter for std::sync::Arc<T> {
    async fn shared_check(&self, key: &str, quota: Quota) -> Result<Decision, StateError> {
        (**self).shared_check(key, quota).await
    }
}

#[async_trait]
impl<S: SharedLimiter> RateLimiter for FallbackLimiter<S> {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, StateError> {
        if self.health.try_shared() {
            match self.shared.shared_check(key, quota).await {
                Ok(decision) => {
                    self.health.succeeded();
                    return Ok(decision);
                }
                // SECURITY: never "no limit": decide per instance instead.
                Err(_) => self.health.failed(),
            }
        }
        self.health.fell_back();
        self.local.decide(key, quota)
    }

    fn health(&self) -> LimiterHealth {
        LimiterHealth {
            backend: "redis",
            degraded: self.health.is_degraded(),
            fallback_decisions: self.health.fallbacks(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly"
    )]

    use super::*;

    fn q(per_second: u32, burst: u32) -> Quota {
        Quota::new(per_second, burst).unwrap()
    }

    /// Runs `n` requests at the same instant from `tat`, returning the allowed count and final TAT.
    fn burst_at(mut tat: u64, now: u64, quota: Quota, n: u32) -> (u32, u64, Vec<Decision>) {
        let mut allowed = 0;
        let mut decisions = Vec::new();
        for _ in 0..n {
            let (d, next) = gcra(tat, now, quota);
            if let Some(next) = next {
                tat = next;
                allowed += 1;
            }
            decisions.push(d);
        }
        (allowed, tat, decisions)
    }

    #[test]
    fn a_fresh_key_gets_exactly_its_burst_at_once() {
        let quota = q(10, 20);
        let (allowed, _, decisions) = burst_at(0, 5_000_000, quota, 25);
        assert_eq!(allowed, 20);
        assert_eq!(decisions[0].remaining, 19);
        assert_eq!(decisions[19].remaining, 0);
        assert!(decisions[19].allowed && !decisions[20].allowed);
        // The first denial may retry after one emission interval (100 ms).
        assert_eq!(decisions[20].retry_after, Duration::from_millis(100));
        // A full drain takes burst / rate = 2 s to refill.
        assert_eq!(decisions[19].reset, Duration::from_secs(2));
        assert_eq!(decisions[20].reset, Duration::from_secs(2));
    }

    #[test]
    fn the_sustained_rate_is_one_request_per_interval() {
        let quota = q(10, 1);
        let start = 1_000_000;
        let (d1, tat) = gcra(0, start, quota);
        assert!(d1.allowed);
        let tat = tat.unwrap();
        // 99 ms later: denied, retry after 1 ms.
        let (d2, none) = gcra(tat, start + 99_000, quota);
        assert!(!d2.allowed && none.is_none());
        assert_eq!(d2.retry_after, Duration::from_millis(1));
        // 100 ms later: allowed.
        let (d3, _) = gcra(tat, start + 100_000, quota);
        assert!(d3.allowed);
    }

    #[test]
    fn over_a_long_run_no_more_than_burst_plus_rate_times_time_pass() {
        let quota = q(5, 3);
        let mut tat = 0;
        let mut allowed = 0u64;
        // A request every millisecond for 10 seconds.
        for ms in 0..10_000u64 {
            let (d, next) = gcra(tat, 1_000_000 + ms * 1_000, quota);
            if let Some(next) = next {
                tat = next;
            }
            allowed += u64::from(d.allowed);
        }
        assert!(allowed <= 3 + 5 * 10, "{allowed}");
        assert!(allowed >= 5 * 10, "{allowed}");
    }

    #[test]
    fn an_idle_key_regains_its_whole_burst() {
        let quota = q(2, 4);
        let (_, tat, _) = burst_at(0, 1_000_000, quota, 4);
        // 2 s later (burst / rate): the full burst again, same as a fresh key.
        let (allowed, _, _) = burst_at(tat, 3_000_000, quota, 10);
        assert_eq!(allowed, 4);
    }

    #[test]
    fn quotas_refuse_zero_and_compute_their_window() {
        assert!(Quota::new(0, 1).is_err());
        assert!(Quota::new(1, 0).is_err());
        assert!(Quota::new(1_000_001, 1).is_err());
        assert_eq!(q(10, 20).window_secs(), 2);
        assert_eq!(q(1, 5).window_secs(), 5);
        assert_eq!(q(100, 5).window_secs(), 1);
        assert_eq!(q(3, 1).interval_us(), 333_334);
    }

    #[test]
    fn the_memory_limiter_limits_per_key() {
        let limiter = MemoryLimiter::new(1_000);
        let quota = q(1, 3);
        let a: Vec<bool> = (0..5)
            .map(|_| limiter.decide("a", quota).unwrap().allowed)
            .collect();
        assert_eq!(a, [true, true, true, false, false]);
        assert!(limiter.decide("b", quota).unwrap().allowed);
    }

    #[test]
    fn a_full_memory_limiter_drops_idle_keys_and_refuses_only_when_all_are_live() {
        // One key per shard at most.
        let limiter = MemoryLimiter::new(1);
        let slow = q(1, 1);
        let mut refused = 0;
        for i in 0..(SHARDS * 4) {
            match limiter.decide(&format!("k{i}"), slow) {
                Ok(d) => assert!(d.allowed),
                Err(StateError::Unavailable(_)) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(refused > 0, "a full table refuses new live keys");
        assert!(limiter.len() <= SHARDS);
        // A fast quota's keys are idle again after 1 ms and make room.
        let fast = q(1_000_000, 1);
        let limiter = MemoryLimiter::new(1);
        for i in 0..(SHARDS * 4) {
            std::thread::sleep(Duration::from_micros(5));
            assert!(limiter.decide(&format!("k{i}"), fast).unwrap().allowed);
        }
        assert!(limiter.len() <= SHARDS);
    }

    struct Down;

    #[async_trait]
    impl SharedLimiter for Down {
        async fn shared_check(&self, _: &str, _: Quota) -> Result<Decision, StateError> {
            Err(StateError::unavailable("down"))
        }
    }

    #[tokio::test]
    async fn a_failing_shared_limiter_falls_back_to_limits_per_instance() {
        let limiter = FallbackLimiter::new(
            Down,
            MemoryLimiter::new(100),
            std::sync::Arc::new(Degradation::new()),
        );
        let quota = q(1, 2);
        let mut allowed = 0;
        for _ in 0..5 {
            allowed += u32::from(limiter.check("k", quota).await.unwrap().allowed);
        }
        assert_eq!(allowed, 2, "still limited, never unlimited");
        let health = limiter.health();
        assert!(health.degraded);
        assert_eq!(health.fallback_decisions, 5);
    }
}
