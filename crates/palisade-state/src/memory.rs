//! The in-process backend (`memory://`): the embedded default for a single instance.
//!
//! Invariants:
//! - Each purpose has its own map behind its own mutex; every operation on a key is one critical
//!   section, so [`OnceGuard::first_use`] and [`Counters::hit`] are atomic under concurrent callers.
//! - An entry is live while `now < deadline`. Expired entries are invisible at once and purged in
//!   deadline order: a few on every operation (bounded work under the lock) and all of them before a
//!   full map refuses a write. Each entry is purged once, so purging costs O(log n) per insert.
//! - SECURITY: a full map (`max_entries` live entries) refuses new keys with
//!   [`StateError::Unavailable`]; it never evicts a live entry, so a flood cannot push out a
//!   revocation or a replay record.
//! - A poisoned lock fails closed with [`StateError::Internal`].
//! - State lives as long as the process: it is not shared with other instances and a restart forgets
//!   it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::keys::{KeyDigest, digest, remaining, ttl_millis};
use crate::{Counters, OnceGuard, RevocationList, StateError, StateHealth};

/// Expired entries purged on each operation, to keep time under the lock bounded.
const SWEEP_PER_OP: usize = 64;

/// All purposes of the in-process backend.
pub(crate) struct MemoryState {
    revoked: ExpiringMap<()>,
    counts: ExpiringMap<u64>,
    once: ExpiringMap<()>,
}

impl MemoryState {
    /// An empty state whose maps hold at most `max_entries` live entries each.
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            revoked: ExpiringMap::new(max_entries),
            counts: ExpiringMap::new(max_entries),
            once: ExpiringMap::new(max_entries),
        }
    }
}

#[async_trait]
impl RevocationList for MemoryState {
    async fn revoke(&self, id: &str, until: OffsetDateTime) -> Result<(), StateError> {
        let Some(left) = remaining(until)? else {
            return Ok(());
        };
        let ttl = Duration::from_millis(ttl_millis(left)?);
        let key = digest(id);
        self.revoked.with(|map, now| {
            let deadline = deadline(now, ttl)?;
            match map.live_deadline(&key, now) {
                // Keep the later expiry: a second, shorter revocation must not shorten the first.
                Some(current) if current >= deadline => Ok(()),
                Some(_) => {
                    map.set_deadline(&key, deadline);
                    Ok(())
                }
                None => map.insert_new(key, deadline, (), now),
            }
        })
    }

    async fn is_revoked(&self, id: &str) -> Result<bool, StateError> {
        let key = digest(id);
        self.revoked
            .with(|map, now| Ok(map.live_deadline(&key, now).is_some()))
    }
}

#[async_trait]
impl Counters for MemoryState {
    async fn hit(&self, key: &str, window: Duration) -> Result<u64, StateError> {
        let window = Duration::from_millis(ttl_millis(window)?);
        let key = digest(key);
        self.counts.with(|map, now| {
            if let Some(count) = map.live_value_mut(&key, now) {
                *count = count.saturating_add(1);
                return Ok(*count);
            }
            map.insert_new(key, deadline(now, window)?, 1, now)?;
            Ok(1)
        })
    }

    async fn get(&self, key: &str) -> Result<u64, StateError> {
        let key = digest(key);
        self.counts
            .with(|map, now| Ok(map.live_value_mut(&key, now).map_or(0, |count| *count)))
    }

    async fn reset(&self, key: &str) -> Result<(), StateError> {
        let key = digest(key);
        self.counts.with(|map, _| {
            map.remove(&key);
            Ok(())
        })
    }
}

#[async_trait]
impl OnceGuard for MemoryState {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, StateError> {
        let ttl = Duration::from_millis(ttl_millis(ttl)?);
        let key = digest(key);
        self.once.with(|map, now| {
            if map.live_deadline(&key, now).is_some() {
                return Ok(false);
            }
            map.insert_new(key, deadline(now, ttl)?, (), now)?;
            Ok(true)
        })
    }
}

#[async_trait]
impl StateHealth for MemoryState {
    async fn ping(&self) -> Result<(), StateError> {
        // The maps answer as long as their locks are sound.
        self.revoked.with(|_, _| Ok(()))?;
        self.counts.with(|_, _| Ok(()))?;
        self.once.with(|_, _| Ok(()))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// `now + ttl`, failing closed instead of overflowing.
fn deadline(now: Instant, ttl: Duration) -> Result<Instant, StateError> {
    now.checked_add(ttl)
        .ok_or_else(|| StateError::internal("expiry out of range"))
}

/// A map of live entries with deadlines, behind a mutex.
struct ExpiringMap<V> {
    inner: Mutex<Entries<V>>,
}

impl<V> ExpiringMap<V> {
    fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(Entries {
                live: HashMap::new(),
                by_deadline: BTreeSet::new(),
                max_entries,
            }),
        }
    }

