//! Rate limiting through the real socket: 429 with `Retry-After` and the IETF `RateLimit` headers,
//! exemptions, keys (user, IP, sign-in endpoints, tenant overrides), `X-Forwarded-For` across trusted
//! hops, limits shared by two instances over one Redis, and the per-instance fallback while Redis is
//! down.

use palisade_server::config::{RateQuota, Settings};
use palisade_testkit::{Backend, Role, TestApp, each_backend};
use serde_json::json;

use crate::expect_problem;

fn quota(per_second: u32, burst: u32) -> RateQuota {
    RateQuota { per_second, burst }
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Statuses of `n` anonymous GETs of a public, limited route, optionally with `X-Forwarded-For`.
async fn anonymous_gets(app: &TestApp, n: usize, xff: Option<&str>) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut rb = app
            .anonymous()
            .request(reqwest::Method::GET, "/.well-known/jwks.json");
        if let Some(xff) = xff {
            rb = rb.header("x-forwarded-for", xff);
        }
        out.push(rb.send().await.unwrap().status().as_u16());
    }
    out
}

async fn anonymous_callers_get_429_with_retry_after_and_ratelimit_headers(app: TestApp) {
    let app = app
        .spawn_sibling(|s| s.rate_limit.anonymous = quota(1, 3))
        .await;
    let anon = app.anonymous();

    let first = anon.get("/.well-known/jwks.json").await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "ratelimit-policy").as_deref(),
        Some("\"anonymous\";q=3;w=3")
    );
    assert_eq!(
        header(&first, "ratelimit").as_deref(),
        Some("\"anonymous\";r=2;t=1")
    );
    assert_eq!(anon.get("/.well-known/jwks.json").await.status(), 200);
    let third = anon.get("/.well-known/jwks.json").await;
    assert_eq!(
        header(&third, "ratelimit").as_deref(),
        Some("\"anonymous\";r=0;t=3")
    );

    let refused = anon.get("/.well-known/jwks.json").await;
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        header(&refused, "ratelimit-policy").as_deref(),
        Some("\"anonymous\";q=3;w=3")
    );
    assert!(header(&refused, "ratelimit").unwrap().contains(";r=0;"));
    expect_problem(refused, 429, "rate_limit.exceeded").await;
    // A missing credential on a protected route is limited per IP too: 429, not 401.
    expect_problem(anon.get("/v1/tenants").await, 429, "rate_limit.exceeded").await;

    // Probes and scrapes are exempt and carry no limit headers.
    for path in ["/health", "/ready", "/metrics"] {
        for _ in 0..5 {
            let res = anon.get(path).await;
            assert_eq!(res.status(), 200, "{path}");
            assert!(header(&res, "ratelimit").is_none(), "{path}");
        }
    }
}

async fn signed_in_users_are_limited_per_user_with_tenant_overrides(app: TestApp) {
    let big = app.tenant("big-customer").await;
    let big_id = big.tenant.id.to_string();
    let app = app
        .spawn_sibling(|s| {
            s.rate_limit.default = quota(1, 2);
            s.rate_limit.tenants.insert(big_id.clone(), quota(1, 5));
        })
        .await;
    let owner = app.system_admin().await;
    let small = app.tenant("small-customer").await;
    let alice = small.user(Role::Member).await;
    let bob = small.user(Role::Member).await;
    let big = app.reload(big.tenant.id).await;
    let carol = app.fixture(big).user(Role::Member).await;

    let statuses = |actor: palisade_testkit::Actor, n: usize| async move {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(actor.get("/v1/me").await.status().as_u16());
        }
        out
    };
    assert_eq!(statuses(alice.clone(), 3).await, [200, 200, 429]);
    // Another user of the same tenant has a bucket of their own.
    assert_eq!(statuses(bob, 3).await, [200, 200, 429]);
    // The big tenant's override applies to its users.
    assert_eq!(statuses(carol, 6).await, [200, 200, 200, 200, 200, 429]);
    let res = owner.get("/v1/me").await;
    assert_eq!(
        header(&res, "ratelimit-policy").as_deref(),
        Some("\"default\";q=2;w=2")
    );
    let refused = alice.get("/v1/me").await;
    assert!(header(&refused, "retry-after").is_some());
    expect_problem(refused, 429, "rate_limit.exceeded").await;
}

async fn sign_in_endpoints_have_their_own_stricter_limit_per_ip(app: TestApp) {
    let app = app.spawn_sibling(|s| s.rate_limit.auth = quota(1, 2)).await;
    let anon = app.anonymous();
    let start = json!({"channel": "email", "destination": "owner@localhost", "tenant": "system"});
    assert_eq!(anon.post("/v1/auth/otp/start", &start).await.status(), 202);
    let second = anon.post("/v1/auth/otp/start", &start).await;
    assert_eq!(second.status(), 202);
    assert_eq!(
        header(&second, "ratelimit-policy").as_deref(),
        Some("\"auth\";q=2;w=2")
    );
    let refused = anon
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": "x", "code": "1"}),
        )
        .await;
    expect_problem(refused, 429, "rate_limit.exceeded").await;
    // Other routes are counted separately.
    assert_eq!(anon.get("/.well-known/jwks.json").await.status(), 200);
}

