//! Conformance cases for the audit trail: an ordered, linked chain per tenant that verifies, holds
//! under concurrent appends (no gaps, no forks), is scoped to its tenant, filters and pages, and
//! survives retention through a signed checkpoint.

#![expect(
    clippy::indexing_slicing,
    reason = "test code: a short list is a failed case, and the panic names the line"
)]

use palisade_domain::TenantKind;
use serde_json::json;

use super::{bootstrap, child, join_all, scope, system_tenant};
use crate::Stores;
use crate::audit::{
    AuditCategory, AuditEvent, AuditFilter, AuditMeta, AuditPageRequest, GENESIS, RetentionPolicy,
};

fn meta(actor: &str) -> AuditMeta {
    AuditMeta {
        actor: actor.to_owned(),
        ip: Some("192.0.2.1".to_owned()),
        request_id: Some("req-1".to_owned()),
    }
}

fn event(action: &str, record: &str) -> AuditEvent {
    AuditEvent {
        action: action.to_owned(),
        resource: "thing".to_owned(),
        record_id: Some(record.to_owned()),
        old: Some(json!({"n": 1, "nested": {"b": 2, "a": [1.5, null]}})),
        new: Some(json!({"n": 2})),
    }
}

fn page(limit: u32, after_seq: Option<i64>) -> AuditPageRequest {
    AuditPageRequest { limit, after_seq }
}

/// Entries link to each other from the genesis, read back exactly as written, and verify.
pub async fn audit_chain_links_and_verifies(stores: &Stores) {
    let root = system_tenant(stores).await;
    let t = child(stores, &root, "audited", TenantKind::Tenant).await;
    let s = scope(&t);
    let empty = stores.audit.verify(&s).await.expect("verify empty");
    assert!(empty.valid);
    assert_eq!(empty.entries, 0);
    assert_eq!(empty.head, GENESIS);

    let mut written = Vec::new();
    for i in 0..3 {
        written.push(
            stores
                .audit
                .record(&s, &meta("user:a"), event("thing.update", &format!("r{i}")))
                .await
                .expect("record"),
        );
    }
    assert_eq!(written[0].prev_hash, GENESIS);
    assert_eq!(written[1].prev_hash, written[0].hash);
    assert_eq!(
        written.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let listed = stores
        .audit
        .list(&s, &AuditFilter::default(), &page(10, None))
        .await
        .expect("list");
    assert_eq!(
        listed.items, written,
        "entries read back exactly as written"
    );
    let report = stores.audit.verify(&s).await.expect("verify");
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries, 3);
    assert_eq!(report.head, written[2].hash);
    let head = stores.audit.head(&s).await.expect("head");
    assert_eq!((head.seq, head.hash), (3, written[2].hash.clone()));
}

/// Concurrent appends to one tenant's chain get distinct, consecutive sequence numbers and the chain
/// still verifies (no fork, no gap).
pub async fn concurrent_audit_appends_never_fork_the_chain(stores: &Stores) {
    let root = system_tenant(stores).await;
    let t = child(stores, &root, "busy", TenantKind::Tenant).await;
    let s = scope(&t);
    let m = meta("user:a");
    let results = join_all(
        (0..16)
            .map(|i| {
                stores
                    .audit
                    .record(&s, &m, event("thing.create", &format!("r{i}")))
            })
            .collect(),
    )
    .await;
    let mut seqs: Vec<i64> = results
        .into_iter()
        .map(|r| r.expect("concurrent append").seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=16).collect::<Vec<_>>());
    let report = stores.audit.verify(&s).await.expect("verify");
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries, 16);
}

