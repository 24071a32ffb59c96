//! `/v1/users`: creating users (e-mail, phone and role rules), role escalation, disabling, self-change,
//! deletion and paging.

use std::collections::HashSet;

use palisade_authz::{InternalRole, SystemScope};
use palisade_domain::{TenantKind, UserStatus};
use palisade_store::{NewUser, User, UserPatch};
use palisade_testkit::{Actor, Role, TestApp, each_backend, json};
use serde_json::{Value, json};

use crate::expect_problem;

fn user_path(actor: &Actor) -> String {
    format!("/v1/users/{}", actor.user.as_ref().unwrap().id)
}

fn first_error(body: &Value) -> (&str, &str) {
    (
        body["errors"][0]["field"].as_str().unwrap(),
        body["errors"][0]["code"].as_str().unwrap(),
    )
}

async fn a_tenant_admin_creates_a_user_with_a_lowercased_email_and_sorted_roles(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;

    // Act
    let res = admin
        .post(
            "/v1/users",
            &json!({"email": " Ada.Lovelace@Example.COM ", "phone": "+14155550123", "roles": ["viewer", "member", "viewer"]}),
        )
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
    assert_eq!(location, format!("/v1/users/{id}"));
    assert_eq!(body["email"], "ada.lovelace@example.com");
    assert_eq!(body["roles"], json!(["member", "viewer"]));
    assert_eq!(body["status"], "active");
    assert_eq!(body["phone"], "+14155550123");
    assert_eq!(body["tenant_id"], acme.tenant.id.to_string());
    assert_eq!(json(admin.get(&location).await).await, body);
    let stored: Vec<User> = app
        .users_of(&acme.tenant)
        .await
        .into_iter()
        .filter(|u| u.id.to_string() == id)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].email, "ada.lovelace@example.com");
    assert_eq!(
        stored[0].roles,
        vec!["member".to_owned(), "viewer".to_owned()]
    );
}

async fn a_user_created_without_roles_holds_none(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;

    // Act
    let res = admin
        .post("/v1/users", &json!({"email": "plain@acme.test"}))
        .await;

    // Assert
    assert_eq!(res.status(), 201);
    let body = json(res).await;
    assert_eq!(body["roles"], json!([]));
    assert_eq!(body["phone"], Value::Null);
}

async fn a_duplicate_email_in_the_same_tenant_is_refused_with_409(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    assert_eq!(
        admin
            .post("/v1/users", &json!({"email": "ada@example.com"}))
            .await
            .status(),
        201
    );
    let before = app.users_of(&acme.tenant).await;

    for email in ["ada@example.com", "ADA@Example.com", "  ada@example.com"] {
        // Act
        let res = admin
            .post(
                "/v1/users",
                &json!({"email": email, "roles": ["tenant_admin"]}),
            )
            .await;
        // Assert
        expect_problem(res, 409, "user.email_taken").await;
    }
    assert_eq!(app.users_of(&acme.tenant).await, before);
}

async fn the_same_email_in_another_tenant_is_accepted(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let acme_admin = acme.user(Role::TenantAdmin).await;
    let globex_admin = globex.user(Role::TenantAdmin).await;
    assert_eq!(
        acme_admin
            .post("/v1/users", &json!({"email": "ada@example.com"}))
            .await
            .status(),
        201
    );

    // Act
    let res = globex_admin
        .post("/v1/users", &json!({"email": "ada@example.com"}))
        .await;

    // Assert
    assert_eq!(res.status(), 201);
    assert_eq!(json(res).await["tenant_id"], globex.tenant.id.to_string());
    for tenant in [&acme.tenant, &globex.tenant] {
        assert_eq!(
            app.users_of(tenant)
                .await
                .iter()
                .filter(|u| u.email == "ada@example.com")
                .count(),
            1
        );
    }
}

async fn an_invalid_email_is_refused_with_422_naming_the_email(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let before = app.users_of(&acme.tenant).await;
    let long_local = format!("{}@x.com", "a".repeat(65));
    let long_total = format!("a@{}.com", "b".repeat(260));
    let bad = [
        "",
        "   ",
        "ada",
        "@x.com",
        "ada@",
        "ada@x",
        "a b@x.com",
        "ada@-x.com",
        "ada@x..com",
        "a@b@c.com",
        "ada@x\n.com",
        &long_local,
        &long_total,
    ];

    for email in bad {
        // Act
        let res = admin.post("/v1/users", &json!({ "email": email })).await;
        // Assert
        assert_eq!(res.status(), 422, "{email:?}");
        let body = expect_problem(res, 422, "validation.failed").await;
        assert_eq!(first_error(&body), ("email", "invalid_email"), "{email:?}");
    }
    assert_eq!(app.users_of(&acme.tenant).await, before);
}

