//! Sign-in end to end: OTP through the development outbox, ES512 access tokens verified against the
//! JWKS, refresh rotation with reuse detection, logout and logout everywhere.

use palisade_testkit::{TestApp, each_backend};
use serde_json::json;

use crate::expect_problem;

async fn signing_in_with_an_emailed_code_yields_a_working_es512_token(app: TestApp) {
    let tokens = app.sign_in("owner@localhost", "system").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(
        tokens["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("prt_")
    );
    let access = tokens["access_token"].as_str().unwrap();

    let me = palisade_testkit::json(app.bearer(access).get("/v1/me").await).await;
    assert_eq!(me["method"], "bearer");
    assert_eq!(me["amr"], json!(["otp"]));
    assert_eq!(me["scope_level"], "system");
    assert_eq!(me["tenant_id"], app.system_tenant().id.to_string());
    assert!(
        me["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "platform.tenant.create")
    );
    assert_eq!(app.bearer(access).get("/v1/tenants").await.status(), 200);

    // The header names ES512 and a kid the JWKS publishes.
    use base64::Engine;
    let header = access.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES512");
    assert_eq!(header["typ"], "at+jwt");
    let jwks = palisade_testkit::json(app.anonymous().get("/.well-known/jwks.json").await).await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid published");
    assert_eq!(key["crv"], "P-521");
    assert!(
        key.get("d").is_none(),
        "the JWKS never carries the private part"
    );
}

async fn a_wrong_code_is_refused_and_the_sixth_attempt_kills_the_challenge(app: TestApp) {
    let anon = app.anonymous();
    let (challenge, code) = app.start_otp("owner@localhost", "system").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let res = anon
            .post(
                "/v1/auth/otp/verify",
                &json!({"challenge_id": challenge, "code": wrong}),
            )
            .await;
        expect_problem(res, 401, "auth.invalid_code").await;
    }
    // The right code on the sixth attempt is too late.
    let res = anon
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": challenge, "code": code}),
        )
        .await;
    expect_problem(res, 401, "auth.too_many_attempts").await;
}

async fn a_used_challenge_cannot_be_replayed(app: TestApp) {
    let anon = app.anonymous();
    let (challenge, code) = app.start_otp("owner@localhost", "system").await;
    let body = json!({"challenge_id": challenge, "code": code});
    assert_eq!(anon.post("/v1/auth/otp/verify", &body).await.status(), 200);
    expect_problem(
        anon.post("/v1/auth/otp/verify", &body).await,
        401,
        "auth.invalid_code",
    )
    .await;
}

async fn unknown_accounts_and_tenants_answer_exactly_like_known_ones(app: TestApp) {
    let anon = app.anonymous();
    let before = app.outbox().len();
    let mut shapes = Vec::new();
    for (dest, tenant) in [
        ("owner@localhost", "system"),
        ("nobody@example.com", "system"),
        ("owner@localhost", "no-such-tenant"),
    ] {
        let res = anon
            .post(
                "/v1/auth/otp/start",
                &json!({"channel": "email", "destination": dest, "tenant": tenant}),
            )
            .await;
        let status = res.status().as_u16();
        let body = palisade_testkit::json(res).await;
        let keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        shapes.push((status, keys, body["challenge_id"].as_str().unwrap().len()));
        // Verifying with any code answers like a wrong code.
        let res = anon
            .post(
                "/v1/auth/otp/verify",
                &json!({"challenge_id": body["challenge_id"], "code": "123456"}),
            )
            .await;
        assert_eq!(res.status(), 401);
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent: Vec<_> = app.outbox().into_iter().skip(before).collect();
    assert_eq!(sent.len(), 1, "only the real account gets a code");
    assert_eq!(sent[0]["destination"], "owner@localhost");
}

async fn a_disposable_domain_is_refused(app: TestApp) {
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/start",
            &json!({"channel": "email", "destination": "x@mailinator.com", "tenant": "system"}),
        )
        .await;
    let body = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["code"], "disposable_email");
}

