//! [`ApiKeyStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - SECURITY: every statement but the authentication lookup by prefix filters by
//!   `tenant_id = scope.tenant_id()`; a key of another tenant is `None` on reads and `NotFound` on writes.
//! - SECURITY: audit entries describe a key by id, name, prefix, capabilities, allowed IPs and times;
//!   never by its hash.
//! - Rotation locks the old row, checks it is live, shortens its life to the grace period and inserts
//!   the successor in one write transaction.

use async_trait::async_trait;
use palisade_authz::{SystemScope, TenantScope};
use palisade_store::{
    ApiKey, ApiKeyStore, AuditEvent, AuditMeta, KeyRateLimit, NewApiKey, Page, PageRequest,
    StoreError, StoreResult,
};
use sea_query::{CaseStatement, Cond, Expr, ExprTrait, LockType, Query, SelectStatement};
use time::OffsetDateTime;

use crate::audit::append;
use crate::codec::{
    fetch_keyset_page, from_json_list, from_micros, now, opt_from_micros, parse_stored,
    to_json_list, to_micros,
};
use crate::dialect::{Conn, DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{ApiKeys, col};

/// API keys over one dialect's pool.
pub(crate) struct SqlApiKeyStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlApiKeyStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// A key as its audit entries show it: never the hash.
fn key_json(k: &ApiKey) -> serde_json::Value {
    let t = |v: Option<OffsetDateTime>| v.and_then(|t| to_micros(t).ok());
    serde_json::json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "created_by": k.created_by.to_string(),
        "capabilities": k.capabilities,
        "allowed_ips": k.allowed_ips,
        "expires_at": t(k.expires_at),
        "revoked_at": t(k.revoked_at),
        "rotated_from": k.rotated_from,
        "grace_until": t(k.grace_until),
        "rate_limit": k.rate_limit.map(|r| serde_json::json!({
            "per_second": r.per_second,
            "burst": r.burst,
        })),
    })
}

/// The audit event of a key change.
fn key_event(action: &str, id: &str, old: Option<&ApiKey>, new: Option<&ApiKey>) -> AuditEvent {
    AuditEvent {
        action: action.to_owned(),
        resource: "api_key".to_owned(),
        record_id: Some(id.to_owned()),
        old: old.map(key_json),
        new: new.map(key_json),
    }
}

const COLUMNS: [ApiKeys; 16] = [
    ApiKeys::Id,
    ApiKeys::TenantId,
    ApiKeys::CreatedBy,
    ApiKeys::Name,
    ApiKeys::Prefix,
    ApiKeys::SecretHash,
    ApiKeys::Capabilities,
    ApiKeys::AllowedIps,
    ApiKeys::ExpiresAt,
    ApiKeys::CreatedAt,
    ApiKeys::LastUsedAt,
    ApiKeys::RevokedAt,
    ApiKeys::RotatedFrom,
    ApiKeys::GraceUntil,
    ApiKeys::RateLimitPerSecond,
    ApiKeys::RateLimitBurst,
];

/// Keys per `record_api_key_uses` statement (three bound values each, well under every backend's
/// parameter limit).
const USES_PER_STATEMENT: usize = 500;

/// `SELECT <key columns> FROM api_keys` (unscoped: callers add the tenant filter, or are the
/// documented authentication lookup).
fn select_keys() -> SelectStatement {
    Query::select().columns(COLUMNS).from(ApiKeys::Table).take()
}

/// [`select_keys`] within the scope's tenant.
fn select_scoped(scope: &TenantScope) -> SelectStatement {
    select_keys()
        .and_where(Expr::col(ApiKeys::TenantId).eq(scope.tenant_id().to_string()))
        .take()
}

fn decode<D: Exec>(row: &DbRow<D>) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: D::text(row, col(ApiKeys::Id))?,
        tenant_id: parse_stored(&D::text(row, col(ApiKeys::TenantId))?, "api_keys.tenant_id")?,
        created_by: parse_stored(
            &D::text(row, col(ApiKeys::CreatedBy))?,
            "api_keys.created_by",
        )?,
        name: D::text(row, col(ApiKeys::Name))?,
        prefix: D::text(row, col(ApiKeys::Prefix))?,
        secret_hash: D::text(row, col(ApiKeys::SecretHash))?,
        capabilities: from_json_list(
            &D::text(row, col(ApiKeys::Capabilities))?,
            "api_keys.capabilities",
        )?,
        allowed_ips: from_json_list(
            &D::text(row, col(ApiKeys::AllowedIps))?,
            "api_keys.allowed_ips",
        )?,
        expires_at: opt_from_micros(D::opt_int(row, col(ApiKeys::ExpiresAt))?)?,
        created_at: from_micros(D::int(row, col(ApiKeys::CreatedAt))?)?,
        last_used_at: opt_from_micros(D::opt_int(row, col(ApiKeys::LastUsedAt))?)?,
        revoked_at: opt_from_micros(D::opt_int(row, col(ApiKeys::RevokedAt))?)?,
        rotated_from: D::opt_text(row, col(ApiKeys::RotatedFrom))?,
        grace_until: opt_from_micros(D::opt_int(row, col(ApiKeys::GraceUntil))?)?,
        rate_limit: decode_rate_limit(
            D::opt_int(row, col(ApiKeys::RateLimitPerSecond))?,
            D::opt_int(row, col(ApiKeys::RateLimitBurst))?,
        )?,
    })
}