each_backend!(
    anonymous_callers_get_429_with_retry_after_and_ratelimit_headers,
    signed_in_users_are_limited_per_user_with_tenant_overrides,
    sign_in_endpoints_have_their_own_stricter_limit_per_ip,
);

#[tokio::test]
async fn spoofed_forwarded_for_does_not_change_the_limited_ip_without_trusted_hops() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_limit.anonymous = quota(1, 2);
        s.server.trusted_proxy_hops = 0;
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for spoof in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        statuses.extend(anonymous_gets(&app, 1, Some(spoof)).await);
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "every request is the socket's IP"
    );
}

#[tokio::test]
async fn forwarded_for_selects_the_limited_ip_across_one_trusted_hop() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_limit.anonymous = quota(1, 2);
        s.server.trusted_proxy_hops = 1;
    })
    .await
    .unwrap();
    // The client forged the left entry; the proxy appended the address it saw.
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let xff = format!("6.6.6.6, {client}");
        assert_eq!(
            anonymous_gets(&app, 2, Some(&xff)).await,
            [200, 200],
            "{client}"
        );
    }
    // Forging a different left entry does not buy a fresh bucket.
    assert_eq!(
        anonymous_gets(&app, 1, Some("7.7.7.7, 198.51.100.1")).await,
        [429]
    );
    // IPv6 clients share one bucket per /64.
    assert_eq!(
        anonymous_gets(&app, 2, Some("2001:db8:1:2::1")).await,
        [200, 200]
    );
    assert_eq!(
        anonymous_gets(&app, 1, Some("2001:db8:1:2::ffff")).await,
        [429]
    );
}

/// Test settings for instances sharing one Redis under a fresh prefix.
fn shared_redis(redis: &str, prefix: &str) -> impl Fn(&mut Settings) {
    let redis = redis.to_owned();
    let prefix = prefix.to_owned();
    move |s: &mut Settings| {
        s.state.url = redis.clone();
        s.state.key_prefix = prefix.clone();
        s.rate_limit.anonymous = quota(1, 4);
        s.rate_limit.default = quota(1, 4);
    }
}

async fn limits_hold_across_two_instances_sharing_redis(app: TestApp) {
    let Some(redis) = TestApp::redis_url() else {
        return;
    };
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let one = app.spawn_sibling(shared_redis(&redis, &prefix)).await;
    let two = app.spawn_sibling(shared_redis(&redis, &prefix)).await;

    // One client IP, alternating instances: 4 in total, not 4 each.
    let mut anonymous = Vec::new();
    for i in 0..6 {
        let instance = if i % 2 == 0 { &one } else { &two };
        anonymous.extend(anonymous_gets(instance, 1, None).await);
    }
    assert_eq!(anonymous, [200, 200, 200, 200, 429, 429]);

    // One user with a real token, alternating instances: the same bucket.
    let tokens = one.sign_in("owner@localhost", "system").await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut user = Vec::new();
    for i in 0..6 {
        let instance = if i % 2 == 0 { &two } else { &one };
        user.push(
            instance
                .bearer(access)
                .get("/v1/me")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(user, [200, 200, 200, 200, 429, 429]);
    let ready = palisade_testkit::json(two.anonymous().get("/ready").await).await;
    assert_eq!(ready["checks"]["rate_limit"], "ok");
}

async fn redis_down_falls_back_to_per_instance_limits_and_ready_says_degraded(app: TestApp) {
    if TestApp::redis_url().is_none() {
        return;
    }
    // A throwaway Redis this test stops (the shared test Redis is never touched).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
        .status();
    assert!(
        started.is_ok_and(|s| s.success()),
        "redis-server is needed for this test (TEST_REDIS_URL is set)"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let url = format!("redis://127.0.0.1:{port}");
    let instance = app
        .spawn_sibling(|s| {
            s.state.url = url.clone();
            s.rate_limit.anonymous = quota(1, 3);
        })
        .await;
    assert_eq!(anonymous_gets(&instance, 1, None).await, [200]);

    let _ = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "shutdown", "nosave"])
        .status();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // SECURITY: never "no limit": the instance limits on its own with the same quota (its local
    // bucket starts full, so 3 more pass).
    let started = std::time::Instant::now();
    assert_eq!(
        anonymous_gets(&instance, 6, None).await,
        [200, 200, 200, 429, 429, 429]
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "fallback is prompt"
    );
    let ready = instance.anonymous().get("/ready").await;
    assert_eq!(ready.status(), 503, "the shared state itself is down");
    let ready = palisade_testkit::json(ready).await;
    assert_eq!(ready["checks"]["rate_limit"], "degraded");
    assert_eq!(ready["checks"]["state"], "unavailable");
    let metrics = instance
        .anonymous()
        .get("/metrics")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("palisade_rate_limit_degraded 1"),
        "{metrics}"
    );
    assert!(metrics.contains("palisade_rate_limit_fallback_decisions"));
}

each_backend!(
    limits_hold_across_two_instances_sharing_redis,
    redis_down_falls_back_to_per_instance_limits_and_ready_says_degraded,
);
