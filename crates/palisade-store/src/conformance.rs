//! The conformance suite: every backend's tests call these functions with fresh stores.
//!
//! Each case is a public async function taking [`Stores`] that are freshly migrated and empty, and
//! panics (`assert!`, `expect`) on any deviation. [`CASES`] lists them all. A backend's test crate
//! either invokes [`conformance_tests!`](crate::conformance_tests), which generates one
//! `#[tokio::test]` per case around the backend's own runner (so each case gets a fresh database and
//! its own line in the test report), or calls [`run_all`].
//!
//! What the suite pins down, identically on every backend:
//! - the tenant hierarchy: materialised paths, `has_children`, subtree-only reads and renames;
//! - SECURITY: tenant isolation of users (a foreign user is `None`/`NotFound`, never visible or
//!   changed), and refusal of a scope whose path is malformed;
//! - `Conflict` with the same constraint names (`tenants.slug`, `tenants.kind`, `users.tenant_id_email`);
//! - roles sorted and de-duplicated, keyset pagination complete and in id order, timestamps that read
//!   back exactly as written, and exactly one winner when two writers race for the same unique value;
//! - sign-in storage (the cases in `conformance/identity.rs`): signing-key rotation and retirement
//!   (with the private part wiped), at most one active key, atomic OTP attempt counts and single-use
//!   challenges, refresh-token rotation with reuse detection (exactly one winner of a race; the family
//!   revoked on reuse), token-version bumps, TOTP steps and recovery codes accepted once, tenant
//!   scoping of every per-user operation, and cascades from a deleted user;
//! - custom roles (the cases in `conformance/roles.rs`): tenant scoping, names unique per tenant
//!   (`custom_roles.tenant_id_name`), pagination by name, and no delete of a role in use;
//! - records of declared resources (`conformance/records.rs`): scoping, versions with one winner,
//!   unique claims per tenant, filters, soft delete and restore, one audit entry per mutation, and
//!   idempotency reservations with one winner;
//! - browser sessions (`conformance/sessions.rs`): created atomically with their refresh family and
//!   audit entry, found by cookie hash, touched forward only, ended with the family or the user.
//! - tenant policy documents (`conformance/policies.rs`): scoping, fresh etags and versions, `If-Match`
//!   preconditions, and one audit entry with the old and new text per change.
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "the suite is test code: a failed step stops the case with a message naming the step"
)]

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use palisade_authz::{InternalRole, SystemScope, TenantRef, TenantScope};
use palisade_domain::{Slug, TenantId, TenantKind, UserId, UserStatus};

use crate::{
    NewTenant, NewUser, PageRequest, StoreError, StoreResult, Stores, Tenant, User, UserPatch,
};

mod audit;
mod identity;
mod policies;
mod records;
mod roles;
mod sessions;
pub use audit::*;
pub use identity::*;
pub use policies::*;
pub use records::*;
pub use roles::*;
pub use sessions::*;

/// A boxed run of one case, taking the stores by value so a runner can spawn it on a task (and
/// clean up after a panic).
pub type CaseFn = fn(Stores) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's function name.
    pub name: &'static str,
    /// Runs the case against fresh stores.
    pub run: CaseFn,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// Builds a [`Case`] from a case function's name.
macro_rules! case {
    ($name:ident) => {
        Case {
            name: stringify!($name),
            run: |stores| Box::pin(async move { $name(&stores).await }),
        }
    };
}

/// Every case, in the order [`conformance_tests!`](crate::conformance_tests) generates them.
pub const CASES: &[Case] = &[
    case!(tenant_hierarchy_and_scoping),
    case!(malformed_scope_paths_are_refused),
    case!(tenant_slug_is_unique),
    case!(user_crud_is_scoped_to_the_tenant),
    case!(user_email_unique_per_tenant),
    case!(pagination_is_stable_and_complete),
    case!(roles_are_replaced_and_sorted),
    case!(concurrent_duplicates_have_exactly_one_winner),
    case!(ping_works),
    case!(signing_key_rotation_keeps_the_previous_key_until_retired),
    case!(at_most_one_signing_key_is_active_under_concurrent_rotations),
    case!(otp_attempts_count_atomically),
    case!(otp_challenges_are_consumed_once),
    case!(refresh_rotation_carries_the_session_forward),
    case!(refresh_token_reuse_revokes_the_family),
    case!(concurrent_refresh_rotation_has_exactly_one_winner),
    case!(expired_refresh_tokens_are_refused),
    case!(revoking_refresh_families_is_scoped),
    case!(token_version_bumps_are_scoped_and_atomic),
    case!(totp_steps_are_accepted_once_and_never_backwards),
    case!(recovery_codes_are_single_use),
    case!(deleting_a_user_cascades_to_sign_in_state),
    case!(phone_lookup_is_scoped_and_unique),
    case!(custom_roles_are_scoped_to_the_tenant),
    case!(custom_role_names_are_unique_per_tenant),
    case!(custom_roles_page_by_name),
    case!(a_custom_role_in_use_cannot_be_deleted),
    case!(audit_chain_links_and_verifies),
    case!(concurrent_audit_appends_never_fork_the_chain),
    case!(audit_chains_are_scoped_to_the_tenant),
    case!(audit_queries_filter_and_page),
    case!(audit_retention_keeps_the_chain_verifiable),
    case!(audit_retention_per_category_prunes_only_the_prunable_prefix),
    case!(platform_mutations_write_exactly_one_entry_each),
    case!(records_are_scoped_versioned_and_audited),
    case!(idempotency_reservations_have_one_winner),
    case!(concurrent_creates_each_land_once_with_their_own_audit_entry),
    case!(record_purges_remove_every_trace_and_are_audited),
    case!(api_keys_are_scoped_rotated_and_revoked),
    case!(browser_sessions_follow_their_family),
    case!(tenant_policies_are_scoped_versioned_and_audited),
];

