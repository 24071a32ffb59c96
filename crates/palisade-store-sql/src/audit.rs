//! The audit trail for every dialect: the append every mutating store calls inside its own
//! transaction, and [`AuditStore`] (security events, queries, verification, retention).
//!
//! Invariants:
//! - [`append`] runs on the caller's write transaction: it creates the tenant's head row if missing,
//!   locks it (`FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the write lock),
//!   links the new entry to it and moves it forward. A failure anywhere fails the caller's
//!   transaction, so the mutation and its entry commit together or not at all.
//! - Appends take the head lock after the mutation's own row locks and touch one chain, so lock order
//!   is the same in every transaction.
//! - SECURITY: reads filter by `tenant_id = scope.tenant_id()`; there is no update path, and deletes
//!   happen only in [`AuditStore::prune`], at or below the checkpoint it writes first (the database
//!   triggers of migration 0005 refuse anything else).

use async_trait::async_trait;
use palisade_authz::{SystemScope, TenantScope};
use palisade_domain::TenantId;
use palisade_store::audit::{
    AuditEntry, AuditEvent, AuditFilter, AuditMeta, AuditPageRequest, AuditStore, ChainHead,
    ChainReport, ChainVerifier, Checkpoint, GENESIS, RetentionPolicy, chain_hash, checkpoint_text,
};
use palisade_store::{Page, StoreError, StoreResult};
use sea_query::{Expr, ExprTrait, LockType, OnConflict, Order, Query, SelectStatement};

use crate::codec::{from_micros, now, parse_stored, to_micros};
use crate::dialect::{Conn, DbRow, Dialect, Exec, acquire, begin_write, commit};
use crate::schema::{AuditHeads, AuditLog, col};

/// Every column of an entry, in the order the insert writes them.
const ENTRY_COLUMNS: [AuditLog; 13] = [
    AuditLog::TenantId,
    AuditLog::Seq,
    AuditLog::At,
    AuditLog::Actor,
    AuditLog::Action,
    AuditLog::Resource,
    AuditLog::RecordId,
    AuditLog::Ip,
    AuditLog::RequestId,
    AuditLog::Old,
    AuditLog::New,
    AuditLog::PrevHash,
    AuditLog::Hash,
];

/// The largest page of entries a query returns.
const MAX_AUDIT_PAGE: u32 = 1000;
/// Entries judged per retention transaction.
const PRUNE_BATCH: u32 = 1000;
/// Entries read per round trip while verifying.
const VERIFY_BATCH: u32 = 500;

/// JSON text as stored in `old` / `new`.
fn to_json_text(v: Option<&serde_json::Value>) -> StoreResult<Option<String>> {
    v.map(|v| serde_json::to_string(v).map_err(|e| StoreError::Internal(Box::new(e))))
        .transpose()
}

fn from_json_text(
    text: Option<String>,
    column: &'static str,
) -> StoreResult<Option<serde_json::Value>> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|_| StoreError::internal(format!("stored {column} does not decode")))
    })
    .transpose()
}

/// Appends `event` to `tenant`'s chain on the caller's write transaction and returns the entry.
pub(crate) async fn append<D: Exec>(
    conn: &mut Conn<D>,
    tenant: TenantId,
    meta: &AuditMeta,
    event: AuditEvent,
) -> StoreResult<AuditEntry> {
    append_all::<D>(conn, tenant, vec![(meta, event)])
        .await?
        .pop()
        .ok_or_else(|| StoreError::internal("audit append wrote no entry"))
}

