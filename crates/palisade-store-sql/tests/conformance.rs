//! Runs the conformance suite on SQLite (always, a fresh temporary file per case) and on PostgreSQL
//! (a fresh schema per case in the database at `TEST_DATABASE_URL`), plus the backend-level checks
//! the suite cannot express through the traits.
//!
//! When `TEST_DATABASE_URL` is unset the PostgreSQL tests print a note and pass, except when `CI` is
//! `true`: then they fail, so a CI job can never skip PostgreSQL silently.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failed setup step aborts the test"
)]

use palisade_authz::{InternalRole, SystemScope};
use palisade_domain::{Slug, TenantKind};
use palisade_store::conformance::Case;
use palisade_store::{NewTenant, StoreError, Stores};
use palisade_store_sql::{Backend, ConnectOptions, connect, create_test_schema, drop_test_schema};

/// The PostgreSQL admin URL, or `None` (with a note) when PostgreSQL tests should be skipped.
fn pg_admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "TEST_DATABASE_URL must be set when CI=true: PostgreSQL tests may not be skipped in CI"
            );
            eprintln!("note: TEST_DATABASE_URL is unset; skipping a PostgreSQL test");
            None
        }
    }
}

/// A fresh, migrated SQLite database in a temporary directory (removed when the guard drops).
async fn sqlite_backend() -> (Backend, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/palisade.db", dir.path().display());
    let backend = connect(&url, &ConnectOptions::default()).await.unwrap();
    backend.migrate().await.unwrap();
    (backend, dir)
}

/// A fresh, migrated PostgreSQL schema; returns the backend and the schema to drop afterwards.
async fn pg_backend(admin_url: &str) -> (Backend, String) {
    let schema = create_test_schema(admin_url).await.unwrap();
    let opts = ConnectOptions {
        max_connections: 4,
        pg_schema: Some(schema.clone()),
        ..ConnectOptions::default()
    };
    let backend = match connect(admin_url, &opts).await {
        Ok(backend) => backend,
        Err(e) => {
            drop_test_schema(admin_url, &schema).await;
            panic!("connect to the test schema: {e:?}");
        }
    };
    if let Err(e) = backend.migrate().await {
        backend.close().await;
        drop_test_schema(admin_url, &schema).await;
        panic!("migrate the test schema: {e:?}");
    }
    (backend, schema)
}

/// The system tenant `root`, freshly created, and a scope on it.
async fn root_scope(stores: &Stores) -> palisade_authz::TenantScope {
    let system = SystemScope::internal(InternalRole::Bootstrap);
    let root = stores
        .tenants
        .create_system_tenant(
            &system,
            Slug::parse("root").unwrap(),
            "Root".to_owned(),
            &audit_meta(),
        )
        .await
        .unwrap();
    system.tenant_scope(root.to_ref())
}

/// Runs a case on its own task so that a failing assertion still lets the caller clean up.
async fn run_isolated(case: Case, stores: Stores) -> Result<(), tokio::task::JoinError> {
    tokio::spawn((case.run)(stores)).await
}

fn rethrow(outcome: Result<(), tokio::task::JoinError>) {
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("case did not finish: {e}"),
        }
    }
}

async fn run_on_sqlite(case: Case) {
    let (backend, _dir) = sqlite_backend().await;
    let outcome = run_isolated(case, backend.stores()).await;
    backend.close().await;
    rethrow(outcome);
}

async fn run_on_postgres(case: Case) {
    let Some(admin_url) = pg_admin_url() else {
        return;
    };
    let (backend, schema) = pg_backend(&admin_url).await;
    let outcome = run_isolated(case, backend.stores()).await;
    backend.close().await;
    drop_test_schema(&admin_url, &schema).await;
    rethrow(outcome);
}

mod sqlite {
    palisade_store::conformance_tests!(super::run_on_sqlite);
}

mod postgres {
    palisade_store::conformance_tests!(super::run_on_postgres);
}