async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_family(app: TestApp) {
    let tokens = app.sign_in("owner@localhost", "system").await;
    let anon = app.anonymous();
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let res = anon
        .post("/v1/auth/token/refresh", &json!({"refresh_token": first}))
        .await;
    assert_eq!(res.status(), 200);
    let second = palisade_testkit::json(res).await;
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first);
    assert_eq!(
        app.bearer(second["access_token"].as_str().unwrap())
            .get("/v1/me")
            .await
            .status(),
        200
    );

    // The spent token again: refused, and the family is revoked, so the newer token dies too.
    expect_problem(
        anon.post("/v1/auth/token/refresh", &json!({"refresh_token": first}))
            .await,
        401,
        "auth.refresh_reused",
    )
    .await;
    expect_problem(
        anon.post(
            "/v1/auth/token/refresh",
            &json!({"refresh_token": second_refresh}),
        )
        .await,
        401,
        "auth.invalid_refresh_token",
    )
    .await;
    // An access token is not a refresh token, and the reverse.
    expect_problem(
        anon.post(
            "/v1/auth/token/refresh",
            &json!({"refresh_token": second["access_token"]}),
        )
        .await,
        401,
        "auth.invalid_refresh_token",
    )
    .await;
    let res = app.bearer(&second_refresh).get("/v1/me").await;
    expect_problem(res, 401, "auth.invalid_token").await;
}

async fn logout_revokes_the_token_and_its_refresh_family(app: TestApp) {
    let tokens = app.sign_in("owner@localhost", "system").await;
    let access = tokens["access_token"].as_str().unwrap();
    let me = app.bearer(access);
    assert_eq!(me.post("/v1/auth/logout", &json!({})).await.status(), 204);
    expect_problem(me.get("/v1/me").await, 401, "auth.token_revoked").await;
    let res = app
        .anonymous()
        .post(
            "/v1/auth/token/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    expect_problem(res, 401, "auth.invalid_refresh_token").await;
}

async fn logout_all_ends_every_session_of_the_user(app: TestApp) {
    let a = app.sign_in("owner@localhost", "system").await;
    let b = app.sign_in("owner@localhost", "system").await;
    let a_access = a["access_token"].as_str().unwrap();
    let b_access = b["access_token"].as_str().unwrap();
    assert_eq!(
        app.bearer(a_access)
            .post("/v1/auth/logout-all", &json!({}))
            .await
            .status(),
        204
    );
    expect_problem(
        app.bearer(b_access).get("/v1/me").await,
        401,
        "auth.invalid_token",
    )
    .await;
    let res = app
        .anonymous()
        .post(
            "/v1/auth/token/refresh",
            &json!({"refresh_token": b["refresh_token"]}),
        )
        .await;
    expect_problem(res, 401, "auth.invalid_refresh_token").await;
    // A fresh sign-in works again.
    let c = app.sign_in("owner@localhost", "system").await;
    assert_eq!(
        app.bearer(c["access_token"].as_str().unwrap())
            .get("/v1/me")
            .await
            .status(),
        200
    );
}

async fn tokens_signed_before_a_rotation_verify_until_they_expire(app: TestApp) {
    let before = app.sign_in("owner@localhost", "system").await;
    let old_access = before["access_token"].as_str().unwrap().to_owned();
    let keys = app.state.auth().tokens.keys().clone();
    let new_kid = keys.rotate(time::Duration::seconds(900)).await.unwrap();

    assert_eq!(
        app.bearer(&old_access).get("/v1/me").await.status(),
        200,
        "the old key still verifies"
    );
    let jwks = palisade_testkit::json(app.anonymous().get("/.well-known/jwks.json").await).await;
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "active and retiring keys are published"
    );
    let after = app.sign_in("owner@localhost", "system").await;
    let access = after["access_token"].as_str().unwrap();
    use base64::Engine;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str(), "the new key signs at once");
    // Nothing is due yet: the retiring key stays until its tokens have expired.
    assert_eq!(keys.retire_due().await.unwrap(), 0);
}

