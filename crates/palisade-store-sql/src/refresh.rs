//! [`RefreshStore`] for every dialect: refresh-token rotation with reuse detection (RFC 9700 §4.14.2).
//! Each statement is built once with sea-query.
//!
//! Invariants:
//! - A family and its first token are written in one transaction; the family row is inserted with
//!   `INSERT … SELECT … FROM users WHERE tenant_id = <scope> AND id = <user>`, so a user outside the
//!   scope's tenant is `NotFound` and nothing is written. A token is inserted the same way from its
//!   family's row, so its tenant and user are always the family's. Deleting a user deletes its
//!   families and their tokens (foreign keys).
//! - SECURITY: `rotate` runs in one write transaction that locks the presented token and its family
//!   (`SELECT … FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite; see
//!   [`crate::dialect::begin_write`]) before deciding. Spending the token is additionally conditional
//!   (`… WHERE spent_at IS NULL`), and its rows-affected is the final word: a caller that does not
//!   spend the token is treated as presenting a spent one. So of two concurrent rotations of one token
//!   exactly one is `Rotated`; the other is `Reused`, and the family is revoked in its transaction.
//! - `rotate`, `revoke_family` and `family_of` are unscoped by design (the presented token is the
//!   credential; family ids are unguessable); `revoke_user_families` filters by the scope's tenant.
//! - Token hashes never appear in errors or logs.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_domain::UserId;
use palisade_store::{
    NewRefreshFamily, NewRefreshToken, RefreshSession, RefreshStore, RotateOutcome, StoreError,
    StoreResult,
};
use sea_query::{Expr, ExprTrait, Func, LockType, Query};
use time::OffsetDateTime;

