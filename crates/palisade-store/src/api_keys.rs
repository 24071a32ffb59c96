//! API keys of a tenant: storage only. Key generation, the checksum, hashing and every decision at
//! authentication (expiry, grace, allowed IPs, capabilities against the creator's) belong to the server.
//!
//! Invariants:
//! - SECURITY: the key itself never reaches a store: only its public `prefix` (the lookup handle) and a
//!   keyed hash of the whole key. Neither the hash nor anything secret appears in `Debug` output, errors
//!   or audit entries.
//! - SECURITY: every method takes a [`TenantScope`] and touches only the rows of `scope.tenant_id()`,
//!   except [`ApiKeyStore::find_api_key_by_prefix`], the authentication lookup (like the lookup of the
//!   caller's own user): it runs before any principal exists, keyed by the presented key's prefix, and
//!   the caller must verify the hash before trusting the row.
//! - A prefix is unique across the deployment: a second create is `Conflict { constraint:
//!   "api_keys.prefix" }`.
//! - Every change (create, rotate, revoke) appends its audit entry in the same transaction.

use async_trait::async_trait;
use palisade_authz::{SystemScope, TenantScope};
use palisade_domain::{TenantId, UserId};
use time::OffsetDateTime;

use crate::{AuditMeta, Page, PageRequest, StoreResult};

/// A key's own rate limit (GCRA), validated and bounded by the server before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests admitted at once.
    pub burst: u32,
}

/// An API key row (metadata and the keyed hash; never the key).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// UUIDv7 text.
    pub id: String,
    /// The tenant that owns it (the key's home tenant).
    pub tenant_id: TenantId,
    /// The user who created it; the key never holds more than this user currently does.
    pub created_by: UserId,
    /// A label.
    pub name: String,
    /// The public lookup handle inside the key, unique across the deployment.
    pub prefix: String,
    /// Hex keyed hash (HMAC) of the whole key.
    pub secret_hash: String,
    /// Capability names, sorted and de-duplicated.
    pub capabilities: Vec<String>,
    /// CIDRs the key may be used from; empty means anywhere.
    pub allowed_ips: Vec<String>,
    /// When the key stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last authenticated use, when recorded.
    pub last_used_at: Option<OffsetDateTime>,
    /// When the key was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<String>,
    /// Set on a rotated-away key: it works until then.
    pub grace_until: Option<OffsetDateTime>,
    /// The key's own rate limit; `None`: the tenant's or the default quota.
    pub rate_limit: Option<KeyRateLimit>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// Whether the key may authenticate at `now`: not revoked, not expired, not past its grace.
    #[must_use]
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none()
            && self.expires_at.is_none_or(|t| now < t)
            && self.grace_until.is_none_or(|t| now < t)
    }
}

/// An API key to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// The creating user.
    pub created_by: UserId,
    /// A label.
    pub name: String,
    /// The public lookup handle.
    pub prefix: String,
    /// Hex keyed hash of the whole key.
    pub secret_hash: String,
    /// Capability names.
    pub capabilities: Vec<String>,
    /// CIDRs.
    pub allowed_ips: Vec<String>,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// The key's own rate limit.
    pub rate_limit: Option<KeyRateLimit>,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// API keys of a tenant.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a key in the scope's tenant. `Conflict` (`api_keys.prefix`) when the prefix is taken.
    async fn create_api_key(
        &self,
        scope: &TenantScope,
        new: NewApiKey,
        meta: &AuditMeta,
    ) -> StoreResult<ApiKey>;
    /// A key of the scope's tenant.
    async fn get_api_key(&self, scope: &TenantScope, id: &str) -> StoreResult<Option<ApiKey>>;
    /// Keys of the scope's tenant, ordered by id (keyset: `after` is an id).
    async fn list_api_keys(
        &self,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>>;
    /// Revokes a key at once; `NotFound` when it is not in the scope's tenant. Revoking a revoked key
    /// changes nothing.
    async fn revoke_api_key(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &AuditMeta,
    ) -> StoreResult<()>;
    /// Replaces key `id` by `new` (which names `id` in `rotated_from`): the old key keeps working until
    /// `grace_until` (or its own earlier end). `NotFound` when the old key is not in the scope's tenant
    /// or is no longer live.
    async fn rotate_api_key(
        &self,
        scope: &TenantScope,
        id: &str,
        new: NewApiKey,
        grace_until: OffsetDateTime,
        meta: &AuditMeta,
    ) -> StoreResult<ApiKey>;
    /// SECURITY: the authentication lookup, unscoped by design (no principal exists yet): the key whose
    /// prefix the presented key carries. The caller verifies the keyed hash before trusting the row.
    async fn find_api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<ApiKey>>;
    /// Records when keys were last used (batched by the server, across tenants, hence the
    /// [`SystemScope`]): one statement per call, each `last_used_at` only ever moving forward (several
    /// instances may flush out of order). Unknown ids are ignored. Usage metadata, not an audited
    /// change. Returns the rows updated.
    async fn record_api_key_uses(
        &self,
        system: &SystemScope,
        uses: &[(String, OffsetDateTime)],
    ) -> StoreResult<u64>;
}
