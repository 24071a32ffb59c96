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

/// Concurrent creates (which the SQL stores write together, several per transaction): every one
/// is written with exactly one audit entry, chained without gaps in each tenant; a unique clash
/// among them fails only the clashing create, naming the field, and the others still land.
pub async fn concurrent_creates_each_land_once_with_their_own_audit_entry(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = scope(&child(stores, &root, "many-a", TenantKind::Tenant).await);
    let b = scope(&child(stores, &root, "many-b", TenantKind::Tenant).await);
    let r = &stores.records;
    let m = meta();
    let head_a = stores.audit.head(&a).await.expect("head a").seq;
    let head_b = stores.audit.head(&b).await.expect("head b").seq;
    let creates = (0..48).map(|i| {
        let (s, code) = if i % 3 == 2 {
            (&b, format!("b{i}"))
        } else {
            (&a, format!("a{i}"))
        };
        r.create_record(s, &m, new(json!({"code": code, "n": i})))
    });
    let created: Vec<_> = join_all(creates.collect())
        .await
        .into_iter()
        .map(|c| c.expect("every create lands"))
        .collect();
    let ids: std::collections::HashSet<&str> = created.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 48, "48 distinct records");
    for (s, n, head) in [(&a, 32, head_a), (&b, 16, head_b)] {
        let listed = r
            .list_records(s, "things", &RecordQuery::default(), &all())
            .await
            .expect("list");
        assert_eq!(listed.items.len(), n);
        let entries = stores
            .audit
            .list(
                s,
                &AuditFilter {
                    action: Some("things.create".to_owned()),
                    ..AuditFilter::default()
                },
                &AuditPageRequest {
                    limit: 1000,
                    after_seq: Some(head),
                },
            )
            .await
            .expect("audit")
            .items;
        let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        let expected: Vec<i64> = (head + 1..=head + i64::try_from(n).expect("small")).collect();
        assert_eq!(seqs, expected, "one entry per create, no gaps");
        let mut audited: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.record_id.as_deref())
            .collect();
        audited.sort_unstable();
        let mut listed_ids: Vec<&str> = listed.items.iter().map(|x| x.id.as_str()).collect();
        listed_ids.sort_unstable();
        assert_eq!(audited, listed_ids, "each record has its own entry");
        assert!(stores.audit.verify(s).await.expect("verify").valid);
    }
    // Three of twelve concurrent creates claim one unique value: one wins, two clash, nine land.
    let outcomes = join_all(
        (0..12)
            .map(|i| {
                let code = if i % 4 == 1 {
                    "same".to_owned()
                } else {
                    format!("c{i}")
                };
                r.create_record(&a, &m, new(json!({"code": code})))
            })
            .collect(),
    )
    .await;
    let mut clashes = 0;
    for o in &outcomes {
        match o {
            Ok(_) => {}
            Err(crate::StoreError::Conflict { constraint }) => {
                assert_eq!(constraint, "things.code");
                clashes += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(clashes, 2, "{outcomes:?}");
    let same = r
        .list_records(
            &a,
            "things",
            &RecordQuery {
                owner: None,
                filters: vec![RecordFilter {
                    field: "code".to_owned(),
                    op: FilterOp::Eq,
                    values: vec![IndexedValue::Text("same".to_owned())],
                }],
            },
            &all(),
        )
        .await
        .expect("filter");
    assert_eq!(same.items.len(), 1, "one record holds the unique value");
    assert_eq!(
        r.list_records(&a, "things", &RecordQuery::default(), &all())
            .await
            .expect("list")
            .items
            .len(),
        32 + 10
    );
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
        record_id: Some("1".into()),
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

/// Retention purges: records created before the cutoff go for good, soft-deleted ones too, with their
/// indexed values, unique claims and stored idempotent responses, one `<resource>.purge` entry with the
/// full snapshot each, in batches; newer records, other resources and other tenants stay.
pub async fn record_purges_remove_every_trace_and_are_audited(stores: &Stores) {
    let root = system_tenant(stores).await;
    let a = scope(&child(stores, &root, "purge-a", TenantKind::Tenant).await);
    let b = scope(&child(stores, &root, "purge-b", TenantKind::Tenant).await);
    let r = &stores.records;
    let mut old_ids = Vec::new();
    for i in 0..3 {
        let rec = r
            .create_record(&a, &meta(), new(json!({"code": format!("old{i}"), "n": i})))
            .await
            .expect("create old");
        old_ids.push(rec.id);
    }
    // One old record is soft-deleted: retention purges it too.
    r.delete_record(&a, &meta(), "things", &old_ids[2], None, 1)
        .await
        .expect("soft delete");
    // The create of an old record was idempotent: its stored response goes with it.
    assert_eq!(
        r.reserve_idempotency(&a, "user:u", "k-old", "h", time::Duration::days(1))
            .await
            .expect("reserve"),
        Reservation::Reserved
    );
    let stored = StoredResponse {
        status: 201,
        headers: Vec::new(),
        body: format!("{{\"id\":\"{}\"}}", old_ids[0]),
        record_id: Some(old_ids[0].clone()),
    };
    r.complete_idempotency(&a, "user:u", "k-old", &stored)
        .await
        .expect("complete");
    let mut other = new(json!({"code": "old-other", "n": 1}));
    other.resource = "others".to_owned();
    r.create_record(&a, &meta(), other)
        .await
        .expect("other resource");
    r.create_record(&b, &meta(), new(json!({"code": "old0", "n": 1})))
        .await
        .expect("other tenant");
    let cutoff = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1);
    wait_past(cutoff);
    let young = r
        .create_record(&a, &meta(), new(json!({"code": "young", "n": 9})))
        .await
        .expect("create young");
    let seq_before = stores.audit.head(&a).await.expect("head").seq;
    // Two per batch: the first batch is full, the second is not, the third finds nothing.
    let purge = AuditMeta::system("retention");
    assert_eq!(
        r.purge_records(&a, &purge, "things", cutoff, 2)
            .await
            .expect("purge 1"),
        2
    );
    assert_eq!(
        r.purge_records(&a, &purge, "things", cutoff, 2)
            .await
            .expect("purge 2"),
        1
    );
    assert_eq!(
        r.purge_records(&a, &purge, "things", cutoff, 2)
            .await
            .expect("purge 3"),
        0
    );
    assert_eq!(r.count_records(&a, "things", true).await.expect("count"), 1);
    assert_eq!(r.count_records(&a, "others", true).await.expect("count"), 1);
    assert_eq!(r.count_records(&b, "things", true).await.expect("count"), 1);
    assert!(
        r.get_record(&a, "things", &young.id, None)
            .await
            .expect("get")
            .is_some()
    );
    // The unique values are free again, the indexed values are gone.
    r.create_record(&a, &meta(), new(json!({"code": "old0", "n": 100})))
        .await
        .expect("unique value reclaimed");
    let by_n = RecordQuery {
        owner: None,
        filters: vec![RecordFilter {
            field: "n".to_owned(),
            op: FilterOp::Lt,
            values: vec![IndexedValue::Num(5.0)],
        }],
    };
    assert!(
        r.list_records(&a, "things", &by_n, &all())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    // The stored response of the purged record is gone: the key can be reserved afresh.
    assert_eq!(
        r.reserve_idempotency(&a, "user:u", "k-old", "h", time::Duration::days(1))
            .await
            .expect("reserve again"),
        Reservation::Reserved
    );
    // One purge entry per record, with the full snapshot, by the system actor.
    let entries = stores
        .audit
        .list(
            &a,
            &AuditFilter {
                action: Some("things.purge".to_owned()),
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
    assert_eq!(entries.len(), 3);
    let mut purged: Vec<String> = entries
        .iter()
        .map(|e| e.record_id.clone().unwrap_or_default())
        .collect();
    purged.sort();
    let mut expected = old_ids.clone();
    expected.sort();
    assert_eq!(purged, expected);
    for e in &entries {
        assert!(e.seq > seq_before);
        assert_eq!(e.actor, "system:retention");
        assert_eq!(e.resource, "things");
        assert!(e.new.is_none());
        let old = e.old.as_ref().expect("snapshot");
        assert_eq!(old["id"], json!(e.record_id));
        assert!(old["code"].as_str().is_some_and(|c| c.starts_with("old")));
    }
    assert!(stores.audit.verify(&a).await.expect("verify").valid);
}

/// Waits (without a runtime timer) until the wall clock has passed `t`.
fn wait_past(t: time::OffsetDateTime) {
    while time::OffsetDateTime::now_utc() <= t {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