    /// Runs `f` in one critical section, after a bounded sweep of expired entries.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut Entries<V>, Instant) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let now = Instant::now();
        let mut entries = self
            .inner
            .lock()
            .map_err(|_| StateError::internal("in-process state lock poisoned"))?;
        entries.purge(now, SWEEP_PER_OP);
        f(&mut entries, now)
    }

    /// Entries held (live or expired but not yet purged).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map_or(0, |entries| entries.live.len())
    }
}

/// One entry: its deadline and value.
struct Entry<V> {
    deadline: Instant,
    value: V,
}

/// The map and its deadline index. Every key in `live` has exactly one `(deadline, key)` in
/// `by_deadline`, and nothing else is there.
struct Entries<V> {
    live: HashMap<KeyDigest, Entry<V>>,
    by_deadline: BTreeSet<(Instant, KeyDigest)>,
    max_entries: usize,
}

impl<V> Entries<V> {
    /// Removes up to `limit` entries whose deadline has passed, earliest first.
    fn purge(&mut self, now: Instant, limit: usize) {
        for _ in 0..limit {
            match self.by_deadline.first() {
                Some(&(deadline, key)) if deadline <= now => {
                    self.by_deadline.pop_first();
                    self.live.remove(&key);
                }
                _ => break,
            }
        }
    }

    /// The deadline of `key` if it is live.
    fn live_deadline(&self, key: &KeyDigest, now: Instant) -> Option<Instant> {
        self.live
            .get(key)
            .map(|entry| entry.deadline)
            .filter(|deadline| now < *deadline)
    }

    /// The value of `key` if it is live.
    fn live_value_mut(&mut self, key: &KeyDigest, now: Instant) -> Option<&mut V> {
        self.live
            .get_mut(key)
            .filter(|entry| now < entry.deadline)
            .map(|entry| &mut entry.value)
    }

    /// Moves `key`'s deadline (the key must be present).
    fn set_deadline(&mut self, key: &KeyDigest, deadline: Instant) {
        if let Some(entry) = self.live.get_mut(key) {
            self.by_deadline.remove(&(entry.deadline, *key));
            entry.deadline = deadline;
            self.by_deadline.insert((deadline, *key));
        }
    }

    /// Removes `key`, live or expired.
    fn remove(&mut self, key: &KeyDigest) {
        if let Some(entry) = self.live.remove(key) {
            self.by_deadline.remove(&(entry.deadline, *key));
        }
    }

    /// Inserts `key`, which the caller found absent or expired.
    ///
    /// SECURITY: when the map is full even after purging every expired entry, the write is refused
    /// (fail closed) rather than evicting a live entry.
    fn insert_new(
        &mut self,
        key: KeyDigest,
        deadline: Instant,
        value: V,
        now: Instant,
    ) -> Result<(), StateError> {
        self.remove(&key);
        if self.live.len() >= self.max_entries {
            self.purge(now, usize::MAX);
        }
        if self.live.len() >= self.max_entries {
            return Err(StateError::unavailable("in-process state is full"));
        }
        self.live.insert(key, Entry { deadline, value });
        self.by_deadline.insert((deadline, key));
        Ok(())
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

    #[tokio::test]
    async fn expired_entries_are_purged_so_memory_stays_bounded() {
        let state = MemoryState::new(1_000);
        for i in 0..200 {
            assert!(
                state
                    .first_use(&format!("k{i}"), Duration::from_millis(20))
                    .await
                    .unwrap()
            );
        }
        assert_eq!(state.once.len(), 200);
        tokio::time::sleep(Duration::from_millis(40)).await;

        // Each operation purges a bounded batch; a few operations clear the backlog.
        for _ in 0..4 {
            state.once.with(|_, _| Ok(())).unwrap();
        }

        assert_eq!(state.once.len(), 0);
    }

    #[tokio::test]
    async fn full_map_purges_expired_entries_before_refusing() {
        let state = MemoryState::new(2);
        assert!(
            state
                .first_use("a", Duration::from_millis(20))
                .await
                .unwrap()
        );
        assert!(
            state
                .first_use("b", Duration::from_millis(20))
                .await
                .unwrap()
        );
        assert!(matches!(
            state.first_use("c", Duration::from_secs(60)).await,
            Err(StateError::Unavailable(_))
        ));
        tokio::time::sleep(Duration::from_millis(40)).await;

        assert!(state.first_use("c", Duration::from_secs(60)).await.unwrap());
        assert!(state.once.len() <= 2);
    }

    #[tokio::test]
    async fn extending_a_revocation_moves_its_deadline_in_the_index() {
        let state = MemoryState::new(10);
        let soon = OffsetDateTime::now_utc() + time::Duration::milliseconds(30);
        let later = OffsetDateTime::now_utc() + time::Duration::seconds(60);
        state.revoke("jti", soon).await.unwrap();
        state.revoke("jti", later).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;

        assert!(state.is_revoked("jti").await.unwrap());
        let index_len = state
            .revoked
            .with(|map, _| Ok(map.by_deadline.len()))
            .unwrap();
        assert_eq!(index_len, 1);
    }
}