/// Both columns set, or neither; anything else (or a value out of range) is a corrupt row.
fn decode_rate_limit(
    per_second: Option<i64>,
    burst: Option<i64>,
) -> StoreResult<Option<KeyRateLimit>> {
    let corrupt = || StoreError::internal("stored api_keys.rate_limit does not decode");
    match (per_second, burst) {
        (None, None) => Ok(None),
        (Some(p), Some(b)) => Ok(Some(KeyRateLimit {
            per_second: u32::try_from(p).map_err(|_| corrupt())?,
            burst: u32::try_from(b).map_err(|_| corrupt())?,
        })),
        _ => Err(corrupt()),
    }
}

fn opt_micros(t: Option<OffsetDateTime>) -> StoreResult<Option<i64>> {
    t.map(to_micros).transpose()
}

/// A new row for `new` in the scope's tenant, and its insert statement.
fn build_insert(
    scope: &TenantScope,
    new: NewApiKey,
    rotated_from: Option<String>,
) -> StoreResult<(ApiKey, sea_query::InsertStatement)> {
    let at = now()?;
    let mut capabilities = new.capabilities;
    capabilities.sort();
    capabilities.dedup();
    let key = ApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: scope.tenant_id(),
        created_by: new.created_by,
        name: new.name,
        prefix: new.prefix,
        secret_hash: new.secret_hash,
        capabilities,
        allowed_ips: new.allowed_ips,
        expires_at: new
            .expires_at
            .map(|t| to_micros(t).and_then(from_micros))
            .transpose()?,
        created_at: at,
        last_used_at: None,
        revoked_at: None,
        rotated_from,
        grace_until: None,
        rate_limit: new.rate_limit,
    };
    let stmt = Query::insert()
        .into_table(ApiKeys::Table)
        .columns(COLUMNS)
        .values([
            key.id.as_str().into(),
            key.tenant_id.to_string().into(),
            key.created_by.to_string().into(),
            key.name.as_str().into(),
            key.prefix.as_str().into(),
            key.secret_hash.as_str().into(),
            to_json_list(&key.capabilities)?.into(),
            to_json_list(&key.allowed_ips)?.into(),
            opt_micros(key.expires_at)?.into(),
            to_micros(at)?.into(),
            Option::<i64>::None.into(),
            Option::<i64>::None.into(),
            key.rotated_from.clone().into(),
            Option::<i64>::None.into(),
            key.rate_limit.map(|r| i64::from(r.per_second)).into(),
            key.rate_limit.map(|r| i64::from(r.burst)).into(),
        ])
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .take();
    Ok((key, stmt))
}

async fn load<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    id: &str,
    lock: bool,
) -> StoreResult<Option<ApiKey>> {
    let mut stmt = select_scoped(scope)
        .and_where(Expr::col(ApiKeys::Id).eq(id))
        .take();
    if lock {
        stmt.lock(LockType::Update);
    }
    D::fetch_optional(conn, D::render(&stmt))
        .await?
        .as_ref()
        .map(decode::<D>)
        .transpose()
}

#[async_trait]
impl<D: Exec> ApiKeyStore for SqlApiKeyStore<D> {
    async fn create_api_key(
        &self,
        scope: &TenantScope,
        new: NewApiKey,
        meta: &AuditMeta,
    ) -> StoreResult<ApiKey> {
        let (key, stmt) = build_insert(scope, new, None)?;
        let mut tx = begin_write::<D>(&self.pool).await?;
        D::execute(&mut tx, D::render(&stmt)).await?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            key_event("api_key.create", &key.id, None, Some(&key)),
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(key)
    }

    async fn get_api_key(&self, scope: &TenantScope, id: &str) -> StoreResult<Option<ApiKey>> {
        let mut conn = acquire::<D>(&self.pool).await?;
        load::<D>(&mut conn, scope, id, false).await
    }