/// Generates one `#[tokio::test]` per conformance case in the calling module.
///
/// `$runner` is an async function `fn(Case) -> impl Future<Output = ()>` that prepares fresh, migrated,
/// empty stores, calls `(case.run)(stores)`, and cleans up. The calling crate needs `tokio` with the
/// `macros` and `rt-multi-thread` features. A generated `conformance_cases_are_all_generated` test
/// fails when this list and [`CASES`](crate::conformance::CASES) drift apart.
///
/// ```ignore
/// async fn run_on_sqlite(case: palisade_store::conformance::Case) { /* fresh DB */ (case.run)(stores).await }
/// mod sqlite { palisade_store::conformance_tests!(super::run_on_sqlite); }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($runner:path) => {
        $crate::conformance_tests!(@cases $runner;
            tenant_hierarchy_and_scoping,
            malformed_scope_paths_are_refused,
            tenant_slug_is_unique,
            user_crud_is_scoped_to_the_tenant,
            user_email_unique_per_tenant,
            pagination_is_stable_and_complete,
            roles_are_replaced_and_sorted,
            concurrent_duplicates_have_exactly_one_winner,
            ping_works,
            signing_key_rotation_keeps_the_previous_key_until_retired,
            at_most_one_signing_key_is_active_under_concurrent_rotations,
            otp_attempts_count_atomically,
            otp_challenges_are_consumed_once,
            refresh_rotation_carries_the_session_forward,
            refresh_token_reuse_revokes_the_family,
            concurrent_refresh_rotation_has_exactly_one_winner,
            expired_refresh_tokens_are_refused,
            revoking_refresh_families_is_scoped,
            token_version_bumps_are_scoped_and_atomic,
            totp_steps_are_accepted_once_and_never_backwards,
            recovery_codes_are_single_use,
            deleting_a_user_cascades_to_sign_in_state,
            phone_lookup_is_scoped_and_unique,
            custom_roles_are_scoped_to_the_tenant,
            custom_role_names_are_unique_per_tenant,
            custom_roles_page_by_name,
            a_custom_role_in_use_cannot_be_deleted,
            audit_chain_links_and_verifies,
            concurrent_audit_appends_never_fork_the_chain,
            audit_chains_are_scoped_to_the_tenant,
            audit_queries_filter_and_page,
            audit_retention_keeps_the_chain_verifiable,
            audit_retention_per_category_prunes_only_the_prunable_prefix,
            platform_mutations_write_exactly_one_entry_each,
            records_are_scoped_versioned_and_audited,
            idempotency_reservations_have_one_winner,
            concurrent_creates_each_land_once_with_their_own_audit_entry,
            record_purges_remove_every_trace_and_are_audited,
            api_keys_are_scoped_rotated_and_revoked,
            browser_sessions_follow_their_family,
            tenant_policies_are_scoped_versioned_and_audited,
        );
    };
    (@cases $runner:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $runner($crate::conformance::Case {
                    name: ::std::stringify!($case),
                    run: |stores| ::std::boxed::Box::pin(async move {
                        $crate::conformance::$case(&stores).await
                    }),
                })
                .await;
            }
        )*

        #[test]
        fn conformance_cases_are_all_generated() {
            let generated: &[&str] = &[$(::std::stringify!($case)),*];
            let listed: ::std::vec::Vec<&str> =
                $crate::conformance::CASES.iter().map(|case| case.name).collect();
            assert_eq!(generated, listed.as_slice());
        }
    };
}

/// Runs every case in sequence, each on fresh stores from `make`.
pub async fn run_all<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Stores>,
{
    for case in CASES {
        (case.run)(make().await).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/// The sanctioned internal path to scopes in tests.
fn bootstrap() -> SystemScope {
    SystemScope::internal(InternalRole::Bootstrap)
}

/// A scope granting access to `tenant` (and, for tenant reads, its subtree).
fn scope(tenant: &Tenant) -> TenantScope {
    bootstrap().tenant_scope(tenant.to_ref())
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).expect("test slugs are valid")
}

async fn system_tenant(stores: &Stores) -> Tenant {
    stores
        .tenants
        .create_system_tenant(&bootstrap(), slug("root"), "Root".to_owned(), audit_meta())
        .await
        .expect("create the system tenant")
}

async fn child(stores: &Stores, parent: &Tenant, name: &str, kind: TenantKind) -> Tenant {
    stores
        .tenants
        .create_child_tenant(
            &scope(parent),
            NewTenant {
                slug: slug(name),
                name: format!("Tenant {name}"),
                kind,
                allowed_ips: Vec::new(),
            },
            audit_meta(),
        )
        .await
        .expect("create a child tenant")
}

fn new_user(email: &str, roles: &[&str]) -> NewUser {
    NewUser {
        email: email.to_owned(),
        phone: None,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    }
}

async fn user(stores: &Stores, tenant: &Tenant, email: &str, roles: &[&str]) -> User {
    stores
        .users
        .create_user(&scope(tenant), new_user(email, roles), audit_meta())
        .await
        .expect("create a user")
}

/// Reads a tenant fresh (its `has_children` may have changed since it was created).
async fn reload(stores: &Stores, tenant: &Tenant) -> Tenant {
    stores
        .tenants
        .resolve_tenant(tenant.id)
        .await
        .expect("resolve a tenant")
        .expect("the tenant exists")
}

/// Every tenant a scope lists, following `next_after` page by page.
async fn list_all_tenants(stores: &Stores, scope: &TenantScope, limit: u32) -> Vec<Tenant> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .tenants
            .list_tenants(scope, &PageRequest { limit, after })
            .await
            .expect("list tenants");
        assert!(
            page.items.len() <= limit as usize,
            "a page holds at most `limit` items"
        );
        all.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

/// Every user a scope lists, following `next_after`; also returns the page sizes seen.
async fn list_all_users(
    stores: &Stores,
    scope: &TenantScope,
    limit: u32,
) -> (Vec<User>, Vec<usize>) {
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .users
            .list_users(scope, &PageRequest { limit, after })
            .await
            .expect("list users");
        sizes.push(page.items.len());
        if let (Some(next), Some(last)) = (&page.next_after, page.items.last()) {
            assert_eq!(
                next,
                &last.id.to_string(),
                "next_after is the last item's id"
            );
        }
        all.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return (all, sizes),
        }
    }
}

