//! [`SessionStore`] for every dialect: browser sessions over refresh families. Each statement is built
//! once with sea-query.
//!
//! Invariants:
//! - `create_session` writes the family (from the scope's own user, see
//!   [`crate::refresh::insert_family`]), its first refresh token, the session row (copying tenant and
//!   user from the family row, so they can never disagree) and one audit entry in one write
//!   transaction; any failure writes nothing.
//! - `find_session` and `touch_session` are unscoped by design (authentication, keyed by the presented
//!   cookie's hash or the family it resolved to).
//! - SECURITY: cookie hashes never appear in errors, logs or audit entries.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_store::{
    AuditEvent, AuditMeta, BrowserSession, NewBrowserSession, NewRefreshFamily, NewRefreshToken,
    SessionStore, StoreError, StoreResult,
};
use sea_query::{Expr, ExprTrait, Query};
use time::OffsetDateTime;

use crate::audit::append;
use crate::codec::{from_json_list, from_micros, now, opt_from_micros, parse_stored, to_micros};
use crate::dialect::{DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::refresh::insert_family;
use crate::schema::{BrowserSessions, RefreshFamilies, col};

/// Browser sessions over one dialect's pool.
pub(crate) struct SqlSessionStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlSessionStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

fn decode<D: Exec>(row: &DbRow<D>) -> StoreResult<BrowserSession> {
    Ok(BrowserSession {
        family_id: D::text(row, col(BrowserSessions::FamilyId))?,
        tenant_id: parse_stored(
            &D::text(row, col(BrowserSessions::TenantId))?,
            "browser_sessions.tenant_id",
        )?,
        user_id: parse_stored(
            &D::text(row, col(BrowserSessions::UserId))?,
            "browser_sessions.user_id",
        )?,
        token_version: D::int(row, col(BrowserSessions::TokenVersion))?,
        amr: from_json_list(
            &D::text(row, col(RefreshFamilies::Amr))?,
            "refresh_families.amr",
        )?,
        auth_time: from_micros(D::int(row, col(RefreshFamilies::AuthTime))?)?,
        created_at: from_micros(D::int(row, col(BrowserSessions::CreatedAt))?)?,
        last_seen_at: from_micros(D::int(row, col(BrowserSessions::LastSeenAt))?)?,
        expires_at: from_micros(D::int(row, col(BrowserSessions::ExpiresAt))?)?,
        revoked_at: opt_from_micros(D::opt_int(row, col(RefreshFamilies::RevokedAt))?)?,
    })
}

/// `SELECT` a session with its family's state, joined (unscoped: callers add the key).
fn select_session() -> sea_query::SelectStatement {
    let (s, f) = (BrowserSessions::Table, RefreshFamilies::Table);
    Query::select()
        .columns([
            (s, BrowserSessions::FamilyId),
            (s, BrowserSessions::TenantId),
            (s, BrowserSessions::UserId),
            (s, BrowserSessions::TokenVersion),
            (s, BrowserSessions::CreatedAt),
            (s, BrowserSessions::LastSeenAt),
            (s, BrowserSessions::ExpiresAt),
        ])
        .columns([
            (f, RefreshFamilies::Amr),
            (f, RefreshFamilies::AuthTime),
            (f, RefreshFamilies::RevokedAt),
        ])
        .from(s)
        .inner_join(
            f,
            Expr::col((f, RefreshFamilies::Id)).equals((s, BrowserSessions::FamilyId)),
        )
        .take()
}

#[async_trait]
impl<D: Exec> SessionStore for SqlSessionStore<D> {
    async fn create_session(
        &self,
        scope: &TenantScope,
        family: NewRefreshFamily,
        first: NewRefreshToken,
        session: NewBrowserSession,
        meta: &AuditMeta,
    ) -> StoreResult<BrowserSession> {
        let at = now()?;
        let created_at = to_micros(at)?;
        let expires_at = to_micros(session.expires_at)?;
        // Copied from the family row just written, so the session's tenant and user are the family's.
        let insert = Query::insert()
            .into_table(BrowserSessions::Table)
            .columns([
                BrowserSessions::FamilyId,
                BrowserSessions::TenantId,
                BrowserSessions::UserId,
                BrowserSessions::TokenHash,
                BrowserSessions::TokenVersion,
                BrowserSessions::CreatedAt,
                BrowserSessions::LastSeenAt,
                BrowserSessions::ExpiresAt,
            ])
            .select_from(
                Query::select()
                    .exprs([
                        Expr::col(RefreshFamilies::Id),
                        Expr::col(RefreshFamilies::TenantId),
                        Expr::col(RefreshFamilies::UserId),
                        Expr::val(session.token_hash.as_str()),
                        Expr::val(session.token_version),
                        Expr::val(created_at),
                        Expr::val(created_at),
                        Expr::val(expires_at),
                    ])
                    .from(RefreshFamilies::Table)
                    .and_where(Expr::col(RefreshFamilies::Id).eq(family.id.as_str()))
                    .take(),
            )
            .map_err(|e| StoreError::Internal(Box::new(e)))?
            .take();
        let stored = BrowserSession {
            family_id: family.id.clone(),
            tenant_id: scope.tenant_id(),
            user_id: family.user_id,
            token_version: session.token_version,
            amr: family.amr.clone(),
            auth_time: from_micros(to_micros(family.auth_time)?)?,
            created_at: from_micros(created_at)?,
            last_seen_at: from_micros(created_at)?,
            expires_at: from_micros(expires_at)?,
            revoked_at: None,
        };
        // SECURITY: the entry names the session and its user, never the cookie or its hash.
        let event = AuditEvent {
            action: "auth.session_created".to_owned(),
            resource: "session".to_owned(),
            record_id: Some(family.id.clone()),
            old: None,
            new: Some(serde_json::json!({
                "user_id": family.user_id.to_string(),
                "amr": family.amr,
                "expires_at": expires_at,
            })),
        };

        let mut tx = begin_write::<D>(&self.pool).await?;
        insert_family::<D>(&mut tx, scope, &family, &first, created_at).await?;
        if D::execute(&mut tx, D::render(&insert)).await? != 1 {
            return Err(StoreError::NotFound);
        }
        append::<D>(&mut tx, scope.tenant_id(), meta, event).await?;
        commit::<D>(tx).await?;
        Ok(stored)
    }

    async fn find_session(&self, token_hash: &str) -> StoreResult<Option<BrowserSession>> {
        let stmt = select_session()
            .and_where(
                Expr::col((BrowserSessions::Table, BrowserSessions::TokenHash)).eq(token_hash),
            )
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::fetch_optional(&mut conn, D::render(&stmt))
            .await?
            .as_ref()
            .map(decode::<D>)
            .transpose()
    }

    async fn touch_session(&self, family_id: &str, now: OffsetDateTime) -> StoreResult<()> {
        let at = to_micros(now)?;
        let exists = Query::select()
            .column(BrowserSessions::FamilyId)
            .from(BrowserSessions::Table)
            .and_where(Expr::col(BrowserSessions::FamilyId).eq(family_id))
            .take();
        // Forward only: a late, slower request never moves `last_seen_at` back.
        let touch = Query::update()
            .table(BrowserSessions::Table)
            .value(BrowserSessions::LastSeenAt, at)
            .and_where(Expr::col(BrowserSessions::FamilyId).eq(family_id))
            .and_where(Expr::col(BrowserSessions::LastSeenAt).lt(at))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        if D::execute(&mut conn, D::render(&touch)).await? == 1 {
            return Ok(());
        }
        match D::fetch_optional(&mut conn, D::render(&exists)).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        }
    }
}