    async fn list_api_keys(
        &self,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        fetch_keyset_page::<D, _, _>(
            &self.pool,
            select_scoped(scope),
            ApiKeys::Id,
            page,
            decode::<D>,
            |k| k.id.clone(),
        )
        .await
    }

    async fn revoke_api_key(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &AuditMeta,
    ) -> StoreResult<()> {
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = load::<D>(&mut tx, scope, id, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        if old.revoked_at.is_some() {
            return Ok(());
        }
        let at = now()?;
        let update = Query::update()
            .table(ApiKeys::Table)
            .value(ApiKeys::RevokedAt, to_micros(at)?)
            .and_where(Expr::col(ApiKeys::TenantId).eq(scope.tenant_id().to_string()))
            .and_where(Expr::col(ApiKeys::Id).eq(id))
            .take();
        if D::execute(&mut tx, D::render(&update)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let new = ApiKey {
            revoked_at: Some(at),
            ..old.clone()
        };
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            key_event("api_key.revoke", id, Some(&old), Some(&new)),
        )
        .await?;
        commit::<D>(tx).await
    }

    async fn rotate_api_key(
        &self,
        scope: &TenantScope,
        id: &str,
        new: NewApiKey,
        grace_until: OffsetDateTime,
        meta: &AuditMeta,
    ) -> StoreResult<ApiKey> {
        let at = now()?;
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = load::<D>(&mut tx, scope, id, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        if !old.is_live(at) {
            return Err(StoreError::NotFound);
        }
        let grace = Ord::max(
            old.grace_until
                .map_or(grace_until, |g| Ord::min(g, grace_until)),
            at,
        );
        let grace = from_micros(to_micros(grace)?)?;
        let update = Query::update()
            .table(ApiKeys::Table)
            .value(ApiKeys::GraceUntil, to_micros(grace)?)
            .and_where(Expr::col(ApiKeys::TenantId).eq(scope.tenant_id().to_string()))
            .and_where(Expr::col(ApiKeys::Id).eq(id))
            .take();
        if D::execute(&mut tx, D::render(&update)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let (key, insert) = build_insert(scope, new, Some(old.id.clone()))?;
        D::execute(&mut tx, D::render(&insert)).await?;
        let old_after = ApiKey {
            grace_until: Some(grace),
            ..old.clone()
        };
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            key_event("api_key.rotate", id, Some(&old), Some(&old_after)),
        )
        .await?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            key_event("api_key.create", &key.id, None, Some(&key)),
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(key)
    }

    async fn find_api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<ApiKey>> {
        // SECURITY: the documented unscoped authentication lookup (see the trait).
        let stmt = select_keys()
            .and_where(Expr::col(ApiKeys::Prefix).eq(prefix))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::fetch_optional(&mut conn, D::render(&stmt))
            .await?
            .as_ref()
            .map(decode::<D>)
            .transpose()
    }

    async fn record_api_key_uses(
        &self,
        _system: &SystemScope,
        uses: &[(String, OffsetDateTime)],
    ) -> StoreResult<u64> {
        let mut updated = 0;
        for chunk in uses.chunks(USES_PER_STATEMENT) {
            // UPDATE api_keys SET last_used_at = CASE WHEN id = ? AND (last_used_at IS NULL OR
            // last_used_at < ?) THEN ? ... ELSE last_used_at END WHERE id IN (...): one statement,
            // and a use never moves `last_used_at` back (instances flush in any order).
            let mut case = CaseStatement::new();
            let mut ids = Vec::with_capacity(chunk.len());
            for (id, at) in chunk {
                let at = to_micros(*at)?;
                case = case.case(
                    Cond::all().add(Expr::col(ApiKeys::Id).eq(id.as_str())).add(
                        Cond::any()
                            .add(Expr::col(ApiKeys::LastUsedAt).is_null())
                            .add(Expr::col(ApiKeys::LastUsedAt).lt(at)),
                    ),
                    Expr::val(at),
                );
                ids.push(id.as_str());
            }
            let case: Expr = case.finally(Expr::col(ApiKeys::LastUsedAt)).into();
            let stmt = Query::update()
                .table(ApiKeys::Table)
                .value(ApiKeys::LastUsedAt, case)
                .and_where(Expr::col(ApiKeys::Id).is_in(ids))
                .take();
            let mut conn = acquire::<D>(&self.pool).await?;
            updated += D::execute(&mut conn, D::render(&stmt)).await?;
        }
        Ok(updated)
    }
}
