//! The tamper-evident audit trail: one hash chain per tenant.
//!
//! Invariants:
//! - Every committed mutation writes exactly one entry in the same transaction as the mutation: store
//!   methods that change data take an [`AuditMeta`] and append the entry themselves, so there is no
//!   code path that commits the change without its entry, and a failed append rolls the change back.
//! - `hash = SHA-256(prev_hash ‖ JCS(entry))` with a per-tenant sequence starting at 1; the first
//!   entry's `prev_hash` is [`GENESIS`]. [`chain_hash`] is the one definition both the writer and
//!   [`verify_chain`] use.
//! - Entries are append-only: the store API has no update or delete except retention pruning, which
//!   leaves a signed checkpoint (sequence and hash of the last pruned entry) so the rest still verifies.

use async_trait::async_trait;
use palisade_authz::{SystemScope, TenantScope};
use palisade_domain::TenantId;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{Page, StoreError, StoreResult};

pub mod retention;

pub use retention::{AuditCategory, RetentionPolicy, category_of};

/// The `prev_hash` of a chain's first entry: 32 zero bytes, hex.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did it and from where: supplied by the request handler, recorded verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditMeta {
    /// `user:<id>`, `api_key:<id>`, `client:<id>`, or `system:<role>` for internal work.
    pub actor: String,
    /// The client IP as the pipeline resolved it.
    pub ip: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

impl AuditMeta {
    /// Internal work with no request behind it (bootstrap, retention, key rotation).
    #[must_use]
    pub fn system(what: &str) -> Self {
        Self {
            actor: format!("system:{what}"),
            ip: None,
            request_id: None,
        }
    }
}

/// What happened: built by the store that made the change (or, for events that change no row,
/// by the caller of [`AuditStore::record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Dotted action, e.g. `tenant.create`, `user.update`, `customers.delete`, `auth.refresh_reuse`.
    pub action: String,
    /// The kind of thing changed: `tenant`, `user`, `role`, or a declared resource's name.
    pub resource: String,
    /// The changed row's id.
    pub record_id: Option<String>,
    /// The row before (the full snapshot on delete).
    pub old: Option<Value>,
    /// The row after.
    pub new: Option<Value>,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The chain's tenant.
    pub tenant_id: TenantId,
    /// Position in the tenant's chain, from 1, without gaps.
    pub seq: i64,
    /// When it was written (microsecond precision).
    pub at: OffsetDateTime,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what kind of thing.
    pub resource: String,
    /// Which one.
    pub record_id: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Before.
    pub old: Option<Value>,
    /// After.
    pub new: Option<Value>,
    /// The previous entry's hash (or the checkpoint's, or [`GENESIS`]).
    pub prev_hash: String,
    /// `SHA-256(prev_hash ‖ JCS(entry))`, hex.
    pub hash: String,
}

impl AuditEntry {
    /// The JSON object the hash covers: every field but the two hashes. Timestamps as integer
    /// microseconds, so no formatting choice can change the bytes.
    #[must_use]
    pub fn hashed_body(&self) -> Value {
        json!({
            "tenant_id": self.tenant_id.to_string(),
            "seq": self.seq,
            "at_us": micros(self.at),
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "record_id": self.record_id,
            "ip": self.ip,
            "request_id": self.request_id,
            "old": self.old,
            "new": self.new,
        })
    }
}

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// `hex(SHA-256(prev_hash ‖ JCS(entry)))`, where `prev_hash` is the previous hash's hex text.
///
/// # Errors
/// `Internal` when the entry cannot be canonicalised.
pub fn chain_hash(prev_hash: &str, entry: &AuditEntry) -> StoreResult<String> {
    let body = palisade_domain::canonical::jcs(&entry.hashed_body())
        .map_err(|_| StoreError::internal("audit entry cannot be canonicalised"))?;
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(&body);
    Ok(hex::encode(h.finalize()))
}

/// The chain head and the retention checkpoint of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence of the newest entry (0 when there is none).
    pub seq: i64,
    /// Hash of the newest entry ([`GENESIS`] when there is none).
    pub hash: String,
    /// The last pruned entry's sequence and hash, and the server's signature over them.
    pub checkpoint: Option<Checkpoint>,
}

/// Where retention cut the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence of the last pruned entry.
    pub seq: i64,
    /// Its hash: the `prev_hash` the first remaining entry must carry.
    pub hash: String,
    /// The server's signature over `tenant_id`, `seq` and `hash` (see the server's retention job).
    pub signature: String,
}

