//! The request pipeline through the real socket: security headers on every status class, request ids,
//! load shedding, the deadline, the body cap, client IP and `X-Forwarded-For`, CORS, and panics.

use std::time::Duration;

use futures::StreamExt;
use palisade_server::pipeline::SECURITY_HEADERS;
use palisade_testkit::{Backend, Role, TestApp};
use reqwest::Method;
use serde_json::json;

use crate::expect_problem;

fn assert_security_headers(res: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            res.headers().get(*name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{name} missing on a {} response",
            res.status()
        );
    }
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    assert!(res.headers().get("x-request-id").is_some());
}

/// A request body that sends a few bytes and then stalls forever, holding its request open.
fn stalled_body() -> reqwest::Body {
    let first = futures::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"name\":"))
    });
    reqwest::Body::wrap_stream(first.chain(futures::stream::pending()))
}

#[tokio::test]
async fn security_headers_are_on_2xx_4xx_and_5xx_responses() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.max_concurrency = 1)
        .await
        .unwrap();
    let anon = app.anonymous();
    let ok = anon.get("/health").await;
    assert_eq!(ok.status(), 200);
    assert_security_headers(&ok);
    let unauthorized = anon.get("/v1/tenants").await;
    assert_eq!(unauthorized.status(), 401);
    assert_security_headers(&unauthorized);
    let not_found = anon.get("/no/such/route").await;
    assert_security_headers(&not_found);
    expect_problem(not_found, 404, "route.not_found").await;

    // 5xx: hold the single permit with a stalled upload, then the next request is shed with 503.
    let admin = app.system_admin().await;
    let holder = admin
        .request(Method::POST, "/v1/tenants")
        .header("content-type", "application/json")
        .body(stalled_body());
    let held = tokio::spawn(async move { holder.send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = anon.get("/ready").await;
    assert_security_headers(&shed);
    assert_eq!(shed.headers().get("retry-after").unwrap(), "1");
    expect_problem(shed, 503, "server.overloaded").await;
    // Liveness stays reachable while shedding.
    assert_eq!(anon.get("/health").await.status(), 200);
    held.abort();
}

#[tokio::test]
async fn a_request_past_the_deadline_is_answered_503() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.request_timeout_secs = 1)
        .await
        .unwrap();
    let admin = app.system_admin().await;
    let res = admin
        .request(Method::POST, "/v1/tenants")
        .header("content-type", "application/json")
        .body(stalled_body())
        .send()
        .await
        .unwrap();
    assert_security_headers(&res);
    expect_problem(res, 503, "server.timeout").await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413_and_nothing_is_written() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.limits.max_body_bytes = 2048)
        .await
        .unwrap();
    let admin = app.system_admin().await;
    let big = json!({ "name": "x".repeat(4096), "slug": "big" });
    let res = admin.post("/v1/tenants", &big).await;
    // The unread rest of the body makes the connection unusable: the server says it closes it, so
    // a pooling client does not fail its next request on a dead connection.
    assert_eq!(
        res.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    expect_problem(res, 413, "request.too_large").await;
    // Chunked, without Content-Length.
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))),
    );
    let res = admin
        .request(Method::POST, "/v1/tenants")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    expect_problem(res, 413, "request.too_large").await;
    let list = palisade_testkit::json(admin.get("/v1/tenants").await).await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["slug"] != "big")
    );
}

#[tokio::test]
async fn request_ids_are_echoed_when_well_formed_and_generated_otherwise() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let anon = app.anonymous();
    let res = anon
        .request(Method::GET, "/health")
        .header("x-request-id", "trace-abc_123.4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers().get("x-request-id").unwrap(),
        "trace-abc_123.4"
    );
    let res = anon
        .request(Method::GET, "/health")
        .header("x-request-id", "evil\tvalue<script>")
        .send()
        .await
        .unwrap();
    let generated = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert_ne!(generated, "evil\tvalue<script>");
    assert_eq!(generated.len(), 36);
}

#[tokio::test]
async fn forwarded_for_is_ignored_without_trusted_hops() {
    // The metrics allowlist is loopback: a spoofed X-Forwarded-For must not change the client IP.
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let res = app
        .anonymous()
        .request(Method::GET, "/metrics")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("palisade_http_requests"));
}

#[tokio::test]
async fn forwarded_for_is_honoured_across_the_configured_hops() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.trusted_proxy_hops = 1)
        .await
        .unwrap();
    let anon = app.anonymous();
    // One trusted proxy appended the real client (203.0.113.9); the client forged 127.0.0.1 before it.
    let res = anon
        .request(Method::GET, "/metrics")
        .header("x-forwarded-for", "127.0.0.1, 203.0.113.9")
        .send()
        .await
        .unwrap();
    expect_problem(res, 403, "network.ip_not_allowed").await;
    let res = anon
        .request(Method::GET, "/metrics")
        .header("x-forwarded-for", "203.0.113.9, 127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn cors_is_denied_unless_origins_are_configured() {
    let closed = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let preflight = |app: &TestApp, origin: &str| {
        reqwest::Client::new()
            .request(Method::OPTIONS, format!("{}/v1/tenants", app.base_url))
            .header("origin", origin.to_owned())
            .header("access-control-request-method", "GET")
            .send()
    };
    let res = preflight(&closed, "https://app.example.com").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let open = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.cors_allowed_origins = vec!["https://app.example.com".into()]
    })
    .await
    .unwrap();
    let res = preflight(&open, "https://app.example.com").await.unwrap();
    assert_eq!(
        res.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    let res = preflight(&open, "https://evil.example.net").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn readiness_reports_the_database() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let body = palisade_testkit::json(app.anonymous().get("/ready").await).await;
    assert_eq!(
        body,
        json!({"status": "ok", "checks": {"database": "ok", "state": "ok", "rate_limit": "ok"}})
    );
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_500_problem() {
    use axum::Router;
    use tower::ServiceExt;
    use tower_http::catch_panic::CatchPanicLayer;
    async fn boom() -> &'static str {
        panic!("secret-in-panic-message")
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "a bare router to test the panic layer in isolation"
    )]
    let router: Router = Router::new()
        .route("/boom", axum::routing::get(boom))
        .layer(CatchPanicLayer::custom(
            palisade_server::pipeline::panic_response,
        ));
    let res = router
        .oneshot(
            axum::http::Request::get("/boom")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let res = palisade_server::pipeline::finish_problem(res, "rid-1").await;
    let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "server.internal");
    assert_eq!(body["request_id"], "rid-1");
    assert!(!body.to_string().contains("secret-in-panic-message"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_not_raw_path() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let admin = app.system_admin().await;
    let _ = admin
        .get(&format!("/v1/tenants/{}", crate::unknown_id()))
        .await;
    let text = app.anonymous().get("/metrics").await.text().await.unwrap();
    assert!(text.contains("route=\"/v1/tenants/{id}\""), "{text}");
    assert!(
        !text.contains("/v1/tenants/0"),
        "raw ids must not become label values"
    );
    let _ = Role::Member;
}
