//! The WAF through the real socket: the corpus of issue 7 refused with its codes before any write, on
//! authenticated and public routes; bursts of violations blocking an IP or a user on every instance;
//! the admin block list; and the security counters.

use palisade_server::config::RateQuota;
use palisade_testkit::{Actor, Role, TestApp, each_backend, json};
use reqwest::Method;
use serde_json::json;

use crate::expect_problem;

/// POSTs raw bytes as JSON.
async fn post_raw(actor: &Actor, path: &str, body: Vec<u8>) -> reqwest::Response {
    actor
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Tenant ids through the API (the admin sees every tenant within reach).
async fn tenant_ids(admin: &Actor) -> Vec<String> {
    let page = json(admin.get("/v1/tenants?limit=200").await).await;
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The corpus: (label, body of POST /v1/tenants, expected code).
fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let tenant = |name: &str| format!(r#"{{"name":"{name}","slug":"waf-probe"}}"#).into_bytes();
    let six_urls = (1..=6)
        .map(|i| format!("https://u{i}.test"))
        .collect::<Vec<_>>()
        .join(" ");
    let four_phones = "+1 415 555 0123, +44 20 7946 0958, +33 1 23 45 67 89, (212) 555-0199";
    vec![
        (
            "a string of 8,193 characters",
            tenant(&"x".repeat(8_193)),
            "waf.string_too_long",
        ),
        (
            "a key of 8,193 characters",
            format!(
                r#"{{"name":"n","slug":"waf-probe","{}":1}}"#,
                "k".repeat(8_193)
            )
            .into_bytes(),
            "waf.string_too_long",
        ),
        (
            "an overlong encoding",
            [
                b"{\"name\":\"a".as_slice(),
                b"\xC0\xAF",
                b"\",\"slug\":\"waf-probe\"}",
            ]
            .concat(),
            "waf.invalid_utf8",
        ),
        (
            "a lone 0xFF byte",
            [
                b"{\"name\":\"a".as_slice(),
                b"\xFF",
                b"\",\"slug\":\"waf-probe\"}",
            ]
            .concat(),
            "waf.invalid_utf8",
        ),
        (
            "a lone surrogate escape",
            tenant("a\\ud800b"),
            "waf.invalid_utf8",
        ),
        ("an escaped NUL", tenant("a\\u0000b"), "waf.nul_character"),
        (
            "10,000 nested arrays",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "waf.too_deep",
        ),
        (
            "100,000 unclosed arrays",
            "[".repeat(100_000).into_bytes(),
            "waf.too_deep",
        ),
        (
            "10,000 nested arrays as the name",
            format!(
                r#"{{"name":{}{},"slug":"waf-probe"}}"#,
                "[".repeat(10_000),
                "]".repeat(10_000)
            )
            .into_bytes(),
            "waf.too_deep",
        ),
        (
            "10,001 values",
            format!(
                r#"{{"name":"n","slug":"waf-probe","x":[{}]}}"#,
                vec!["0"; 10_001].join(",")
            )
            .into_bytes(),
            "waf.too_many_elements",
        ),
        ("six URLs", tenant(&six_urls), "waf.too_many_urls"),
        (
            "four phone numbers",
            tenant(four_phones),
            "waf.too_many_phones",
        ),
    ]
}

async fn the_waf_corpus_is_refused_with_its_code_and_nothing_is_written(app: TestApp) {
    let admin = app.system_admin().await;
    let before = tenant_ids(&admin).await;

    for (label, body, code) in corpus() {
        let res = post_raw(&admin, "/v1/tenants", body).await;
        let problem = expect_problem(res, 400, code).await;
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{label}");
    }

    assert_eq!(tenant_ids(&admin).await, before, "nothing was written");
    // The same body within the limits is accepted: the refusals were the WAF's.
    let ok = admin
        .post(
            "/v1/tenants",
            &json!({"name": "x".repeat(100), "slug": "waf-probe"}),
        )
        .await;
    assert_eq!(ok.status(), 201);

    // Public routes are screened too, before the handler: no code is sent.
    let outbox = app.outbox().len();
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/start",
            &json!({"channel": "email", "destination": "owner@localhost\u{0000}", "tenant": "system"}),
        )
        .await;
    expect_problem(res, 400, "waf.nul_character").await;
    assert_eq!(app.outbox().len(), outbox, "nothing was sent");
    // The server is still up.
    assert_eq!(app.anonymous().get("/health").await.status(), 200);
}

async fn ten_violations_block_an_ip_on_every_instance_until_an_admin_lifts_it(app: TestApp) {
    // Behind one trusted proxy, so the attacker's address differs from the admin's (the socket's).
    let configure = |s: &mut palisade_server::config::Settings| {
        s.server.trusted_proxy_hops = 1;
        s.waf.violations_before_block = 10;
    };
    let one = app.spawn_sibling(configure).await;
    let attacker = |path: &str, body: &[u8]| {
        one.anonymous()
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .header("x-forwarded-for", "203.0.113.9")
            .body(body.to_vec())
    };
    let bad = br#"{"channel":"email","destination":"a\u0000b","tenant":"system"}"#;
    for i in 1..=9 {
        let res = attacker("/v1/auth/otp/start", bad).send().await.unwrap();
        assert_eq!(res.status(), 400, "violation {i}");
    }
    let tenth = attacker("/v1/auth/otp/start", bad).send().await.unwrap();
    assert!(tenth.headers().get("retry-after").is_some());
    expect_problem(tenth, 403, "waf.blocked").await;
    // Blocked for every request now, even well-formed ones.
    let good = attacker(
        "/v1/auth/otp/start",
        br#"{"channel":"email","destination":"owner@localhost","tenant":"system"}"#,
    )
    .send()
    .await
    .unwrap();
    expect_problem(good, 403, "waf.blocked").await;
    let other_route = one
        .anonymous()
        .request(Method::GET, "/.well-known/jwks.json")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    expect_problem(other_route, 403, "waf.blocked").await;
    // Another client is unaffected; probes are never blocked.
    assert_eq!(
        one.anonymous().get("/.well-known/jwks.json").await.status(),
        200
    );

    let admin = one.system_admin().await;
    let blocks = json(admin.get("/v1/security/blocks").await).await;
    let items = blocks["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{blocks}");
    assert_eq!(items[0]["subject"], "ip:203.0.113.9");
    assert_eq!(items[0]["reason"], "waf.burst");
    assert!(items[0]["expires_at"].as_str().unwrap() > items[0]["created_at"].as_str().unwrap());
    let id = items[0]["id"].as_str().unwrap().to_owned();

    let lifted = admin.delete(&format!("/v1/security/blocks/{id}")).await;
    assert_eq!(lifted.status(), 204);

    let again = one
        .anonymous()
        .request(Method::GET, "/.well-known/jwks.json")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "allowed once the block is lifted");
    expect_problem(
        admin.delete(&format!("/v1/security/blocks/{id}")).await,
        404,
        "resource.not_found",
    )
    .await;
    expect_problem(
        admin.delete("/v1/security/blocks/not-an-id").await,
        404,
        "resource.not_found",
    )
    .await;
    let blocks = json(admin.get("/v1/security/blocks").await).await;
    assert_eq!(blocks["items"].as_array().unwrap().len(), 0);
}

