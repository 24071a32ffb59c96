//! [`TenantStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - SECURITY: scoped reads and writes (`get_tenant`, `list_tenants`, `update_tenant`) filter by the
//!   scope's subtree with `substr(path, 1, <len>) = <scope path>`, an exact prefix test with no wildcard
//!   characters to escape. The scope's path is checked first ([`subtree_prefix`]): it must be a
//!   well-formed materialised path ending in the scope's own id, so an empty or malformed path can
//!   never widen the filter to every tenant.
//! - Only `resolve_tenant` and `resolve_tenant_by_slug` are unscoped; authorization needs them.
//! - Because ids are unique and a path ending in `/<id>/` can only be a prefix of real paths if it *is*
//!   that tenant's real path, a checked scope path selects exactly the scope's subtree or nothing.
//! - A child's path is its parent's stored path plus its own id and `/` (the insert only happens when the
//!   parent still has the path the scope carries); the system tenant is the only root.

use async_trait::async_trait;
use palisade_authz::{SystemScope, TenantScope};
use palisade_domain::{Slug, TenantId, TenantKind};
use palisade_store::{
    AuditEvent, AuditMeta, NewTenant, Page, PageRequest, StoreError, StoreResult, Tenant,
    TenantPatch, TenantStore,
};
use sea_query::{Cond, Expr, ExprTrait, Func, LockType, Query, SelectStatement};
use time::OffsetDateTime;

