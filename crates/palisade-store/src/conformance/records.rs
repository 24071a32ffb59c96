//! Conformance cases for records of declared resources: tenant scoping, optimistic versions with
//! exactly one winner, unique claims per tenant, indexed filters, soft delete and restore, one audit
//! entry per mutation, and idempotency reservations with one winner.

#![expect(
    clippy::indexing_slicing,
    reason = "test code: a short list is a failed case, and the panic names the line"
)]

use palisade_domain::TenantKind;
use serde_json::{Map, Value, json};

use super::{assert_conflict, assert_not_found, child, join_all, join2, scope, system_tenant};
use crate::audit::{AuditFilter, AuditMeta, AuditPageRequest};
use crate::records::{
    FilterOp, IndexedValue, NewRecord, RECORD_VERSION, RecordFilter, RecordKeys, RecordQuery,
    Reservation, StoredResponse,
};
use crate::{PageRequest, Stores};

fn meta() -> AuditMeta {
    AuditMeta {
        actor: "user:conformance".to_owned(),
        ip: None,
        request_id: None,
    }
}

fn data(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The keys a `things` declaration would derive: `code` unique, `n` and `code` filterable.
fn keys(d: &Map<String, Value>) -> RecordKeys {
    let mut k = RecordKeys::default();
    if let Some(Value::String(code)) = d.get("code") {
        k.unique.push(("code".to_owned(), code.clone()));
        k.indexed
            .push(("code".to_owned(), IndexedValue::Text(code.clone())));
    }
    if let Some(n) = d.get("n").and_then(Value::as_f64) {
        k.indexed.push(("n".to_owned(), IndexedValue::Num(n)));
    }
    k
}

fn new(v: Value) -> NewRecord {
    let d = data(v);
    NewRecord {
        resource: "things".to_owned(),
        owner_id: "user:conformance".to_owned(),
        keys: keys(&d),
        data: d,
    }
}

fn all() -> PageRequest {
    PageRequest {
        limit: 200,
        after: None,
    }
}

/// Scoping, versions, unique claims, filters, soft delete, restore, and one audit entry per change.
pub async fn records_are_scoped_versioned_and_audited(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = scope(&child(stores, &root, "rec-a", TenantKind::Tenant).await);
    let b = scope(&child(stores, &root, "rec-b", TenantKind::Tenant).await);
    let r = &stores.records;
    let one = r
        .create_record(&a, &meta(), new(json!({"code": "x1", "n": 1})))
        .await
        .expect("create");
    assert_eq!(one.version, 1);
    r.create_record(&a, &meta(), new(json!({"code": "x2", "n": 5})))
        .await
        .expect("create 2");
    // The same unique value in another tenant is fine; in the same tenant it clashes.
    r.create_record(&b, &meta(), new(json!({"code": "x1"})))
        .await
        .expect("other tenant");
    assert_conflict(
        r.create_record(&a, &meta(), new(json!({"code": "x1"})))
            .await,
        "things.code",
    );
    assert!(
        r.get_record(&b, "things", &one.id, None)
            .await
            .expect("get")
            .is_none(),
        "invisible from another tenant"
    );
    assert!(
        r.get_record(&a, "things", &one.id, Some("user:else"))
            .await
            .expect("get")
            .is_none(),
        "invisible to another owner"
    );
    let got = r
        .get_record(&a, "things", &one.id, None)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got, one, "reads back exactly as written");

    // Filters.
    let q = |filters| RecordQuery {
        owner: None,
        filters,
    };
    let gt = r
        .list_records(
            &a,
            "things",
            &q(vec![RecordFilter {
                field: "n".into(),
                op: FilterOp::Gt,
                values: vec![IndexedValue::Num(2.0)],
            }]),
            &all(),
        )
        .await
        .expect("list");
    assert_eq!(gt.items.len(), 1);
    assert_eq!(gt.items[0].data["code"], "x2");
    let within = r
        .list_records(
            &a,
            "things",
            &q(vec![RecordFilter {
                field: "code".into(),
                op: FilterOp::In,
                values: vec![
                    IndexedValue::Text("x1".into()),
                    IndexedValue::Text("zz".into()),
                ],
            }]),
            &all(),
        )
        .await
        .expect("list");
    assert_eq!(within.items.len(), 1);

    // Versions: stale refused, and of two writers at one version exactly one wins.
    let d = data(json!({"code": "x1", "n": 2}));
    assert_conflict(
        r.update_record(&a, &meta(), "things", &one.id, None, 7, d.clone(), keys(&d))
            .await,
        RECORD_VERSION,
    );
    let (da, db) = (
        data(json!({"code": "x1", "n": 10})),
        data(json!({"code": "x1", "n": 20})),
    );
    let (ra, rb) = join2(
        r.update_record(
            &a,
            &meta(),
            "things",
            &one.id,
            None,
            1,
            da.clone(),
            keys(&da),
        ),
        r.update_record(
            &a,
            &meta(),
            "things",
            &one.id,
            None,
            1,
            db.clone(),
            keys(&db),
        ),
    )
    .await;
    assert_eq!(
        usize::from(ra.is_ok()) + usize::from(rb.is_ok()),
        1,
        "exactly one winner: {ra:?} {rb:?}"
    );
    assert_not_found(
        r.update_record(&b, &meta(), "things", &one.id, None, 2, d.clone(), keys(&d))
            .await,
    );
    // A unique value can move to the record that frees it.
    let renamed = data(json!({"code": "x3"}));
    let moved = r
        .update_record(
            &a,
            &meta(),
            "things",
            &one.id,
            None,
            2,
            renamed.clone(),
            keys(&renamed),
        )
        .await
        .expect("rename");
    r.create_record(&a, &meta(), new(json!({"code": "x1"})))
        .await
        .expect("x1 is free again");

    // Soft delete and restore.
    assert_not_found(
        r.delete_record(&b, &meta(), "things", &one.id, None, 3)
            .await,
    );
    r.delete_record(&a, &meta(), "things", &one.id, None, moved.version)
        .await
        .expect("delete");
    assert!(
        r.get_record(&a, "things", &one.id, None)
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        r.count_records(&a, "things", false).await.expect("count"),
        2
    );
    assert_eq!(r.count_records(&a, "things", true).await.expect("count"), 3);
    let restored = r
        .restore_record(&a, &meta(), "things", &one.id, None, &keys)
        .await
        .expect("restore");
    assert_eq!(restored.version, moved.version + 2);
    assert_not_found(
        r.restore_record(&a, &meta(), "things", &one.id, None, &keys)
            .await,
    );

    // One audit entry per committed mutation: 4 creates + 1 winning update + rename + delete + restore.
    let entries = stores
        .audit
        .list(
            &a,
            &AuditFilter {
                resource: Some("things".into()),
                ..AuditFilter::default()
            },
            &AuditPageRequest {
                limit: 100,
                after_seq: None,
            },
        )
        .await
        .expect("audit");
    let actions: Vec<&str> = entries.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "things.create",
            "things.create",
            "things.update",
            "things.update",
            "things.create",
            "things.delete",
            "things.restore"
        ]
    );
    let delete = &entries.items[5];
    assert_eq!(delete.old.as_ref().expect("snapshot")["code"], "x3");
    assert!(delete.new.is_none());
    assert!(stores.audit.verify(&a).await.expect("verify").valid);
}

