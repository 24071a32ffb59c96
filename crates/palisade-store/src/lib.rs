//! Store traits per aggregate, the error they share, and (feature `conformance`) the suite every
//! backend must pass.
//!
//! Invariants:
//! - Every method over tenant-owned rows takes a [`TenantScope`] and filters by it; the only
//!   unscoped reads are the ones authorization itself needs to build a scope ([`TenantStore::resolve_tenant`],
//!   [`TenantStore::resolve_tenant_by_slug`]), the authentication lookup of the caller's own user, and
//!   the authentication lookup of a presented API key by its prefix ([`ApiKeyStore::find_api_key_by_prefix`]).
//!   Sign-in storage ([`identity`]) adds the documented exceptions that run before any principal
//!   exists: OTP challenges, and refresh-token operations keyed by the presented token. Browser
//!   sessions ([`sessions`]) are looked up by the presented cookie's hash the same way.
//! - Secrets reach a store only hashed or sealed, and never appear in `Debug` output or errors.
//! - Unique and foreign-key violations surface as [`StoreError::Conflict`] on every backend.
//! - No SQL lives here.

use async_trait::async_trait;
use palisade_authz::{SystemScope, TenantRef, TenantScope};
use palisade_domain::{Slug, TenantId, TenantKind, UserId, UserStatus};
use time::OffsetDateTime;

pub mod api_keys;
pub mod audit;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod identity;
pub mod policies;
pub mod records;
pub mod roles;
pub mod sessions;

pub use api_keys::{ApiKey, ApiKeyStore, KeyRateLimit, NewApiKey};
pub use audit::{
    AuditCategory, AuditEntry, AuditEvent, AuditFilter, AuditMeta, AuditPageRequest, AuditStore,
    ChainReport, RetentionPolicy, category_of,
};
pub use identity::{
    MfaState, MfaStore, NewOtpChallenge, NewRefreshFamily, NewRefreshToken, NewSigningKey,
    OtpChallenge, OtpChannel, OtpStore, RefreshSession, RefreshStore, RotateOutcome, SigningKey,
    SigningKeyStatus, SigningKeyStore,
};
pub use policies::{POLICY_ETAG_MISMATCH, PolicyStore, TenantPolicy};
pub use records::{
    FilterOp, IndexedValue, NewRecord, RECORD_VERSION, Record, RecordFilter, RecordKeys,
    RecordQuery, RecordStore, Reservation, StoredResponse,
};
pub use roles::{CustomRole, NewRole, ROLE_IN_USE, RolePatch, RoleStore};
pub use sessions::{BrowserSession, NewBrowserSession, SessionStore};

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or is outside the scope, which is the same thing to the caller).
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint refused the write. `constraint` names it (e.g.
    /// `tenants.slug`), never the offending value.
    #[error("conflict on {constraint}")]
    Conflict {
        /// The constraint's name.
        constraint: String,
    },
    /// The database could not be reached or timed out.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a bug or corrupt data. Logged with its source chain, never shown.
    #[error("store internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// An internal error from a message (for data that fails to decode).
    #[must_use]
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into().into())
    }
}

/// A result from a store.
pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a keyset-paginated list, ordered by id (UUIDv7, so by creation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, at most the requested limit.
    pub items: Vec<T>,
    /// The id of the last item when more items follow; the caller signs it into a cursor.
    pub next_after: Option<String>,
}

/// A page request: at most `limit` items with ids greater than `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// 1–200.
    pub limit: u32,
    /// The id after which to continue, from a verified cursor.
    pub after: Option<String>,
}

/// A tenant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Unique slug.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// Place in the hierarchy.
    pub kind: TenantKind,
    /// Parent tenant; `None` only for the system tenant.
    pub parent_id: Option<TenantId>,
    /// Materialised path `/root/.../self/`.
    pub path: String,
    /// Whether any tenant has this one as parent.
    pub has_children: bool,
    /// Canonical CIDRs every request acting on this tenant must come from; empty: anywhere.
    pub allowed_ips: Vec<String>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