/// SECURITY: each tenant has its own chain; a scope never lists another tenant's entries, not even
/// its child's.
pub async fn audit_chains_are_scoped_to_the_tenant(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "chain-a", TenantKind::Tenant).await;
    let b = child(stores, &a, "chain-b", TenantKind::Tenant).await;
    stores
        .audit
        .record(&scope(&b), &meta("user:b"), event("thing.create", "rb"))
        .await
        .expect("record b");
    // a's chain holds the creation of its child b (the acting tenant's chain), and its own entry.
    let a_entry = stores
        .audit
        .record(&scope(&a), &meta("user:a"), event("thing.create", "ra"))
        .await
        .expect("record a");
    assert_eq!(
        a_entry.seq, 2,
        "b's creation is a's first entry; b's own entries are not in a's chain"
    );
    let listed = stores
        .audit
        .list(&scope(&a), &AuditFilter::default(), &page(10, None))
        .await
        .expect("list a");
    assert_eq!(
        listed
            .items
            .iter()
            .map(|e| (e.action.as_str(), e.record_id.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("tenant.create", Some(b.id.to_string())),
            ("thing.create", Some("ra".to_owned()))
        ]
    );
    // Internal recording lands in the named tenant's chain.
    let sys = stores
        .audit
        .record_system(
            &bootstrap(),
            b.id,
            &AuditMeta::system("test"),
            event("auth.event", "x"),
        )
        .await
        .expect("record_system");
    assert_eq!((sys.tenant_id, sys.seq), (b.id, 2));
}

/// No mutation without its entry: creating, changing and deleting a user, a role and a tenant each
/// write exactly one entry in the acting tenant's chain, with the old and new values and the full
/// snapshot on delete.
pub async fn platform_mutations_write_exactly_one_entry_each(stores: &Stores) {
    use crate::{NewRole, NewUser, RolePatch, UserPatch};
    let root = system_tenant(stores).await;
    let t = child(stores, &root, "mutated", TenantKind::Tenant).await;
    let s = scope(&t);
    let m = meta("user:admin");
    let user = stores
        .users
        .create_user(
            &s,
            NewUser {
                email: "audited@example.com".to_owned(),
                phone: None,
                roles: vec!["member".to_owned()],
            },
            &m,
        )
        .await
        .expect("create user");
    stores
        .users
        .update_user(
            &s,
            user.id,
            UserPatch {
                roles: Some(vec!["viewer".to_owned()]),
                ..UserPatch::default()
            },
            &m,
        )
        .await
        .expect("update user");
    stores
        .roles
        .create_role(
            &s,
            NewRole {
                name: "auditor".to_owned(),
                inherits: vec![],
                capabilities: vec!["platform.user.read".to_owned()],
            },
            &m,
        )
        .await
        .expect("create role");
    stores
        .roles
        .update_role(
            &s,
            "auditor",
            RolePatch {
                inherits: None,
                capabilities: Some(vec![]),
            },
            &m,
        )
        .await
        .expect("update role");
    stores
        .roles
        .delete_role(&s, "auditor", &m)
        .await
        .expect("delete role");
    stores
        .tenants
        .rename_tenant(&s, t.id, "Renamed".to_owned(), &m)
        .await
        .expect("rename");
    stores
        .users
        .bump_token_version(&s, user.id, &m)
        .await
        .expect("logout all");
    stores
        .users
        .delete_user(&s, user.id, &m)
        .await
        .expect("delete user");
    // A refused mutation writes nothing.
    assert!(stores.users.delete_user(&s, user.id, &m).await.is_err());

    let entries = stores
        .audit
        .list(&s, &AuditFilter::default(), &page(100, None))
        .await
        .expect("list")
        .items;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "user.create",
            "user.update",
            "role.create",
            "role.update",
            "role.delete",
            "tenant.update",
            "user.logout_all",
            "user.delete"
        ]
    );
    assert!(entries.iter().all(|e| e.actor == "user:admin"
        && e.ip.as_deref() == Some("192.0.2.1")
        && e.request_id.as_deref() == Some("req-1")));
    let update = &entries[1];
    assert_eq!(
        update.old.as_ref().expect("old")["roles"],
        serde_json::json!(["member"])
    );
    assert_eq!(
        update.new.as_ref().expect("new")["roles"],
        serde_json::json!(["viewer"])
    );
    let deleted = &entries[7];
    assert_eq!(deleted.new, None);
    assert_eq!(
        deleted.old.as_ref().expect("snapshot")["email"],
        serde_json::json!("audited@example.com")
    );
    let renamed = &entries[5];
    assert_eq!(
        renamed.old.as_ref().expect("old")["name"],
        serde_json::json!("Tenant mutated")
    );
    assert_eq!(
        renamed.new.as_ref().expect("new")["name"],
        serde_json::json!("Renamed")
    );
    assert!(stores.audit.verify(&s).await.expect("verify").valid);
}

