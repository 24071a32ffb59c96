//! Retention over the real stack, on SQLite and PostgreSQL: records of a resource with
//! `retention_days` are purged once older than that (soft-deleted ones too) with every trace and one
//! audited purge each, while younger records, other resources and other tenants stay; every audit
//! action has a retention category; the CLI runs both retentions and `config check` warns about
//! categories that differ a lot.

use palisade_authz::{InternalRole, SystemScope};
use palisade_domain::resource::ResourceDecl;
use palisade_store::{AuditFilter, AuditPageRequest, Tenant};
use palisade_testkit::{Actor, Backend, Role, TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

fn declarations() -> Vec<ResourceDecl> {
    serde_json::from_value(json!([
        {
            "name": "customers",
            "retention_days": 30,
            "fields": {
                "name": { "type": "string", "required": true, "gdpr": "personal", "filterable": true },
                "email": { "type": "email", "unique": true, "gdpr": "personal" }
            }
        },
        {
            "name": "notes",
            "fields": { "body": { "type": "text", "required": true, "gdpr": "personal" } }
        }
    ]))
    .unwrap()
}

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.resources = declarations()).await
}

each_backend_with_spawn!(
    expired_records_are_purged_with_every_trace_and_audited,
    the_retention_job_leaves_young_records_and_other_tenants_alone,
);

async fn create(actor: &Actor, resource: &str, key: Option<&str>, body: Value) -> (String, String) {
    let mut rb = actor
        .request(Method::POST, &format!("/v1/{resource}"))
        .json(&body);
    if let Some(k) = key {
        rb = rb.header("idempotency-key", k);
    }
    let res = rb.send().await.unwrap();
    assert_eq!(res.status(), 201, "create {resource}");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let v = json(res).await;
    (v["id"].as_str().unwrap().to_owned(), etag)
}