async fn an_invalid_phone_is_refused_with_422_naming_the_phone(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let before = app.users_of(&acme.tenant).await;

    for phone in [
        "",
        "14155550123",
        "+0123456789",
        "+1 415 555 0123",
        "+12",
        "+1234567890123456",
        "+1415555012a",
        "+١٤١٥٥٥٥٠١٢٣",
    ] {
        // Act
        let res = admin
            .post(
                "/v1/users",
                &json!({"email": "phone@acme.test", "phone": phone}),
            )
            .await;
        // Assert
        let body = expect_problem(res, 422, "validation.failed").await;
        assert_eq!(first_error(&body), ("phone", "invalid_phone"), "{phone:?}");
    }
    assert_eq!(app.users_of(&acme.tenant).await, before);
}

async fn an_unknown_role_is_refused_with_unknown_role(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let before = app.users_of(&acme.tenant).await;

    for role in ["root", "Member", "tenant-admin", "", "member "] {
        // Act
        let created = admin
            .post(
                "/v1/users",
                &json!({"email": "roles@acme.test", "roles": ["member", role]}),
            )
            .await;
        let patched = admin
            .patch(&user_path(&member), &json!({"roles": ["viewer", role]}))
            .await;
        // Assert
        let body = expect_problem(created, 422, "validation.failed").await;
        assert_eq!(first_error(&body), ("roles[1]", "unknown_role"), "{role:?}");
        let body = expect_problem(patched, 422, "validation.failed").await;
        assert_eq!(first_error(&body), ("roles[1]", "unknown_role"), "{role:?}");
    }
    assert_eq!(app.users_of(&acme.tenant).await, before);
}

async fn more_than_16_roles_are_refused(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let before = app.users_of(&acme.tenant).await;

    // Act
    let res = admin
        .post(
            "/v1/users",
            &json!({"email": "many@acme.test", "roles": vec!["member"; 17]}),
        )
        .await;

    // Assert
    let body = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(first_error(&body), ("roles", "too_many"));
    assert_eq!(app.users_of(&acme.tenant).await, before);
}

async fn admin_roles_outside_their_tenant_kind_are_refused_with_role_not_allowed(app: TestApp) {
    // Arrange: the system admin holds every capability, so only the tenant kind can refuse.
    let system_admin = app.system_admin().await;
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let client = app
        .tenant_under("client", TenantKind::Tenant, Some(&partner.tenant))
        .await;
    let acme = app.tenant("acme").await;
    let acme_member = acme.user(Role::Member).await;
    let partner_admin = partner.user(Role::PartnerAdmin).await;
    let cases = [
        (&system_admin, &acme.tenant, "system_admin"),
        (&system_admin, &partner.tenant, "system_admin"),
        (&system_admin, &acme.tenant, "partner_admin"),
        (&system_admin, app.system_tenant(), "partner_admin"),
        (&partner_admin, &client.tenant, "partner_admin"),
        (&partner_admin, &client.tenant, "system_admin"),
    ];

    for (actor, tenant, role) in cases {
        let before = app.users_of(tenant).await;
        // Act
        let res = actor
            .acting_on(tenant.id)
            .post(
                "/v1/users",
                &json!({"email": "boss@role.test", "roles": [role]}),
            )
            .await;
        // Assert
        let body = expect_problem(res, 422, "validation.failed").await;
        assert_eq!(
            first_error(&body),
            ("roles[0]", "role_not_allowed"),
            "{role} in {}",
            tenant.slug
        );
        assert_eq!(app.users_of(tenant).await, before);
    }
    // Promoting an existing user is refused the same way.
    let res = system_admin
        .acting_on(acme.tenant.id)
        .patch(
            &user_path(&acme_member),
            &json!({"roles": ["system_admin"]}),
        )
        .await;
    let body = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(first_error(&body), ("roles[0]", "role_not_allowed"));
    assert_eq!(
        app.users_of(&acme.tenant)
            .await
            .iter()
            .find(|u| u.id == acme_member.user.as_ref().unwrap().id)
            .unwrap()
            .roles,
        vec!["member"]
    );
}

