//! `/v1/security/*`: the WAF's block list and the security counters.
//!
//! - `GET /v1/security/blocks` (`security.block.read`) lists live blocks (deployment-wide, in id order,
//!   which is creation order), `DELETE /v1/security/blocks/{id}`
//!   (`security.block.delete`) lifts one at once on every instance sharing the state.
//! - `GET /v1/security/stats` (`trust.report.read`): denials, rate-limited requests, WAF violations and
//!   blocks, failed sign-ins, for the last minute, hour, day and since start, plus the limiter's health.
//!
//! Invariants:
//! - Blocks and counters are deployment facts, not a tenant's: the capabilities are system-only, so
//!   only system-scope principals reach these routes.
//! - The counters are this instance's (`"scope": "instance"`); the block list is the shared one (with
//!   Redis down, this instance's own blocks and a 503 for the shared part).
//! - Lifting a block logs a `security` event naming the block and the administrator (the audit log
//!   arrives with the audit issue).

use axum::extract::State;
use axum::http::StatusCode;
use palisade_authz::{Access, capability::platform};
use palisade_store::Page;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Path, Query, Scoped};
use crate::router::{SecureRouter, op};
use crate::routes::tenants::rfc3339;
use crate::routes::{ListParams, PageView, page_view};
use crate::security_stats::StatsWindows;
use crate::state::AppState;

/// A block.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockView {
    /// Opaque id, for `DELETE /v1/security/blocks/{id}`.
    pub id: String,
    /// What is blocked: `ip:<address>` (IPv6: `ip:<network>/64`) or `user:<id>`.
    pub subject: String,
    /// Why, e.g. `waf.burst`.
    pub reason: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// The rate limiter's state on this instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimiterView {
    /// Whether limiting is on.
    pub enabled: bool,
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Whether limits are currently per instance because Redis is unreachable.
    pub degraded: bool,
    /// Decisions taken per instance since start.
    pub fallback_decisions: u64,
}

/// `GET /v1/security/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityStatsView {
    /// RFC 3339.
    pub generated_at: String,
    /// `instance`: the counters are this instance's.
    pub scope: &'static str,
    /// Counts by window.
    pub windows: StatsWindows,
    /// The rate limiter.
    pub rate_limit: LimiterView,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/security/blocks",
        Access::cap(platform::SECURITY_BLOCK_READ),
        op("listBlocks", "Clients blocked by the WAF", "security").ok::<PageView<BlockView>>(200),
        list_blocks,
    )
    .delete(
        "/v1/security/blocks/{id}",
        Access::cap(platform::SECURITY_BLOCK_DELETE),
        op("deleteBlock", "Lift a WAF block", "security").empty(204),
        delete_block,
    )
    .get(
        "/v1/security/stats",
        Access::cap(platform::TRUST_REPORT_READ),
        op(
            "getSecurityStats",
            "Security counters by window: denials, rate limits, WAF, failed sign-ins",
            "security",
        )
        .ok::<SecurityStatsView>(200),
        get_security_stats,
    )
}

fn state_down() -> ApiError {
    ApiError::Unavailable {
        code: "state.unavailable",
        retry_after: 1,
    }
}

async fn list_blocks(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<PageView<BlockView>>> {
    let page = params.page_request(&app, &scope, "security.blocks")?;
    let mut blocks = app
        .auth()
        .state
        .blocks
        .list()
        .await
        .map_err(|_| state_down())?;
    blocks.sort_by(|a, b| a.id.cmp(&b.id));
    let limit = usize::try_from(page.limit).unwrap_or(50);
    let mut items: Vec<_> = blocks
        .into_iter()
        .filter(|b| page.after.as_ref().is_none_or(|after| b.id > *after))
        .take(limit + 1)
        .collect();
    let next_after = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|b| b.id.clone())
    } else {
        None
    };
    Ok(axum::Json(page_view(
        &app,
        &scope,
        "security.blocks",
        Page { items, next_after },
        |b| BlockView {
            id: b.id,
            subject: b.subject,
            reason: b.reason,
            created_at: rfc3339(b.created_at),
            expires_at: rfc3339(b.expires_at),
        },
    )?))
}

async fn delete_block(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    // Ids are UUIDs; anything else names nothing.
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::NotFound {
            code: "resource.not_found",
        });
    }
    let lifted = app
        .auth()
        .state
        .blocks
        .unblock(&id)
        .await
        .map_err(|_| state_down())?;
    if !lifted {
        return Err(ApiError::NotFound {
            code: "resource.not_found",
        });
    }
    tracing::warn!(target: "security", event = "waf.unblocked", block = %id, by = %caller.subject, "block lifted");
    Ok(StatusCode::NO_CONTENT)
}

async fn get_security_stats(State(app): State<AppState>) -> axum::Json<SecurityStatsView> {
    let health = app.auth().state.limiter.health();
    axum::Json(SecurityStatsView {
        generated_at: rfc3339(time::OffsetDateTime::now_utc()),
        scope: "instance",
        windows: app.metrics().security().windows(),
        rate_limit: LimiterView {
            enabled: app.settings().rate_limit.enabled,
            backend: health.backend,
            degraded: health.degraded,
            fallback_decisions: health.fallback_decisions,
        },
    })
}
