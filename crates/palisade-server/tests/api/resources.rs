//! Declared resources over the real socket, on SQLite and PostgreSQL: CRUD, validation, field masks,
//! ETag preconditions and the writer race, idempotency keys, signed cursors, filters, exports (CSV
//! injection), soft delete and restore, owner scoping, audit entries, and an isolation matrix
//! generated from the route registry.

use std::collections::BTreeMap;

use palisade_authz::{InternalRole, SystemScope};
use palisade_domain::TenantKind;
use palisade_domain::resource::ResourceDecl;
use palisade_store::{AuditFilter, AuditPageRequest, Tenant};
use palisade_testkit::{Actor, Backend, Role, TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::expect_problem;

/// The declarations every test here runs with.
fn declarations() -> Vec<ResourceDecl> {
    serde_json::from_value(json!([
        {
            "name": "customers",
            "subject_field": "email",
            "fields": {
                "name": { "type": "string", "required": true, "max_length": 50, "gdpr": "personal", "filterable": true },
                "email": { "type": "email", "unique": true, "gdpr": "personal" },
                "tier": { "type": "enum", "values": ["free", "pro", "enterprise"], "gdpr": "internal", "filterable": true },
                "score": { "type": "integer", "min": 0, "max": 100, "gdpr": "internal", "filterable": true },
                "tax_id": { "type": "string", "gdpr": "sensitive", "protected": true, "filterable": true }
            }
        },
        {
            "name": "notes",
            "owner_scoped": true,
            "fields": {
                "customer": { "type": "ref", "to": "customers", "gdpr": "internal" },
                "body": { "type": "text", "required": true, "gdpr": "personal" }
            }
        }
    ]))
    .unwrap()
}

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.resources = declarations()).await
}

each_backend_with_spawn!(
    audit_views_mask_protected_fields,
    crud_round_trip_writes_one_audit_entry_per_mutation,
    invalid_bodies_are_refused_whole_and_change_nothing,
    protected_fields_are_masked_everywhere_and_refused_on_write,
    filters_accept_only_readable_filterable_fields,
    etag_preconditions_and_the_writer_race,
    idempotency_keys_replay_refuse_reuse_and_serialise_duplicates,
    cursors_are_signed_for_one_tenant_and_list,
    csv_export_neutralises_formulas,
    records_of_another_tenant_are_not_found,
    owner_scoped_records_are_visible_only_to_their_owner,
    unique_values_clash_with_409_naming_the_field,
    isolation_matrix_from_the_registry,
);

fn scope_of(tenant: &Tenant) -> palisade_authz::TenantScope {
    SystemScope::internal(InternalRole::Bootstrap).tenant_scope(tenant.to_ref())
}

async fn count(app: &TestApp, tenant: &Tenant, resource: &str) -> u64 {
    app.state
        .stores()
        .records
        .count_records(&scope_of(tenant), resource, true)
        .await
        .unwrap()
}

/// The actions of every audit entry of the tenant (oldest first).
async fn audit_actions(app: &TestApp, tenant: &Tenant) -> Vec<(String, Option<String>)> {
    let page = app
        .state
        .stores()
        .audit
        .list(
            &scope_of(tenant),
            &AuditFilter::default(),
            &AuditPageRequest {
                limit: 1000,
                after_seq: None,
            },
        )
        .await
        .unwrap();
    page.items
        .into_iter()
        .map(|e| (e.action, e.record_id))
        .collect()
}

fn etag_of(res: &reqwest::Response) -> String {
    res.headers()
        .get("etag")
        .expect("etag")
        .to_str()
        .unwrap()
        .to_owned()
}

async fn create(actor: &Actor, resource: &str, body: Value) -> (Value, String) {
    let res = actor.post(&format!("/v1/{resource}"), &body).await;
    assert_eq!(res.status(), 201, "create {resource}");
    let tag = etag_of(&res);
    (json(res).await, tag)
}

async fn patch(actor: &Actor, path: &str, etag: Option<&str>, body: &Value) -> reqwest::Response {
    let mut rb = actor
        .request(Method::PATCH, path)
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string());
    if let Some(t) = etag {
        rb = rb.header("if-match", t);
    }
    rb.send().await.unwrap()
}

async fn delete(actor: &Actor, path: &str, etag: Option<&str>) -> reqwest::Response {
    let mut rb = actor.request(Method::DELETE, path);
    if let Some(t) = etag {
        rb = rb.header("if-match", t);
    }
    rb.send().await.unwrap()
}

