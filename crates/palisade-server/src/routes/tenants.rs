//! `/v1/tenants`: the tenant hierarchy within the caller's reach.
//!
//! Every query runs through the [`TenantScope`] the guard granted for the selected tenant, so a tenant
//! outside the subtree answers 404 exactly like one that does not exist.
//!
//! IP allowlists (`allowed_ips`, see [`crate::net`]): the guard enforces the selected tenant's list;
//! reading or changing one tenant by id (`GET`/`PATCH /v1/tenants/{id}`) acts on *that* tenant too,
//! so its own list must admit the client as well — a partner administrator cannot read or lift a
//! customer's list from outside it. A `PATCH` whose new list would exclude the caller's current
//! address is refused with 422 `network.self_lockout` unless the body says `"force": true` (the way
//! back from a lock-out is `palisade tenants allowed-ips`). The list on `POST` needs no `force`: it
//! is the normal way for a partner to create a customer fenced to the customer's own networks.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{Access, Decision, capability::platform, decide};
use palisade_domain::{Slug, TenantId, TenantKind};
use palisade_store::{NewTenant, StoreError, Tenant, TenantPatch};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{Audited, Caller, ClientAddr, Json, Path, Query, Scoped};
use crate::net;
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
    /// CIDRs every request acting on this tenant must come from; empty: anywhere.
    pub allowed_ips: Vec<String>,
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
            allowed_ips: t.allowed_ips,
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
    /// CIDRs (or addresses, at most 64) every request acting on the tenant must come from; absent or
    /// empty: anywhere.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
}

/// `PATCH /v1/tenants/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    /// New display name.
    pub name: Option<String>,
    /// New IP allowlist (CIDRs or addresses, at most 64; `[]`: anywhere).
    pub allowed_ips: Option<Vec<String>>,
    /// Set a list that excludes the caller's own current address anyway (default false: 422
    /// `network.self_lockout`).
    #[serde(default)]
    pub force: bool,
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
        op(
            "updateTenant",
            "Rename a tenant within reach, or set its IP allowlist",
            "tenants",
        )
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
    let allowed_ips = net::check_cidrs("allowed_ips", &body.allowed_ips)
        .map_err(|e| errors.extend(e))
        .ok();
    let kind = body.kind.unwrap_or(TenantKind::Tenant);
    if kind == TenantKind::System {
        errors.push(FieldError::new(
            "kind",
            "invalid_value",
            "must be tenant or partner",
        ));
    }
    let (Some(name), Some(slug), Some(allowed_ips), true) =
        (name, slug, allowed_ips, errors.is_empty())
    else {
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
            .create_child_tenant(
                &parent_scope,
                NewTenant {
                    slug,
                    name,
                    kind,
                    allowed_ips,
                },
                &audit,
            )
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

/// SECURITY: the tenant named in the path is acted on too; its own allowlist must admit the client.
fn ensure_reachable_from(tenant: &Tenant, ip: Option<std::net::IpAddr>) -> ApiResult<()> {
    if net::ip_allowed(&tenant.allowed_ips, ip) {
        Ok(())
    } else {
        Err(net::ip_not_allowed(
            "The tenant acted on does not allow access from this address.",
        ))
    }
}

async fn get_tenant(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    ClientAddr(ip): ClientAddr,
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
    ensure_reachable_from(&t, ip)?;
    Ok(axum::Json(t.into()))
}

async fn update_tenant(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Scoped(scope): Scoped,
    ClientAddr(ip): ClientAddr,
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
    ensure_reachable_from(&existing, ip)?;
    let name = body
        .name
        .as_deref()
        .map(validate::display_name)
        .transpose()
        .map_err(|e| ApiError::field("name", e.code, e.message))?;
    let allowed_ips = body
        .allowed_ips
        .as_deref()
        .map(|list| net::check_cidrs("allowed_ips", list))
        .transpose()
        .map_err(ApiError::Validation)?;
    // SECURITY: refuse to lock the caller out by accident; `force` says it is meant.
    if let Some(list) = &allowed_ips
        && !body.force
        && !net::ip_allowed(list, ip)
    {
        return Err(ApiError::Unprocessable {
            code: "network.self_lockout",
            detail: "This allowlist excludes the address you are calling from, so you could no \
                     longer act on this tenant from here. Include it, or send \"force\": true."
                .to_owned(),
        });
    }
    if name.is_none() && allowed_ips.is_none() {
        return Ok(axum::Json(existing.into()));
    }
    // The tenant's allowlist is cached with its members' principals.
    let t = principal_cache::invalidate(&app, id, async {
        app.stores()
            .tenants
            .update_tenant(&scope, id, TenantPatch { name, allowed_ips }, &audit)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ApiError::NotFound {
                    code: "tenant.not_found",
                },
                other => other.into(),
            })
    })
    .await?;
    Ok(axum::Json(t.into()))
}
