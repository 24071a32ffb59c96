//! Palisade's store traits ([`palisade_store`]) implemented for SQLite and PostgreSQL.
//!
//! The binary calls [`connect`] once at start-up; the URL's scheme picks the backend, and from then on
//! everything goes through the backend-neutral trait objects in [`palisade_store::Stores`].
//!
//! ```no_run
//! # async fn run() -> Result<(), palisade_store::StoreError> {
//! let backend = palisade_store_sql::connect("sqlite://data/palisade.db", &Default::default()).await?;
//! backend.migrate().await?;
//! let stores = backend.stores();
//! # Ok(()) }
//! ```
//!
//! Layout:
//! - `dialect`: the `Dialect` trait (query builder, transaction start, error codes) and the generic
//!   executor the stores call. `sqlite` and `postgres` implement it and hold everything else that is
//!   backend-specific: connection setup, pragmas, migrations, error translation.
//! - `schema` names tables and columns; `codec` fixes the storage representation (ids as canonical UUID
//!   text, timestamps as integer microseconds; see that module for why) and pagination.
//! - `tenants`, `users`, `roles` (custom roles), `records` (declared resources), `policies` (tenant Cedar documents), `health`, and the sign-in stores `signing_keys`,
//!   `otp`, `refresh`, `mfa`: the stores, each written once, generic over the dialect.
//!
//! Invariants:
//! - Every statement is built once with sea-query and rendered by the dialect; no store method
//!   branches on the backend. The conformance suite (`palisade_store::conformance`) runs on both.
//! - Every value is a bound parameter. The only SQL assembled from strings is test-schema DDL over an
//!   identifier checked to be plain (`postgres.rs`).
//! - SECURITY: tenant-owned queries filter by the caller's `TenantScope`: users, MFA state, refresh
//!   families and custom roles by `tenant_id = scope.tenant_id()`, tenants by the scope's
//!   materialised-path prefix. The documented unscoped exceptions are sign-in paths keyed by an unguessable id or a presented token
//!   (OTP challenges, refresh rotation) and the deployment-wide signing keys.
//! - SECURITY: single-use decisions (OTP consumption, TOTP steps, recovery codes, refresh rotation, the
//!   one active signing key) are made by one conditional write or a locked read in a write
//!   transaction, so they hold under concurrency on both backends; the conformance suite races them.
//! - Unique and foreign-key violations surface as `StoreError::Conflict` with the same constraint name
//!   on both backends; no value ever appears in an error message.
//! - Migrations are embedded per backend (`migrations/sqlite`, `migrations/postgres`) and never edited
//!   once shipped.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_store::{StoreError, Stores};

mod api_keys;
mod audit;
mod codec;
mod dialect;
mod health;
mod mfa;
mod otp;
mod policies;
mod postgres;
mod records;
mod refresh;
mod roles;
mod schema;
mod sessions;
mod signing_keys;
mod sqlite;
mod tenants;
mod users;

pub use postgres::{create_test_schema, drop_test_schema};

use dialect::{Dialect, Exec};
use postgres::PostgresDialect;
use sqlite::SqliteDialect;

/// How to connect. `Default` suits a single embedded instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Upper bound on pooled connections (default 10).
    pub max_connections: u32,
    /// How long a query waits for a pooled connection before the store reports `Unavailable`
    /// (default 5 s).
    pub acquire_timeout: Duration,
    /// PostgreSQL only: the schema every connection uses (its `search_path`), e.g. one made by
    /// [`create_test_schema`] to isolate a test. Must match `[a-z_][a-z0-9_]{0,62}`; refused for SQLite.
    pub pg_schema: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            pg_schema: None,
        }
    }
}

/// A connected database: one pool, chosen once from the URL.
#[derive(Clone)]
pub struct Backend {
    pool: Pool,
}

