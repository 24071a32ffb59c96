//! `/v1/tenants`: the tenant hierarchy within the caller's reach.
//!
//! Every query runs through the [`TenantScope`] the guard granted for the selected tenant, so a tenant
//! outside the subtree answers 404 exactly like one that does not exist.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{Access, Decision, capability::platform, decide};
use palisade_domain::{Slug, TenantId, TenantKind};
use palisade_store::{NewTenant, StoreError, Tenant};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Audited, Caller, Json, Path, Query, Scoped};
use crate::principal_cache;
use crate::router::{SecureRouter, op};
use crate::routes::{ListParams, PageView, page_view};
use crate::state::AppState;
use crate::validate;

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// Id.
    pub id: String,
    /// Unique slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// `system`, `partner` or `tenant`.
    pub kind: TenantKind,
    /// Parent tenant id (null for the system tenant).
    pub parent_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.to_string(),
            slug: t.slug.to_string(),
            name: t.name,
            kind: t.kind,
            parent_id: t.parent_id.map(|p| p.to_string()),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Display name, 1–200 characters.
    pub name: String,
    /// Unique slug: lowercase `[a-z0-9-]`, 1–63 characters.
    pub slug: String,
    /// Parent within reach; defaults to the selected tenant.
    pub parent_id: Option<String>,
    /// `tenant` (default) or `partner` (needs `platform.tenant.create_partner`).
    pub kind: Option<TenantKind>,
}

/// `PATCH /v1/tenants/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    /// New display name.
    pub name: Option<String>,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/tenants",
        Access::cap(platform::TENANT_READ),
        op(
            "listTenants",
            "The selected tenant and its descendants",
            "tenants",
        )
        .ok::<PageView<TenantView>>(200),
        list_tenants,
    )
    .post(
        "/v1/tenants",
        Access::cap(platform::TENANT_CREATE),
        op(
            "createTenant",
            "Create a child tenant within reach",
            "tenants",
        )
        .body::<CreateTenantRequest>()
        .ok::<TenantView>(201),
        create_tenant,
    )
    .get(
        "/v1/tenants/{id}",
        Access::cap(platform::TENANT_READ),
        op("getTenant", "A tenant within reach", "tenants").ok::<TenantView>(200),
        get_tenant,
    )
    .patch(
        "/v1/tenants/{id}",
        Access::cap(platform::TENANT_UPDATE),
        op("updateTenant", "Rename a tenant within reach", "tenants")
            .body::<UpdateTenantRequest>()
            .ok::<TenantView>(200),
        update_tenant,
    )
}

fn parse_tenant_id(s: &str) -> ApiResult<TenantId> {
    s.parse().map_err(|_| ApiError::NotFound {
        code: "tenant.not_found",
    })
}

async fn list_tenants(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<PageView<TenantView>>> {
    let page = params.page_request(&app, &scope, "tenants")?;
    let tenants = app.stores().tenants.list_tenants(&scope, &page).await?;
    Ok(axum::Json(page_view(
        &app,
        &scope,
        "tenants",
        tenants,
        TenantView::from,
    )?))
}

async fn create_tenant(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Json(body): Json<CreateTenantRequest>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    let name = validate::display_name(&body.name)
        .map_err(|e| errors.push(FieldError::new("name", e.code, e.message)))
        .ok();
    let slug = Slug::parse(&body.slug)
        .map_err(|e| errors.push(FieldError::new("slug", "invalid_slug", e.to_string())))
        .ok();
    let kind = body.kind.unwrap_or(TenantKind::Tenant);
    if kind == TenantKind::System {
        errors.push(FieldError::new(
            "kind",
            "invalid_value",
            "must be tenant or partner",
        ));
    }
    let (Some(name), Some(slug), true) = (name, slug, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // The parent: the selected tenant, or a descendant of it named in the body.
    let parent_scope =
        match &body.parent_id {
            None => scope,
            Some(pid) => {
                let pid = parse_tenant_id(pid)?;
                let parent = app.stores().tenants.get_tenant(&scope, pid).await?.ok_or(
                    ApiError::NotFound {
                        code: "tenant.not_found",
                    },
                )?;
                match decide(
                    &caller,
                    &parent.to_ref(),
                    &platform::TENANT_CREATE,
                    app.capabilities(),
                    OffsetDateTime::now_utc(),
                    app.step_up_max_age(),
                ) {
                    Decision::Allow(s) => s,
                    Decision::Deny(_) => {
                        return Err(ApiError::NotFound {
                            code: "tenant.not_found",
                        });
                    }
                }
            }
        };
    if kind == TenantKind::Partner {
        // SECURITY: partners manage other tenants; creating one is a system-only capability.
        let allowed = matches!(
            decide(
                &caller,
                parent_scope.tenant(),
                &platform::TENANT_CREATE_PARTNER,
                app.capabilities(),
                OffsetDateTime::now_utc(),
                app.step_up_max_age()
            ),
            Decision::Allow(_)
        );
        if !allowed {
            return Err(ApiError::Forbidden {
                code: "authz.forbidden",
                detail: format!(
                    "Creating a partner needs the capability `{}`.",
                    platform::TENANT_CREATE_PARTNER
                ),
            });
        }
    }
    // The parent's members may become `parent`-level principals (their home now has children).
    let created = principal_cache::invalidate(&app, parent_scope.tenant_id(), async {
        app.stores()
            .tenants
            .create_child_tenant(&parent_scope, NewTenant { slug, name, kind }, &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ApiError::Conflict {
                    code: "tenant.slug_taken",
                    detail: "The slug is already in use.".to_owned(),
                },
                other => other.into(),
            })
    })
    .await?;
    let location = format!("/v1/tenants/{}", created.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(TenantView::from(created)),
    )
        .into_response())
}

async fn get_tenant(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TenantView>> {
    let id = parse_tenant_id(&id)?;
    let t = app
        .stores()
        .tenants
        .get_tenant(&scope, id)
        .await?
        .ok_or(ApiError::NotFound {
            code: "tenant.not_found",
        })?;
    Ok(axum::Json(t.into()))
}

async fn update_tenant(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
    Json(body): Json<UpdateTenantRequest>,
) -> ApiResult<axum::Json<TenantView>> {
    let id = parse_tenant_id(&id)?;
    let existing =
        app.stores()
            .tenants
            .get_tenant(&scope, id)
            .await?
            .ok_or(ApiError::NotFound {
                code: "tenant.not_found",
            })?;
    let Some(name) = body.name else {
        return Ok(axum::Json(existing.into()));
    };
    let name =
        validate::display_name(&name).map_err(|e| ApiError::field("name", e.code, e.message))?;
    let t = app
        .stores()
        .tenants
        .rename_tenant(&scope, id, name, &audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound {
                code: "tenant.not_found",
            },
            other => other.into(),
        })?;
    Ok(axum::Json(t.into()))
}
