//! `/v1/users`: users of the selected tenant.
//!
//! SECURITY: a caller can only hand out roles whose capabilities it holds itself (no escalation; a
//! custom role counts with everything it inherits), and `system_admin` / `partner_admin` exist only in
//! the system / a partner tenant. Role names are checked against the built-in roles and the custom
//! roles of the selected tenant, never another tenant's. Every store call takes the guard's scope.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{
    Access, BuiltinRole, Principal, RoleGraph, TenantScope, capability::platform, first_excess,
};
use palisade_domain::{UserId, UserStatus};
use palisade_store::{NewUser, StoreError, User, UserPatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Audited, Caller, Json, Path, Query, Scoped};
use crate::principal_cache;
use crate::router::{SecureRouter, op};
use crate::routes::roles::{builtin_not_allowed, escalation, role_graph};
use crate::routes::tenants::rfc3339;
use crate::routes::{ListParams, PageView, page_view};
use crate::state::AppState;
use crate::validate;

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Home tenant.
    pub tenant_id: String,
    /// E-mail (lowercased).
    pub email: String,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Roles in the tenant.
    pub roles: Vec<String>,
    /// `active` or `disabled`.
    pub status: UserStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            tenant_id: u.tenant_id.to_string(),
            email: u.email,
            phone: u.phone,
            roles: u.roles,
            status: u.status,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// `POST /v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// E-mail, unique within the tenant.
    pub email: String,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `PATCH /v1/users/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// `active` or `disabled`.
    pub status: Option<UserStatus>,
    /// Replaces the role set.
    pub roles: Option<Vec<String>>,
    /// A new e-mail address, unique within the tenant (409 `user.email_taken`). The old and the new
    /// address both receive a security notice.
    pub email: Option<String>,
    /// A new E.164 phone, unique within the tenant (409 `user.phone_taken`); `null` removes it. The
    /// user's e-mail address receives a security notice.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) for a merge-style field.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/users",
        Access::cap(platform::USER_READ),
        op("listUsers", "Users of the selected tenant", "users").ok::<PageView<UserView>>(200),
        list_users,
    )
    .post(
        "/v1/users",
        Access::cap(platform::USER_CREATE),
        op(
            "createUser",
            "Create a user in the selected tenant",
            "users",
        )
        .body::<CreateUserRequest>()
        .ok::<UserView>(201),
        create_user,
    )
    .get(
        "/v1/users/{id}",
        Access::cap(platform::USER_READ),
        op("getUser", "A user of the selected tenant", "users").ok::<UserView>(200),
        get_user,
    )
    .patch(
        "/v1/users/{id}",
        Access::cap(platform::USER_UPDATE),
        op(
            "updateUser",
            "Change a user's status, roles, e-mail or phone",
            "users",
        )
        .body::<UpdateUserRequest>()
        .ok::<UserView>(200),
        update_user,
    )
    .delete(
        "/v1/users/{id}",
        Access::cap(platform::USER_DELETE),
        op("deleteUser", "Delete a user", "users").empty(204),
        delete_user,
    )
}

const MAX_ROLES: usize = 16;

/// Checks a requested role set against the roles of the scope's tenant (built-in and custom): known
/// names, allowed in this tenant, resolvable, and no escalation.
async fn check_roles(
    app: &AppState,
    caller: &Principal,
    scope: &TenantScope,
    roles: &[String],
) -> ApiResult<Vec<String>> {
    if roles.len() > MAX_ROLES {
        return Err(ApiError::field("roles", "too_many", "at most 16 roles"));
    }
    let graph = tenant_roles(app, scope, roles).await?;
    let mut errors = Vec::new();
    for (i, name) in roles.iter().enumerate() {
        let field = format!("roles[{i}]");
        if !graph.is_known(name) {
            errors.push(FieldError::new(
                field,
                "unknown_role",
                "is not a known role",
            ));
        } else if let Some(msg) =
            BuiltinRole::parse(name).and_then(|b| builtin_not_allowed(b, scope.tenant().kind))
        {
            errors.push(FieldError::new(field, "role_not_allowed", msg));
        } else if graph.check(name).is_err() {
            // Only reachable through data written around the API's checks (or a race): refuse rather
            // than hand out a role that grants nothing today and something else tomorrow.
            errors.push(FieldError::new(
                field,
                "role_invalid",
                "does not resolve (its inheritance is broken)",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // SECURITY: a role can never grant more than its creator holds; custom roles count with everything
    // they inherit.
    let wanted = graph.resolve(roles);
    if let Some(missing) = first_excess(&wanted, &caller.capabilities) {
        return Err(escalation(missing));
    }
    let mut out = roles.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The role graph of the scope's tenant; custom roles are loaded only when a name is not built-in.
async fn tenant_roles<'a>(
    app: &'a AppState,
    scope: &TenantScope,
    names: &[String],
) -> ApiResult<RoleGraph<'a>> {
    if names.iter().all(|n| BuiltinRole::parse(n).is_some()) {
        return Ok(RoleGraph::builtin(app.capabilities()));
    }
    Ok(role_graph(app, scope).await?.0)
}

/// SECURITY: nobody may modify or delete a user who holds capabilities the caller lacks (custom roles
/// resolved in the user's tenant).
async fn ensure_within_reach(
    app: &AppState,
    caller: &Principal,
    scope: &TenantScope,
    user: &User,
) -> ApiResult<()> {
    let theirs = tenant_roles(app, scope, &user.roles)
        .await?
        .resolve(&user.roles);
    if first_excess(&theirs, &caller.capabilities).is_some() {
        return Err(ApiError::Forbidden {
            code: "authz.role_escalation",
            detail: "This user holds capabilities you do not.".to_owned(),
        });
    }
    Ok(())
}

fn parse_user_id(s: &str) -> ApiResult<UserId> {
    s.parse().map_err(|_| ApiError::NotFound {
        code: "user.not_found",
    })
}

fn user_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound {
            code: "user.not_found",
        },
        other => other.into(),
    }
}

async fn list_users(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<PageView<UserView>>> {
    let page = params.page_request(&app, &scope, "users")?;
    let users = app.stores().users.list_users(&scope, &page).await?;
    Ok(axum::Json(page_view(
        &app,
        &scope,
        "users",
        users,
        UserView::from,
    )?))
}

async fn create_user(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Json(body): Json<CreateUserRequest>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    let email = validate::email(&body.email)
        .map_err(|e| errors.push(FieldError::new("email", e.code, e.message)))
        .ok();
    let phone = match &body.phone {
        None => None,
        Some(p) => validate::phone(p)
            .map_err(|e| errors.push(FieldError::new("phone", e.code, e.message)))
            .ok(),
    };
    let (Some(email), true) = (email, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let roles = check_roles(&app, &caller, &scope, &body.roles).await?;
    let user = app
        .stores()
        .users
        .create_user(
            &scope,
            NewUser {
                email,
                phone,
                roles,
            },
            &audit,
        )
        .await
        .map_err(taken)?;
    let location = format!("/v1/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(UserView::from(user)),
    )
        .into_response())
}

async fn get_user(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<UserView>> {
    let id = parse_user_id(&id)?;
    let user = app
        .stores()
        .users
        .get_user(&scope, id)
        .await?
        .ok_or(ApiError::NotFound {
            code: "user.not_found",
        })?;
    Ok(axum::Json(user.into()))
}

async fn update_user(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
    Json(body): Json<UpdateUserRequest>,
) -> ApiResult<axum::Json<UserView>> {
    let id = parse_user_id(&id)?;
    if id == caller.subject && scope.tenant_id() == caller.home.id {
        // SECURITY: no self-service privilege changes or self-lockout through this route, and no
        // self-service change of the sign-in address without proof of the new one.
        return Err(ApiError::Forbidden {
            code: "user.self_change",
            detail: "You cannot change your own status, roles, e-mail or phone.".to_owned(),
        });
    }
    // Bad input is refused whole, before anything is read or written.
    let mut errors = Vec::new();
    let email = body.email.as_deref().and_then(|e| {
        validate::email(e)
            .map_err(|e| errors.push(FieldError::new("email", e.code, e.message)))
            .ok()
    });
    let phone = match &body.phone {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => validate::phone(p)
            .map_err(|e| errors.push(FieldError::new("phone", e.code, e.message)))
            .ok()
            .map(Some),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let before = load_manageable_user(&app, &caller, &scope, id).await?;
    let roles = match &body.roles {
        Some(r) => Some(check_roles(&app, &caller, &scope, r).await?),
        None => None,
    };
    let user = principal_cache::invalidate(&app, scope.tenant_id(), async {
        let user = app
            .stores()
            .users
            .update_user(
                &scope,
                id,
                UserPatch {
                    status: body.status,
                    roles,
                    email,
                    phone,
                },
                &audit,
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ApiError::NotFound {
                    code: "user.not_found",
                },
                other => taken(other),
            })?;
        if body.status == Some(UserStatus::Disabled) {
            // SECURITY: disabling ends every session, so re-enabling later does not revive old tokens.
            let user_version = app
                .stores()
                .users
                .bump_token_version(&scope, id, &audit)
                .await?;
            app.stores()
                .refresh
                .revoke_user_families(&scope, id, app.now())
                .await?;
            tracing::info!(target: "security", event = "user.disabled", user = %id, token_version = user_version, "user disabled; sessions revoked");
        }
        Ok(user)
    })
    .await?;
    notify_contact_change(&app, &before, &user);
    Ok(axum::Json(user.into()))
}

/// Maps a uniqueness conflict on users to its problem (`user.email_taken` / `user.phone_taken`).
fn taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { constraint } if constraint.contains("phone") => ApiError::Conflict {
            code: "user.phone_taken",
            detail: "A user with this phone number exists in the tenant.".to_owned(),
        },
        StoreError::Conflict { .. } => ApiError::Conflict {
            code: "user.email_taken",
            detail: "A user with this e-mail exists in the tenant.".to_owned(),
        },
        other => other.into(),
    }
}

/// SECURITY: a changed sign-in address is announced to the old and the new e-mail address (so a
/// hijack through an administrator account does not go unnoticed by the user), a changed phone to the
/// current e-mail address. The texts name no address. Delivered off the request path.
fn notify_contact_change(app: &AppState, before: &User, after: &User) {
    if before.email != after.email {
        tracing::info!(target: "security", event = "user.email_changed", user = %after.id, "e-mail address changed");
        crate::notify::notice_in_background(
            app,
            before.email.clone(),
            "The e-mail address of your account was changed",
            "The e-mail address of your Palisade account was changed by an administrator; this address no longer signs in to it. If you did not expect this, contact your administrator.".to_owned(),
        );
        crate::notify::notice_in_background(
            app,
            after.email.clone(),
            "This address now signs in to your account",
            "An administrator made this the e-mail address of your Palisade account. If you did not expect this, contact your administrator.".to_owned(),
        );
    }
    if before.phone != after.phone {
        tracing::info!(target: "security", event = "user.phone_changed", user = %after.id, "phone number changed");
        crate::notify::notice_in_background(
            app,
            after.email.clone(),
            "The phone number of your account was changed",
            "The phone number of your Palisade account was changed by an administrator. If you did not expect this, contact your administrator.".to_owned(),
        );
    }
}

/// The user `id` of the scope's tenant, if the caller may manage them (404 otherwise, or 403 when
/// they hold capabilities the caller lacks).
async fn load_manageable_user(
    app: &AppState,
    caller: &Principal,
    scope: &TenantScope,
    id: UserId,
) -> ApiResult<User> {
    let existing = app
        .stores()
        .users
        .get_user(scope, id)
        .await?
        .ok_or(ApiError::NotFound {
            code: "user.not_found",
        })?;
    ensure_within_reach(app, caller, scope, &existing).await?;
    Ok(existing)
}

async fn delete_user(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_user_id(&id)?;
    if id == caller.subject {
        return Err(ApiError::Forbidden {
            code: "user.self_change",
            detail: "You cannot delete yourself.".to_owned(),
        });
    }
    load_manageable_user(&app, &caller, &scope, id).await?;
    principal_cache::invalidate(&app, scope.tenant_id(), async {
        app.stores()
            .users
            .delete_user(&scope, id, &audit)
            .await
            .map_err(user_not_found)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
