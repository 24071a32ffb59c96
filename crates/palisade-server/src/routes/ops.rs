//! Operations: liveness, readiness, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::Access;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::pipeline::ClientIp;
use crate::router::{SecureRouter, op};
use crate::state::AppState;

/// `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// Always `ok` while the process serves.
    pub status: &'static str,
}

/// `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Each dependency's state.
    pub checks: ReadyChecks,
}

/// The dependencies `/ready` checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// `ok` (in-process state) or `unavailable`.
    pub state: &'static str,
    /// `ok`, `degraded` (the shared limiter is unreachable: limits are per instance, never off) or
    /// `disabled`.
    pub rate_limit: &'static str,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/health",
        Access::Public {
            reason: "liveness probe for load balancers; reveals nothing",
        },
        op("getHealth", "Liveness", "operations").ok::<HealthView>(200),
        get_health,
    )
    .get(
        "/ready",
        Access::Public {
            reason: "readiness probe for orchestrators; reports dependency status only",
        },
        op(
            "getReady",
            "Readiness: database and shared state",
            "operations",
        )
        .ok::<ReadyView>(200),
        get_ready,
    )
    .get(
        "/metrics",
        Access::Public {
            reason: "Prometheus scrape; restricted to metrics.allowed_ips (default loopback)",
        },
        op(
            "getMetrics",
            "Prometheus metrics (allowlisted client IPs only)",
            "operations",
        )
        .media("text/plain; version=0.0.4"),
        get_metrics,
    )
    .get(
        "/openapi.json",
        Access::Public {
            reason: "the public API contract",
        },
        op("getOpenApi", "This OpenAPI 3.1 document", "operations"),
        get_openapi,
    )
}

async fn get_health() -> Json<HealthView> {
    Json(HealthView { status: "ok" })
}

async fn get_ready(State(app): State<AppState>) -> Response {
    let db = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        app.stores().health.ping(),
    )
    .await;
    let database = if matches!(db, Ok(Ok(()))) {
        "ok"
    } else {
        "unavailable"
    };
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        app.auth().state.health.ping(),
    )
    .await;
    let state = if matches!(ping, Ok(Ok(()))) {
        "ok"
    } else {
        "unavailable"
    };
    let limiter = app.auth().state.limiter.health();
    app.metrics().set_limiter_health(limiter);
    let rate_limit = if !app.settings().rate_limit.enabled {
        "disabled"
    } else if limiter.degraded {
        "degraded"
    } else {
        "ok"
    };
    // A degraded limiter still limits (per instance), so it does not make the instance unready.
    let ok = database == "ok" && state == "ok";
    let body = ReadyView {
        status: if ok { "ok" } else { "unavailable" },
        checks: ReadyChecks {
            database,
            state,
            rate_limit,
        },
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn get_metrics(
    State(app): State<AppState>,
    ip: Option<axum::Extension<ClientIp>>,
) -> Response {
    let allowed = ip.is_some_and(|axum::Extension(ClientIp(ip))| {
        app.settings()
            .metrics
            .allowed_ips
            .iter()
            .any(|net| net.contains(&ip))
    });
    if !allowed {
        return ApiError::Forbidden {
            code: "network.ip_not_allowed",
            detail: "Metrics are served only to allowlisted addresses.".to_owned(),
        }
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics().render(),
    )
        .into_response()
}

async fn get_openapi(State(app): State<AppState>) -> Response {
    match app.openapi() {
        Some(doc) => Json(doc.clone()).into_response(),
        None => ApiError::internal("openapi document not built").into_response(),
    }
}
