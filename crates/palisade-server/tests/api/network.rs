//! Network controls through the real socket: tenant IP allowlists (the target's list holds for every
//! caller, partner and system administrators included; the home list for the tenant's own users and
//! keys), the self-lockout guard and the CLI recovery, the platform administration allowlist, the
//! client IP taken from `X-Forwarded-For` only across trusted hops, per-key rate limits, batched
//! `last_used_at`, and the WAF on query strings and non-JSON bodies.

use palisade_server::config::{RateQuota, Settings};
use palisade_testkit::{Actor, Backend, Role, TestApp, json};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::expect_problem;

const OFFICE: &str = "198.51.100.0/24";
const INSIDE: &str = "198.51.100.7";
const OUTSIDE: &str = "203.0.113.5";

/// Runs `async fn(Backend)` on SQLite and PostgreSQL (skipped when PostgreSQL is not configured).
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(palisade_testkit::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if palisade_testkit::postgres_url().is_some() {
                        super::$name(palisade_testkit::Backend::Postgres).await;
                    }
                }
            }
        )+
    };
}

/// An app behind one trusted proxy: the client IP is the last `X-Forwarded-For` entry.
async fn behind_proxy(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_with(backend, |s| {
        s.server.trusted_proxy_hops = 1;
        configure(s);
    })
    .await
    .expect("app")
}

/// Sends a request as `actor` from client `ip` (as the trusted proxy reports it).
async fn from(
    actor: &Actor,
    ip: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let mut rb = actor
        .request(method, path)
        .header("x-forwarded-for", format!("6.6.6.6, {ip}"));
    if let Some(body) = body {
        rb = rb.json(body);
    }
    rb.send().await.unwrap()
}

async fn get_from(actor: &Actor, ip: &str, path: &str) -> Response {
    from(actor, ip, Method::GET, path, None).await
}

/// GET `path` with only an API key, from `xff` when given.
async fn with_key(base_url: &str, path: &str, key: &str, xff: Option<&str>) -> Response {
    let mut rb = reqwest::Client::new()
        .get(format!("{base_url}{path}"))
        .header("x-api-key", key);
    if let Some(xff) = xff {
        rb = rb.header("x-forwarded-for", xff);
    }
    rb.send().await.unwrap()
}

