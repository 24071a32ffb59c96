//! Browser sessions (`[auth.sessions]`): off by default (no cookie set, a cookie ignored); sign-in with
//! `"session": true` sets a hardened cookie and returns a CSRF token instead of tokens; the cookie
//! authenticates safe requests; unsafe cookie requests need the session's own `X-CSRF-Token` and must
//! not come from another site (403 `auth.csrf_failed`, nothing written); bearer requests need none
//! and win over a cookie; logout, logout-all and disabling the user end sessions; forged, malformed,
//! duplicated and idle cookies are refused. On SQLite and PostgreSQL.

use palisade_testkit::{Backend, Role, TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::expect_problem;

const OWNER: &str = "owner@localhost";

/// Runs an `async fn(TestApp)` on both backends with browser sessions enabled.
macro_rules! each_backend_with_sessions {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::spawn(palisade_testkit::Backend::Sqlite).await.expect("sqlite app")).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = super::spawn(palisade_testkit::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            }
        )+
    };
}

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.auth.sessions.enabled = true).await
}

/// A signed-in browser: the `Cookie` header to send, the CSRF token, and the raw `Set-Cookie`.
struct Browser {
    cookie: String,
    csrf: String,
    set_cookie: String,
    body: Value,
}

/// Signs in through the real OTP flow asking for a session.
async fn sign_in(app: &TestApp, email: &str, tenant: &str) -> Browser {
    let (challenge, code) = app.start_otp(email, tenant).await;
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": challenge, "code": code, "session": true}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let set_cookie = res
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    let body = json(res).await;
    let cookie = set_cookie.split(';').next().unwrap().trim().to_owned();
    Browser {
        cookie,
        csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
        set_cookie,
        body,
    }
}