/// Filters combine with AND; pages continue after the last sequence number.
pub async fn audit_queries_filter_and_page(stores: &Stores) {
    let root = system_tenant(stores).await;
    let t = child(stores, &root, "queried", TenantKind::Tenant).await;
    let s = scope(&t);
    for i in 0..5 {
        let actor = if i % 2 == 0 { "user:even" } else { "user:odd" };
        stores
            .audit
            .record(&s, &meta(actor), event("thing.update", &format!("r{i}")))
            .await
            .expect("record");
    }
    let evens = AuditFilter {
        actor: Some("user:even".to_owned()),
        ..AuditFilter::default()
    };
    let first = stores
        .audit
        .list(&s, &evens, &page(2, None))
        .await
        .expect("page 1");
    assert_eq!(
        first.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 3]
    );
    let after: i64 = first
        .next_after
        .as_deref()
        .expect("more follow")
        .parse()
        .expect("a sequence number");
    let second = stores
        .audit
        .list(&s, &evens, &page(2, Some(after)))
        .await
        .expect("page 2");
    assert_eq!(
        second.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(second.next_after, None);
    let one = AuditFilter {
        record_id: Some("r3".to_owned()),
        action: Some("thing.update".to_owned()),
        resource: Some("thing".to_owned()),
        ..AuditFilter::default()
    };
    let found = stores
        .audit
        .list(&s, &one, &page(10, None))
        .await
        .expect("by record");
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].seq, 4);
    let future = AuditFilter {
        since: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        ..AuditFilter::default()
    };
    assert!(
        stores
            .audit
            .list(&s, &future, &page(10, None))
            .await
            .expect("since")
            .items
            .is_empty()
    );
}

/// Retention removes a prefix of the chain and leaves a signed checkpoint from which the rest, and
/// later appends, still verify.
pub async fn audit_retention_keeps_the_chain_verifiable(stores: &Stores) {
    let root = system_tenant(stores).await;
    let t = child(stores, &root, "retained", TenantKind::Tenant).await;
    let s = scope(&t);
    for i in 0..4 {
        stores
            .audit
            .record(&s, &meta("user:a"), event("thing.update", &format!("r{i}")))
            .await
            .expect("record");
    }
    let signed = std::sync::Mutex::new(Vec::new());
    let sign = |text: &str| {
        signed.lock().expect("lock").push(text.to_owned());
        "sig".to_owned()
    };
    // Every entry is two days old as of this policy's "now", and every category keeps one day.
    let later = RetentionPolicy::new(
        time::OffsetDateTime::now_utc() + time::Duration::days(2),
        1,
        [],
    );
    let pruned = stores
        .audit
        .prune(&bootstrap(), t.id, &later, &sign)
        .await
        .expect("prune");
    assert_eq!(pruned, 4);
    let head = stores.audit.head(&s).await.expect("head");
    let checkpoint = head.checkpoint.clone().expect("a checkpoint");
    assert_eq!((checkpoint.seq, checkpoint.signature.as_str()), (4, "sig"));
    assert_eq!(checkpoint.hash, head.hash);
    assert_eq!(signed.lock().expect("lock").len(), 1);
    assert!(signed.lock().expect("lock")[0].contains(&checkpoint.hash));
    // Nothing more to prune: no second checkpoint, no signature.
    assert_eq!(
        stores
            .audit
            .prune(&bootstrap(), t.id, &later, &sign)
            .await
            .expect("prune again"),
        0
    );
    let next = stores
        .audit
        .record(&s, &meta("user:a"), event("thing.update", "r4"))
        .await
        .expect("record after pruning");
    assert_eq!(
        (next.seq, next.prev_hash.as_str()),
        (5, checkpoint.hash.as_str())
    );
    let report = stores.audit.verify(&s).await.expect("verify");
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries, 1);
    // Entries younger than their retention are not pruned.
    let today = RetentionPolicy::new(time::OffsetDateTime::now_utc(), 1, []);
    assert_eq!(
        stores
            .audit
            .prune(&bootstrap(), t.id, &today, &sign)
            .await
            .expect("prune none"),
        0
    );
}

