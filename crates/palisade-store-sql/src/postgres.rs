//! PostgreSQL: connection setup, migrations, error codes, and per-test schemas. Nothing else in the crate
//! names PostgreSQL.
//!
//! Invariants:
//! - Unique violations (SQLSTATE 23505) become `Conflict` named after the violated constraint or index;
//!   the migration names those `<table>.<column>[_<column>...]`, the names the SQLite dialect derives
//!   from SQLite's messages. Foreign-key violations (23503) are `foreign_key`, as on SQLite.
//! - Connection failures (SQLSTATE class 08), shutdowns (57P01–57P03) and `too_many_connections`
//!   (53300) are `Unavailable`.
//! - A schema name (for `search_path` and the test-schema helpers) is accepted only when it matches
//!   `[a-z_][a-z0-9_]{0,62}`, so the one place that splices an identifier into SQL (DDL, which cannot
//!   take bind parameters) can only ever splice a plain identifier.

use std::str::FromStr;

use palisade_store::{StoreError, StoreResult};
use sea_query::PostgresQueryBuilder;
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::ConnectOptions;
use crate::dialect::{Classified, Dialect, translate, translate_migrate};

/// The PostgreSQL dialect.
pub(crate) struct PostgresDialect;

impl Dialect for PostgresDialect {
    type DB = sqlx::Postgres;

    const NAME: &'static str = "postgres";

    const BEGIN_WRITE: &'static str = "BEGIN";

    fn write_queue() -> Option<&'static tokio::sync::Mutex<()>> {
        None
    }

    fn render_with<S: SqlxBinder>(stmt: &S) -> (String, SqlxValues) {
        stmt.build_sqlx(PostgresQueryBuilder)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn classify(err: &dyn DatabaseError) -> Option<Classified> {
        let code = err.code()?;
        match code.as_ref() {
            "23505" => Some(Classified::Conflict(
                err.constraint().unwrap_or("unique").to_owned(),
            )),
            "23503" => Some(Classified::Conflict("foreign_key".to_owned())),
            "57P01" | "57P02" | "57P03" | "53300" => Some(Classified::Unavailable),
            c if c.starts_with("08") => Some(Classified::Unavailable),
            _ => None,
        }
    }
}

/// Whether `name` is a plain lowercase identifier PostgreSQL accepts unquoted.
fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// `name` checked by [`is_plain_identifier`], double-quoted for DDL.
fn quoted_schema(name: &str) -> StoreResult<String> {
    if is_plain_identifier(name) {
        Ok(format!("\"{name}\""))
    } else {
        Err(StoreError::internal(
            "schema names must match [a-z_][a-z0-9_]{0,62}",
        ))
    }
}

/// Parses a PostgreSQL URL. The error does not repeat the URL, which may carry a password.
fn parse_url(url: &str) -> StoreResult<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|_| StoreError::internal("invalid PostgreSQL URL"))
}

/// Opens a pool on the database named by `url`, with `search_path` set to `opts.pg_schema` when given.
pub(crate) async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<PgPool> {
    let mut options = parse_url(url)?.application_name("palisade");
    if let Some(schema) = &opts.pg_schema {
        // Checked although it travels as a startup parameter, not SQL: it names a schema, nothing else.
        quoted_schema(schema)?;
        options = options.options([("search_path", schema.as_str())]);
    }
    PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(translate::<PostgresDialect>)
}

/// Applies the embedded PostgreSQL migrations (in the first schema of the `search_path`), then warns
/// when the server runs without autovacuum.
pub(crate) async fn migrate(pool: &PgPool) -> StoreResult<()> {
    sqlx::migrate!("migrations/postgres")
        .run(pool)
        .await
        .map_err(translate_migrate::<PostgresDialect>)?;
    warn_without_autovacuum(pool).await;
    Ok(())
}

/// Without autovacuum no table is ever analysed, and the planner, blind to how many rows a tenant
/// holds, can serve a look-up by id from an index that reads every record of the resource: reads
/// slow down as tables grow. Worth one line at start; not a reason to refuse to start.
async fn warn_without_autovacuum(pool: &PgPool) {
    let setting: Result<String, _> = sqlx::query_scalar("SHOW autovacuum").fetch_one(pool).await;
    if matches!(setting.as_deref(), Ok("off")) {
        tracing::warn!(
            target: "palisade::store",
            "PostgreSQL runs with autovacuum = off: tables are never analysed, so query plans degrade as \
             data grows; turn it on, or run ANALYZE regularly"
        );
    }
}

/// Runs one DDL statement on a fresh connection to `admin_url`.
async fn run_ddl(admin_url: &str, ddl: String) -> StoreResult<()> {
    let mut conn = PgConnection::connect_with(&parse_url(admin_url)?)
        .await
        .map_err(translate::<PostgresDialect>)?;
    // The only identifier in `ddl` passed `quoted_schema`; DDL cannot take bind parameters.
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&mut conn)
        .await
        .map_err(translate::<PostgresDialect>)?;
    conn.close().await.map_err(translate::<PostgresDialect>)
}

/// Test support: creates an empty schema with a fresh random name (`t_<32 hex digits>`) in the database
/// at `admin_url` and returns its name.
///
/// Connect to it with [`ConnectOptions::pg_schema`] set to the name, run [`crate::Backend::migrate`],
/// and remove it with [`drop_test_schema`] afterwards. Tests sharing one database stay isolated this way.
///
/// # Errors
/// `Unavailable` when the database cannot be reached; `Internal` for an invalid URL or a refused
/// `CREATE SCHEMA`.
pub async fn create_test_schema(admin_url: &str) -> Result<String, StoreError> {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    run_ddl(
        admin_url,
        format!("CREATE SCHEMA {}", quoted_schema(&name)?),
    )
    .await?;
    Ok(name)
}

/// Test support: drops a schema made by [`create_test_schema`], with everything in it. Best effort: a
/// failure is logged, not returned, so cleanup never masks the test's own outcome. Names that are not
/// plain identifiers are refused (and logged) without touching the database.
pub async fn drop_test_schema(admin_url: &str, schema: &str) {
    let result = match quoted_schema(schema) {
        Ok(quoted) => run_ddl(admin_url, format!("DROP SCHEMA IF EXISTS {quoted} CASCADE")).await,
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "could not drop a test schema");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_are_schema_names() {
        for good in ["t_0123abcd", "_x", "public", &"a".repeat(63)] {
            assert!(is_plain_identifier(good), "{good}");
        }
        for bad in [
            "",
            "T_x",
            "1abc",
            "a-b",
            "a\"; DROP SCHEMA public; --",
            "a b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }
}