fn sorted_ids<T: Clone + Ord>(ids: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut ids: Vec<T> = ids.into_iter().collect();
    ids.sort();
    ids
}

fn assert_conflict<T: std::fmt::Debug>(result: StoreResult<T>, expected: &str) {
    match result {
        Err(StoreError::Conflict { constraint }) => {
            assert_eq!(constraint, expected, "conflict constraint name")
        }
        other => panic!("expected Conflict on {expected}, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected NotFound, got {result:?}"
    );
}

/// Polls two futures concurrently on the current task (the suite does not depend on a runtime).
async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut out_a, mut out_b) = (None, None);
    poll_fn(move |cx| {
        if out_a.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            out_a = Some(v);
        }
        if out_b.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            out_b = Some(v);
        }
        match (out_a.take(), out_b.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                out_a = x;
                out_b = y;
                Poll::Pending
            }
        }
    })
    .await
}

/// Polls any number of futures concurrently on the current task; outputs in input order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(move |cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(
                outputs
                    .iter_mut()
                    .map(|o| o.take().expect("every future finished"))
                    .collect(),
            )
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------------
// Cases

/// Materialised paths, `has_children`, and subtree-only reads and renames.
pub async fn tenant_hierarchy_and_scoping(stores: &Stores) {
    // Arrange: root > partner > acme > acme-eu, and root > other.
    let root = system_tenant(stores).await;
    assert_eq!(root.kind, TenantKind::System);
    assert_eq!(root.parent_id, None);
    assert_eq!(root.path, format!("/{}/", root.id));
    assert!(!root.has_children);
    assert_eq!(root.created_at, root.updated_at);
    assert_eq!(
        stores
            .tenants
            .resolve_tenant(root.id)
            .await
            .expect("resolve"),
        Some(root.clone()),
        "a tenant reads back exactly as created"
    );

    let partner = child(stores, &root, "partner", TenantKind::Partner).await;
    let acme = child(stores, &partner, "acme", TenantKind::Tenant).await;
    let acme_eu = child(stores, &acme, "acme-eu", TenantKind::Tenant).await;
    let other = child(stores, &root, "other", TenantKind::Tenant).await;
    assert_eq!(partner.kind, TenantKind::Partner);
    assert_eq!(partner.parent_id, Some(root.id));
    assert_eq!(partner.path, format!("{}{}/", root.path, partner.id));
    assert_eq!(acme_eu.parent_id, Some(acme.id));
    assert_eq!(
        acme_eu.path,
        format!("/{}/{}/{}/{}/", root.id, partner.id, acme.id, acme_eu.id)
    );
    assert!(!acme_eu.has_children);

    // has_children is computed on read.
    assert!(reload(stores, &root).await.has_children);
    assert!(reload(stores, &acme).await.has_children);
    assert!(!reload(stores, &acme_eu).await.has_children);
    assert!(!reload(stores, &other).await.has_children);

    // Unscoped resolution.
    let by_slug = stores
        .tenants
        .resolve_tenant_by_slug(&slug("acme"))
        .await
        .expect("resolve by slug");
    assert_eq!(by_slug.map(|t| t.id), Some(acme.id));
    assert_eq!(
        stores
            .tenants
            .resolve_tenant_by_slug(&slug("nobody"))
            .await
            .expect("resolve"),
        None
    );
    assert_eq!(
        stores
            .tenants
            .resolve_tenant(TenantId::new())
            .await
            .expect("resolve"),
        None
    );

    // get_tenant sees the scope's tenant and its descendants only.
    let s_acme = scope(&acme);
    for (id, visible) in [
        (acme.id, true),
        (acme_eu.id, true),
        (partner.id, false),
        (root.id, false),
        (other.id, false),
    ] {
        let got = stores
            .tenants
            .get_tenant(&s_acme, id)
            .await
            .expect("get tenant");
        assert_eq!(got.is_some(), visible, "acme's scope and tenant {id}");
    }
    let s_other = scope(&other);
    assert_eq!(
        stores
            .tenants
            .get_tenant(&s_other, acme.id)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        stores
            .tenants
            .get_tenant(&scope(&root), acme_eu.id)
            .await
            .expect("get"),
        Some(acme_eu.clone())
    );

    // list_tenants: the scope's tenant and its descendants, in id order.
    let ids = |ts: Vec<Tenant>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(list_all_tenants(stores, &s_acme, 10).await),
        sorted_ids([acme.id, acme_eu.id])
    );
    assert_eq!(
        ids(list_all_tenants(stores, &scope(&partner), 10).await),
        sorted_ids([partner.id, acme.id, acme_eu.id])
    );
    assert_eq!(
        ids(list_all_tenants(stores, &scope(&root), 2).await),
        sorted_ids([root.id, partner.id, acme.id, acme_eu.id, other.id])
    );
    assert_eq!(
        ids(list_all_tenants(stores, &s_other, 10).await),
        vec![other.id]
    );
    let listed_acme = list_all_tenants(stores, &s_acme, 10).await;
    assert!(
        listed_acme
            .iter()
            .any(|t| t.id == acme.id && t.has_children)
    );

    // rename_tenant: only within the subtree.
    assert_not_found(
        stores
            .tenants
            .rename_tenant(&s_acme, other.id, "Nope".to_owned(), audit_meta())
            .await,
    );
    assert_not_found(
        stores
            .tenants
            .rename_tenant(&s_acme, partner.id, "Nope".to_owned(), audit_meta())
            .await,
    );
    assert_not_found(
        stores
            .tenants
            .rename_tenant(&s_acme, TenantId::new(), "Nope".to_owned(), audit_meta())
            .await,
    );
    let renamed = stores
        .tenants
        .rename_tenant(&s_acme, acme_eu.id, "Acme Europe".to_owned(), audit_meta())
        .await
        .expect("rename within the subtree");
    assert_eq!(renamed.name, "Acme Europe");
    assert!(renamed.allowed_ips.is_empty());
    // The IP allowlist: set alone (the name stays), read back, outside the subtree NotFound.
    let fenced = stores
        .tenants
        .update_tenant(
            &s_acme,
            acme_eu.id,
            crate::TenantPatch {
                name: None,
                allowed_ips: Some(vec!["192.0.2.0/24".to_owned(), "2001:db8::/32".to_owned()]),
            },
            audit_meta(),
        )
        .await
        .expect("set the allowlist");
    assert_eq!(fenced.name, "Acme Europe");
    assert_eq!(fenced.allowed_ips, ["192.0.2.0/24", "2001:db8::/32"]);
    assert_eq!(
        stores
            .tenants
            .resolve_tenant(acme_eu.id)
            .await
            .expect("resolve")
            .map(|t| t.allowed_ips),
        Some(fenced.allowed_ips.clone())
    );
    assert_not_found(
        stores
            .tenants
            .update_tenant(
                &s_acme,
                other.id,
                crate::TenantPatch {
                    name: None,
                    allowed_ips: Some(Vec::new()),
                },
                audit_meta(),
            )
            .await,
    );
    let renamed = stores
        .tenants
        .update_tenant(
            &s_acme,
            acme_eu.id,
            crate::TenantPatch {
                name: None,
                allowed_ips: Some(Vec::new()),
            },
            audit_meta(),
        )
        .await
        .expect("clear the allowlist");
    assert_eq!(renamed.slug, acme_eu.slug);
    assert_eq!(renamed.path, acme_eu.path);
    assert_eq!(renamed.created_at, acme_eu.created_at);
    assert!(renamed.updated_at >= acme_eu.updated_at);
    assert_eq!(
        stores
            .tenants
            .get_tenant(&s_acme, acme_eu.id)
            .await
            .expect("get"),
        Some(renamed)
    );
    assert_eq!(
        reload(stores, &other).await.name,
        other.name,
        "a refused rename changes nothing"
    );
    assert_eq!(
        reload(stores, &partner).await.name,
        partner.name,
        "a refused rename changes nothing"
    );

    // A child can never be a system tenant.
    let rogue = stores
        .tenants
        .create_child_tenant(
            &scope(&root),
            NewTenant {
                slug: slug("rogue"),
                name: "Rogue".to_owned(),
                kind: TenantKind::System,
                allowed_ips: Vec::new(),
            },
            audit_meta(),
        )
        .await;
    assert!(rogue.is_err(), "a system child was accepted: {rogue:?}");
    assert_eq!(
        stores
            .tenants
            .resolve_tenant_by_slug(&slug("rogue"))
            .await
            .expect("resolve"),
        None
    );
}

