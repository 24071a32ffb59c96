//! The Redis backend (`redis://`, `rediss://`): state shared by several instances.
//!
//! Invariants:
//! - Every call is bounded by `op_timeout` ([`tokio::time::timeout`] around the whole exchange, and
//!   the same bound as the connection's response timeout); a timeout, a refused or dropped
//!   connection, or a Redis that is loading or failing over is [`StateError::Unavailable`]. Callers
//!   fail closed on it.
//! - The [`ConnectionManager`] reconnects by itself: calls fail while Redis is down and succeed again
//!   once it is back, without restarting the server.
//! - Each operation is a single atomic Redis command or Lua script, so concurrent callers on any
//!   number of instances see one consistent outcome (exactly one `first_use` winner; a counter's
//!   window is set by the hit that created it and never extended; a revocation is never shortened).
//! - Keys are `<prefix><purpose>:<sha256 hex of the caller's key>`.
//! - The URL (which may hold a password) is never put in an error or in `Debug` output.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};
use time::OffsetDateTime;

use crate::blocks::{Block, SharedBlocks};
use crate::keys::{hex_digest, remaining, ttl_millis};
use crate::limiter::{Decision, Quota, SharedLimiter};
use crate::{Counters, OnceGuard, RevocationList, StateError, StateHealth, StateOptions};

/// Sets a revocation unless a longer one is already there. KEYS[1] the key, ARGV[1] the time to
/// live in ms. `PTTL` is -2 for a missing key and -1 for a key without expiry (kept: it is longer).
const REVOKE_SCRIPT: &str = r"
local ttl = tonumber(ARGV[1])
local current = redis.call('PTTL', KEYS[1])
if current == -2 or (current >= 0 and current < ttl) then
  redis.call('SET', KEYS[1], '1', 'PX', ttl)
end
return 1
";

/// Counts a hit in a fixed window. KEYS[1] the key, ARGV[1] the window in ms. The expiry is set by
/// the hit that creates the counter (and repaired if a counter somehow lost it), never extended.
const HIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
";

/// GCRA decision (see `limiter`). KEYS[1] the key; ARGV[1] the emission interval in µs, ARGV[2] the
/// burst. Time is Redis's own (`TIME`), so every instance shares one clock. Returns
/// `{allowed (0|1), remaining, reset µs, retry-after µs}`. The key expires when its bucket is full
/// again (an absent key and an idle one decide alike). Writing after reading `TIME` needs script
/// effects replication: the default from Redis 5, the only mode from Redis 7.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit_at = now + interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat > limit_at then
  return {0, 0, tat - now, new_tat - limit_at}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((limit_at - new_tat) / interval), new_tat - now, 0}
";

/// Blocks a subject. KEYS[1] the subject's key, KEYS[2] the index hash (id → record). ARGV: the new
/// id, the time to live in ms, the subject's digest, the reason, the subject. A longer block in force
/// is kept; a shorter one is extended under its id. Records are `expires_ms|created_ms|digest|reason|
/// subject` in Redis time. Returns `{id, record}`.
const BLOCK_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local id = ARGV[1]
local created = now
local existing = redis.call('GET', KEYS[1])
if existing then
  local rec = redis.call('HGET', KEYS[2], existing)
  if rec then
    if redis.call('PTTL', KEYS[1]) >= ttl then return {existing, rec} end
    id = existing
    created = tonumber(string.match(rec, '^%d+|(%d+)|')) or now
  end
end
local rec = string.format('%d|%d|%s|%s|%s', now + ttl, created, ARGV[3], ARGV[4], ARGV[5])
redis.call('SET', KEYS[1], id, 'PX', ttl)
redis.call('HSET', KEYS[2], id, rec)
return {id, rec}
";

/// Lifts a block. KEYS[1] the index hash; ARGV[1] the id, ARGV[2] the subject-key prefix. Deletes the
/// subject's key only while it still names this block. Returns 1 when a live block was lifted. (The
/// subject key is derived inside the script, so this script assumes a single Redis, not a cluster.)
const UNBLOCK_SCRIPT: &str = r"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local expires, digest = string.match(rec, '^(%d+)|%d+|(%x+)|')
if not digest then return 0 end
local key = ARGV[2] .. digest
if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(expires) <= now then return 0 end
return 1
";

/// Reconnection attempts per connection future; each failed call starts a new one, so a small number
/// keeps recovery prompt without piling up retries while Redis is down.
const RECONNECT_RETRIES: usize = 2;

