//! [`SigningKeyStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - Signing keys are deployment-wide, not tenant-owned, so no statement filters by tenant. Writes take
//!   a `SystemScope`; its role is logged with each rotation and retirement (the kid, never key material).
//! - SECURITY: a rotation is a compare-and-set on the active key's `kid`: the demotion
//!   `UPDATE … SET status = 'retiring' WHERE kid = $expected AND status = 'active'` must affect exactly
//!   one row, else the transaction rolls back with `Conflict` on `signing_keys.status`. So two rotations
//!   that read the same active key cannot both commit, whether the backend runs them concurrently
//!   (PostgreSQL: the second waits on the row lock, then re-checks the row and finds it `retiring`) or
//!   one after the other (SQLite's `BEGIN IMMEDIATE`). The partial unique index `signing_keys.status`
//!   (at most one `active` row) backs this up, and decides the race for the very first key. A rotation
//!   demotes the old key and inserts the new one in one transaction, so readers never see zero or two
//!   active keys.
//! - SECURITY: retiring a key overwrites its sealed private part with `''` in the same statement that
//!   marks it retired; the schema refuses a retired key that still holds one.

use async_trait::async_trait;
use palisade_authz::SystemScope;
use palisade_store::{
    NewSigningKey, SigningKey, SigningKeyStatus, SigningKeyStore, StoreError, StoreResult,
};
use sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use time::OffsetDateTime;