impl Tenant {
    /// The tenant as authorization sees it.
    #[must_use]
    pub fn to_ref(&self) -> TenantRef {
        TenantRef {
            id: self.id,
            kind: self.kind,
            path: self.path.clone(),
            has_children: self.has_children,
        }
    }
}

/// A tenant to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenant {
    /// Unique slug.
    pub slug: Slug,
    /// Display name (1–200 characters, validated by the caller).
    pub name: String,
    /// Partner or ordinary tenant (never `System` through the child path).
    pub kind: TenantKind,
    /// Canonical CIDRs (validated by the caller); empty: anywhere.
    pub allowed_ips: Vec<String>,
}

/// A change to a tenant: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPatch {
    /// New display name (validated by the caller).
    pub name: Option<String>,
    /// New IP allowlist, canonical CIDRs (validated by the caller); empty: anywhere.
    pub allowed_ips: Option<Vec<String>>,
}

/// Tenants. Tenants are the unit of scope, so two reads are unscoped: authorization needs them to decide.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Authorization only: the tenant with this id, wherever it is.
    async fn resolve_tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>>;
    /// Authorization and sign-in only: the tenant with this slug.
    async fn resolve_tenant_by_slug(&self, slug: &Slug) -> StoreResult<Option<Tenant>>;
    /// Creates the system tenant (the root). Fails with `Conflict` when the slug exists.
    async fn create_system_tenant(
        &self,
        system: &SystemScope,
        slug: Slug,
        name: String,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant>;
    /// Creates a child of the scope's tenant.
    async fn create_child_tenant(
        &self,
        scope: &TenantScope,
        new: NewTenant,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant>;
    /// The scope's tenant or one of its descendants; `None` outside the subtree.
    async fn get_tenant(&self, scope: &TenantScope, id: TenantId) -> StoreResult<Option<Tenant>>;
    /// The scope's tenant and its descendants, ordered by id.
    async fn list_tenants(
        &self,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> StoreResult<Page<Tenant>>;
    /// Changes a tenant within the subtree (name, IP allowlist) and appends one audit entry
    /// (`tenant.update`, old and new) in the same transaction. `NotFound` outside the subtree.
    async fn update_tenant(
        &self,
        scope: &TenantScope,
        id: TenantId,
        patch: TenantPatch,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant>;
    /// Renames a tenant within the subtree. `NotFound` outside it.
    async fn rename_tenant(
        &self,
        scope: &TenantScope,
        id: TenantId,
        name: String,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant> {
        let patch = TenantPatch {
            name: Some(name),
            allowed_ips: None,
        };
        self.update_tenant(scope, id, patch, meta).await
    }
}

/// A user row. A user belongs to one home tenant and holds roles there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Home tenant.
    pub tenant_id: TenantId,
    /// Lowercased e-mail, unique within the tenant.
    pub email: String,
    /// E.164 phone number, unique within the tenant (it can sign the user in).
    pub phone: Option<String>,
    /// Whether the user may act.
    pub status: UserStatus,
    /// Role names in the home tenant, sorted and de-duplicated.
    pub roles: Vec<String>,
    /// Bumped by logout-all; tokens carrying an older version are refused.
    pub token_version: i64,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Lowercased, validated e-mail.
    pub email: String,
    /// Validated E.164 phone.
    pub phone: Option<String>,
    /// Role names (validated by the caller against the known roles).
    pub roles: Vec<String>,
}

/// A change to a user; `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// New status.
    pub status: Option<UserStatus>,
    /// New role set (replaces the old one).
    pub roles: Option<Vec<String>>,
    /// New lowercased, validated e-mail. `Conflict` on `users.tenant_id_email` when another user of
    /// the tenant has it.
    pub email: Option<String>,
    /// New validated E.164 phone (`Some(None)` removes it). `Conflict` on `users.tenant_id_phone` when
    /// another user of the tenant has it.
    pub phone: Option<Option<String>>,
}

/// Users of a tenant.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user in the scope's tenant. `Conflict` when the e-mail (`users.tenant_id_email`) or
    /// the phone (`users.tenant_id_phone`) exists there.
    async fn create_user(
        &self,
        scope: &TenantScope,
        new: NewUser,
        meta: &AuditMeta,
    ) -> StoreResult<User>;
    /// A user of the scope's tenant.
    async fn get_user(&self, scope: &TenantScope, id: UserId) -> StoreResult<Option<User>>;
    /// A user of the scope's tenant by (lowercased) e-mail.
    async fn find_user_by_email(
        &self,
        scope: &TenantScope,
        email: &str,
    ) -> StoreResult<Option<User>>;
    /// Users of the scope's tenant, ordered by id.
    async fn list_users(&self, scope: &TenantScope, page: &PageRequest) -> StoreResult<Page<User>>;
    /// Applies a patch; `NotFound` when the user is not in the scope's tenant.
    async fn update_user(
        &self,
        scope: &TenantScope,
        id: UserId,
        patch: UserPatch,
        meta: &AuditMeta,
    ) -> StoreResult<User>;
    /// Deletes a user; `NotFound` when not in the scope's tenant. The user's roles, MFA state,
    /// recovery codes, refresh-token families and OTP challenges go with it.
    async fn delete_user(
        &self,
        scope: &TenantScope,
        id: UserId,
        meta: &AuditMeta,
    ) -> StoreResult<()>;
    /// Increments the user's token version (logout-all: every token carrying an older version is
    /// refused) and returns the new version, atomically. `NotFound` when the user is not in the
    /// scope's tenant. `updated_at` is left alone: this is a session event, not a profile change.
    async fn bump_token_version(
        &self,
        scope: &TenantScope,
        id: UserId,
        meta: &AuditMeta,
    ) -> StoreResult<i64>;
    /// A user of the scope's tenant by E.164 phone number (unique within a tenant, like the e-mail:
    /// `Conflict` on `users.tenant_id_phone`).
    async fn find_user_by_phone(
        &self,
        scope: &TenantScope,
        phone: &str,
    ) -> StoreResult<Option<User>>;
}

/// Backend health and identity.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// A cheap round trip (`SELECT 1`).
    async fn ping(&self) -> StoreResult<()>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Every store of one backend, sharing one pool.
#[derive(Clone)]
pub struct Stores {
    /// Tenants.
    pub tenants: std::sync::Arc<dyn TenantStore>,
    /// Users.
    pub users: std::sync::Arc<dyn UserStore>,
    /// Custom roles.
    pub roles: std::sync::Arc<dyn RoleStore>,
    /// Health.
    pub health: std::sync::Arc<dyn StoreHealth>,
    /// Token-signing keys.
    pub signing_keys: std::sync::Arc<dyn SigningKeyStore>,
    /// OTP sign-in challenges.
    pub otp: std::sync::Arc<dyn OtpStore>,
    /// Refresh-token families.
    pub refresh: std::sync::Arc<dyn RefreshStore>,
    /// TOTP and recovery codes.
    pub mfa: std::sync::Arc<dyn MfaStore>,
    /// The audit trail (queries, verification, retention, security events).
    pub audit: std::sync::Arc<dyn AuditStore>,
    /// Records of declared resources and their idempotency keys.
    pub records: std::sync::Arc<dyn RecordStore>,
    /// API keys.
    pub api_keys: std::sync::Arc<dyn ApiKeyStore>,
    /// Browser sessions (over refresh families).
    pub sessions: std::sync::Arc<dyn SessionStore>,
    /// Tenant Cedar policy documents.
    pub policies: std::sync::Arc<dyn PolicyStore>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.health.backend())
            .finish()
    }
}
