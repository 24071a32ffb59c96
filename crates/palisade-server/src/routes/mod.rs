//! Routes grouped by domain; each module registers its routes on the [`SecureRouter`].

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod meta;
pub mod mfa;
pub mod ops;
pub mod policies;
pub mod roles;
pub mod security;
pub mod tenants;
pub mod trust;
pub mod users;

use palisade_authz::TenantScope;
use palisade_store::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::router::SecureRouter;
use crate::state::AppState;

/// Registers every route.
#[must_use]
pub fn register(router: SecureRouter) -> SecureRouter {
    let router = ops::register(router);
    let router = meta::register(router);
    let router = auth::register(router);
    let router = mfa::register(router);
    let router = tenants::register(router);
    let router = roles::register(router);
    let router = api_keys::register(router);
    let router = policies::register(router);
    let router = audit::register(router);
    let router = trust::register(router);
    let router = security::register(router);
    let router = crate::resources::register(router);
    users::register(router)
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1–200, default 50.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageView<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page, or null.
    pub next_cursor: Option<String>,
}

impl ListParams {
    /// Checks the limit and verifies the cursor for this tenant and list.
    ///
    /// # Errors
    /// 400 `pagination.invalid_limit` or `pagination.invalid_cursor`.
    pub fn page_request(
        &self,
        app: &AppState,
        scope: &TenantScope,
        list: &str,
    ) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::BadRequest {
                code: "pagination.invalid_limit",
                detail: "limit must be between 1 and 200.".to_owned(),
            });
        }
        let after = match &self.cursor {
            None => None,
            Some(c) => {
                let payload = app
                    .cursors()
                    .verify(&cursor_context(scope, list), c)
                    .map_err(|_| invalid_cursor())?;
                Some(String::from_utf8(payload).map_err(|_| invalid_cursor())?)
            }
        };
        Ok(PageRequest { limit, after })
    }
}

pub(crate) fn invalid_cursor() -> ApiError {
    ApiError::BadRequest {
        code: "pagination.invalid_cursor",
        detail: "The cursor is not valid for this list.".to_owned(),
    }
}

pub(crate) fn cursor_context(scope: &TenantScope, list: &str) -> String {
    // SECURITY: binding the tenant and the list makes a cursor useless anywhere else.
    format!("cursor:{}:{list}", scope.tenant_id())
}

/// Maps a store page to a view page with a signed cursor.
///
/// # Errors
/// 500 if signing fails (it cannot in practice).
pub fn page_view<T, V>(
    app: &AppState,
    scope: &TenantScope,
    list: &str,
    page: Page<T>,
    view: impl Fn(T) -> V,
) -> Result<PageView<V>, ApiError> {
    let next_cursor = match page.next_after {
        Some(after) => Some(
            app.cursors()
                .sign(&cursor_context(scope, list), after.as_bytes())
                .map_err(ApiError::internal)?,
        ),
        None => None,
    };
    Ok(PageView {
        items: page.items.into_iter().map(view).collect(),
        next_cursor,
    })
}
