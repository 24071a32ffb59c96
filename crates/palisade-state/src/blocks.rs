//! The block list: subjects (a client IP, a user, later an API key) refused for a while, e.g. after a
//! burst of WAF violations. Every instance sharing the backend honours a block at once; an
//! administrator lists blocks and lifts one by its id.
//!
//! Invariants:
//! - A block has an opaque id, the subject it blocks, a fixed reason, and creation and expiry
//!   instants; it disappears by itself at expiry. Blocking a subject again never shortens its block
//!   and keeps its id.
//! - The in-process backend holds at most `max_entries` live blocks and refuses more with
//!   [`StateError::Unavailable`] (callers then refuse the request that would have been blocked).
//! - With Redis, [`FallbackBlocks`] keeps a per-instance list beside the shared one: while Redis
//!   cannot answer, new blocks are kept per instance and checked there (so a burst is still stopped
//!   on the instance that saw it); per-instance blocks are always checked too, so they outlive the
//!   outage until they expire. A shared block cannot be read while Redis is down: that is the one
//!   place this list degrades to per-instance protection rather than failing closed, so a Redis
//!   outage does not refuse every request (see `limiter` for the same rule on rate limits).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StateError;
use crate::limiter::Degradation;

/// One block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Opaque id (a UUIDv7).
    pub id: String,
    /// What is blocked, e.g. `ip:203.0.113.7` or `user:<id>`.
    pub subject: String,
    /// Why, a fixed text such as `waf.burst`.
    pub reason: String,
    /// When the block started.
    pub created_at: OffsetDateTime,
    /// When it ends by itself.
    pub expires_at: OffsetDateTime,
}

/// Blocked subjects.
///
/// SECURITY: treat `Err` from [`blocked`](Self::blocked) as "blocked".
#[async_trait]
pub trait BlockList: Send + Sync {
    /// Blocks `subject` for `ttl` (at least 1 ms) and returns the block in force: an existing longer
    /// block is kept as it is; a shorter one is extended under its id.
    async fn block(&self, subject: &str, reason: &str, ttl: Duration) -> Result<Block, StateError>;

    /// How long `subject` stays blocked, or `None`.
    async fn blocked(&self, subject: &str) -> Result<Option<Duration>, StateError>;

    /// Every live block, soonest expiry first.
    async fn list(&self) -> Result<Vec<Block>, StateError>;

    /// Lifts the block `id`; `false` when no live block has that id.
    async fn unblock(&self, id: &str) -> Result<bool, StateError>;
}

/// A fresh block id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn offset(now: OffsetDateTime, ttl: Duration) -> Result<OffsetDateTime, StateError> {
    let ttl = time::Duration::try_from(ttl).map_err(|_| StateError::internal("block too long"))?;
    now.checked_add(ttl)
        .ok_or_else(|| StateError::internal("block too long"))
}

/// The in-process block list.
pub struct MemoryBlocks {
    inner: Mutex<MemInner>,
    max_entries: usize,
}

#[derive(Default)]
struct MemInner {
    by_id: HashMap<String, Block>,
    by_subject: HashMap<String, String>,
    /// The earliest expiry held: the table is scanned only once it has passed, so checking a
    /// subject (every request) costs two lookups however many blocks there are.
    next_expiry: Option<OffsetDateTime>,
}

impl MemInner {
    fn purge(&mut self, now: OffsetDateTime) {
        if self.next_expiry.is_none_or(|at| at > now) {
            return;
        }
        let expired: Vec<String> = self
            .by_id
            .values()
            .filter(|b| b.expires_at <= now)
            .map(|b| b.id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
        self.next_expiry = self.by_id.values().map(|b| b.expires_at).min();
    }

    fn note_expiry(&mut self, at: OffsetDateTime) {
        if self.next_expiry.is_none_or(|next| at < next) {
            self.next_expiry = Some(at);
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(block) => {
                if self.by_subject.get(&block.subject).is_some_and(|i| i == id) {
                    self.by_subject.remove(&block.subject);
                }
                true
            }
            None => false,
        }
    }
}

impl MemoryBlocks {
    /// An empty list holding at most `max_entries` live blocks.
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(MemInner::default()),
            max_entries,
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut MemInner, OffsetDateTime) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let now = OffsetDateTime::now_utc();
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| StateError::internal("block list lock poisoned"))?;
        inner.purge(now);
        f(&mut inner, now)
    }
}

#[async_trait]
impl BlockList for MemoryBlocks {
    async fn block(&self, subject: &str, reason: &str, ttl: Duration) -> Result<Block, StateError> {
        crate::keys::ttl_millis(ttl)?;
        let max = self.max_entries;
        self.with(|inner, now| {
            let until = offset(now, ttl)?;
            if let Some(id) = inner.by_subject.get(subject).cloned()
                && let Some(block) = inner.by_id.get_mut(&id)
            {
                if block.expires_at < until {
                    block.expires_at = until;
                }
                // The old expiry may still be the recorded minimum: that only makes a purge run
                // early and find nothing to remove.
                return Ok(block.clone());
            }
            if inner.by_id.len() >= max {
                return Err(StateError::unavailable("block list is full"));
            }
            let block = Block {
                id: new_id(),
                subject: subject.to_owned(),
                reason: reason.to_owned(),
                created_at: now,
                expires_at: until,
            };
            inner.note_expiry(until);
            inner
                .by_subject
                .insert(subject.to_owned(), block.id.clone());
            inner.by_id.insert(block.id.clone(), block.clone());
            Ok(block)
        })
    }