async fn a_tenant_admin_cannot_grant_a_role_carrying_a_capability_it_lacks(app: TestApp) {
    // Arrange: tenant_admin lacks `platform.tenant.create`, which partner_admin carries; a partner
    // tenant's tenant_admin is the one place where both roles may exist side by side.
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let partner_tenant_admin = partner.user(Role::TenantAdmin).await;
    let partner_member = partner.user(Role::Member).await;
    let escalations: [&[&str]; 3] = [
        &["partner_admin"],
        &["member", "partner_admin"],
        &["partner_admin", "tenant_admin"],
    ];

    for roles in escalations {
        let before = app.users_of(&partner.tenant).await;
        // Act
        let created = partner_tenant_admin
            .post(
                "/v1/users",
                &json!({"email": "climber@escalate.test", "roles": roles}),
            )
            .await;
        let promoted = partner_tenant_admin
            .patch(&user_path(&partner_member), &json!({ "roles": roles }))
            .await;
        // Assert
        for res in [created, promoted] {
            let body = expect_problem(res, 403, "authz.role_escalation").await;
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("`platform.tenant.create`"),
                "{body}"
            );
        }
        assert_eq!(app.users_of(&partner.tenant).await, before, "{roles:?}");
    }
    // Control: the partner admin holds what partner_admin carries, so it may grant it.
    let partner_admin = partner.user(Role::PartnerAdmin).await;
    assert_eq!(
        partner_admin
            .post(
                "/v1/users",
                &json!({"email": "deputy@partner.test", "roles": ["partner_admin"]})
            )
            .await
            .status(),
        201
    );
}

async fn a_system_tenant_admin_cannot_grant_system_admin(app: TestApp) {
    // Arrange: the test kit signs in only the owner of the system tenant, so the owner is demoted to
    // tenant_admin in the store (system scope, but without the system-only capabilities), and a second
    // system_admin and a member are created beside it.
    let system = app.system_tenant().clone();
    let scope = SystemScope::internal(InternalRole::Bootstrap).tenant_scope(system.to_ref());
    let users = &app.state.stores().users;
    let owner_email = app.state.settings().bootstrap.owner_email.clone();
    let owner = users
        .find_user_by_email(&scope, &owner_email)
        .await
        .unwrap()
        .unwrap();
    let patch = UserPatch {
        status: None,
        roles: Some(vec!["tenant_admin".to_owned()]),
        ..UserPatch::default()
    };
    users
        .update_user(
            &scope,
            owner.id,
            patch,
            &palisade_store::AuditMeta::system("test"),
        )
        .await
        .unwrap();
    let ops = app.system_admin().await;
    let new = |email: &str, role: &str| NewUser {
        email: email.to_owned(),
        phone: None,
        roles: vec![role.to_owned()],
    };
    let root = users
        .create_user(
            &scope,
            new("root@system.test", "system_admin"),
            &palisade_store::AuditMeta::system("test"),
        )
        .await
        .unwrap();
    let candidate = users
        .create_user(
            &scope,
            new("candidate@system.test", "member"),
            &palisade_store::AuditMeta::system("test"),
        )
        .await
        .unwrap();
    let before = app.users_of(&system).await;

    // Act
    let created = ops
        .post(
            "/v1/users",
            &json!({"email": "root2@system.test", "roles": ["system_admin"]}),
        )
        .await;
    let promoted = ops
        .patch(
            &format!("/v1/users/{}", candidate.id),
            &json!({"roles": ["system_admin"]}),
        )
        .await;
    let disabled_root = ops
        .patch(
            &format!("/v1/users/{}", root.id),
            &json!({"status": "disabled"}),
        )
        .await;
    let deleted_root = ops.delete(&format!("/v1/users/{}", root.id)).await;

    // Assert
    for res in [created, promoted, disabled_root, deleted_root] {
        expect_problem(res, 403, "authz.role_escalation").await;
    }
    assert_eq!(app.users_of(&system).await, before);
    // Control: the same admin may grant what it holds.
    assert_eq!(
        ops.patch(
            &format!("/v1/users/{}", candidate.id),
            &json!({"roles": ["tenant_admin"]})
        )
        .await
        .status(),
        200
    );
}