/// SECURITY: a scope whose path is empty, truncated or belongs to another tenant is refused outright,
/// never treated as a prefix that matches every tenant; a well-formed path that is not the tenant's
/// real one sees nothing and cannot create children.
pub async fn malformed_scope_paths_are_refused(stores: &Stores) {
    let root = system_tenant(stores).await;
    let acme = child(stores, &root, "acme", TenantKind::Tenant).await;
    let other = child(stores, &root, "other", TenantKind::Tenant).await;
    for path in [
        String::new(),
        "/".to_owned(),
        root.path.clone(),
        other.path.clone(),
        acme.path.trim_end_matches('/').to_owned(),
    ] {
        let forged = bootstrap().tenant_scope(TenantRef {
            id: acme.id,
            kind: acme.kind,
            path: path.clone(),
            has_children: false,
        });
        let listed = stores
            .tenants
            .list_tenants(
                &forged,
                &PageRequest {
                    limit: 10,
                    after: None,
                },
            )
            .await;
        assert!(listed.is_err(), "path {path:?} listed {listed:?}");
        let got = stores.tenants.get_tenant(&forged, other.id).await;
        assert!(got.is_err(), "path {path:?} got {got:?}");
        let renamed = stores
            .tenants
            .rename_tenant(&forged, other.id, "Pwned".to_owned(), audit_meta())
            .await;
        assert!(renamed.is_err(), "path {path:?} renamed {renamed:?}");
        let created = stores
            .tenants
            .create_child_tenant(
                &forged,
                NewTenant {
                    slug: slug("forged"),
                    name: "Forged".to_owned(),
                    kind: TenantKind::Tenant,
                    allowed_ips: Vec::new(),
                },
                audit_meta(),
            )
            .await;
        assert!(created.is_err(), "path {path:?} created {created:?}");
    }

    // A well-formed path that is not the tenant's real one selects nothing and grafts nothing.
    let detached = bootstrap().tenant_scope(TenantRef {
        id: acme.id,
        kind: acme.kind,
        path: format!("/{}/", acme.id),
        has_children: false,
    });
    let listed = stores
        .tenants
        .list_tenants(
            &detached,
            &PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .expect("list");
    assert!(listed.items.is_empty(), "{listed:?}");
    assert_eq!(
        stores
            .tenants
            .get_tenant(&detached, acme.id)
            .await
            .expect("get"),
        None
    );
    assert_not_found(
        stores
            .tenants
            .rename_tenant(&detached, acme.id, "Pwned".to_owned(), audit_meta())
            .await,
    );
    assert_not_found(
        stores
            .tenants
            .create_child_tenant(
                &detached,
                NewTenant {
                    slug: slug("grafted"),
                    name: "Grafted".to_owned(),
                    kind: TenantKind::Tenant,
                    allowed_ips: Vec::new(),
                },
                audit_meta(),
            )
            .await,
    );
    assert_eq!(
        stores
            .tenants
            .resolve_tenant_by_slug(&slug("grafted"))
            .await
            .expect("resolve"),
        None
    );
    assert_eq!(reload(stores, &other).await.name, other.name);
}

/// Slugs are unique across the whole tree, and there is only one system tenant.
pub async fn tenant_slug_is_unique(stores: &Stores) {
    let root = system_tenant(stores).await;
    let partner = child(stores, &root, "partner", TenantKind::Partner).await;
    let acme = child(stores, &root, "acme", TenantKind::Tenant).await;

    for parent in [&root, &partner] {
        let again = stores
            .tenants
            .create_child_tenant(
                &scope(parent),
                NewTenant {
                    slug: slug("acme"),
                    name: "Acme again".to_owned(),
                    kind: TenantKind::Tenant,
                    allowed_ips: Vec::new(),
                },
                audit_meta(),
            )
            .await;
        assert_conflict(again, "tenants.slug");
    }
    // A second system tenant with a taken slug violates two constraints; which one a backend reports
    // first is not specified, only that it is a conflict.
    let both = stores
        .tenants
        .create_system_tenant(
            &bootstrap(),
            slug("acme"),
            "Root 2".to_owned(),
            audit_meta(),
        )
        .await;
    assert!(matches!(both, Err(StoreError::Conflict { .. })), "{both:?}");
    assert_conflict(
        stores
            .tenants
            .create_system_tenant(
                &bootstrap(),
                slug("root-2"),
                "Root 2".to_owned(),
                audit_meta(),
            )
            .await,
        "tenants.kind",
    );

    // The refused writes changed nothing.
    let all = list_all_tenants(stores, &scope(&root), 10).await;
    assert_eq!(all.len(), 3);
    assert_eq!(reload(stores, &acme).await, acme);
}

/// SECURITY: a scope for tenant A never sees, updates or deletes a user of tenant B — not even when A is
/// B's parent. Also the plain create/read/update/delete cycle within one tenant.
pub async fn user_crud_is_scoped_to_the_tenant(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &a, "tenant-b", TenantKind::Tenant).await;
    let (s_a, s_b) = (scope(&a), scope(&b));

    // Create and read within B.
    let created = stores
        .users
        .create_user(
            &s_b,
            NewUser {
                email: "bob@example.com".to_owned(),
                phone: Some("+442071838750".to_owned()),
                roles: vec!["viewer".to_owned()],
            },
            audit_meta(),
        )
        .await
        .expect("create a user");
    assert_eq!(created.tenant_id, b.id);
    assert_eq!(created.status, UserStatus::Active);
    assert_eq!(created.token_version, 0);
    assert_eq!(created.roles, vec!["viewer".to_owned()]);
    assert_eq!(created.phone.as_deref(), Some("+442071838750"));
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(
        stores.users.get_user(&s_b, created.id).await.expect("get"),
        Some(created.clone())
    );
    assert_eq!(
        stores
            .users
            .find_user_by_email(&s_b, "bob@example.com")
            .await
            .expect("find"),
        Some(created.clone())
    );

    // Tenant A (B's parent) and the root see nothing of B's user.
    for foreign in [&s_a, &scope(&root)] {
        assert_eq!(
            stores
                .users
                .get_user(foreign, created.id)
                .await
                .expect("get"),
            None
        );
        assert_eq!(
            stores
                .users
                .find_user_by_email(foreign, "bob@example.com")
                .await
                .expect("find"),
            None
        );
        let listed = stores
            .users
            .list_users(
                foreign,
                &PageRequest {
                    limit: 50,
                    after: None,
                },
            )
            .await
            .expect("list");
        assert!(listed.items.is_empty());
        assert_not_found(
            stores
                .users
                .update_user(
                    foreign,
                    created.id,
                    UserPatch {
                        status: Some(UserStatus::Disabled),
                        roles: Some(vec!["owner".to_owned()]),
                        ..UserPatch::default()
                    },
                    audit_meta(),
                )
                .await,
        );
        assert_not_found(
            stores
                .users
                .delete_user(foreign, created.id, audit_meta())
                .await,
        );
    }
    assert_eq!(
        stores.users.get_user(&s_b, created.id).await.expect("get"),
        Some(created.clone()),
        "refused writes changed nothing"
    );

    // Update and delete within B.
    let disabled = stores
        .users
        .update_user(
            &s_b,
            created.id,
            UserPatch {
                status: Some(UserStatus::Disabled),
                roles: None,
                ..UserPatch::default()
            },
            audit_meta(),
        )
        .await
        .expect("update");
    assert_eq!(disabled.status, UserStatus::Disabled);
    assert_eq!(disabled.roles, created.roles);
    assert_eq!(disabled.created_at, created.created_at);
    assert!(disabled.updated_at >= created.updated_at);
    assert_eq!(
        stores.users.get_user(&s_b, created.id).await.expect("get"),
        Some(disabled)
    );

    stores
        .users
        .delete_user(&s_b, created.id, audit_meta())
        .await
        .expect("delete");
    assert_eq!(
        stores.users.get_user(&s_b, created.id).await.expect("get"),
        None
    );
    assert_not_found(
        stores
            .users
            .delete_user(&s_b, created.id, audit_meta())
            .await,
    );
    assert_not_found(
        stores
            .users
            .update_user(&s_b, created.id, UserPatch::default(), audit_meta())
            .await,
    );
    assert_not_found(
        stores
            .users
            .delete_user(&s_b, UserId::new(), audit_meta())
            .await,
    );

    // The e-mail is free again once the user is gone.
    let again = user(stores, &b, "bob@example.com", &[]).await;
    assert!(again.roles.is_empty());
}