/// Appends `events`, in order, to `tenant`'s chain on the caller's write transaction and returns
/// the entries: one statement reads (and locks) the head, one inserts every entry, one moves the
/// head, however many events there are.
pub(crate) async fn append_all<D: Exec>(
    conn: &mut Conn<D>,
    tenant: TenantId,
    events: Vec<(&AuditMeta, AuditEvent)>,
) -> StoreResult<Vec<AuditEntry>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let tid = tenant.to_string();
    // Seeds the chain's head on the tenant's first entry and reads it, locked, in one statement: the
    // no-op `DO UPDATE` takes the row lock on PostgreSQL (as `FOR UPDATE` would) and returns the
    // existing head; SQLite's `BEGIN IMMEDIATE` already holds the write lock.
    let head = Query::insert()
        .into_table(AuditHeads::Table)
        .columns([AuditHeads::TenantId, AuditHeads::Seq, AuditHeads::Hash])
        .values([tid.clone().into(), 0i64.into(), GENESIS.into()])
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .on_conflict(
            OnConflict::column(AuditHeads::TenantId)
                .value(
                    AuditHeads::Seq,
                    Expr::col((AuditHeads::Table, AuditHeads::Seq)),
                )
                .to_owned(),
        )
        .returning(Query::returning().columns([AuditHeads::Seq, AuditHeads::Hash]))
        .take();
    let row = D::fetch_optional(conn, D::render(&head))
        .await?
        .ok_or_else(|| StoreError::internal("audit head missing after seeding"))?;
    let mut seq = D::int(&row, col(AuditHeads::Seq))?;
    let mut prev_hash = D::text(&row, col(AuditHeads::Hash))?;
    let at = now()?;
    let mut insert = Query::insert();
    insert.into_table(AuditLog::Table).columns(ENTRY_COLUMNS);
    let mut entries = Vec::with_capacity(events.len());
    for (meta, event) in events {
        seq += 1;
        let mut entry = AuditEntry {
            tenant_id: tenant,
            seq,
            at,
            actor: meta.actor.clone(),
            action: event.action,
            resource: event.resource,
            record_id: event.record_id,
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
            old: event.old,
            new: event.new,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = chain_hash(&entry.prev_hash, &entry)?;
        insert
            .values([
                tid.clone().into(),
                entry.seq.into(),
                to_micros(entry.at)?.into(),
                entry.actor.clone().into(),
                entry.action.clone().into(),
                entry.resource.clone().into(),
                entry.record_id.clone().into(),
                entry.ip.clone().into(),
                entry.request_id.clone().into(),
                to_json_text(entry.old.as_ref())?.into(),
                to_json_text(entry.new.as_ref())?.into(),
                entry.prev_hash.clone().into(),
                entry.hash.clone().into(),
            ])
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        prev_hash = entry.hash.clone();
        entries.push(entry);
    }
    D::execute(conn, D::render(&insert)).await?;
    let advance = Query::update()
        .table(AuditHeads::Table)
        .values([
            (AuditHeads::Seq, seq.into()),
            (AuditHeads::Hash, prev_hash.into()),
        ])
        .and_where(Expr::col(AuditHeads::TenantId).eq(tid))
        .take();
    D::execute(conn, D::render(&advance)).await?;
    Ok(entries)
}

/// `SELECT <entry columns> FROM audit_log WHERE tenant_id = <tenant>`.
fn select_entries(tenant: TenantId) -> SelectStatement {
    Query::select()
        .columns(ENTRY_COLUMNS)
        .from(AuditLog::Table)
        .and_where(Expr::col(AuditLog::TenantId).eq(tenant.to_string()))
        .take()
}

fn decode_entry<D: Exec>(row: &DbRow<D>) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        tenant_id: parse_stored(
            &D::text(row, col(AuditLog::TenantId))?,
            "audit_log.tenant_id",
        )?,
        seq: D::int(row, col(AuditLog::Seq))?,
        at: from_micros(D::int(row, col(AuditLog::At))?)?,
        actor: D::text(row, col(AuditLog::Actor))?,
        action: D::text(row, col(AuditLog::Action))?,
        resource: D::text(row, col(AuditLog::Resource))?,
        record_id: D::opt_text(row, col(AuditLog::RecordId))?,
        ip: D::opt_text(row, col(AuditLog::Ip))?,
        request_id: D::opt_text(row, col(AuditLog::RequestId))?,
        old: from_json_text(D::opt_text(row, col(AuditLog::Old))?, "audit_log.old")?,
        new: from_json_text(D::opt_text(row, col(AuditLog::New))?, "audit_log.new")?,
        prev_hash: D::text(row, col(AuditLog::PrevHash))?,
        hash: D::text(row, col(AuditLog::Hash))?,
    })
}

async fn load_head<D: Exec>(conn: &mut Conn<D>, tenant: TenantId) -> StoreResult<ChainHead> {
    let stmt = Query::select()
        .columns([
            AuditHeads::Seq,
            AuditHeads::Hash,
            AuditHeads::CheckpointSeq,
            AuditHeads::CheckpointHash,
            AuditHeads::CheckpointSignature,
        ])
        .from(AuditHeads::Table)
        .and_where(Expr::col(AuditHeads::TenantId).eq(tenant.to_string()))
        .take();
    let Some(row) = D::fetch_optional(conn, D::render(&stmt)).await? else {
        return Ok(ChainHead {
            seq: 0,
            hash: GENESIS.to_owned(),
            checkpoint: None,
        });
    };
    let checkpoint = match (
        D::opt_int(&row, col(AuditHeads::CheckpointSeq))?,
        D::opt_text(&row, col(AuditHeads::CheckpointHash))?,
        D::opt_text(&row, col(AuditHeads::CheckpointSignature))?,
    ) {
        (Some(seq), Some(hash), Some(signature)) => Some(Checkpoint {
            seq,
            hash,
            signature,
        }),
        (None, None, None) => None,
        _ => {
            return Err(StoreError::internal(
                "stored audit checkpoint is incomplete",
            ));
        }
    };
    Ok(ChainHead {
        seq: D::int(&row, col(AuditHeads::Seq))?,
        hash: D::text(&row, col(AuditHeads::Hash))?,
        checkpoint,
    })
}

