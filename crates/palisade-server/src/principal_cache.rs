//! The principal cache: what the guard loads from the store to turn a verified credential into a
//! principal (the home tenant, the user's status, token version and roles, and the capabilities those
//! roles resolve to), kept in process so an authenticated request costs no database read before its
//! handler runs.
//!
//! Freshness rests on **authorization epochs** in the shared state ([`palisade_state::Counters`]), one
//! per tenant. A cache entry remembers the epoch of its home tenant it was loaded under and is used
//! only while that is unchanged. Every change that can alter a principal moves the epoch of the
//! principals' home tenant through [`invalidate`]: user update (status, roles), delete and
//! logout-all; custom-role create, update and delete (a user may hold a role name that is then
//! defined); a child tenant created under a tenant (whose members' scope level becomes `parent`); a
//! change of a tenant's IP allowlist (cached with its members' principals). A
//! tenant's id, kind and path never change; renaming it changes nothing a principal holds. With Redis
//! every instance sees the move at once, as it sees a revoked token; with the in-process backend (one
//! instance) so does that instance.
//!
//! SECURITY:
//! - The epochs are read before the store, so a load that races with a change is cached under the
//!   old epoch and never used again.
//! - [`invalidate`] moves the epoch before the change (when it cannot, the change is refused with
//!   503 and nothing is written) and again after it commits (for loads that ran in between).
//! - When the epochs cannot be read, the request fails closed (503 `state.unavailable`), as the
//!   revocation check does.
//! - Entries also expire after `auth.principal_cache_secs` (default 30 s; 0 turns the cache off),
//!   which bounds staleness for changes made behind the server's back (SQL, or the CLI while a
//!   server on the in-process backend runs).
//! - Disabled users are never cached: their load fails. The credential's own checks (signature,
//!   expiry, `jti` revocation, API-key lookup) run on every request; only the token version is
//!   compared with the cached user's.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_authz::{Capability, TenantRef};
use palisade_domain::{TenantId, UserId};

use crate::error::ApiError;
use crate::state::AppState;

/// Entries held before the cache is cleared (a bound on memory, not an LRU).
const CAPACITY: usize = 100_000;

/// How long an epoch counter lives in the shared state without moving. Far longer than any cache
/// entry, so a counter that expired and restarted can never repeat a value an entry still holds.
const EPOCH_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the store said about a user, resolved into what the guard needs.
#[derive(Debug)]
pub struct Resolved {
    /// The home tenant.
    pub home: TenantRef,
    /// The user's current token version.
    pub token_version: i64,
    /// Role names held in the home tenant.
    pub roles: Vec<String>,
    /// Capabilities those roles resolve to.
    pub capabilities: BTreeSet<Capability>,
    /// The home tenant's IP allowlist (empty: any address).
    pub allowed_ips: Vec<String>,
}

/// The epoch of its home tenant an entry was loaded under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

struct Entry {
    tenant: TenantId,
    epoch: Epoch,
    loaded: Instant,
    resolved: Arc<Resolved>,
}

/// The cache (see the module documentation).
pub struct PrincipalCache {
    ttl: Duration,
    entries: Mutex<HashMap<UserId, Entry>>,
}

impl std::fmt::Debug for PrincipalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl PrincipalCache {
    /// A cache whose entries live at most `ttl`; a zero `ttl` turns it off.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long an entry may be used.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the cache is on.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The entry for `user` of `tenant`, if it was loaded under `epoch` and is young enough.
    #[must_use]
    pub fn get(&self, user: UserId, tenant: TenantId, epoch: Epoch) -> Option<Arc<Resolved>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&user)?;
        (entry.tenant == tenant && entry.epoch == epoch && entry.loaded.elapsed() < self.ttl)
            .then(|| entry.resolved.clone())
    }

    /// Remembers what was loaded for `user` under `epoch`.
    pub fn put(&self, user: UserId, tenant: TenantId, epoch: Epoch, resolved: Arc<Resolved>) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY && !entries.contains_key(&user) {
                entries.clear();
            }
            entries.insert(
                user,
                Entry {
                    tenant,
                    epoch,
                    loaded: Instant::now(),
                    resolved,
                },
            );
        }
    }
}

fn tenant_key(tenant: TenantId) -> String {
    format!("authz-epoch:tenant:{tenant}")
}

fn unavailable() -> ApiError {
    ApiError::Unavailable {
        code: "state.unavailable",
        retry_after: 1,
    }
}

/// The current epoch of principals whose home is `tenant`.
///
/// # Errors
/// 503 `state.unavailable` when the shared state cannot be read (fail closed).
pub async fn epoch(app: &AppState, tenant: TenantId) -> Result<Epoch, ApiError> {
    app.auth()
        .state
        .counters
        .get(&tenant_key(tenant))
        .await
        .map(Epoch)
        .map_err(|_| unavailable())
}

async fn bump(app: &AppState, tenant: TenantId) -> Result<(), ApiError> {
    app.auth()
        .state
        .counters
        .hit(&tenant_key(tenant), EPOCH_WINDOW)
        .await
        .map(|_| ())
        .map_err(|_| unavailable())
}

/// Runs a change that can alter the principals whose home is `tenant`, moving their epoch before it
/// (refusing the change with 503 when that fails) and after it succeeds.
///
/// # Errors
/// 503 `state.unavailable` when the epoch cannot be moved before the change; else the change's own
/// error.
pub async fn invalidate<T>(
    app: &AppState,
    tenant: TenantId,
    change: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    bump(app, tenant).await?;
    let out = change.await?;
    if bump(app, tenant).await.is_err() {
        // The change is committed; the first move already retired every entry loaded before it,
        // and entries loaded in between expire with the cache's time to live.
        tracing::warn!(
            target: "palisade::authz",
            "could not move the authorization epoch after a change; cached principals expire by time"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_domain::TenantKind;

    fn resolved() -> Arc<Resolved> {
        Arc::new(Resolved {
            home: TenantRef {
                id: TenantId::new(),
                kind: TenantKind::Tenant,
                path: "/x/".to_owned(),
                has_children: false,
            },
            token_version: 1,
            roles: vec!["member".to_owned()],
            capabilities: BTreeSet::new(),
            allowed_ips: Vec::new(),
        })
    }

    #[test]
    fn entries_are_used_only_under_their_epochs_tenant_and_ttl() {
        let cache = PrincipalCache::new(Duration::from_secs(60));
        let (user, tenant) = (UserId::new(), TenantId::new());
        cache.put(user, tenant, Epoch(1), resolved());
        assert!(cache.get(user, tenant, Epoch(1)).is_some());
        assert!(cache.get(user, tenant, Epoch(2)).is_none(), "epoch moved");
        assert!(
            cache.get(user, TenantId::new(), Epoch(1)).is_none(),
            "other tenant"
        );
        assert!(cache.get(UserId::new(), tenant, Epoch(1)).is_none());

        let expired = PrincipalCache::new(Duration::from_nanos(1));
        expired.put(user, tenant, Epoch(1), resolved());
        std::thread::sleep(Duration::from_millis(2));
        assert!(expired.get(user, tenant, Epoch(1)).is_none(), "ttl");

        let off = PrincipalCache::new(Duration::ZERO);
        off.put(user, tenant, Epoch(1), resolved());
        assert!(off.get(user, tenant, Epoch(1)).is_none(), "disabled");
    }
}