async fn a_logout_on_one_instance_is_seen_by_another_sharing_redis(app: TestApp) {
    let Some(redis) = TestApp::redis_url() else {
        return;
    };
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let shared = |s: &mut palisade_server::config::Settings| {
        s.state.url = redis.clone();
        s.state.key_prefix = prefix.clone();
    };
    // Two instances over one database and one Redis.
    let one = app.spawn_sibling(shared).await;
    let two = app.spawn_sibling(shared).await;
    let tokens = one.sign_in("owner@localhost", "system").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        two.bearer(access).get("/v1/me").await.status(),
        200,
        "the second instance accepts the token"
    );

    assert_eq!(
        one.bearer(access)
            .post("/v1/auth/logout", &json!({}))
            .await
            .status(),
        204
    );
    expect_problem(
        two.bearer(access).get("/v1/me").await,
        401,
        "auth.token_revoked",
    )
    .await;
    let ready = palisade_testkit::json(two.anonymous().get("/ready").await).await;
    assert_eq!(ready["checks"]["state"], "ok");
}

async fn an_unreachable_revocation_list_fails_closed(app: TestApp) {
    if TestApp::redis_url().is_none() {
        return;
    }
    // A throwaway Redis that the test stops.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ])
        .status();
    if !started.is_ok_and(|s| s.success()) {
        panic!("redis-server is needed for this test (TEST_REDIS_URL is set)");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let url = format!("redis://127.0.0.1:{port}");
    let instance = app.spawn_sibling(|s| s.state.url = url.clone()).await;
    let tokens = instance.sign_in("owner@localhost", "system").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(instance.bearer(access).get("/v1/me").await.status(), 200);

    let _ = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "shutdown", "nosave"])
        .status();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // SECURITY: the revocation check cannot run, so the token is not accepted.
    let res = instance.bearer(access).get("/v1/me").await;
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    expect_problem(res, 503, "state.unavailable").await;
    assert_eq!(instance.anonymous().get("/ready").await.status(), 503);
}

fn kid_of(access: &str) -> String {
    use base64::Engine;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn two_instances_rotating_at_once_leave_exactly_one_new_active_key(app: TestApp) {
    use palisade_server::auth::keyring::KeyRingError;
    use palisade_store::SigningKeyStatus;
    // Arrange: two instances over one database, and a token signed by the first key.
    let sibling = app.spawn_sibling(|_| {}).await;
    let before = app.sign_in("owner@localhost", "system").await;
    let old_access = before["access_token"].as_str().unwrap().to_owned();
    let old_kid = kid_of(&old_access);
    let one = app.state.auth().tokens.keys().clone();
    let two = sibling.state.auth().tokens.keys().clone();
    let ttl = time::Duration::seconds(900);

    // Act: both replace the key they saw active, at once (as `palisade keys rotate` beside a server
    // would). Whatever the interleaving, only one compare-and-set can hold.
    let (a, b) = tokio::join!(
        one.rotate_from(Some(&old_kid), ttl),
        two.rotate_from(Some(&old_kid), ttl)
    );

    // Assert: one wins, the other is refused cleanly.
    let winner = match (a, b) {
        (Ok(kid), Err(KeyRingError::RotationRaced))
        | (Err(KeyRingError::RotationRaced), Ok(kid)) => kid,
        other => panic!("expected exactly one rotation to commit, got {other:?}"),
    };
    let keys = app
        .state
        .stores()
        .signing_keys
        .list_keys(&palisade_authz::SystemScope::internal(
            palisade_authz::InternalRole::KeyRotation,
        ))
        .await
        .unwrap();
    let active: Vec<&str> = keys
        .iter()
        .filter(|k| k.status == SigningKeyStatus::Active)
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(active, [winner.as_str()], "{keys:?}");
    assert_eq!(keys.len(), 2, "the loser left no key behind: {keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.kid == old_kid && k.status == SigningKeyStatus::Retiring)
    );
    // Both instances sign with the winner at once, and both still accept the old token.
    for instance in [&app, &sibling] {
        let fresh = instance.sign_in("owner@localhost", "system").await;
        assert_eq!(kid_of(fresh["access_token"].as_str().unwrap()), winner);
        assert_eq!(
            instance.bearer(&old_access).get("/v1/me").await.status(),
            200
        );
        let jwks =
            palisade_testkit::json(instance.anonymous().get("/.well-known/jwks.json").await).await;
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    }
}

async fn many_racing_rotations_never_leave_zero_or_two_active_keys(app: TestApp) {
    use palisade_server::auth::keyring::KeyRingError;
    use palisade_store::SigningKeyStatus;
    let sibling = app.spawn_sibling(|_| {}).await;
    let ttl = time::Duration::seconds(900);
    let rings = [
        app.state.auth().tokens.keys().clone(),
        sibling.state.auth().tokens.keys().clone(),
    ];
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let ring = rings[i % 2].clone();
            tokio::spawn(async move { ring.rotate(ttl).await })
        })
        .collect();
    let mut committed = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(kid) => committed.push(kid),
            Err(KeyRingError::RotationRaced) => {}
            Err(other) => panic!("a racing rotation failed otherwise: {other}"),
        }
    }
    assert!(!committed.is_empty());
    let keys = app
        .state
        .stores()
        .signing_keys
        .list_keys(&palisade_authz::SystemScope::internal(
            palisade_authz::InternalRole::KeyRotation,
        ))
        .await
        .unwrap();
    let active = keys
        .iter()
        .filter(|k| k.status == SigningKeyStatus::Active)
        .count();
    assert_eq!(active, 1, "{keys:?}");
    assert_eq!(
        keys.len(),
        committed.len() + 1,
        "only committed rotations left a key (plus the first key): {keys:?}"
    );
    for kid in &committed {
        assert!(keys.iter().any(|k| &k.kid == kid));
    }
}