/// An e-mail is unique within a tenant, and free in every other.
pub async fn user_email_unique_per_tenant(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "tenant-b", TenantKind::Tenant).await;

    let in_a = user(stores, &a, "same@example.com", &["admin"]).await;
    assert_conflict(
        stores
            .users
            .create_user(
                &scope(&a),
                new_user("same@example.com", &["viewer"]),
                audit_meta(),
            )
            .await,
        "users.tenant_id_email",
    );
    let in_b = user(stores, &b, "same@example.com", &["viewer"]).await;
    assert_ne!(in_a.id, in_b.id);

    // Each tenant finds its own.
    let found_a: Option<User> = stores
        .users
        .find_user_by_email(&scope(&a), "same@example.com")
        .await
        .expect("find");
    assert_eq!(found_a, Some(in_a.clone()));
    let found_b = stores
        .users
        .find_user_by_email(&scope(&b), "same@example.com")
        .await
        .expect("find");
    assert_eq!(found_b, Some(in_b.clone()));
    let (users_a, _) = list_all_users(stores, &scope(&a), 10).await;
    assert_eq!(users_a.len(), 1, "the refused insert left nothing behind");

    // Changing an e-mail or phone: unique per tenant too, and a refused change changes nothing.
    let in_a = found_a.expect("in a");
    let other = stores
        .users
        .create_user(
            &scope(&a),
            NewUser {
                email: "other@example.com".to_owned(),
                phone: Some("+4915100000001".to_owned()),
                roles: Vec::new(),
            },
            audit_meta(),
        )
        .await
        .expect("other");
    let patch = |email: Option<&str>, phone: Option<Option<&str>>| UserPatch {
        email: email.map(str::to_owned),
        phone: phone.map(|p| p.map(str::to_owned)),
        status: Some(UserStatus::Disabled),
        ..UserPatch::default()
    };
    assert_conflict(
        stores
            .users
            .update_user(
                &scope(&a),
                in_a.id,
                patch(Some("other@example.com"), None),
                audit_meta(),
            )
            .await,
        "users.tenant_id_email",
    );
    assert_conflict(
        stores
            .users
            .update_user(
                &scope(&a),
                in_a.id,
                patch(Some("fresh@example.com"), Some(Some("+4915100000001"))),
                audit_meta(),
            )
            .await,
        "users.tenant_id_phone",
    );
    assert_eq!(
        stores
            .users
            .get_user(&scope(&a), in_a.id)
            .await
            .expect("get"),
        Some(in_a.clone()),
        "a refused change (status included) changed nothing"
    );
    // The e-mail taken in tenant b does not matter in tenant a, and vice versa.
    let changed = stores
        .users
        .update_user(
            &scope(&b),
            in_b.id,
            UserPatch {
                email: Some("other@example.com".to_owned()),
                phone: Some(Some("+4915100000001".to_owned())),
                ..UserPatch::default()
            },
            audit_meta(),
        )
        .await
        .expect("same e-mail and phone in another tenant");
    assert_eq!(changed.email, "other@example.com");
    assert_eq!(changed.phone.as_deref(), Some("+4915100000001"));
    let moved = stores
        .users
        .update_user(
            &scope(&a),
            other.id,
            UserPatch {
                email: Some("moved@example.com".to_owned()),
                phone: Some(None),
                ..UserPatch::default()
            },
            audit_meta(),
        )
        .await
        .expect("change e-mail, remove phone");
    assert_eq!(moved.email, "moved@example.com");
    assert_eq!(moved.phone, None);
    assert_eq!(moved.roles, other.roles);
    assert_eq!(
        stores
            .users
            .find_user_by_email(&scope(&a), "other@example.com")
            .await
            .expect("find"),
        None,
        "the old address no longer finds the user"
    );
    assert_eq!(
        stores
            .users
            .find_user_by_email(&scope(&a), "moved@example.com")
            .await
            .expect("find")
            .map(|u| u.id),
        Some(other.id)
    );
}

