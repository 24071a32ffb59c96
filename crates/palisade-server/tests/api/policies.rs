//! `/v1/policies` and Cedar conditions end to end: saving refuses unparsable and schema-invalid texts
//! (nothing stored), writing needs a step-up, `If-Match` and audit entries; at request time a `forbid`
//! narrows by IP, time and MFA age, a `permit` never widens, an evaluation error or a stored text that
//! no longer validates denies, one tenant's policies never touch another, and members and viewers
//! cannot read or write policies.

use palisade_crypto::TotpSecret;
use palisade_store::{AuditFilter, AuditPageRequest};
use palisade_testkit::{Actor, Backend, Role, TestApp, each_backend, json};
use serde_json::{Value, json};

use crate::expect_problem;
use crate::mfa::{base32_decode, code_at};

/// Signs `actor`'s user in through the real OTP flow, enrols and confirms TOTP, and steps up: the
/// returned actor's bearer token carries `amr` with `totp` and a fresh `auth_time`.
async fn stepped_up(app: &TestApp, actor: &Actor) -> Actor {
    let user = actor.user.as_ref().unwrap();
    let slug = actor.tenant.as_ref().unwrap().slug.to_string();
    let first = app.sign_in(&user.email, &slug).await;
    let me = app.bearer(first["access_token"].as_str().unwrap());
    let enrol = json(me.post("/v1/auth/totp/enroll", &json!({})).await).await;
    let secret = TotpSecret::from_bytes(&base32_decode(enrol["secret"].as_str().unwrap())).unwrap();
    let res = me
        .post(
            "/v1/auth/totp/confirm",
            &json!({"code": code_at(&secret, 0)}),
        )
        .await;
    assert_eq!(res.status(), 200, "confirm TOTP");
    let res = me
        .post("/v1/auth/step-up", &json!({"code": code_at(&secret, 1)}))
        .await;
    assert_eq!(res.status(), 200, "step up");
    let stepped = json(res).await;
    app.bearer(stepped["access_token"].as_str().unwrap())
}

async fn put(actor: &Actor, text: &str) -> reqwest::Response {
    actor
        .request(reqwest::Method::PUT, "/v1/policies")
        .json(&json!({ "policies": text }))
        .send()
        .await
        .unwrap()
}

async fn put_ok(actor: &Actor, text: &str) -> Value {
    let res = put(actor, text).await;
    assert_eq!(res.status(), 200, "PUT /v1/policies");
    json(res).await
}

