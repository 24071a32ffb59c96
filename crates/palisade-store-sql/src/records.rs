//! [`RecordStore`] for every dialect: each statement is built once with sea-query.
//!
//! Invariants:
//! - SECURITY: every statement filters by `tenant_id = scope.tenant_id()` and the resource name (and
//!   the owner when given). Filters compare indexed values (`record_fields`) with bound parameters
//!   inside an `id IN (SELECT record_id …)` subquery that carries the same tenant and resource filter.
//! - Every mutation runs in one write transaction: lock the record (`FOR UPDATE` on PostgreSQL,
//!   `BEGIN IMMEDIATE` on SQLite), check the version, write, maintain `record_unique` and
//!   `record_fields`, append the audit entry, commit. Any failure rolls all of it back.
//! - Unique clashes surface as `Conflict { constraint: "<resource>.<field>" }`; stale versions as
//!   `Conflict { constraint: RECORD_VERSION }`.
//! - Idempotency keys are reserved in their own write transaction before the create runs; a
//!   concurrent reservation of the same key loses on the primary key and reads the winner's row.

use async_trait::async_trait;
use palisade_authz::TenantScope;
use palisade_store::audit::{AuditEvent, AuditMeta};
use palisade_store::{
    FilterOp, IndexedValue, NewRecord, Page, PageRequest, RECORD_VERSION, Record, RecordFilter,
    RecordKeys, RecordQuery, RecordStore, Reservation, StoreError, StoreResult, StoredResponse,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_query::{
    Expr, ExprTrait, Func, InsertStatement, LockType, Order, Query, SelectStatement, SimpleExpr,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::codec::{fetch_keyset_page, from_micros, now, opt_from_micros, to_micros};
use crate::dialect::{Conn, DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{IdempotencyKeys, RecordFields, RecordUnique, Records, col};

/// Output name of `COUNT(*)`.
const COUNT: &str = "n";
/// The most records one retention transaction purges.
const MAX_PURGE_BATCH: u32 = 500;

/// Records over one dialect's pool.
pub(crate) struct SqlRecordStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
    creates: Arc<CreateQueue>,
}

impl<D: Dialect> SqlRecordStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self {
            pool,
            creates: Arc::new(CreateQueue::default()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Group commit of creates
// ---------------------------------------------------------------------------------------------

/// The most creates written in one transaction.
const MAX_CREATE_BATCH: usize = 64;

/// A create waiting for its turn: the prepared record and the caller waiting for the outcome.
struct PendingCreate {
    scope: TenantScope,
    meta: AuditMeta,
    record: Record,
    keys: RecordKeys,
    done: oneshot::Sender<StoreResult<Record>>,
}

/// Creates waiting to be written, and whether a drainer task is writing them.
///
/// Group commit: a create joins the queue; one drainer task at a time takes everything queued
/// (up to [`MAX_CREATE_BATCH`]) and writes it in one transaction with one multi-row statement per
/// table, so a busy server pays one `BEGIN`, one `COMMIT` and a handful of statements for many
/// creates, where it paid them per create. Each create still gets its own audit entry, chained in
/// queue order. If the batch fails for any reason (a unique clash between two of its records, a
/// failing audit insert, a lost connection) it is rolled back whole and its creates are written
/// again one by one, each in its own transaction, so each caller gets exactly the outcome it would
/// have had alone. With one create queued there is no batch: it is written on its own at once.
///
/// The drainer runs as its own task, so a caller that goes away does not cancel a transaction
/// holding other callers' creates; a create whose caller has gone before its batch starts is
/// dropped unwritten, as a cancelled request's transaction would have been.
#[derive(Default)]
struct CreateQueue {
    pending: std::sync::Mutex<Vec<PendingCreate>>,
    draining: AtomicBool,
}

impl CreateQueue {
    /// The queue. A panic elsewhere cannot leave the `Vec` half-changed, so a poisoned lock is
    /// taken over rather than failing every create after it.
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<PendingCreate>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes up to [`MAX_CREATE_BATCH`] queued creates whose callers are still waiting.
    fn take(&self) -> Vec<PendingCreate> {
        let mut pending = self.pending();
        pending.retain(|c| !c.done.is_closed());
        let n = pending.len().min(MAX_CREATE_BATCH);
        pending.drain(..n).collect()
    }
}

/// Resets the drainer flag if a drainer unwinds, so later creates start a new one.
struct DrainerFlag(Arc<CreateQueue>);

impl Drop for DrainerFlag {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.draining.store(false, Ordering::SeqCst);
        }
    }
}

/// Writes queued creates until the queue is empty.
async fn drain_creates<D: Exec>(pool: sqlx::Pool<D::DB>, queue: Arc<CreateQueue>) {
    let _flag = DrainerFlag(queue.clone());
    loop {
        let batch = queue.take();
        if batch.is_empty() {
            queue.draining.store(false, Ordering::SeqCst);
            // A create queued between `take` and the store above found the flag still set and
            // started no drainer: take it over, unless a new drainer already has.
            if queue.pending().is_empty() || queue.draining.swap(true, Ordering::SeqCst) {
                return;
            }
            continue;
        }
        write_creates::<D>(&pool, batch).await;
    }
}

/// Writes a batch together, or each create alone if the batch fails or holds one create.
async fn write_creates<D: Exec>(pool: &sqlx::Pool<D::DB>, batch: Vec<PendingCreate>) {
    if batch.len() > 1 {
        match insert_together::<D>(pool, &batch).await {
            Ok(()) => {
                for c in batch {
                    let _ = c.done.send(Ok(c.record));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, creates = batch.len(), "create batch rolled back; writing each alone");
            }
        }
    }
    for c in batch {
        let outcome = insert_one::<D>(pool, &c.scope, &c.meta, &c.record, &c.keys).await;
        let _ = c.done.send(outcome.map(|()| c.record));
    }
}

/// The `records` row of a new record, appended to a multi-row insert.
fn record_row(stmt: &mut InsertStatement, scope: &TenantScope, record: &Record) -> StoreResult<()> {
    stmt.values([
        tenant_of(scope).into(),
        record.resource.as_str().into(),
        record.id.as_str().into(),
        record.owner_id.as_str().into(),
        data_text(&record.data)?.into(),
        1i64.into(),
        to_micros(record.created_at)?.into(),
        to_micros(record.updated_at)?.into(),
    ])
    .map_err(internal)?;
    Ok(())
}

fn record_insert() -> InsertStatement {
    Query::insert()
        .into_table(Records::Table)
        .columns([
            Records::TenantId,
            Records::Resource,
            Records::Id,
            Records::OwnerId,
            Records::Data,
            Records::Version,
            Records::CreatedAt,
            Records::UpdatedAt,
        ])
        .take()
}

/// One create in its own transaction.
async fn insert_one<D: Exec>(
    pool: &sqlx::Pool<D::DB>,
    scope: &TenantScope,
    meta: &AuditMeta,
    record: &Record,
    keys: &RecordKeys,
) -> StoreResult<()> {
    let mut insert = record_insert();
    record_row(&mut insert, scope, record)?;
    let mut tx = begin_write::<D>(pool).await?;
    D::execute(&mut tx, D::render(&insert)).await?;
    claim_unique::<D>(&mut tx, scope, &record.resource, &record.id, &keys.unique).await?;
    write_index::<D>(
        &mut tx,
        scope,
        &record.resource,
        &record.id,
        &keys.indexed,
        true,
    )
    .await?;
    let ev = event("create", record, None, Some(record.to_json()));
    crate::audit::append::<D>(&mut tx, scope.tenant_id(), meta, ev).await?;
    commit::<D>(tx).await
}

/// A batch of creates in one transaction: one multi-row insert per table, and per tenant one
/// audit append of all its entries in queue order. Tenants are appended in id order, so two
/// instances batching the same tenants lock their chain heads in the same order.
async fn insert_together<D: Exec>(
    pool: &sqlx::Pool<D::DB>,
    batch: &[PendingCreate],
) -> StoreResult<()> {
    let mut records = record_insert();
    let mut claims = unique_insert();
    let mut fields = index_insert();
    let (mut any_claim, mut any_field) = (false, false);
    for c in batch {
        record_row(&mut records, &c.scope, &c.record)?;
        for (field, key) in &c.keys.unique {
            unique_row(
                &mut claims,
                &c.scope,
                &c.record.resource,
                &c.record.id,
                field,
                key,
            )?;
            any_claim = true;
        }
        for (field, value) in &c.keys.indexed {
            index_row(
                &mut fields,
                &c.scope,
                &c.record.resource,
                &c.record.id,
                field,
                value,
            )?;
            any_field = true;
        }
    }
    let mut tenants: Vec<palisade_domain::TenantId> =
        batch.iter().map(|c| c.scope.tenant_id()).collect();
    tenants.sort_by_key(ToString::to_string);
    tenants.dedup();
    let mut tx = begin_write::<D>(pool).await?;
    D::execute(&mut tx, D::render(&records)).await?;
    if any_claim {
        D::execute(&mut tx, D::render(&claims)).await?;
    }
    if any_field {
        D::execute(&mut tx, D::render(&fields)).await?;
    }
    for tenant in tenants {
        let events = batch
            .iter()
            .filter(|c| c.scope.tenant_id() == tenant)
            .map(|c| {
                (
                    &c.meta,
                    event("create", &c.record, None, Some(c.record.to_json())),
                )
            })
            .collect();
        crate::audit::append_all::<D>(&mut tx, tenant, events).await?;
    }
    commit::<D>(tx).await
}

fn tenant_of(scope: &TenantScope) -> String {
    scope.tenant_id().to_string()
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(e))
}

/// Which records a statement may touch: the scope's tenant, the resource, and the owner when given.
fn scoped(scope: &TenantScope, resource: &str, owner: Option<&str>) -> SelectStatement {
    Query::select()
        .columns([
            Records::Id,
            Records::Resource,
            Records::OwnerId,
            Records::Data,
            Records::Version,
            Records::CreatedAt,
            Records::UpdatedAt,
            Records::DeletedAt,
        ])
        .from(Records::Table)
        .and_where(Expr::col(Records::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(Records::Resource).eq(resource))
        .and_where_option(owner.map(|o| Expr::col(Records::OwnerId).eq(o)))
        .take()
}

fn decode<D: Exec>(row: &DbRow<D>) -> StoreResult<Record> {
    let data: Value = serde_json::from_str(&D::text(row, col(Records::Data))?)
        .map_err(|_| StoreError::internal("stored records.data does not decode"))?;
    let Value::Object(data) = data else {
        return Err(StoreError::internal("stored records.data is not an object"));
    };
    Ok(Record {
        id: D::text(row, col(Records::Id))?,
        resource: D::text(row, col(Records::Resource))?,
        owner_id: D::text(row, col(Records::OwnerId))?,
        data,
        version: D::int(row, col(Records::Version))?,
        created_at: from_micros(D::int(row, col(Records::CreatedAt))?)?,
        updated_at: from_micros(D::int(row, col(Records::UpdatedAt))?)?,
        deleted_at: opt_from_micros(D::opt_int(row, col(Records::DeletedAt))?)?,
    })
}

/// The record, locked for the rest of the transaction; `deleted` picks live or soft-deleted ones.
async fn load_locked<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    resource: &str,
    id: &str,
    owner: Option<&str>,
    deleted: bool,
) -> StoreResult<Option<Record>> {
    let stmt = scoped(scope, resource, owner)
        .and_where(Expr::col(Records::Id).eq(id))
        .and_where(if deleted {
            Expr::col(Records::DeletedAt).is_not_null()
        } else {
            Expr::col(Records::DeletedAt).is_null()
        })
        .lock(LockType::Update)
        .take();
    D::fetch_optional(conn, D::render(&stmt))
        .await?
        .as_ref()
        .map(decode::<D>)
        .transpose()
}

fn value_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn unique_insert() -> InsertStatement {
    Query::insert()
        .into_table(RecordUnique::Table)
        .columns([
            RecordUnique::TenantId,
            RecordUnique::Resource,
            RecordUnique::Field,
            RecordUnique::ValueHash,
            RecordUnique::RecordId,
        ])
        .take()
}

/// One `record_unique` row, appended to a multi-row insert.
fn unique_row(
    stmt: &mut InsertStatement,
    scope: &TenantScope,
    resource: &str,
    id: &str,
    field: &str,
    key: &str,
) -> StoreResult<()> {
    stmt.values([
        tenant_of(scope).into(),
        resource.into(),
        field.into(),
        value_hash(key).into(),
        id.into(),
    ])
    .map_err(internal)?;
    Ok(())
}

/// Claims the unique values of a record, one statement per field, so a clash names the field.
async fn claim_unique<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    resource: &str,
    id: &str,
    unique: &[(String, String)],
) -> StoreResult<()> {
    for (field, key) in unique {
        let mut stmt = unique_insert();
        unique_row(&mut stmt, scope, resource, id, field, key)?;
        match D::execute(conn, D::render(&stmt)).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(StoreError::Conflict {
                    constraint: format!("{resource}.{field}"),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn release_unique<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    resource: &str,
    id: &str,
) -> StoreResult<()> {
    let stmt = Query::delete()
        .from_table(RecordUnique::Table)
        .and_where(Expr::col(RecordUnique::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(RecordUnique::Resource).eq(resource))
        .and_where(Expr::col(RecordUnique::RecordId).eq(id))
        .take();
    D::execute(conn, D::render(&stmt)).await.map(|_| ())
}

/// Replaces the indexed values of a record.
async fn write_index<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    resource: &str,
    id: &str,
    indexed: &[(String, IndexedValue)],
    fresh: bool,
) -> StoreResult<()> {
    // A record created in this transaction has no indexed values to clear.
    if !fresh {
        let clear = Query::delete()
            .from_table(RecordFields::Table)
            .and_where(Expr::col(RecordFields::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(RecordFields::Resource).eq(resource))
            .and_where(Expr::col(RecordFields::RecordId).eq(id))
            .take();
        D::execute(conn, D::render(&clear)).await?;
    }
    if indexed.is_empty() {
        return Ok(());
    }
    // Every value in one multi-row statement.
    let mut stmt = index_insert();
    for (field, value) in indexed {
        index_row(&mut stmt, scope, resource, id, field, value)?;
    }
    D::execute(conn, D::render(&stmt)).await?;
    Ok(())
}

fn index_insert() -> InsertStatement {
    Query::insert()
        .into_table(RecordFields::Table)
        .columns([
            RecordFields::TenantId,
            RecordFields::Resource,
            RecordFields::RecordId,
            RecordFields::Field,
            RecordFields::TextValue,
            RecordFields::NumValue,
        ])
        .take()
}

/// One `record_fields` row, appended to a multi-row insert.
fn index_row(
    stmt: &mut InsertStatement,
    scope: &TenantScope,
    resource: &str,
    id: &str,
    field: &str,
    value: &IndexedValue,
) -> StoreResult<()> {
    let (text, num): (Option<String>, Option<f64>) = match value {
        IndexedValue::Text(t) => (Some(t.clone()), None),
        IndexedValue::Num(n) => (None, Some(*n)),
    };
    stmt.values([
        tenant_of(scope).into(),
        resource.into(),
        id.into(),
        field.into(),
        text.into(),
        num.into(),
    ])
    .map_err(internal)?;
    Ok(())
}

fn data_text(data: &Map<String, Value>) -> StoreResult<String> {
    serde_json::to_string(data).map_err(internal)
}

fn event(action: &str, record: &Record, old: Option<Value>, new: Option<Value>) -> AuditEvent {
    AuditEvent {
        action: format!("{}.{action}", record.resource),
        resource: record.resource.clone(),
        record_id: Some(record.id.clone()),
        old,
        new,
    }
}

/// One filter as a condition on `records.id`.
fn filter_expr(scope: &TenantScope, resource: &str, f: &RecordFilter) -> SimpleExpr {
    let column = |v: &IndexedValue| match v {
        IndexedValue::Text(_) => RecordFields::TextValue,
        IndexedValue::Num(_) => RecordFields::NumValue,
    };
    let bind = |v: &IndexedValue| -> sea_query::Value {
        match v {
            IndexedValue::Text(t) => t.clone().into(),
            IndexedValue::Num(n) => (*n).into(),
        }
    };
    let cond = match (f.op, f.values.first()) {
        (_, None) => Expr::val(1).eq(0),
        (FilterOp::In, Some(first)) => {
            Expr::col(column(first)).is_in(f.values.iter().map(bind).collect::<Vec<_>>())
        }
        (op, Some(v)) => {
            let c = Expr::col(column(v));
            let v = bind(v);
            match op {
                FilterOp::Eq | FilterOp::In => c.eq(v),
                FilterOp::Ne => c.ne(v),
                FilterOp::Gt => c.gt(v),
                FilterOp::Gte => c.gte(v),
                FilterOp::Lt => c.lt(v),
                FilterOp::Lte => c.lte(v),
            }
        }
    };
    let sub = Query::select()
        .column(RecordFields::RecordId)
        .from(RecordFields::Table)
        .and_where(Expr::col(RecordFields::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(RecordFields::Resource).eq(resource))
        .and_where(Expr::col(RecordFields::Field).eq(f.field.as_str()))
        .and_where(cond)
        .take();
    Expr::col((Records::Table, Records::Id)).in_subquery(sub)
}

#[async_trait]
impl<D: Exec> RecordStore for SqlRecordStore<D> {
    async fn create_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        new: NewRecord,
    ) -> StoreResult<Record> {
        let at = now()?;
        let record = Record {
            id: uuid::Uuid::now_v7().to_string(),
            resource: new.resource,
            owner_id: new.owner_id,
            data: new.data,
            version: 1,
            created_at: at,
            updated_at: at,
            deleted_at: None,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            insert_one::<D>(&self.pool, scope, meta, &record, &new.keys).await?;
            return Ok(record);
        };
        let (done, outcome) = oneshot::channel();
        self.creates.pending().push(PendingCreate {
            scope: scope.clone(),
            meta: meta.clone(),
            record,
            keys: new.keys,
            done,
        });
        if !self.creates.draining.swap(true, Ordering::SeqCst) {
            runtime.spawn(drain_creates::<D>(self.pool.clone(), self.creates.clone()));
        }
        outcome
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }

    async fn get_record(
        &self,
        scope: &TenantScope,
        resource: &str,
        id: &str,
        owner: Option<&str>,
    ) -> StoreResult<Option<Record>> {
        let stmt = scoped(scope, resource, owner)
            .and_where(Expr::col(Records::Id).eq(id))
            .and_where(Expr::col(Records::DeletedAt).is_null())
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::fetch_optional(&mut conn, D::render(&stmt))
            .await?
            .as_ref()
            .map(decode::<D>)
            .transpose()
    }

    async fn list_records(
        &self,
        scope: &TenantScope,
        resource: &str,
        query: &RecordQuery,
        page: &PageRequest,
    ) -> StoreResult<Page<Record>> {
        let mut stmt = scoped(scope, resource, query.owner.as_deref())
            .and_where(Expr::col(Records::DeletedAt).is_null())
            .take();
        for f in &query.filters {
            stmt.and_where(filter_expr(scope, resource, f));
        }
        fetch_keyset_page::<D, _, _>(&self.pool, stmt, Records::Id, page, decode::<D>, |r| {
            r.id.clone()
        })
        .await
    }

    async fn update_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        id: &str,
        owner: Option<&str>,
        expected_version: i64,
        data: Map<String, Value>,
        keys: RecordKeys,
    ) -> StoreResult<Record> {
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = load_locked::<D>(&mut tx, scope, resource, id, owner, false)
            .await?
            .ok_or(StoreError::NotFound)?;
        if old.version != expected_version {
            return Err(StoreError::Conflict {
                constraint: RECORD_VERSION.to_owned(),
            });
        }
        let at = now()?;
        let new = Record {
            data,
            version: old.version + 1,
            updated_at: at,
            ..old.clone()
        };
        let update = Query::update()
            .table(Records::Table)
            .values([
                (Records::Data, data_text(&new.data)?.into()),
                (Records::Version, new.version.into()),
                (Records::UpdatedAt, to_micros(at)?.into()),
            ])
            .and_where(Expr::col(Records::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(Records::Resource).eq(resource))
            .and_where(Expr::col(Records::Id).eq(id))
            .and_where(Expr::col(Records::Version).eq(expected_version))
            .and_where(Expr::col(Records::DeletedAt).is_null())
            .take();
        // SECURITY: the version condition makes the write itself the arbiter, whatever the lock did.
        if D::execute(&mut tx, D::render(&update)).await? != 1 {
            return Err(StoreError::Conflict {
                constraint: RECORD_VERSION.to_owned(),
            });
        }
        release_unique::<D>(&mut tx, scope, resource, id).await?;
        claim_unique::<D>(&mut tx, scope, resource, id, &keys.unique).await?;
        write_index::<D>(&mut tx, scope, resource, id, &keys.indexed, false).await?;
        let ev = event("update", &new, Some(old.to_json()), Some(new.to_json()));
        crate::audit::append::<D>(&mut tx, scope.tenant_id(), meta, ev).await?;
        commit::<D>(tx).await?;
        Ok(new)
    }

    async fn delete_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        id: &str,
        owner: Option<&str>,
        expected_version: i64,
    ) -> StoreResult<Record> {
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = load_locked::<D>(&mut tx, scope, resource, id, owner, false)
            .await?
            .ok_or(StoreError::NotFound)?;
        if old.version != expected_version {
            return Err(StoreError::Conflict {
                constraint: RECORD_VERSION.to_owned(),
            });
        }
        let at = now()?;
        let update = Query::update()
            .table(Records::Table)
            .values([
                (Records::DeletedAt, to_micros(at)?.into()),
                (Records::Version, (old.version + 1).into()),
            ])
            .and_where(Expr::col(Records::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(Records::Resource).eq(resource))
            .and_where(Expr::col(Records::Id).eq(id))
            .and_where(Expr::col(Records::Version).eq(expected_version))
            .and_where(Expr::col(Records::DeletedAt).is_null())
            .take();
        if D::execute(&mut tx, D::render(&update)).await? != 1 {
            return Err(StoreError::Conflict {
                constraint: RECORD_VERSION.to_owned(),
            });
        }
        release_unique::<D>(&mut tx, scope, resource, id).await?;
        let ev = event("delete", &old, Some(old.to_json()), None);
        crate::audit::append::<D>(&mut tx, scope.tenant_id(), meta, ev).await?;
        commit::<D>(tx).await?;
        Ok(Record {
            version: old.version + 1,
            deleted_at: Some(at),
            ..old
        })
    }

    async fn restore_record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        id: &str,
        owner: Option<&str>,
        keys_of: &(dyn for<'m> Fn(&'m Map<String, Value>) -> RecordKeys + Send + Sync),
    ) -> StoreResult<Record> {
        let mut tx = begin_write::<D>(&self.pool).await?;
        let old = load_locked::<D>(&mut tx, scope, resource, id, owner, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        let at = now()?;
        let new = Record {
            version: old.version + 1,
            updated_at: at,
            deleted_at: None,
            ..old.clone()
        };
        let update = Query::update()
            .table(Records::Table)
            .values([
                (Records::DeletedAt, Option::<i64>::None.into()),
                (Records::Version, new.version.into()),
                (Records::UpdatedAt, to_micros(at)?.into()),
            ])
            .and_where(Expr::col(Records::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(Records::Resource).eq(resource))
            .and_where(Expr::col(Records::Id).eq(id))
            .and_where(Expr::col(Records::Version).eq(old.version))
            .take();
        if D::execute(&mut tx, D::render(&update)).await? != 1 {
            return Err(StoreError::Conflict {
                constraint: RECORD_VERSION.to_owned(),
            });
        }
        let keys = keys_of(&new.data);
        claim_unique::<D>(&mut tx, scope, resource, id, &keys.unique).await?;
        write_index::<D>(&mut tx, scope, resource, id, &keys.indexed, false).await?;
        let ev = event("restore", &new, Some(old.to_json()), Some(new.to_json()));
        crate::audit::append::<D>(&mut tx, scope.tenant_id(), meta, ev).await?;
        commit::<D>(tx).await?;
        Ok(new)
    }

    async fn count_records(
        &self,
        scope: &TenantScope,
        resource: &str,
        include_deleted: bool,
    ) -> StoreResult<u64> {
        let mut stmt = Query::select()
            .expr_as(Func::count(Expr::col(Records::Id)), COUNT)
            .from(Records::Table)
            .and_where(Expr::col(Records::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(Records::Resource).eq(resource))
            .take();
        if !include_deleted {
            stmt.and_where(Expr::col(Records::DeletedAt).is_null());
        }
        let mut conn = acquire::<D>(&self.pool).await?;
        let row = D::fetch_optional(&mut conn, D::render(&stmt))
            .await?
            .ok_or_else(|| StoreError::internal("COUNT returned no row"))?;
        u64::try_from(D::int(&row, COUNT)?).map_err(internal)
    }

    async fn purge_records(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        resource: &str,
        created_before: time::OffsetDateTime,
        limit: u32,
    ) -> StoreResult<u64> {
        let mut due = scoped(scope, resource, None)
            .and_where(Expr::col(Records::CreatedAt).lt(to_micros(created_before)?))
            .take();
        // The hourly job asks every tenant about every resource: most have nothing due, and they
        // learn it from a read instead of taking the write lock.
        let probe = due.clone().limit(1).take();
        let mut conn = acquire::<D>(&self.pool).await?;
        if D::fetch_optional(&mut conn, D::render(&probe))
            .await?
            .is_none()
        {
            return Ok(0);
        }
        drop(conn);
        let select = due
            .order_by(Records::Id, Order::Asc)
            .limit(u64::from(limit.clamp(1, MAX_PURGE_BATCH)))
            .lock(LockType::Update)
            .take();
        let mut tx = begin_write::<D>(&self.pool).await?;
        let doomed = D::fetch_all(&mut tx, D::render(&select))
            .await?
            .iter()
            .map(decode::<D>)
            .collect::<StoreResult<Vec<_>>>()?;
        for record in &doomed {
            let id = record.id.as_str();
            write_index::<D>(&mut tx, scope, resource, id, &[], false).await?;
            release_unique::<D>(&mut tx, scope, resource, id).await?;
            let keys = Query::delete()
                .from_table(IdempotencyKeys::Table)
                .and_where(Expr::col(IdempotencyKeys::TenantId).eq(tenant_of(scope)))
                .and_where(Expr::col(IdempotencyKeys::RecordId).eq(id))
                .take();
            D::execute(&mut tx, D::render(&keys)).await?;
            let row = Query::delete()
                .from_table(Records::Table)
                .and_where(Expr::col(Records::TenantId).eq(tenant_of(scope)))
                .and_where(Expr::col(Records::Resource).eq(resource))
                .and_where(Expr::col(Records::Id).eq(id))
                .take();
            if D::execute(&mut tx, D::render(&row)).await? != 1 {
                return Err(StoreError::internal(
                    "purged record vanished under its lock",
                ));
            }
            // SECURITY: the entry carries the full snapshot, as a delete does, in the same transaction.
            let ev = event("purge", record, Some(record.to_json()), None);
            crate::audit::append::<D>(&mut tx, scope.tenant_id(), meta, ev).await?;
        }
        commit::<D>(tx).await?;
        Ok(u64::try_from(doomed.len()).unwrap_or(u64::MAX))
    }

    async fn reserve_idempotency(
        &self,
        scope: &TenantScope,
        principal: &str,
        key: &str,
        body_hash: &str,
        ttl: time::Duration,
    ) -> StoreResult<Reservation> {
        let mut tx = begin_write::<D>(&self.pool).await?;
        let existing = read_key::<D>(&mut tx, scope, principal, key, true).await?;
        let now_us = to_micros(now()?)?;
        let ttl_us = i64::try_from(ttl.whole_microseconds()).unwrap_or(i64::MAX);
        if let Some(row) = existing {
            if row.created_at.saturating_add(ttl_us) > now_us {
                return Ok(row.decide(body_hash));
            }
            let expired = delete_key(scope, principal, key);
            D::execute(&mut tx, D::render(&expired)).await?;
        }
        let insert = Query::insert()
            .into_table(IdempotencyKeys::Table)
            .columns([
                IdempotencyKeys::TenantId,
                IdempotencyKeys::Principal,
                IdempotencyKeys::IdemKey,
                IdempotencyKeys::BodyHash,
                IdempotencyKeys::CreatedAt,
            ])
            .values([
                tenant_of(scope).into(),
                principal.into(),
                key.into(),
                body_hash.into(),
                now_us.into(),
            ])
            .map_err(internal)?
            .take();
        match D::execute(&mut tx, D::render(&insert)).await {
            Ok(_) => {
                commit::<D>(tx).await?;
                Ok(Reservation::Reserved)
            }
            // A concurrent request reserved the key first (PostgreSQL: no row to lock yet). Its row
            // decides, read after this transaction rolls back.
            Err(StoreError::Conflict { .. }) => {
                drop(tx);
                let mut conn = acquire::<D>(&self.pool).await?;
                Ok(read_key::<D>(&mut conn, scope, principal, key, false)
                    .await?
                    .map_or(Reservation::InProgress, |row| row.decide(body_hash)))
            }
            Err(e) => Err(e),
        }
    }

    async fn complete_idempotency(
        &self,
        scope: &TenantScope,
        principal: &str,
        key: &str,
        response: &StoredResponse,
    ) -> StoreResult<()> {
        let headers = serde_json::to_string(&response.headers).map_err(internal)?;
        let stmt = Query::update()
            .table(IdempotencyKeys::Table)
            .values([
                (IdempotencyKeys::Status, i64::from(response.status).into()),
                (IdempotencyKeys::Headers, headers.into()),
                (IdempotencyKeys::Body, response.body.clone().into()),
                (IdempotencyKeys::RecordId, response.record_id.clone().into()),
            ])
            .and_where(Expr::col(IdempotencyKeys::TenantId).eq(tenant_of(scope)))
            .and_where(Expr::col(IdempotencyKeys::Principal).eq(principal))
            .and_where(Expr::col(IdempotencyKeys::IdemKey).eq(key))
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::execute(&mut conn, D::render(&stmt)).await.map(|_| ())
    }

    async fn release_idempotency(
        &self,
        scope: &TenantScope,
        principal: &str,
        key: &str,
    ) -> StoreResult<()> {
        let stmt = delete_key(scope, principal, key)
            .and_where(Expr::col(IdempotencyKeys::Status).is_null())
            .take();
        let mut conn = acquire::<D>(&self.pool).await?;
        D::execute(&mut conn, D::render(&stmt)).await.map(|_| ())
    }
}

fn delete_key(scope: &TenantScope, principal: &str, key: &str) -> sea_query::DeleteStatement {
    Query::delete()
        .from_table(IdempotencyKeys::Table)
        .and_where(Expr::col(IdempotencyKeys::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(IdempotencyKeys::Principal).eq(principal))
        .and_where(Expr::col(IdempotencyKeys::IdemKey).eq(key))
        .take()
}

/// A stored idempotency row.
struct KeyRow {
    body_hash: String,
    created_at: i64,
    response: Option<StoredResponse>,
}

impl KeyRow {
    fn decide(self, body_hash: &str) -> Reservation {
        if self.body_hash != body_hash {
            return Reservation::KeyReused;
        }
        match self.response {
            Some(r) => Reservation::Replay(r),
            None => Reservation::InProgress,
        }
    }
}

async fn read_key<D: Exec>(
    conn: &mut Conn<D>,
    scope: &TenantScope,
    principal: &str,
    key: &str,
    lock: bool,
) -> StoreResult<Option<KeyRow>> {
    let mut stmt = Query::select()
        .columns([
            IdempotencyKeys::BodyHash,
            IdempotencyKeys::Status,
            IdempotencyKeys::Headers,
            IdempotencyKeys::Body,
            IdempotencyKeys::CreatedAt,
            IdempotencyKeys::RecordId,
        ])
        .from(IdempotencyKeys::Table)
        .and_where(Expr::col(IdempotencyKeys::TenantId).eq(tenant_of(scope)))
        .and_where(Expr::col(IdempotencyKeys::Principal).eq(principal))
        .and_where(Expr::col(IdempotencyKeys::IdemKey).eq(key))
        .take();
    if lock {
        stmt.lock(LockType::Update);
    }
    let Some(row) = D::fetch_optional(conn, D::render(&stmt)).await? else {
        return Ok(None);
    };
    let status = D::opt_int(&row, col(IdempotencyKeys::Status))?;
    let response = match status {
        None => None,
        Some(status) => {
            let headers: Vec<(String, String)> = serde_json::from_str(
                &D::opt_text(&row, col(IdempotencyKeys::Headers))?.unwrap_or_default(),
            )
            .map_err(|_| StoreError::internal("stored idempotency_keys.headers does not decode"))?;
            Some(StoredResponse {
                status: u16::try_from(status).map_err(internal)?,
                headers,
                body: D::opt_text(&row, col(IdempotencyKeys::Body))?.unwrap_or_default(),
                record_id: D::opt_text(&row, col(IdempotencyKeys::RecordId))?,
            })
        }
    };
    Ok(Some(KeyRow {
        body_hash: D::text(&row, col(IdempotencyKeys::BodyHash))?,
        created_at: D::int(&row, col(IdempotencyKeys::CreatedAt))?,
        response,
    }))
}
