//! [`OtpStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - SECURITY: unscoped by design (see [`OtpStore`]): sign-in runs before any principal exists, and a
//!   challenge is reached only by its unguessable id. The schema ties a challenge's user to its tenant
//!   with a composite foreign key, so a challenge can never point at another tenant's user.
//! - SECURITY: counting and consuming are single conditional statements, atomic on both backends: an
//!   `UPDATE … SET attempts = attempts + 1 … RETURNING attempts` hands every caller its own count, and
//!   `UPDATE … SET consumed_at = ? WHERE consumed_at IS NULL AND expires_at > ?` changes one row for
//!   exactly one caller (on PostgreSQL a concurrent updater waits on the row lock and then re-checks the
//!   condition against the committed row; SQLite runs writers one at a time).
//! - Hashes and codes never appear in errors or logs.

use async_trait::async_trait;
use palisade_store::{
    NewOtpChallenge, OtpChallenge, OtpChannel, OtpStore, StoreError, StoreResult,
};
use sea_query::{Expr, ExprTrait, Query};
use time::OffsetDateTime;

use crate::codec::{from_micros, now, opt_from_micros, parse_opt_stored, to_micros};
use crate::dialect::{DbRow, Dialect, Exec, acquire};
use crate::schema::{OtpChallenges, col};

/// OTP challenges over one dialect's pool.
pub(crate) struct SqlOtpStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlOtpStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// Every column of `otp_challenges`, in the order [`decode_challenge`] reads them.
const COLUMNS: [OtpChallenges; 10] = [
    OtpChallenges::Id,
    OtpChallenges::TenantId,
    OtpChallenges::Channel,
    OtpChallenges::DestinationHash,
    OtpChallenges::UserId,
    OtpChallenges::CodeHash,
    OtpChallenges::Attempts,
    OtpChallenges::ExpiresAt,
    OtpChallenges::ConsumedAt,
    OtpChallenges::CreatedAt,
];

/// A row of `otp_challenges` as an [`OtpChallenge`].
fn decode_challenge<D: Exec>(row: &DbRow<D>) -> StoreResult<OtpChallenge> {
    let channel = D::text(row, col(OtpChallenges::Channel))?;
    Ok(OtpChallenge {
        id: D::text(row, col(OtpChallenges::Id))?,
        tenant_id: parse_opt_stored(
            D::opt_text(row, col(OtpChallenges::TenantId))?,
            "otp_challenges.tenant_id",
        )?,
        channel: OtpChannel::parse(&channel)
            .ok_or_else(|| StoreError::internal("stored otp_challenges.channel does not decode"))?,
        destination_hash: D::text(row, col(OtpChallenges::DestinationHash))?,
        user_id: parse_opt_stored(
            D::opt_text(row, col(OtpChallenges::UserId))?,
            "otp_challenges.user_id",
        )?,
        code_hash: D::text(row, col(OtpChallenges::CodeHash))?,
        attempts: D::int(row, col(OtpChallenges::Attempts))?,
        expires_at: from_micros(D::int(row, col(OtpChallenges::ExpiresAt))?)?,
        consumed_at: opt_from_micros(D::opt_int(row, col(OtpChallenges::ConsumedAt))?)?,
        created_at: from_micros(D::int(row, col(OtpChallenges::CreatedAt))?)?,
    })
}

#[async_trait]
impl<D: Exec> OtpStore for SqlOtpStore<D> {
    async fn create_challenge(&self, challenge: NewOtpChallenge) -> StoreResult<()> {
        let stmt = Query::insert()
            .into_table(OtpChallenges::Table)
            .columns([
                OtpChallenges::Id,
                OtpChallenges::TenantId,
                OtpChallenges::Channel,
                OtpChallenges::DestinationHash,
                OtpChallenges::UserId,
                OtpChallenges::CodeHash,
                OtpChallenges::Attempts,
                OtpChallenges::ExpiresAt,
                OtpChallenges::CreatedAt,
            ])
            .values([
                challenge.id.as_str().into(),
                challenge.tenant_id.map(|t| t.to_string()).into(),
                challenge.channel.as_str().into(),
                challenge.destination_hash.as_str().into(),
                challenge.user_id.map(|u| u.to_string()).into(),
                challenge.code_hash.as_str().into(),
                0i64.into(),
                to_micros(challenge.expires_at)?.into(),
                to_micros(now()?)?.into(),
            ])
            .map_err(|e| StoreError::Internal(Box::new(e)))?
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::execute(&mut conn, D::render(&stmt)).await.map(|_| ())
    }

    async fn find_challenge(&self, id: &str) -> StoreResult<Option<OtpChallenge>> {
        let stmt = Query::select()
            .columns(COLUMNS)
            .from(OtpChallenges::Table)
            .and_where(Expr::col(OtpChallenges::Id).eq(id))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let row = D::fetch_optional(&mut conn, D::render(&stmt)).await?;
        row.as_ref().map(decode_challenge::<D>).transpose()
    }

    async fn record_attempt(&self, id: &str) -> StoreResult<i64> {
        // One statement: the increment and the value it produced cannot be separated by another caller.
        let stmt = Query::update()
            .table(OtpChallenges::Table)
            .value(
                OtpChallenges::Attempts,
                Expr::col(OtpChallenges::Attempts).add(1i64),
            )
            .and_where(Expr::col(OtpChallenges::Id).eq(id))
            .returning_col(OtpChallenges::Attempts)
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        // `fetch_all` runs the statement to completion, so SQLite's implicit transaction ends here.
        let rows = D::fetch_all(&mut conn, D::render(&stmt)).await?;
        let row = rows.first().ok_or(StoreError::NotFound)?;
        D::int(row, col(OtpChallenges::Attempts))
    }

    async fn consume_challenge(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let micros = to_micros(now)?;
        // SECURITY: the WHERE clause is the single-use decision; exactly one caller changes the row.
        let stmt = Query::update()
            .table(OtpChallenges::Table)
            .value(OtpChallenges::ConsumedAt, micros)
            .and_where(Expr::col(OtpChallenges::Id).eq(id))
            .and_where(Expr::col(OtpChallenges::ConsumedAt).is_null())
            .and_where(Expr::col(OtpChallenges::ExpiresAt).gt(micros))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        Ok(D::execute(&mut conn, D::render(&stmt)).await? == 1)
    }

    async fn purge_expired(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let stmt = Query::delete()
            .from_table(OtpChallenges::Table)
            .and_where(Expr::col(OtpChallenges::ExpiresAt).lt(to_micros(before)?))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::execute(&mut conn, D::render(&stmt)).await
    }
}
