//! `bare-axum`: the practical upper bound for Palisade's trivial route.
//!
//! Serves exactly one route, `GET /health` -> `200 {"status":"ok"}` (`content-type: application/json`),
//! on a bare axum router: no middleware, no state, no tracing. Everything else is axum's default 404/405.
//!
//! Listen address: first argument, else `BARE_AXUM_LISTEN`, else `127.0.0.1:18081`.
//! Stops on SIGINT/SIGTERM.

use std::net::SocketAddr;

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

const DEFAULT_LISTEN: &str = "127.0.0.1:18081";

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
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
    let app = Router::new().route("/health", get(health));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare-axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