/// The pool of whichever backend [`connect`] chose. Matched only here, at start-up, never in a store.
#[derive(Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Opens a connection pool. `sqlite://<path>` selects SQLite (the file and its parent directories are
/// created when missing); `postgres://…` or `postgresql://…` selects PostgreSQL.
///
/// # Errors
/// `Internal` for an unknown scheme or a malformed URL (the message never repeats the URL, which may
/// carry a password); `Unavailable` when the database cannot be reached.
pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Backend, StoreError> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    let pool = match scheme.as_deref() {
        Some("sqlite") => Pool::Sqlite(sqlite::connect(url, opts).await?),
        Some("postgres" | "postgresql") => Pool::Postgres(postgres::connect(url, opts).await?),
        _ => {
            return Err(StoreError::internal(
                "unsupported database URL scheme: expected sqlite:// or postgres://",
            ));
        }
    };
    Ok(Backend { pool })
}

/// Every store over one dialect's pool.
fn stores_for<D: Exec>(pool: &sqlx::Pool<D::DB>) -> Stores {
    Stores {
        tenants: Arc::new(tenants::SqlTenantStore::<D>::new(pool.clone())),
        users: Arc::new(users::SqlUserStore::<D>::new(pool.clone())),
        roles: Arc::new(roles::SqlRoleStore::<D>::new(pool.clone())),
        health: Arc::new(health::SqlHealth::<D>::new(pool.clone())),
        signing_keys: Arc::new(signing_keys::SqlSigningKeyStore::<D>::new(pool.clone())),
        otp: Arc::new(otp::SqlOtpStore::<D>::new(pool.clone())),
        refresh: Arc::new(refresh::SqlRefreshStore::<D>::new(pool.clone())),
        mfa: Arc::new(mfa::SqlMfaStore::<D>::new(pool.clone())),
        audit: Arc::new(audit::SqlAuditStore::<D>::new(pool.clone())),
        records: Arc::new(records::SqlRecordStore::<D>::new(pool.clone())),
        api_keys: Arc::new(api_keys::SqlApiKeyStore::<D>::new(pool.clone())),
        sessions: Arc::new(sessions::SqlSessionStore::<D>::new(pool.clone())),
        policies: Arc::new(policies::SqlPolicyStore::<D>::new(pool.clone())),
    }
}

impl Backend {
    /// `sqlite` or `postgres` (the same name [`palisade_store::StoreHealth::backend`] reports).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match &self.pool {
            Pool::Sqlite(_) => SqliteDialect::NAME,
            Pool::Postgres(_) => PostgresDialect::NAME,
        }
    }

    /// Applies the embedded migrations that have not run yet.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached; `Internal` when a migration fails or an
    /// applied migration no longer matches the embedded one.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::migrate(pool).await,
            Pool::Postgres(pool) => postgres::migrate(pool).await,
        }
    }

    /// The stores, sharing this backend's pool.
    #[must_use]
    pub fn stores(&self) -> Stores {
        match &self.pool {
            Pool::Sqlite(pool) => stores_for::<SqliteDialect>(pool),
            Pool::Postgres(pool) => stores_for::<PostgresDialect>(pool),
        }
    }

    /// Test support only: runs raw SQL as an attacker with database access would (tamper tests).
    /// Never compiled into the server.
    ///
    /// # Errors
    /// The database's error, translated as any other.
    #[cfg(feature = "test-support")]
    pub async fn execute_raw_for_tests(&self, sql: &str) -> Result<u64, StoreError> {
        use sqlx::Executor as _;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.pool {
            Pool::Sqlite(pool) => pool
                .execute(sqlx::raw_sql(sql))
                .await
                .map(|r| r.rows_affected())
                .map_err(dialect::translate::<SqliteDialect>),
            Pool::Postgres(pool) => pool
                .execute(sqlx::raw_sql(sql))
                .await
                .map(|r| r.rows_affected())
                .map_err(dialect::translate::<PostgresDialect>),
        }
    }

    /// Closes the pool, waiting for checked-out connections to return. Later queries are `Unavailable`.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name())
            .finish()
    }
}