/// The outcome of recomputing a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Whether every entry and the head agree.
    pub valid: bool,
    /// How many entries were checked.
    pub entries: u64,
    /// The head hash as recomputed (the stored head when the chain is valid).
    pub head: String,
    /// The first sequence number that does not verify: an altered, missing, reordered or
    /// forged entry, or the head's sequence when entries after it were cut off.
    pub first_invalid_seq: Option<i64>,
}

/// Incrementally verifies entries in sequence order against a starting point; [`AuditStore::verify`]
/// feeds it page by page so the whole chain never sits in memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    entries: u64,
    first_invalid: Option<i64>,
}

impl ChainVerifier {
    /// Starts after the checkpoint, or at the genesis.
    #[must_use]
    pub fn new(checkpoint: Option<&Checkpoint>) -> Self {
        match checkpoint {
            Some(c) => Self {
                expected_seq: c.seq + 1,
                prev_hash: c.hash.clone(),
                entries: 0,
                first_invalid: None,
            },
            None => Self {
                expected_seq: 1,
                prev_hash: GENESIS.to_owned(),
                entries: 0,
                first_invalid: None,
            },
        }
    }

    /// Checks the next entry. After the first failure the verifier only counts.
    pub fn push(&mut self, entry: &AuditEntry) {
        self.entries += 1;
        if self.first_invalid.is_some() {
            return;
        }
        if entry.seq != self.expected_seq {
            // A deleted entry leaves a gap; a reordered one arrives early or late.
            self.first_invalid = Some(self.expected_seq.min(entry.seq));
            return;
        }
        let ok = entry.prev_hash == self.prev_hash
            && chain_hash(&self.prev_hash, entry).is_ok_and(|h| h == entry.hash);
        if !ok {
            self.first_invalid = Some(entry.seq);
            return;
        }
        self.prev_hash.clone_from(&entry.hash);
        self.expected_seq += 1;
    }

    /// Compares the end of the walk with the stored head.
    #[must_use]
    pub fn finish(self, head: &ChainHead) -> ChainReport {
        let mut first_invalid = self.first_invalid;
        if first_invalid.is_none()
            && (self.expected_seq - 1 != head.seq || self.prev_hash != head.hash)
        {
            // Entries after the last one present were removed (or the head was rewritten).
            first_invalid = Some(self.expected_seq.min(head.seq.max(1)));
        }
        ChainReport {
            valid: first_invalid.is_none(),
            entries: self.entries,
            head: if first_invalid.is_none() {
                head.hash.clone()
            } else {
                self.prev_hash
            },
            first_invalid_seq: first_invalid,
        }
    }
}

/// Verifies a whole chain held in memory (tests, small chains).
#[must_use]
pub fn verify_chain(head: &ChainHead, entries: &[AuditEntry]) -> ChainReport {
    let mut v = ChainVerifier::new(head.checkpoint.as_ref());
    for e in entries {
        v.push(e);
    }
    v.finish(head)
}

/// Filters for the audit query; every one is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action.
    pub action: Option<String>,
    /// Exact resource kind.
    pub resource: Option<String>,
    /// Exact record id.
    pub record_id: Option<String>,
    /// At or after.
    pub since: Option<OffsetDateTime>,
    /// Before.
    pub until: Option<OffsetDateTime>,
}

/// A page request over the chain: entries with `seq > after_seq`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPageRequest {
    /// 1–1000.
    pub limit: u32,
    /// Continue after this sequence number.
    pub after_seq: Option<i64>,
}

/// The audit trail. Mutating stores append through their own transactions; this trait serves the
/// events that change no row, the queries, verification and retention.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry for an event that changed no row (a security event: refresh-token reuse, a
    /// sign-in, a step-up) to the scope's tenant chain.
    async fn record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        event: AuditEvent,
    ) -> StoreResult<AuditEntry>;

    /// Like [`AuditStore::record`], for internal work on a tenant found before any principal exists
    /// (sign-in security events).
    async fn record_system(
        &self,
        system: &SystemScope,
        tenant: TenantId,
        meta: &AuditMeta,
        event: AuditEvent,
    ) -> StoreResult<AuditEntry>;

    /// Entries of the scope's tenant matching `filter`, oldest first.
    async fn list(
        &self,
        scope: &TenantScope,
        filter: &AuditFilter,
        page: &AuditPageRequest,
    ) -> StoreResult<Page<AuditEntry>>;

    /// The chain head and checkpoint of the scope's tenant.
    async fn head(&self, scope: &TenantScope) -> StoreResult<ChainHead>;

    /// Recomputes the scope's tenant chain from its checkpoint (or genesis), page by page.
    async fn verify(&self, scope: &TenantScope) -> StoreResult<ChainReport>;

    /// Deletes the longest prefix of the tenant's chain whose entries are all past their category's
    /// retention under `policy`, keeping the chain verifiable: the last pruned entry's sequence and
    /// hash become the checkpoint, signed by `sign` (which receives the canonical checkpoint text).
    /// The first entry that is not prunable stops pruning, whatever follows it. Works in batches, each
    /// in its own short transaction. Returns how many entries were pruned.
    async fn prune(
        &self,
        system: &SystemScope,
        tenant: TenantId,
        policy: &RetentionPolicy,
        sign: &(dyn for<'a> Fn(&'a str) -> String + Send + Sync),
    ) -> StoreResult<u64>;
}