each_backend!(
    many_racing_rotations_never_leave_zero_or_two_active_keys,
    two_instances_rotating_at_once_leave_exactly_one_new_active_key,
    a_logout_on_one_instance_is_seen_by_another_sharing_redis,
    an_unreachable_revocation_list_fails_closed,
    tokens_signed_before_a_rotation_verify_until_they_expire,
    signing_in_with_an_emailed_code_yields_a_working_es512_token,
    a_wrong_code_is_refused_and_the_sixth_attempt_kills_the_challenge,
    a_used_challenge_cannot_be_replayed,
    unknown_accounts_and_tenants_answer_exactly_like_known_ones,
    a_disposable_domain_is_refused,
    refresh_rotates_and_a_reused_refresh_token_revokes_the_family,
    logout_revokes_the_token_and_its_refresh_family,
    logout_all_ends_every_session_of_the_user,
);

#[tokio::test]
async fn starts_are_limited_per_destination_and_capped_per_day() {
    let app = TestApp::spawn_with(palisade_testkit::Backend::Sqlite, |s| {
        s.auth.otp.per_destination.count = 2;
        s.auth.otp.daily_cap_email = 4;
    })
    .await
    .unwrap();
    let anon = app.anonymous();
    let start = |dest: &'static str| {
        let anon = anon.clone();
        async move {
            anon.post(
                "/v1/auth/otp/start",
                &json!({"channel": "email", "destination": dest, "tenant": "system"}),
            )
            .await
        }
    };
    assert_eq!(start("owner@localhost").await.status(), 202);
    assert_eq!(start("owner@localhost").await.status(), 202);
    // The third code to one destination within the window is refused, whatever the account.
    let res = start("owner@localhost").await;
    assert_eq!(res.headers().get("retry-after").unwrap(), "900");
    expect_problem(res, 429, "rate_limit.exceeded").await;
    // Another destination still gets one: the limit is per destination.
    assert_eq!(start("someone@example.com").await.status(), 202);
    // The daily cap counts every start of the channel that passed the other limits: the fifth is refused.
    assert_eq!(start("another@example.com").await.status(), 202);
    expect_problem(start("third@example.com").await, 503, "auth.otp_daily_cap").await;
}