/// Concurrent reservations of one key: exactly one reserves; the rest wait, replay, or are refused.
pub async fn idempotency_reservations_have_one_winner(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = scope(&child(stores, &root, "idem-a", TenantKind::Tenant).await);
    let b = scope(&child(stores, &root, "idem-b", TenantKind::Tenant).await);
    let r = &stores.records;
    let day = time::Duration::hours(24);
    let outcomes = join_all(
        (0..6)
            .map(|_| r.reserve_idempotency(&a, "user:u", "k", "h1", day))
            .collect(),
    )
    .await;
    let reserved = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Reservation::Reserved)))
        .count();
    assert_eq!(reserved, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(Reservation::Reserved | Reservation::InProgress))),
        "{outcomes:?}"
    );
    let stored = StoredResponse {
        status: 201,
        headers: vec![("location".into(), "/v1/things/1".into())],
        body: "{\"id\":\"1\"}".into(),
    };
    r.complete_idempotency(&a, "user:u", "k", &stored)
        .await
        .expect("complete");
    assert_eq!(
        r.reserve_idempotency(&a, "user:u", "k", "h1", day)
            .await
            .expect("replay"),
        Reservation::Replay(stored)
    );
    assert_eq!(
        r.reserve_idempotency(&a, "user:u", "k", "h2", day)
            .await
            .expect("reuse"),
        Reservation::KeyReused
    );
    // Keys are per tenant and principal; released keys and expired keys can be reserved again.
    for (s, p) in [(&b, "user:u"), (&a, "user:v")] {
        assert_eq!(
            r.reserve_idempotency(s, p, "k", "h2", day)
                .await
                .expect("other"),
            Reservation::Reserved
        );
    }
    r.release_idempotency(&a, "user:v", "k")
        .await
        .expect("release");
    assert_eq!(
        r.reserve_idempotency(&a, "user:v", "k", "h3", day)
            .await
            .expect("again"),
        Reservation::Reserved
    );
    assert_eq!(
        r.reserve_idempotency(&a, "user:u", "k", "h9", time::Duration::ZERO)
            .await
            .expect("expired"),
        Reservation::Reserved
    );
}
