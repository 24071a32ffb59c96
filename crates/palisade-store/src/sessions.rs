//! Browser sessions: a sign-in that chose a `palisade_session` cookie instead of tokens.
//!
//! Invariants:
//! - A browser session *is* a refresh family: [`SessionStore::create_session`] starts the family, its
//!   (never handed out) first refresh token and the session row in one transaction, with one audit
//!   entry. Whatever revokes the family (logout, logout-all, refresh-token reuse) ends the session, and
//!   deleting the user deletes it.
//! - SECURITY: the store sees only a keyed hash of the cookie value, never the value; `Debug` output
//!   redacts even the hash.
//! - [`SessionStore::find_session`] and [`SessionStore::touch_session`] are unscoped by design: they
//!   run during authentication, before any principal exists, and are keyed by the presented cookie's
//!   hash (the cookie is the credential) or by the family id it resolved to. Creation takes the
//!   [`TenantScope`] of the signing-in user's tenant.
//! - Expiry (idle and absolute) is decided by the caller from the returned times; the store reports
//!   them exactly as written.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_domain::{TenantId, UserId};
use time::OffsetDateTime;

use crate::identity::{NewRefreshFamily, NewRefreshToken};
use crate::{AuditMeta, StoreResult};

const REDACTED: &str = "[redacted]";

/// A browser session to start, next to its refresh family.
#[derive(Clone, PartialEq, Eq)]
pub struct NewBrowserSession {
    /// A keyed hash of the cookie value; never the value. Unique.
    pub token_hash: String,
    /// The user's token version now; a later logout-all makes it stale.
    pub token_version: i64,
    /// The absolute end of the session.
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for NewBrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBrowserSession")
            .field("token_hash", &REDACTED)
            .field("token_version", &self.token_version)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored browser session with its family's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    /// The refresh family, which is the session's id.
    pub family_id: String,
    /// The user's home tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// The user's token version at sign-in.
    pub token_version: i64,
    /// How the user authenticated at sign-in.
    pub amr: Vec<String>,
    /// When the user authenticated at sign-in.
    pub auth_time: OffsetDateTime,
    /// When the session started.
    pub created_at: OffsetDateTime,
    /// The last use that was recorded (see [`SessionStore::touch_session`]).
    pub last_seen_at: OffsetDateTime,
    /// The absolute end.
    pub expires_at: OffsetDateTime,
    /// When its family was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Browser sessions over refresh families.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Starts `family` for a user of the scope's tenant with its first refresh token and the browser
    /// session, and appends one `auth.session_created` audit entry, all in one transaction.
    /// `NotFound` when the user is not in the scope's tenant (nothing is written); `Conflict` for a
    /// taken family id (`refresh_families.id`), token hash (`refresh_tokens.token_hash`) or cookie hash
    /// (`browser_sessions.token_hash`).
    async fn create_session(
        &self,
        scope: &TenantScope,
        family: NewRefreshFamily,
        first: NewRefreshToken,
        session: NewBrowserSession,
        meta: &AuditMeta,
    ) -> StoreResult<BrowserSession>;

    /// The session whose cookie hashes to `token_hash`, whatever its state (revoked or expired
    /// sessions are returned so the caller can say why it refuses them).
    async fn find_session(&self, token_hash: &str) -> StoreResult<Option<BrowserSession>>;

    /// Records a use at `now` (moves `last_seen_at` forward, never back). `NotFound` for an unknown
    /// session.
    async fn touch_session(&self, family_id: &str, now: OffsetDateTime) -> StoreResult<()>;
}