/// A request with only the given cookie and headers (no Authorization).
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> reqwest::Response {
    let mut rb = reqwest::Client::new().request(method, format!("{}{path}", app.base_url));
    if let Some(c) = cookie {
        rb = rb.header("cookie", c);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    rb.send().await.unwrap()
}

fn role(name: &str) -> Value {
    json!({"name": name, "inherits": [], "capabilities": ["platform.user.read"]})
}

async fn role_names(app: &TestApp) -> Vec<String> {
    let admin = app.system_admin().await;
    let res = admin.get("/v1/roles").await;
    assert_eq!(res.status(), 200);
    json(res).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------------

async fn sessions_are_off_by_default(app: TestApp) {
    // Asking for a session is refused before the code is spent ...
    let (challenge, code) = app.start_otp(OWNER, "system").await;
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": challenge, "code": code, "session": true}),
        )
        .await;
    assert!(res.headers().get("set-cookie").is_none());
    expect_problem(res, 422, "validation.failed").await;
    // ... so the same code still signs in with tokens, and no cookie is set.
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": challenge, "code": code}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none());
    assert!(json(res).await["access_token"].is_string());
    // A session cookie is ignored: the request is anonymous.
    let forged = format!("__Host-palisade_session=pss_{}", "A".repeat(43));
    let res = send(&app, Method::GET, "/v1/me", Some(&forged), &[], None).await;
    expect_problem(res, 401, "auth.unauthenticated").await;
}

palisade_testkit::each_backend!(sessions_are_off_by_default);

async fn sign_in_sets_a_hardened_cookie(app: TestApp) {
    let b = sign_in(&app, OWNER, "system").await;

    // The cookie: `__Host-` name, opaque 256-bit value, HttpOnly, Secure, SameSite=Strict, Path=/,
    // no Domain.
    let attrs: Vec<&str> = b.set_cookie.split(';').map(str::trim).collect();
    let value = b
        .cookie
        .strip_prefix("__Host-palisade_session=")
        .expect("__Host- prefixed name");
    assert!(value.starts_with("pss_") && value.len() == 47, "{value}");
    for want in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(attrs.contains(&want), "{want} in {}", b.set_cookie);
    }
    assert!(!b.set_cookie.to_ascii_lowercase().contains("domain"));
    // No token reaches the page: only the CSRF token and the session's end.
    assert_eq!(b.body["session"], true);
    assert!(b.body["expires_at"].is_string());
    assert!(b.body.get("access_token").is_none() && b.body.get("refresh_token").is_none());

    // The cookie authenticates safe requests.
    let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
    assert_eq!(res.status(), 200);
    let me = json(res).await;
    assert_eq!(me["method"], "session");
    assert_eq!(me["amr"], json!(["otp"]));
    let res = send(
        &app,
        Method::GET,
        "/v1/auth/csrf",
        Some(&b.cookie),
        &[],
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["csrf_token"], b.csrf.as_str());

    // The session's start is in the audit trail, without the cookie.
    let admin = app.system_admin().await;
    let res = admin.get("/v1/audit?action=auth.session_created").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(value),
        "the cookie never reaches the audit trail"
    );
    let audit: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert!(
        audit["items"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
}

async fn unsafe_cookie_requests_need_the_csrf_token(app: TestApp) {
    let b = sign_in(&app, OWNER, "system").await;
    let other = sign_in(&app, OWNER, "system").await;
    assert_ne!(b.csrf, other.csrf, "tokens are bound to their session");
    let post = |headers: Vec<(&'static str, String)>, name: &'static str| {
        let app = &app;
        let cookie = b.cookie.clone();
        async move {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(
                app,
                Method::POST,
                "/v1/roles",
                Some(&cookie),
                &hs,
                Some(&role(name)),
            )
            .await
        }
    };

    // Without, with a wrong, with another session's, and with two tokens: refused.
    expect_problem(post(vec![], "r_none").await, 403, "auth.csrf_failed").await;
    let wrong = "A".repeat(43);
    expect_problem(
        post(vec![("x-csrf-token", wrong)], "r_wrong").await,
        403,
        "auth.csrf_failed",
    )
    .await;
    expect_problem(
        post(vec![("x-csrf-token", "not base64 !".to_owned())], "r_junk").await,
        403,
        "auth.csrf_failed",
    )
    .await;
    expect_problem(
        post(vec![("x-csrf-token", other.csrf.clone())], "r_other").await,
        403,
        "auth.csrf_failed",
    )
    .await;
    expect_problem(
        post(
            vec![
                ("x-csrf-token", b.csrf.clone()),
                ("x-csrf-token", b.csrf.clone()),
            ],
            "r_two",
        )
        .await,
        403,
        "auth.csrf_failed",
    )
    .await;
    // Defence in depth: a cross-site request is refused even with the right token.
    expect_problem(
        post(
            vec![
                ("x-csrf-token", b.csrf.clone()),
                ("sec-fetch-site", "cross-site".to_owned()),
            ],
            "r_cross",
        )
        .await,
        403,
        "auth.csrf_failed",
    )
    .await;
    expect_problem(
        post(
            vec![
                ("x-csrf-token", b.csrf.clone()),
                ("origin", "https://evil.example".to_owned()),
            ],
            "r_origin",
        )
        .await,
        403,
        "auth.csrf_failed",
    )
    .await;
    // Refusals wrote nothing.
    assert!(role_names(&app).await.iter().all(|n| !n.starts_with("r_")));

    // The session's own token, same-origin: done.
    let own_origin = format!("http://{}", app.addr);
    let res = post(
        vec![
            ("x-csrf-token", b.csrf.clone()),
            ("sec-fetch-site", "same-origin".to_owned()),
            ("origin", own_origin),
        ],
        "r_ok",
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        role_names(&app)
            .await
            .iter()
            .filter(|n| n.starts_with("r_"))
            .count(),
        1
    );
    // Safe methods need no token.
    let res = send(&app, Method::GET, "/v1/roles", Some(&b.cookie), &[], None).await;
    assert_eq!(res.status(), 200);
}

async fn bearer_requests_need_no_csrf_token(app: TestApp) {
    let tokens = app.sign_in(OWNER, "system").await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let b = sign_in(&app, OWNER, "system").await;

    // A bearer request needs no CSRF token.
    let res = send(
        &app,
        Method::POST,
        "/v1/roles",
        None,
        &[("authorization", &bearer)],
        Some(&role("by_bearer")),
    )
    .await;
    assert_eq!(res.status(), 201);
    // With a cookie too, the bearer wins and the cookie is ignored (no CSRF token asked for), even a
    // forged one.
    let forged = format!("__Host-palisade_session=pss_{}", "B".repeat(43));
    for cookie in [b.cookie.as_str(), forged.as_str()] {
        let res = send(
            &app,
            Method::POST,
            "/v1/roles",
            Some(cookie),
            &[("authorization", &bearer)],
            Some(&role(&format!(
                "both_{}",
                cookie.len() + role_names(&app).await.len()
            ))),
        )
        .await;
        assert_eq!(res.status(), 201);
    }
    let res = send(
        &app,
        Method::GET,
        "/v1/me",
        Some(&b.cookie),
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(json(res).await["method"], "bearer");
    // Only a session has a CSRF token.
    let res = send(
        &app,
        Method::GET,
        "/v1/auth/csrf",
        None,
        &[("authorization", &bearer)],
        None,
    )
    .await;
    expect_problem(res, 403, "auth.session_required").await;
}

async fn logout_ends_the_session_and_clears_the_cookie(app: TestApp) {
    let b = sign_in(&app, OWNER, "system").await;
    let kept = sign_in(&app, OWNER, "system").await;

    // Logout is unsafe: it needs the token too.
    let res = send(
        &app,
        Method::POST,
        "/v1/auth/logout",
        Some(&b.cookie),
        &[],
        None,
    )
    .await;
    expect_problem(res, 403, "auth.csrf_failed").await;
    let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
    assert_eq!(res.status(), 200, "a refused logout changed nothing");

    let res = send(
        &app,
        Method::POST,
        "/v1/auth/logout",
        Some(&b.cookie),
        &[("x-csrf-token", &b.csrf)],
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    let cleared = res.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        cleared.starts_with("__Host-palisade_session=;"),
        "{cleared}"
    );
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The session is gone; another session of the same user is not.
    let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
    expect_problem(res, 401, "auth.invalid_session").await;
    let res = send(&app, Method::GET, "/v1/me", Some(&kept.cookie), &[], None).await;
    assert_eq!(res.status(), 200);
}

async fn logout_all_and_disabling_the_user_end_sessions(app: TestApp) {
    // logout-all through one session ends every session (and token) of the user.
    let one = sign_in(&app, OWNER, "system").await;
    let two = sign_in(&app, OWNER, "system").await;
    let tokens = app.sign_in(OWNER, "system").await;
    let res = send(
        &app,
        Method::POST,
        "/v1/auth/logout-all",
        Some(&one.cookie),
        &[("x-csrf-token", &one.csrf)],
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    assert!(
        res.headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    for b in [&one, &two] {
        let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
        expect_problem(res, 401, "auth.invalid_session").await;
    }
    let res = app
        .bearer(tokens["access_token"].as_str().unwrap())
        .get("/v1/me")
        .await;
    assert_eq!(res.status(), 401);

    // A disabled user's cookie is refused.
    let acme = app.tenant("acme").await;
    let member = acme.user(Role::Member).await;
    let user = member.user.clone().unwrap();
    let b = sign_in(&app, &user.email, "acme").await;
    let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
    assert_eq!(res.status(), 200);
    let admin = app.system_admin().await.acting_on(acme.tenant.id);
    let res = admin
        .patch(
            &format!("/v1/users/{}", user.id),
            &json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
    expect_problem(res, 401, "auth.invalid_session").await;
}

async fn forged_malformed_duplicated_and_idle_cookies_are_refused(app: TestApp) {
    let b = sign_in(&app, OWNER, "system").await;
    let value = b.cookie.split_once('=').unwrap().1.to_owned();
    let forged = format!("pss_{}", "C".repeat(43));
    for (cookie, code) in [
        (
            format!("__Host-palisade_session={forged}"),
            "auth.invalid_session",
        ),
        (
            "__Host-palisade_session=pss_short".to_owned(),
            "auth.invalid_session",
        ),
        (
            format!("__Host-palisade_session={}", &value[..46]),
            "auth.invalid_session",
        ),
        // A second, planted cookie of the same name does not pick the session.
        (
            format!("{}; __Host-palisade_session={forged}", b.cookie),
            "auth.invalid_session",
        ),
    ] {
        let res = send(&app, Method::GET, "/v1/me", Some(&cookie), &[], None).await;
        assert!(res.headers().get("www-authenticate").is_some());
        let body = expect_problem(res, 401, code).await;
        assert!(!body.to_string().contains(&value) && !body.to_string().contains(&forged));
    }
    // Without the prefix, the cookie is not this server's session cookie: anonymous.
    let res = send(
        &app,
        Method::GET,
        "/v1/me",
        Some(&format!("palisade_session={value}")),
        &[],
        None,
    )
    .await;
    expect_problem(res, 401, "auth.unauthenticated").await;
    // The real one, among other cookies, still works.
    let res = send(
        &app,
        Method::GET,
        "/v1/me",
        Some(&format!("theme=dark; {}", b.cookie)),
        &[],
        None,
    )
    .await;
    assert_eq!(res.status(), 200);

    // Idle past the timeout (30 minutes by default): expired.
    app.raw_sql("UPDATE browser_sessions SET last_seen_at = last_seen_at - 3600000000")
        .await
        .unwrap();
    let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
    expect_problem(res, 401, "auth.session_expired").await;
}

each_backend_with_sessions!(
    sign_in_sets_a_hardened_cookie,
    unsafe_cookie_requests_need_the_csrf_token,
    bearer_requests_need_no_csrf_token,
    logout_ends_the_session_and_clears_the_cookie,
    logout_all_and_disabling_the_user_end_sessions,
    forged_malformed_duplicated_and_idle_cookies_are_refused,
);

/// Development over plain http on another host: `secure_cookie = false` drops `Secure` and the
/// `__Host-` prefix (documented; production refuses it, see `config_check_refuses_insecure_cookies`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_development_cookie_has_no_prefix() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.sessions.enabled = true;
        s.auth.sessions.secure_cookie = false;
    })
    .await
    .unwrap();
    let b = sign_in(&app, OWNER, "system").await;
    assert!(
        b.cookie.starts_with("palisade_session=pss_"),
        "{}",
        b.cookie
    );
    assert!(!b.set_cookie.contains("Secure"));
    assert!(b.set_cookie.contains("HttpOnly") && b.set_cookie.contains("SameSite=Strict"));
    let res = send(&app, Method::GET, "/v1/me", Some(&b.cookie), &[], None).await;
    assert_eq!(res.status(), 200);
}

#[test]
fn config_check_refuses_insecure_cookies_in_production() {
    let mut s = palisade_server::config::Settings {
        mode: palisade_server::config::Mode::Production,
        ..Default::default()
    };
    s.auth.sessions.enabled = true;
    s.auth.sessions.secure_cookie = false;
    assert!(
        s.verdicts()
            .iter()
            .any(|v| v.setting == "auth.sessions.secure_cookie"
                && v.level == palisade_server::config::Level::Error)
    );
    s.auth.sessions.secure_cookie = true;
    s.auth.sessions.idle_timeout_secs = s.auth.sessions.absolute_lifetime_secs + 1;
    assert!(
        s.verdicts()
            .iter()
            .any(|v| v.setting == "auth.sessions.idle_timeout_secs")
    );
}