/// Keyset pagination returns every item once, in id order, with `next_after` only when more follow.
pub async fn pagination_is_stable_and_complete(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "tenant-b", TenantKind::Tenant).await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(
            user(stores, &a, &format!("user{i:02}@example.com"), &["viewer"])
                .await
                .id,
        );
    }
    for i in 0..3 {
        user(stores, &b, &format!("other{i}@example.com"), &[]).await;
    }
    let expected = sorted_ids(created);

    let (seen, sizes) = list_all_users(stores, &scope(&a), 10).await;
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(
        seen.iter().map(|u| u.id).collect::<Vec<_>>(),
        expected,
        "all seen once, in id order"
    );
    assert!(
        seen.iter()
            .all(|u| u.tenant_id == a.id && u.roles == ["viewer"])
    );

    // A page size that divides the total ends without an empty page.
    let (seen, sizes) = list_all_users(stores, &scope(&a), 5).await;
    assert_eq!(sizes, vec![5; 5]);
    assert_eq!(seen.len(), 25);
    let (_, sizes) = list_all_users(stores, &scope(&a), 25).await;
    assert_eq!(sizes, vec![25]);

    // Tenants page the same way.
    for i in 0..12 {
        child(stores, &a, &format!("sub-{i}"), TenantKind::Tenant).await;
    }
    let tenants = list_all_tenants(stores, &scope(&a), 5).await;
    assert_eq!(tenants.len(), 13);
    let ids: Vec<TenantId> = tenants.iter().map(|t| t.id).collect();
    assert_eq!(ids, sorted_ids(ids.clone()));
    assert!(ids.contains(&a.id));
}

