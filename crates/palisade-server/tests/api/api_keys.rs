//! `/v1/api-keys` and `X-API-Key` authentication: create and use, the key shown once, capabilities a
//! subset of the creator's (at creation and at every use), revocation at once on two instances,
//! expiry, allowed IPs, the checksum (no database lookup), errors never echoing the key, rotation with
//! a grace period, and both credentials at once refused.

use palisade_authz::{InternalRole, SystemScope};
use palisade_testkit::{Actor, Role, TestApp, each_backend, json};
use serde_json::{Value, json};

use crate::expect_problem;

/// Creates a key and returns the 201 body `{id, prefix, key}`.
async fn create(actor: &Actor, body: &Value) -> Value {
    let res = actor.post("/v1/api-keys", body).await;
    assert_eq!(res.status(), 201);
    json(res).await
}

/// GET `path` on `base_url` with only an API key (and optionally an X-Forwarded-For).
async fn with_key(base_url: &str, path: &str, key: &str, xff: Option<&str>) -> reqwest::Response {
    let mut rb = reqwest::Client::new()
        .get(format!("{base_url}{path}"))
        .header("x-api-key", key);
    if let Some(xff) = xff {
        rb = rb.header("x-forwarded-for", xff);
    }
    rb.send().await.unwrap()
}