async fn crud_round_trip_writes_one_audit_entry_per_mutation(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let before = audit_actions(&app, &acme.tenant).await.len();

    let res = admin
        .post(
            "/v1/customers",
            &json!({"name": "Ada", "email": "ada@example.com", "tier": "pro", "score": 7}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let tag = etag_of(&res);
    assert!(
        tag.starts_with('"') && tag.len() == 66,
        "strong SHA-256 ETag"
    );
    let created = json(res).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/customers/{id}"));
    assert_eq!(created["version"], 1);
    assert_eq!(created["name"], "Ada");
    for k in ["created_at", "updated_at"] {
        assert!(created[k].is_string(), "{k}");
    }

    let res = admin.get(&location).await;
    assert_eq!(res.status(), 200);
    assert_eq!(etag_of(&res), tag, "the ETag is stable");
    assert_eq!(json(res).await, created);

    let list = json(admin.get("/v1/customers").await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], Value::Null);

    let res = patch(
        &admin,
        &location,
        Some(&tag),
        &json!({"tier": null, "score": 9}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let tag2 = etag_of(&res);
    let updated = json(res).await;
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["score"], 9);
    assert!(
        updated.get("tier").is_none(),
        "null removes a member (RFC 7396)"
    );
    assert_ne!(tag, tag2);

    assert_eq!(delete(&admin, &location, Some(&tag2)).await.status(), 204);
    expect_problem(admin.get(&location).await, 404, "record.not_found").await;
    let list = json(admin.get("/v1/customers").await).await;
    assert!(
        list["items"].as_array().unwrap().is_empty(),
        "deleted records are invisible"
    );
    assert_eq!(
        count(&app, &acme.tenant, "customers").await,
        1,
        "soft delete"
    );

    let res = admin
        .request(Method::POST, &format!("{location}/restore"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["version"], 4);
    assert_eq!(admin.get(&location).await.status(), 200);
    // Restoring a live record finds nothing to restore.
    let res = admin
        .request(Method::POST, &format!("{location}/restore"))
        .send()
        .await
        .unwrap();
    expect_problem(res, 404, "record.not_found").await;

    let actions = audit_actions(&app, &acme.tenant).await;
    let mine: Vec<&str> = actions[before..]
        .iter()
        .filter(|(_, rid)| rid.as_deref() == Some(id.as_str()))
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(
        mine,
        [
            "customers.create",
            "customers.update",
            "customers.delete",
            "customers.restore"
        ]
    );
    assert_eq!(actions.len() - before, 4, "exactly one entry per mutation");
    // The delete entry carries the full snapshot.
    let page = app
        .state
        .stores()
        .audit
        .list(
            &scope_of(&acme.tenant),
            &AuditFilter {
                action: Some("customers.delete".into()),
                ..AuditFilter::default()
            },
            &AuditPageRequest {
                limit: 10,
                after_seq: None,
            },
        )
        .await
        .unwrap();
    let old = page.items[0].old.clone().unwrap();
    assert_eq!(old["email"], "ada@example.com");
    assert_eq!(old["version"], 2);
    assert!(page.items[0].new.is_none());
}

async fn invalid_bodies_are_refused_whole_and_change_nothing(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let audit_before = audit_actions(&app, &acme.tenant).await.len();

    let res = admin
        .post("/v1/customers", &json!({"name": "A", "nickname": "x"}))
        .await;
    let body = expect_problem(res, 400, "request.unknown_field").await;
    assert!(body["detail"].as_str().unwrap().contains("nickname"));

    let res = admin
        .post(
            "/v1/customers",
            &json!({"email": "not-an-email", "tier": "gold", "score": 101, "name": 5}),
        )
        .await;
    let body = expect_problem(res, 422, "validation.failed").await;
    let mut errs: Vec<(String, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    errs.sort();
    assert_eq!(
        errs,
        [
            ("email".to_owned(), "invalid_email".to_owned()),
            ("name".to_owned(), "invalid_type".to_owned()),
            ("score".to_owned(), "too_large".to_owned()),
            ("tier".to_owned(), "invalid_value".to_owned()),
        ]
    );
    assert!(
        !body.to_string().contains("not-an-email"),
        "values are never echoed"
    );

    let res = admin.post("/v1/customers", &json!({"tier": "pro"})).await;
    let body = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["field"], "name");
    assert_eq!(body["errors"][0]["code"], "required");

    let res = admin
        .post("/v1/customers", &json!(["not", "an", "object"]))
        .await;
    expect_problem(res, 422, "validation.failed").await;
    let res = admin
        .request(Method::POST, "/v1/customers")
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, "request.malformed_json").await;
    let res = admin
        .post(
            "/v1/notes",
            &json!({"body": "hi", "customer": crate::unknown_id()}),
        )
        .await;
    let body = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["code"], "ref_not_found");

    // A refused PATCH leaves the record as it was.
    let (rec, tag) = create(&admin, "customers", json!({"name": "Bo"})).await;
    let path = format!("/v1/customers/{}", rec["id"].as_str().unwrap());
    let res = patch(&admin, &path, Some(&tag), &json!({"score": -1})).await;
    expect_problem(res, 422, "validation.failed").await;
    let res = patch(&admin, &path, Some(&tag), &json!({"bogus": 1})).await;
    expect_problem(res, 400, "request.unknown_field").await;
    let res = admin.get(&path).await;
    assert_eq!(etag_of(&res), tag);

    assert_eq!(count(&app, &acme.tenant, "customers").await, 1);
    assert_eq!(count(&app, &acme.tenant, "notes").await, 0);
    assert_eq!(
        audit_actions(&app, &acme.tenant).await.len(),
        audit_before + 1,
        "only the one valid create was audited"
    );
}

async fn protected_fields_are_masked_everywhere_and_refused_on_write(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    // An exporter that may read and export customers but not their protected field.
    let res = admin
        .post(
            "/v1/roles",
            &json!({"name": "exporter", "capabilities": ["customers.read", "customers.list", "customers.export"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let exporter = acme.user_with_roles(&["exporter"]).await;

    let (rec, _) = create(
        &admin,
        "customers",
        json!({"name": "Ada", "tax_id": "DE123456"}),
    )
    .await;
    assert_eq!(rec["tax_id"], "DE123456", "an admin reads it");
    let path = format!("/v1/customers/{}", rec["id"].as_str().unwrap());

    let res = member.get(&path).await;
    assert_eq!(res.status(), 200);
    let tag = etag_of(&res);
    let seen = json(res).await;
    assert!(seen.get("tax_id").is_none(), "absent from a read");
    assert_eq!(seen["name"], "Ada");
    let list = json(member.get("/v1/customers").await).await;
    assert!(
        list["items"][0].get("tax_id").is_none(),
        "absent from a list"
    );
    for format in ["ndjson", "csv"] {
        let res = exporter
            .get(&format!("/v1/customers/export?format={format}"))
            .await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.contains("Ada"), "{format}: {text}");
        assert!(
            !text.contains("tax_id") && !text.contains("DE123456"),
            "{format}: {text}"
        );
    }
    let admin_csv = admin
        .get("/v1/customers/export?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        admin_csv.starts_with("id,email,name,score,tax_id,tier,created_at"),
        "{admin_csv}"
    );
    assert!(admin_csv.contains("DE123456"));

    let res = member
        .post("/v1/customers", &json!({"name": "Eve", "tax_id": "XX1"}))
        .await;
    let body = expect_problem(res, 403, "authz.field_forbidden").await;
    assert!(body["detail"].as_str().unwrap().contains("tax_id"));
    let res = patch(&member, &path, Some(&tag), &json!({"tax_id": "XX1"})).await;
    expect_problem(res, 403, "authz.field_forbidden").await;
    // A member may change the fields it can write; the hidden value survives.
    let res = patch(&member, &path, Some(&tag), &json!({"name": "Ada L."})).await;
    assert_eq!(res.status(), 200);
    let full = json(admin.get(&path).await).await;
    assert_eq!(full["tax_id"], "DE123456");
    assert_eq!(full["name"], "Ada L.");
    assert_eq!(count(&app, &acme.tenant, "customers").await, 1);
}

async fn filters_accept_only_readable_filterable_fields(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    for (name, tier, score) in [("a", "free", 1), ("b", "pro", 5), ("c", "enterprise", 9)] {
        create(
            &admin,
            "customers",
            json!({"name": name, "tier": tier, "score": score, "email": format!("{name}@x.example")}),
        )
        .await;
    }
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |q: &'static str| {
        let member = member.clone();
        async move { member.get(&format!("/v1/customers?{q}")).await }
    };
    assert_eq!(names(json(get("tier=pro").await).await), ["b"]);
    assert_eq!(names(json(get("score[gt]=1").await).await), ["b", "c"]);
    assert_eq!(
        names(json(get("score[lte]=5&score[gte]=5").await).await),
        ["b"]
    );
    assert_eq!(
        names(json(get("tier[in]=free,enterprise").await).await),
        ["a", "c"]
    );
    assert_eq!(names(json(get("tier[ne]=pro").await).await), ["a", "c"]);
    assert_eq!(names(json(get("name[lt]=b").await).await), ["a"]);
    // Not filterable, not readable, unknown, wrong operator, wrong type, injection attempts.
    expect_problem(get("email=a@x.example").await, 400, "filter.not_allowed").await;
    expect_problem(get("tax_id=DE1").await, 400, "filter.not_allowed").await;
    expect_problem(get("nope=1").await, 400, "filter.not_allowed").await;
    expect_problem(get("score[like]=1").await, 400, "filter.invalid_operator").await;
    expect_problem(get("score[gt]=abc").await, 400, "filter.invalid_value").await;
    expect_problem(get("tier=gold").await, 400, "filter.invalid_value").await;
    let res = member.get("/v1/customers?name=%27%20OR%201%3D1%20--").await;
    assert_eq!(res.status(), 200);
    assert!(
        names(json(res).await).is_empty(),
        "operands are bound, not spliced"
    );
    // An admin may filter on the protected field it can read.
    assert_eq!(admin.get("/v1/customers?tax_id=DE1").await.status(), 200);
}

async fn etag_preconditions_and_the_writer_race(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let (rec, tag) = create(&admin, "customers", json!({"name": "Ada"})).await;
    let path = format!("/v1/customers/{}", rec["id"].as_str().unwrap());

    let res = admin
        .request(Method::GET, &path)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(etag_of(&res), tag);
    let res = admin
        .request(Method::GET, &path)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    expect_problem(
        patch(&admin, &path, None, &json!({"name": "B"})).await,
        428,
        "precondition.required",
    )
    .await;
    expect_problem(
        delete(&admin, &path, None).await,
        428,
        "precondition.required",
    )
    .await;
    expect_problem(
        patch(&admin, &path, Some("\"stale\""), &json!({"name": "B"})).await,
        412,
        "precondition.failed",
    )
    .await;
    expect_problem(
        delete(&admin, &path, Some("\"stale\"")).await,
        412,
        "precondition.failed",
    )
    .await;

    // Two writers holding the same ETag: exactly one wins, on every round.
    let mut tag = tag;
    for round in 0..5 {
        let (body_a, body_b) = (
            json!({"name": format!("A{round}")}),
            json!({"name": format!("B{round}")}),
        );
        let a = patch(&admin, &path, Some(&tag), &body_a);
        let b = patch(&admin, &path, Some(&tag), &body_b);
        let (a, b) = tokio::join!(a, b);
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert!(
            statuses == [200, 412] || statuses == [412, 200],
            "round {round}: {statuses:?}"
        );
        tag = if a.status() == 200 {
            etag_of(&a)
        } else {
            etag_of(&b)
        };
    }
    let rec = json(admin.get(&path).await).await;
    assert_eq!(rec["version"], 6);
    let updates = audit_actions(&app, &acme.tenant)
        .await
        .into_iter()
        .filter(|(a, _)| a == "customers.update")
        .count();
    assert_eq!(updates, 5, "losers wrote no audit entry");
}

async fn idempotency_keys_replay_refuse_reuse_and_serialise_duplicates(app: TestApp) {
    let acme = app.tenant("acme").await;
    let member = acme.user(Role::Member).await;
    let post = |key: &str, body: Value| {
        member
            .request(Method::POST, "/v1/customers")
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = post("k-1", json!({"name": "Ada"})).await.unwrap();
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    let tag = etag_of(&first);
    let body = json(first).await;

    let again = post("k-1", json!({"name": "Ada"})).await.unwrap();
    assert_eq!(again.status(), 201, "replayed");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(etag_of(&again), tag);
    assert_eq!(json(again).await, body);
    assert_eq!(count(&app, &acme.tenant, "customers").await, 1);

    let reused = post("k-1", json!({"name": "Bob"})).await.unwrap();
    expect_problem(reused, 422, "idempotency.key_reused").await;
    // Keys belong to their principal: another user's same key is a new request.
    let other = acme.user(Role::Member).await;
    let res = other
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", "k-1")
        .json(&json!({"name": "Bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(count(&app, &acme.tenant, "customers").await, 2);

    // A refused request releases its key: the corrected retry goes through.
    let bad = post("k-2", json!({"name": 1})).await.unwrap();
    assert_eq!(bad.status(), 422);
    let bad_again = post("k-2", json!({"name": 1})).await.unwrap();
    assert_eq!(bad_again.status(), 422);
    assert_eq!(
        post("k-2", json!({"name": "Cy"})).await.unwrap().status(),
        201
    );
    assert_eq!(count(&app, &acme.tenant, "customers").await, 3);

    let res = member
        .request(Method::POST, "/v1/customers")
        .header("idempotency-key", "has space")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect_problem(res, 400, "idempotency.invalid_key").await;

    // Eight concurrent duplicates create one record.
    let futures: Vec<_> = (0..8)
        .map(|_| post("k-race", json!({"name": "Race"})))
        .collect();
    let results = futures::future::join_all(futures).await;
    let mut created_ids = std::collections::BTreeSet::new();
    for r in results {
        let r = r.unwrap();
        let status = r.status().as_u16();
        assert!(status == 201 || status == 409, "{status}");
        if status == 201 {
            created_ids.insert(json(r).await["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(created_ids.len(), 1, "every 201 names the same record");
    assert_eq!(count(&app, &acme.tenant, "customers").await, 4);
}

async fn cursors_are_signed_for_one_tenant_and_list(app: TestApp) {
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let other = globex.user(Role::TenantAdmin).await;
    for i in 0..3 {
        create(&admin, "customers", json!({"name": format!("c{i}")})).await;
        create(&other, "customers", json!({"name": format!("g{i}")})).await;
    }
    let mut seen = Vec::new();
    let mut url = "/v1/customers?limit=1".to_owned();
    let mut cursor_of_acme = None;
    loop {
        let page = json(admin.get(&url).await).await;
        for i in page["items"].as_array().unwrap() {
            seen.push(i["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                cursor_of_acme = Some(c.to_owned());
                url = format!("/v1/customers?limit=1&cursor={c}");
            }
            None => break,
        }
    }
    assert_eq!(seen, ["c0", "c1", "c2"]);
    let cursor = cursor_of_acme.unwrap();
    let res = other
        .get(&format!("/v1/customers?limit=1&cursor={cursor}"))
        .await;
    expect_problem(res, 400, "pagination.invalid_cursor").await;
    let res = admin.get(&format!("/v1/notes?cursor={cursor}")).await;
    expect_problem(res, 400, "pagination.invalid_cursor").await;
    let mut forged = cursor.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let res = admin.get(&format!("/v1/customers?cursor={forged}")).await;
    expect_problem(res, 400, "pagination.invalid_cursor").await;
    expect_problem(
        admin.get("/v1/customers?limit=0").await,
        400,
        "pagination.invalid_limit",
    )
    .await;
}

async fn csv_export_neutralises_formulas(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    for name in ["=1+1", "+SUM(A1)", "-2", "@cmd", "plain, with comma"] {
        create(&admin, "customers", json!({"name": name})).await;
    }
    let res = admin.get("/v1/customers/export?format=csv").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = res.text().await.unwrap();
    for cell in [
        "'=1+1",
        "'+SUM(A1)",
        "'-2",
        "'@cmd",
        "\"plain, with comma\"",
    ] {
        assert!(text.contains(&format!(",{cell},")), "{cell} in {text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "a header and one line per record");

    let res = admin.get("/v1/customers/export?format=ndjson").await;
    let text = res.text().await.unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[0]["name"], "=1+1",
        "NDJSON carries the value as stored"
    );
    expect_problem(
        admin.get("/v1/customers/export?format=xlsx").await,
        400,
        "export.invalid_format",
    )
    .await;
    // More than one store page streams through.
    for i in 0..205 {
        create(&admin, "notes", json!({"body": format!("n{i}")})).await;
    }
    let text = admin
        .get("/v1/notes/export?format=ndjson")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 205);
}

async fn records_of_another_tenant_are_not_found(app: TestApp) {
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let intruder = globex.user(Role::TenantAdmin).await;
    let (rec, tag) = create(
        &admin,
        "customers",
        json!({"name": "Ada", "email": "a@x.example"}),
    )
    .await;
    let path = format!("/v1/customers/{}", rec["id"].as_str().unwrap());
    expect_problem(intruder.get(&path).await, 404, "record.not_found").await;
    expect_problem(
        patch(&intruder, &path, Some(&tag), &json!({"name": "x"})).await,
        404,
        "record.not_found",
    )
    .await;
    expect_problem(
        delete(&intruder, &path, Some(&tag)).await,
        404,
        "record.not_found",
    )
    .await;
    let res = intruder
        .request(Method::POST, &format!("{path}/restore"))
        .send()
        .await
        .unwrap();
    expect_problem(res, 404, "record.not_found").await;
    let list = json(intruder.get("/v1/customers").await).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    // Unique values are per tenant.
    create(
        &intruder,
        "customers",
        json!({"name": "Ada", "email": "a@x.example"}),
    )
    .await;
    expect_problem(
        intruder.get("/v1/customers/not-a-uuid").await,
        404,
        "record.not_found",
    )
    .await;
    let res = admin.get(&path).await;
    assert_eq!(etag_of(&res), tag, "untouched");
}

async fn owner_scoped_records_are_visible_only_to_their_owner(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let alice = acme.user(Role::Member).await;
    let bob = acme.user(Role::Member).await;
    let (note, tag) = create(&alice, "notes", json!({"body": "alice's"})).await;
    create(&bob, "notes", json!({"body": "bob's"})).await;
    let path = format!("/v1/notes/{}", note["id"].as_str().unwrap());
    assert_eq!(alice.get(&path).await.status(), 200);
    expect_problem(bob.get(&path).await, 404, "record.not_found").await;
    expect_problem(
        patch(&bob, &path, Some(&tag), &json!({"body": "mine now"})).await,
        404,
        "record.not_found",
    )
    .await;
    let bodies = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["body"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(bodies(json(bob.get("/v1/notes").await).await), ["bob's"]);
    assert_eq!(
        bodies(json(admin.get("/v1/notes").await).await),
        ["alice's", "bob's"],
        "notes.read_all sees every note"
    );
}

async fn unique_values_clash_with_409_naming_the_field(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let (rec, tag) = create(
        &admin,
        "customers",
        json!({"name": "A", "email": "Ada@X.example"}),
    )
    .await;
    let res = admin
        .post(
            "/v1/customers",
            &json!({"name": "B", "email": "ada@x.example"}),
        )
        .await;
    let body = expect_problem(res, 409, "record.unique_violation").await;
    assert!(body["detail"].as_str().unwrap().contains("`email`"));
    assert!(!body.to_string().contains("ada@x"), "never the value");
    assert_eq!(count(&app, &acme.tenant, "customers").await, 1);
    // Deleting releases the value; restoring while it is taken again is a clash.
    let path = format!("/v1/customers/{}", rec["id"].as_str().unwrap());
    assert_eq!(delete(&admin, &path, Some(&tag)).await.status(), 204);
    create(
        &admin,
        "customers",
        json!({"name": "B", "email": "ada@x.example"}),
    )
    .await;
    let res = admin
        .request(Method::POST, &format!("{path}/restore"))
        .send()
        .await
        .unwrap();
    expect_problem(res, 409, "record.unique_violation").await;
    expect_problem(admin.get(&path).await, 404, "record.not_found").await;
}

/// Who calls, in the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    SameTenantMember,
    SameTenantViewer,
    OtherTenantAdmin,
    ParentAdmin,
    PartnerAdmin,
    SystemAdmin,
    Anonymous,
}

async fn isolation_matrix_from_the_registry(app: TestApp) {
    // system > partner > parent > target; a sibling tenant elsewhere.
    let partner = app.tenant_under("partner", TenantKind::Partner, None).await;
    let parent = app
        .tenant_under("parent", TenantKind::Tenant, Some(&partner.tenant))
        .await;
    let target = app
        .tenant_under("target", TenantKind::Tenant, Some(&parent.tenant))
        .await;
    let other = app.tenant("other").await;
    let t = target.tenant.id;
    let actors: BTreeMap<Who, Actor> = BTreeMap::from([
        (Who::SameTenantMember, target.user(Role::Member).await),
        (Who::SameTenantViewer, target.user(Role::Viewer).await),
        (
            Who::OtherTenantAdmin,
            other.user(Role::TenantAdmin).await.acting_on(t),
        ),
        (
            Who::ParentAdmin,
            parent.user(Role::TenantAdmin).await.acting_on(t),
        ),
        (
            Who::PartnerAdmin,
            partner.user(Role::PartnerAdmin).await.acting_on(t),
        ),
        (Who::SystemAdmin, app.system_admin().await.acting_on(t)),
        (Who::Anonymous, app.anonymous()),
    ]);
    let owner = target.user(Role::TenantAdmin).await;
    let routes: Vec<(Method, String, Option<String>)> = app
        .state
        .routes()
        .unwrap()
        .entries()
        .iter()
        .filter(|e| e.path.starts_with("/v1/customers"))
        .map(|e| {
            (
                Method::from_bytes(e.method.as_str().as_bytes()).unwrap(),
                e.path.to_owned(),
                e.access.capability().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(routes.len(), 7, "every customers route is in the registry");
    let mut table = Vec::new();
    for (method, template, capability) in &routes {
        let capability = capability
            .as_deref()
            .expect("resource routes are protected");
        let action = capability.rsplit('.').next().unwrap();
        for (who, actor) in &actors {
            // A fresh record per cell; deleted first when the route restores.
            let (rec, tag) = create(&owner, "customers", json!({"name": "m"})).await;
            let id = rec["id"].as_str().unwrap().to_owned();
            let mut tag = tag;
            if action == "restore" {
                let p = format!("/v1/customers/{id}");
                assert_eq!(delete(&owner, &p, Some(&tag)).await.status(), 204);
                tag = String::new();
            }
            let path = template.replace("{id}", &id);
            let records_before = count(&app, &target.tenant, "customers").await;
            let audit_before = audit_actions(&app, &target.tenant).await.len();
            let mut rb = actor.request(method.clone(), &path);
            match action {
                "create" => rb = rb.json(&json!({"name": "new"})),
                "update" => {
                    rb = rb
                        .header("if-match", &tag)
                        .json(&json!({"name": "changed"}))
                }
                "delete" => rb = rb.header("if-match", &tag),
                _ => {}
            }
            let status = rb.send().await.unwrap().status().as_u16();
            let allowed = match who {
                Who::Anonymous | Who::OtherTenantAdmin => false,
                Who::SameTenantMember => matches!(action, "read" | "list" | "create" | "update"),
                Who::SameTenantViewer => matches!(action, "read" | "list"),
                Who::ParentAdmin | Who::PartnerAdmin | Who::SystemAdmin => true,
            };
            let expected = match (who, allowed) {
                (Who::Anonymous, _) => 401,
                (Who::OtherTenantAdmin, _) => 404,
                (_, false) => 403,
                (_, true) => match action {
                    "create" => 201,
                    "delete" => 204,
                    _ => 200,
                },
            };
            table.push(format!("{method} {template} {who:?} -> {status}"));
            assert_eq!(status, expected, "{method} {template} as {who:?}");
            if !allowed {
                assert_eq!(
                    count(&app, &target.tenant, "customers").await,
                    records_before,
                    "no record created on denial: {method} {template} {who:?}"
                );
                assert_eq!(
                    audit_actions(&app, &target.tenant).await.len(),
                    audit_before,
                    "no mutation on denial: {method} {template} {who:?}"
                );
                if action != "restore" {
                    let res = owner.get(&format!("/v1/customers/{id}")).await;
                    assert_eq!(
                        etag_of(&res),
                        tag,
                        "record untouched: {method} {template} {who:?}"
                    );
                }
            }
        }
    }
    assert_eq!(table.len(), 7 * actors.len());
}

#[test]
fn config_check_explains_every_declaration_mistake_with_resource_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("palisade.toml");
    std::fs::write(
        &file,
        r#"
[[resource]]
name = "users"
[resource.fields]
name = { type = "string", gdpr = "personal" }

[[resource]]
name = "orders"
[resource.fields]
total    = { type = "money", gdpr = "internal" }
note     = { type = "string" }
status   = { type = "enum", gdpr = "internal" }
customer = { type = "ref", to = "clients", gdpr = "internal" }
code     = { type = "string", pattern = "([a-z", gdpr = "internal" }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "resource.users: collides with the platform path /v1/users",
        "resource.orders.fields.total: has unknown type `money`",
        "resource.orders.fields.note: has no `gdpr` class",
        "resource.orders.fields.status: is an enum without `values`",
        "resource.orders.fields.customer: refers to `clients`, which is not a declared resource",
        "resource.orders.fields.code: has a `pattern` that is not a valid regular expression",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }

    // An unknown key inside a field is refused with its path.
    std::fs::write(
        &file,
        "[[resource]]\nname = \"orders\"\n[resource.fields]\ntotal = { type = \"number\", gdpr = \"internal\", colour = \"red\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("colour"), "{text}");
}

each_backend_with_spawn!(declared_routes_are_documented_in_openapi_and_capabilities);

async fn declared_routes_are_documented_in_openapi_and_capabilities(app: TestApp) {
    let doc = json(app.anonymous().get("/openapi.json").await).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method, cap) in [
        ("/v1/customers", "get", "customers.list"),
        ("/v1/customers", "post", "customers.create"),
        ("/v1/customers/{id}", "get", "customers.read"),
        ("/v1/customers/{id}", "patch", "customers.update"),
        ("/v1/customers/{id}", "delete", "customers.delete"),
        ("/v1/customers/{id}/restore", "post", "customers.restore"),
        ("/v1/customers/export", "get", "customers.export"),
        ("/v1/notes/{id}", "get", "notes.read"),
    ] {
        assert_eq!(
            paths[path][method]["x-palisade-capability"], cap,
            "{method} {path}"
        );
    }
    let admin = app.system_admin().await;
    let caps = json(admin.get("/v1/capabilities").await).await.to_string();
    for c in [
        "customers.field.tax_id.read",
        "customers.field.tax_id.write",
        "notes.read_all",
        "customers.export",
    ] {
        assert!(caps.contains(c), "{c}");
    }
    assert!(
        !caps.contains("customers.read_all"),
        "only owner-scoped resources have read_all"
    );
}

/// The audit trail applies the same field masks as the records: an auditor without
/// `customers.field.tax_id.read` sees the entry, never the protected value, in the query and in
/// both export formats.
async fn audit_views_mask_protected_fields(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(palisade_testkit::Role::TenantAdmin).await;
    create(
        &admin,
        "customers",
        json!({"name": "Ada", "tax_id": "DE123456"}),
    )
    .await;
    let res = admin
        .post(
            "/v1/roles",
            &json!({"name": "auditor", "capabilities": ["audit.log.read", "audit.log.export"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let auditor = acme.user_with_roles(&["auditor"]).await;
    let seen = palisade_testkit::json(admin.get("/v1/audit?resource=customers").await).await;
    assert_eq!(seen["items"][0]["new"]["tax_id"], "DE123456", "{seen}");
    let masked = palisade_testkit::json(auditor.get("/v1/audit?resource=customers").await).await;
    let entry = &masked["items"][0];
    assert_eq!(entry["new"]["name"], "Ada", "{entry}");
    assert!(entry["new"].get("tax_id").is_none(), "{entry}");
    for format in ["ndjson", "csv"] {
        let res = auditor
            .get(&format!("/v1/audit/export?format={format}"))
            .await;
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.contains("Ada"), "{format}");
        assert!(
            !text.contains("DE123456"),
            "{format} leaks a protected field"
        );
    }
}

/// Every `$ref` in `v`, recursively.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// `/openapi.json` carries one schema per declared resource (`<Name>`, `<Name>Create`,
/// `<Name>Patch`, `<Name>Page`) with the declared constraints, wires them to the resource's
/// operations, marks protected fields, and every `$ref` resolves (OpenAPI 3.1 structure).
#[tokio::test]
async fn openapi_has_a_schema_per_resource_and_every_ref_resolves() {
    let app = spawn(Backend::Sqlite).await.unwrap();
    let doc = json(app.anonymous().get("/openapi.json").await).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Customers",
        "CustomersCreate",
        "CustomersPatch",
        "CustomersPage",
        "Notes",
        "NotesCreate",
        "NotesPatch",
        "NotesPage",
    ] {
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
    let create = &schemas["CustomersCreate"];
    assert_eq!(create["type"], "object");
    assert_eq!(create["additionalProperties"], false);
    assert_eq!(create["required"], json!(["name"]));
    let p = &create["properties"];
    assert_eq!(p["name"]["type"], "string");
    assert_eq!(p["name"]["maxLength"], 50);
    assert_eq!(p["email"]["format"], "email");
    assert_eq!(p["email"]["x-palisade-unique"], true);
    assert_eq!(p["tier"]["enum"], json!(["free", "pro", "enterprise"]));
    assert_eq!(p["score"]["type"], "integer");
    assert_eq!(
        (
            p["score"]["minimum"].as_f64(),
            p["score"]["maximum"].as_f64()
        ),
        (Some(0.0), Some(100.0))
    );
    assert_eq!(p["tax_id"]["x-palisade-protected"], true);
    let text = p["tax_id"]["description"].as_str().unwrap();
    assert!(
        text.contains("customers.field.tax_id.read")
            && text.contains("customers.field.tax_id.write"),
        "{text}"
    );
    // A merge patch may remove optional fields with null, never a required one; nothing is required.
    let patch = &schemas["CustomersPatch"];
    assert!(patch.get("required").is_none());
    assert_eq!(
        patch["properties"]["tier"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(patch["properties"]["name"]["type"], "string");
    // The record as returned: system fields required, protected fields never required.
    let record = &schemas["Customers"];
    let required: Vec<&str> = record["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in ["id", "name", "created_at", "updated_at", "version"] {
        assert!(required.contains(&f), "{f} not required");
    }
    assert!(!required.contains(&"tax_id"));
    assert_eq!(schemas["Notes"]["properties"]["customer"]["format"], "uuid");
    assert_eq!(
        schemas["Notes"]["properties"]["customer"]["x-palisade-ref"],
        "customers"
    );
    // The operations use them, each with its capability.
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let body =
        |o: &Value| o["requestBody"]["content"]["application/json"]["schema"]["$ref"].clone();
    let ok = |o: &Value, status: &str| {
        o["responses"][status]["content"]["application/json"]["schema"]["$ref"].clone()
    };
    let post = op("/v1/customers", "post");
    assert_eq!(body(&post), "#/components/schemas/CustomersCreate");
    assert_eq!(ok(&post, "201"), "#/components/schemas/Customers");
    assert_eq!(post["x-palisade-capability"], "customers.create");
    let patch_op = op("/v1/customers/{id}", "patch");
    assert_eq!(body(&patch_op), "#/components/schemas/CustomersPatch");
    assert_eq!(patch_op["x-palisade-capability"], "customers.update");
    assert_eq!(
        ok(&op("/v1/notes", "get"), "200"),
        "#/components/schemas/NotesPage"
    );
    assert_eq!(
        ok(&op("/v1/notes/{id}", "get"), "200"),
        "#/components/schemas/Notes"
    );
    // Structure: every operation has responses and an operationId, ids are unique, and every $ref
    // points at an existing component.
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        for (method, o) in item.as_object().unwrap() {
            assert!(
                o["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            assert!(
                ids.insert(o["operationId"].as_str().unwrap().to_owned()),
                "duplicate operationId"
            );
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20);
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("foreign $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
}

/// A resource whose schema would take a platform schema's name (or another resource's) is refused
/// at start instead of serving an ambiguous document.
#[tokio::test]
async fn a_resource_schema_named_like_a_platform_schema_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = palisade_server::config::Settings::for_test(dir.path());
    s.resources = serde_json::from_value(json!([{
        "name": "problem",
        "fields": { "title": { "type": "string", "gdpr": "public" } }
    }]))
    .unwrap();
    let err = palisade_server::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("`Problem`"), "{err}");
}