async fn a_user_who_bursts_is_blocked_as_a_user_and_only_that_user(app: TestApp) {
    let one = app
        .spawn_sibling(|s| s.waf.violations_before_block = 10)
        .await;
    let tenant = one.tenant("bursty").await;
    let mallory = tenant.user(Role::TenantAdmin).await;
    let alice = tenant.user(Role::TenantAdmin).await;
    let six_urls = (1..=6)
        .map(|i| format!("https://u{i}.test"))
        .collect::<Vec<_>>()
        .join(" ");
    for i in 1..=9 {
        let res = mallory
            .post(
                "/v1/users",
                &json!({"email": "x@bursty.test", "roles": [six_urls]}),
            )
            .await;
        assert_eq!(res.status(), 400, "violation {i}");
    }
    let tenth = mallory
        .post(
            "/v1/users",
            &json!({"email": "x@bursty.test", "roles": [six_urls]}),
        )
        .await;
    expect_problem(tenth, 403, "waf.blocked").await;
    expect_problem(mallory.get("/v1/me").await, 403, "waf.blocked").await;
    // Same IP, another user: not blocked.
    assert_eq!(alice.get("/v1/me").await.status(), 200);
    // Tenant admins cannot see or lift deployment-wide blocks.
    expect_problem(
        alice.get("/v1/security/blocks").await,
        403,
        "authz.forbidden",
    )
    .await;
    let admin = one.system_admin().await;
    let blocks = json(admin.get("/v1/security/blocks").await).await;
    let subject = format!("user:{}", mallory.user.as_ref().unwrap().id);
    assert_eq!(blocks["items"][0]["subject"], subject.as_str());
    // Nothing was written by the refused requests.
    let users = json(admin.acting_on(tenant.tenant.id).get("/v1/users").await).await;
    assert_eq!(users["items"].as_array().unwrap().len(), 2, "{users}");
}

