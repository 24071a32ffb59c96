//! `bare-axum`: the practical upper bound for Palisade's trivial route.
//!
//! Serves exactly one route, `GET /health` -> `200 {"status":"ok"}` (`content-type: application/json`),
//! on a bare axum router: no middleware, no state, no tracing. Everything else is axum's default 404/405.
//!
//! With `BARE_AXUM_SQLITE=<path to a Palisade SQLite file>` it also serves
//! `GET /v1/{resource}/{id}` -> `200 <data>`: the row of Palisade's `records` table read with one bound
//! query on a small pool, no authentication or tenant selection (the baseline of `bench/resources.sh`,
//! which points it at the very row Palisade serves). The tenant id comes from `BARE_AXUM_TENANT`.
//!
//! With `BARE_AXUM_HEADERS=1`, `/health` also sends the ten headers Palisade's pipeline adds (security
//! headers, `cache-control`, a request id): a diagnostic for `bench/pipeline.sh`, never the baseline.
//!
//! Listen address: first argument, else `BARE_AXUM_LISTEN`, else `127.0.0.1:18081`.
//! Stops on SIGINT/SIGTERM.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use serde_json::json;

const DEFAULT_LISTEN: &str = "127.0.0.1:18081";

/// Palisade's response headers on `/health` (its security headers, `cache-control` and a request id
/// of the same length), sent when `BARE_AXUM_HEADERS=1`: a diagnostic that tells how much of the
/// pipeline's cost is the bytes every response must carry, not the work of producing them.
const PALISADE_HEADERS: [(&str, &str); 10] = [
    ("x-request-id", "01a2135e-0a14-71f8-9f65-03f1e5f35c22"),
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
    ("cache-control", "no-store"),
];

static WITH_HEADERS: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var("BARE_AXUM_HEADERS").is_ok_and(|v| v == "1"));

async fn health() -> Response {
    let body = Json(json!({ "status": "ok" }));
    if *WITH_HEADERS {
        (PALISADE_HEADERS, body).into_response()
    } else {
        body.into_response()
    }
}

/// The pool and tenant of the SQLite read route.
#[derive(Clone)]
struct Db {
    pool: sqlx::SqlitePool,
    tenant: String,
}

async fn read_record(
    State(db): State<Db>,
    Path((resource, id)): Path<(String, String)>,
) -> Response {
    let row: Result<Option<(String,)>, _> = sqlx::query_as(
        "SELECT data FROM records WHERE tenant_id = ? AND resource = ? AND id = ? AND deleted_at IS NULL",
    )
    .bind(&db.tenant)
    .bind(&resource)
    .bind(&id)
    .fetch_optional(&db.pool)
    .await;
    match row {
        Ok(Some((data,))) => ([("content-type", "application/json")], data).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, never resolve (SIGTERM still works).
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BARE_AXUM_LISTEN").ok())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("invalid listen address {listen:?}: {e}"))?;

    // The repository's clippy.toml forbids `Router::route` outside SecureRouter; this baseline is the
    // deliberate exception: it measures the same handler *without* Palisade's pipeline.
    #[expect(
        clippy::disallowed_methods,
        reason = "bench baseline: a bare axum router is the point of this binary"
    )]
    let mut app = Router::new().route("/health", get(health));
    if let Ok(path) = std::env::var("BARE_AXUM_SQLITE") {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        let tenant = std::env::var("BARE_AXUM_TENANT").unwrap_or_default();
        #[expect(
            clippy::disallowed_methods,
            reason = "bench baseline: a bare axum router is the point of this binary"
        )]
        let records = Router::new()
            .route("/v1/{resource}/{id}", get(read_record))
            .with_state(Db { pool, tenant });
        #[expect(
            clippy::disallowed_methods,
            reason = "bench baseline: a bare axum router is the point of this binary"
        )]
        {
            app = app.merge(records);
        }
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare-axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
