//! The Cedar policy document of a tenant: storage only. Parsing, validation against the schema and
//! evaluation belong to `palisade_authz::conditions`; the server refuses a text before it gets here.
//!
//! Invariants:
//! - One document per tenant (its primary key is the tenant id). Every write gets a fresh `etag`
//!   (a UUIDv7, never reused, also not after a delete and a new put) and bumps `version` (1 on first
//!   put); `(tenant_id, etag)` therefore names one text for ever, which is what caches key on.
//! - SECURITY: every method takes a [`TenantScope`] and touches only the row of `scope.tenant_id()`.
//! - A write given an expected etag (`If-Match`) that does not match the stored one (or finds no row)
//!   changes nothing and fails with `Conflict { constraint: POLICY_ETAG_MISMATCH }`; the check and the
//!   write happen under one row lock in one transaction.
//! - Every change (put, delete) appends its audit entry, with the old and the new text, in the same
//!   transaction.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_domain::TenantId;
use time::OffsetDateTime;

use crate::{AuditMeta, StoreResult};

/// The constraint name of a failed `If-Match` precondition.
pub const POLICY_ETAG_MISMATCH: &str = "tenant_policies.etag";

/// A tenant's policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The Cedar text, as written.
    pub policies: String,
    /// 1 on the first write, +1 on each replacement.
    pub version: i64,
    /// A UUIDv7, fresh on every write.
    pub etag: String,
    /// When it was last written.
    pub updated_at: OffsetDateTime,
    /// The audit actor who last wrote it (`user:<id>`, `api_key:<id>`).
    pub updated_by: String,
}

/// Tenant policy documents.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// The scope's document, if it has one.
    async fn get_policy(&self, scope: &TenantScope) -> StoreResult<Option<TenantPolicy>>;
    /// Only the etag of the scope's document: the cheap per-request freshness check.
    async fn policy_etag(&self, scope: &TenantScope) -> StoreResult<Option<String>>;
    /// Creates or replaces the scope's document. With `if_match`, the stored etag must equal it.
    async fn put_policy(
        &self,
        scope: &TenantScope,
        policies: String,
        if_match: Option<&str>,
        meta: &AuditMeta,
    ) -> StoreResult<TenantPolicy>;
    /// Deletes the scope's document: `NotFound` when there is none. With `if_match`, the stored etag
    /// must equal it.
    async fn delete_policy(
        &self,
        scope: &TenantScope,
        if_match: Option<&str>,
        meta: &AuditMeta,
    ) -> StoreResult<()>;
}