    async fn blocked(&self, subject: &str) -> Result<Option<Duration>, StateError> {
        self.with(|inner, now| {
            Ok(inner
                .by_subject
                .get(subject)
                .and_then(|id| inner.by_id.get(id))
                .and_then(|b| Duration::try_from(b.expires_at - now).ok()))
        })
    }

    async fn list(&self) -> Result<Vec<Block>, StateError> {
        self.with(|inner, _| {
            let mut all: Vec<Block> = inner.by_id.values().cloned().collect();
            all.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.id.cmp(&b.id)));
            Ok(all)
        })
    }

    async fn unblock(&self, id: &str) -> Result<bool, StateError> {
        self.with(|inner, _| Ok(inner.remove(id)))
    }
}

/// The shared half of [`FallbackBlocks`] (Redis).
#[async_trait]
pub(crate) trait SharedBlocks: Send + Sync {
    async fn shared_block(
        &self,
        subject: &str,
        reason: &str,
        ttl: Duration,
    ) -> Result<Block, StateError>;
    async fn shared_blocked(&self, subject: &str) -> Result<Option<Duration>, StateError>;
    async fn shared_list(&self) -> Result<Vec<Block>, StateError>;
    async fn shared_unblock(&self, id: &str) -> Result<bool, StateError>;
}

#[async_trait]
impl<T: SharedBlocks + ?Sized> SharedBlocks for Arc<T> {
    async fn shared_block(
        &self,
        subject: &str,
        reason: &str,
        ttl: Duration,
    ) -> Result<Block, StateError> {
        (**self).shared_block(subject, reason, ttl).await
    }
    async fn shared_blocked(&self, subject: &str) -> Result<Option<Duration>, StateError> {
        (**self).shared_blocked(subject).await
    }
    async fn shared_list(&self) -> Result<Vec<Block>, StateError> {
        (**self).shared_list().await
    }
    async fn shared_unblock(&self, id: &str) -> Result<bool, StateError> {
        (**self).shared_unblock(id).await
    }
}

/// A shared block list with a per-instance list for outages (see the module header).
pub(crate) struct FallbackBlocks<S> {
    shared: S,
    local: MemoryBlocks,
    health: Arc<Degradation>,
}

impl<S> FallbackBlocks<S> {
    pub(crate) fn new(shared: S, local: MemoryBlocks, health: Arc<Degradation>) -> Self {
        Self {
            shared,
            local,
            health,
        }
    }

    fn note<T>(&self, result: &Result<T, StateError>) {
        if result.is_ok() {
            self.health.succeeded();
        } else {
            self.health.failed();
        }
    }
}

#[async_trait]
impl<S: SharedBlocks> BlockList for FallbackBlocks<S> {
    async fn block(&self, subject: &str, reason: &str, ttl: Duration) -> Result<Block, StateError> {
        if self.health.try_shared() {
            let shared = self.shared.shared_block(subject, reason, ttl).await;
            self.note(&shared);
            if let Ok(block) = shared {
                return Ok(block);
            }
        }
        self.health.fell_back();
        self.local.block(subject, reason, ttl).await
    }

    async fn blocked(&self, subject: &str) -> Result<Option<Duration>, StateError> {
        if let Some(left) = self.local.blocked(subject).await? {
            return Ok(Some(left));
        }
        if self.health.try_shared() {
            let shared = self.shared.shared_blocked(subject).await;
            self.note(&shared);
            if let Ok(answer) = shared {
                return Ok(answer);
            }
        }
        // SECURITY (documented degradation): the shared list cannot be read; per-instance blocks were
        // checked above.
        self.health.fell_back();
        Ok(None)
    }

    async fn list(&self) -> Result<Vec<Block>, StateError> {
        let shared = self.shared.shared_list().await;
        self.note(&shared);
        let mut all = shared?;
        all.extend(self.local.list().await?);
        all.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    async fn unblock(&self, id: &str) -> Result<bool, StateError> {
        let local = self.local.unblock(id).await?;
        let shared = self.shared.shared_unblock(id).await;
        self.note(&shared);
        Ok(shared? || local)
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
    async fn memory_blocks_expire_extend_and_lift() {
        let blocks = MemoryBlocks::new(10);
        let first = blocks
            .block("ip:1", "waf.burst", Duration::from_millis(200))
            .await
            .unwrap();
        let again = blocks
            .block("ip:1", "waf.burst", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(first.id, again.id, "one block per subject");
        assert!(again.expires_at > first.expires_at);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(blocks.blocked("ip:1").await.unwrap().is_some(), "extended");
        assert!(blocks.blocked("ip:2").await.unwrap().is_none());
        assert!(blocks.unblock(&first.id).await.unwrap());
        assert!(!blocks.unblock(&first.id).await.unwrap());
        assert!(blocks.blocked("ip:1").await.unwrap().is_none());
        assert!(blocks.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_memory_block_list_refuses() {
        let blocks = MemoryBlocks::new(1);
        blocks
            .block("a", "r", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(matches!(
            blocks.block("b", "r", Duration::from_secs(60)).await,
            Err(StateError::Unavailable(_))
        ));
    }
}