async fn a_tenant_admin_cannot_change_or_delete_a_user_holding_capabilities_it_lacks(app: TestApp) {
    // Arrange
    let partner = app
        .tenant_under("partner-one", TenantKind::Partner, None)
        .await;
    let partner_admin = partner.user(Role::PartnerAdmin).await;
    let tenant_admin = partner.user(Role::TenantAdmin).await;
    let before = app.users_of(&partner.tenant).await;
    let path = user_path(&partner_admin);

    // Act
    let disabled = tenant_admin
        .patch(&path, &json!({"status": "disabled"}))
        .await;
    let demoted = tenant_admin
        .patch(&path, &json!({"roles": ["member"]}))
        .await;
    let deleted = tenant_admin.delete(&path).await;

    // Assert
    expect_problem(disabled, 403, "authz.role_escalation").await;
    expect_problem(demoted, 403, "authz.role_escalation").await;
    expect_problem(deleted, 403, "authz.role_escalation").await;
    assert_eq!(app.users_of(&partner.tenant).await, before);
    assert_eq!(
        partner_admin.get("/v1/users").await.status(),
        200,
        "the partner admin still acts"
    );
}

async fn a_member_cannot_create_change_or_delete_users(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let viewer = acme.user(Role::Viewer).await;
    let before = app.users_of(&acme.tenant).await;

    for actor in [&member, &viewer] {
        // Act and assert
        let created = actor
            .post(
                "/v1/users",
                &json!({"email": "sneaky@acme.test", "roles": ["tenant_admin"]}),
            )
            .await;
        expect_problem(created, 403, "authz.forbidden").await;
        expect_problem(actor.get("/v1/users").await, 403, "authz.forbidden").await;
        expect_problem(
            actor
                .patch(&user_path(&admin), &json!({"status": "disabled"}))
                .await,
            403,
            "authz.forbidden",
        )
        .await;
        expect_problem(
            actor.delete(&user_path(&admin)).await,
            403,
            "authz.forbidden",
        )
        .await;
    }
    assert_eq!(app.users_of(&acme.tenant).await, before);
}

async fn a_disabled_user_is_refused_on_its_next_request(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let colleague = acme.user(Role::TenantAdmin).await;
    assert_eq!(colleague.get("/v1/users").await.status(), 200);

    // Act
    let res = admin
        .patch(&user_path(&colleague), &json!({"status": "disabled"}))
        .await;

    // Assert
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["status"], "disabled");
    assert_eq!(
        body["roles"],
        json!(["tenant_admin"]),
        "a status change keeps the roles"
    );
    let refused = colleague.get("/v1/users").await;
    assert_eq!(
        refused.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"palisade\", error=\"invalid_token\""
    );
    expect_problem(refused, 401, "auth.invalid_token").await;
    expect_problem(
        colleague.get(&user_path(&admin)).await,
        401,
        "auth.invalid_token",
    )
    .await;
    let id = colleague.user.as_ref().unwrap().id;
    let stored = app
        .users_of(&acme.tenant)
        .await
        .into_iter()
        .find(|u| u.id == id)
        .unwrap();
    assert_eq!(stored.status, UserStatus::Disabled);

    // Re-enabled, the user can sign in again, but the old credential stays dead: disabling bumped
    // the token version.
    assert_eq!(
        admin
            .patch(&user_path(&colleague), &json!({"status": "active"}))
            .await
            .status(),
        200
    );
    expect_problem(colleague.get("/v1/users").await, 401, "auth.invalid_token").await;
    let stored = app
        .users_of(&acme.tenant)
        .await
        .into_iter()
        .find(|u| u.id == id)
        .unwrap();
    assert_eq!(stored.token_version, 1);
}

async fn a_user_cannot_change_or_delete_themself(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let owner = app.system_admin().await;
    let before = app.users_of(&acme.tenant).await;
    let system_before = app.users_of(app.system_tenant()).await;

    // Act and assert: with and without naming the home tenant explicitly.
    for actor in [
        admin.clone(),
        admin.acting_on(acme.tenant.id),
        owner.clone(),
        owner.acting_on(app.system_tenant().id),
    ] {
        let own = user_path(&actor);
        expect_problem(
            actor.patch(&own, &json!({"status": "disabled"})).await,
            403,
            "user.self_change",
        )
        .await;
        expect_problem(
            actor.patch(&own, &json!({"roles": ["member"]})).await,
            403,
            "user.self_change",
        )
        .await;
        expect_problem(actor.patch(&own, &json!({})).await, 403, "user.self_change").await;
        expect_problem(actor.delete(&own).await, 403, "user.self_change").await;
    }
    assert_eq!(app.users_of(&acme.tenant).await, before);
    assert_eq!(app.users_of(app.system_tenant()).await, system_before);
    assert_eq!(admin.get("/v1/users").await.status(), 200);
}