/// The Redis backend.
pub(crate) struct RedisState {
    conn: ConnectionManager,
    op_timeout: Duration,
    revoked_prefix: String,
    count_prefix: String,
    once_prefix: String,
    revoke_script: Script,
    hit_script: Script,
    limit_prefix: String,
    block_prefix: String,
    blocks_index: String,
    gcra_script: Script,
    block_script: Script,
    unblock_script: Script,
}

impl RedisState {
    /// Connects to the Redis at `url` and pings it.
    pub(crate) async fn connect(url: &str, opts: &StateOptions) -> Result<Self, StateError> {
        if opts.op_timeout.is_zero() || opts.connect_timeout.is_zero() {
            return Err(StateError::Config("state timeouts must be positive"));
        }
        if url
            .get(.."rediss://".len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
        {
            install_tls_provider();
        }
        // SECURITY: the parse error may quote the URL, so it is replaced by a fixed text.
        let client =
            redis::Client::open(url).map_err(|_| StateError::Config("malformed redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.op_timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            opts.connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StateError::unavailable("timed out connecting to redis"))?
        .map_err(classify)?;

        let state = Self {
            conn,
            op_timeout: opts.op_timeout,
            revoked_prefix: format!("{}revoked:", opts.key_prefix),
            count_prefix: format!("{}count:", opts.key_prefix),
            once_prefix: format!("{}once:", opts.key_prefix),
            revoke_script: Script::new(REVOKE_SCRIPT),
            hit_script: Script::new(HIT_SCRIPT),
            limit_prefix: format!("{}rl:", opts.key_prefix),
            block_prefix: format!("{}block:", opts.key_prefix),
            blocks_index: format!("{}blocks", opts.key_prefix),
            gcra_script: Script::new(GCRA_SCRIPT),
            block_script: Script::new(BLOCK_SCRIPT),
            unblock_script: Script::new(UNBLOCK_SCRIPT),
        };
        state.ping().await?;
        Ok(state)
    }

    /// Runs one exchange with Redis within the operation timeout.
    async fn run<T>(&self, op: impl Future<Output = RedisResult<T>>) -> Result<T, StateError> {
        match tokio::time::timeout(self.op_timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(err)),
            Err(_) => Err(StateError::unavailable("redis operation timed out")),
        }
    }
}

#[async_trait]
impl RevocationList for RedisState {
    async fn revoke(&self, id: &str, until: OffsetDateTime) -> Result<(), StateError> {
        let Some(left) = remaining(until)? else {
            return Ok(());
        };
        let ttl = ttl_millis(left)?;
        let key = format!("{}{}", self.revoked_prefix, hex_digest(id));
        let mut conn = self.conn.clone();
        let script = &self.revoke_script;
        self.run(async move {
            let mut invocation = script.key(key);
            invocation.arg(ttl);
            invocation.invoke_async::<()>(&mut conn).await
        })
        .await
    }

    async fn is_revoked(&self, id: &str) -> Result<bool, StateError> {
        let key = format!("{}{}", self.revoked_prefix, hex_digest(id));
        let mut conn = self.conn.clone();
        let found = self
            .run(async move {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query_async::<u64>(&mut conn)
                    .await
            })
            .await?;
        Ok(found > 0)
    }
}

#[async_trait]
impl Counters for RedisState {
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, StateError> {
        let window = ttl_millis(window)?;
        let key = format!("{}{}", self.count_prefix, hex_digest(key));
        let mut conn = self.conn.clone();
        let script = &self.hit_script;
        self.run(async move {
            let mut invocation = script.key(key);
            invocation.arg(window);
            invocation.invoke_async::<u64>(&mut conn).await
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<u64, StateError> {
        let key = format!("{}{}", self.count_prefix, hex_digest(key));
        let mut conn = self.conn.clone();
        let count = self
            .run(async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<u64>>(&mut conn)
                    .await
            })
            .await?;
        Ok(count.unwrap_or(0))
    }

    async fn reset(&self, key: &str) -> Result<(), StateError> {
        let key = format!("{}{}", self.count_prefix, hex_digest(key));
        let mut conn = self.conn.clone();
        self.run(async move { redis::cmd("DEL").arg(key).exec_async(&mut conn).await })
            .await
    }
}

#[async_trait]
impl OnceGuard for RedisState {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, StateError> {
        let ttl = ttl_millis(ttl)?;
        let key = format!("{}{}", self.once_prefix, hex_digest(key));
        let mut conn = self.conn.clone();
        // `SET NX` is atomic in Redis: of any number of concurrent callers, one gets `OK`, the rest nil.
        let set = self
            .run(async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }
}

#[async_trait]
impl StateHealth for RedisState {
    async fn ping(&self) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let reply = self
            .run(async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(StateError::internal("unexpected reply to PING"))
        }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

#[async_trait]
impl SharedLimiter for RedisState {
    async fn shared_check(&self, key: &str, quota: Quota) -> Result<Decision, StateError> {
        let key = format!("{}{}", self.limit_prefix, hex_digest(key));
        let mut conn = self.conn.clone();
        let script = &self.gcra_script;
        // `Script::invoke_async` sends EVALSHA and, when Redis answers NOSCRIPT, EVAL.
        let reply: (i64, i64, i64, i64) = self
            .run(async move {
                let mut invocation = script.key(key);
                invocation.arg(quota.interval_us()).arg(quota.burst());
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: reply.0 == 1,
            remaining: u32::try_from(reply.1).unwrap_or(0),
            reset: micros(reply.2),
            retry_after: micros(reply.3),
        })
    }
}

/// Parses a block record (`expires_ms|created_ms|digest|reason|subject`).
fn parse_block(id: String, record: &str) -> Option<Block> {
    let mut parts = record.splitn(5, '|');
    let expires: i64 = parts.next()?.parse().ok()?;
    let created: i64 = parts.next()?.parse().ok()?;
    let _digest = parts.next()?;
    let reason = parts.next()?.to_owned();
    let subject = parts.next()?.to_owned();
    let at = |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok();
    Some(Block {
        id,
        subject,
        reason,
        created_at: at(created)?,
        expires_at: at(expires)?,
    })
}

#[async_trait]
impl SharedBlocks for RedisState {
    async fn shared_block(
        &self,
        subject: &str,
        reason: &str,
        ttl: Duration,
    ) -> Result<Block, StateError> {
        let ttl = ttl_millis(ttl)?;
        let digest = hex_digest(subject);
        let key = format!("{}{digest}", self.block_prefix);
        let mut conn = self.conn.clone();
        let script = &self.block_script;
        let index = self.blocks_index.clone();
        let (id, record): (String, String) = self
            .run(async move {
                let mut invocation = script.key(key);
                invocation
                    .key(index)
                    .arg(crate::blocks::new_id())
                    .arg(ttl)
                    .arg(digest)
                    .arg(reason)
                    .arg(subject);
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        parse_block(id, &record).ok_or_else(|| StateError::internal("malformed block record"))
    }

    async fn shared_blocked(&self, subject: &str) -> Result<Option<Duration>, StateError> {
        let key = format!("{}{}", self.block_prefix, hex_digest(subject));
        let mut conn = self.conn.clone();
        let left = self
            .run(async move {
                redis::cmd("PTTL")
                    .arg(key)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        Ok(match left {
            // -2: no block. -1 (no expiry) cannot be written by this crate; treat it as blocked.
            -2 => None,
            -1 => Some(Duration::from_secs(60)),
            ms => Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        })
    }

    async fn shared_list(&self) -> Result<Vec<Block>, StateError> {
        let index = self.blocks_index.clone();
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = self
            .run(async move {
                redis::cmd("HGETALL")
                    .arg(index)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let now = OffsetDateTime::now_utc();
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (id, record) in all {
            match parse_block(id.clone(), &record) {
                Some(block) if block.expires_at > now => live.push(block),
                _ => stale.push(id),
            }
        }
        if !stale.is_empty() {
            // Best effort tidy-up of expired records; a failure here changes no answer.
            let index = self.blocks_index.clone();
            let mut conn = self.conn.clone();
            let _ = self
                .run(async move {
                    redis::cmd("HDEL")
                        .arg(index)
                        .arg(stale)
                        .exec_async(&mut conn)
                        .await
                })
                .await;
        }
        live.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.id.cmp(&b.id)));
        Ok(live)
    }

    async fn shared_unblock(&self, id: &str) -> Result<bool, StateError> {
        if id.len() > 64 {
            return Ok(false);
        }
        let index = self.blocks_index.clone();
        let prefix = self.block_prefix.clone();
        let mut conn = self.conn.clone();
        let script = &self.unblock_script;
        let lifted: i64 = self
            .run(async move {
                let mut invocation = script.key(index);
                invocation.arg(id).arg(prefix);
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(lifted == 1)
    }
}

/// Sorts a Redis error into "could not reach a healthy Redis" and everything else.
fn classify(err: RedisError) -> StateError {
    let transient = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if transient {
        StateError::Unavailable(Box::new(err))
    } else {
        StateError::Internal(Box::new(err))
    }
}

/// Makes aws-lc-rs rustls's process-wide provider unless one is already set, so `rediss://` never
/// depends on which rustls provider features the final binary happens to enable.
fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one first, which is just as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}
