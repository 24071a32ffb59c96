//! `last_used_at` of API keys, batched: a use is recorded in memory (key id → latest instant) on the
//! request path, and written to the database by [`KeyUsage::flush`], every
//! `api_keys.last_used_flush_secs` (default 30) from a background task and once more at graceful
//! shutdown.
//!
//! Invariants:
//! - No database write on the request path: recording is one short critical section on a map.
//! - One statement per flush (per 500 keys): the store's `record_api_key_uses`, which only ever moves
//!   `last_used_at` forward, so several instances flushing in any order agree.
//! - A flush that fails puts its entries back (keeping the later instant per key) for the next one:
//!   a database outage delays `last_used_at`, it does not lose it. The map holds one entry per key
//!   that authenticated since the last flush, so its size is bounded by the number of live keys.
//! - `last_used_at` is usage metadata, like a session's last-seen time: it is not an audited change
//!   (an entry per key per flush would drown the trail), and the flush runs under
//!   `InternalRole::KeyUsage`.

use std::collections::HashMap;
use std::sync::Mutex;

use palisade_authz::{InternalRole, SystemScope};
use palisade_store::{StoreResult, Stores};
use time::OffsetDateTime;

/// Uses of API keys not yet written.
#[derive(Debug, Default)]
pub struct KeyUsage {
    pending: Mutex<HashMap<String, OffsetDateTime>>,
}

impl KeyUsage {
    /// Records that key `id` authenticated a request at `at`.
    pub fn record(&self, id: &str, at: OffsetDateTime) {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match pending.get_mut(id) {
            Some(t) if *t >= at => {}
            Some(t) => *t = at,
            None => {
                pending.insert(id.to_owned(), at);
            }
        }
    }

    /// How many keys have uses waiting.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn take(&self) -> Vec<(String, OffsetDateTime)> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut uses: Vec<_> = pending.drain().collect();
        uses.sort();
        uses
    }

    /// Writes every recorded use in one batch. Returns the keys updated.
    ///
    /// # Errors
    /// The store's error; the uses are kept for the next flush.
    pub async fn flush(&self, stores: &Stores) -> StoreResult<u64> {
        let uses = self.take();
        if uses.is_empty() {
            return Ok(0);
        }
        let system = SystemScope::internal(InternalRole::KeyUsage);
        match stores.api_keys.record_api_key_uses(&system, &uses).await {
            Ok(n) => Ok(n),
            Err(e) => {
                for (id, at) in uses {
                    self.record(&id, at);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_use_per_key_is_kept() {
        let usage = KeyUsage::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t1 = t0 + time::Duration::seconds(5);
        usage.record("a", t1);
        usage.record("a", t0);
        usage.record("b", t0);
        assert_eq!(usage.pending(), 2);
        assert_eq!(
            usage.take(),
            vec![("a".to_owned(), t1), ("b".to_owned(), t0)]
        );
        assert_eq!(usage.pending(), 0);
    }
}
