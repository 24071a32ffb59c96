//! [`PolicyStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - SECURITY: every statement filters by `tenant_id = scope.tenant_id()`; another tenant's document
//!   is invisible (`None`) and untouchable (`NotFound`).
//! - A write locks the current row (SQLite's `BEGIN IMMEDIATE` serialises every writer), checks the
//!   `If-Match` etag, writes, and appends the audit entry with the old and the new text, all in one
//!   transaction; a refused precondition changes nothing. Two racing first writes on PostgreSQL: the
//!   loser hits the primary key and gets `Conflict`.
//! - Every write takes a fresh UUIDv7 etag, so `(tenant_id, etag)` never names two texts.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_store::{
    AuditEvent, AuditMeta, POLICY_ETAG_MISMATCH, PolicyStore, StoreError, StoreResult, TenantPolicy,
};
use sea_query::{Expr, ExprTrait, LockType, Query, SelectStatement};

use crate::audit::append;
use crate::codec::{from_micros, now, parse_stored, to_micros};
use crate::dialect::{Conn, DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{TenantPolicies, col};

/// Tenant policy documents over one dialect's pool.
pub(crate) struct SqlPolicyStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlPolicyStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

fn tenant_of(scope: &TenantScope) -> String {
    scope.tenant_id().to_string()
}

/// A document as its audit entries show it.
fn policy_json(p: &TenantPolicy) -> serde_json::Value {
    serde_json::json!({ "policies": p.policies, "version": p.version })
}

fn select_policy(scope: &TenantScope) -> SelectStatement {
    Query::select()
        .columns([
            TenantPolicies::TenantId,
            TenantPolicies::Policies,
            TenantPolicies::Version,
            TenantPolicies::Etag,
            TenantPolicies::UpdatedAt,
            TenantPolicies::UpdatedBy,
        ])
        .from(TenantPolicies::Table)
        .and_where(Expr::col(TenantPolicies::TenantId).eq(tenant_of(scope)))
        .take()
}

fn decode<D: Exec>(row: &DbRow<D>) -> StoreResult<TenantPolicy> {
    Ok(TenantPolicy {
        tenant_id: parse_stored(
            &D::text(row, col(TenantPolicies::TenantId))?,
            "tenant_policies.tenant_id",
        )?,
        policies: D::text(row, col(TenantPolicies::Policies))?,
        version: D::int(row, col(TenantPolicies::Version))?,
        etag: D::text(row, col(TenantPolicies::Etag))?,
        updated_at: from_micros(D::int(row, col(TenantPolicies::UpdatedAt))?)?,
        updated_by: D::text(row, col(TenantPolicies::UpdatedBy))?,
    })
}

/// The scope's document, locked for the rest of the transaction.
async fn lock_current<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
) -> StoreResult<Option<TenantPolicy>> {
    let stmt = select_policy(scope).lock(LockType::Update).take();
    D::fetch_optional(conn, D::render(&stmt))
        .await?
        .as_ref()
        .map(decode::<D>)
        .transpose()
}

/// `If-Match`: with an expected etag, the current document must exist and carry it.
fn check_precondition(current: Option<&TenantPolicy>, if_match: Option<&str>) -> StoreResult<()> {
    match if_match {
        Some(expected) if current.is_none_or(|c| c.etag != expected) => Err(StoreError::Conflict {
            constraint: POLICY_ETAG_MISMATCH.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[async_trait]
impl<D: Exec> PolicyStore for SqlPolicyStore<D> {
    async fn get_policy(&self, scope: &TenantScope) -> StoreResult<Option<TenantPolicy>> {
        let mut conn = acquire::<D>(&self.pool).await?;
        D::fetch_optional(&mut conn, D::render(&select_policy(scope)))
            .await?
            .as_ref()
            .map(decode::<D>)
            .transpose()
    }

    async fn policy_etag(&self, scope: &TenantScope) -> StoreResult<Option<String>> {
        let stmt = Query::select()
            .column(TenantPolicies::Etag)
            .from(TenantPolicies::Table)
            .and_where(Expr::col(TenantPolicies::TenantId).eq(tenant_of(scope)))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::fetch_optional(&mut conn, D::render(&stmt))
            .await?
            .map(|row| D::text(&row, col(TenantPolicies::Etag)))
            .transpose()
    }

    async fn put_policy(
        &self,
        scope: &TenantScope,
        policies: String,
        if_match: Option<&str>,
        meta: &AuditMeta,
    ) -> StoreResult<TenantPolicy> {
        let at = now()?;
        let micros = to_micros(at)?;
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = lock_current::<D>(&mut tx, scope).await?;
        check_precondition(old.as_ref(), if_match)?;
        let doc = TenantPolicy {
            tenant_id: scope.tenant_id(),
            policies,
            version: old.as_ref().map_or(1, |o| o.version + 1),
            etag: uuid::Uuid::now_v7().to_string(),
            updated_at: at,
            updated_by: meta.actor.clone(),
        };
        let written = if old.is_some() {
            let stmt = Query::update()
                .table(TenantPolicies::Table)
                .value(TenantPolicies::Policies, doc.policies.as_str())
                .value(TenantPolicies::Version, doc.version)
                .value(TenantPolicies::Etag, doc.etag.as_str())
                .value(TenantPolicies::UpdatedAt, micros)
                .value(TenantPolicies::UpdatedBy, doc.updated_by.as_str())
                .and_where(Expr::col(TenantPolicies::TenantId).eq(tenant_of(scope)))
                .take();
            D::execute(&mut tx, D::render(&stmt)).await?
        } else {
            let stmt = Query::insert()
                .into_table(TenantPolicies::Table)
                .columns([
                    TenantPolicies::TenantId,
                    TenantPolicies::Policies,
                    TenantPolicies::Version,
                    TenantPolicies::Etag,
                    TenantPolicies::UpdatedAt,
                    TenantPolicies::UpdatedBy,
                ])
                .values([
                    tenant_of(scope).into(),
                    doc.policies.as_str().into(),
                    doc.version.into(),
                    doc.etag.as_str().into(),
                    micros.into(),
                    doc.updated_by.as_str().into(),
                ])
                .map_err(|e| StoreError::Internal(Box::new(e)))?
                .take();
            D::execute(&mut tx, D::render(&stmt)).await?
        };
        if written != 1 {
            return Err(StoreError::internal("policy write touched no row"));
        }
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            AuditEvent {
                action: "policy.update".to_owned(),
                resource: "policy".to_owned(),
                record_id: Some(doc.version.to_string()),
                old: old.as_ref().map(policy_json),
                new: Some(policy_json(&doc)),
            },
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(doc)
    }

    async fn delete_policy(
        &self,
        scope: &TenantScope,
        if_match: Option<&str>,
        meta: &AuditMeta,
    ) -> StoreResult<()> {
        let mut tx = begin_write::<D>(&self.pool).await?;
        let Some(old) = lock_current::<D>(&mut tx, scope).await? else {
            return Err(StoreError::NotFound);
        };
        check_precondition(Some(&old), if_match)?;
        let stmt = Query::delete()
            .from_table(TenantPolicies::Table)
            .and_where(Expr::col(TenantPolicies::TenantId).eq(tenant_of(scope)))
            .take();
        D::execute(&mut tx, D::render(&stmt)).await?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            AuditEvent {
                action: "policy.delete".to_owned(),
                resource: "policy".to_owned(),
                record_id: Some(old.version.to_string()),
                old: Some(policy_json(&old)),
                new: None,
            },
        )
        .await?;
        commit::<D>(tx).await
    }
}
