//! The principal cache (`auth.principal_cache_secs`): an authenticated request is served without
//! reading the user and roles from the database, yet every change made through the API reaches every
//! instance at once, through the authorization epochs in the shared state. (Logout-all through a cached
//! principal is covered by `auth::logout_all_ends_every_session_of_the_user`.)

use palisade_authz::BuiltinRole as Role;
use palisade_testkit::{TestApp, each_backend};
use serde_json::json;

use crate::expect_problem;

/// Two more instances over the app's database and one Redis (with a fresh key prefix).
async fn pair_sharing_redis(app: &TestApp) -> Option<(TestApp, TestApp)> {
    let redis = TestApp::redis_url()?;
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let shared = |s: &mut palisade_server::config::Settings| {
        s.state.url = redis.clone();
        s.state.key_prefix = prefix.clone();
    };
    let one = app.spawn_sibling(shared).await;
    let two = app.spawn_sibling(shared).await;
    Some((one, two))
}

async fn role_changes_and_disabling_reach_another_instance_at_once(app: TestApp) {
    let Some((one, two)) = pair_sharing_redis(&app).await else {
        return;
    };
    // Arrange: a tenant admin signs in on `two` and is served (and cached) there.
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let user = admin.user.clone().unwrap();
    let tokens = two.sign_in(&user.email, "acme").await;
    let access = tokens["access_token"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(two.bearer(access).get("/v1/users").await.status(), 200);
    }
    let owner = one.sign_in("owner@localhost", "system").await;
    let root = one
        .bearer(owner["access_token"].as_str().unwrap())
        .acting_on(acme.tenant.id);
    let path = format!("/v1/users/{}", user.id);

    // Act: on `one`, the admin becomes a viewer.
    assert_eq!(
        root.patch(&path, &json!({"roles": ["viewer"]}))
            .await
            .status(),
        200
    );

    // Assert: `two` no longer grants what the admin role gave.
    expect_problem(
        two.bearer(access).get("/v1/users").await,
        403,
        "authz.forbidden",
    )
    .await;
    let me = palisade_testkit::json(two.bearer(access).get("/v1/me").await).await;
    assert_eq!(me["roles"], json!(["viewer"]));

    // Act and assert: disabled on `one` → refused on `two`.
    assert_eq!(
        root.patch(&path, &json!({"status": "disabled"}))
            .await
            .status(),
        200
    );
    expect_problem(
        two.bearer(access).get("/v1/me").await,
        401,
        "auth.invalid_token",
    )
    .await;
}

async fn a_custom_role_change_reaches_its_holders_at_once(app: TestApp) {
    // Arrange: a user holding a custom role that grants user reads.
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let res = admin
        .post(
            "/v1/roles",
            &json!({"name": "auditor", "inherits": [], "capabilities": ["platform.user.read"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let holder = acme.user_with_roles(&["auditor"]).await;
    let email = holder.user.clone().unwrap().email;
    let tokens = app.sign_in(&email, "acme").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.bearer(access).get("/v1/users").await.status(), 200);

    // Act: the role loses the capability.
    let res = admin
        .patch("/v1/roles/auditor", &json!({"capabilities": []}))
        .await;
    assert_eq!(res.status(), 200);

    // Assert
    expect_problem(
        app.bearer(access).get("/v1/users").await,
        403,
        "authz.forbidden",
    )
    .await;
}

each_backend!(
    role_changes_and_disabling_reach_another_instance_at_once,
    a_custom_role_change_reaches_its_holders_at_once,
);
