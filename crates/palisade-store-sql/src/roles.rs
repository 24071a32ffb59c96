//! [`RoleStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - SECURITY: every statement filters by `tenant_id = scope.tenant_id()`, including the usage checks
//!   (users and inheriting roles of the same tenant only). A role of another tenant is invisible:
//!   `None` on reads, `NotFound` on writes.
//! - `inherits` and `capabilities` are JSON arrays, written sorted and de-duplicated (see `codec`).
//! - A delete decides "in use" and deletes in one write transaction, after locking the role's row
//!   (SQLite's `BEGIN IMMEDIATE` serialises it with every other writer). Should a concurrent write on
//!   PostgreSQL still assign a role that is being deleted, the dangling name grants nothing: resolution
//!   treats an unknown role as granting nothing.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_store::{
    AuditEvent, AuditMeta, CustomRole, NewRole, Page, PageRequest, ROLE_IN_USE, RolePatch,
    RoleStore, StoreError, StoreResult,
};
use sea_query::{Expr, ExprTrait, LockType, Order, Query, SelectStatement};

use crate::audit::append;
use crate::codec::{
    fetch_keyset_page, from_json_list, from_micros, now, parse_stored, to_json_list, to_micros,
};
use crate::dialect::{Conn, DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{CustomRoles, UserRoles, col};

/// Custom roles over one dialect's pool.
pub(crate) struct SqlRoleStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlRoleStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// A role as its audit entries show it.
fn role_json(r: &CustomRole) -> serde_json::Value {
    serde_json::json!({
        "name": r.name,
        "inherits": r.inherits,
        "capabilities": r.capabilities,
    })
}

/// The audit event of a role change.
fn role_event(
    action: &str,
    name: &str,
    old: Option<&CustomRole>,
    new: Option<&CustomRole>,
) -> AuditEvent {
    AuditEvent {
        action: action.to_owned(),
        resource: "role".to_owned(),
        record_id: Some(name.to_owned()),
        old: old.map(role_json),
        new: new.map(role_json),
    }
}

/// The scope's tenant id as stored.
fn tenant_of(scope: &TenantScope) -> String {
    scope.tenant_id().to_string()
}

/// Sorts and de-duplicates names, the form they are stored and returned in.
fn normalise(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

/// `SELECT <role columns> FROM custom_roles WHERE tenant_id = <scope>`: every role read starts here.
fn select_roles(scope: &TenantScope) -> SelectStatement {
    Query::select()
        .columns([
            CustomRoles::TenantId,
            CustomRoles::Name,
            CustomRoles::Inherits,
            CustomRoles::Capabilities,
            CustomRoles::CreatedAt,
            CustomRoles::UpdatedAt,
        ])
        .from(CustomRoles::Table)
        .and_where(Expr::col(CustomRoles::TenantId).eq(tenant_of(scope)))
        .take()
}

/// A row of [`select_roles`] as a [`CustomRole`].
fn decode_role<D: Exec>(row: &DbRow<D>) -> StoreResult<CustomRole> {
    Ok(CustomRole {
        tenant_id: parse_stored(
            &D::text(row, col(CustomRoles::TenantId))?,
            "custom_roles.tenant_id",
        )?,
        name: D::text(row, col(CustomRoles::Name))?,
        inherits: from_json_list(
            &D::text(row, col(CustomRoles::Inherits))?,
            "custom_roles.inherits",
        )?,
        capabilities: from_json_list(
            &D::text(row, col(CustomRoles::Capabilities))?,
            "custom_roles.capabilities",
        )?,
        created_at: from_micros(D::int(row, col(CustomRoles::CreatedAt))?)?,
        updated_at: from_micros(D::int(row, col(CustomRoles::UpdatedAt))?)?,
    })
}

/// The role `name` of the scope's tenant.
async fn load_role<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    name: &str,
) -> StoreResult<Option<CustomRole>> {
    let stmt = select_roles(scope)
        .and_where(Expr::col(CustomRoles::Name).eq(name))
        .take();
    D::fetch_optional(conn, D::render(&stmt))
        .await?
        .as_ref()
        .map(decode_role::<D>)
        .transpose()
}

/// Whether a user of the scope's tenant holds `name`, or another role of the tenant inherits it.
async fn in_use<D: Exec>(conn: &mut Conn<D>, scope: &TenantScope, name: &str) -> StoreResult<bool> {
    let held = Query::select()
        .column(UserRoles::Role)
        .from(UserRoles::Table)
        .and_where(Expr::col(UserRoles::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(UserRoles::Role).eq(name))
        .limit(1)
        .take();
    if D::fetch_optional(conn, D::render(&held)).await?.is_some() {
        return Ok(true);
    }
    // `inherits` is JSON text; it is decoded and compared here rather than matched in SQL, which keeps
    // the query portable and exact (a LIKE pattern would treat `_` in names as a wildcard).
    let inheriting = Query::select()
        .column(CustomRoles::Inherits)
        .from(CustomRoles::Table)
        .and_where(Expr::col(CustomRoles::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(CustomRoles::Name).ne(name))
        .take();
    for row in D::fetch_all(conn, D::render(&inheriting)).await? {
        let inherits = from_json_list(
            &D::text(&row, col(CustomRoles::Inherits))?,
            "custom_roles.inherits",
        )?;
        if inherits.iter().any(|p| p == name) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[async_trait]
impl<D: Exec> RoleStore for SqlRoleStore<D> {
    async fn create_role(
        &self,
        scope: &TenantScope,
        new: NewRole,
        meta: &AuditMeta,
    ) -> StoreResult<CustomRole> {
        let at = now()?;
        let micros = to_micros(at)?;
        let role = CustomRole {
            tenant_id: scope.tenant_id(),
            name: new.name,
            inherits: normalise(new.inherits),
            capabilities: normalise(new.capabilities),
            created_at: at,
            updated_at: at,
        };
        let stmt = Query::insert()
            .into_table(CustomRoles::Table)
            .columns([
                CustomRoles::TenantId,
                CustomRoles::Name,
                CustomRoles::Inherits,
                CustomRoles::Capabilities,
                CustomRoles::CreatedAt,
                CustomRoles::UpdatedAt,
            ])
            .values([
                tenant_of(scope).into(),
                role.name.as_str().into(),
                to_json_list(&role.inherits)?.into(),
                to_json_list(&role.capabilities)?.into(),
                micros.into(),
                micros.into(),
            ])
            .map_err(|e| StoreError::Internal(Box::new(e)))?
            .take();
        let mut tx = begin_write::<D>(&self.pool).await?;
        D::execute(&mut tx, D::render(&stmt)).await?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            role_event("role.create", &role.name, None, Some(&role)),
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(role)
    }

    async fn get_role(&self, scope: &TenantScope, name: &str) -> StoreResult<Option<CustomRole>> {
        let mut conn = acquire::<D>(&self.pool).await?;
        load_role::<D>(&mut conn, scope, name).await
    }

    async fn list_roles(
        &self,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> StoreResult<Page<CustomRole>> {
        fetch_keyset_page::<D, _, _>(
            &self.pool,
            select_roles(scope),
            CustomRoles::Name,
            page,
            decode_role::<D>,
            |r| r.name.clone(),
        )
        .await
    }

    async fn all_roles(&self, scope: &TenantScope) -> StoreResult<Vec<CustomRole>> {
        let stmt = select_roles(scope)
            .order_by(CustomRoles::Name, Order::Asc)
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::fetch_all(&mut conn, D::render(&stmt))
            .await?
            .iter()
            .map(decode_role::<D>)
            .collect()
    }

    async fn update_role(
        &self,
        scope: &TenantScope,
        name: &str,
        patch: RolePatch,
        meta: &AuditMeta,
    ) -> StoreResult<CustomRole> {
        let mut update = Query::update();
        update
            .table(CustomRoles::Table)
            .value(CustomRoles::UpdatedAt, to_micros(now()?)?)
            .and_where(Expr::col(CustomRoles::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(CustomRoles::Name).eq(name));
        if let Some(inherits) = patch.inherits {
            update.value(CustomRoles::Inherits, to_json_list(&normalise(inherits))?);
        }
        if let Some(capabilities) = patch.capabilities {
            update.value(
                CustomRoles::Capabilities,
                to_json_list(&normalise(capabilities))?,
            );
        }
        // Lock and read the old row, write, then read back.
        let lock = select_roles(scope)
            .and_where(Expr::col(CustomRoles::Name).eq(name))
            .lock(LockType::Update)
            .take();
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = D::fetch_optional(&mut tx, D::render(&lock))
            .await?
            .as_ref()
            .map(decode_role::<D>)
            .transpose()?
            .ok_or(StoreError::NotFound)?;
        if D::execute(&mut tx, D::render(&update)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let role = load_role::<D>(&mut tx, scope, name)
            .await?
            .ok_or(StoreError::NotFound)?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            role_event("role.update", name, Some(&old), Some(&role)),
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(role)
    }

    async fn delete_role(
        &self,
        scope: &TenantScope,
        name: &str,
        meta: &AuditMeta,
    ) -> StoreResult<()> {
        let lock = select_roles(scope)
            .and_where(Expr::col(CustomRoles::Name).eq(name))
            .lock(LockType::Update)
            .take();
        let delete = Query::delete()
            .from_table(CustomRoles::Table)
            .and_where(Expr::col(CustomRoles::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(CustomRoles::Name).eq(name))
            .take();
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = D::fetch_optional(&mut tx, D::render(&lock))
            .await?
            .as_ref()
            .map(decode_role::<D>)
            .transpose()?
            .ok_or(StoreError::NotFound)?;
        if in_use::<D>(&mut tx, scope, name).await? {
            return Err(StoreError::Conflict {
                constraint: ROLE_IN_USE.to_owned(),
            });
        }
        D::execute(&mut tx, D::render(&delete)).await?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            role_event("role.delete", name, Some(&old), None),
        )
        .await?;
        commit::<D>(tx).await
    }

    async fn roles_in_use(&self, scope: &TenantScope, name: &str) -> StoreResult<bool> {
        let mut conn = acquire::<D>(&self.pool).await?;
        in_use::<D>(&mut conn, scope, name).await
    }
}