/// Roles come back sorted and de-duplicated; an update replaces the whole set.
pub async fn roles_are_replaced_and_sorted(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let s_a = scope(&a);
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let alice = user(
        stores,
        &a,
        "alice@example.com",
        &["viewer", "admin", "viewer", "auditor"],
    )
    .await;
    assert_eq!(alice.roles, strings(&["admin", "auditor", "viewer"]));
    let bob = user(stores, &a, "bob@example.com", &["owner"]).await;
    assert_eq!(
        stores.users.get_user(&s_a, alice.id).await.expect("get"),
        Some(alice.clone())
    );

    let replaced = stores
        .users
        .update_user(
            &s_a,
            alice.id,
            UserPatch {
                status: None,
                roles: Some(strings(&["owner", "billing", "owner"])),
                ..UserPatch::default()
            },
            audit_meta(),
        )
        .await
        .expect("replace roles");
    assert_eq!(replaced.roles, strings(&["billing", "owner"]));
    assert_eq!(replaced.status, UserStatus::Active);
    assert!(replaced.updated_at >= alice.updated_at);
    assert_eq!(
        stores.users.get_user(&s_a, alice.id).await.expect("get"),
        Some(replaced.clone())
    );

    let untouched = stores
        .users
        .update_user(
            &s_a,
            alice.id,
            UserPatch {
                status: Some(UserStatus::Disabled),
                roles: None,
                ..UserPatch::default()
            },
            audit_meta(),
        )
        .await
        .expect("update status");
    assert_eq!(
        untouched.roles, replaced.roles,
        "roles: None leaves them as they are"
    );

    let cleared = stores
        .users
        .update_user(
            &s_a,
            alice.id,
            UserPatch {
                status: None,
                roles: Some(Vec::new()),
                ..UserPatch::default()
            },
            audit_meta(),
        )
        .await
        .expect("clear roles");
    assert!(cleared.roles.is_empty());

    // Each user keeps their own roles.
    let (listed, _) = list_all_users(stores, &s_a, 10).await;
    for u in listed {
        let expected = if u.id == bob.id {
            strings(&["owner"])
        } else {
            Vec::new()
        };
        assert_eq!(u.roles, expected);
    }
}

/// Two writers racing for the same slug (or the same e-mail in a tenant): exactly one wins, the other
/// gets `Conflict`.
pub async fn concurrent_duplicates_have_exactly_one_winner(stores: &Stores) {
    let root = system_tenant(stores).await;
    let s_root = scope(&root);
    let create = || {
        stores.tenants.create_child_tenant(
            &s_root,
            NewTenant {
                slug: slug("contested"),
                name: "Contested".to_owned(),
                kind: TenantKind::Tenant,
                allowed_ips: Vec::new(),
            },
            audit_meta(),
        )
    };
    let (first, second) = join2(create(), create()).await;
    let (won, lost) = match (first, second) {
        (Ok(t), other) | (other, Ok(t)) => (t, other),
        (x, y) => panic!("neither write won: {x:?} / {y:?}"),
    };
    assert_conflict(lost, "tenants.slug");
    assert_eq!(
        stores
            .tenants
            .resolve_tenant_by_slug(&slug("contested"))
            .await
            .expect("resolve")
            .map(|t| t.id),
        Some(won.id)
    );

    let s_won = scope(&won);
    let create_user = || {
        stores.users.create_user(
            &s_won,
            new_user("race@example.com", &["admin", "viewer"]),
            audit_meta(),
        )
    };
    let (first, second) = join2(create_user(), create_user()).await;
    let lost = match (first, second) {
        (Ok(_), other) | (other, Ok(_)) => other,
        (x, y) => panic!("neither write won: {x:?} / {y:?}"),
    };
    assert_conflict(lost, "users.tenant_id_email");
    let (users, _) = list_all_users(stores, &s_won, 10).await;
    assert_eq!(users.len(), 1);
    assert_eq!(
        users.first().map(|u| u.roles.len()),
        Some(2),
        "the loser's roles were rolled back with it"
    );
}