async fn tenant_allowlist_holds_for_every_caller_including_administrators(backend: Backend) {
    // Arrange: acme, its admin, a key of acme, the system admin.
    let app = behind_proxy(backend, |_| {}).await;
    let acme = app.tenant("acme").await;
    let acme_id = acme.tenant.id;
    let admin = acme.user(Role::TenantAdmin).await;
    let root = app.system_admin().await;
    let key = json(
        admin
            .post(
                "/v1/api-keys",
                &json!({"name": "ci", "capabilities": ["platform.user.read"]}),
            )
            .await,
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/tenants/{acme_id}");
    let fence = json!({"allowed_ips": [OFFICE, "198.51.100.9"]});

    // Act + Assert: a list that excludes the caller is refused unless forced; nothing is written.
    let res = from(&root, OUTSIDE, Method::PATCH, &path, Some(&fence)).await;
    expect_problem(res, 422, "network.self_lockout").await;
    assert_eq!(json(root.get(&path).await).await["allowed_ips"], json!([]));
    let bad = json!({"allowed_ips": ["10.0.0.0/8", "not-a-cidr"]});
    let res = from(&root, INSIDE, Method::PATCH, &path, Some(&bad)).await;
    let problem = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(problem["errors"][0]["field"], "allowed_ips[1]");
    // From inside the new list no force is needed; entries are canonical and de-duplicated.
    let res = from(&root, INSIDE, Method::PATCH, &path, Some(&fence)).await;
    assert_eq!(res.status(), 200);
    let view = json(res).await;
    assert_eq!(view["allowed_ips"], json!([OFFICE, "198.51.100.9/32"]));

    // The tenant's own admin and key: refused from outside, admitted from inside.
    for path in ["/v1/users", "/v1/me"] {
        expect_problem(
            get_from(&admin, OUTSIDE, path).await,
            403,
            "network.ip_not_allowed",
        )
        .await;
        assert_eq!(get_from(&admin, INSIDE, path).await.status(), 200, "{path}");
    }
    let outside = format!("6.6.6.6, {OUTSIDE}");
    let inside = format!("6.6.6.6, {INSIDE}");
    expect_problem(
        with_key(&app.base_url, "/v1/users", &key, Some(&outside)).await,
        403,
        "network.ip_not_allowed",
    )
    .await;
    assert_eq!(
        with_key(&app.base_url, "/v1/users", &key, Some(&inside))
            .await
            .status(),
        200
    );

    // The system admin acting on acme: the target's list holds for them too.
    let root_on_acme = root.acting_on(acme_id);
    expect_problem(
        get_from(&root_on_acme, OUTSIDE, "/v1/users").await,
        403,
        "network.ip_not_allowed",
    )
    .await;
    assert_eq!(
        get_from(&root_on_acme, INSIDE, "/v1/users").await.status(),
        200
    );
    // ...and when naming acme in the path from the system tenant: neither read nor lifted from outside.
    expect_problem(
        get_from(&root, OUTSIDE, &path).await,
        403,
        "network.ip_not_allowed",
    )
    .await;
    let lift = json!({"allowed_ips": [], "force": true});
    expect_problem(
        from(&root, OUTSIDE, Method::PATCH, &path, Some(&lift)).await,
        403,
        "network.ip_not_allowed",
    )
    .await;
    assert_eq!(
        json(get_from(&root, INSIDE, &path).await).await["allowed_ips"],
        view["allowed_ips"],
        "the refused PATCH changed nothing"
    );
    // The system admin's own tenant has no list: their other work is unaffected.
    assert_eq!(get_from(&root, OUTSIDE, "/v1/users").await.status(), 200);

    // A tenant out of reach still answers 404, never the network refusal.
    let other = app.tenant("other").await;
    expect_problem(
        get_from(&admin.acting_on(other.tenant.id), OUTSIDE, "/v1/users").await,
        404,
        "tenant.not_found",
    )
    .await;

    // The change is audited in the acting tenant's chain with the list before and after.
    let audit = json(root.get("/v1/audit?action=tenant.update").await).await;
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["record_id"] == acme_id.to_string())
        .expect("audit entry")
        .clone();
    assert_eq!(entry["old"]["allowed_ips"], json!([]));
    assert_eq!(entry["new"]["allowed_ips"], view["allowed_ips"]);
    assert_eq!(entry["ip"], INSIDE);
}

async fn a_partner_admin_is_fenced_by_its_customers_list_and_tenants_take_a_list_at_creation(
    backend: Backend,
) {
    let app = behind_proxy(backend, |_| {}).await;
    let partner = app
        .tenant_under("partner", palisade_domain::TenantKind::Partner, None)
        .await;
    let partner_admin = partner.user(Role::PartnerAdmin).await;

    // A partner creates a customer fenced to the customer's office: no force needed on POST.
    let res = from(
        &partner_admin,
        OUTSIDE,
        Method::POST,
        "/v1/tenants",
        Some(&json!({"name": "Customer", "slug": "customer", "allowed_ips": [OFFICE]})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let customer = json(res).await;
    assert_eq!(customer["allowed_ips"], json!([OFFICE]));
    let customer_id: palisade_domain::TenantId = customer["id"].as_str().unwrap().parse().unwrap();

    // From outside the customer's office the partner admin cannot act on the customer.
    let on_customer = partner_admin.acting_on(customer_id);
    expect_problem(
        get_from(&on_customer, OUTSIDE, "/v1/users").await,
        403,
        "network.ip_not_allowed",
    )
    .await;
    assert_eq!(
        get_from(&on_customer, INSIDE, "/v1/users").await.status(),
        200
    );
    // Invalid lists on POST are refused whole.
    let res = from(
        &partner_admin,
        INSIDE,
        Method::POST,
        "/v1/tenants",
        Some(&json!({"name": "Bad", "slug": "bad", "allowed_ips": ["300.1.1.1/8"]})),
    )
    .await;
    expect_problem(res, 422, "validation.failed").await;
    assert!(
        app.all_tenants()
            .await
            .iter()
            .all(|t| t.slug.as_str() != "bad")
    );
}

async fn a_locked_out_system_admin_recovers_with_the_cli(backend: Backend) {
    let app = behind_proxy(backend, |_| {}).await;
    let root = app.system_admin().await;
    let system = app.system_tenant().id;
    let path = format!("/v1/tenants/{system}");

    // The owner fences the system tenant away from their own address, on purpose (force).
    let res = from(
        &root,
        OUTSIDE,
        Method::PATCH,
        &path,
        Some(&json!({"allowed_ips": [OFFICE], "force": true})),
    )
    .await;
    assert_eq!(res.status(), 200);
    // Locked out everywhere: the home tenant's list holds for everything its users do.
    for p in ["/v1/me", "/v1/users", path.as_str()] {
        expect_problem(
            get_from(&root, OUTSIDE, p).await,
            403,
            "network.ip_not_allowed",
        )
        .await;
    }

    // Recovery without the API (what `palisade tenants allowed-ips system --clear` runs).
    let t = palisade_server::net::recover_tenant_allowed_ips(&app.state, "system", &[])
        .await
        .unwrap();
    assert!(t.allowed_ips.is_empty());
    assert_eq!(get_from(&root, OUTSIDE, "/v1/me").await.status(), 200);
    let bad = palisade_server::net::recover_tenant_allowed_ips(&app.state, "system", &["x".into()])
        .await
        .unwrap_err();
    assert!(bad.contains("allowed_ips[0]"), "{bad}");
    assert!(
        palisade_server::net::recover_tenant_allowed_ips(&app.state, "nope", &[])
            .await
            .is_err()
    );
    // Audited as the CLI.
    let audit = json(root.get("/v1/audit?action=tenant.update").await).await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "system:cli" && e["new"]["allowed_ips"] == json!([])),
        "{audit}"
    );
}