use crate::codec::{from_micros, now, opt_from_micros, to_micros};
use crate::dialect::{DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{SigningKeys, col};

/// Signing keys over one dialect's pool.
pub(crate) struct SqlSigningKeyStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlSigningKeyStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// `SELECT <key columns> FROM signing_keys`: every key read starts here.
fn select_keys() -> SelectStatement {
    Query::select()
        .columns([
            SigningKeys::Kid,
            SigningKeys::Status,
            SigningKeys::PublicJwk,
            SigningKeys::PrivateSealed,
            SigningKeys::CreatedAt,
            SigningKeys::RetireAt,
            SigningKeys::RetiredAt,
        ])
        .from(SigningKeys::Table)
        .take()
}

/// A row of [`select_keys`] as a [`SigningKey`].
fn decode_key<D: Exec>(row: &DbRow<D>) -> StoreResult<SigningKey> {
    let status = D::text(row, col(SigningKeys::Status))?;
    Ok(SigningKey {
        kid: D::text(row, col(SigningKeys::Kid))?,
        status: SigningKeyStatus::parse(&status)
            .ok_or_else(|| StoreError::internal("stored signing_keys.status does not decode"))?,
        public_jwk: D::text(row, col(SigningKeys::PublicJwk))?,
        private_sealed: D::text(row, col(SigningKeys::PrivateSealed))?,
        created_at: from_micros(D::int(row, col(SigningKeys::CreatedAt))?)?,
        retire_at: opt_from_micros(D::opt_int(row, col(SigningKeys::RetireAt))?)?,
        retired_at: opt_from_micros(D::opt_int(row, col(SigningKeys::RetiredAt))?)?,
    })
}

#[async_trait]
impl<D: Exec> SigningKeyStore for SqlSigningKeyStore<D> {
    async fn insert_active_key(
        &self,
        system: &SystemScope,
        expected_active: Option<&str>,
        key: NewSigningKey,
        retire_previous_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let demote = expected_active
            .map(|expected| -> StoreResult<_> {
                Ok(Query::update()
                    .table(SigningKeys::Table)
                    .values([
                        (
                            SigningKeys::Status,
                            SigningKeyStatus::Retiring.as_str().into(),
                        ),
                        (SigningKeys::RetireAt, to_micros(retire_previous_at)?.into()),
                    ])
                    .and_where(Expr::col(SigningKeys::Kid).eq(expected))
                    .and_where(Expr::col(SigningKeys::Status).eq(SigningKeyStatus::Active.as_str()))
                    .take())
            })
            .transpose()?;
        let insert = Query::insert()
            .into_table(SigningKeys::Table)
            .columns([
                SigningKeys::Kid,
                SigningKeys::Status,
                SigningKeys::PublicJwk,
                SigningKeys::PrivateSealed,
                SigningKeys::CreatedAt,
            ])
            .values([
                key.kid.as_str().into(),
                SigningKeyStatus::Active.as_str().into(),
                key.public_jwk.as_str().into(),
                key.private_sealed.as_str().into(),
                to_micros(now()?)?.into(),
            ])
            .map_err(|e| StoreError::Internal(Box::new(e)))?
            .take();

        // Compare-and-set, then insert. With an expected key, the demotion must hit exactly that row
        // while it is still active; an overlapping rotation on PostgreSQL waits on the row lock and
        // then finds it `retiring` (0 rows), on SQLite it runs after the winner committed and finds
        // the same. Without one (the first key), the one-active index refuses every insert but the
        // first. Either way the loser's transaction is dropped, which rolls it back.
        let mut tx = begin_write::<D>(&self.pool).await?;
        if let Some(demote) = &demote
            && D::execute(&mut tx, D::render(demote)).await? != 1
        {
            return Err(StoreError::Conflict {
                constraint: "signing_keys.status".to_owned(),
            });
        }
        D::execute(&mut tx, D::render(&insert)).await?;
        commit::<D>(tx).await?;
        tracing::info!(
            role = system.role().as_str(),
            kid = %key.kid,
            "signing key rotated"
        );
        Ok(())
    }

    async fn active_key(&self) -> StoreResult<Option<SigningKey>> {
        let stmt = select_keys()
            .and_where(Expr::col(SigningKeys::Status).eq(SigningKeyStatus::Active.as_str()))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let row = D::fetch_optional(&mut conn, D::render(&stmt)).await?;
        row.as_ref().map(decode_key::<D>).transpose()
    }

    async fn verification_keys(&self) -> StoreResult<Vec<SigningKey>> {
        // 'active' sorts before 'retiring' (bytewise on both backends), so the active key comes first.
        let stmt = select_keys()
            .and_where(Expr::col(SigningKeys::Status).is_in([
                SigningKeyStatus::Active.as_str(),
                SigningKeyStatus::Retiring.as_str(),
            ]))
            .order_by(SigningKeys::Status, Order::Asc)
            .order_by(SigningKeys::CreatedAt, Order::Desc)
            .order_by(SigningKeys::Kid, Order::Desc)
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let rows = D::fetch_all(&mut conn, D::render(&stmt)).await?;
        rows.iter().map(decode_key::<D>).collect()
    }

    async fn list_keys(&self, _system: &SystemScope) -> StoreResult<Vec<SigningKey>> {
        let stmt = select_keys()
            .order_by(SigningKeys::CreatedAt, Order::Desc)
            .order_by(SigningKeys::Kid, Order::Desc)
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let rows = D::fetch_all(&mut conn, D::render(&stmt)).await?;
        rows.iter().map(decode_key::<D>).collect()
    }

    async fn retire_due(&self, system: &SystemScope, now: OffsetDateTime) -> StoreResult<u64> {
        let micros = to_micros(now)?;
        // SECURITY: the private part is wiped by the same statement that retires the key.
        let stmt = Query::update()
            .table(SigningKeys::Table)
            .values([
                (
                    SigningKeys::Status,
                    SigningKeyStatus::Retired.as_str().into(),
                ),
                (SigningKeys::RetiredAt, micros.into()),
                (SigningKeys::PrivateSealed, "".into()),
            ])
            .and_where(Expr::col(SigningKeys::Status).eq(SigningKeyStatus::Retiring.as_str()))
            .and_where(Expr::col(SigningKeys::RetireAt).lte(micros))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let retired = D::execute(&mut conn, D::render(&stmt)).await?;
        if retired > 0 {
            tracing::info!(
                role = system.role().as_str(),
                retired,
                "signing keys retired"
            );
        }
        Ok(retired)
    }
}