/// Retention per category: an entry is pruned only past its own category's retention, the longest
/// prunable prefix goes, and a longer-retained (or unknown) entry stops pruning there; the checkpoint
/// is signed and the rest of the chain still verifies.
pub async fn audit_retention_per_category_prunes_only_the_prunable_prefix(stores: &Stores) {
    let root = system_tenant(stores).await;
    let t = child(stores, &root, "categories", TenantKind::Tenant).await;
    let s = scope(&t);
    let other = child(stores, &root, "bystander", TenantKind::Tenant).await;
    let entry = |action: &str, resource: &str| AuditEvent {
        action: action.to_owned(),
        resource: resource.to_owned(),
        record_id: None,
        old: None,
        new: None,
    };
    for (action, resource) in [
        ("user.update", "user"),                   // platform
        ("customers.create", "customers"),         // records
        ("auth.refresh_reused", "refresh_family"), // security: kept longer
        ("customers.purge", "customers"),          // records
        ("future.thing", "future"),                // unknown: kept like the longest
        ("role.create", "role"),                   // platform
    ] {
        stores
            .audit
            .record(&s, &meta("user:a"), entry(action, resource))
            .await
            .expect("record");
    }
    stores
        .audit
        .record(
            &scope(&other),
            &meta("user:b"),
            entry("user.update", "user"),
        )
        .await
        .expect("record other tenant");
    let sign = |text: &str| format!("sig:{}", text.len());
    let now = time::OffsetDateTime::now_utc();
    let policy = |days_later: i64| {
        RetentionPolicy::new(
            now + time::Duration::days(days_later),
            5,
            [(AuditCategory::Security, 30)],
        )
    };
    // Ten days on: the platform and records entries are past 5 days; the security entry is not.
    assert_eq!(
        stores
            .audit
            .prune(&bootstrap(), t.id, &policy(10), &sign)
            .await
            .expect("prune"),
        2
    );
    let head = stores.audit.head(&s).await.expect("head");
    let checkpoint = head.checkpoint.expect("checkpoint");
    assert_eq!(checkpoint.seq, 2);
    assert!(checkpoint.signature.starts_with("sig:"));
    let left = stores
        .audit
        .list(&s, &AuditFilter::default(), &page(100, None))
        .await
        .expect("list")
        .items;
    assert_eq!(
        left.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        [
            "auth.refresh_reused",
            "customers.purge",
            "future.thing",
            "role.create"
        ]
    );
    assert_eq!(left[0].prev_hash, checkpoint.hash);
    let report = stores.audit.verify(&s).await.expect("verify");
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries, 4);
    // Forty days on: the security entry goes too, and the unknown action (kept like the longest
    // category, 30 days) as well.
    assert_eq!(
        stores
            .audit
            .prune(&bootstrap(), t.id, &policy(40), &sign)
            .await
            .expect("prune later"),
        4
    );
    let report = stores.audit.verify(&s).await.expect("verify after");
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries, 0);
    // Keeping one category forever keeps it (and everything after it) forever.
    let t2 = child(stores, &root, "forever", TenantKind::Tenant).await;
    for (action, resource) in [("customers.create", "customers"), ("user.update", "user")] {
        stores
            .audit
            .record(&scope(&t2), &meta("user:a"), entry(action, resource))
            .await
            .expect("record");
    }
    let keep_records = RetentionPolicy::new(
        now + time::Duration::days(1000),
        5,
        [(AuditCategory::Records, 0)],
    );
    assert_eq!(
        stores
            .audit
            .prune(&bootstrap(), t2.id, &keep_records, &sign)
            .await
            .expect("prune none"),
        0
    );
    // The other tenant's chain was not touched by any of it.
    let bystander = stores.audit.verify(&scope(&other)).await.expect("verify");
    assert!(bystander.valid && bystander.entries == 1, "{bystander:?}");
}