/// The same duplicate slug, on each backend: the Conflict it yields.
async fn duplicate_slug_conflict(stores: &Stores) -> StoreError {
    let scope = root_scope(stores).await;
    let new = NewTenant {
        slug: Slug::parse("dup").unwrap(),
        name: "Duplicate".to_owned(),
        kind: TenantKind::Tenant,
        allowed_ips: Vec::new(),
    };
    stores
        .tenants
        .create_child_tenant(&scope, new.clone(), &audit_meta())
        .await
        .unwrap();
    stores
        .tenants
        .create_child_tenant(&scope, new, &audit_meta())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn the_same_unique_violation_is_the_same_conflict_on_both_backends() {
    let (sqlite, _dir) = sqlite_backend().await;
    let on_sqlite = duplicate_slug_conflict(&sqlite.stores()).await;
    assert!(
        matches!(&on_sqlite, StoreError::Conflict { constraint } if constraint == "tenants.slug"),
        "{on_sqlite:?}"
    );
    let Some(admin_url) = pg_admin_url() else {
        return;
    };
    let (pg, schema) = pg_backend(&admin_url).await;
    let outcome = tokio::spawn(async move { duplicate_slug_conflict(&pg.stores()).await }).await;
    drop_test_schema(&admin_url, &schema).await;
    let on_pg = outcome.unwrap();
    assert_eq!(format!("{on_pg:?}"), format!("{on_sqlite:?}"));
}

#[tokio::test]
async fn migrations_are_idempotent_on_both_backends() {
    let (sqlite, _dir) = sqlite_backend().await;
    sqlite.migrate().await.unwrap();
    assert_eq!(sqlite.name(), "sqlite");
    assert_eq!(sqlite.stores().health.backend(), "sqlite");
    let Some(admin_url) = pg_admin_url() else {
        return;
    };
    let (pg, schema) = pg_backend(&admin_url).await;
    let again = pg.migrate().await;
    let (name, health_name) = (pg.name(), pg.stores().health.backend());
    pg.close().await;
    drop_test_schema(&admin_url, &schema).await;
    again.unwrap();
    assert_eq!((name, health_name), ("postgres", "postgres"));
}

#[tokio::test]
async fn unknown_url_schemes_are_refused_without_echoing_the_url() {
    for url in ["mysql://root:hunter2@db/x", "hunter2", "", "http://x"] {
        let err = connect(url, &ConnectOptions::default()).await.unwrap_err();
        let chain = format!(
            "{err:?} {}",
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(matches!(err, StoreError::Internal(_)), "{url}: {err:?}");
        assert!(
            chain.contains("expected sqlite:// or postgres://"),
            "{chain}"
        );
        assert!(
            !chain.contains("hunter2"),
            "the URL leaked into the error: {chain}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_and_its_password_is_not_echoed() {
    let opts = ConnectOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..ConnectOptions::default()
    };
    let err = connect("postgres://palisade:hunter2@127.0.0.1:1/palisade", &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_closed_pool_is_unavailable() {
    let (sqlite, _dir) = sqlite_backend().await;
    let stores = sqlite.stores();
    sqlite.close().await;
    let err = stores.health.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn schema_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_with_schema = ConnectOptions {
        pg_schema: Some("t_x".to_owned()),
        ..ConnectOptions::default()
    };
    let url = format!("sqlite://{}/palisade.db", dir.path().display());
    assert!(
        connect(&url, &sqlite_with_schema).await.is_err(),
        "a PG schema is refused for SQLite"
    );

    let injected = ConnectOptions {
        pg_schema: Some("public,pg_catalog".to_owned()),
        ..ConnectOptions::default()
    };
    let err = connect("postgres://postgres@127.0.0.1:1/x", &injected)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Internal(_)),
        "checked before connecting: {err:?}"
    );
}

/// Tamper detection through the database itself: the append-only triggers refuse updates and
/// deletes; an attacker who drops them can alter, delete or reorder rows, and verification names the
/// first sequence number that no longer holds.
async fn audit_tampering_is_refused_then_detected(backend: &Backend) {
    use palisade_store::audit::{AuditEvent, AuditMeta};
    let stores = backend.stores();
    let scope = root_scope(&stores).await;
    let base = stores.audit.head(&scope).await.unwrap().seq;
    for i in 0..5 {
        stores
            .audit
            .record(
                &scope,
                &AuditMeta::system("test"),
                AuditEvent {
                    action: "thing.update".into(),
                    resource: "thing".into(),
                    record_id: Some(format!("r{i}")),
                    old: None,
                    new: Some(serde_json::json!({ "amount": i })),
                },
            )
            .await
            .unwrap();
    }
    let verify = || async { stores.audit.verify(&scope).await.unwrap() };
    assert!(verify().await.valid);
    let tid = scope.tenant_id();
    let raw = |sql: String| async move { backend.execute_raw_for_tests(&sql).await };

    // The database refuses both, whatever the store API does.
    assert!(
        raw(format!(
            "UPDATE audit_log SET actor = 'user:evil' WHERE tenant_id = '{tid}' AND seq = {}",
            base + 3
        ))
        .await
        .is_err(),
        "an update must be refused by the append-only trigger"
    );
    assert!(
        raw(format!(
            "DELETE FROM audit_log WHERE tenant_id = '{tid}' AND seq = {}",
            base + 2
        ))
        .await
        .is_err(),
        "a delete above the checkpoint must be refused"
    );
    assert!(verify().await.valid);

    // An attacker with DDL rights drops the triggers and changes one value.
    raw("DROP TRIGGER audit_log_no_update".into()).await.ok();
    raw("DROP TRIGGER audit_log_no_update ON audit_log".into())
        .await
        .ok();
    raw("DROP TRIGGER audit_log_delete_only_pruned".into())
        .await
        .ok();
    raw("DROP TRIGGER audit_log_delete_only_pruned ON audit_log".into())
        .await
        .ok();
    raw(format!(
        "UPDATE audit_log SET new = '{{\"amount\":1000}}' WHERE tenant_id = '{tid}' AND seq = {}",
        base + 3
    ))
    .await
    .unwrap();
    let report = verify().await;
    assert!(!report.valid);
    assert_eq!(report.first_invalid_seq, Some(base + 3));
    // Put it back: valid again (the chain, not the triggers, is the evidence).
    raw(format!(
        "UPDATE audit_log SET new = '{{\"amount\":2}}' WHERE tenant_id = '{tid}' AND seq = {}",
        base + 3
    ))
    .await
    .unwrap();
    assert!(verify().await.valid);

    // Reorder: swap two entries' sequence numbers.
    let swap = |a: i64, b: i64| async move {
        for (from, to) in [(a, -1), (b, a), (-1, b)] {
            raw(format!(
                "UPDATE audit_log SET seq = {to} WHERE tenant_id = '{tid}' AND seq = {from}"
            ))
            .await
            .unwrap();
        }
    };
    swap(base + 2, base + 4).await;
    assert_eq!(verify().await.first_invalid_seq, Some(base + 2));
    swap(base + 2, base + 4).await;
    assert!(verify().await.valid);

    // Delete one entry: the gap is named.
    raw(format!(
        "DELETE FROM audit_log WHERE tenant_id = '{tid}' AND seq = {}",
        base + 2
    ))
    .await
    .unwrap();
    assert_eq!(verify().await.first_invalid_seq, Some(base + 2));

    // Cut off the tail: the head disagrees.
    raw(format!(
        "DELETE FROM audit_log WHERE tenant_id = '{tid}' AND seq >= {}",
        base + 2
    ))
    .await
    .unwrap();
    assert_eq!(verify().await.first_invalid_seq, Some(base + 2));
}

#[tokio::test]
async fn sqlite_audit_tampering_is_refused_then_detected() {
    let (backend, _dir) = sqlite_backend().await;
    audit_tampering_is_refused_then_detected(&backend).await;
    backend.close().await;
}

#[tokio::test]
async fn postgres_audit_tampering_is_refused_then_detected() {
    let Some(admin_url) = pg_admin_url() else {
        return;
    };
    let (backend, schema) = pg_backend(&admin_url).await;
    let outcome = tokio::spawn({
        let backend = backend.clone();
        async move { audit_tampering_is_refused_then_detected(&backend).await }
    })
    .await;
    backend.close().await;
    drop_test_schema(&admin_url, &schema).await;
    rethrow(outcome);
}

fn audit_meta() -> palisade_store::AuditMeta {
    palisade_store::AuditMeta::system("conformance")
}

/// A failing audit append rolls the record mutation back: nothing of the create, update or delete
/// survives (records, unique claims, indexed values), on both backends. The failure is injected with a
/// trigger that refuses every insert into `audit_log`.
async fn a_failing_audit_append_rolls_the_record_back(
    backend: &Backend,
    refuse: &[&str],
    allow: &[&str],
) {
    use palisade_store::audit::AuditMeta;
    use palisade_store::{IndexedValue, NewRecord, RecordKeys};
    let stores = backend.stores();
    let scope = root_scope(&stores).await;
    let meta = AuditMeta::system("test");
    let new = |code: &str| {
        let data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({ "code": code })).unwrap();
        NewRecord {
            resource: "things".into(),
            owner_id: "user:t".into(),
            keys: RecordKeys {
                unique: vec![("code".into(), code.into())],
                indexed: vec![("code".into(), IndexedValue::Text(code.into()))],
            },
            data,
        }
    };
    let kept = stores
        .records
        .create_record(&scope, &meta, new("a"))
        .await
        .unwrap();
    for sql in refuse {
        backend.execute_raw_for_tests(sql).await.unwrap();
    }
    assert!(
        stores
            .records
            .create_record(&scope, &meta, new("b"))
            .await
            .is_err()
    );
    // Concurrent creates are written together: the failing batch is rolled back whole, and each
    // create, retried alone, fails too.
    let together: Vec<_> = (0..8)
        .map(|i| {
            let stores = stores.clone();
            let (scope, meta, new) = (scope.clone(), meta.clone(), new(&format!("t{i}")));
            tokio::spawn(async move { stores.records.create_record(&scope, &meta, new).await })
        })
        .collect();
    for create in together {
        assert!(create.await.unwrap().is_err());
    }
    let changed = new("c");
    assert!(
        stores
            .records
            .update_record(
                &scope,
                &meta,
                "things",
                &kept.id,
                None,
                1,
                changed.data,
                changed.keys
            )
            .await
            .is_err()
    );
    assert!(
        stores
            .records
            .delete_record(&scope, &meta, "things", &kept.id, None, 1)
            .await
            .is_err()
    );
    assert_eq!(
        stores
            .records
            .count_records(&scope, "things", true)
            .await
            .unwrap(),
        1
    );
    let still = stores
        .records
        .get_record(&scope, "things", &kept.id, None)
        .await
        .unwrap()
        .unwrap(); // the record survives, unchanged
    assert_eq!(still, kept);
    for sql in allow {
        backend.execute_raw_for_tests(sql).await.unwrap();
    }
    // The refused create left no unique claim behind; the refused update left "a" claimed.
    stores
        .records
        .create_record(&scope, &meta, new("b"))
        .await
        .unwrap();
    stores
        .records
        .create_record(&scope, &meta, new("c"))
        .await
        .unwrap();
    assert!(matches!(
        stores.records.create_record(&scope, &meta, new("a")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(stores.audit.verify(&scope).await.unwrap().valid);
}

#[tokio::test]
async fn sqlite_a_failing_audit_append_rolls_the_record_back() {
    let (backend, _dir) = sqlite_backend().await;
    a_failing_audit_append_rolls_the_record_back(
        &backend,
        &["CREATE TRIGGER audit_inject BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected'); END"],
        &["DROP TRIGGER audit_inject"],
    )
    .await;
    backend.close().await;
}

#[tokio::test]
async fn postgres_a_failing_audit_append_rolls_the_record_back() {
    let Some(admin_url) = pg_admin_url() else {
        return;
    };
    let (backend, schema) = pg_backend(&admin_url).await;
    let outcome = tokio::spawn({
        let backend = backend.clone();
        async move {
            a_failing_audit_append_rolls_the_record_back(
                &backend,
                &[
                    "CREATE FUNCTION audit_inject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
                    "CREATE TRIGGER audit_inject BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_inject()",
                ],
                &["DROP TRIGGER audit_inject ON audit_log"],
            )
            .await;
        }
    })
    .await;
    backend.close().await;
    drop_test_schema(&admin_url, &schema).await;
    rethrow(outcome);
}

/// Before any ANALYZE (a fresh table, or a server without autovacuum) PostgreSQL's planner has no
/// statistics; a look-up of one record by id must still use the primary key, not a secondary index
/// that reads every record of the resource (migration 0013).
#[tokio::test]
async fn postgres_looks_records_up_by_primary_key_before_any_analyze() {
    let Some(admin_url) = pg_admin_url() else {
        return;
    };
    let (backend, schema) = pg_backend(&admin_url).await;
    let outcome = tokio::spawn({
        let backend = backend.clone();
        let (admin_url, schema) = (admin_url.clone(), schema.clone());
        async move {
            let tenant = root_scope(&backend.stores()).await.tenant_id().to_string();
            backend
                .execute_raw_for_tests(&format!(
                    "INSERT INTO records (tenant_id, resource, id, owner_id, data, version, created_at, updated_at) \
                     SELECT '{tenant}', 'things', 'r' || g, 'user:' || (g % 7), '{{}}', 1, g, g \
                     FROM generate_series(1, 5000) AS g"
                ))
                .await
                .unwrap();
            let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&admin_url)
                .unwrap()
                .options([("search_path", schema.as_str())]);
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
                .await
                .unwrap();
            let analysed: Option<i64> = sqlx::query_scalar(
                "SELECT analyze_count + autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'records' AND schemaname = current_schema()",
            )
            .fetch_optional(&mut conn)
            .await
            .unwrap();
            assert!(matches!(analysed, None | Some(0)), "the table must not be analysed yet");
            let plan: Vec<String> = sqlx::query_scalar(
                "EXPLAIN SELECT data FROM records WHERE tenant_id = $1 AND resource = 'things' AND id = 'r4321' AND deleted_at IS NULL",
            )
            .bind(&tenant)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains("records.tenant_id_resource_id"), "{plan}");
        }
    })
    .await;
    backend.close().await;
    drop_test_schema(&admin_url, &schema).await;
    rethrow(outcome);
}