async fn blocks_are_shared_by_instances_over_redis(app: TestApp) {
    let Some(redis) = TestApp::redis_url() else {
        return;
    };
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let shared = |s: &mut palisade_server::config::Settings| {
        s.state.url = redis.clone();
        s.state.key_prefix = prefix.clone();
        s.server.trusted_proxy_hops = 1;
        s.waf.violations_before_block = 10;
    };
    let one = app.spawn_sibling(shared).await;
    let two = app.spawn_sibling(shared).await;
    let from = |instance: &TestApp| {
        instance
            .anonymous()
            .request(Method::POST, "/v1/auth/otp/start")
            .header("content-type", "application/json")
            .header("x-forwarded-for", "198.51.100.77")
            .body(r#"{"channel":"email","destination":"a\u0000b","tenant":"system"}"#)
    };
    // Violations on both instances add up.
    for i in 0..9 {
        let instance = if i % 2 == 0 { &one } else { &two };
        assert_eq!(from(instance).send().await.unwrap().status(), 400);
    }
    expect_problem(from(&one).send().await.unwrap(), 403, "waf.blocked").await;
    // The other instance honours the block at once.
    let res = two
        .anonymous()
        .request(Method::GET, "/.well-known/jwks.json")
        .header("x-forwarded-for", "198.51.100.77")
        .send()
        .await
        .unwrap();
    expect_problem(res, 403, "waf.blocked").await;
    // Lifted on one instance, lifted everywhere.
    let admin = two.system_admin().await;
    let blocks = json(admin.get("/v1/security/blocks").await).await;
    let id = blocks["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        admin
            .delete(&format!("/v1/security/blocks/{id}"))
            .await
            .status(),
        204
    );
    let res = one
        .anonymous()
        .request(Method::GET, "/.well-known/jwks.json")
        .header("x-forwarded-for", "198.51.100.77")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn security_stats_count_denials_rate_limits_waf_and_failed_logins(app: TestApp) {
    let one = app
        .spawn_sibling(|s| {
            s.rate_limit.anonymous = RateQuota {
                per_second: 1,
                burst: 2,
            };
        })
        .await;
    let anon = one.anonymous();
    // A denial (no credential on a protected route), then the anonymous bucket runs dry.
    assert_eq!(anon.get("/v1/tenants").await.status(), 401);
    assert_eq!(anon.get("/.well-known/jwks.json").await.status(), 200);
    assert_eq!(anon.get("/.well-known/jwks.json").await.status(), 429);
    // A WAF violation and a failed sign-in (sign-in routes have their own bucket).
    let res = post_raw(
        &anon,
        "/v1/auth/otp/start",
        br#"{"channel":"email","destination":"a\u0000b","tenant":"system"}"#.to_vec(),
    )
    .await;
    assert_eq!(res.status(), 400);
    let (challenge, code) = one.start_otp("owner@localhost", "system").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let res = anon
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": challenge, "code": wrong}),
        )
        .await;
    assert_eq!(res.status(), 401);

    let admin = one.system_admin().await;
    let stats = json(admin.get("/v1/security/stats").await).await;

    assert_eq!(stats["scope"], "instance");
    for window in ["1m", "1h", "24h", "since_start"] {
        let w = &stats["windows"][window];
        assert!(w["denials"].as_u64().unwrap() >= 1, "{window}: {stats}");
        assert!(
            w["rate_limited"].as_u64().unwrap() >= 1,
            "{window}: {stats}"
        );
        assert!(
            w["waf_violations"].as_u64().unwrap() >= 1,
            "{window}: {stats}"
        );
        assert_eq!(w["failed_logins"], 1, "{window}: {stats}");
        assert_eq!(w["waf_blocks"], 0, "{window}: {stats}");
    }
    assert_eq!(stats["rate_limit"]["backend"], "memory");
    assert_eq!(stats["rate_limit"]["degraded"], false);
    // Only holders of trust.report.read (system scope) read it.
    let tenant_admin = one
        .tenant("stats-viewer")
        .await
        .user(Role::TenantAdmin)
        .await;
    expect_problem(
        tenant_admin.get("/v1/security/stats").await,
        403,
        "authz.forbidden",
    )
    .await;
}

each_backend!(
    the_waf_corpus_is_refused_with_its_code_and_nothing_is_written,
    ten_violations_block_an_ip_on_every_instance_until_an_admin_lifts_it,
    a_user_who_bursts_is_blocked_as_a_user_and_only_that_user,
    blocks_are_shared_by_instances_over_redis,
    security_stats_count_denials_rate_limits_waf_and_failed_logins,
);