/// The audit trail over one dialect's pool.
pub(crate) struct SqlAuditStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
}

impl<D: Dialect> SqlAuditStore<D> {
    /// A store over `pool`.
    pub(crate) fn new(pool: sqlx::Pool<D::DB>) -> Self {
        Self { pool }
    }
}

impl<D: Exec> SqlAuditStore<D> {
    async fn record_for(
        &self,
        tenant: TenantId,
        meta: &AuditMeta,
        event: AuditEvent,
    ) -> StoreResult<AuditEntry> {
        let mut tx = begin_write::<D>(&self.pool).await?;
        let entry = append::<D>(&mut tx, tenant, meta, event).await?;
        commit::<D>(tx).await?;
        Ok(entry)
    }
}

#[async_trait]
impl<D: Exec> AuditStore for SqlAuditStore<D> {
    async fn record(
        &self,
        scope: &TenantScope,
        meta: &AuditMeta,
        event: AuditEvent,
    ) -> StoreResult<AuditEntry> {
        self.record_for(scope.tenant_id(), meta, event).await
    }

    async fn record_system(
        &self,
        _system: &SystemScope,
        tenant: TenantId,
        meta: &AuditMeta,
        event: AuditEvent,
    ) -> StoreResult<AuditEntry> {
        self.record_for(tenant, meta, event).await
    }