/// The health check answers, and names a known backend.
pub async fn ping_works(stores: &Stores) {
    stores.health.ping().await.expect("ping");
    assert!(
        ["sqlite", "postgres"].contains(&stores.health.backend()),
        "unknown backend name {}",
        stores.health.backend()
    );
}

/// The audit metadata every mutation in the suite carries.
pub(crate) fn audit_meta() -> &'static crate::AuditMeta {
    static META: std::sync::LazyLock<crate::AuditMeta> =
        std::sync::LazyLock::new(|| crate::AuditMeta::system("conformance"));
    &META
}

/// API keys: tenant isolation (only the prefix lookup is unscoped), a deployment-wide unique prefix,
/// rotation (successor names the old key, old key's grace set, a dead key not rotated) and revocation.
pub async fn api_keys_are_scoped_rotated_and_revoked(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "keys-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "keys-b", TenantKind::Tenant).await;
    let creator = user(stores, &a, "keys@a.test", &["tenant_admin"]).await;
    let new_key = |prefix: &str| crate::NewApiKey {
        created_by: creator.id,
        name: "ci".to_owned(),
        prefix: prefix.to_owned(),
        secret_hash: "00ff".to_owned(),
        capabilities: vec![
            "b.read".to_owned(),
            "a.read".to_owned(),
            "a.read".to_owned(),
        ],
        allowed_ips: vec!["10.0.0.0/8".to_owned()],
        expires_at: None,
        rate_limit: Some(crate::KeyRateLimit {
            per_second: 2,
            burst: 7,
        }),
    };
    let key = stores
        .api_keys
        .create_api_key(&scope(&a), new_key("prefixaaaaaa"), audit_meta())
        .await
        .expect("create a key");
    assert_eq!(key.capabilities, ["a.read", "b.read"]);
    assert_eq!(
        key.rate_limit,
        Some(crate::KeyRateLimit {
            per_second: 2,
            burst: 7
        })
    );
    assert_eq!(
        stores
            .api_keys
            .get_api_key(&scope(&a), &key.id)
            .await
            .expect("get"),
        Some(key.clone())
    );
    // Another tenant sees nothing and changes nothing.
    assert_eq!(
        stores
            .api_keys
            .get_api_key(&scope(&b), &key.id)
            .await
            .expect("get"),
        None
    );
    assert_not_found(
        stores
            .api_keys
            .revoke_api_key(&scope(&b), &key.id, audit_meta())
            .await,
    );
    let page = PageRequest {
        limit: 10,
        after: None,
    };
    assert!(
        stores
            .api_keys
            .list_api_keys(&scope(&b), &page)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    // The prefix is unique across tenants.
    assert_conflict(
        stores
            .api_keys
            .create_api_key(&scope(&b), new_key("prefixaaaaaa"), audit_meta())
            .await,
        "api_keys.prefix",
    );
    // The authentication lookup finds it by prefix.
    let found = stores
        .api_keys
        .find_api_key_by_prefix("prefixaaaaaa")
        .await
        .expect("find");
    assert_eq!(found.as_ref().map(|k| k.id.as_str()), Some(key.id.as_str()));
    // Rotation.
    let grace = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let next = stores
        .api_keys
        .rotate_api_key(
            &scope(&a),
            &key.id,
            new_key("prefixbbbbbb"),
            grace,
            audit_meta(),
        )
        .await
        .expect("rotate");
    assert_eq!(next.rotated_from.as_deref(), Some(key.id.as_str()));
    let old = stores
        .api_keys
        .get_api_key(&scope(&a), &key.id)
        .await
        .expect("get")
        .expect("old");
    assert!(old.grace_until.is_some() && old.is_live(time::OffsetDateTime::now_utc()));
    let listed = stores
        .api_keys
        .list_api_keys(&scope(&a), &page)
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 2);
    // Revocation, idempotent; a revoked key is not rotated.
    stores
        .api_keys
        .revoke_api_key(&scope(&a), &key.id, audit_meta())
        .await
        .expect("revoke");
    stores
        .api_keys
        .revoke_api_key(&scope(&a), &key.id, audit_meta())
        .await
        .expect("again");
    let old = stores
        .api_keys
        .get_api_key(&scope(&a), &key.id)
        .await
        .expect("get")
        .expect("old");
    assert!(old.revoked_at.is_some() && !old.is_live(time::OffsetDateTime::now_utc()));
    assert_not_found(
        stores
            .api_keys
            .rotate_api_key(
                &scope(&a),
                &key.id,
                new_key("prefixcccccc"),
                grace,
                audit_meta(),
            )
            .await,
    );
    // Batched use: one call updates several keys, never moves a time back, ignores unknown ids.
    let system = palisade_authz::SystemScope::internal(palisade_authz::InternalRole::KeyUsage);
    let later = time::OffsetDateTime::from_unix_timestamp(2_000_000_000).expect("time");
    let earlier = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("time");
    let updated = stores
        .api_keys
        .record_api_key_uses(
            &system,
            &[
                (key.id.clone(), later),
                (next.id.clone(), earlier),
                ("no-such-key".to_owned(), later),
            ],
        )
        .await
        .expect("record uses");
    assert_eq!(updated, 2);
    stores
        .api_keys
        .record_api_key_uses(&system, &[(key.id.clone(), earlier)])
        .await
        .expect("record an older use");
    for (id, expected) in [(&key.id, later), (&next.id, earlier)] {
        let stored = stores
            .api_keys
            .get_api_key(&scope(&a), id)
            .await
            .expect("get")
            .expect("key");
        assert_eq!(stored.last_used_at, Some(expected));
    }
}
