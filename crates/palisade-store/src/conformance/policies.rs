//! Conformance cases for tenant policy documents: scoping, fresh etags and versions, `If-Match`
//! preconditions, and one audit entry with the old and new text per change.

use palisade_domain::TenantKind;
use serde_json::json;

use super::{assert_conflict, assert_not_found, audit_meta, child, scope, system_tenant};
use crate::audit::{AuditFilter, AuditPageRequest};
use crate::{POLICY_ETAG_MISMATCH, Stores};

/// SECURITY: tenant A's document is invisible to and untouched by tenant B (even B's parent), every
/// write has a fresh etag, a stale `If-Match` changes nothing, and each change is audited with the old
/// and the new text.
pub async fn tenant_policies_are_scoped_versioned_and_audited(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "policies-a", TenantKind::Tenant).await;
    let b = child(stores, &a, "policies-b", TenantKind::Tenant).await;
    let (s_a, s_b) = (scope(&a), scope(&b));
    let p = &stores.policies;

    assert_eq!(p.get_policy(&s_b).await.expect("get"), None);
    assert_eq!(p.policy_etag(&s_b).await.expect("etag"), None);
    assert_not_found(p.delete_policy(&s_b, None, audit_meta()).await);
    // If-Match on a missing document fails the precondition.
    assert_conflict(
        p.put_policy(&s_b, "x".to_owned(), Some("nope"), audit_meta())
            .await,
        POLICY_ETAG_MISMATCH,
    );

    let first = p
        .put_policy(&s_b, "forbid-1".to_owned(), None, audit_meta())
        .await
        .expect("put");
    assert_eq!(first.tenant_id, b.id);
    assert_eq!(first.version, 1);
    assert_eq!(first.policies, "forbid-1");
    assert_eq!(first.updated_by, audit_meta().actor);
    assert_eq!(p.get_policy(&s_b).await.expect("get"), Some(first.clone()));
    assert_eq!(
        p.policy_etag(&s_b).await.expect("etag"),
        Some(first.etag.clone())
    );

    // Another tenant, the parent included, sees nothing and changes nothing.
    for foreign in [&s_a, &scope(&root)] {
        assert_eq!(p.get_policy(foreign).await.expect("get"), None);
        assert_eq!(p.policy_etag(foreign).await.expect("etag"), None);
        assert_not_found(p.delete_policy(foreign, None, audit_meta()).await);
    }

    // A stale If-Match changes nothing; the current one replaces, with a new etag and version.
    assert_conflict(
        p.put_policy(&s_b, "other".to_owned(), Some("stale"), audit_meta())
            .await,
        POLICY_ETAG_MISMATCH,
    );
    let second = p
        .put_policy(&s_b, "forbid-2".to_owned(), Some(&first.etag), audit_meta())
        .await
        .expect("replace");
    assert_eq!(second.version, 2);
    assert_ne!(second.etag, first.etag);
    assert_eq!(
        p.get_policy(&s_b).await.expect("get").map(|d| d.policies),
        Some("forbid-2".to_owned())
    );
    assert_conflict(
        p.delete_policy(&s_b, Some(&first.etag), audit_meta()).await,
        POLICY_ETAG_MISMATCH,
    );
    p.delete_policy(&s_b, Some(&second.etag), audit_meta())
        .await
        .expect("delete");
    assert_eq!(p.get_policy(&s_b).await.expect("get"), None);

    // After a delete, a new document never reuses an etag.
    let third = p
        .put_policy(&s_b, "forbid-3".to_owned(), None, audit_meta())
        .await
        .expect("put again");
    assert!(third.etag != first.etag && third.etag != second.etag);

    // One audit entry per change, with the old and the new text; nothing for refused writes.
    let entries = stores
        .audit
        .list(
            &s_b,
            &AuditFilter {
                resource: Some("policy".to_owned()),
                ..AuditFilter::default()
            },
            &AuditPageRequest {
                limit: 100,
                after_seq: None,
            },
        )
        .await
        .expect("audit")
        .items;
    let summary: Vec<_> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.old.clone(), e.new.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "policy.update",
                None,
                Some(json!({"policies": "forbid-1", "version": 1}))
            ),
            (
                "policy.update",
                Some(json!({"policies": "forbid-1", "version": 1})),
                Some(json!({"policies": "forbid-2", "version": 2}))
            ),
            (
                "policy.delete",
                Some(json!({"policies": "forbid-2", "version": 2})),
                None
            ),
            (
                "policy.update",
                None,
                Some(json!({"policies": "forbid-3", "version": 1}))
            ),
        ]
    );
    assert!(stores.audit.verify(&s_b).await.expect("verify").valid);
}