/// Moves a record's creation `days` into the past, as if it had been created then.
async fn back_date(app: &TestApp, id: &str, days: i64) {
    let micros = (time::OffsetDateTime::now_utc() - time::Duration::days(days))
        .unix_timestamp_nanos()
        / 1_000;
    let n = app
        .raw_sql(&format!(
            "UPDATE records SET created_at = {micros} WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    assert_eq!(n, 1);
}

async fn purge_entries(app: &TestApp, tenant: &Tenant) -> Vec<palisade_store::AuditEntry> {
    let scope = SystemScope::internal(InternalRole::Bootstrap).tenant_scope(tenant.to_ref());
    app.state
        .stores()
        .audit
        .list(
            &scope,
            &AuditFilter {
                action: Some("customers.purge".to_owned()),
                ..AuditFilter::default()
            },
            &AuditPageRequest {
                limit: 100,
                after_seq: None,
            },
        )
        .await
        .unwrap()
        .items
}

async fn expired_records_are_purged_with_every_trace_and_audited(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let (old, _) = create(
        &admin,
        "customers",
        Some("k-old"),
        json!({"name": "Ada", "email": "ada@example.com"}),
    )
    .await;
    let (deleted, etag) = create(&admin, "customers", None, json!({"name": "Bea"})).await;
    let res = admin
        .request(Method::DELETE, &format!("/v1/customers/{deleted}"))
        .header("if-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    back_date(&app, &old, 31).await;
    back_date(&app, &deleted, 400).await;

    let purged = palisade_server::record_jobs::purge_all(&app.state)
        .await
        .unwrap();
    assert_eq!(purged, 2);

    // Gone for good: not readable, not restorable.
    assert_eq!(
        admin.get(&format!("/v1/customers/{old}")).await.status(),
        404
    );
    let res = admin
        .request(Method::POST, &format!("/v1/customers/{deleted}/restore"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // The unique e-mail is free, and the stored idempotent response went with the record: the same
    // key and body create a new record instead of replaying the purged one.
    let res = admin
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", "k-old")
        .json(&json!({"name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_ne!(json(res).await["id"], json!(old));
    // Filters no longer find the purged values.
    let list = json(admin.get("/v1/customers?name=Bea").await).await;
    assert_eq!(list["items"], json!([]));

    // One purge entry per record, by the system, with the full snapshot; the chain verifies.
    let entries = purge_entries(&app, &acme.tenant).await;
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert_eq!(e.actor, "system:retention");
        let snapshot = e.old.as_ref().unwrap();
        assert_eq!(snapshot["id"], json!(e.record_id));
        assert!(snapshot["name"].is_string());
        assert!(e.new.is_none());
    }
    let verify = json(admin.get("/v1/audit/verify").await).await;
    assert_eq!(verify["valid"], true, "{verify}");
    // Nothing left to purge: a second run is a no-op.
    assert_eq!(
        palisade_server::record_jobs::purge_all(&app.state)
            .await
            .unwrap(),
        0
    );
}

async fn the_retention_job_leaves_young_records_and_other_tenants_alone(app: TestApp) {
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let a = acme.user(Role::TenantAdmin).await;
    let g = globex.user(Role::TenantAdmin).await;
    let (young, _) = create(&a, "customers", None, json!({"name": "Young"})).await;
    back_date(&app, &young, 29).await;
    // A resource without retention_days is never purged, however old.
    let (note, _) = create(&a, "notes", None, json!({"body": "keep"})).await;
    back_date(&app, &note, 4000).await;
    // Another tenant's young record stays while this tenant's old one goes.
    let (theirs, _) = create(&g, "customers", None, json!({"name": "Theirs"})).await;
    let (old, _) = create(&a, "customers", None, json!({"name": "Old"})).await;
    back_date(&app, &old, 30).await;

    assert_eq!(
        palisade_server::record_jobs::purge_all(&app.state)
            .await
            .unwrap(),
        1
    );
    assert_eq!(a.get(&format!("/v1/customers/{young}")).await.status(), 200);
    assert_eq!(a.get(&format!("/v1/notes/{note}")).await.status(), 200);
    assert_eq!(
        g.get(&format!("/v1/customers/{theirs}")).await.status(),
        200
    );
    assert_eq!(a.get(&format!("/v1/customers/{old}")).await.status(), 404);
    assert!(purge_entries(&app, &globex.tenant).await.is_empty());
    let verify = json(g.get("/v1/audit/verify").await).await;
    assert_eq!(verify["valid"], true, "{verify}");
}

/// Every audit action written anywhere in the stores or the server has a retention category: a new
/// action literal fails this test until it is added to `PLATFORM_ACTIONS`.
#[test]
fn every_audit_action_in_the_sources_has_a_retention_category() {
    let mut found = Vec::new();
    for (_, text) in crate::source_files(&["palisade-server/src", "palisade-store-sql/src"]) {
        for line in text.lines() {
            if !(line.contains("_event(\"") || line.contains("action: \"")) {
                continue;
            }
            for literal in line.split('"').skip(1).step_by(2) {
                let dotted = literal.split_once('.').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && literal
                            .bytes()
                            .all(|c| c.is_ascii_lowercase() || c == b'_' || c == b'.')
                });
                if dotted {
                    found.push(literal.to_owned());
                }
            }
        }
    }
    assert!(
        found.len() >= 15,
        "the scan found too few actions: {found:?}"
    );
    for action in &found {
        let resource = action.split('.').next().unwrap_or_default();
        assert!(
            palisade_store::category_of(action, resource).is_some(),
            "audit action `{action}` has no retention category; add it to PLATFORM_ACTIONS"
        );
    }
}

#[test]
fn the_cli_prunes_records_and_config_check_warns_about_uneven_categories() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("palisade.toml"),
        "[audit]\nretention_days = 30\n[audit.retention]\nsecurity = 365\nrecords = 0\n\n\
         [[resource]]\nname = \"orders\"\nretention_days = 7\n[resource.fields]\n\
         total = { type = \"number\", gdpr = \"internal\" }\n",
    )
    .unwrap();
    let run = |args: &[&str]| crate::run_cli(dir.path(), args);
    let (ok, text) = run(&["config", "check"]);
    assert!(ok, "{text}");
    assert!(text.contains("audit.retention"), "{text}");
    assert!(
        text.contains("records forever") || text.contains("keeps records"),
        "{text}"
    );
    assert!(text.contains("security (365 days)"), "{text}");
    let (ok, text) = run(&["bootstrap"]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["records", "prune"]);
    assert!(ok && text.contains("0 records purged"), "{text}");
    let (ok, text) = run(&["audit", "prune"]);
    assert!(ok && text.contains("0 entries pruned"), "{text}");
    // retention_days = 0 would purge everything at once: refused.
    std::fs::write(
        dir.path().join("palisade.toml"),
        "[[resource]]\nname = \"orders\"\nretention_days = 0\n[resource.fields]\n\
         total = { type = \"number\", gdpr = \"internal\" }\n",
    )
    .unwrap();
    let (ok, text) = run(&["config", "check"]);
    assert!(!ok, "{text}");
    assert!(text.contains("retention_days"), "{text}");
}