both_backends!(
    tenant_allowlist_holds_for_every_caller_including_administrators,
    a_partner_admin_is_fenced_by_its_customers_list_and_tenants_take_a_list_at_creation,
    a_locked_out_system_admin_recovers_with_the_cli,
);

#[tokio::test]
async fn spoofed_forwarded_for_does_not_change_the_allowlisted_ip_without_trusted_hops() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.trusted_proxy_hops = 0)
        .await
        .unwrap();
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let path = format!("/v1/tenants/{}", acme.tenant.id);
    // The socket is 127.0.0.1: a list of the office only locks out this client (hence force)...
    let res = admin
        .patch(&path, &json!({"allowed_ips": [OFFICE], "force": true}))
        .await;
    assert_eq!(res.status(), 200);
    // ...and claiming an office address in X-Forwarded-For changes nothing.
    expect_problem(
        get_from(&admin, INSIDE, "/v1/users").await,
        403,
        "network.ip_not_allowed",
    )
    .await;
    let spoofed = admin
        .request(Method::GET, "/v1/users")
        .header("x-forwarded-for", INSIDE)
        .send()
        .await
        .unwrap();
    expect_problem(spoofed, 403, "network.ip_not_allowed").await;
    // Recovered through the CLI path; a loopback list admits the socket whatever the header says.
    palisade_server::net::recover_tenant_allowed_ips(
        &app.state,
        "acme",
        &["127.0.0.0/8".to_owned()],
    )
    .await
    .unwrap();
    assert_eq!(get_from(&admin, OUTSIDE, "/v1/users").await.status(), 200);
}

#[tokio::test]
async fn platform_administration_is_refused_outside_admin_allowed_ips() {
    let app = behind_proxy(Backend::Sqlite, |s| {
        s.server.admin_allowed_ips = vec![OFFICE.parse().unwrap()];
    })
    .await;
    let root = app.system_admin().await;
    let before = app.all_tenants().await.len();

    // System-only capabilities and creating tenants: refused from outside, nothing written.
    for path in [
        "/v1/security/blocks",
        "/v1/security/stats",
        "/security/json",
    ] {
        expect_problem(
            get_from(&root, OUTSIDE, path).await,
            403,
            "network.ip_not_allowed",
        )
        .await;
        assert_eq!(get_from(&root, INSIDE, path).await.status(), 200, "{path}");
    }
    let body = json!({"name": "New", "slug": "new-tenant"});
    let res = from(&root, OUTSIDE, Method::POST, "/v1/tenants", Some(&body)).await;
    expect_problem(res, 403, "network.ip_not_allowed").await;
    assert_eq!(app.all_tenants().await.len(), before);
    let res = from(&root, INSIDE, Method::POST, "/v1/tenants", Some(&body)).await;
    assert_eq!(res.status(), 201);

    // Managing one tenant is not platform administration: a tenant admin works from anywhere.
    let admin = app.tenant("acme").await.user(Role::TenantAdmin).await;
    assert_eq!(get_from(&admin, OUTSIDE, "/v1/users").await.status(), 200);
    assert_eq!(get_from(&root, OUTSIDE, "/v1/users").await.status(), 200);
}

