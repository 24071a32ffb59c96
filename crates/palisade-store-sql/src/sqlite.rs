//! SQLite: connection setup, pragmas, migrations and error codes. Nothing else in the crate names SQLite.
//!
//! Invariants:
//! - Every connection runs with `journal_mode=WAL` (readers never block the writer),
//!   `synchronous=NORMAL` (safe with WAL: a crash may lose the last commits, never corrupt the file),
//!   `foreign_keys=ON` (off by default in SQLite; the schema relies on foreign keys and
//!   `ON DELETE CASCADE`) and a 5 s `busy_timeout`, so concurrent writers queue instead of failing.
//! - The database file and its parent directories are created when missing.
//! - Write transactions start with `BEGIN IMMEDIATE`, taking the write lock up front, after queueing
//!   in this process's writer queue ([`crate::dialect::begin_write`]).
//! - Unique and primary-key violations (extended codes 2067 and 1555) become `Conflict` named
//!   `<table>.<column>[_<column>...]` from SQLite's message, which is how the PostgreSQL migration
//!   names its constraints; foreign-key violations (787) are `foreign_key`, since SQLite does not say
//!   which key failed. `SQLITE_BUSY` / `SQLITE_LOCKED` after the timeout are `Unavailable`.

use std::str::FromStr;
use std::time::Duration;

use palisade_store::{StoreError, StoreResult};
use sea_query::SqliteQueryBuilder;
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use crate::ConnectOptions;
use crate::dialect::{Classified, Dialect, translate, translate_migrate};

/// How long a connection waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `SQLITE_CONSTRAINT_PRIMARYKEY`.
const CONSTRAINT_PRIMARYKEY: i32 = 1555;
/// `SQLITE_CONSTRAINT_UNIQUE`.
const CONSTRAINT_UNIQUE: i32 = 2067;
/// `SQLITE_CONSTRAINT_FOREIGNKEY`.
const CONSTRAINT_FOREIGNKEY: i32 = 787;
/// `SQLITE_BUSY` (primary code).
const BUSY: i32 = 5;
/// `SQLITE_LOCKED` (primary code).
const LOCKED: i32 = 6;

/// The SQLite dialect.
pub(crate) struct SqliteDialect;

impl Dialect for SqliteDialect {
    type DB = sqlx::Sqlite;

    const NAME: &'static str = "sqlite";

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    fn write_queue() -> Option<&'static tokio::sync::Mutex<()>> {
        // One queue per process: a deployment opens one SQLite database. Several databases in one
        // process (a test binary run by `cargo test`) share it, which orders their writes, never
        // deadlocks them: no transaction opens another.
        static QUEUE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        Some(&QUEUE)
    }

    fn render_with<S: SqlxBinder>(stmt: &S) -> (String, SqlxValues) {
        stmt.build_sqlx(SqliteQueryBuilder)
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn classify(err: &dyn DatabaseError) -> Option<Classified> {
        let code: i32 = err.code()?.parse().ok()?;
        match code {
            CONSTRAINT_UNIQUE | CONSTRAINT_PRIMARYKEY => {
                Some(Classified::Conflict(unique_constraint_name(err.message())))
            }
            CONSTRAINT_FOREIGNKEY => Some(Classified::Conflict("foreign_key".to_owned())),
            c if c & 0xff == BUSY || c & 0xff == LOCKED => Some(Classified::Unavailable),
            _ => None,
        }
    }
}

/// The portable name of a unique constraint from SQLite's message:
/// `UNIQUE constraint failed: users.tenant_id, users.email` → `users.tenant_id_email`;
/// `UNIQUE constraint failed: index 'x'` → `x`. Anything unexpected is `unique`.
fn unique_constraint_name(message: &str) -> String {
    let Some((_, detail)) = message.split_once("constraint failed: ") else {
        return "unique".to_owned();
    };
    if let Some(index) = detail
        .strip_prefix("index '")
        .and_then(|rest| rest.strip_suffix('\''))
    {
        return index.to_owned();
    }
    let mut table = None;
    let mut columns = Vec::new();
    for qualified in detail.split(", ") {
        let Some((t, c)) = qualified.split_once('.') else {
            return "unique".to_owned();
        };
        if *table.get_or_insert(t) != t {
            return "unique".to_owned();
        }
        columns.push(c);
    }
    match table {
        Some(table) => format!("{table}.{}", columns.join("_")),
        None => "unique".to_owned(),
    }
}

/// Opens a pool on the SQLite file named by `url` (`sqlite://path`), creating it when missing.
pub(crate) async fn connect(url: &str, opts: &ConnectOptions) -> StoreResult<SqlitePool> {
    if opts.pg_schema.is_some() {
        return Err(StoreError::internal(
            "a PostgreSQL schema was given for a SQLite database",
        ));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    if let Some(dir) = options.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
    }
    SqlitePoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(translate::<SqliteDialect>)
}

/// Applies the embedded SQLite migrations.
pub(crate) async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    sqlx::migrate!("migrations/sqlite")
        .run(pool)
        .await
        .map_err(translate_migrate::<SqliteDialect>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_messages_name_the_table_and_columns() {
        for (message, name) in [
            ("UNIQUE constraint failed: tenants.slug", "tenants.slug"),
            (
                "UNIQUE constraint failed: users.tenant_id, users.email",
                "users.tenant_id_email",
            ),
            (
                "UNIQUE constraint failed: index 'tenants_one_system'",
                "tenants_one_system",
            ),
            ("something else entirely", "unique"),
            ("UNIQUE constraint failed: a.x, b.y", "unique"),
        ] {
            assert_eq!(unique_constraint_name(message), name, "{message}");
        }
    }

    #[tokio::test]
    async fn connections_use_wal_foreign_keys_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/dir/palisade.db", dir.path().display());
        let pool = connect(&url, &ConnectOptions::default()).await.unwrap();
        assert!(dir.path().join("nested/dir/palisade.db").exists());
        let mut conn = pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(journal, "wal");
        for (pragma, expected) in [
            ("PRAGMA foreign_keys", 1),
            ("PRAGMA synchronous", 1),
            ("PRAGMA busy_timeout", 5000),
        ] {
            let value: i64 = sqlx::query_scalar(pragma)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(value, expected, "{pragma}");
        }
    }
}
