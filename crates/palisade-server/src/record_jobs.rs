//! Record retention across every tenant: declared resources with `retention_days` have their records
//! purged for good once they are older than that (the background job next to audit retention, and
//! `palisade records prune`).
//!
//! Invariants:
//! - Age is counted from `created_at`, and soft-deleted records are purged too: retention bounds how
//!   long the data exists at all, whatever happened to it since.
//! - Purges run with `InternalRole::Retention` through the record store, in batches of
//!   [`PURGE_BATCH`] records per transaction; each record's purge writes one `<resource>.purge` audit
//!   entry by `system:retention` with the full snapshot in that transaction, and takes the record's
//!   indexed values, unique claims and stored idempotent response with it.
//! - Resources without `retention_days` are never touched; a purge is confined to one tenant and one
//!   resource by the scope and the store's filters.

use palisade_authz::{InternalRole, SystemScope};
use palisade_store::{AuditMeta, StoreError};
use time::OffsetDateTime;

use crate::state::AppState;

/// Records purged per transaction.
pub const PURGE_BATCH: u32 = 200;

/// Purges, in every tenant, the records of every resource with `retention_days` that are older than
/// that. Returns how many were purged.
///
/// # Errors
/// The store's error (the batches committed before it stay purged).
pub async fn purge_all(app: &AppState) -> Result<u64, StoreError> {
    let now = OffsetDateTime::now_utc();
    let due: Vec<(String, OffsetDateTime)> = app
        .settings()
        .resources
        .iter()
        .filter_map(|r| {
            let days = r.retention_days.filter(|d| *d > 0)?;
            Some((r.name.clone(), now - time::Duration::days(i64::from(days))))
        })
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let system = SystemScope::internal(InternalRole::Retention);
    let meta = AuditMeta::system("retention");
    let records = &app.stores().records;
    let mut total = 0;
    for (_, scope) in crate::audit_jobs::tenants_as(app, &system, None).await? {
        for (resource, cutoff) in &due {
            loop {
                let n = records
                    .purge_records(&scope, &meta, resource, *cutoff, PURGE_BATCH)
                    .await?;
                total += n;
                if n < u64::from(PURGE_BATCH) {
                    break;
                }
            }
        }
    }
    Ok(total)
}
