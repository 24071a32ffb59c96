//! Ephemeral shared state behind traits: the revocation list, fixed-window counters, one-time
//! (replay) guards, the GCRA rate limiter ([`limiter`]) and the block list, with an in-process backend (`memory://`, the embedded default) and a Redis
//! backend (`redis://` / `rediss://`, for several instances). The binary picks one with [`connect`]
//! once at start; nothing here knows about HTTP.
//!
//! Invariants:
//! - SECURITY (fail closed, DESIGN invariant 7): every method returns `Err` when it could not get a
//!   trustworthy answer — [`StateError::Unavailable`] when the backend is down, slow (every Redis call
//!   is bounded by [`StateOptions::op_timeout`]) or full. Callers **deny** on any `Err`: a failed
//!   [`RevocationList::is_revoked`] rejects the token, a failed [`OnceGuard::first_use`] rejects the
//!   proof as a possible replay, a failed [`Counters::hit`] refuses the attempt. No method answers
//!   `Ok(false)` / `Ok(0)` for a question it could not ask.
//! - The in-process backend never evicts a live entry to make room: when a map is full it refuses the
//!   write with [`StateError::Unavailable`]. Expired entries are purged, so memory stays bounded by
//!   [`StateOptions::memory_max_entries`] per map.
//! - Keys are namespaced by purpose (`revoked:`, `count:`, `once:`) after [`StateOptions::key_prefix`],
//!   and the caller's part of a key is stored only as its SHA-256 digest: keys of any length cost the
//!   same, and Redis holds no raw token ids or destinations (the digest is unkeyed, so it hides nothing
//!   from someone who can guess a low-entropy input).
//! - Errors never carry the connection URL (it may hold a password).
//! - The backend is chosen at start; no method branches on it.
//!
//! Deployment notes for Redis: run it with `maxmemory-policy noeviction` (any evicting policy could
//! drop a revocation, which fails open; `noeviction` turns a full Redis into write errors, which fail
//! closed). Entries are ephemeral: a Redis without persistence, like the in-process backend, forgets
//! revocations on restart, so revocations that must outlive a restart (refresh families) need a
//! durable record too; this list is the fast path checked on every request.

mod blocks;
mod error;
mod keys;
pub mod limiter;
mod memory;
mod redis_backend;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use blocks::{Block, BlockList, MemoryBlocks};
pub use error::StateError;
pub use limiter::{Decision, LimiterHealth, MemoryLimiter, Quota, RateLimiter};

/// Ids whose tokens are revoked until a given instant: access-token `jti`s and refresh-token family
/// ids.
///
/// SECURITY: treat `Err` from [`is_revoked`](Self::is_revoked) as "revoked".
#[async_trait]
pub trait RevocationList: Send + Sync {
    /// Revokes `id` until `until`, after which the entry disappears by itself. Pass the token's (or
    /// family's) expiry: after it, the token is refused anyway. An `until` in the past writes nothing.
    /// Revoking an id that is already revoked keeps the later of the two expiries.
    async fn revoke(&self, id: &str, until: OffsetDateTime) -> Result<(), StateError>;

    /// Whether `id` is revoked now. Never `Ok(false)` when the backend could not be asked.
    async fn is_revoked(&self, id: &str) -> Result<bool, StateError>;
}

/// Fixed-window counters: OTP attempts per destination or IP, daily send caps.
///
/// SECURITY: treat `Err` from [`hit`](Self::hit) as "over the limit".
#[async_trait]
pub trait Counters: Send + Sync {
    /// Counts one hit on `key` and returns the new count. The first hit opens a window of length
    /// `window`; later hits do not extend it, and when it ends the count starts again from zero.
    /// A zero `window` is refused with [`StateError::Internal`].
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, StateError>;

    /// The current count of `key` (0 when it has no open window).
    async fn get(&self, key: &str) -> Result<u64, StateError>;

    /// Forgets `key`'s count and window.
    async fn reset(&self, key: &str) -> Result<(), StateError>;
}

/// One-time use of a key within a time to live: TOTP time-step replay, DPoP and client-assertion
/// `jti` replay.
///
/// SECURITY: treat `Err` from [`first_use`](Self::first_use) as "already used".
#[async_trait]
pub trait OnceGuard: Send + Sync {
    /// `Ok(true)` exactly once per `key` within `ttl`, even under concurrent callers on several
    /// instances; `Ok(false)` for every other call until the first use's `ttl` has passed. A zero
    /// `ttl` is refused with [`StateError::Internal`].
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, StateError>;
}