fn error_codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["field"], "policies");
            assert!(!e["message"].as_str().unwrap().is_empty());
            e["code"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn policy_crud_needs_step_up_honours_if_match_and_is_audited(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let text = r#"@id("no-deletes") forbid(principal, action == Palisade::Action::"platform.user.delete", resource);"#;

    // Reading needs no step-up; writing does.
    expect_problem(admin.get("/v1/policies").await, 404, "policy.not_found").await;
    expect_problem(put(&admin, text).await, 403, "auth.step_up_required").await;
    expect_problem(
        admin.delete("/v1/policies").await,
        403,
        "auth.step_up_required",
    )
    .await;
    let schema = json(admin.get("/v1/policies/schema").await).await;
    assert!(
        schema["schema"]
            .as_str()
            .unwrap()
            .contains("action \"platform.user.delete\"")
    );
    let admin = stepped_up(&app, &admin).await;

    // Act: create, read, replace with If-Match.
    let res = put(&admin, text).await;
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let first = json(res).await;
    assert_eq!(first["version"], 1);
    assert_eq!(format!("\"{}\"", first["etag"].as_str().unwrap()), etag);
    let res = admin.get("/v1/policies").await;
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(json(res).await["policies"], text);

    let stale = admin
        .request(reqwest::Method::PUT, "/v1/policies")
        .header("if-match", "\"0190b0e0-0000-7000-8000-000000000000\"")
        .json(&json!({"policies": ""}))
        .send()
        .await
        .unwrap();
    expect_problem(stale, 412, "precondition.failed").await;
    let res = admin
        .request(reqwest::Method::PUT, "/v1/policies")
        .header("if-match", &etag)
        .json(&json!({"policies": "// nothing forbidden\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let second = json(res).await;
    assert_eq!(second["version"], 2);

    // A stale If-Match on delete changes nothing; a plain delete removes the document.
    let res = admin
        .request(reqwest::Method::DELETE, "/v1/policies")
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    expect_problem(res, 412, "precondition.failed").await;
    assert_eq!(admin.delete("/v1/policies").await.status(), 204);
    expect_problem(admin.get("/v1/policies").await, 404, "policy.not_found").await;
    expect_problem(admin.delete("/v1/policies").await, 404, "policy.not_found").await;

    // Assert: one audit entry per change, with the old and the new text.
    let scope = palisade_authz::SystemScope::internal(palisade_authz::InternalRole::Bootstrap)
        .tenant_scope(app.reload(acme.tenant.id).await.to_ref());
    let entries = app
        .state
        .stores()
        .audit
        .list(
            &scope,
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
        .unwrap()
        .items;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["policy.update", "policy.update", "policy.delete"]);
    assert_eq!(entries[0].old, None);
    assert_eq!(entries[0].new.as_ref().unwrap()["policies"], text);
    assert_eq!(entries[1].old.as_ref().unwrap()["policies"], text);
    assert_eq!(
        entries[2].old.as_ref().unwrap()["policies"],
        "// nothing forbidden\n"
    );
    assert!(entries.iter().all(|e| e.actor.starts_with("user:")));
}

async fn unparsable_and_schema_invalid_policies_are_refused_and_nothing_is_stored(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let cases = [
        ("forbid(principal, action, resource", "policy.parse_error"),
        (
            "permit(principal, action, resource) when { ;",
            "policy.parse_error",
        ),
        (
            r#"forbid(principal, action == Palisade::Action::"no.such", resource);"#,
            "policy.schema_error",
        ),
        // mfa_age is a Long: comparing it to a string is a type error in strict mode.
        (
            r#"forbid(principal, action, resource) when { context.mfa_age == "old" };"#,
            "policy.schema_error",
        ),
        (
            "forbid(principal, action, resource) when { principal.nope };",
            "policy.schema_error",
        ),
        (
            "permit(principal == ?principal, action, resource);",
            "policy.template",
        ),
    ];
    for (text, code) in cases {
        let body = expect_problem(put(&admin, text).await, 422, "validation.failed").await;
        assert!(
            error_codes(&body).iter().all(|c| c == code),
            "{text}: {body}"
        );
        // The dry run says the same.
        let body = expect_problem(
            admin
                .post("/v1/policies/validate", &json!({"policies": text}))
                .await,
            422,
            "validation.failed",
        )
        .await;
        assert!(
            error_codes(&body).iter().all(|c| c == code),
            "{text}: {body}"
        );
    }
    // Every message is listed: two bad policies, two errors.
    let body = expect_problem(
        put(
            &admin,
            "forbid(principal, action, resource) when { context.a };\nforbid(principal, action, resource) when { context.b };",
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert!(error_codes(&body).len() >= 2, "{body}");
    // Too large: with the default WAF limits the body check refuses a text over
    // `waf.max_string_chars` (8 KiB) before the handler; the 64 KiB cap is unit-tested in authz.
    let big = format!("// {}\n", "x".repeat(9 * 1024));
    expect_problem(put(&admin, &big).await, 400, "waf.string_too_long").await;

    // Nothing was stored, and nothing narrows.
    expect_problem(admin.get("/v1/policies").await, 404, "policy.not_found").await;
    assert_eq!(admin.get("/v1/users").await.status(), 200);

    // A valid text passes the dry run without being stored.
    let ok = json(
        admin
            .post(
                "/v1/policies/validate",
                &json!({"policies": "forbid(principal, action, resource) unless { context.mfa_age < 300 };"}),
            )
            .await,
    )
    .await;
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["policies"], 1);
    expect_problem(admin.get("/v1/policies").await, 404, "policy.not_found").await;
}

async fn a_permit_never_widens_a_grant(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let member = acme.user(Role::Member).await;
    put_ok(&admin, "permit(principal, action, resource);").await;
    // The member lacks platform.user.read: still 403, for the capability, not the policy.
    expect_problem(member.get("/v1/users").await, 403, "authz.forbidden").await;
    assert_eq!(member.get("/v1/me").await.status(), 200);
}

async fn forbid_narrows_by_time_window_and_weekday(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let member = acme.user(Role::Member).await;
    let now = time::OffsetDateTime::now_utc();
    let today = now.weekday().to_string().to_ascii_lowercase();
    let tomorrow = now.weekday().next().to_string().to_ascii_lowercase();
    let far_hour = (now.hour() + 12) % 24;

    // Forbidden "today or tomorrow, outside the hour twelve hours away": that is now.
    put_ok(
        &admin,
        &format!(
            r#"forbid(principal, action, resource) when {{ context.hour_utc != {far_hour} && ["{today}", "{tomorrow}"].contains(context.weekday) }};"#
        ),
    )
    .await;
    expect_problem(member.get("/v1/me").await, 403, "authz.policy_denied").await;
    // Forbidden only in the far hour: allowed now (the change is effective at once).
    put_ok(
        &admin,
        &format!("forbid(principal, action, resource) when {{ context.hour_utc == {far_hour} }};"),
    )
    .await;
    assert_eq!(member.get("/v1/me").await.status(), 200);
    // Forbidden on another weekday only: allowed.
    let other = now.weekday().next().next().to_string().to_ascii_lowercase();
    put_ok(
        &admin,
        &format!(r#"forbid(principal, action, resource) when {{ context.weekday == "{other}" }};"#),
    )
    .await;
    assert_eq!(member.get("/v1/me").await.status(), 200);
}

async fn forbid_unless_recent_mfa_denies_without_totp_and_allows_after_step_up(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let member = acme.user(Role::Member).await;
    put_ok(
        &admin,
        r#"forbid(principal, action == Palisade::Action::"self.profile.read", resource) unless { context.mfa_age < 300 };"#,
    )
    .await;
    // A user who never proved TOTP (mfa_age is "never") is denied.
    expect_problem(member.get("/v1/me").await, 403, "authz.policy_denied").await;
    // The same user after a real step-up is allowed.
    let member_stepped = stepped_up(&app, &member).await;
    assert_eq!(member_stepped.get("/v1/me").await.status(), 200);
}

async fn an_evaluation_error_denies(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let member = acme.user(Role::Member).await;
    // Valid in strict mode, but overflows at run time for a user who never proved TOTP. Cedar skips an
    // erroring policy, which for this forbid would allow; Palisade denies.
    put_ok(
        &admin,
        "forbid(principal, action, resource) when { context.mfa_age + 1 < 0 };",
    )
    .await;
    expect_problem(member.get("/v1/me").await, 403, "authz.policy_error").await;
}

async fn a_stored_policy_that_no_longer_validates_denies(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let member = acme.user(Role::Member).await;
    put_ok(
        &admin,
        "forbid(principal, action, resource) when { context.mfa_age < 0 };",
    )
    .await;
    assert_eq!(member.get("/v1/me").await.status(), 200);
    // As if the configuration had dropped a capability the stored text names: the text (and etag)
    // change under the server's feet. (A configuration change comes with a restart, which empties
    // the compiled-policy cache; this instance runs with the cache off to see the change at once.)
    app.raw_sql(&format!(
        "UPDATE tenant_policies SET policies = 'forbid(principal, action == Palisade::Action::\"gone.read\", resource);', etag = 'rewritten' WHERE tenant_id = '{}'",
        acme.tenant.id
    ))
    .await
    .unwrap();
    expect_problem(member.get("/v1/me").await, 403, "authz.policy_error").await;
    // The policy routes stay usable, so administrators can repair it.
    assert_eq!(admin.get("/v1/policies").await.status(), 200);
    assert_eq!(admin.delete("/v1/policies").await.status(), 204);
    assert_eq!(member.get("/v1/me").await.status(), 200);
}

async fn one_tenants_policies_never_touch_another(app: TestApp) {
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let acme_admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let acme_member = acme.user(Role::Member).await;
    let globex_member = globex.user(Role::Member).await;
    put_ok(
        &acme_admin,
        r#"@id("lockdown") forbid(principal, action, resource);"#,
    )
    .await;

    expect_problem(acme_member.get("/v1/me").await, 403, "authz.policy_denied").await;
    assert_eq!(globex_member.get("/v1/me").await.status(), 200);
    // A system admin acting on acme is bound by acme's policies too...
    let root = app.system_admin().await;
    let on_acme = root.acting_on(acme.tenant.id);
    expect_problem(on_acme.get("/v1/users").await, 403, "authz.policy_denied").await;
    assert_eq!(
        root.acting_on(globex.tenant.id)
            .get("/v1/users")
            .await
            .status(),
        200
    );
    // ...except on the policy routes, which policies never govern (no lock-out).
    assert_eq!(on_acme.get("/v1/policies").await.status(), 200);
    assert_eq!(acme_admin.get("/v1/policies").await.status(), 200);
    // Deleting the document lifts the restriction at once.
    assert_eq!(acme_admin.delete("/v1/policies").await.status(), 204);
    assert_eq!(acme_member.get("/v1/me").await.status(), 200);
}

async fn members_and_viewers_cannot_read_or_write_policies(app: TestApp) {
    let acme = app.tenant("acme").await;
    for role in [Role::Member, Role::Viewer] {
        let actor = acme.user(role).await;
        expect_problem(actor.get("/v1/policies").await, 403, "authz.forbidden").await;
        expect_problem(
            actor.get("/v1/policies/schema").await,
            403,
            "authz.forbidden",
        )
        .await;
        expect_problem(
            put(&actor, "forbid(principal, action, resource);").await,
            403,
            "authz.forbidden",
        )
        .await;
        expect_problem(actor.delete("/v1/policies").await, 403, "authz.forbidden").await;
        expect_problem(
            actor
                .post("/v1/policies/validate", &json!({"policies": ""}))
                .await,
            403,
            "authz.forbidden",
        )
        .await;
    }
    expect_problem(
        app.anonymous().get("/v1/policies").await,
        401,
        "auth.unauthenticated",
    )
    .await;
}

each_backend!(
    policy_crud_needs_step_up_honours_if_match_and_is_audited,
    unparsable_and_schema_invalid_policies_are_refused_and_nothing_is_stored,
    a_permit_never_widens_a_grant,
    forbid_narrows_by_time_window_and_weekday,
    forbid_unless_recent_mfa_denies_without_totp_and_allows_after_step_up,
    an_evaluation_error_denies,
    one_tenants_policies_never_touch_another,
    members_and_viewers_cannot_read_or_write_policies,
);

/// An instance without the principal and policy caches (`auth.principal_cache_secs = 0`).
async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.auth.principal_cache_secs = 0).await
}

each_backend_with_spawn!(a_stored_policy_that_no_longer_validates_denies);

/// `X-Forwarded-For` is trusted across one proxy hop, so the client IP the policy sees is chosen here.
async fn forbid_narrows_by_client_ip(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.server.trusted_proxy_hops = 1).await else {
        return;
    };
    let acme = app.tenant("acme").await;
    let admin = stepped_up(&app, &acme.user(Role::TenantAdmin).await).await;
    let member = acme.user(Role::Member).await;
    put_ok(
        &admin,
        r#"@id("office-only") forbid(principal, action, resource) unless { context.ip.isInRange(ip("10.0.0.0/8")) };"#,
    )
    .await;
    let from = |ip: &str| {
        member
            .request(reqwest::Method::GET, "/v1/me")
            .header("x-forwarded-for", ip)
            .send()
    };
    assert_eq!(from("10.1.2.3").await.unwrap().status(), 200);
    expect_problem(from("192.0.2.7").await.unwrap(), 403, "authz.policy_denied").await;
    expect_problem(
        from("2001:db8::1").await.unwrap(),
        403,
        "authz.policy_denied",
    )
    .await;
    // Without the header the socket's loopback address is outside the range.
    expect_problem(member.get("/v1/me").await, 403, "authz.policy_denied").await;
}

mod forbid_narrows_by_client_ip {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::forbid_narrows_by_client_ip(palisade_testkit::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::forbid_narrows_by_client_ip(palisade_testkit::Backend::Postgres).await;
    }
}
