//! Cedar conditions at request time: the per-tenant compiled-policy cache and the check the guard runs
//! after [`palisade_authz::decide`] allowed (see `palisade_authz::conditions` for the semantics).
//!
//! Invariants:
//! - [`for_tenant`] is the one lookup: one indexed query for the tenant's document etag per request on a
//!   route whose capability tenant policies govern; a tenant without a document costs exactly that
//!   query. A text is parsed and validated once per `(tenant, etag)` (etags are never reused) and
//!   kept in process. The freshness check can later move to a shared per-tenant epoch here alone.
//! - SECURITY: fail closed. A stored text that no longer compiles (e.g. a capability it names was
//!   removed from the configuration) denies every governed request of the tenant (403
//!   `authz.policy_error`), as does any evaluation error; a store error answers 503.
//! - SECURITY: a denial is logged as a `security` event with the deciding policy ids and counted like
//!   every other denial (by the guard).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use palisade_authz::conditions::{self, ConditionSchema, SchemaBuildError};
use palisade_authz::{
    Capability, ConditionDecision, ConditionRequest, Principal, TenantPolicies, TenantScope,
};
use palisade_domain::TenantId;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::state::AppState;

/// The request facts policies see beyond the principal and the tenant.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The client IP as the pipeline resolved it.
    pub ip: IpAddr,
    /// The HTTP method.
    pub http_method: &'a str,
    /// The request path.
    pub path: &'a str,
}

/// A tenant's document, compiled (or not) for one etag.
#[derive(Debug)]
pub struct Compiled {
    etag: String,
    slug: String,
    /// `None` when the stored text no longer compiles against the current schema.
    policies: Option<TenantPolicies>,
}

/// The in-process state: the schema (built on first use from the capability registry) and the cache.
#[derive(Debug, Default)]
pub struct PolicyCache {
    schema: OnceLock<Result<ConditionSchema, String>>,
    compiled: Mutex<HashMap<TenantId, Entry>>,
}

/// At most this many tenants' compiled sets are kept; past it the cache is cleared and refills.
const MAX_CACHED_TENANTS: usize = 10_000;

/// The deployment's Cedar schema.
///
/// # Errors
/// 500 if the schema cannot be built (a bug; logged).
pub fn schema(app: &AppState) -> Result<&ConditionSchema, ApiError> {
    app.policies()
        .schema
        .get_or_init(|| {
            ConditionSchema::new(app.capabilities()).map_err(|e: SchemaBuildError| e.to_string())
        })
        .as_ref()
        .map_err(ApiError::internal)
}

/// The tenant's compiled policies, if it has a document: the one lookup the guard uses.
///
/// Freshness: an entry is used without touching the database while the tenant's authorization epoch
/// (moved by every policy change, see [`crate::principal_cache`]) is the one it was loaded under and
/// it is younger than `auth.principal_cache_secs`; past that age the document's etag is checked (one
/// indexed query) and the compiled set reused when it is unchanged. The epoch is read first, so a load
/// racing with a change is filed under the old epoch and never served again.
///
/// # Errors
/// 503 when the epoch cannot be read, the store's error (503 / 500), or 500 when the schema cannot be
/// built.
pub async fn for_tenant(
    app: &AppState,
    scope: &TenantScope,
) -> Result<Option<Arc<Compiled>>, ApiError> {
    let tenant = scope.tenant_id();
    let epoch = crate::principal_cache::epoch(app, tenant).await?;
    let ttl = app.principals().ttl();
    let previous = cached(app, tenant);
    if let Some(entry) = &previous
        && entry.epoch == epoch
        && entry.loaded.elapsed() < ttl
    {
        return Ok(entry.doc.clone());
    }
    let Some(etag) = app.stores().policies.policy_etag(scope).await? else {
        remember(app, tenant, epoch, None);
        return Ok(None);
    };
    if let Some(hit) = previous
        .and_then(|e| e.doc.clone())
        .filter(|c| c.etag == etag)
    {
        remember(app, tenant, epoch, Some(hit.clone()));
        return Ok(Some(hit));
    }
    let Some(doc) = app.stores().policies.get_policy(scope).await? else {
        remember(app, tenant, epoch, None);
        return Ok(None);
    };
    let slug = app
        .stores()
        .tenants
        .resolve_tenant(tenant)
        .await?
        .map(|t| t.slug.to_string())
        .unwrap_or_default();
    let policies = match schema(app)?.compile(&doc.policies) {
        Ok(p) => Some(p),
        Err(problems) => {
            tracing::error!(
                target: "security",
                event = "policy.stale",
                tenant = %tenant,
                problems = problems.len(),
                "a stored tenant policy no longer compiles; the tenant's governed requests are denied"
            );
            None
        }
    };
    let compiled = Arc::new(Compiled {
        etag: doc.etag,
        slug,
        policies,
    });
    remember(app, tenant, epoch, Some(compiled.clone()));
    Ok(Some(compiled))
}