    async fn list(
        &self,
        scope: &TenantScope,
        filter: &AuditFilter,
        page: &AuditPageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        let size = page.limit.clamp(1, MAX_AUDIT_PAGE);
        let mut stmt = select_entries(scope.tenant_id());
        if let Some(after) = page.after_seq {
            stmt.and_where(Expr::col(AuditLog::Seq).gt(after));
        }
        if let Some(v) = &filter.actor {
            stmt.and_where(Expr::col(AuditLog::Actor).eq(v.clone()));
        }
        if let Some(v) = &filter.action {
            stmt.and_where(Expr::col(AuditLog::Action).eq(v.clone()));
        }
        if let Some(v) = &filter.resource {
            stmt.and_where(Expr::col(AuditLog::Resource).eq(v.clone()));
        }
        if let Some(v) = &filter.record_id {
            stmt.and_where(Expr::col(AuditLog::RecordId).eq(v.clone()));
        }
        if let Some(t) = filter.since {
            stmt.and_where(Expr::col(AuditLog::At).gte(to_micros(t)?));
        }
        if let Some(t) = filter.until {
            stmt.and_where(Expr::col(AuditLog::At).lt(to_micros(t)?));
        }
        stmt.order_by(AuditLog::Seq, Order::Asc)
            .limit(u64::from(size) + 1);
        let mut conn = acquire::<D>(&self.pool).await?;
        let rows = D::fetch_all(&mut conn, D::render(&stmt)).await?;
        let mut items = rows
            .iter()
            .map(decode_entry::<D>)
            .collect::<StoreResult<Vec<_>>>()?;
        let more = items.len() > usize::try_from(size).unwrap_or(usize::MAX);
        items.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next_after = if more {
            items.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    async fn head(&self, scope: &TenantScope) -> StoreResult<ChainHead> {
        let mut conn = acquire::<D>(&self.pool).await?;
        load_head::<D>(&mut conn, scope.tenant_id()).await
    }

    async fn verify(&self, scope: &TenantScope) -> StoreResult<ChainReport> {
        // Read the head and every entry in one read transaction, so a concurrent append cannot
        // make a consistent chain look truncated.
        let mut tx = begin_write::<D>(&self.pool).await?;
        let head = load_head::<D>(&mut tx, scope.tenant_id()).await?;
        let mut verifier = ChainVerifier::new(head.checkpoint.as_ref());
        let mut after = head.checkpoint.as_ref().map_or(i64::MIN, |c| c.seq);
        // A forged row below the checkpoint is outside the chain; rows are read from there on.
        loop {
            let stmt = select_entries(scope.tenant_id())
                .and_where(Expr::col(AuditLog::Seq).gt(after))
                .order_by(AuditLog::Seq, Order::Asc)
                .limit(u64::from(VERIFY_BATCH))
                .take();
            let rows = D::fetch_all(&mut tx, D::render(&stmt)).await?;
            let n = rows.len();
            for row in &rows {
                let entry = decode_entry::<D>(row)?;
                after = entry.seq;
                verifier.push(&entry);
            }
            if n < usize::try_from(VERIFY_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        drop(tx);
        Ok(verifier.finish(&head))
    }

    async fn prune(
        &self,
        _system: &SystemScope,
        tenant: TenantId,
        policy: &RetentionPolicy,
        sign: &(dyn for<'a> Fn(&'a str) -> String + Send + Sync),
    ) -> StoreResult<u64> {
        if policy.keeps_everything() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let (pruned, more) = self.prune_batch(tenant, policy, sign).await?;
            total += pruned;
            if !more {
                return Ok(total);
            }
        }
    }
}

impl<D: Exec> SqlAuditStore<D> {
    /// Prunes the prunable prefix of the next [`PRUNE_BATCH`] entries in one transaction, holding the
    /// head lock only that long. Returns how many were pruned and whether the whole batch was (so the
    /// next one may be too).
    async fn prune_batch(
        &self,
        tenant: TenantId,
        policy: &RetentionPolicy,
        sign: &(dyn for<'a> Fn(&'a str) -> String + Send + Sync),
    ) -> StoreResult<(u64, bool)> {
        let tid = tenant.to_string();
        let mut tx = begin_write::<D>(&self.pool).await?;
        let head_stmt = Query::select()
            .column(AuditHeads::Seq)
            .from(AuditHeads::Table)
            .and_where(Expr::col(AuditHeads::TenantId).eq(tid.clone()))
            .lock(LockType::Update)
            .take();
        if D::fetch_optional(&mut tx, D::render(&head_stmt))
            .await?
            .is_none()
        {
            return Ok((0, false));
        }
        let head = load_head::<D>(&mut tx, tenant).await?;
        let floor = head.checkpoint.as_ref().map_or(0, |c| c.seq);
        // Only what the decision needs: `at` is not trusted to be monotonic (clocks of several
        // instances may disagree slightly), so each entry is judged on its own and the first one that
        // is not prunable ends the prefix.
        let batch = Query::select()
            .columns([
                AuditLog::Seq,
                AuditLog::At,
                AuditLog::Action,
                AuditLog::Resource,
                AuditLog::Hash,
            ])
            .from(AuditLog::Table)
            .and_where(Expr::col(AuditLog::TenantId).eq(tid.clone()))
            .and_where(Expr::col(AuditLog::Seq).gt(floor))
            .order_by(AuditLog::Seq, Order::Asc)
            .limit(u64::from(PRUNE_BATCH))
            .take();
        let rows = D::fetch_all(&mut tx, D::render(&batch)).await?;
        let mut last: Option<(i64, String)> = None;
        let mut whole_batch = true;
        for row in &rows {
            let seq = D::int(row, col(AuditLog::Seq))?;
            let expected = last.as_ref().map_or(floor, |(s, _)| *s) + 1;
            // A gap is a broken chain: never cut across it (verification names it).
            let prunable = seq == expected
                && policy.prunable(
                    &D::text(row, col(AuditLog::Action))?,
                    &D::text(row, col(AuditLog::Resource))?,
                    from_micros(D::int(row, col(AuditLog::At))?)?,
                );
            if !prunable {
                whole_batch = false;
                break;
            }
            last = Some((seq, D::text(row, col(AuditLog::Hash))?));
        }
        let Some((seq, hash)) = last else {
            return Ok((0, false));
        };
        let signature = sign(&checkpoint_text(tenant, seq, &hash));
        let move_checkpoint = Query::update()
            .table(AuditHeads::Table)
            .values([
                (AuditHeads::CheckpointSeq, seq.into()),
                (AuditHeads::CheckpointHash, hash.into()),
                (AuditHeads::CheckpointSignature, signature.into()),
            ])
            .and_where(Expr::col(AuditHeads::TenantId).eq(tid.clone()))
            .take();
        D::execute(&mut tx, D::render(&move_checkpoint)).await?;
        let delete = Query::delete()
            .from_table(AuditLog::Table)
            .and_where(Expr::col(AuditLog::TenantId).eq(tid))
            .and_where(Expr::col(AuditLog::Seq).lte(seq))
            .take();
        let n = D::execute(&mut tx, D::render(&delete)).await?;
        commit::<D>(tx).await?;
        let full = rows.len() == usize::try_from(PRUNE_BATCH).unwrap_or(usize::MAX);
        Ok((n, whole_batch && full))
    }
}
