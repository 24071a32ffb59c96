//! `/v1/tenants`: creating child tenants (slug rules, kinds, parents within reach), reading and
//! renaming them, and paging through the list.

use std::collections::HashSet;

use palisade_domain::TenantKind;

use palisade_testkit::{Role, TestApp, each_backend, json};
use serde_json::{Value, json};

use crate::{expect_problem, unknown_id};

/// An RFC 3339 timestamp of a response body.
fn timestamp(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

fn field_of_first_error(body: &Value) -> &str {
    body["errors"][0]["field"].as_str().unwrap()
}

async fn a_system_admin_creates_a_child_tenant(app: TestApp) {
    // Arrange
    let admin = app.system_admin().await;

    // Act
    let res = admin
        .post("/v1/tenants", &json!({"name": "Acme Corp", "slug": "acme"}))
        .await;

    // Assert
    assert_eq!(res.status(), 201);
    let location = res
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = json(res).await;
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/tenants/{id}"));
    assert_eq!(body["slug"], "acme");
    assert_eq!(body["name"], "Acme Corp");
    assert_eq!(body["parent_id"], app.system_tenant().id.to_string());
    assert_eq!(body["kind"], "tenant");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    // The Location names the stored tenant, which reads back the same.
    let stored = app.reload(id.parse().unwrap()).await;
    assert_eq!(stored.slug.as_str(), "acme");
    assert_eq!(stored.parent_id, Some(app.system_tenant().id));
    assert_eq!(json(admin.get(&location).await).await, body);
}

async fn a_partner_admin_creates_tenants_beneath_its_partner_and_its_children(app: TestApp) {
    // Arrange
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let admin = partner.user(Role::PartnerAdmin).await;

    // Act
    let child = json(
        admin
            .post("/v1/tenants", &json!({"name": "Client", "slug": "client"}))
            .await,
    )
    .await;
    let grandchild = admin
        .post(
            "/v1/tenants",
            &json!({"name": "Branch", "slug": "client-branch", "parent_id": child["id"]}),
        )
        .await;

    // Assert
    assert_eq!(child["parent_id"], partner.tenant.id.to_string());
    assert_eq!(child["kind"], "tenant");
    assert_eq!(grandchild.status(), 201);
    let grandchild = json(grandchild).await;
    assert_eq!(grandchild["parent_id"], child["id"]);
    let stored = app
        .reload(grandchild["id"].as_str().unwrap().parse().unwrap())
        .await;
    assert!(
        stored.path.starts_with(&partner.tenant.path),
        "the grandchild lies in the partner's subtree"
    );
}

async fn a_duplicate_slug_is_refused_with_409_wherever_it_is_used(app: TestApp) {
    // Arrange: "taken" exists under the system tenant; a partner elsewhere tries it too.
    let admin = app.system_admin().await;
    assert_eq!(
        admin
            .post("/v1/tenants", &json!({"name": "First", "slug": "taken"}))
            .await
            .status(),
        201
    );
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let partner_admin = partner.user(Role::PartnerAdmin).await;
    let before = app.all_tenants().await;

    // Act
    let again = admin
        .post("/v1/tenants", &json!({"name": "Second", "slug": "taken"}))
        .await;
    let elsewhere = partner_admin
        .post("/v1/tenants", &json!({"name": "Third", "slug": "taken"}))
        .await;
    let system_slug = admin
        .post(
            "/v1/tenants",
            &json!({"name": "Fourth", "slug": app.system_tenant().slug.as_str()}),
        )
        .await;

    // Assert
    expect_problem(again, 409, "tenant.slug_taken").await;
    expect_problem(elsewhere, 409, "tenant.slug_taken").await;
    expect_problem(system_slug, 409, "tenant.slug_taken").await;
    assert_eq!(app.all_tenants().await, before);
}

async fn an_invalid_slug_is_refused_with_422_naming_the_slug(app: TestApp) {
    // Arrange
    let admin = app.system_admin().await;
    let before = app.all_tenants().await;
    let too_long = "a".repeat(64);
    let bad = [
        "Acme",
        "ACME",
        too_long.as_str(),
        "-acme",
        "acme-",
        "ac_me",
        "ac me",
        "acme.io",
        "",
        "ácme",
        "acme/..",
    ];

    for slug in bad {
        // Act
        let res = admin
            .post("/v1/tenants", &json!({"name": "Bad Slug", "slug": slug}))
            .await;
        // Assert
        let body = expect_problem(res, 422, "validation.failed").await;
        assert_eq!(field_of_first_error(&body), "slug", "{slug:?}");
        assert_eq!(body["errors"][0]["code"], "invalid_slug", "{slug:?}");
    }
    // A NUL is refused by the WAF before the slug is looked at.
    let res = admin
        .post(
            "/v1/tenants",
            &json!({"name": "Bad Slug", "slug": "a\u{0}"}),
        )
        .await;
    expect_problem(res, 400, "waf.nul_character").await;
    assert_eq!(app.all_tenants().await, before);
    // The boundary: 63 characters is a valid slug.
    assert_eq!(
        admin
            .post(
                "/v1/tenants",
                &json!({"name": "Long", "slug": "a".repeat(63)})
            )
            .await
            .status(),
        201
    );
}

async fn a_partner_admin_cannot_create_a_partner(app: TestApp) {
    // Arrange
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let client = app
        .tenant_under("client", TenantKind::Tenant, Some(&partner.tenant))
        .await;
    let admin = partner.user(Role::PartnerAdmin).await;
    let before = app.all_tenants().await;

    // Act
    let beneath_itself = admin
        .post(
            "/v1/tenants",
            &json!({"name": "Sub", "slug": "sub-partner", "kind": "partner"}),
        )
        .await;
    let beneath_child = admin
        .post("/v1/tenants", &json!({"name": "Sub", "slug": "sub-partner", "kind": "partner", "parent_id": client.tenant.id.to_string()}))
        .await;

    // Assert
    expect_problem(beneath_itself, 403, "authz.forbidden").await;
    expect_problem(beneath_child, 403, "authz.forbidden").await;
    assert_eq!(app.all_tenants().await, before);
}

async fn a_tenant_admin_cannot_create_tenants(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let before = app.all_tenants().await;

    // Act and assert
    expect_problem(
        admin
            .post(
                "/v1/tenants",
                &json!({"name": "Child", "slug": "acme-child"}),
            )
            .await,
        403,
        "authz.forbidden",
    )
    .await;
    expect_problem(
        member
            .post(
                "/v1/tenants",
                &json!({"name": "Child", "slug": "acme-child"}),
            )
            .await,
        403,
        "authz.forbidden",
    )
    .await;
    assert_eq!(app.all_tenants().await, before);
}

async fn a_system_admin_creates_a_partner(app: TestApp) {
    // Arrange
    let admin = app.system_admin().await;

    // Act
    let res = admin
        .post(
            "/v1/tenants",
            &json!({"name": "Reseller", "slug": "reseller", "kind": "partner"}),
        )
        .await;

    // Assert
    assert_eq!(res.status(), 201);
    let body = json(res).await;
    assert_eq!(body["kind"], "partner");
    let stored = app
        .reload(body["id"].as_str().unwrap().parse().unwrap())
        .await;
    assert_eq!(stored.kind, TenantKind::Partner);
}

async fn kind_system_is_refused_with_422(app: TestApp) {
    // Arrange
    let admin = app.system_admin().await;
    let before = app.all_tenants().await;

    // Act
    let res = admin
        .post(
            "/v1/tenants",
            &json!({"name": "Second Root", "slug": "root-two", "kind": "system"}),
        )
        .await;

    // Assert
    let body = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(field_of_first_error(&body), "kind");
    assert_eq!(app.all_tenants().await, before);
}

async fn a_parent_outside_reach_answers_404(app: TestApp) {
    // Arrange
    let p1 = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let p2 = app
        .tenant_under("partner-two", TenantKind::Partner, None)
        .await;
    let c2 = app
        .tenant_under("client-two", TenantKind::Tenant, Some(&p2.tenant))
        .await;
    let direct = app.tenant("direct").await;
    let admin = p1.user(Role::PartnerAdmin).await;
    let before = app.all_tenants().await;
    let unknown = unknown_id();

    let mut bodies = Vec::new();
    for parent in [
        p2.tenant.id.to_string(),
        c2.tenant.id.to_string(),
        direct.tenant.id.to_string(),
        app.system_tenant().id.to_string(),
        unknown,
    ] {
        // Act
        let res = admin
            .post(
                "/v1/tenants",
                &json!({"name": "Implant", "slug": "implant", "parent_id": parent}),
            )
            .await;
        // Assert
        let mut body = expect_problem(res, 404, "tenant.not_found").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "an unreachable parent looks like an unknown one"
    );
    assert_eq!(app.all_tenants().await, before);
}

async fn a_malformed_parent_id_answers_404(app: TestApp) {
    // Arrange
    let admin = app.system_admin().await;
    let before = app.all_tenants().await;
    let system_id = app.system_tenant().id.to_string();
    let malformed = [
        "not-an-id",
        "",
        &system_id.to_uppercase(),
        &system_id.replace('-', ""),
        &format!("{system_id} "),
        "../",
    ];

    for parent in malformed {
        // Act
        let res = admin
            .post(
                "/v1/tenants",
                &json!({"name": "Orphan", "slug": "orphan", "parent_id": parent}),
            )
            .await;
        // Assert
        expect_problem(res, 404, "tenant.not_found").await;
    }
    assert_eq!(app.all_tenants().await, before);
}

async fn a_tenant_is_read_and_renamed_with_a_trimmed_name(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let path = format!("/v1/tenants/{}", acme.tenant.id);
    let before = json(admin.get(&path).await).await;

    // Act
    let res = admin
        .patch(&path, &json!({"name": "  Acme Renamed  "}))
        .await;

    // Assert
    assert_eq!(res.status(), 200);
    let renamed = json(res).await;
    assert_eq!(renamed["name"], "Acme Renamed");
    assert_eq!(renamed["id"], before["id"]);
    assert_eq!(renamed["slug"], before["slug"]);
    assert_eq!(renamed["created_at"], before["created_at"]);
    assert!(timestamp(&renamed["updated_at"]) >= timestamp(&before["updated_at"]));
    assert_eq!(json(admin.get(&path).await).await["name"], "Acme Renamed");
    assert_eq!(app.reload(acme.tenant.id).await.name, "Acme Renamed");
}

async fn an_empty_or_invalid_name_is_refused_on_rename(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let path = format!("/v1/tenants/{}", acme.tenant.id);
    let before = app.reload(acme.tenant.id).await;
    let too_long = "x".repeat(201);

    for name in ["", "   ", "\t\n", too_long.as_str()] {
        // Act
        let res = admin.patch(&path, &json!({ "name": name })).await;
        // Assert
        let body = expect_problem(res, 422, "validation.failed").await;
        assert_eq!(field_of_first_error(&body), "name", "{name:?}");
        assert_eq!(body["errors"][0]["code"], "invalid_name");
    }
    // A NUL is refused by the WAF before the name is looked at.
    let res = admin.patch(&path, &json!({ "name": "a\u{0}b" })).await;
    expect_problem(res, 400, "waf.nul_character").await;
    assert_eq!(app.reload(acme.tenant.id).await, before);
}

async fn an_empty_name_is_refused_on_create(app: TestApp) {
    // Arrange
    let admin = app.system_admin().await;
    let before = app.all_tenants().await;

    for name in ["", "   "] {
        // Act
        let res = admin
            .post("/v1/tenants", &json!({"name": name, "slug": "nameless"}))
            .await;
        // Assert
        let body = expect_problem(res, 422, "validation.failed").await;
        assert_eq!(field_of_first_error(&body), "name");
    }
    assert_eq!(app.all_tenants().await, before);
}

async fn the_tenant_list_refuses_a_limit_outside_1_to_200(app: TestApp) {
    // Arrange
    let admin = app.system_admin().await;

    // Act and assert
    for limit in ["0", "201", "100000"] {
        expect_problem(
            admin.get(&format!("/v1/tenants?limit={limit}")).await,
            400,
            "pagination.invalid_limit",
        )
        .await;
    }
    for limit in ["-1", "abc", "1.5", "99999999999"] {
        expect_problem(
            admin.get(&format!("/v1/tenants?limit={limit}")).await,
            400,
            "request.invalid_parameter",
        )
        .await;
    }
    expect_problem(
        admin.get("/v1/tenants?page=2").await,
        400,
        "request.unknown_parameter",
    )
    .await;
    for limit in ["1", "200"] {
        assert_eq!(
            admin
                .get(&format!("/v1/tenants?limit={limit}"))
                .await
                .status(),
            200,
            "limit={limit}"
        );
    }
}

async fn the_tenant_list_pages_through_every_tenant_exactly_once(app: TestApp) {
    // Arrange: the system tenant and seven more, some nested.
    let admin = app.system_admin().await;
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    for i in 0..3 {
        let _ = app
            .tenant_under(
                &format!("client-{i}"),
                TenantKind::Tenant,
                Some(&partner.tenant),
            )
            .await;
    }
    for i in 0..3 {
        let _ = app.tenant(&format!("direct-{i}")).await;
    }
    let expected: HashSet<String> = app
        .all_tenants()
        .await
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(expected.len(), 8);

    // Act: follow next_cursor until it is null.
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = "/v1/tenants?limit=3".to_owned();
    loop {
        let res = admin.get(&path).await;
        assert_eq!(res.status(), 200);
        let page = json(res).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        pages += 1;
        assert!(pages <= 10, "the cursor does not terminate");
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/tenants?limit=3&cursor={cursor}"),
            None => break,
        }
    }

    // Assert
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8, "every tenant once: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by id");
}

each_backend!(
    a_system_admin_creates_a_child_tenant,
    a_partner_admin_creates_tenants_beneath_its_partner_and_its_children,
    a_duplicate_slug_is_refused_with_409_wherever_it_is_used,
    an_invalid_slug_is_refused_with_422_naming_the_slug,
    a_partner_admin_cannot_create_a_partner,
    a_tenant_admin_cannot_create_tenants,
    a_system_admin_creates_a_partner,
    kind_system_is_refused_with_422,
    a_parent_outside_reach_answers_404,
    a_malformed_parent_id_answers_404,
    a_tenant_is_read_and_renamed_with_a_trimmed_name,
    an_empty_or_invalid_name_is_refused_on_rename,
    an_empty_name_is_refused_on_create,
    the_tenant_list_refuses_a_limit_outside_1_to_200,
    the_tenant_list_pages_through_every_tenant_exactly_once,
);
