//! Introspection: the capability and route registries.

use axum::Json;
use axum::extract::State;
use palisade_authz::{Access, capability::platform};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiResult;
use crate::extract::Scoped;
use crate::router::{RouteView, SecureRouter, op};
use crate::routes::PageView;
use crate::state::AppState;

/// A capability as `/v1/capabilities` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CapabilityView {
    /// Dotted name.
    pub name: String,
    /// What it allows.
    pub description: String,
    /// Whether it needs a recent second factor.
    pub requires_mfa: bool,
    /// Whether only system-scope principals may use it.
    pub system_only: bool,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/capabilities",
        Access::cap(platform::CAPABILITY_READ),
        op(
            "listCapabilities",
            "The capability registry",
            "authorization",
        )
        .ok::<PageView<CapabilityView>>(200),
        list_capabilities,
    )
    .get(
        "/v1/routes",
        Access::cap(platform::ROUTE_READ),
        op(
            "listRoutes",
            "Every route with the capability it demands",
            "authorization",
        )
        .ok::<PageView<RouteView>>(200),
        list_routes,
    )
}

async fn list_capabilities(
    State(app): State<AppState>,
    _scope: Scoped,
) -> ApiResult<Json<PageView<CapabilityView>>> {
    let items = app
        .capabilities()
        .iter()
        .map(|d| CapabilityView {
            name: d.name.to_string(),
            description: d.description.to_string(),
            requires_mfa: d.requires_mfa,
            system_only: d.system_only,
        })
        .collect();
    Ok(Json(PageView {
        items,
        next_cursor: None,
    }))
}

async fn list_routes(
    State(app): State<AppState>,
    _scope: Scoped,
) -> ApiResult<Json<PageView<RouteView>>> {
    let items = app.routes().map(|r| r.views()).unwrap_or_default();
    Ok(Json(PageView {
        items,
        next_cursor: None,
    }))
}