async fn a_key_is_created_used_and_shown_once(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;

    // Act
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    let res = with_key(&app.base_url, "/v1/users", key, None).await;

    // Assert: the key works for what it carries and nothing else.
    assert!(key.starts_with("pal_test_"), "{key}");
    assert!(key.contains(created["prefix"].as_str().unwrap()));
    assert_eq!(res.status(), 200);
    let res = with_key(&app.base_url, "/v1/roles", key, None).await;
    expect_problem(res, 403, "authz.forbidden").await;
    // Shown once: neither the list nor the read has the key or its hash.
    let list = admin.get("/v1/api-keys").await;
    assert_eq!(list.status(), 200);
    let text = list.text().await.unwrap();
    assert!(!text.contains(key));
    assert!(!text.contains("secret_hash"));
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["items"][0]["id"], created["id"]);
    assert_eq!(
        list["items"][0]["capabilities"],
        json!(["platform.user.read"])
    );
    let one = admin
        .get(&format!("/v1/api-keys/{}", created["id"].as_str().unwrap()))
        .await;
    let text = one.text().await.unwrap();
    assert!(!text.contains(key) && !text.contains("secret"));
    // The audit actor of a key's change is the key.
    let made = create(
        &admin,
        &json!({"name": "admin-key", "capabilities": ["api_keys.create", "api_keys.read"]}),
    )
    .await;
    let res = reqwest::Client::new()
        .post(format!("{}/v1/api-keys", app.base_url))
        .header("x-api-key", made["key"].as_str().unwrap())
        .json(&json!({"name": "child", "capabilities": ["api_keys.read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let scope = SystemScope::internal(InternalRole::Bootstrap)
        .tenant_scope(app.reload(acme.tenant.id).await.to_ref());
    let entries = app
        .state
        .stores()
        .audit
        .list(
            &scope,
            &palisade_store::AuditFilter {
                actor: Some(format!("api_key:{}", made["id"].as_str().unwrap())),
                ..palisade_store::AuditFilter::default()
            },
            &palisade_store::AuditPageRequest {
                limit: 10,
                after_seq: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(entries.items.len(), 1, "one audit entry by the key");
    assert_eq!(entries.items[0].action, "api_key.create");
    let entry = serde_json::to_string(&entries.items[0].new).unwrap();
    assert!(
        !entry.contains("hash") && !entry.contains("pal_"),
        "{entry}"
    );
}

async fn capabilities_are_a_subset_of_the_creators(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;

    // Act / Assert: more than the creator holds → 403; unknown → 422; system-only → 422.
    let res = admin
        .post(
            "/v1/api-keys",
            &json!({"name": "x", "capabilities": ["security.block.read"]}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = admin
        .post(
            "/v1/api-keys",
            &json!({"name": "x", "capabilities": ["platform.tenant.create"]}),
        )
        .await;
    expect_problem(res, 403, "authz.key_escalation").await;
    let res = admin
        .post(
            "/v1/api-keys",
            &json!({"name": "x", "capabilities": ["no.such"]}),
        )
        .await;
    assert_eq!(res.status(), 422);
    // A member cannot manage keys at all.
    let member = acme.user(Role::Member).await;
    let res = member
        .post("/v1/api-keys", &json!({"name": "x", "capabilities": []}))
        .await;
    expect_problem(res, 403, "authz.forbidden").await;
}

async fn a_creator_losing_a_capability_takes_it_from_the_key(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        with_key(&app.base_url, "/v1/users", key, None)
            .await
            .status(),
        200
    );
    let user = admin.user.clone().unwrap();
    let root = app.system_admin().await.acting_on(acme.tenant.id);
    let path = format!("/v1/users/{}", user.id);

    // Act: the creator becomes a member (no platform.user.read).
    let res = root.patch(&path, &json!({"roles": ["member"]})).await;
    assert_eq!(res.status(), 200);

    // Assert: at once, although the creator's principal was just cached by the key's first use.
    let res = with_key(&app.base_url, "/v1/users", key, None).await;
    expect_problem(res, 403, "authz.forbidden").await;
    // Disabled creator → the key is refused outright.
    let res = root.patch(&path, &json!({"status": "disabled"})).await;
    assert_eq!(res.status(), 200);
    let res = with_key(&app.base_url, "/v1/users", key, None).await;
    expect_problem(res, 401, "auth.invalid_api_key").await;
}

async fn a_revoked_key_is_refused_at_once_on_every_instance(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let sibling = app.spawn_sibling(|_| {}).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        with_key(&sibling.base_url, "/v1/users", key, None)
            .await
            .status(),
        200
    );

    // Act
    let res = admin
        .delete(&format!("/v1/api-keys/{}", created["id"].as_str().unwrap()))
        .await;

    // Assert
    assert_eq!(res.status(), 204);
    for base in [&app.base_url, &sibling.base_url] {
        let res = with_key(base, "/v1/users", key, None).await;
        let body = expect_problem(res, 401, "auth.invalid_api_key").await;
        assert!(!body.to_string().contains(key), "never echo the key");
    }
    let one = json(
        admin
            .get(&format!("/v1/api-keys/{}", created["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert!(one["revoked_at"].is_string());
}

async fn an_expired_key_is_refused(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"],
                "expires_at": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        with_key(&app.base_url, "/v1/users", key, None)
            .await
            .status(),
        200
    );

    // Act: time passes (the expiry moves into the past).
    app.raw_sql(&format!(
        "UPDATE api_keys SET expires_at = 1 WHERE id = '{}'",
        created["id"].as_str().unwrap()
    ))
    .await
    .unwrap();

    // Assert
    let res = with_key(&app.base_url, "/v1/users", key, None).await;
    expect_problem(res, 401, "auth.invalid_api_key").await;
    // A past expiry is refused at creation.
    let res = admin
        .post(
            "/v1/api-keys",
            &json!({"name": "x", "capabilities": [], "expires_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(res.status(), 422);
}

async fn a_key_from_a_disallowed_ip_is_refused(app: TestApp) {
    // Arrange: an instance behind one trusted proxy, so X-Forwarded-For names the client.
    let proxied = app.spawn_sibling(|s| s.server.trusted_proxy_hops = 1).await;
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"],
                "allowed_ips": ["203.0.113.0/24"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap();

    // Act / Assert
    let ok = with_key(&proxied.base_url, "/v1/users", key, Some("203.0.113.7")).await;
    assert_eq!(ok.status(), 200);
    let res = with_key(&proxied.base_url, "/v1/users", key, Some("198.51.100.7")).await;
    expect_problem(res, 403, "auth.ip_not_allowed").await;
    // Without trusted hops the header is ignored: the loopback peer is outside the list.
    let res = with_key(&app.base_url, "/v1/users", key, Some("203.0.113.7")).await;
    expect_problem(res, 403, "auth.ip_not_allowed").await;
    // A malformed CIDR is refused at creation.
    let res = admin
        .post(
            "/v1/api-keys",
            &json!({"name": "x", "capabilities": [], "allowed_ips": ["300.1.2.3/8"]}),
        )
        .await;
    assert_eq!(res.status(), 422);
}

async fn a_mistyped_key_is_refused_without_a_lookup_and_never_echoed(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let mut typo = key.clone().into_bytes();
    let i = key.len() - 20;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();

    // Act: with the table gone, only a refusal that never reaches the database can still be a 401.
    app.raw_sql("DROP TABLE api_keys").await.unwrap();
    let res = with_key(&app.base_url, "/v1/users", &typo, None).await;

    // Assert
    let body = expect_problem(res, 401, "auth.invalid_api_key").await;
    let text = body.to_string();
    assert!(
        !text.contains(&typo) && !text.contains(&key[20..]),
        "{text}"
    );
    let res = with_key(&app.base_url, "/v1/users", "pal_test_garbage", None).await;
    let body = expect_problem(res, 401, "auth.invalid_api_key").await;
    assert!(!body.to_string().contains("garbage"));
}

async fn a_rotated_key_works_until_its_grace_ends(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
    )
    .await;
    let old = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    // Act
    let res = admin
        .post(
            &format!("/v1/api-keys/{id}/rotate"),
            &json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let rotated = json(res).await;
    let new = rotated["key"].as_str().unwrap();

    // Assert: both work during the grace period; the old one stops when it ends.
    assert_ne!(new, old);
    assert_eq!(
        with_key(&app.base_url, "/v1/users", new, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        with_key(&app.base_url, "/v1/users", old, None)
            .await
            .status(),
        200
    );
    let meta = json(
        admin
            .get(&format!("/v1/api-keys/{}", rotated["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(meta["rotated_from"], id);
    app.raw_sql(&format!(
        "UPDATE api_keys SET grace_until = 1 WHERE id = '{id}'"
    ))
    .await
    .unwrap();
    let res = with_key(&app.base_url, "/v1/users", old, None).await;
    expect_problem(res, 401, "auth.invalid_api_key").await;
    assert_eq!(
        with_key(&app.base_url, "/v1/users", new, None)
            .await
            .status(),
        200
    );
    // A rotated-away key cannot be rotated again.
    let res = admin
        .post(&format!("/v1/api-keys/{id}/rotate"), &json!({}))
        .await;
    expect_problem(res, 404, "api_key.not_found").await;
}

async fn a_key_and_a_bearer_together_are_refused(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
    )
    .await;

    // Act
    let res = admin
        .request(reqwest::Method::GET, "/v1/users")
        .header("x-api-key", created["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();

    // Assert
    expect_problem(res, 401, "auth.ambiguous_credentials").await;
}

async fn keys_are_isolated_by_tenant(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let other = globex.user(Role::TenantAdmin).await;
    let created = create(
        &admin,
        &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    // Act / Assert
    let res = other.get(&format!("/v1/api-keys/{id}")).await;
    expect_problem(res, 404, "api_key.not_found").await;
    let res = other.delete(&format!("/v1/api-keys/{id}")).await;
    expect_problem(res, 404, "api_key.not_found").await;
    let list = json(other.get("/v1/api-keys").await).await;
    assert_eq!(list["items"], json!([]));
    // The key cannot select another tenant.
    let res = reqwest::Client::new()
        .get(format!("{}/v1/users", app.base_url))
        .header("x-api-key", created["key"].as_str().unwrap())
        .header("x-tenant-id", globex.tenant.id.to_string())
        .send()
        .await
        .unwrap();
    expect_problem(res, 404, "tenant.not_found").await;
}

each_backend!(
    a_key_is_created_used_and_shown_once,
    capabilities_are_a_subset_of_the_creators,
    a_creator_losing_a_capability_takes_it_from_the_key,
    a_revoked_key_is_refused_at_once_on_every_instance,
    an_expired_key_is_refused,
    a_key_from_a_disallowed_ip_is_refused,
    a_mistyped_key_is_refused_without_a_lookup_and_never_echoed,
    a_rotated_key_works_until_its_grace_ends,
    a_key_and_a_bearer_together_are_refused,
    keys_are_isolated_by_tenant,
);