#[test]
fn a_bad_admin_allowlist_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("palisade.toml");
    std::fs::write(
        &file,
        "[server]\nadmin_allowed_ips = [\"10.0.0.0/8\", \"office\"]\n",
    )
    .unwrap();
    let err = Settings::load(Some(&file), &palisade_server::config::Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.admin_allowed_ips"), "{err}");
    assert!(!err.contains("office"), "the value is not echoed: {err}");
}

async fn per_key_rate_limits_are_stored_bounded_and_enforced(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.rate_limit.api_key_max = RateQuota {
            per_second: 100,
            burst: 50,
        };
    })
    .await
    .unwrap();
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let caps = json!(["platform.user.read"]);

    // Values out of range name their field; nonsense is refused by the parser; nothing is written.
    for (limit, field) in [
        (
            json!({"per_second": 0, "burst": 1}),
            "rate_limit.per_second",
        ),
        (json!({"per_second": 1, "burst": 51}), "rate_limit.burst"),
        (
            json!({"per_second": 101, "burst": 3}),
            "rate_limit.per_second",
        ),
    ] {
        let res = admin
            .post(
                "/v1/api-keys",
                &json!({"name": "k", "capabilities": caps, "rate_limit": limit}),
            )
            .await;
        let problem = expect_problem(res, 422, "validation.failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    for limit in [
        json!({"per_second": -1, "burst": 1}),
        json!({"per_second": "fast", "burst": 1}),
        json!({"per_second": 1}),
        json!({"per_second": 1, "burst": 1, "x": 1}),
        json!({"per_second": 4_294_967_296_u64, "burst": 1}),
        json!([1, 2]),
    ] {
        let res = admin
            .post(
                "/v1/api-keys",
                &json!({"name": "k", "capabilities": caps, "rate_limit": limit}),
            )
            .await;
        assert!(
            matches!(res.status().as_u16(), 400 | 422),
            "{limit}: {}",
            res.status()
        );
    }
    let listed = json(admin.get("/v1/api-keys").await).await;
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");

    // A limited key and an unlimited one.
    let limited = json(
        admin
            .post(
                "/v1/api-keys",
                &json!({"name": "slow", "capabilities": caps, "rate_limit": {"per_second": 1, "burst": 3}}),
            )
            .await,
    )
    .await;
    let free = json(
        admin
            .post(
                "/v1/api-keys",
                &json!({"name": "free", "capabilities": caps}),
            )
            .await,
    )
    .await;
    let meta = json(
        admin
            .get(&format!("/v1/api-keys/{}", limited["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(meta["rate_limit"], json!({"per_second": 1, "burst": 3}));
    let meta = json(
        admin
            .get(&format!("/v1/api-keys/{}", free["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(meta["rate_limit"], Value::Null);

    let slow = limited["key"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let res = with_key(&app.base_url, "/v1/users", slow, None).await;
        if res.status() == 200 {
            assert_eq!(
                res.headers()["ratelimit-policy"].to_str().unwrap(),
                "\"default\";q=3;w=3"
            );
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    expect_problem(
        with_key(&app.base_url, "/v1/users", slow, None).await,
        429,
        "rate_limit.exceeded",
    )
    .await;
    // The other key of the same tenant (and creator) is unaffected.
    for _ in 0..10 {
        assert_eq!(
            with_key(
                &app.base_url,
                "/v1/users",
                free["key"].as_str().unwrap(),
                None
            )
            .await
            .status(),
            200
        );
    }
}

async fn tenant_overrides_apply_to_api_keys_without_their_own_limit(backend: Backend) {
    let app = TestApp::spawn(backend).await.unwrap();
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let key = json(
        admin
            .post(
                "/v1/api-keys",
                &json!({"name": "k", "capabilities": ["platform.user.read"]}),
            )
            .await,
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = acme.tenant.id.to_string();
    let limited = app
        .spawn_sibling(|s| {
            s.rate_limit.tenants.insert(
                tenant,
                RateQuota {
                    per_second: 1,
                    burst: 2,
                },
            );
        })
        .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            with_key(&limited.base_url, "/v1/users", &key, None)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
}

async fn last_used_at_is_batched_and_flushed(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.api_keys.last_used_flush_secs = 3_600)
        .await
        .unwrap();
    let admin = app.tenant("acme").await.user(Role::TenantAdmin).await;
    let created = json(
        admin
            .post(
                "/v1/api-keys",
                &json!({"name": "k", "capabilities": ["platform.user.read"]}),
            )
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let meta_path = format!("/v1/api-keys/{id}");
    assert_eq!(
        json(admin.get(&meta_path).await).await["last_used_at"],
        Value::Null
    );

    let key = created["key"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(
            with_key(&app.base_url, "/v1/users", key, None)
                .await
                .status(),
            200
        );
    }
    // Recorded in memory only: no database write on the request path.
    assert_eq!(app.state.key_usage().pending(), 1);
    assert_eq!(
        json(admin.get(&meta_path).await).await["last_used_at"],
        Value::Null
    );

    // The flush (what the periodic task and graceful shutdown run) writes it in one batch.
    assert_eq!(app.state.flush_key_usage().await.unwrap(), 1);
    assert_eq!(app.state.key_usage().pending(), 0);
    let meta = json(admin.get(&meta_path).await).await;
    let at = meta["last_used_at"].as_str().expect("last_used_at set");
    let at =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((time::OffsetDateTime::now_utc() - at).whole_seconds().abs() < 60);
    let listed = json(admin.get("/v1/api-keys").await).await;
    assert_eq!(listed["items"][0]["last_used_at"], meta["last_used_at"]);
}

both_backends!(
    per_key_rate_limits_are_stored_bounded_and_enforced,
    tenant_overrides_apply_to_api_keys_without_their_own_limit,
    last_used_at_is_batched_and_flushed,
);

#[tokio::test]
async fn last_used_at_is_flushed_periodically() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.api_keys.last_used_flush_secs = 1)
        .await
        .unwrap();
    let admin = app.tenant("acme").await.user(Role::TenantAdmin).await;
    let created = json(
        admin
            .post(
                "/v1/api-keys",
                &json!({"name": "k", "capabilities": ["platform.user.read"]}),
            )
            .await,
    )
    .await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        with_key(&app.base_url, "/v1/users", key, None)
            .await
            .status(),
        200
    );
    let meta_path = format!("/v1/api-keys/{}", created["id"].as_str().unwrap());
    for _ in 0..50 {
        if json(admin.get(&meta_path).await).await["last_used_at"].is_string() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("last_used_at was not flushed within 5 s");
}

/// Sends `body` with `content_type` to `path` as `actor`.
async fn send_typed(actor: &Actor, path: &str, content_type: &str, body: Vec<u8>) -> Response {
    actor
        .request(Method::POST, path)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn the_waf_checks_query_strings_and_non_json_bodies(backend: Backend) {
    let app = TestApp::spawn(backend).await.unwrap();
    let admin = app.tenant("acme").await.user(Role::TenantAdmin).await;
    let anon = app.anonymous();
    let before = app.all_tenants().await.len();

    // Query strings: on a protected route and on a public one.
    let six_urls = (1..=6)
        .map(|i| format!("u{i}=https%3A%2F%2Fu{i}.test"))
        .collect::<Vec<_>>()
        .join("&");
    let four_phones =
        "a=%2B1+415+555+0123&b=%2B44+20+7946+0958&c=%2B33+1+23+45+67+89&d=(212)+555-0199";
    let long = format!("q={}", "x".repeat(8_193));
    for (query, code) in [
        (long.as_str(), "waf.string_too_long"),
        ("q=a%00b", "waf.nul_character"),
        ("q%00=1", "waf.nul_character"),
        ("q=%C0%AF", "waf.invalid_utf8"),
        ("q=%FF", "waf.invalid_utf8"),
        (six_urls.as_str(), "waf.too_many_urls"),
        (four_phones, "waf.too_many_phones"),
    ] {
        expect_problem(admin.get(&format!("/v1/users?{query}")).await, 400, code).await;
        expect_problem(
            anon.get(&format!("/.well-known/jwks.json?{query}")).await,
            400,
            code,
        )
        .await;
    }
    // Ordinary queries pass.
    assert_eq!(admin.get("/v1/users?limit=5").await.status(), 200);
    assert_eq!(
        anon.get("/.well-known/jwks.json?v=caf%C3%A9+ok&at=2026-11-25T09%3A51%3A28Z")
            .await
            .status(),
        200
    );

    // Form and text bodies: UTF-8, NUL and length checks before anything else.
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "application/x-www-form-urlencoded",
            b"name=a%00b&slug=x".to_vec(),
            400,
            "waf.nul_character",
        ),
        (
            "application/x-www-form-urlencoded",
            b"name=%C0%AF".to_vec(),
            400,
            "waf.invalid_utf8",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("name={}", "y".repeat(8_193)).into_bytes(),
            400,
            "waf.string_too_long",
        ),
        (
            "text/plain; charset=utf-8",
            b"hello\x00".to_vec(),
            400,
            "waf.nul_character",
        ),
        ("text/plain", b"\xff\xfe".to_vec(), 400, "waf.invalid_utf8"),
        (
            "text/csv",
            "z".repeat(8_193).into_bytes(),
            400,
            "waf.string_too_long",
        ),
        // Clean, but no route takes these types: the JSON extractor refuses them.
        (
            "application/x-www-form-urlencoded",
            b"name=New&slug=new".to_vec(),
            415,
            "request.unsupported_media_type",
        ),
        (
            "text/plain",
            b"name".to_vec(),
            415,
            "request.unsupported_media_type",
        ),
        // Binary types no route accepts: 415 before the body is read.
        (
            "application/octet-stream",
            vec![0, 159, 146, 150],
            415,
            "request.unsupported_media_type",
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\n\r\n--x--".to_vec(),
            415,
            "request.unsupported_media_type",
        ),
        (
            "image/png",
            b"\x89PNG\r\n".to_vec(),
            415,
            "request.unsupported_media_type",
        ),
    ];
    let root = app.system_admin().await;
    for (content_type, body, status, code) in cases {
        let res = send_typed(&root, "/v1/tenants", content_type, body).await;
        expect_problem(res, status, code).await;
    }
    assert_eq!(app.all_tenants().await.len(), before, "nothing was written");
}

async fn query_violations_count_towards_the_block(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.waf.violations_before_block = 3)
        .await
        .unwrap();
    let anon = app.anonymous();
    for _ in 0..2 {
        expect_problem(
            anon.get("/.well-known/jwks.json?q=%00").await,
            400,
            "waf.nul_character",
        )
        .await;
    }
    // The third (a text body this time) completes the burst.
    let res = send_typed(&anon, "/v1/auth/otp/start", "text/plain", b"\x00".to_vec()).await;
    expect_problem(res, 403, "waf.blocked").await;
    expect_problem(anon.get("/.well-known/jwks.json").await, 403, "waf.blocked").await;
}

both_backends!(
    the_waf_checks_query_strings_and_non_json_bodies,
    query_violations_count_towards_the_block,
);

#[test]
fn the_recovery_command_sets_and_clears_a_tenant_list() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .current_dir(dir.path())
            .env_remove("PALISADE_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(&[
        "tenants",
        "allowed-ips",
        "system",
        "--set",
        "10.1.2.3/8",
        "--set",
        "192.0.2.7",
    ]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("accepts requests from 10.0.0.0/8, 192.0.2.7/32"),
        "{text}"
    );
    let out = run(&["tenants", "allowed-ips", "system", "--clear"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("accepts requests from any address"), "{text}");
    let out = run(&["tenants", "allowed-ips", "system", "--set", "office"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowed_ips[0]"));
    let out = run(&["tenants", "allowed-ips", "nobody", "--clear"]);
    assert!(!out.status.success());
}
