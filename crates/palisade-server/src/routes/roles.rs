//! `/v1/roles`: custom roles of the selected tenant, with inheritance.
//!
//! A role is `{"name","inherits":[...],"capabilities":[...]}`. The pure rules (graph walk, cycles,
//! depth, subset) live in `palisade_authz::inherit`; this module loads the tenant's roles, applies a
//! proposed change to the graph and refuses it before anything is written.
//!
//! Invariants:
//! - Names match `[a-z][a-z0-9_]{0,62}`, are unique per tenant (409 `role.name_taken`) and are never a
//!   built-in role name (422). `inherits` names built-in roles (within the same tenant-kind rules as
//!   user assignment) or custom roles of the same tenant; `capabilities` are registered and never
//!   system-only (422 naming the index).
//! - Cycles (422 `role.cycle`) and depth over `MAX_INHERIT_DEPTH` (422 `role.too_deep`) are checked on
//!   create *and* update, over the whole tenant graph, since an update can close a loop or deepen a
//!   chain through other roles.
//! - SECURITY: the fully resolved capability set of a created or updated role is a subset of the
//!   caller's capabilities (403 `authz.role_escalation`), and nobody changes or deletes a role whose
//!   resolved capabilities exceed their own.
//! - A role a user holds or another role inherits is not deleted (409 `role.in_use`).
//! - Every store call takes the guard's scope; every change logs a `security` event (audit arrives in a
//!   later issue).

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{
    Access, BuiltinRole, Capability, Principal, RoleDef, RoleError, RoleGraph, TenantScope,
    capability::platform, first_excess, is_valid_role_name,
};
use palisade_domain::TenantKind;
use palisade_store::{CustomRole, NewRole, ROLE_IN_USE, RolePatch, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Audited, Caller, Json, Path, Query, Scoped};
use crate::principal_cache;
use crate::router::{SecureRouter, op};
use crate::routes::tenants::rfc3339;
use crate::routes::{ListParams, PageView, page_view};
use crate::state::AppState;

/// At most this many inherited roles per role.
const MAX_INHERITS: usize = 16;
/// At most this many capabilities per role.
const MAX_CAPABILITIES: usize = 256;
/// At most this many custom roles per tenant (request-time resolution loads them all).
const MAX_ROLES_PER_TENANT: usize = 200;

/// A custom role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    /// Unique within the tenant.
    pub name: String,
    /// Inherited role names, sorted.
    pub inherits: Vec<String>,
    /// The role's own capabilities, sorted.
    pub capabilities: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<CustomRole> for RoleView {
    fn from(r: CustomRole) -> Self {
        Self {
            name: r.name,
            inherits: r.inherits,
            capabilities: r.capabilities,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// `POST /v1/roles`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    /// `[a-z][a-z0-9_]{0,62}`, not a built-in role name.
    pub name: String,
    /// Built-in roles or custom roles of the tenant.
    #[serde(default)]
    pub inherits: Vec<String>,
    /// Registered, non-system-only capabilities.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// `PATCH /v1/roles/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    /// Replaces the inherited roles.
    pub inherits: Option<Vec<String>>,
    /// Replaces the capabilities.
    pub capabilities: Option<Vec<String>>,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/roles",
        Access::cap(platform::ROLE_READ),
        op("listRoles", "Custom roles of the selected tenant", "roles")
            .ok::<PageView<RoleView>>(200),
        list_roles,
    )
    .post(
        "/v1/roles",
        Access::cap(platform::ROLE_CREATE),
        op(
            "createRole",
            "Create a custom role in the selected tenant",
            "roles",
        )
        .body::<CreateRoleRequest>()
        .ok::<RoleView>(201),
        create_role,
    )
    .get(
        "/v1/roles/{name}",
        Access::cap(platform::ROLE_READ),
        op("getRole", "A custom role of the selected tenant", "roles").ok::<RoleView>(200),
        get_role,
    )
    .patch(
        "/v1/roles/{name}",
        Access::cap(platform::ROLE_UPDATE),
        op(
            "updateRole",
            "Change a custom role's inherited roles or capabilities",
            "roles",
        )
        .body::<UpdateRoleRequest>()
        .ok::<RoleView>(200),
        update_role,
    )
    .delete(
        "/v1/roles/{name}",
        Access::cap(platform::ROLE_DELETE),
        op("deleteRole", "Delete a custom role nothing uses", "roles").empty(204),
        delete_role,
    )
}

/// The built-in roles plus the custom roles of the scope's tenant (one store query).
///
/// # Errors
/// The store's error (503 / 500): resolution never proceeds on a partial graph.
pub(crate) async fn role_graph<'a>(
    app: &'a AppState,
    scope: &TenantScope,
) -> ApiResult<(RoleGraph<'a>, usize)> {
    let roles = app.stores().roles.all_roles(scope).await?;
    let count = roles.len();
    let graph = RoleGraph::new(
        app.capabilities(),
        roles.into_iter().map(|r| {
            let def = r.to_def();
            (r.name, def)
        }),
    );
    Ok((graph, count))
}

