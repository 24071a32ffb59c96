//! The seam between the stores, written once, and the two backends.
//!
//! A [`Dialect`] is a zero-sized marker naming one backend: its sqlx driver, how a sea-query statement is
//! rendered for it (placeholders, quoting), how a write transaction starts, and which of its database
//! errors mean "conflict" or "unavailable". [`Exec`] is the executor the stores call; it is implemented
//! once, generically, for every dialect whose driver handles the few column types this crate stores
//! (TEXT, 64-bit INTEGER, and the boolean of an `EXISTS`).
//!
//! Invariants:
//! - Store code talks only to [`Exec`] and [`Dialect`]; nothing outside `sqlite.rs` and `postgres.rs` names
//!   a backend, and no store method branches on one.
//! - Every value reaches the database as a bound parameter: SQL text comes only from sea-query's
//!   renderer ([`Rendered`]), which is why handing it to sqlx as `AssertSqlSafe` is sound.
//! - Read-decide-write transactions lock what they read with sea-query's `lock(LockType::Update)`: the
//!   renderer emits `FOR UPDATE` on PostgreSQL and nothing on SQLite, whose `BEGIN IMMEDIATE` already
//!   serialises writers ([`begin_write`]). That rendering difference is the whole locking dialect.
//! - Errors are translated in one place ([`translate`]): constraint violations become `Conflict`, lost
//!   connections and timeouts `Unavailable`, everything else `Internal`. No value is copied into a message.

use std::future::Future;

use palisade_store::{StoreError, StoreResult};
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use sqlx::error::DatabaseError;
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Executor, IntoArguments, Row as _, Type};

/// The connection type of a dialect (what pooled connections and transactions dereference to).
pub(crate) type Conn<D> = <<D as Dialect>::DB as Database>::Connection;
/// The row type of a dialect.
pub(crate) type DbRow<D> = <<D as Dialect>::DB as Database>::Row;

/// A statement rendered for one dialect: SQL text with placeholders, and the values to bind.
pub(crate) struct Rendered {
    sql: String,
    values: SqlxValues,
}

/// How a backend-specific database error is to be reported.
pub(crate) enum Classified {
    /// A unique or foreign-key violation, with the portable constraint name.
    Conflict(String),
    /// The database is busy, shutting down or out of connections: worth retrying later.
    Unavailable,
}

/// One backend. Implemented by the zero-sized markers in `sqlite.rs` and `postgres.rs`.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The sqlx driver.
    type DB: Database;

    /// `sqlite` or `postgres`.
    const NAME: &'static str;

    /// The statement that opens a read-write transaction.
    const BEGIN_WRITE: &'static str;

    /// The in-process queue write transactions wait in before they open, for a backend with a single
    /// writer (SQLite); `None` where the database itself queues writers on row locks (PostgreSQL).
    fn write_queue() -> Option<&'static tokio::sync::Mutex<()>>;

    /// Renders a statement with this dialect's query builder.
    fn render_with<S: SqlxBinder>(stmt: &S) -> (String, SqlxValues);

    /// Rows changed by an `INSERT`, `UPDATE` or `DELETE` (sqlx has no trait for this).
    fn rows_affected(result: &<Self::DB as Database>::QueryResult) -> u64;

    /// Recognises the database errors that are not `Internal`.
    fn classify(err: &dyn DatabaseError) -> Option<Classified>;

    /// Renders a statement for this dialect.
    fn render<S: SqlxBinder>(stmt: &S) -> Rendered {
        let (sql, values) = Self::render_with(stmt);
        Rendered { sql, values }
    }
}

/// Translates a sqlx error into a [`StoreError`], keeping the source for the log.
pub(crate) fn translate<D: Dialect>(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(db) => match D::classify(db.as_ref()) {
            Some(Classified::Conflict(constraint)) => StoreError::Conflict { constraint },
            Some(Classified::Unavailable) => {
                StoreError::Unavailable(Box::new(sqlx::Error::Database(db)))
            }
            None => StoreError::Internal(Box::new(sqlx::Error::Database(db))),
        },
        e @ (sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed) => StoreError::Unavailable(Box::new(e)),
        e => StoreError::Internal(Box::new(e)),
    }
}

/// The executor every store uses: run a rendered statement on a connection (pooled or in a
/// transaction) and read typed columns back. Implemented once, below, for every [`Dialect`].
pub(crate) trait Exec: Dialect {
    /// All rows of a query.
    fn fetch_all(
        conn: &mut Conn<Self>,
        q: Rendered,
    ) -> impl Future<Output = StoreResult<Vec<DbRow<Self>>>> + Send + '_;

    /// At most one row of a query.
    fn fetch_optional(
        conn: &mut Conn<Self>,
        q: Rendered,
    ) -> impl Future<Output = StoreResult<Option<DbRow<Self>>>> + Send + '_;

    /// Runs a statement and returns the number of rows it changed.
    fn execute(
        conn: &mut Conn<Self>,
        q: Rendered,
    ) -> impl Future<Output = StoreResult<u64>> + Send + '_;