use crate::codec::{from_json_list, from_micros, now, parse_stored, to_json_list, to_micros};
use crate::dialect::{Conn, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{RefreshFamilies, RefreshTokens, Users, col};

/// Refresh-token families over one dialect's pool.
pub(crate) struct SqlRefreshStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlRefreshStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// The scope's tenant id as stored.
fn tenant_of(scope: &TenantScope) -> String {
    scope.tenant_id().to_string()
}

/// Inserts a token into a family, copying the family's tenant and user (so a token can never disagree
/// with its family). `NotFound` when the family does not exist.
async fn insert_token<D: Exec>(
    conn: &mut Conn<D>,
    family_id: &str,
    token: &NewRefreshToken,
    created_at: i64,
) -> StoreResult<()> {
    let stmt = Query::insert()
        .into_table(RefreshTokens::Table)
        .columns([
            RefreshTokens::TokenHash,
            RefreshTokens::FamilyId,
            RefreshTokens::TenantId,
            RefreshTokens::UserId,
            RefreshTokens::CreatedAt,
            RefreshTokens::ExpiresAt,
        ])
        .select_from(
            Query::select()
                .exprs([
                    Expr::val(token.token_hash.as_str()),
                    Expr::col(RefreshFamilies::Id),
                    Expr::col(RefreshFamilies::TenantId),
                    Expr::col(RefreshFamilies::UserId),
                    Expr::val(created_at),
                    Expr::val(to_micros(token.expires_at)?),
                ])
                .from(RefreshFamilies::Table)
                .and_where(Expr::col(RefreshFamilies::Id).eq(family_id))
                .take(),
        )
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .take();
    match D::execute(conn, D::render(&stmt)).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// Starts a family for a user of the scope's tenant with its first token, on the given connection
/// (the caller's transaction). `NotFound` when the user is not in the scope's tenant.
pub(crate) async fn insert_family<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    family: &NewRefreshFamily,
    first: &NewRefreshToken,
    created_at: i64,
) -> StoreResult<()> {
    let tenant_id = tenant_of(scope);
    let user_id = family.user_id.to_string();
    // SECURITY: the row comes from the scope's own user, or there is no row.
    let insert_family = Query::insert()
        .into_table(RefreshFamilies::Table)
        .columns([
            RefreshFamilies::Id,
            RefreshFamilies::TenantId,
            RefreshFamilies::UserId,
            RefreshFamilies::Amr,
            RefreshFamilies::AuthTime,
            RefreshFamilies::CreatedAt,
        ])
        .select_from(
            Query::select()
                .exprs([
                    Expr::val(family.id.as_str()),
                    Expr::col(Users::TenantId),
                    Expr::col(Users::Id),
                    Expr::val(to_json_list(&family.amr)?),
                    Expr::val(to_micros(family.auth_time)?),
                    Expr::val(created_at),
                ])
                .from(Users::Table)
                .and_where(Expr::col(Users::TenantId).eq(tenant_id.as_str()))
                .and_where(Expr::col(Users::Id).eq(user_id.as_str()))
                .take(),
        )
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .take();
    if D::execute(conn, D::render(&insert_family)).await? == 0 {
        return Err(StoreError::NotFound);
    }
    insert_token::<D>(conn, &family.id, first, created_at).await
}

/// Revokes a family unless it already is, on the given connection.
async fn revoke<D: Exec>(conn: &mut Conn<D>, family_id: &str, at: i64) -> StoreResult<u64> {
    // `revoked_at = COALESCE(revoked_at, at)`: the first revocation time is kept, and the row still
    // counts as matched, so callers can tell an unknown family from an already revoked one.
    let stmt = Query::update()
        .table(RefreshFamilies::Table)
        .value(
            RefreshFamilies::RevokedAt,
            Func::coalesce([Expr::col(RefreshFamilies::RevokedAt), Expr::val(at)]),
        )
        .and_where(Expr::col(RefreshFamilies::Id).eq(family_id))
        .take();
    D::execute(conn, D::render(&stmt)).await
}

#[async_trait]
impl<D: Exec> RefreshStore for SqlRefreshStore<D> {
    async fn create_family(
        &self,
        scope: &TenantScope,
        family: NewRefreshFamily,
        first: NewRefreshToken,
    ) -> StoreResult<()> {
        let created_at = to_micros(now()?)?;
        let mut tx = begin_write::<D>(&self.pool).await?;
        insert_family::<D>(&mut tx, scope, &family, &first, created_at).await?;
        commit::<D>(tx).await
    }

    async fn rotate(
        &self,
        presented_hash: &str,
        next: NewRefreshToken,
        now: OffsetDateTime,
    ) -> StoreResult<RotateOutcome> {
        let at = to_micros(now)?;
        let (t, f) = (RefreshTokens::Table, RefreshFamilies::Table);
        let select = Query::select()
            .columns([
                (t, RefreshTokens::FamilyId),
                (t, RefreshTokens::TenantId),
                (t, RefreshTokens::UserId),
                (t, RefreshTokens::ExpiresAt),
                (t, RefreshTokens::SpentAt),
            ])
            .columns([
                (f, RefreshFamilies::Amr),
                (f, RefreshFamilies::AuthTime),
                (f, RefreshFamilies::RevokedAt),
            ])
            .from(t)
            .inner_join(
                f,
                Expr::col((f, RefreshFamilies::Id)).equals((t, RefreshTokens::FamilyId)),
            )
            .and_where(Expr::col((t, RefreshTokens::TokenHash)).eq(presented_hash))
            // SECURITY: `FOR UPDATE` on PostgreSQL (the token and its family); SQLite's
            // `BEGIN IMMEDIATE` already holds the only write lock.
            .lock(LockType::Update)
            .take();

        let mut tx = begin_write::<D>(&self.pool).await?;
        let Some(row) = D::fetch_optional(&mut tx, D::render(&select)).await? else {
            return Ok(RotateOutcome::NotFound);
        };
        let family_id = D::text(&row, col(RefreshTokens::FamilyId))?;
        let tenant_id = parse_stored(
            &D::text(&row, col(RefreshTokens::TenantId))?,
            "refresh_tokens.tenant_id",
        )?;
        let user_id = parse_stored(
            &D::text(&row, col(RefreshTokens::UserId))?,
            "refresh_tokens.user_id",
        )?;
        let expires_at = D::int(&row, col(RefreshTokens::ExpiresAt))?;
        let spent = D::opt_int(&row, col(RefreshTokens::SpentAt))?.is_some();
        let revoked = D::opt_int(&row, col(RefreshFamilies::RevokedAt))?.is_some();
        let session = RefreshSession {
            family_id: family_id.clone(),
            tenant_id,
            user_id,
            amr: from_json_list(
                &D::text(&row, col(RefreshFamilies::Amr))?,
                "refresh_families.amr",
            )?,
            auth_time: from_micros(D::int(&row, col(RefreshFamilies::AuthTime))?)?,
        };

        if revoked {
            return Ok(RotateOutcome::FamilyRevoked);
        }
        let reused = RotateOutcome::Reused {
            family_id: family_id.clone(),
            user_id,
            tenant_id,
        };
        if spent {
            // SECURITY: a spent token presented again means it was copied. Revoke the whole family in
            // this transaction, and commit it: the revocation must survive the refusal.
            revoke::<D>(&mut tx, &family_id, at).await?;
            commit::<D>(tx).await?;
            return Ok(reused);
        }
        if expires_at <= at {
            return Ok(RotateOutcome::Expired);
        }

        let spend = Query::update()
            .table(RefreshTokens::Table)
            .value(RefreshTokens::SpentAt, at)
            .and_where(Expr::col(RefreshTokens::TokenHash).eq(presented_hash))
            .and_where(Expr::col(RefreshTokens::SpentAt).is_null())
            .take();
        if D::execute(&mut tx, D::render(&spend)).await? != 1 {
            // Someone spent it after all (the lock should make this unreachable): same as reuse.
            revoke::<D>(&mut tx, &family_id, at).await?;
            commit::<D>(tx).await?;
            return Ok(reused);
        }
        insert_token::<D>(&mut tx, &family_id, &next, at).await?;
        commit::<D>(tx).await?;
        Ok(RotateOutcome::Rotated(session))
    }

    async fn revoke_family(&self, family_id: &str, now: OffsetDateTime) -> StoreResult<()> {
        let mut conn = acquire::<D>(&self.pool).await?;
        match revoke::<D>(&mut conn, family_id, to_micros(now)?).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn revoke_user_families(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let stmt = Query::update()
            .table(RefreshFamilies::Table)
            .value(RefreshFamilies::RevokedAt, to_micros(now)?)
            .and_where(Expr::col(RefreshFamilies::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(RefreshFamilies::UserId).eq(user_id.to_string()))
            .and_where(Expr::col(RefreshFamilies::RevokedAt).is_null())
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::execute(&mut conn, D::render(&stmt)).await
    }

    async fn family_of(&self, token_hash: &str) -> StoreResult<Option<String>> {
        let stmt = Query::select()
            .column(RefreshTokens::FamilyId)
            .from(RefreshTokens::Table)
            .and_where(Expr::col(RefreshTokens::TokenHash).eq(token_hash))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let row = D::fetch_optional(&mut conn, D::render(&stmt)).await?;
        row.as_ref()
            .map(|r| D::text(r, col(RefreshTokens::FamilyId)))
            .transpose()
    }
}