/// A tenant's cached lookup: its compiled document (or that it has none), and when and under which
/// epoch it was loaded.
#[derive(Debug, Clone)]
struct Entry {
    epoch: crate::principal_cache::Epoch,
    loaded: std::time::Instant,
    doc: Option<Arc<Compiled>>,
}

fn cached(app: &AppState, tenant: TenantId) -> Option<Entry> {
    app.policies()
        .compiled
        .lock()
        .ok()
        .and_then(|m| m.get(&tenant).cloned())
}

fn remember(
    app: &AppState,
    tenant: TenantId,
    epoch: crate::principal_cache::Epoch,
    doc: Option<Arc<Compiled>>,
) {
    if let Ok(mut map) = app.policies().compiled.lock() {
        if map.len() >= MAX_CACHED_TENANTS && !map.contains_key(&tenant) {
            map.clear();
        }
        map.insert(
            tenant,
            Entry {
                epoch,
                loaded: std::time::Instant::now(),
                doc,
            },
        );
    }
}

fn policy_error() -> ApiError {
    ApiError::Forbidden {
        code: "authz.policy_error",
        detail: "The tenant's policies could not be evaluated for this request; access is denied."
            .to_owned(),
    }
}

/// Evaluates the target tenant's policies for a request `decide` allowed. Capabilities the policies
/// never govern (`platform.policy.*`, see `palisade_authz::conditions::EXEMPT`) pass untouched.
///
/// # Errors
/// 403 `authz.policy_denied` when a `forbid` matches, 403 `authz.policy_error` when evaluation fails
/// or the stored text no longer compiles, a store error.
pub async fn enforce(
    app: &AppState,
    principal: &Principal,
    scope: &TenantScope,
    capability: &Capability,
    facts: &RequestFacts<'_>,
) -> Result<(), ApiError> {
    if !conditions::applies_to(capability) {
        return Ok(());
    }
    let Some(compiled) = for_tenant(app, scope).await? else {
        return Ok(());
    };
    let Some(policies) = &compiled.policies else {
        return Err(policy_error());
    };
    if policies.is_empty() {
        return Ok(());
    }
    let decision = schema(app)?.evaluate(
        policies,
        &ConditionRequest {
            principal,
            scope,
            tenant_slug: &compiled.slug,
            capability,
            ip: facts.ip,
            now: OffsetDateTime::now_utc(),
            http_method: facts.http_method,
            path: facts.path,
        },
    );
    match decision {
        ConditionDecision::Allow => Ok(()),
        ConditionDecision::Deny { policies } => {
            tracing::info!(
                target: "security",
                event = "policy.denied",
                tenant = %scope.tenant_id(),
                user = %principal.subject,
                capability = %capability,
                policies = ?policies,
                "a tenant policy forbids the request"
            );
            Err(ApiError::Forbidden {
                code: "authz.policy_denied",
                detail: format!("A policy of the tenant forbids `{capability}` for this request."),
            })
        }
        ConditionDecision::Error { messages } => {
            tracing::warn!(
                target: "security",
                event = "policy.error",
                tenant = %scope.tenant_id(),
                user = %principal.subject,
                capability = %capability,
                errors = ?messages,
                "a tenant policy failed to evaluate; denied"
            );
            Err(policy_error())
        }
    }
}
