//! The Palisade API server: configuration, the request pipeline, `SecureRouter`, the routes, the
//! OpenAPI document and the CLI. The `palisade` binary in `main.rs` is a thin shell over [`cli`].
//!
//! Invariants (DESIGN.md): every route declares one capability or a public reason; every response,
//! errors included, carries the security headers and a request id; every error is an RFC 9457 problem
//! that leaks nothing; no SQL and no cryptographic primitive lives in this crate.

pub mod app;
pub mod audit_jobs;
pub mod auth;
pub mod authn;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod export;
pub mod extract;
pub mod guard;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod openapi;
pub mod pipeline;
pub mod policies;
pub mod principal_cache;
pub mod ratelimit;
pub mod record_jobs;
pub mod resources;
pub mod router;
pub mod routes;
pub mod security_stats;
pub mod state;
pub mod trust;
pub mod validate;
pub mod waf;

pub use app::{App, BuildError, build};
pub use config::Settings;