/// The text a retention checkpoint signature covers.
#[must_use]
pub fn checkpoint_text(tenant: TenantId, seq: i64, hash: &str) -> String {
    format!("palisade-audit-checkpoint\n{tenant}\n{seq}\n{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, prev: &str, tenant: TenantId) -> AuditEntry {
        let mut e = AuditEntry {
            tenant_id: tenant,
            seq,
            at: OffsetDateTime::UNIX_EPOCH,
            actor: "user:1".into(),
            action: "tenant.create".into(),
            resource: "tenant".into(),
            record_id: Some(format!("r{seq}")),
            ip: None,
            request_id: None,
            old: None,
            new: Some(json!({"n": seq})),
            prev_hash: prev.to_owned(),
            hash: String::new(),
        };
        e.hash = chain_hash(prev, &e).unwrap();
        e
    }

    fn chain(n: i64) -> (ChainHead, Vec<AuditEntry>) {
        let t = TenantId::new();
        let mut prev = GENESIS.to_owned();
        let mut out = Vec::new();
        for seq in 1..=n {
            let e = entry(seq, &prev, t);
            prev.clone_from(&e.hash);
            out.push(e);
        }
        (
            ChainHead {
                seq: n,
                hash: prev,
                checkpoint: None,
            },
            out,
        )
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (head, entries) = chain(5);
        let r = verify_chain(&head, &entries);
        assert!(r.valid);
        assert_eq!(r.entries, 5);
        assert_eq!(r.first_invalid_seq, None);
        assert_eq!(r.head, head.hash);
    }

    #[test]
    fn an_altered_entry_is_named() {
        let (head, mut entries) = chain(5);
        entries[2].new = Some(json!({"n": 99}));
        assert_eq!(verify_chain(&head, &entries).first_invalid_seq, Some(3));
    }

    #[test]
    fn a_missing_entry_is_named() {
        let (head, mut entries) = chain(5);
        entries.remove(1);
        assert_eq!(verify_chain(&head, &entries).first_invalid_seq, Some(2));
    }

    #[test]
    fn reordered_entries_are_detected() {
        let (head, mut entries) = chain(5);
        entries.swap(1, 3);
        assert_eq!(verify_chain(&head, &entries).first_invalid_seq, Some(2));
        // Swapping the sequence numbers too does not help: the hashes no longer link.
        let (head, mut entries) = chain(5);
        let (a, b) = (entries[1].seq, entries[3].seq);
        entries.swap(1, 3);
        entries[1].seq = a;
        entries[3].seq = b;
        assert_eq!(verify_chain(&head, &entries).first_invalid_seq, Some(2));
    }

    #[test]
    fn a_truncated_tail_is_detected() {
        let (head, mut entries) = chain(5);
        entries.truncate(3);
        assert_eq!(verify_chain(&head, &entries).first_invalid_seq, Some(4));
    }

    #[test]
    fn a_rehashed_forgery_is_detected_by_the_head() {
        // An attacker who rewrites entry 5 and recomputes its hash still disagrees with the head.
        let (head, mut entries) = chain(5);
        entries[4].actor = "user:evil".into();
        let prev = entries[3].hash.clone();
        entries[4].hash = chain_hash(&prev, &entries[4]).unwrap();
        assert_eq!(verify_chain(&head, &entries).first_invalid_seq, Some(5));
    }

    #[test]
    fn the_chain_verifies_from_a_checkpoint() {
        let (mut head, entries) = chain(5);
        head.checkpoint = Some(Checkpoint {
            seq: 2,
            hash: entries[1].hash.clone(),
            signature: String::new(),
        });
        let r = verify_chain(&head, &entries[2..]);
        assert!(r.valid, "{r:?}");
        assert_eq!(r.entries, 3);
    }
}
