//! [`MfaStore`] for every dialect: TOTP state and recovery codes, each statement built once with
//! sea-query.
//!
//! Invariants:
//! - SECURITY: every statement filters by `tenant_id = scope.tenant_id()`. The first write for a user
//!   (`set_pending_totp`) is `INSERT … SELECT … FROM users WHERE tenant_id = <scope> AND id = <user>`,
//!   so a user outside the scope gets no row and the call is `NotFound`.
//! - SECURITY: accepting a TOTP step and using a recovery code are single conditional `UPDATE`s whose
//!   rows-affected is the answer (`last_totp_step IS NULL OR last_totp_step < ?`, `used_at IS NULL`),
//!   so each succeeds for exactly one caller on both backends.
//! - Enabling and disabling change the secrets and the recovery codes in one transaction. Secrets are
//!   sealed by the caller and opaque here; recovery codes arrive hashed. Neither appears in errors.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_domain::UserId;
use palisade_store::{AuditEvent, AuditMeta, MfaState, MfaStore, StoreError, StoreResult};
use sea_query::{Cond, Expr, ExprTrait, OnConflict, Query};

use crate::audit::append;
use crate::codec::{from_flag, now, to_flag, to_micros};
use crate::dialect::{Conn, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{RecoveryCodes, UserMfa, Users, col};

/// MFA state over one dialect's pool.
pub(crate) struct SqlMfaStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlMfaStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// The scope's tenant id as stored.
fn tenant_of(scope: &TenantScope) -> String {
    scope.tenant_id().to_string()
}

/// `user_mfa.tenant_id = <scope> AND user_mfa.user_id = <user>`.
fn this_user(scope: &TenantScope, user_id: UserId) -> Cond {
    Cond::all()
        .add(Expr::col(UserMfa::TenantId).eq(tenant_of(scope)))
        .add(Expr::col(UserMfa::UserId).eq(user_id.to_string()))
}

/// Deletes the user's recovery codes (within the scope's tenant).
async fn delete_recovery_codes<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    user_id: UserId,
) -> StoreResult<()> {
    let stmt = Query::delete()
        .from_table(RecoveryCodes::Table)
        .and_where(Expr::col(RecoveryCodes::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(RecoveryCodes::UserId).eq(user_id.to_string()))
        .take();
    D::execute(conn, D::render(&stmt)).await.map(|_| ())
}

/// The audit event of a TOTP change: which user, never the secret or the codes.
fn totp_event(action: &str, user_id: UserId) -> AuditEvent {
    AuditEvent {
        action: action.to_owned(),
        resource: "user".to_owned(),
        record_id: Some(user_id.to_string()),
        old: None,
        new: None,
    }
}

#[async_trait]
impl<D: Exec> MfaStore for SqlMfaStore<D> {
    async fn get_mfa(&self, scope: &TenantScope, user_id: UserId) -> StoreResult<Option<MfaState>> {
        let stmt = Query::select()
            .columns([
                UserMfa::TotpSealed,
                UserMfa::TotpEnabled,
                UserMfa::PendingSealed,
                UserMfa::LastTotpStep,
            ])
            .from(UserMfa::Table)
            .cond_where(this_user(scope, user_id))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let Some(row) = D::fetch_optional(&mut conn, D::render(&stmt)).await? else {
            return Ok(None);
        };
        Ok(Some(MfaState {
            totp_sealed: D::opt_text(&row, col(UserMfa::TotpSealed))?,
            totp_enabled: from_flag(
                D::int(&row, col(UserMfa::TotpEnabled))?,
                "user_mfa.totp_enabled",
            )?,
            pending_sealed: D::opt_text(&row, col(UserMfa::PendingSealed))?,
            last_totp_step: D::opt_int(&row, col(UserMfa::LastTotpStep))?,
        }))
    }

    async fn set_pending_totp(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        sealed: String,
    ) -> StoreResult<()> {
        let at = to_micros(now()?)?;
        // SECURITY: the row comes from the scope's own user, or there is no row. On a second
        // enrolment only the pending secret changes; an enabled secret stays until confirmation.
        let stmt = Query::insert()
            .into_table(UserMfa::Table)
            .columns([
                UserMfa::TenantId,
                UserMfa::UserId,
                UserMfa::PendingSealed,
                UserMfa::TotpEnabled,
                UserMfa::UpdatedAt,
            ])
            .select_from(
                Query::select()
                    .exprs([
                        Expr::col(Users::TenantId),
                        Expr::col(Users::Id),
                        Expr::val(sealed),
                        Expr::val(to_flag(false)),
                        Expr::val(at),
                    ])
                    .from(Users::Table)
                    .and_where(Expr::col(Users::TenantId).eq(tenant_of(scope)))
                    .and_where(Expr::col(Users::Id).eq(user_id.to_string()))
                    .take(),
            )
            .map_err(|e| StoreError::Internal(Box::new(e)))?
            .on_conflict(
                OnConflict::column(UserMfa::UserId)
                    .update_columns([UserMfa::PendingSealed, UserMfa::UpdatedAt])
                    .to_owned(),
            )
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        match D::execute(&mut conn, D::render(&stmt)).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn enable_totp(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        mut recovery_hashes: Vec<String>,
        meta: &AuditMeta,
    ) -> StoreResult<()> {
        // `SET totp_sealed = pending_sealed, pending_sealed = NULL`: every right-hand side reads the
        // row as it was, on both backends.
        let promote = Query::update()
            .table(UserMfa::Table)
            .values([
                (UserMfa::TotpSealed, Expr::col(UserMfa::PendingSealed)),
                (UserMfa::PendingSealed, Expr::val(Option::<String>::None)),
                (UserMfa::TotpEnabled, Expr::val(to_flag(true))),
                (UserMfa::UpdatedAt, Expr::val(to_micros(now()?)?)),
            ])
            .cond_where(
                this_user(scope, user_id).add(Expr::col(UserMfa::PendingSealed).is_not_null()),
            )
            .take();
        recovery_hashes.sort();
        recovery_hashes.dedup();
        let insert_codes = if recovery_hashes.is_empty() {
            None
        } else {
            let mut stmt = Query::insert();
            stmt.into_table(RecoveryCodes::Table).columns([
                RecoveryCodes::TenantId,
                RecoveryCodes::UserId,
                RecoveryCodes::CodeHash,
            ]);
            for hash in recovery_hashes {
                stmt.values([
                    tenant_of(scope).into(),
                    user_id.to_string().into(),
                    hash.into(),
                ])
                .map_err(|e| StoreError::Internal(Box::new(e)))?;
            }
            Some(stmt)
        };

        let mut tx = begin_write::<D>(&self.pool).await?;
        if D::execute(&mut tx, D::render(&promote)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        delete_recovery_codes::<D>(&mut tx, scope, user_id).await?;
        if let Some(stmt) = insert_codes {
            D::execute(&mut tx, D::render(&stmt)).await?;
        }
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            totp_event("user.totp_enable", user_id),
        )
        .await?;
        commit::<D>(tx).await
    }

    async fn disable_totp(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        meta: &AuditMeta,
    ) -> StoreResult<()> {
        let clear = Query::update()
            .table(UserMfa::Table)
            .values([
                (UserMfa::TotpSealed, Expr::val(Option::<String>::None)),
                (UserMfa::PendingSealed, Expr::val(Option::<String>::None)),
                (UserMfa::TotpEnabled, Expr::val(to_flag(false))),
                (UserMfa::UpdatedAt, Expr::val(to_micros(now()?)?)),
            ])
            .cond_where(this_user(scope, user_id))
            .take();
        let mut tx = begin_write::<D>(&self.pool).await?;
        if D::execute(&mut tx, D::render(&clear)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        delete_recovery_codes::<D>(&mut tx, scope, user_id).await?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            totp_event("user.totp_disable", user_id),
        )
        .await?;
        commit::<D>(tx).await
    }

    async fn advance_totp_step(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        step: i64,
    ) -> StoreResult<bool> {
        // SECURITY: the condition is the replay check; exactly one caller moves the step forward.
        let stmt = Query::update()
            .table(UserMfa::Table)
            .values([
                (UserMfa::LastTotpStep, Expr::val(step)),
                (UserMfa::UpdatedAt, Expr::val(to_micros(now()?)?)),
            ])
            .cond_where(
                this_user(scope, user_id).add(
                    Cond::any()
                        .add(Expr::col(UserMfa::LastTotpStep).is_null())
                        .add(Expr::col(UserMfa::LastTotpStep).lt(step)),
                ),
            )
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        Ok(D::execute(&mut conn, D::render(&stmt)).await? == 1)
    }

    async fn consume_recovery_code(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        code_hash: &str,
    ) -> StoreResult<bool> {
        // SECURITY: `used_at IS NULL` makes the code single-use under concurrent callers.
        let stmt = Query::update()
            .table(RecoveryCodes::Table)
            .value(RecoveryCodes::UsedAt, to_micros(now()?)?)
            .and_where(Expr::col(RecoveryCodes::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(RecoveryCodes::UserId).eq(user_id.to_string()))
            .and_where(Expr::col(RecoveryCodes::CodeHash).eq(code_hash))
            .and_where(Expr::col(RecoveryCodes::UsedAt).is_null())
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        Ok(D::execute(&mut conn, D::render(&stmt)).await? == 1)
    }
}
