//! Tenant isolation on every tenant route. A principal sees its home tenant and, when its scope covers
//! them, the tenants beneath it; anything else answers 404 exactly as if it did not exist, lists never
//! show it, refused writes change nothing, and a list cursor works only where it was minted.

use palisade_domain::TenantKind;
use palisade_store::{Tenant, User};
use palisade_testkit::{Actor, Role, TestApp, each_backend, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{expect_problem, unknown_id};

fn user_id(actor: &Actor) -> String {
    actor.user.as_ref().unwrap().id.to_string()
}

/// Sends one request with an optional JSON body and an optional raw `X-Tenant-Id`.
async fn send(
    actor: &Actor,
    method: Method,
    path: &str,
    body: Option<&Value>,
    tenant_header: Option<&str>,
) -> reqwest::Response {
    let mut rb = actor.request(method, path);
    if let Some(h) = tenant_header {
        rb = rb.header("x-tenant-id", h);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    rb.send().await.unwrap()
}

/// Asserts the problem and returns its body without the (per-request) `request_id`.
async fn problem_sans_request_id(res: reqwest::Response, status: u16, code: &str) -> Value {
    let mut body = expect_problem(res, status, code).await;
    body.as_object_mut().unwrap().remove("request_id");
    body
}

/// The ids in a list response.
async fn listed_ids(res: reqwest::Response) -> Vec<String> {
    assert_eq!(res.status().as_u16(), 200);
    let body = json(res).await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn ids_of_users(users: &[User]) -> Vec<String> {
    sorted(users.iter().map(|u| u.id.to_string()).collect())
}

/// Every tenant route, aimed at tenant `b` and its user `b_user`, with a body that would change
/// something if it were accepted.
fn every_tenant_route(b: &Tenant, b_user: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/tenants".to_owned(), None),
        (
            Method::POST,
            "/v1/tenants".to_owned(),
            Some(json!({"name": "Probe", "slug": "probe-tenant"})),
        ),
        (Method::GET, format!("/v1/tenants/{}", b.id), None),
        (
            Method::PATCH,
            format!("/v1/tenants/{}", b.id),
            Some(json!({"name": "Taken over"})),
        ),
        (Method::GET, "/v1/users".to_owned(), None),
        (
            Method::POST,
            "/v1/users".to_owned(),
            Some(json!({"email": "probe@evil.test", "roles": ["tenant_admin"]})),
        ),
        (Method::GET, format!("/v1/users/{b_user}"), None),
        (
            Method::PATCH,
            format!("/v1/users/{b_user}"),
            Some(json!({"status": "disabled", "roles": []})),
        ),
        (Method::DELETE, format!("/v1/users/{b_user}"), None),
    ]
}

async fn selecting_another_tenant_answers_like_an_unknown_or_malformed_tenant_on_every_route(
    app: TestApp,
) {
    // Arrange: two sibling tenants, each with an admin and a member.
    let a = app.tenant("alpha").await;
    let b = app.tenant("bravo").await;
    let a_admin = a.user(Role::TenantAdmin).await;
    let b_admin = b.user(Role::TenantAdmin).await;
    let _b_member = b.user(Role::Member).await;
    let b_users_before = app.users_of(&b.tenant).await;
    let tenants_before = app.all_tenants().await;
    let b_id = b.tenant.id.to_string();
    let headers = [
        b_id.clone(),
        unknown_id(),
        "not-a-tenant".to_owned(),
        b_id.to_uppercase(),
        format!("{{{b_id}}}"),
        format!("{b_id}' OR '1'='1"),
    ];

    for (method, path, body) in every_tenant_route(&b.tenant, &user_id(&b_admin)) {
        // Act: the same request with each header value.
        let mut bodies = Vec::new();
        for header in &headers {
            let res = send(&a_admin, method.clone(), &path, body.as_ref(), Some(header)).await;
            bodies.push(problem_sans_request_id(res, 404, "tenant.not_found").await);
        }
        // Assert: tenant B's id is indistinguishable from an unknown or malformed one.
        for (header, got) in headers.iter().zip(&bodies) {
            assert_eq!(
                got, &bodies[0],
                "{method} {path} with X-Tenant-Id {header:?}"
            );
        }
    }

    // Nothing changed in tenant B or in the tenant tree.
    assert_eq!(app.users_of(&b.tenant).await, b_users_before);
    assert_eq!(app.all_tenants().await, tenants_before);
    assert_eq!(
        b_admin.get("/v1/users").await.status(),
        200,
        "B's admin still acts"
    );
}

async fn another_tenants_user_id_answers_exactly_like_an_unknown_id(app: TestApp) {
    // Arrange
    let a = app.tenant("alpha").await;
    let b = app.tenant("bravo").await;
    let a_admin = a.user(Role::TenantAdmin).await;
    let b_admin = b.user(Role::TenantAdmin).await;
    let b_member = b.user(Role::Member).await;
    let b_users_before = app.users_of(&b.tenant).await;
    let patch = json!({"status": "disabled", "roles": ["viewer"]});
    let requests: [(Method, Option<&Value>); 3] = [
        (Method::GET, None),
        (Method::PATCH, Some(&patch)),
        (Method::DELETE, None),
    ];

    for target in [user_id(&b_admin), user_id(&b_member)] {
        for (method, body) in &requests {
            // Act
            let foreign = send(
                &a_admin,
                method.clone(),
                &format!("/v1/users/{target}"),
                *body,
                None,
            )
            .await;
            let unknown = send(
                &a_admin,
                method.clone(),
                &format!("/v1/users/{}", unknown_id()),
                *body,
                None,
            )
            .await;
            let malformed = send(
                &a_admin,
                method.clone(),
                "/v1/users/not-a-user-id",
                *body,
                None,
            )
            .await;
            // Assert
            let foreign = problem_sans_request_id(foreign, 404, "user.not_found").await;
            assert_eq!(
                foreign,
                problem_sans_request_id(unknown, 404, "user.not_found").await,
                "{method} of B's user vs an unknown id"
            );
            assert_eq!(
                foreign,
                problem_sans_request_id(malformed, 404, "user.not_found").await,
                "{method} of B's user vs a malformed id"
            );
        }
    }

    // B's users are untouched: same rows, same roles, same status, nobody deleted.
    assert_eq!(app.users_of(&b.tenant).await, b_users_before);
    assert_eq!(
        b_admin.get("/v1/users").await.status(),
        200,
        "B's admin was neither disabled nor deleted"
    );
}

async fn another_tenant_answers_exactly_like_an_unknown_tenant(app: TestApp) {
    // Arrange
    let a = app.tenant("alpha").await;
    let b = app.tenant("bravo").await;
    let a_admin = a.user(Role::TenantAdmin).await;
    let b_before = app.reload(b.tenant.id).await;
    let rename = json!({"name": "Taken over"});

    for (method, body) in [(Method::GET, None), (Method::PATCH, Some(&rename))] {
        // Act
        let foreign = send(
            &a_admin,
            method.clone(),
            &format!("/v1/tenants/{}", b.tenant.id),
            body,
            None,
        )
        .await;
        let unknown = send(
            &a_admin,
            method.clone(),
            &format!("/v1/tenants/{}", unknown_id()),
            body,
            None,
        )
        .await;
        let malformed = send(&a_admin, method.clone(), "/v1/tenants/bravo", body, None).await;
        // Assert
        let foreign = problem_sans_request_id(foreign, 404, "tenant.not_found").await;
        assert_eq!(
            foreign,
            problem_sans_request_id(unknown, 404, "tenant.not_found").await,
            "{method} B vs unknown"
        );
        assert_eq!(
            foreign,
            problem_sans_request_id(malformed, 404, "tenant.not_found").await,
            "{method} B vs malformed"
        );
    }

    assert_eq!(
        app.reload(b.tenant.id).await,
        b_before,
        "tenant B was not renamed"
    );
}

async fn lists_show_only_the_callers_own_tenant_and_users(app: TestApp) {
    // Arrange
    let a = app.tenant("alpha").await;
    let b = app.tenant("bravo").await;
    let a_admin = a.user(Role::TenantAdmin).await;
    let _a_member = a.user(Role::Member).await;
    let b_admin = b.user(Role::TenantAdmin).await;
    let b_member = b.user(Role::Member).await;

    // Act
    let users_res = a_admin.get("/v1/users").await;
    assert_eq!(users_res.status(), 200);
    let users_text = users_res.text().await.unwrap();
    let users: Value = serde_json::from_str(&users_text).unwrap();
    let tenants_res = a_admin.get("/v1/tenants").await;
    assert_eq!(tenants_res.status(), 200);
    let tenants_text = tenants_res.text().await.unwrap();
    let tenants: Value = serde_json::from_str(&tenants_text).unwrap();

    // Assert: exactly A's rows, and not a trace of B's.
    let user_ids = sorted(
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect(),
    );
    assert_eq!(user_ids, ids_of_users(&app.users_of(&a.tenant).await));
    assert_eq!(user_ids.len(), 2);
    let tenant_ids: Vec<&str> = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(tenant_ids, vec![a.tenant.id.to_string()]);
    for text in [&users_text, &tenants_text] {
        for secret in [
            b.tenant.id.to_string(),
            b.tenant.slug.to_string(),
            user_id(&b_admin),
            user_id(&b_member),
            b_admin.user.as_ref().unwrap().email.clone(),
        ] {
            assert!(
                !text.contains(&secret),
                "A's list mentions {secret}: {text}"
            );
        }
    }
}

async fn a_partner_admin_reaches_its_own_tenants_and_no_other_branch(app: TestApp) {
    // Arrange:
    //   system ── p1 (partner) ── c1 ── g1
    //          ├─ p2 (partner) ── c2
    //          └─ direct
    let p1 = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let c1 = app
        .tenant_under("client-one", TenantKind::Tenant, Some(&p1.tenant))
        .await;
    let g1 = app
        .tenant_under("grandchild-one", TenantKind::Tenant, Some(&c1.tenant))
        .await;
    let p2 = app
        .tenant_under("partner-two", TenantKind::Partner, None)
        .await;
    let c2 = app
        .tenant_under("client-two", TenantKind::Tenant, Some(&p2.tenant))
        .await;
    let direct = app.tenant("direct").await;
    let p1_admin = p1.user(Role::PartnerAdmin).await;
    let _c1_admin = c1.user(Role::TenantAdmin).await;
    let _g1_member = g1.user(Role::Member).await;
    let c2_admin = c2.user(Role::TenantAdmin).await;
    let _direct_admin = direct.user(Role::TenantAdmin).await;
    let tenants_before = app.all_tenants().await;

    // Its own children (and grandchildren) are reachable.
    for own in [&c1.tenant, &g1.tenant] {
        let ids = listed_ids(p1_admin.acting_on(own.id).get("/v1/users").await).await;
        assert_eq!(sorted(ids), ids_of_users(&app.users_of(own).await));
        assert_eq!(
            p1_admin
                .get(&format!("/v1/tenants/{}", own.id))
                .await
                .status(),
            200
        );
    }
    let listed = sorted(listed_ids(p1_admin.get("/v1/tenants").await).await);
    assert_eq!(
        listed,
        sorted(vec![
            p1.tenant.id.to_string(),
            c1.tenant.id.to_string(),
            g1.tenant.id.to_string()
        ])
    );
    let created = p1_admin
        .acting_on(c1.tenant.id)
        .post(
            "/v1/users",
            &json!({"email": "new@client-one.test", "roles": ["member"]}),
        )
        .await;
    assert_eq!(
        created.status(),
        201,
        "a partner admin creates users in its child tenant"
    );

    // Another partner, its tenant, a tenant directly under system and the system tenant are not.
    let outside = [&p2.tenant, &c2.tenant, &direct.tenant, app.system_tenant()];
    for other in outside {
        let before = app.users_of(other).await;
        let acting = p1_admin.acting_on(other.id);
        expect_problem(acting.get("/v1/users").await, 404, "tenant.not_found").await;
        expect_problem(
            acting
                .post(
                    "/v1/users",
                    &json!({"email": "spy@evil.test", "roles": ["tenant_admin"]}),
                )
                .await,
            404,
            "tenant.not_found",
        )
        .await;
        expect_problem(acting.get("/v1/tenants").await, 404, "tenant.not_found").await;
        expect_problem(
            p1_admin.get(&format!("/v1/tenants/{}", other.id)).await,
            404,
            "tenant.not_found",
        )
        .await;
        expect_problem(
            p1_admin
                .patch(
                    &format!("/v1/tenants/{}", other.id),
                    &json!({"name": "Taken over"}),
                )
                .await,
            404,
            "tenant.not_found",
        )
        .await;
        let child = p1_admin
            .post(
                "/v1/tenants",
                &json!({"name": "Implant", "slug": "implant", "parent_id": other.id.to_string()}),
            )
            .await;
        expect_problem(child, 404, "tenant.not_found").await;
        assert_eq!(
            app.users_of(other).await,
            before,
            "users of {} changed",
            other.slug
        );
    }
    // A user of the other branch is invisible even from one of p1's own tenants.
    let spy = p1_admin.acting_on(c1.tenant.id);
    expect_problem(
        spy.get(&format!("/v1/users/{}", user_id(&c2_admin))).await,
        404,
        "user.not_found",
    )
    .await;
    expect_problem(
        spy.delete(&format!("/v1/users/{}", user_id(&c2_admin)))
            .await,
        404,
        "user.not_found",
    )
    .await;

    assert_eq!(
        app.all_tenants().await,
        tenants_before,
        "no tenant was created or renamed"
    );
    assert_eq!(c2_admin.get("/v1/users").await.status(), 200);
}

async fn a_parent_tenant_admin_reaches_its_child_but_a_child_admin_not_its_parent(app: TestApp) {
    // Arrange: parent ── child (both ordinary tenants).
    let parent = app.tenant("parent-co").await;
    let child = app
        .tenant_under("child-co", TenantKind::Tenant, Some(&parent.tenant))
        .await;
    let parent_admin = parent.user(Role::TenantAdmin).await;
    let parent_member = parent.user(Role::Member).await;
    let child_admin = child.user(Role::TenantAdmin).await;
    let parent_before = app.reload(parent.tenant.id).await;
    let parent_users_before = app.users_of(&parent.tenant).await;

    // The parent's admin reaches the child.
    let ids = listed_ids(
        parent_admin
            .acting_on(child.tenant.id)
            .get("/v1/users")
            .await,
    )
    .await;
    assert_eq!(ids, vec![user_id(&child_admin)]);
    let got = parent_admin
        .get(&format!("/v1/tenants/{}", child.tenant.id))
        .await;
    assert_eq!(got.status(), 200);
    assert_eq!(json(got).await["parent_id"], parent.tenant.id.to_string());

    // The child's admin does not reach its parent, nor the system tenant.
    for above in [&parent.tenant, app.system_tenant()] {
        let acting = child_admin.acting_on(above.id);
        expect_problem(acting.get("/v1/users").await, 404, "tenant.not_found").await;
        expect_problem(
            acting
                .post("/v1/users", &json!({"email": "up@child-co.test"}))
                .await,
            404,
            "tenant.not_found",
        )
        .await;
        expect_problem(
            child_admin.get(&format!("/v1/tenants/{}", above.id)).await,
            404,
            "tenant.not_found",
        )
        .await;
        expect_problem(
            child_admin
                .patch(
                    &format!("/v1/tenants/{}", above.id),
                    &json!({"name": "Child rules"}),
                )
                .await,
            404,
            "tenant.not_found",
        )
        .await;
    }
    let path = format!("/v1/users/{}", user_id(&parent_member));
    expect_problem(child_admin.get(&path).await, 404, "user.not_found").await;
    expect_problem(
        child_admin
            .patch(&path, &json!({"status": "disabled"}))
            .await,
        404,
        "user.not_found",
    )
    .await;
    expect_problem(child_admin.delete(&path).await, 404, "user.not_found").await;
    assert_eq!(
        listed_ids(child_admin.get("/v1/tenants").await).await,
        vec![child.tenant.id.to_string()]
    );

    // Nothing above the child changed.
    assert_eq!(app.reload(parent.tenant.id).await, parent_before);
    assert_eq!(app.users_of(&parent.tenant).await, parent_users_before);
}

async fn a_system_admin_reaches_every_tenant(app: TestApp) {
    // Arrange
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let client = app
        .tenant_under("client-one", TenantKind::Tenant, Some(&partner.tenant))
        .await;
    let grandchild = app
        .tenant_under("grandchild-one", TenantKind::Tenant, Some(&client.tenant))
        .await;
    let direct = app.tenant("direct").await;
    for fixture in [&partner, &client, &grandchild, &direct] {
        let _ = fixture.user(Role::TenantAdmin).await;
    }
    let admin = app.system_admin().await;

    for tenant in [
        &partner.tenant,
        &client.tenant,
        &grandchild.tenant,
        &direct.tenant,
        app.system_tenant(),
    ] {
        // Act
        let ids = listed_ids(admin.acting_on(tenant.id).get("/v1/users").await).await;
        let got = admin.get(&format!("/v1/tenants/{}", tenant.id)).await;
        // Assert
        assert_eq!(
            sorted(ids),
            ids_of_users(&app.users_of(tenant).await),
            "users of {}",
            tenant.slug
        );
        assert_eq!(got.status(), 200);
        assert_eq!(json(got).await["slug"], tenant.slug.as_str());
    }
    let listed = sorted(listed_ids(admin.get("/v1/tenants").await).await);
    assert_eq!(
        listed,
        sorted(
            app.all_tenants()
                .await
                .iter()
                .map(|t| t.id.to_string())
                .collect()
        )
    );
    assert_eq!(listed.len(), 5);
}

async fn sibling_tenants_under_one_parent_are_isolated(app: TestApp) {
    // Arrange: partner ── left, right; parent ── older, younger.
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let left = app
        .tenant_under("left", TenantKind::Tenant, Some(&partner.tenant))
        .await;
    let right = app
        .tenant_under("right", TenantKind::Tenant, Some(&partner.tenant))
        .await;
    let parent = app.tenant("parent-co").await;
    let older = app
        .tenant_under("older", TenantKind::Tenant, Some(&parent.tenant))
        .await;
    let younger = app
        .tenant_under("younger", TenantKind::Tenant, Some(&parent.tenant))
        .await;

    for (from, to) in [
        (&left, &right),
        (&right, &left),
        (&older, &younger),
        (&younger, &older),
    ] {
        let admin = from.user(Role::TenantAdmin).await;
        let victim = to.user(Role::Member).await;
        let before = app.users_of(&to.tenant).await;
        let victim_path = format!("/v1/users/{}", user_id(&victim));
        // Act and assert: by header, by tenant id and by user id.
        expect_problem(
            admin.acting_on(to.tenant.id).get("/v1/users").await,
            404,
            "tenant.not_found",
        )
        .await;
        expect_problem(
            admin.get(&format!("/v1/tenants/{}", to.tenant.id)).await,
            404,
            "tenant.not_found",
        )
        .await;
        expect_problem(admin.get(&victim_path).await, 404, "user.not_found").await;
        expect_problem(
            admin
                .patch(&victim_path, &json!({"status": "disabled"}))
                .await,
            404,
            "user.not_found",
        )
        .await;
        expect_problem(admin.delete(&victim_path).await, 404, "user.not_found").await;
        assert_eq!(
            app.users_of(&to.tenant).await,
            before,
            "{} changed users of {}",
            from.tenant.slug,
            to.tenant.slug
        );
    }
}

async fn a_cursor_works_only_in_the_tenant_and_list_that_minted_it(app: TestApp) {
    // Arrange: alpha (with a child) holds three users; bravo is its sibling.
    let a = app.tenant("alpha").await;
    let a_child = app
        .tenant_under("alpha-child", TenantKind::Tenant, Some(&a.tenant))
        .await;
    let b = app.tenant("bravo").await;
    let a_admin = a.user(Role::TenantAdmin).await;
    let _m1 = a.user(Role::Member).await;
    let _m2 = a.user(Role::Member).await;
    let _child_admin = a_child.user(Role::TenantAdmin).await;
    let b_admin = b.user(Role::TenantAdmin).await;
    let _b_member = b.user(Role::Member).await;
    let first = json(a_admin.get("/v1/users?limit=1").await).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let path = format!("/v1/users?limit=1&cursor={cursor}");

    // The cursor works where it was minted.
    let second = json(a_admin.get(&path).await).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(second["items"][0]["id"], first["items"][0]["id"]);

    // Replayed by another tenant, in the minting tenant's child, or on another list: refused.
    expect_problem(b_admin.get(&path).await, 400, "pagination.invalid_cursor").await;
    expect_problem(
        a_admin.acting_on(a_child.tenant.id).get(&path).await,
        400,
        "pagination.invalid_cursor",
    )
    .await;
    expect_problem(
        a_admin
            .get(&format!("/v1/tenants?limit=1&cursor={cursor}"))
            .await,
        400,
        "pagination.invalid_cursor",
    )
    .await;
}

async fn a_tampered_cursor_is_refused(app: TestApp) {
    // Arrange
    let a = app.tenant("alpha").await;
    let b = app.tenant("bravo").await;
    let admin = a.user(Role::TenantAdmin).await;
    for _ in 0..3 {
        let _ = a.user(Role::Member).await;
    }
    let b_member = b.user(Role::Member).await;
    let cursor = json(admin.get("/v1/users?limit=1").await).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let (payload, tag) = cursor.split_once('.').unwrap();
    let flip = |s: &str| {
        let mut chars: Vec<char> = s.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    // base64url (no padding) of another user's id, with the original tag.
    let forged_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user_id(&b_member))
    };
    let tampered = [
        format!("{payload}.{}", flip(tag)),
        format!("{}.{tag}", flip(payload)),
        format!("{forged_payload}.{tag}"),
        payload.to_owned(),
        format!("{payload}."),
        format!(".{tag}"),
        format!("{payload}.{tag}.{tag}"),
        String::new(),
        "garbage".to_owned(),
        "A".repeat(2000),
        format!("{payload}.{tag}%2B"),
    ];

    for bad in tampered {
        // Act and assert
        let res = admin.get(&format!("/v1/users?limit=1&cursor={bad}")).await;
        expect_problem(res, 400, "pagination.invalid_cursor").await;
    }
    // A NUL never reaches the cursor check: the WAF refuses it in the query string first.
    let res = admin
        .get(&format!("/v1/users?limit=1&cursor={payload}.{tag}%00"))
        .await;
    expect_problem(res, 400, "waf.nul_character").await;
}

each_backend!(
    selecting_another_tenant_answers_like_an_unknown_or_malformed_tenant_on_every_route,
    another_tenants_user_id_answers_exactly_like_an_unknown_id,
    another_tenant_answers_exactly_like_an_unknown_tenant,
    lists_show_only_the_callers_own_tenant_and_users,
    a_partner_admin_reaches_its_own_tenants_and_no_other_branch,
    a_parent_tenant_admin_reaches_its_child_but_a_child_admin_not_its_parent,
    a_system_admin_reaches_every_tenant,
    sibling_tenants_under_one_parent_are_isolated,
    a_cursor_works_only_in_the_tenant_and_list_that_minted_it,
    a_tampered_cursor_is_refused,
);
