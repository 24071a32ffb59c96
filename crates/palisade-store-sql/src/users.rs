//! [`UserStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - SECURITY: every statement, including the role reads and writes, filters by
//!   `tenant_id = scope.tenant_id()`. A user of another tenant (even a descendant) is invisible:
//!   `None` on reads, `NotFound` on writes.
//! - Roles live in `user_roles`, are written sorted and de-duplicated, and are read back sorted. A user
//!   and its roles are written in one transaction; deleting a user cascades to its roles.
//! - Deleting a user cascades (foreign keys) to its roles, MFA state, recovery codes, refresh-token
//!   families and tokens, and OTP challenges.
//! - Multi-statement writes run in a transaction that writes before it reads (see
//!   [`crate::dialect::begin_write`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_domain::{UserId, UserStatus};
use palisade_store::{
    AuditEvent, AuditMeta, NewUser, Page, PageRequest, StoreError, StoreResult, User, UserPatch,
    UserStore,
};
use sea_query::{Expr, ExprTrait, InsertStatement, LockType, Order, Query, SelectStatement};

use crate::audit::append;
use crate::codec::{fetch_keyset_page, from_micros, now, parse_stored, to_micros};
use crate::dialect::{Conn, DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{UserRoles, Users, col};

/// Users over one dialect's pool.
pub(crate) struct SqlUserStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlUserStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

/// A user as its audit entries show it.
fn user_json(u: &User) -> serde_json::Value {
    serde_json::json!({
        "id": u.id.to_string(),
        "email": u.email,
        "phone": u.phone,
        "status": u.status.as_str(),
        "roles": u.roles,
    })
}

/// The audit event of a user change.
fn user_event(action: &str, id: UserId, old: Option<&User>, new: Option<&User>) -> AuditEvent {
    AuditEvent {
        action: action.to_owned(),
        resource: "user".to_owned(),
        record_id: Some(id.to_string()),
        old: old.map(user_json),
        new: new.map(user_json),
    }
}

/// Locks the user's row (`FOR UPDATE` on PostgreSQL) and reads it with its roles; `NotFound`
/// outside the scope's tenant.
async fn lock_user<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    id: UserId,
) -> StoreResult<User> {
    let lock = Query::select()
        .column(Users::Id)
        .from(Users::Table)
        .and_where(Expr::col(Users::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(Users::Id).eq(id.to_string()))
        .lock(LockType::Update)
        .take();
    if D::fetch_optional(conn, D::render(&lock)).await?.is_none() {
        return Err(StoreError::NotFound);
    }
    load_user::<D>(conn, scope, id)
        .await?
        .ok_or(StoreError::NotFound)
}

/// The scope's tenant id as stored.
fn tenant_of(scope: &TenantScope) -> String {
    scope.tenant_id().to_string()
}

/// `SELECT <user columns> FROM users WHERE tenant_id = <scope>`: every user read starts here.
fn select_users(scope: &TenantScope) -> SelectStatement {
    Query::select()
        .columns([
            Users::Id,
            Users::TenantId,
            Users::Email,
            Users::Phone,
            Users::Status,
            Users::TokenVersion,
            Users::CreatedAt,
            Users::UpdatedAt,
        ])
        .from(Users::Table)
        .and_where(Expr::col(Users::TenantId).eq(tenant_of(scope)))
        .take()
}

/// A row of [`select_users`] as a [`User`], without its roles (filled in by [`with_roles`]).
fn decode_user<D: Exec>(row: &DbRow<D>) -> StoreResult<User> {
    let status = D::text(row, col(Users::Status))?;
    Ok(User {
        id: parse_stored(&D::text(row, col(Users::Id))?, "users.id")?,
        tenant_id: parse_stored(&D::text(row, col(Users::TenantId))?, "users.tenant_id")?,
        email: D::text(row, col(Users::Email))?,
        phone: D::opt_text(row, col(Users::Phone))?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| StoreError::internal("stored users.status does not decode"))?,
        roles: Vec::new(),
        token_version: D::int(row, col(Users::TokenVersion))?,
        created_at: from_micros(D::int(row, col(Users::CreatedAt))?)?,
        updated_at: from_micros(D::int(row, col(Users::UpdatedAt))?)?,
    })
}

/// Sorts and de-duplicates role names, the form they are stored and returned in.
fn normalise_roles(mut roles: Vec<String>) -> Vec<String> {
    roles.sort();
    roles.dedup();
    roles
}