/// Why a built-in role may not be given (or inherited) in a tenant of `kind`, if it may not.
pub(crate) fn builtin_not_allowed(role: BuiltinRole, kind: TenantKind) -> Option<&'static str> {
    match role {
        BuiltinRole::SystemAdmin if kind != TenantKind::System => {
            Some("system_admin exists only in the system tenant")
        }
        BuiltinRole::PartnerAdmin if kind != TenantKind::Partner => {
            Some("partner_admin exists only in partner tenants")
        }
        _ => None,
    }
}

/// The 403 for a role (or role set) carrying `missing`, which the caller lacks.
pub(crate) fn escalation(missing: &Capability) -> ApiError {
    ApiError::Forbidden {
        code: "authz.role_escalation",
        detail: format!("You cannot grant roles carrying `{missing}`, which you do not hold."),
    }
}

fn role_not_found() -> ApiError {
    ApiError::NotFound {
        code: "role.not_found",
    }
}

fn graph_error(e: &RoleError) -> ApiError {
    match e {
        RoleError::Cycle(through) => ApiError::Unprocessable {
            code: "role.cycle",
            detail: format!("Role inheritance would form a cycle through `{through}`."),
        },
        RoleError::TooDeep => ApiError::Unprocessable {
            code: "role.too_deep",
            detail: format!(
                "Role inheritance would be deeper than {}.",
                palisade_authz::MAX_INHERIT_DEPTH
            ),
        },
        RoleError::Unknown(name) => ApiError::Unprocessable {
            code: "role.unknown",
            detail: format!("Role inheritance reaches `{name}`, which does not exist."),
        },
    }
}

