//! `/v1/roles`: custom roles with inheritance. CRUD, name rules, cycles and depth, unknown and
//! system-only capabilities, escalation, what a user holding a custom role gains, deleting a role in
//! use, tenant isolation, and that members cannot manage roles.

use std::collections::BTreeSet;

use palisade_authz::{InternalRole, SystemScope};
use palisade_store::NewRole;
use palisade_testkit::{Actor, Role, TestApp, each_backend, json};
use serde_json::{Value, json};

use crate::expect_problem;

fn role(name: &str, inherits: &[&str], capabilities: &[&str]) -> Value {
    json!({"name": name, "inherits": inherits, "capabilities": capabilities})
}

async fn create(actor: &Actor, name: &str, inherits: &[&str], capabilities: &[&str]) -> Value {
    let res = actor
        .post("/v1/roles", &role(name, inherits, capabilities))
        .await;
    assert_eq!(res.status(), 201, "create {name}");
    json(res).await
}

fn first_error(body: &Value) -> (String, String) {
    (
        body["errors"][0]["field"].as_str().unwrap().to_owned(),
        body["errors"][0]["code"].as_str().unwrap().to_owned(),
    )
}

/// The capabilities `/v1/me` reports for an actor.
async fn capabilities_of(actor: &Actor) -> BTreeSet<String> {
    let me = json(actor.get("/v1/me").await).await;
    me["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

async fn a_tenant_admin_creates_reads_lists_updates_and_deletes_a_role(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;

    // Act: create
    let res = admin
        .post(
            "/v1/roles",
            &role(
                "auditor",
                &["viewer", "viewer"],
                &["platform.user.read", "platform.capability.read"],
            ),
        )
        .await;

    // Assert
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers().get("location").unwrap(), "/v1/roles/auditor");
    let created = json(res).await;
    assert_eq!(created["name"], "auditor");
    assert_eq!(created["inherits"], json!(["viewer"]));
    assert_eq!(
        created["capabilities"],
        json!(["platform.capability.read", "platform.user.read"])
    );
    assert_eq!(json(admin.get("/v1/roles/auditor").await).await, created);

    create(&admin, "support", &["auditor"], &[]).await;
    let listed = json(admin.get("/v1/roles?limit=1").await).await;
    assert_eq!(listed["items"][0]["name"], "auditor");
    let cursor = listed["next_cursor"].as_str().unwrap().to_owned();
    let next = json(
        admin
            .get(&format!("/v1/roles?limit=1&cursor={cursor}"))
            .await,
    )
    .await;
    assert_eq!(next["items"][0]["name"], "support");
    assert_eq!(next["next_cursor"], Value::Null);

    // Update one field; the other stays.
    let res = admin
        .patch(
            "/v1/roles/auditor",
            &json!({"capabilities": ["platform.user.read"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let updated = json(res).await;
    assert_eq!(updated["capabilities"], json!(["platform.user.read"]));
    assert_eq!(updated["inherits"], json!(["viewer"]));
    assert_eq!(updated["created_at"], created["created_at"]);

    // Delete the inheritor, then the role itself.
    assert_eq!(admin.delete("/v1/roles/support").await.status(), 204);
    assert_eq!(admin.delete("/v1/roles/auditor").await.status(), 204);
    expect_problem(admin.get("/v1/roles/auditor").await, 404, "role.not_found").await;
    expect_problem(
        admin.delete("/v1/roles/auditor").await,
        404,
        "role.not_found",
    )
    .await;
    expect_problem(
        admin.patch("/v1/roles/auditor", &json!({})).await,
        404,
        "role.not_found",
    )
    .await;
    let empty = json(admin.get("/v1/roles").await).await;
    assert_eq!(empty["items"], json!([]));
}

async fn role_names_must_be_well_formed_unique_and_not_built_in(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    for bad in ["", "Auditor", "1st", "a-b", &"a".repeat(64)] {
        let body = expect_problem(
            admin.post("/v1/roles", &role(bad, &[], &[])).await,
            422,
            "validation.failed",
        )
        .await;
        assert_eq!(
            first_error(&body),
            ("name".to_owned(), "invalid_name".to_owned()),
            "{bad}"
        );
    }
    for builtin in [
        "system_admin",
        "partner_admin",
        "tenant_admin",
        "member",
        "viewer",
    ] {
        let body = expect_problem(
            admin.post("/v1/roles", &role(builtin, &[], &[])).await,
            422,
            "validation.failed",
        )
        .await;
        assert_eq!(
            first_error(&body),
            ("name".to_owned(), "reserved".to_owned())
        );
    }
    create(&admin, "support", &[], &[]).await;
    expect_problem(
        admin
            .post("/v1/roles", &role("support", &["viewer"], &[]))
            .await,
        409,
        "role.name_taken",
    )
    .await;
}

async fn an_update_closing_a_cycle_is_refused(app: TestApp) {
    // Arrange: b inherits a.
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    create(&admin, "a", &[], &["platform.user.read"]).await;
    create(&admin, "b", &["a"], &[]).await;

    // Act: a inherits b, closing a → b → a.
    let res = admin
        .patch("/v1/roles/a", &json!({"inherits": ["b"]}))
        .await;

    // Assert
    expect_problem(res, 422, "role.cycle").await;
    let a = json(admin.get("/v1/roles/a").await).await;
    assert_eq!(
        a["inherits"],
        json!([]),
        "the refused update changed nothing"
    );
    // A role inheriting itself is a cycle too.
    expect_problem(
        admin
            .post("/v1/roles", &role("selfish", &["selfish"], &[]))
            .await,
        422,
        "role.cycle",
    )
    .await;
}

async fn inheritance_deeper_than_8_is_refused(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    create(&admin, "d0", &["viewer"], &["platform.user.read"]).await;
    for i in 1..=8 {
        let parent = format!("d{}", i - 1);
        create(&admin, &format!("d{i}"), &[&parent], &[]).await;
    }

    // Depth 9 is refused on create…
    expect_problem(
        admin.post("/v1/roles", &role("d9", &["d8"], &[])).await,
        422,
        "role.too_deep",
    )
    .await;
    // …and on an update that deepens the chain from below (d8 would reach depth 9).
    create(&admin, "root", &[], &[]).await;
    expect_problem(
        admin
            .patch("/v1/roles/d0", &json!({"inherits": ["root", "viewer"]}))
            .await,
        422,
        "role.too_deep",
    )
    .await;
    expect_problem(admin.get("/v1/roles/d9").await, 404, "role.not_found").await;
}

async fn unknown_capabilities_and_roles_are_refused_naming_the_index(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let body = expect_problem(
        admin
            .post(
                "/v1/roles",
                &role(
                    "x",
                    &[],
                    &["platform.user.read", "nothing.here", "Not A Capability"],
                ),
            )
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "capabilities[1]");
    assert_eq!(body["errors"][0]["code"], "unknown_capability");
    assert_eq!(body["errors"][1]["field"], "capabilities[2]");

    let body = expect_problem(
        admin
            .post("/v1/roles", &role("x", &["viewer", "ghost"], &[]))
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        first_error(&body),
        ("inherits[1]".to_owned(), "unknown_role".to_owned())
    );
    // Built-in admin roles of other tenant kinds cannot be inherited here.
    let body = expect_problem(
        admin
            .post("/v1/roles", &role("x", &["partner_admin"], &[]))
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        first_error(&body),
        ("inherits[0]".to_owned(), "role_not_allowed".to_owned())
    );
    expect_problem(admin.get("/v1/roles/x").await, 404, "role.not_found").await;
}

async fn a_system_only_capability_is_never_put_in_a_custom_role(app: TestApp) {
    // Even the system admin, who holds it, cannot put it in a role.
    let owner = app.system_admin().await;
    let body = expect_problem(
        owner
            .post(
                "/v1/roles",
                &role("partner_maker", &[], &["platform.tenant.create_partner"]),
            )
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        first_error(&body),
        ("capabilities[0]".to_owned(), "system_only".to_owned())
    );
}

async fn a_tenant_admin_cannot_create_or_touch_a_role_carrying_more_than_it_holds(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;

    // Directly and through inheritance.
    expect_problem(
        admin
            .post(
                "/v1/roles",
                &role("maker", &[], &["platform.tenant.create"]),
            )
            .await,
        403,
        "authz.role_escalation",
    )
    .await;
    // What it holds itself is fine, inherited as a whole.
    create(&admin, "deputy", &["tenant_admin"], &[]).await;
    expect_problem(
        admin
            .patch(
                "/v1/roles/deputy",
                &json!({"capabilities": ["platform.tenant.create"]}),
            )
            .await,
        403,
        "authz.role_escalation",
    )
    .await;

    // A role stored with more than the admin holds can be neither changed nor deleted by it.
    let scope = SystemScope::internal(InternalRole::Bootstrap).tenant_scope(acme.tenant.to_ref());
    app.state
        .stores()
        .roles
        .create_role(
            &scope,
            NewRole {
                name: "grower".to_owned(),
                inherits: Vec::new(),
                capabilities: vec!["platform.tenant.create".to_owned()],
            },
            &palisade_store::AuditMeta::system("test"),
        )
        .await
        .unwrap();
    expect_problem(
        admin
            .patch("/v1/roles/grower", &json!({"capabilities": []}))
            .await,
        403,
        "authz.role_escalation",
    )
    .await;
    expect_problem(
        admin.delete("/v1/roles/grower").await,
        403,
        "authz.role_escalation",
    )
    .await;
    // Nor can it hand the role to a user.
    expect_problem(
        admin
            .post(
                "/v1/users",
                &json!({"email": "g@example.com", "roles": ["grower"]}),
            )
            .await,
        403,
        "authz.role_escalation",
    )
    .await;
}

async fn a_user_given_a_custom_role_gains_exactly_its_resolved_capabilities(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    create(&admin, "reader", &["viewer"], &["platform.user.read"]).await;
    create(&admin, "team_lead", &["reader"], &[]).await;

    // Act: the admin gives a new user the inheriting role through the API.
    let res = admin
        .post(
            "/v1/users",
            &json!({"email": "lead@example.com", "roles": ["team_lead"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(json(res).await["roles"], json!(["team_lead"]));
    let lead = acme.user_with_roles(&["team_lead"]).await;

    // Assert: exactly viewer + platform.user.read + the self-service capabilities.
    let registry = app.state.capabilities();
    let mut expected: BTreeSet<String> = Role::Viewer
        .capabilities(registry)
        .iter()
        .map(ToString::to_string)
        .collect();
    expected.insert("platform.user.read".to_owned());
    for c in palisade_authz::capability::platform::SELF_SERVICE {
        expected.insert(c.to_string());
    }
    assert_eq!(capabilities_of(&lead).await, expected);
    assert_eq!(lead.get("/v1/users").await.status(), 200);
    expect_problem(
        lead.post("/v1/users", &json!({"email": "x@example.com"}))
            .await,
        403,
        "authz.forbidden",
    )
    .await;
    expect_problem(lead.get("/v1/roles").await, 403, "authz.forbidden").await;

    // A change to an inherited role reaches the holder on its next request.
    let res = admin
        .patch("/v1/roles/reader", &json!({"capabilities": []}))
        .await;
    assert_eq!(res.status(), 200);
    expect_problem(lead.get("/v1/users").await, 403, "authz.forbidden").await;
}

async fn deleting_a_role_in_use_is_refused_with_409(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    create(&admin, "base", &[], &["platform.user.read"]).await;
    create(&admin, "held", &[], &[]).await;
    create(&admin, "derived", &["base"], &[]).await;
    let holder = acme.user_with_roles(&["held"]).await;

    expect_problem(admin.delete("/v1/roles/base").await, 409, "role.in_use").await;
    expect_problem(admin.delete("/v1/roles/held").await, 409, "role.in_use").await;
    assert_eq!(admin.get("/v1/roles/base").await.status(), 200);

    // Once unused, they go.
    assert_eq!(admin.delete("/v1/roles/derived").await.status(), 204);
    assert_eq!(admin.delete("/v1/roles/base").await.status(), 204);
    let res = admin
        .patch(
            &format!("/v1/users/{}", holder.user.as_ref().unwrap().id),
            &json!({"roles": []}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(admin.delete("/v1/roles/held").await.status(), 204);
}

async fn a_tenants_roles_are_invisible_and_unusable_from_another_tenant(app: TestApp) {
    // Arrange: acme defines `auditor`.
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let acme_admin = acme.user(Role::TenantAdmin).await;
    let globex_admin = globex.user(Role::TenantAdmin).await;
    create(&acme_admin, "auditor", &[], &["platform.user.read"]).await;

    // Globex sees nothing of it.
    expect_problem(
        globex_admin.get("/v1/roles/auditor").await,
        404,
        "role.not_found",
    )
    .await;
    expect_problem(
        globex_admin
            .patch("/v1/roles/auditor", &json!({"capabilities": []}))
            .await,
        404,
        "role.not_found",
    )
    .await;
    expect_problem(
        globex_admin.delete("/v1/roles/auditor").await,
        404,
        "role.not_found",
    )
    .await;
    assert_eq!(
        json(globex_admin.get("/v1/roles").await).await["items"],
        json!([])
    );
    // Acme's tenant is out of globex's reach altogether.
    expect_problem(
        globex_admin
            .acting_on(acme.tenant.id)
            .get("/v1/roles/auditor")
            .await,
        404,
        "tenant.not_found",
    )
    .await;

    // Globex cannot give or inherit acme's role name.
    let body = expect_problem(
        globex_admin
            .post(
                "/v1/users",
                &json!({"email": "a@example.com", "roles": ["auditor"]}),
            )
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        first_error(&body),
        ("roles[0]".to_owned(), "unknown_role".to_owned())
    );
    let body = expect_problem(
        globex_admin
            .post("/v1/roles", &role("copy", &["auditor"], &[]))
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        first_error(&body),
        ("inherits[0]".to_owned(), "unknown_role".to_owned())
    );

    // A globex user holding the name (written around the API) gains nothing from acme's definition.
    let stray = globex.user_with_roles(&["auditor"]).await;
    expect_problem(stray.get("/v1/users").await, 403, "authz.forbidden").await;
    // The same name may exist in globex on its own terms.
    create(&globex_admin, "auditor", &[], &[]).await;
    expect_problem(stray.get("/v1/users").await, 403, "authz.forbidden").await;
}

async fn a_member_cannot_manage_roles(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    create(&admin, "auditor", &[], &[]).await;
    let member = acme.user(Role::Member).await;
    expect_problem(member.get("/v1/roles").await, 403, "authz.forbidden").await;
    expect_problem(
        member.get("/v1/roles/auditor").await,
        403,
        "authz.forbidden",
    )
    .await;
    expect_problem(
        member.post("/v1/roles", &role("mine", &[], &[])).await,
        403,
        "authz.forbidden",
    )
    .await;
    expect_problem(
        member
            .patch("/v1/roles/auditor", &json!({"inherits": ["member"]}))
            .await,
        403,
        "authz.forbidden",
    )
    .await;
    expect_problem(
        member.delete("/v1/roles/auditor").await,
        403,
        "authz.forbidden",
    )
    .await;
    assert_eq!(admin.get("/v1/roles/auditor").await.status(), 200);
}

each_backend!(
    a_tenant_admin_creates_reads_lists_updates_and_deletes_a_role,
    role_names_must_be_well_formed_unique_and_not_built_in,
    an_update_closing_a_cycle_is_refused,
    inheritance_deeper_than_8_is_refused,
    unknown_capabilities_and_roles_are_refused_naming_the_index,
    a_system_only_capability_is_never_put_in_a_custom_role,
    a_tenant_admin_cannot_create_or_touch_a_role_carrying_more_than_it_holds,
    a_user_given_a_custom_role_gains_exactly_its_resolved_capabilities,
    deleting_a_role_in_use_is_refused_with_409,
    a_tenants_roles_are_invisible_and_unusable_from_another_tenant,
    a_member_cannot_manage_roles,
);