use crate::audit::append;
use crate::codec::{
    fetch_keyset_page, from_json_list, from_micros, now, parse_stored, to_json_list, to_micros,
};
use crate::dialect::{DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{Tenants, col};

/// Table alias of the tenant being selected.
const T: &str = "t";
/// Table alias of a possible child in the `has_children` subquery.
const C: &str = "c";
/// Output name of the `has_children` expression.
const HAS_CHILDREN: &str = "has_children";

/// Tenants over one dialect's pool.
pub(crate) struct SqlTenantStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlTenantStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// The scope's materialised path, checked to be safe as a subtree prefix.
///
/// SECURITY: the prefix decides which rows a scope sees. It must start and end with `/` and its last
/// segment must be the scope's own tenant id; anything else (empty, truncated, foreign) is refused.
fn subtree_prefix(scope: &TenantScope) -> StoreResult<&str> {
    let path = scope.tenant_path();
    let own_segment = format!("/{}/", scope.tenant_id());
    if path.starts_with('/') && path.ends_with(&own_segment) {
        Ok(path)
    } else {
        Err(StoreError::internal(
            "tenant scope carries a malformed path",
        ))
    }
}

/// `substr(<path column>, 1, len(prefix)) = prefix`: the column lies within the prefix's subtree.
fn within_subtree(path_column: Expr, prefix: &str) -> StoreResult<Expr> {
    // Bound as a 32-bit integer: PostgreSQL's substr takes `integer` and will not narrow a bigint.
    let len =
        i32::try_from(prefix.len()).map_err(|_| StoreError::internal("tenant path too long"))?;
    Ok(
        Expr::from(Func::cust("substr").args([path_column, Expr::val(1i32), Expr::val(len)]))
            .eq(prefix),
    )
}

/// `SELECT t.<columns>, EXISTS (SELECT 1 FROM tenants c WHERE c.parent_id = t.id) AS has_children
/// FROM tenants t`: the one projection every tenant read uses, decoded by [`decode_tenant`].
fn select_tenants() -> SelectStatement {
    let children = Query::select()
        .expr(Expr::cust("1"))
        .from_as(Tenants::Table, C)
        .and_where(Expr::col((C, Tenants::ParentId)).equals((T, Tenants::Id)))
        .take();
    Query::select()
        .columns(
            [
                Tenants::Id,
                Tenants::Slug,
                Tenants::Name,
                Tenants::Kind,
                Tenants::ParentId,
                Tenants::Path,
                Tenants::CreatedAt,
                Tenants::UpdatedAt,
                Tenants::AllowedIps,
            ]
            .map(|c| (T, c)),
        )
        .expr_as(Expr::exists(children), HAS_CHILDREN)
        .from_as(Tenants::Table, T)
        .take()
}

/// A row of [`select_tenants`] as a [`Tenant`].
fn decode_tenant<D: Exec>(row: &DbRow<D>) -> StoreResult<Tenant> {
    let kind = D::text(row, col(Tenants::Kind))?;
    let parent_id = D::opt_text(row, col(Tenants::ParentId))?;
    Ok(Tenant {
        id: parse_stored(&D::text(row, col(Tenants::Id))?, "tenants.id")?,
        slug: Slug::parse(&D::text(row, col(Tenants::Slug))?)
            .map_err(|_| StoreError::internal("stored tenants.slug does not decode"))?,
        name: D::text(row, col(Tenants::Name))?,
        kind: TenantKind::parse(&kind)
            .ok_or_else(|| StoreError::internal("stored tenants.kind does not decode"))?,
        parent_id: parent_id
            .map(|p| parse_stored(&p, "tenants.parent_id"))
            .transpose()?,
        path: D::text(row, col(Tenants::Path))?,
        has_children: D::flag(row, HAS_CHILDREN)?,
        allowed_ips: from_json_list(
            &D::text(row, col(Tenants::AllowedIps))?,
            "tenants.allowed_ips",
        )?,
        created_at: from_micros(D::int(row, col(Tenants::CreatedAt))?)?,
        updated_at: from_micros(D::int(row, col(Tenants::UpdatedAt))?)?,
    })
}

/// A tenant as its audit entries show it.
fn tenant_json(t: &Tenant) -> serde_json::Value {
    serde_json::json!({
        "id": t.id.to_string(),
        "slug": t.slug.as_str(),
        "name": t.name,
        "kind": t.kind.as_str(),
        "parent_id": t.parent_id.map(|p| p.to_string()),
        "allowed_ips": t.allowed_ips,
    })
}

impl<D: Exec> SqlTenantStore<D> {
    /// Inserts a new tenant row and returns it as stored. With a parent, `NotFound` when the parent no
    /// longer exists at the given path.
    async fn insert(
        &self,
        slug: Slug,
        name: String,
        kind: TenantKind,
        allowed_ips: Vec<String>,
        parent: Option<(TenantId, &str)>,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant> {
        let id = TenantId::new();
        let path = match parent {
            Some((_, parent_path)) => format!("{parent_path}{id}/"),
            None => format!("/{id}/"),
        };
        let parent_id = parent.map(|(p, _)| p);
        let at: OffsetDateTime = now()?;
        let micros = to_micros(at)?;
        let row: [Expr; 9] = [
            id.to_string().into(),
            slug.as_str().into(),
            name.as_str().into(),
            kind.as_str().into(),
            parent_id.map(|p| p.to_string()).into(),
            path.as_str().into(),
            micros.into(),
            micros.into(),
            to_json_list(&allowed_ips)?.into(),
        ];
        let mut stmt = Query::insert();
        stmt.into_table(Tenants::Table).columns([
            Tenants::Id,
            Tenants::Slug,
            Tenants::Name,
            Tenants::Kind,
            Tenants::ParentId,
            Tenants::Path,
            Tenants::CreatedAt,
            Tenants::UpdatedAt,
            Tenants::AllowedIps,
        ]);
        match parent {
            None => stmt.values(row),
            // `INSERT ... SELECT <row> FROM tenants WHERE id = <parent> AND path = <parent path>`: the
            // row is written only if the parent still exists at the path the scope carries, so a stale
            // or forged scope can never graft a child with an inconsistent path.
            Some((parent_id, parent_path)) => stmt.select_from(
                Query::select()
                    .exprs(row)
                    .from(Tenants::Table)
                    .and_where(Expr::col(Tenants::Id).eq(parent_id.to_string()))
                    .and_where(Expr::col(Tenants::Path).eq(parent_path))
                    .take(),
            ),
        }
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
        let tenant = Tenant {
            id,
            slug,
            name,
            kind,
            parent_id,
            path,
            has_children: false,
            allowed_ips,
            created_at: at,
            updated_at: at,
        };
        let mut tx = begin_write::<D>(&self.pool).await?;
        if D::execute(&mut tx, D::render(&stmt)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        // The entry goes to the acting tenant's chain: the parent's, or the system tenant's own.
        append::<D>(
            &mut tx,
            parent_id.unwrap_or(id),
            meta,
            AuditEvent {
                action: "tenant.create".to_owned(),
                resource: "tenant".to_owned(),
                record_id: Some(id.to_string()),
                old: None,
                new: Some(tenant_json(&tenant)),
            },
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(tenant)
    }
}

#[async_trait]
impl<D: Exec> TenantStore for SqlTenantStore<D> {
    async fn resolve_tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>> {
        let stmt = select_tenants()
            .and_where(Expr::col((T, Tenants::Id)).eq(id.to_string()))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let row = D::fetch_optional(&mut conn, D::render(&stmt)).await?;
        row.as_ref().map(decode_tenant::<D>).transpose()
    }

    async fn resolve_tenant_by_slug(&self, slug: &Slug) -> StoreResult<Option<Tenant>> {
        let stmt = select_tenants()
            .and_where(Expr::col((T, Tenants::Slug)).eq(slug.as_str()))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let row = D::fetch_optional(&mut conn, D::render(&stmt)).await?;
        row.as_ref().map(decode_tenant::<D>).transpose()
    }

    async fn create_system_tenant(
        &self,
        _system: &SystemScope,
        slug: Slug,
        name: String,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant> {
        // The partial unique index refuses a second system tenant (`tenants.kind`).
        self.insert(slug, name, TenantKind::System, Vec::new(), None, meta)
            .await
    }

    async fn create_child_tenant(
        &self,
        scope: &TenantScope,
        new: NewTenant,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant> {
        if new.kind == TenantKind::System {
            return Err(StoreError::internal(
                "a child tenant cannot be a system tenant",
            ));
        }
        let parent_path = subtree_prefix(scope)?;
        self.insert(
            new.slug,
            new.name,
            new.kind,
            new.allowed_ips,
            Some((scope.tenant_id(), parent_path)),
            meta,
        )
        .await
    }

    async fn get_tenant(&self, scope: &TenantScope, id: TenantId) -> StoreResult<Option<Tenant>> {
        let stmt = select_tenants()
            .and_where(Expr::col((T, Tenants::Id)).eq(id.to_string()))
            .and_where(within_subtree(
                Expr::col((T, Tenants::Path)),
                subtree_prefix(scope)?,
            )?)
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let row = D::fetch_optional(&mut conn, D::render(&stmt)).await?;
        row.as_ref().map(decode_tenant::<D>).transpose()
    }

    async fn list_tenants(
        &self,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> StoreResult<Page<Tenant>> {
        let stmt = select_tenants()
            .and_where(within_subtree(
                Expr::col((T, Tenants::Path)),
                subtree_prefix(scope)?,
            )?)
            .take();
        fetch_keyset_page::<D, _, _>(
            &self.pool,
            stmt,
            (T, Tenants::Id),
            page,
            decode_tenant::<D>,
            |t| t.id.to_string(),
        )
        .await
    }

    async fn update_tenant(
        &self,
        scope: &TenantScope,
        id: TenantId,
        patch: TenantPatch,
        meta: &AuditMeta,
    ) -> StoreResult<Tenant> {
        let prefix = subtree_prefix(scope)?;
        let mut values: Vec<(Tenants, Expr)> =
            vec![(Tenants::UpdatedAt, to_micros(now()?)?.into())];
        if let Some(name) = patch.name {
            values.push((Tenants::Name, name.into()));
        }
        if let Some(ips) = &patch.allowed_ips {
            values.push((Tenants::AllowedIps, to_json_list(ips)?.into()));
        }
        let update = Query::update()
            .table(Tenants::Table)
            .values(values)
            .cond_where(
                Cond::all()
                    .add(Expr::col(Tenants::Id).eq(id.to_string()))
                    .add(within_subtree(Expr::col(Tenants::Path), prefix)?),
            )
            .take();
        let select = select_tenants()
            .and_where(Expr::col((T, Tenants::Id)).eq(id.to_string()))
            .take();
        // Lock and read the old row, write, then read the row back in the same transaction.
        let mut tx = begin_write::<D>(&self.pool).await?;
        let before = select_tenants()
            .and_where(Expr::col((T, Tenants::Id)).eq(id.to_string()))
            .and_where(within_subtree(Expr::col((T, Tenants::Path)), prefix)?)
            .lock(LockType::Update)
            .take();
        let old = D::fetch_optional(&mut tx, D::render(&before))
            .await?
            .as_ref()
            .map(decode_tenant::<D>)
            .transpose()?
            .ok_or(StoreError::NotFound)?;
        if D::execute(&mut tx, D::render(&update)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let row = D::fetch_optional(&mut tx, D::render(&select))
            .await?
            .ok_or(StoreError::NotFound)?;
        let tenant = decode_tenant::<D>(&row)?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            AuditEvent {
                action: "tenant.update".to_owned(),
                resource: "tenant".to_owned(),
                record_id: Some(id.to_string()),
                old: Some(tenant_json(&old)),
                new: Some(tenant_json(&tenant)),
            },
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::PostgresDialect;
    use crate::sqlite::SqliteDialect;
    use palisade_authz::{InternalRole, SystemScope, TenantRef};

    fn scope_at(path: String, id: TenantId) -> TenantScope {
        SystemScope::internal(InternalRole::SelfCheck).tenant_scope(TenantRef {
            id,
            kind: TenantKind::Tenant,
            path,
            has_children: false,
        })
    }

    #[test]
    fn the_subtree_filter_is_a_bound_prefix_comparison_in_both_dialects() {
        let id = TenantId::new();
        let scope = scope_at(format!("/{}/{id}/", TenantId::new()), id);
        let prefix = subtree_prefix(&scope).unwrap();
        let stmt = select_tenants()
            .and_where(within_subtree(Expr::col((T, Tenants::Path)), prefix).unwrap())
            .take();
        let (sqlite, values) = SqliteDialect::render_with(&stmt);
        assert!(
            sqlite.contains(r#"substr("t"."path", ?, ?) = ?"#),
            "{sqlite}"
        );
        assert!(!sqlite.contains(prefix), "the prefix is bound, not spliced");
        assert!(
            values
                .0
                .iter()
                .any(|v| *v == sea_query::Value::from(prefix))
        );
        let (postgres, _) = PostgresDialect::render_with(&stmt);
        assert!(
            postgres.contains(r#"substr("t"."path", $1, $2) = $3"#),
            "{postgres}"
        );
        for sql in [sqlite, postgres] {
            assert!(!sql.to_ascii_uppercase().contains("LIKE"), "{sql}");
        }
    }

    #[test]
    fn a_scope_path_must_end_with_the_scopes_own_id() {
        let id = TenantId::new();
        let parent = TenantId::new();
        assert!(subtree_prefix(&scope_at(format!("/{parent}/{id}/"), id)).is_ok());
        for bad in [
            String::new(),
            "/".to_owned(),
            format!("/{parent}/"),
            format!("/{parent}/{id}"),
            format!("{parent}/{id}/"),
            format!("/{id}/{parent}/"),
        ] {
            assert!(
                subtree_prefix(&scope_at(bad.clone(), id)).is_err(),
                "{bad:?}"
            );
        }
    }
}