/// A local SMTP sink (Python's `smtpd` debugging server) that prints every message to stdout.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl SmtpSink {
    fn start() -> Self {
        use std::io::Read;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("python3")
            .args([
                "-u",
                "-W",
                "ignore",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with the smtpd module (Python 3.11)");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // Wait until it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            child,
            port,
            output,
        }
    }

    async fn code(&self) -> String {
        for _ in 0..200 {
            let text = self.output.lock().unwrap().clone();
            if let Some(rest) = text.split("sign-in code is ").nth(1) {
                return rest.chars().take(6).collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("no code reached the SMTP sink");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn codes_are_delivered_by_smtp_when_configured() {
    let sink = SmtpSink::start();
    let port = sink.port;
    let app = TestApp::spawn_with(palisade_testkit::Backend::Sqlite, |s| {
        s.auth.otp.sender = "smtp".into();
        s.auth.otp.smtp = Some(palisade_server::config::SmtpSettings {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: palisade_server::config::SmtpTls::None,
            from: "Palisade <no-reply@example.com>".into(),
            username: None,
            password: None,
            password_file: None,
        });
    })
    .await
    .unwrap();
    let anon = app.anonymous();
    let res = anon
        .post(
            "/v1/auth/otp/start",
            &json!({"channel": "email", "destination": "owner@localhost", "tenant": "system"}),
        )
        .await;
    let challenge = palisade_testkit::json(res).await["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = sink.code().await;
    let res = anon
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": challenge, "code": code}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        app.outbox().is_empty(),
        "nothing went to the development outbox"
    );
    // SMS cannot be delivered by this sender: refused up front, for every account alike.
    let res = anon
        .post(
            "/v1/auth/otp/start",
            &json!({"channel": "sms", "destination": "+14155550123", "tenant": "system"}),
        )
        .await;
    let body = expect_problem(res, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["code"], "unavailable");
}

#[test]
fn production_refuses_smtp_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = palisade_server::config::Settings::for_test(dir.path());
    s.mode = palisade_server::config::Mode::Production;
    s.auth.otp.sender = "smtp".into();
    s.auth.otp.smtp = Some(palisade_server::config::SmtpSettings {
        host: "smtp.example.com".into(),
        port: None,
        tls: palisade_server::config::SmtpTls::None,
        from: "Palisade <no-reply@example.com>".into(),
        username: None,
        password: None,
        password_file: None,
    });
    assert!(
        s.verdicts()
            .iter()
            .any(|v| v.setting == "auth.otp.smtp.tls")
    );
}

async fn sign_in_and_role_endpoints_refuse_malformed_and_oversized_bodies(app: TestApp) {
    let tokens = app.sign_in("owner@localhost", "system").await;
    let owner = app.bearer(tokens["access_token"].as_str().unwrap());
    let anon = app.anonymous();
    // The oversized case goes to a sibling instance with a small body limit: a body that fits in
    // the socket buffers is written whole before the server answers 413 and closes, so the client
    // reliably reads the answer (a multi-megabyte body can meet a closed socket mid-write instead).
    let small = app.spawn_sibling(|s| s.limits.max_body_bytes = 4096).await;
    let small_owner = small.bearer(tokens["access_token"].as_str().unwrap());
    let small_anon = small.anonymous();
    let big = format!("{{\"code\":\"{}\"}}", "9".repeat(16 * 1024));
    for (actor, path) in [
        (&anon, "/v1/auth/otp/start"),
        (&anon, "/v1/auth/otp/verify"),
        (&anon, "/v1/auth/token/refresh"),
        (&anon, "/v1/auth/mfa/verify"),
        (&owner, "/v1/auth/totp/confirm"),
        (&owner, "/v1/auth/step-up"),
        (&owner, "/v1/roles"),
    ] {
        let send = |body: String, ct: &'static str| {
            actor
                .request(reqwest::Method::POST, path)
                .header("content-type", ct)
                .body(body)
                .send()
        };
        expect_problem(
            send("{".into(), "application/json").await.unwrap(),
            400,
            "request.malformed_json",
        )
        .await;
        expect_problem(
            send("{}".into(), "text/plain").await.unwrap(),
            415,
            "request.unsupported_media_type",
        )
        .await;
        let res = send("{\"evil\":1}".into(), "application/json")
            .await
            .unwrap();
        expect_problem(res, 400, "request.unknown_field").await;
        let small_actor = if std::ptr::eq(actor, &owner) {
            &small_owner
        } else {
            &small_anon
        };
        let res = small_actor
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        expect_problem(res, 413, "request.too_large").await;
    }
    // Nothing above signed anyone out or changed the owner's session.
    assert_eq!(owner.get("/v1/me").await.status(), 200);
}

each_backend!(sign_in_and_role_endpoints_refuse_malformed_and_oversized_bodies);
