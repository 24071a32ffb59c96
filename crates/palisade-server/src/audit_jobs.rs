//! Audit maintenance across every tenant: chain verification (`palisade audit verify`) and retention
//! (the background job and `palisade audit prune`).
//!
//! Invariants:
//! - Both walk every tenant under the system tenant with `InternalRole::AuditMaintenance`, the only
//!   scope that reaches all chains; nothing here serves a request.
//! - Retention prunes only a prefix of each chain and leaves a checkpoint signed with the server's
//!   HMAC key (the cursor signer, under its own `audit-checkpoint:<tenant>` context), so the rest of
//!   the chain still verifies and a forged checkpoint is detectable by whoever holds the key.
//! - Retention is per category (`[audit.retention]`, default `[audit] retention_days`): an entry is
//!   prunable past its own category's period, and the first entry that is not stops the cut.

use palisade_authz::{InternalRole, SystemScope, TenantScope};
use palisade_domain::TenantId;
use palisade_store::{ChainReport, PageRequest, StoreError, Tenant};
use time::OffsetDateTime;

use crate::state::AppState;

/// Every tenant, or the one named, with the scope `system` grants on it.
pub(crate) async fn tenants_as(
    app: &AppState,
    system: &SystemScope,
    only: Option<TenantId>,
) -> Result<Vec<(Tenant, TenantScope)>, StoreError> {
    let stores = app.stores();
    let slug = palisade_domain::Slug::parse(&app.settings().bootstrap.system_tenant)
        .map_err(|_| StoreError::internal("bootstrap.system_tenant is not a valid slug"))?;
    let root = stores
        .tenants
        .resolve_tenant_by_slug(&slug)
        .await?
        .ok_or(StoreError::NotFound)?;
    let root_scope = system.tenant_scope(root.to_ref());
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .tenants
            .list_tenants(&root_scope, &PageRequest { limit: 200, after })
            .await?;
        for t in page.items {
            if only.is_none_or(|id| id == t.id) {
                let scope = system.tenant_scope(t.to_ref());
                out.push((t, scope));
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if only.is_some() && out.is_empty() {
        return Err(StoreError::NotFound);
    }
    Ok(out)
}

/// Every tenant, or the one named, reached as audit maintenance.
async fn tenants(
    app: &AppState,
    only: Option<TenantId>,
) -> Result<Vec<(Tenant, TenantScope)>, StoreError> {
    tenants_as(
        app,
        &SystemScope::internal(InternalRole::AuditMaintenance),
        only,
    )
    .await
}

/// Verifies every tenant's chain (or one tenant's).
///
/// # Errors
/// The store's error; `NotFound` for an unknown tenant.
pub async fn verify_all(
    app: &AppState,
    only: Option<TenantId>,
) -> Result<Vec<(Tenant, ChainReport)>, StoreError> {
    let mut out = Vec::new();
    for (tenant, scope) in tenants(app, only).await? {
        let report = app.stores().audit.verify(&scope).await?;
        out.push((tenant, report));
    }
    Ok(out)
}

/// Verifies the chains of at most `max` tenants (the first by id), for the Trust Center's bounded
/// self-check. Returns the reports and how many tenants there are.
///
/// # Errors
/// The store's error.
pub async fn verify_first(
    app: &AppState,
    max: usize,
) -> Result<(Vec<(Tenant, ChainReport)>, usize), StoreError> {
    let all = tenants(app, None).await?;
    let total = all.len();
    let mut out = Vec::new();
    for (tenant, scope) in all.into_iter().take(max) {
        let report = app.stores().audit.verify(&scope).await?;
        out.push((tenant, report));
    }
    Ok((out, total))
}

/// Prunes from every chain the entries past their category's retention (`[audit.retention]`, default
/// `[audit] retention_days`). Returns the number pruned.
///
/// # Errors
/// The store's error.
pub async fn prune_all(app: &AppState) -> Result<u64, StoreError> {
    let policy = app.settings().audit.policy(OffsetDateTime::now_utc());
    if policy.keeps_everything() {
        return Ok(0);
    }
    let system = SystemScope::internal(InternalRole::AuditMaintenance);
    let mut total = 0;
    for (tenant, _) in tenants(app, None).await? {
        let signer = app.cursors();
        let context = format!("audit-checkpoint:{}", tenant.id);
        let sign = move |text: &str| signer.sign(&context, text.as_bytes()).unwrap_or_default();
        total += app
            .stores()
            .audit
            .prune(&system, tenant.id, &policy, &sign)
            .await?;
    }
    Ok(total)
}
