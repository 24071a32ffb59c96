//! `/v1/audit`: every admin mutation leaves one entry with actor, IP, request id and old/new values;
//! the chain verifies, names the first tampered entry, and an audit write that fails takes the
//! mutation with it. Query filters, signed cursors, tenant isolation and streamed exports.

use palisade_testkit::{Role, TestApp, each_backend, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::expect_problem;

/// Both spellings, so one list works on SQLite and PostgreSQL; the one that does not apply fails.
const DROP_TRIGGERS: [&str; 4] = [
    "DROP TRIGGER audit_log_no_update",
    "DROP TRIGGER audit_log_no_update ON audit_log",
    "DROP TRIGGER audit_log_delete_only_pruned",
    "DROP TRIGGER audit_log_delete_only_pruned ON audit_log",
];

async fn entries(actor: &palisade_testkit::Actor, query: &str) -> Vec<Value> {
    let res = actor.get(&format!("/v1/audit{query}")).await;
    assert_eq!(res.status(), 200);
    json(res).await["items"].as_array().unwrap().clone()
}

async fn admin_mutations_are_audited_with_actor_ip_request_id_and_values(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let admin_id = admin.user.as_ref().unwrap().id;
    let res = admin
        .request(Method::POST, "/v1/users")
        .header("x-request-id", "audit-req-0001")
        .json(&json!({"email": "new.hire@acme.test", "roles": ["member"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user_id = json(res).await["id"].as_str().unwrap().to_owned();
    let res = admin
        .patch(
            &format!("/v1/users/{user_id}"),
            &json!({"roles": ["viewer"]}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let created = entries(&admin, "?action=user.create").await;
    let mine: Vec<&Value> = created
        .iter()
        .filter(|e| e["record_id"] == user_id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "exactly one entry per mutation");
    let e = mine[0];
    assert_eq!(e["actor"], format!("user:{admin_id}"));
    assert_eq!(e["request_id"], "audit-req-0001");
    assert_eq!(e["ip"], "127.0.0.1");
    assert_eq!(e["resource"], "user");
    assert_eq!(e["old"], Value::Null);
    assert_eq!(e["new"]["email"], "new.hire@acme.test");
    assert_eq!(e["hash"].as_str().unwrap().len(), 64);

    let updated = entries(&admin, &format!("?action=user.update&record_id={user_id}")).await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["old"]["roles"], json!(["member"]));
    assert_eq!(updated[0]["new"]["roles"], json!(["viewer"]));
    assert!(updated[0]["seq"].as_i64().unwrap() > e["seq"].as_i64().unwrap());

    let verify = json(admin.get("/v1/audit/verify").await).await;
    assert_eq!(verify["valid"], true, "{verify}");
    assert_eq!(verify["first_invalid_seq"], Value::Null);
    let all = entries(&admin, "?limit=200").await;
    assert_eq!(verify["entries"], all.len());
    assert_eq!(verify["head"], all.last().unwrap()["hash"]);

    // Members and viewers do not read the trail; another tenant's admin sees none of acme's.
    let member = acme.user(Role::Member).await;
    expect_problem(member.get("/v1/audit").await, 403, "authz.forbidden").await;
    let other = app.tenant("globex").await.user(Role::TenantAdmin).await;
    assert!(
        entries(&other, "?limit=200")
            .await
            .iter()
            .all(|e| e["record_id"] != user_id.as_str())
    );
}
each_backend!(admin_mutations_are_audited_with_actor_ip_request_id_and_values);

async fn audit_queries_refuse_bad_filters_and_forged_cursors(app: TestApp) {
    let admin = app.tenant("acme").await.user(Role::TenantAdmin).await;
    for _ in 0..3 {
        let res = admin
            .post(
                "/v1/users",
                &json!({"email": format!("u{}@acme.test", uuid::Uuid::now_v7().simple())}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    let page = json(admin.get("/v1/audit?limit=2").await).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = json(
        admin
            .get(&format!("/v1/audit?limit=2&cursor={cursor}"))
            .await,
    )
    .await;
    assert!(next["items"][0]["seq"].as_i64().unwrap() > page["items"][1]["seq"].as_i64().unwrap());
    // A cursor from another tenant's list, or tampered, is refused.
    let other = app.tenant("globex").await.user(Role::TenantAdmin).await;
    for _ in 0..3 {
        other
            .post(
                "/v1/users",
                &json!({"email": format!("g{}@globex.test", uuid::Uuid::now_v7().simple())}),
            )
            .await;
    }
    let foreign = json(other.get("/v1/audit?limit=1").await).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in [foreign.as_str(), "forged", &format!("{cursor}x")] {
        expect_problem(
            admin.get(&format!("/v1/audit?cursor={bad}")).await,
            400,
            "pagination.invalid_cursor",
        )
        .await;
    }
    expect_problem(
        admin.get("/v1/audit?since=yesterday").await,
        422,
        "validation.failed",
    )
    .await;
    expect_problem(
        admin.get("/v1/audit?limit=0").await,
        400,
        "pagination.invalid_limit",
    )
    .await;
    expect_problem(
        admin.get("/v1/audit?evil=1").await,
        400,
        "request.unknown_parameter",
    )
    .await;
    let future = json(admin.get("/v1/audit?since=2999-01-01T00:00:00Z").await).await;
    assert_eq!(future["items"], json!([]));
}
each_backend!(audit_queries_refuse_bad_filters_and_forged_cursors);

async fn verify_names_the_first_tampered_entry(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    for i in 0..3 {
        let res = admin
            .post("/v1/users", &json!({"email": format!("t{i}@acme.test")}))
            .await;
        assert_eq!(res.status(), 201);
    }
    let all = entries(&admin, "?limit=200").await;
    let target = all[all.len() - 2]["seq"].as_i64().unwrap();
    let tid = acme.tenant.id;
    // The database itself refuses an update of the trail...
    assert!(
        app.raw_sql(&format!(
            "UPDATE audit_log SET actor = 'user:nobody' WHERE tenant_id = '{tid}' AND seq = {target}"
        ))
        .await
        .is_err()
    );
    assert_eq!(
        json(admin.get("/v1/audit/verify").await).await["valid"],
        true
    );
    // ...until someone with DDL rights drops the guard; the chain still tells.
    for sql in DROP_TRIGGERS {
        let _ = app.raw_sql(sql).await;
    }
    app.raw_sql(&format!(
        "UPDATE audit_log SET actor = 'user:nobody' WHERE tenant_id = '{tid}' AND seq = {target}"
    ))
    .await
    .unwrap();
    let verify = json(admin.get("/v1/audit/verify").await).await;
    assert_eq!(verify["valid"], false);
    assert_eq!(verify["first_invalid_seq"], target);
    // A deleted entry is named too.
    app.raw_sql(&format!(
        "DELETE FROM audit_log WHERE tenant_id = '{tid}' AND seq = {}",
        target - 1
    ))
    .await
    .unwrap();
    let verify = json(admin.get("/v1/audit/verify").await).await;
    assert_eq!(verify["first_invalid_seq"], target - 1);
}
each_backend!(verify_names_the_first_tampered_entry);

async fn a_failing_audit_write_rolls_the_mutation_back(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let before = app.users_of(&acme.tenant).await.len();
    // Inject the failure in the database: every audit insert now fails.
    let sqlite = "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
                  BEGIN SELECT RAISE(ABORT, 'injected'); END";
    let pg_fn = "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected'; END $$";
    let pg_trigger = "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
                      FOR EACH ROW EXECUTE FUNCTION fail_audit()";
    if app.raw_sql(sqlite).await.is_err() {
        app.raw_sql(pg_fn).await.unwrap();
        app.raw_sql(pg_trigger).await.unwrap();
    }
    let res = admin
        .post("/v1/users", &json!({"email": "ghost@acme.test"}))
        .await;
    let body = expect_problem(res, 500, "server.internal").await;
    assert!(
        !body.to_string().contains("injected"),
        "no database detail leaks: {body}"
    );
    assert_eq!(
        app.users_of(&acme.tenant).await.len(),
        before,
        "no user without its audit entry"
    );
    let res = admin
        .post(
            "/v1/roles",
            &json!({"name": "ghost_role", "capabilities": []}),
        )
        .await;
    expect_problem(res, 500, "server.internal").await;
    let roles = json(admin.get("/v1/roles").await).await;
    assert!(
        roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "ghost_role")
    );
}
each_backend!(a_failing_audit_write_rolls_the_mutation_back);

async fn exports_stream_every_entry_with_csv_cells_neutralised(app: TestApp) {
    let system = app.system_admin().await;
    // A tenant whose name a spreadsheet would run as a formula.
    let res = system
        .post(
            "/v1/tenants",
            &json!({"name": "=HYPERLINK(\"http://evil\")", "slug": "formula"}),
        )
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let count = json(system.get("/v1/audit/verify").await).await["entries"]
        .as_u64()
        .unwrap();
    let res = system.get("/v1/audit/export?format=ndjson").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, count);
    assert!(lines.windows(2).all(|w| w[0]["hash"] == w[1]["prev_hash"]));

    let res = system.get("/v1/audit/export?format=csv").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let text = res.text().await.unwrap();
    assert!(text.starts_with(
        "seq,at,actor,action,resource,record_id,ip,request_id,old,new,prev_hash,hash\r\n"
    ));
    assert!(
        !text.contains(",=HYPERLINK"),
        "formula cells never start a cell"
    );
    assert!(text.contains("HYPERLINK"));
    expect_problem(
        system.get("/v1/audit/export?format=xlsx").await,
        400,
        "export.invalid_format",
    )
    .await;
    let viewer = app.tenant("acme").await.user(Role::Viewer).await;
    expect_problem(viewer.get("/v1/audit/export").await, 403, "authz.forbidden").await;
}
each_backend!(exports_stream_every_entry_with_csv_cells_neutralised);

async fn refresh_token_reuse_is_recorded_as_a_security_event(app: TestApp) {
    let tokens = app.sign_in("owner@localhost", "system").await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let anon = app.anonymous();
    let first = anon
        .post("/v1/auth/token/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(first.status(), 200);
    let again = anon
        .post("/v1/auth/token/refresh", &json!({"refresh_token": refresh}))
        .await;
    expect_problem(again, 401, "auth.refresh_reused").await;
    let fresh = app.sign_in("owner@localhost", "system").await;
    let owner = app.bearer(fresh["access_token"].as_str().unwrap());
    let events = entries(&owner, "?action=auth.refresh_reused").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["resource"], "user");
    assert!(events[0]["new"]["family_revoked"].is_string());
}
each_backend!(refresh_token_reuse_is_recorded_as_a_security_event);

#[tokio::test]
async fn the_cli_verifies_every_chain_and_names_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| crate::run_cli(dir.path(), args);
    let (ok, text) = run(&["bootstrap"]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["audit", "verify"]);
    assert!(ok, "{text}");
    assert!(text.contains("ok       system"), "{text}");
    let (ok, text) = run(&["audit", "verify", "--tenant", "not-an-id"]);
    assert!(!ok, "{text}");
    let (ok, text) = run(&["audit", "prune"]);
    assert!(ok && text.contains("0 entries pruned"), "{text}");

    // Tamper with the first entry of the system tenant's chain, as someone holding the file would.
    let url = format!("sqlite://{}/data/palisade.db", dir.path().display());
    let db = palisade_store_sql::connect(&url, &palisade_store_sql::ConnectOptions::default())
        .await
        .unwrap();
    db.execute_raw_for_tests("DROP TRIGGER audit_log_no_update")
        .await
        .unwrap();
    db.execute_raw_for_tests("UPDATE audit_log SET actor = 'user:nobody' WHERE seq = 1")
        .await
        .unwrap();
    db.close().await;
    let (ok, text) = run(&["audit", "verify"]);
    assert!(!ok, "{text}");
    assert!(text.contains("INVALID  system"), "{text}");
    assert!(text.contains("first invalid entry at seq 1"), "{text}");
}