/// What a role grants, for the "may the caller touch it" check. A role that does not resolve grants
/// nothing today, but it is judged by its own capabilities so a caller cannot take over a broken role
/// carrying more than they hold.
fn granted_by(graph: &RoleGraph<'_>, name: &str) -> BTreeSet<Capability> {
    graph.check(name).unwrap_or_else(|_| {
        graph
            .custom(name)
            .map(|def| {
                def.capabilities
                    .iter()
                    .filter_map(|c| Capability::parse(c).ok())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// SECURITY: nobody changes or deletes a role whose capabilities exceed their own.
fn ensure_within_reach(graph: &RoleGraph<'_>, caller: &Principal, name: &str) -> ApiResult<()> {
    let theirs = granted_by(graph, name);
    if first_excess(&theirs, &caller.capabilities).is_some() {
        return Err(ApiError::Forbidden {
            code: "authz.role_escalation",
            detail: "This role carries capabilities you do not hold.".to_owned(),
        });
    }
    Ok(())
}

/// Checks a proposed definition of `name` against the tenant's graph and the caller, and returns the
/// definition normalised (sorted, de-duplicated).
fn check_definition(
    app: &AppState,
    caller: &Principal,
    scope: &TenantScope,
    graph: RoleGraph<'_>,
    name: &str,
    def: RoleDef,
) -> ApiResult<RoleDef> {
    if def.inherits.len() > MAX_INHERITS {
        return Err(ApiError::field(
            "inherits",
            "too_many",
            "at most 16 inherited roles",
        ));
    }
    if def.capabilities.len() > MAX_CAPABILITIES {
        return Err(ApiError::field(
            "capabilities",
            "too_many",
            "at most 256 capabilities",
        ));
    }
    let proposed = graph.with_role(name.to_owned(), def.clone());
    let mut errors = Vec::new();
    for (i, parent) in def.inherits.iter().enumerate() {
        let field = format!("inherits[{i}]");
        if !proposed.is_known(parent) {
            errors.push(FieldError::new(
                field,
                "unknown_role",
                "is not a known role",
            ));
        } else if let Some(msg) =
            BuiltinRole::parse(parent).and_then(|b| builtin_not_allowed(b, scope.tenant().kind))
        {
            errors.push(FieldError::new(field, "role_not_allowed", msg));
        }
    }
    for (i, cap) in def.capabilities.iter().enumerate() {
        let field = format!("capabilities[{i}]");
        match Capability::parse(cap)
            .ok()
            .and_then(|c| app.capabilities().get(&c))
        {
            None => errors.push(FieldError::new(
                field,
                "unknown_capability",
                "is not a registered capability",
            )),
            // SECURITY: system-only capabilities are never granted through a tenant's role.
            Some(d) if d.system_only => errors.push(FieldError::new(
                field,
                "system_only",
                "is reserved to system-scope principals and cannot be put in a custom role",
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let resolved = proposed.check(name).map_err(|e| graph_error(&e))?;
    // An update can close a loop, or push an inheriting role past the depth limit, through other
    // roles: the whole tenant graph must still resolve.
    proposed.check_all().map_err(|(_, e)| graph_error(&e))?;
    // SECURITY: a role can never grant more than its creator holds (own and inherited, transitively).
    if let Some(missing) = first_excess(&resolved, &caller.capabilities) {
        return Err(escalation(missing));
    }
    let mut def = def;
    def.inherits.sort();
    def.inherits.dedup();
    def.capabilities.sort();
    def.capabilities.dedup();
    Ok(def)
}

async fn list_roles(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<PageView<RoleView>>> {
    let page = params.page_request(&app, &scope, "roles")?;
    let roles = app.stores().roles.list_roles(&scope, &page).await?;
    Ok(axum::Json(page_view(
        &app,
        &scope,
        "roles",
        roles,
        RoleView::from,
    )?))
}

async fn create_role(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Json(body): Json<CreateRoleRequest>,
) -> ApiResult<Response> {
    if !is_valid_role_name(&body.name) {
        return Err(ApiError::field(
            "name",
            "invalid_name",
            "must match [a-z][a-z0-9_]{0,62}",
        ));
    }
    if BuiltinRole::parse(&body.name).is_some() {
        return Err(ApiError::field(
            "name",
            "reserved",
            "is the name of a built-in role",
        ));
    }
    let (graph, count) = role_graph(&app, &scope).await?;
    if graph.custom(&body.name).is_some() {
        return Err(name_taken());
    }
    if count >= MAX_ROLES_PER_TENANT {
        return Err(ApiError::Conflict {
            code: "role.limit",
            detail: format!("A tenant may define at most {MAX_ROLES_PER_TENANT} custom roles."),
        });
    }
    let def = check_definition(
        &app,
        &caller,
        &scope,
        graph,
        &body.name,
        RoleDef {
            inherits: body.inherits,
            capabilities: body.capabilities,
        },
    )?;
    // A user may already hold the new name (it granted nothing until now).
    let role = principal_cache::invalidate(&app, scope.tenant_id(), async {
        app.stores()
            .roles
            .create_role(
                &scope,
                NewRole {
                    name: body.name,
                    inherits: def.inherits,
                    capabilities: def.capabilities,
                },
                &audit,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => name_taken(),
                other => other.into(),
            })
    })
    .await?;
    tracing::info!(target: "security", event = "role.created", role = %role.name, tenant = %scope.tenant_id(), actor = %caller.subject, "custom role created");
    let location = format!("/v1/roles/{}", role.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(RoleView::from(role)),
    )
        .into_response())
}

fn name_taken() -> ApiError {
    ApiError::Conflict {
        code: "role.name_taken",
        detail: "A role with this name exists in the tenant.".to_owned(),
    }
}

async fn get_role(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<RoleView>> {
    if !is_valid_role_name(&name) {
        return Err(role_not_found());
    }
    let role = app
        .stores()
        .roles
        .get_role(&scope, &name)
        .await?
        .ok_or_else(role_not_found)?;
    Ok(axum::Json(role.into()))
}

async fn update_role(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Path(name): Path<String>,
    Json(body): Json<UpdateRoleRequest>,
) -> ApiResult<axum::Json<RoleView>> {
    if !is_valid_role_name(&name) {
        return Err(role_not_found());
    }
    let (graph, _) = role_graph(&app, &scope).await?;
    let existing = graph.custom(&name).cloned().ok_or_else(role_not_found)?;
    ensure_within_reach(&graph, &caller, &name)?;
    let proposed = RoleDef {
        inherits: body.inherits.unwrap_or(existing.inherits),
        capabilities: body.capabilities.unwrap_or(existing.capabilities),
    };
    let def = check_definition(&app, &caller, &scope, graph, &name, proposed)?;
    let role = principal_cache::invalidate(&app, scope.tenant_id(), async {
        app.stores()
            .roles
            .update_role(
                &scope,
                &name,
                RolePatch {
                    inherits: Some(def.inherits),
                    capabilities: Some(def.capabilities),
                },
                &audit,
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound => role_not_found(),
                other => other.into(),
            })
    })
    .await?;
    tracing::info!(target: "security", event = "role.updated", role = %role.name, tenant = %scope.tenant_id(), actor = %caller.subject, "custom role updated");
    Ok(axum::Json(role.into()))
}

async fn delete_role(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !is_valid_role_name(&name) {
        return Err(role_not_found());
    }
    let (graph, _) = role_graph(&app, &scope).await?;
    if graph.custom(&name).is_none() {
        return Err(role_not_found());
    }
    ensure_within_reach(&graph, &caller, &name)?;
    let in_use = || ApiError::Conflict {
        code: "role.in_use",
        detail: "Users hold this role or other roles inherit it.".to_owned(),
    };
    if app.stores().roles.roles_in_use(&scope, &name).await? {
        return Err(in_use());
    }
    principal_cache::invalidate(&app, scope.tenant_id(), async {
        app.stores()
            .roles
            .delete_role(&scope, &name, &audit)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => role_not_found(),
                StoreError::Conflict { constraint } if constraint == ROLE_IN_USE => in_use(),
                other => other.into(),
            })
    })
    .await?;
    tracing::info!(target: "security", event = "role.deleted", role = %name, tenant = %scope.tenant_id(), actor = %caller.subject, "custom role deleted");
    Ok(StatusCode::NO_CONTENT)
}