    /// A non-null TEXT column.
    fn text(row: &DbRow<Self>, col: &'static str) -> StoreResult<String>;

    /// A nullable TEXT column.
    fn opt_text(row: &DbRow<Self>, col: &'static str) -> StoreResult<Option<String>>;

    /// A non-null 64-bit INTEGER column.
    fn int(row: &DbRow<Self>, col: &'static str) -> StoreResult<i64>;

    /// A nullable 64-bit INTEGER column.
    fn opt_int(row: &DbRow<Self>, col: &'static str) -> StoreResult<Option<i64>>;

    /// A boolean expression (`EXISTS`): `bool` on PostgreSQL, `0`/`1` on SQLite.
    fn flag(row: &DbRow<Self>, col: &'static str) -> StoreResult<bool>;
}

impl<D> Exec for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    SqlxValues: IntoArguments<D::DB>,
    String: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    i64: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    bool: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    &'static str: ColumnIndex<DbRow<D>>,
{
    async fn fetch_all(conn: &mut Conn<Self>, q: Rendered) -> StoreResult<Vec<DbRow<Self>>> {
        sqlx::query_with(AssertSqlSafe(q.sql), q.values)
            .fetch_all(conn)
            .await
            .map_err(translate::<D>)
    }

    async fn fetch_optional(
        conn: &mut Conn<Self>,
        q: Rendered,
    ) -> StoreResult<Option<DbRow<Self>>> {
        sqlx::query_with(AssertSqlSafe(q.sql), q.values)
            .fetch_optional(conn)
            .await
            .map_err(translate::<D>)
    }

    async fn execute(conn: &mut Conn<Self>, q: Rendered) -> StoreResult<u64> {
        sqlx::query_with(AssertSqlSafe(q.sql), q.values)
            .execute(conn)
            .await
            .map(|r| D::rows_affected(&r))
            .map_err(translate::<D>)
    }

    fn text(row: &DbRow<Self>, col: &'static str) -> StoreResult<String> {
        row.try_get(col).map_err(translate::<D>)
    }

    fn opt_text(row: &DbRow<Self>, col: &'static str) -> StoreResult<Option<String>> {
        row.try_get(col).map_err(translate::<D>)
    }

    fn int(row: &DbRow<Self>, col: &'static str) -> StoreResult<i64> {
        row.try_get(col).map_err(translate::<D>)
    }

    fn opt_int(row: &DbRow<Self>, col: &'static str) -> StoreResult<Option<i64>> {
        row.try_get(col).map_err(translate::<D>)
    }

    fn flag(row: &DbRow<Self>, col: &'static str) -> StoreResult<bool> {
        row.try_get(col).map_err(translate::<D>)
    }
}

/// A pooled connection, for statements that need no transaction.
pub(crate) async fn acquire<D: Dialect>(
    pool: &sqlx::Pool<D::DB>,
) -> StoreResult<sqlx::pool::PoolConnection<D::DB>> {
    pool.acquire().await.map_err(translate::<D>)
}

/// How long a writer waits for its turn in the writer queue.
const WRITE_QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A write transaction, holding its turn in the dialect's writer queue (SQLite) until it is committed
/// or dropped. It dereferences to the sqlx transaction, and through it to the connection.
pub(crate) struct WriteTx<D: Dialect> {
    // Declared first, so it is dropped (and its rollback queued) before the turn is handed on.
    tx: sqlx::Transaction<'static, D::DB>,
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl<D: Dialect> std::ops::Deref for WriteTx<D> {
    type Target = sqlx::Transaction<'static, D::DB>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl<D: Dialect> std::ops::DerefMut for WriteTx<D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Opens a read-write transaction. It rolls back when dropped without [`commit`].
///
/// Every transaction in this crate either writes before it reads, or locks the rows it reads and then
/// decides on them (`SELECT … FOR UPDATE` via sea-query's `lock(LockType::Update)`). On SQLite
/// `BEGIN IMMEDIATE` takes the database's write lock up front, so a transaction never fails half-way
/// trying to upgrade a read lock and no other writer can interleave; sea-query renders no
/// `FOR UPDATE` for SQLite, which needs none. On PostgreSQL (read committed) the row lock is what
/// serialises two transactions deciding on the same row: the second waits, then reads the first
/// one's committed result.
///
/// SQLite writers of this process first queue in [`Dialect::write_queue`] (first come, first
/// served), and only then take a connection and the database's lock. Without the queue, concurrent
/// writers would contend inside SQLite, whose busy handler waits by sleeping (up to 100 ms a
/// time): under load most of a writer's latency was spent asleep with the lock free. Writers of other
/// processes (the CLI) still meet the busy timeout, as before.
pub(crate) async fn begin_write<D: Dialect>(pool: &sqlx::Pool<D::DB>) -> StoreResult<WriteTx<D>> {
    let turn = match D::write_queue() {
        // Bounded like SQLite's own busy timeout: a writer that cannot get its turn in time is
        // `Unavailable` (503), never stuck.
        Some(queue) => Some(
            tokio::time::timeout(WRITE_QUEUE_TIMEOUT, queue.lock())
                .await
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?,
        ),
        None => None,
    };
    let tx = pool
        .begin_with(D::BEGIN_WRITE)
        .await
        .map_err(translate::<D>)?;
    Ok(WriteTx { tx, _turn: turn })
}

/// Commits a transaction.
pub(crate) async fn commit<D: Dialect>(tx: WriteTx<D>) -> StoreResult<()> {
    let WriteTx { tx, _turn } = tx;
    tx.commit().await.map_err(translate::<D>)
}

/// Translates a migration failure: database errors as [`translate`] does, the rest (a missing, edited
/// or unknown migration) as `Internal`.
pub(crate) fn translate_migrate<D: Dialect>(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e)
        | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => translate::<D>(e),
        other => StoreError::Internal(Box::new(other)),
    }
}