async fn a_tenant_admin_replaces_a_users_roles(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let id = member.user.as_ref().unwrap().id;

    // Act
    let res = admin
        .patch(
            &user_path(&member),
            &json!({"roles": ["viewer", "member", "viewer"]}),
        )
        .await;

    // Assert
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["roles"], json!(["member", "viewer"]));
    assert_eq!(body["status"], "active", "a role change keeps the status");
    let stored = app
        .users_of(&acme.tenant)
        .await
        .into_iter()
        .find(|u| u.id == id)
        .unwrap();
    assert_eq!(stored.roles, vec!["member".to_owned(), "viewer".to_owned()]);
    assert_eq!(json(admin.get(&user_path(&member)).await).await, body);
}

async fn a_deleted_user_is_gone(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let leaver = acme.user(Role::TenantAdmin).await;
    let path = user_path(&leaver);

    // Act
    let res = admin.delete(&path).await;

    // Assert
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.unwrap().is_empty());
    expect_problem(admin.get(&path).await, 404, "user.not_found").await;
    expect_problem(admin.delete(&path).await, 404, "user.not_found").await;
    expect_problem(
        admin.patch(&path, &json!({"status": "active"})).await,
        404,
        "user.not_found",
    )
    .await;
    let listed = json(admin.get("/v1/users").await).await;
    let id = leaver.user.as_ref().unwrap().id;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["id"] != id.to_string())
    );
    assert!(app.users_of(&acme.tenant).await.iter().all(|u| u.id != id));
    expect_problem(leaver.get("/v1/users").await, 401, "auth.invalid_token").await;
}

async fn the_user_list_pages_across_three_pages_with_limit_2(app: TestApp) {
    // Arrange: five users.
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    for _ in 0..4 {
        let _ = acme.user(Role::Member).await;
    }
    let expected: HashSet<String> = app
        .users_of(&acme.tenant)
        .await
        .iter()
        .map(|u| u.id.to_string())
        .collect();
    assert_eq!(expected.len(), 5);

    // Act
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut path = "/v1/users?limit=2".to_owned();
    loop {
        let res = admin.get(&path).await;
        assert_eq!(res.status(), 200);
        let page = json(res).await;
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        assert!(sizes.len() <= 5, "the cursor does not terminate");
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/users?limit=2&cursor={cursor}"),
            None => break,
        }
    }

    // Assert
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by id");
}

async fn the_user_list_refuses_a_limit_outside_1_to_200(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;

    // Act and assert
    for limit in ["0", "201"] {
        expect_problem(
            admin.get(&format!("/v1/users?limit={limit}")).await,
            400,
            "pagination.invalid_limit",
        )
        .await;
    }
    assert_eq!(admin.get("/v1/users?limit=200").await.status(), 200);
}

each_backend!(
    a_tenant_admin_creates_a_user_with_a_lowercased_email_and_sorted_roles,
    a_user_created_without_roles_holds_none,
    a_duplicate_email_in_the_same_tenant_is_refused_with_409,
    the_same_email_in_another_tenant_is_accepted,
    an_invalid_email_is_refused_with_422_naming_the_email,
    an_invalid_phone_is_refused_with_422_naming_the_phone,
    an_unknown_role_is_refused_with_unknown_role,
    more_than_16_roles_are_refused,
    admin_roles_outside_their_tenant_kind_are_refused_with_role_not_allowed,
    a_tenant_admin_cannot_grant_a_role_carrying_a_capability_it_lacks,
    a_system_tenant_admin_cannot_grant_system_admin,
    a_tenant_admin_cannot_change_or_delete_a_user_holding_capabilities_it_lacks,
    a_member_cannot_create_change_or_delete_users,
    a_disabled_user_is_refused_on_its_next_request,
    a_user_cannot_change_or_delete_themself,
    a_tenant_admin_replaces_a_users_roles,
    a_deleted_user_is_gone,
    the_user_list_pages_across_three_pages_with_limit_2,
    the_user_list_refuses_a_limit_outside_1_to_200,
);