/// `INSERT INTO user_roles ...` for a user's (normalised) roles; `None` when there are none.
fn insert_roles(
    scope: &TenantScope,
    user: UserId,
    roles: &[String],
) -> StoreResult<Option<InsertStatement>> {
    if roles.is_empty() {
        return Ok(None);
    }
    let mut stmt = Query::insert();
    stmt.into_table(UserRoles::Table).columns([
        UserRoles::TenantId,
        UserRoles::UserId,
        UserRoles::Role,
    ]);
    for role in roles {
        stmt.values([
            tenant_of(scope).into(),
            user.to_string().into(),
            role.as_str().into(),
        ])
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
    }
    Ok(Some(stmt))
}

/// Loads the roles of `users` (all of the scope's tenant) and attaches them, sorted.
async fn with_roles<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    mut users: Vec<User>,
) -> StoreResult<Vec<User>> {
    if users.is_empty() {
        return Ok(users);
    }
    let stmt = Query::select()
        .columns([UserRoles::UserId, UserRoles::Role])
        .from(UserRoles::Table)
        .and_where(Expr::col(UserRoles::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(UserRoles::UserId).is_in(users.iter().map(|u| u.id.to_string())))
        .order_by(UserRoles::UserId, Order::Asc)
        .order_by(UserRoles::Role, Order::Asc)
        .take();
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in D::fetch_all(conn, D::render(&stmt)).await? {
        by_user
            .entry(D::text(&row, col(UserRoles::UserId))?)
            .or_default()
            .push(D::text(&row, col(UserRoles::Role))?);
    }
    for user in &mut users {
        // Sorted again in Rust so the order never depends on a collation.
        user.roles = normalise_roles(by_user.remove(&user.id.to_string()).unwrap_or_default());
    }
    Ok(users)
}

/// The user with `id` in the scope's tenant, with roles.
async fn load_user<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    id: UserId,
) -> StoreResult<Option<User>> {
    let stmt = select_users(scope)
        .and_where(Expr::col(Users::Id).eq(id.to_string()))
        .take();
    let Some(row) = D::fetch_optional(conn, D::render(&stmt)).await? else {
        return Ok(None);
    };
    let user = decode_user::<D>(&row)?;
    Ok(with_roles::<D>(conn, scope, vec![user]).await?.pop())
}

impl<D: Exec> SqlUserStore<D> {
    /// The one user of the scope's tenant matching `filter` (a unique column), with its roles.
    async fn find_one(&self, scope: &TenantScope, filter: Expr) -> StoreResult<Option<User>> {
        let stmt = select_users(scope).and_where(filter).take();
        let mut conn = acquire::<D>(&self.pool).await?;
        let Some(row) = D::fetch_optional(&mut conn, D::render(&stmt)).await? else {
            return Ok(None);
        };
        let user = decode_user::<D>(&row)?;
        Ok(with_roles::<D>(&mut conn, scope, vec![user]).await?.pop())
    }
}

#[async_trait]
impl<D: Exec> UserStore for SqlUserStore<D> {
    async fn create_user(
        &self,
        scope: &TenantScope,
        new: NewUser,
        meta: &AuditMeta,
    ) -> StoreResult<User> {
        let at = now()?;
        let micros = to_micros(at)?;
        let user = User {
            id: UserId::new(),
            tenant_id: scope.tenant_id(),
            email: new.email,
            phone: new.phone,
            status: UserStatus::Active,
            roles: normalise_roles(new.roles),
            token_version: 0,
            created_at: at,
            updated_at: at,
        };
        let insert_user = Query::insert()
            .into_table(Users::Table)
            .columns([
                Users::Id,
                Users::TenantId,
                Users::Email,
                Users::Phone,
                Users::Status,
                Users::TokenVersion,
                Users::CreatedAt,
                Users::UpdatedAt,
            ])
            .values([
                user.id.to_string().into(),
                tenant_of(scope).into(),
                user.email.as_str().into(),
                user.phone.clone().into(),
                user.status.as_str().into(),
                user.token_version.into(),
                micros.into(),
                micros.into(),
            ])
            .map_err(|e| StoreError::Internal(Box::new(e)))?
            .take();
        let insert_roles = insert_roles(scope, user.id, &user.roles)?;

        let mut tx = begin_write::<D>(&self.pool).await?;
        D::execute(&mut tx, D::render(&insert_user)).await?;
        if let Some(stmt) = insert_roles {
            D::execute(&mut tx, D::render(&stmt)).await?;
        }
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            user_event("user.create", user.id, None, Some(&user)),
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(user)
    }

    async fn get_user(&self, scope: &TenantScope, id: UserId) -> StoreResult<Option<User>> {
        let mut conn = acquire::<D>(&self.pool).await?;
        load_user::<D>(&mut conn, scope, id).await
    }