/// Health of the backend, for readiness probes and the Trust Center.
#[async_trait]
pub trait StateHealth: Send + Sync {
    /// `Ok` when the backend answers within [`StateOptions::op_timeout`].
    async fn ping(&self) -> Result<(), StateError>;

    /// The backend's name: `memory` or `redis`.
    fn backend(&self) -> &'static str;
}

/// The shared state a server holds, one handle per purpose, all on the same backend.
#[derive(Clone)]
pub struct State {
    /// Revoked token ids and refresh families.
    pub revocations: Arc<dyn RevocationList>,
    /// Fixed-window counters.
    pub counters: Arc<dyn Counters>,
    /// One-time-use guards against replay.
    pub once: Arc<dyn OnceGuard>,
    /// Backend health.
    pub health: Arc<dyn StateHealth>,
    /// GCRA rate limiting (with Redis: falls back to per-instance limits while Redis is down).
    pub limiter: Arc<dyn RateLimiter>,
    /// Blocked subjects (with Redis: a per-instance list covers outages).
    pub blocks: Arc<dyn BlockList>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("backend", &self.health.backend())
            .finish_non_exhaustive()
    }
}

/// Options for [`connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateOptions {
    /// Prepended to every key, so several deployments (or tests) can share one Redis. Default
    /// `palisade:`.
    pub key_prefix: String,
    /// Upper bound on every backend call; past it the call fails with [`StateError::Unavailable`].
    /// Default 250 ms.
    pub op_timeout: Duration,
    /// Upper bound on establishing the Redis connection in [`connect`] (also each reconnection
    /// attempt). Default 2 s.
    pub connect_timeout: Duration,
    /// In-process backend only: the most entries each map (revocations, counters, once keys) holds;
    /// a write that would exceed it fails with [`StateError::Unavailable`]. Default 1,000,000.
    pub memory_max_entries: usize,
}

impl Default for StateOptions {
    fn default() -> Self {
        Self {
            key_prefix: "palisade:".to_owned(),
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(2),
            memory_max_entries: 1_000_000,
        }
    }
}

/// Builds the shared state named by `url`: `memory://` for the in-process backend, `redis://` or
/// `rediss://` (TLS) for Redis.
///
/// # Errors
/// [`StateError::Config`] for an unsupported scheme or a malformed URL (never echoing the URL);
/// [`StateError::Unavailable`] when Redis cannot be reached and pinged within the timeouts. Whether
/// the server then refuses to start is its decision.
pub async fn connect(url: &str, opts: &StateOptions) -> Result<State, StateError> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("memory") => {
            if url.len() != "memory://".len() {
                return Err(StateError::Config(
                    "memory:// takes no host, path or options",
                ));
            }
            Ok(bundle(
                Arc::new(memory::MemoryState::new(opts.memory_max_entries)),
                Arc::new(MemoryLimiter::new(opts.memory_max_entries)),
                Arc::new(MemoryBlocks::new(opts.memory_max_entries)),
            ))
        }
        Some("redis" | "rediss") => {
            let redis = Arc::new(redis_backend::RedisState::connect(url, opts).await?);
            // One degradation flag for both: they fail over together when Redis is unreachable.
            let health = Arc::new(limiter::Degradation::new());
            let limiter = Arc::new(limiter::FallbackLimiter::new(
                redis.clone(),
                MemoryLimiter::new(opts.memory_max_entries),
                health.clone(),
            ));
            let blocks = Arc::new(blocks::FallbackBlocks::new(
                redis.clone(),
                MemoryBlocks::new(opts.memory_max_entries),
                health,
            ));
            Ok(bundle(redis, limiter, blocks))
        }
        _ => Err(StateError::Config(
            "unsupported state URL scheme (expected memory://, redis:// or rediss://)",
        )),
    }
}

/// One backend object serving every purpose, with the limiter and block list built over it.
fn bundle<B>(backend: Arc<B>, limiter: Arc<dyn RateLimiter>, blocks: Arc<dyn BlockList>) -> State
where
    B: RevocationList + Counters + OnceGuard + StateHealth + 'static,
{
    State {
        revocations: backend.clone(),
        counters: backend.clone(),
        once: backend.clone(),
        health: backend,
        limiter,
        blocks,
    }
}