    async fn find_user_by_email(
        &self,
        scope: &TenantScope,
        email: &str,
    ) -> StoreResult<Option<User>> {
        self.find_one(scope, Expr::col(Users::Email).eq(email))
            .await
    }

    async fn list_users(&self, scope: &TenantScope, page: &PageRequest) -> StoreResult<Page<User>> {
        let page = fetch_keyset_page::<D, _, _>(
            &self.pool,
            select_users(scope),
            Users::Id,
            page,
            decode_user::<D>,
            |u| u.id.to_string(),
        )
        .await?;
        let mut conn = acquire::<D>(&self.pool).await?;
        let items = with_roles::<D>(&mut conn, scope, page.items).await?;
        Ok(Page {
            items,
            next_after: page.next_after,
        })
    }

    async fn update_user(
        &self,
        scope: &TenantScope,
        id: UserId,
        patch: UserPatch,
        meta: &AuditMeta,
    ) -> StoreResult<User> {
        let mut update = Query::update();
        update
            .table(Users::Table)
            .value(Users::UpdatedAt, to_micros(now()?)?)
            .and_where(Expr::col(Users::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(Users::Id).eq(id.to_string()));
        if let Some(status) = patch.status {
            update.value(Users::Status, status.as_str());
        }
        if let Some(email) = &patch.email {
            update.value(Users::Email, email.as_str());
        }
        if let Some(phone) = &patch.phone {
            update.value(Users::Phone, phone.as_deref());
        }
        let replace_roles = match patch.roles {
            Some(roles) => {
                let delete = Query::delete()
                    .from_table(UserRoles::Table)
                    .and_where(Expr::col(UserRoles::TenantId).eq(tenant_of(scope)))
                    .and_where(Expr::col(UserRoles::UserId).eq(id.to_string()))
                    .take();
                Some((delete, insert_roles(scope, id, &normalise_roles(roles))?))
            }
            None => None,
        };

        // Lock the row and read the old state, write, then read back.
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = lock_user::<D>(&mut tx, scope, id).await?;
        if D::execute(&mut tx, D::render(&update)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some((delete, insert)) = replace_roles {
            D::execute(&mut tx, D::render(&delete)).await?;
            if let Some(insert) = insert {
                D::execute(&mut tx, D::render(&insert)).await?;
            }
        }
        let user = load_user::<D>(&mut tx, scope, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            user_event("user.update", id, Some(&old), Some(&user)),
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(user)
    }

    async fn delete_user(
        &self,
        scope: &TenantScope,
        id: UserId,
        meta: &AuditMeta,
    ) -> StoreResult<()> {
        // `user_roles` rows go with the user (ON DELETE CASCADE).
        let stmt = Query::delete()
            .from_table(Users::Table)
            .and_where(Expr::col(Users::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(Users::Id).eq(id.to_string()))
            .take();
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = lock_user::<D>(&mut tx, scope, id).await?;
        if D::execute(&mut tx, D::render(&stmt)).await? == 0 {
            return Err(StoreError::NotFound);
        }
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            user_event("user.delete", id, Some(&old), None),
        )
        .await?;
        commit::<D>(tx).await
    }

    async fn bump_token_version(
        &self,
        scope: &TenantScope,
        id: UserId,
        meta: &AuditMeta,
    ) -> StoreResult<i64> {
        // One statement: the increment and the version it produced cannot be separated, so concurrent
        // logouts each get their own version.
        let stmt = Query::update()
            .table(Users::Table)
            .value(
                Users::TokenVersion,
                Expr::col(Users::TokenVersion).add(1i64),
            )
            .and_where(Expr::col(Users::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(Users::Id).eq(id.to_string()))
            .returning_col(Users::TokenVersion)
            .take();
        let mut tx = begin_write::<D>(&self.pool).await?;
        let rows = D::fetch_all(&mut tx, D::render(&stmt)).await?;
        let row = rows.first().ok_or(StoreError::NotFound)?;
        let version = D::int(row, col(Users::TokenVersion))?;
        append::<D>(
            &mut tx,
            scope.tenant_id(),
            meta,
            AuditEvent {
                action: "user.logout_all".to_owned(),
                resource: "user".to_owned(),
                record_id: Some(id.to_string()),
                old: None,
                new: Some(serde_json::json!({ "token_version": version })),
            },
        )
        .await?;
        commit::<D>(tx).await?;
        Ok(version)
    }

    async fn find_user_by_phone(
        &self,
        scope: &TenantScope,
        phone: &str,
    ) -> StoreResult<Option<User>> {
        // `users.tenant_id_phone` is unique, so at most one row matches.
        self.find_one(scope, Expr::col(Users::Phone).eq(phone))
            .await
    }
}
