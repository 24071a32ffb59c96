//! Identity changes and time: an administrator changing a user's e-mail or phone (validated, unique,
//! audited, announced to the old and the new address, and fatal to codes pending at the old address),
//! and the clock seam proving that expired codes, stale step-ups and expired tokens are refused.

use palisade_crypto::TotpSecret;
use palisade_testkit::{Actor, Role, TestApp, each_backend, json};
use serde_json::{Value, json};

use crate::expect_problem;

fn user_path(actor: &Actor) -> String {
    format!("/v1/users/{}", actor.user.as_ref().unwrap().id)
}

fn email_of(actor: &Actor) -> String {
    actor.user.as_ref().unwrap().email.clone()
}

/// The notices the outbox holds for `destination`, as `(subject, text)`, after waiting briefly for
/// `expected` of them (they are sent off the request path).
async fn notices_for(app: &TestApp, destination: &str, expected: usize) -> Vec<(String, String)> {
    let read = || -> Vec<(String, String)> {
        app.outbox()
            .iter()
            .filter(|m| m["kind"] == "notice" && m["destination"] == destination)
            .map(|m| {
                (
                    m["subject"].as_str().unwrap().to_owned(),
                    m["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    for _ in 0..50 {
        if read().len() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    read()
}

async fn an_admin_changes_a_users_email_and_both_addresses_get_a_notice(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let old = email_of(&member);

    // Act
    let res = admin
        .patch(
            &user_path(&member),
            &json!({"email": " Moved@Acme.TEST ", "phone": "+4915112345678"}),
        )
        .await;

    // Assert: the answer, the store, the audit trail and the notices.
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["email"], "moved@acme.test");
    assert_eq!(body["phone"], "+4915112345678");
    assert_eq!(body["roles"], json!(["member"]), "roles untouched");
    let stored = app
        .users_of(&acme.tenant)
        .await
        .into_iter()
        .find(|u| Some(u.id) == member.user.as_ref().map(|m| m.id))
        .unwrap();
    assert_eq!(stored.email, "moved@acme.test");
    let audit = json(
        admin
            .get(&format!(
                "/v1/audit?action=user.update&record_id={}",
                stored.id
            ))
            .await,
    )
    .await;
    let entries = audit["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["old"]["email"], old.as_str());
    assert_eq!(entries[0]["new"]["email"], "moved@acme.test");

    let to_old = notices_for(&app, &old, 1).await;
    let to_new = notices_for(&app, "moved@acme.test", 2).await;
    assert_eq!(to_old.len(), 1, "{to_old:?}");
    assert_eq!(
        to_old[0].0,
        "The e-mail address of your account was changed"
    );
    // Sent off the request path, so in either order.
    let mut subjects: Vec<&str> = to_new.iter().map(|(s, _)| s.as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        [
            "The phone number of your account was changed",
            "This address now signs in to your account",
        ]
    );
    for (_, text) in to_old.iter().chain(&to_new) {
        assert!(
            !text.contains('@') && !text.contains("+49"),
            "a notice names no address: {text}"
        );
    }

    // The new address signs in; the old one no longer reaches an account.
    let tokens = app.sign_in("moved@acme.test", "acme").await;
    assert!(tokens["access_token"].is_string());
    let before = app.outbox().len();
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/start",
            &json!({"channel": "email", "destination": old, "tenant": "acme"}),
        )
        .await;
    assert_eq!(res.status(), 202, "no enumeration: still 202");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        app.outbox()
            .iter()
            .skip(before)
            .all(|m| m["destination"] != old.as_str()),
        "no code goes to the old address"
    );
}

async fn an_email_or_phone_taken_in_the_tenant_is_refused_with_409_and_nothing_changes(
    app: TestApp,
) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let other = json(
        admin
            .post(
                "/v1/users",
                &json!({"email": "taken@acme.test", "phone": "+4915100000002"}),
            )
            .await,
    )
    .await;
    assert!(other["id"].is_string());
    let before = json(admin.get(&user_path(&member)).await).await;

    // Act + Assert: the e-mail is taken (the role change in the same request is refused with it).
    expect_problem(
        admin
            .patch(
                &user_path(&member),
                &json!({"email": "TAKEN@acme.test", "roles": ["viewer"], "status": "disabled"}),
            )
            .await,
        409,
        "user.email_taken",
    )
    .await;
    expect_problem(
        admin
            .patch(&user_path(&member), &json!({"phone": "+4915100000002"}))
            .await,
        409,
        "user.phone_taken",
    )
    .await;
    assert_eq!(
        json(admin.get(&user_path(&member)).await).await,
        before,
        "a refused change changed nothing"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        app.outbox().iter().all(|m| m["kind"] != "notice"),
        "a refused change sends no notice"
    );
    // The same address in another tenant is not taken.
    let globex = app.tenant("globex").await;
    let globex_admin = globex.user(Role::TenantAdmin).await;
    let globex_member = globex.user(Role::Member).await;
    let res = globex_admin
        .patch(
            &user_path(&globex_member),
            &json!({"email": "taken@acme.test"}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

async fn a_malformed_email_or_phone_is_refused_whole_with_422(app: TestApp) {
    // Arrange
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let before = json(admin.get(&user_path(&member)).await).await;

    // Act + Assert
    for (body, field) in [
        (
            json!({"email": "not-an-address", "status": "disabled"}),
            "email",
        ),
        (json!({"email": "a b@acme.test"}), "email"),
        (json!({"email": ""}), "email"),
        (json!({"phone": "0151 1234", "roles": ["viewer"]}), "phone"),
        (json!({"email": "ok@acme.test", "phone": "+0123"}), "phone"),
    ] {
        let problem = expect_problem(
            admin.patch(&user_path(&member), &body).await,
            422,
            "validation.failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    let wrong_type = expect_problem(
        admin
            .patch(&user_path(&member), &json!({"email": 42}))
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(wrong_type["errors"][0]["field"], "email");
    assert_eq!(
        json(admin.get(&user_path(&member)).await).await,
        before,
        "nothing changed"
    );
    // `null` removes the phone.
    let with_phone = admin
        .patch(&user_path(&member), &json!({"phone": "+4915112345678"}))
        .await;
    assert_eq!(with_phone.status(), 200);
    let cleared = json(
        admin
            .patch(&user_path(&member), &json!({"phone": null}))
            .await,
    )
    .await;
    assert_eq!(cleared["phone"], Value::Null);
    assert_eq!(cleared["email"], before["email"]);
}

async fn a_user_cannot_change_their_own_email_through_the_admin_route(app: TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    expect_problem(
        admin
            .patch(&user_path(&admin), &json!({"email": "me@acme.test"}))
            .await,
        403,
        "user.self_change",
    )
    .await;
}

async fn a_code_pending_at_the_old_address_dies_with_the_change(app: TestApp) {
    // Arrange: a code is on its way to the member's current address.
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let member = acme.user(Role::Member).await;
    let (challenge, code) = app.start_otp(&email_of(&member), "acme").await;

    // Act: the address changes before the code is used.
    let res = admin
        .patch(&user_path(&member), &json!({"email": "new@acme.test"}))
        .await;
    assert_eq!(res.status(), 200);

    // Assert
    expect_problem(
        app.anonymous()
            .post(
                "/v1/auth/otp/verify",
                &json!({"challenge_id": challenge, "code": code}),
            )
            .await,
        401,
        "auth.invalid_code",
    )
    .await;
}

async fn an_otp_code_past_its_validity_is_refused_with_401(app: TestApp) {
    // Arrange: two codes, started together.
    let (first, first_code) = app.start_otp("owner@localhost", "system").await;
    let (second, second_code) = app.start_otp("owner@localhost", "system").await;
    let verify = |challenge: &str, code: &str| {
        let anon = app.anonymous();
        let body = json!({"challenge_id": challenge, "code": code});
        async move { anon.post("/v1/auth/otp/verify", &body).await }
    };

    // Act + Assert: just inside the 10 minutes the code works ...
    app.advance_clock(time::Duration::seconds(590));
    assert_eq!(verify(&first, &first_code).await.status(), 200);
    // ... and just past them it is refused like a wrong code.
    app.advance_clock(time::Duration::seconds(11));
    expect_problem(
        verify(&second, &second_code).await,
        401,
        "auth.invalid_code",
    )
    .await;
    // Starting again works: the clock only aged the old challenge.
    let tokens = app.sign_in("owner@localhost", "system").await;
    assert!(tokens["access_token"].is_string());
}

async fn an_access_token_past_its_lifetime_is_refused_with_401(app: TestApp) {
    let tokens = app.sign_in("owner@localhost", "system").await;
    let me = app.bearer(tokens["access_token"].as_str().unwrap());
    app.advance_clock(time::Duration::seconds(800));
    assert_eq!(me.get("/v1/me").await.status(), 200);
    // 900 s lifetime plus the 30 s leeway.
    app.advance_clock(time::Duration::seconds(131));
    let res = me.get("/v1/me").await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    // The refresh token (30 days) still renews the session.
    let res = app
        .anonymous()
        .post(
            "/v1/auth/token/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .unwrap() as u32;
        value = (value << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((value >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// The TOTP code for the app's clock, `steps` time steps ahead.
fn totp_now(app: &TestApp, secret: &TotpSecret, steps: i64) -> String {
    let at = app.state.now().unix_timestamp() + steps * 30;
    secrecy::ExposeSecret::expose_secret(&secret.code_at(at as u64)).to_owned()
}

async fn a_step_up_older_than_the_window_must_be_repeated(app: TestApp) {
    // Arrange: the owner enrols TOTP and steps up.
    let first = app.sign_in("owner@localhost", "system").await;
    let me = app.bearer(first["access_token"].as_str().unwrap());
    let enrol = json(me.post("/v1/auth/totp/enroll", &json!({})).await).await;
    let secret = TotpSecret::from_bytes(&base32_decode(enrol["secret"].as_str().unwrap())).unwrap();
    let res = me
        .post(
            "/v1/auth/totp/confirm",
            &json!({"code": totp_now(&app, &secret, 0)}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let stepped = json(
        me.post(
            "/v1/auth/step-up",
            &json!({"code": totp_now(&app, &secret, 1)}),
        )
        .await,
    )
    .await;
    let stepped_me = app.bearer(stepped["access_token"].as_str().unwrap());

    // Act: the step-up window (300 s) passes; the token itself (900 s) is still valid.
    app.advance_clock(time::Duration::seconds(301));

    // Assert: the requires_mfa capability wants a fresh proof ...
    expect_problem(
        stepped_me.delete("/v1/auth/totp").await,
        403,
        "auth.step_up_required",
    )
    .await;
    assert_eq!(stepped_me.get("/v1/me").await.status(), 200);
    // ... and a TOTP code of the (moved) present gives it.
    let again = json(
        stepped_me
            .post(
                "/v1/auth/step-up",
                &json!({"code": totp_now(&app, &secret, 0)}),
            )
            .await,
    )
    .await;
    let fresh = app.bearer(again["access_token"].as_str().unwrap());
    assert_eq!(fresh.delete("/v1/auth/totp").await.status(), 204);
}

each_backend!(
    an_admin_changes_a_users_email_and_both_addresses_get_a_notice,
    an_email_or_phone_taken_in_the_tenant_is_refused_with_409_and_nothing_changes,
    a_malformed_email_or_phone_is_refused_whole_with_422,
    a_user_cannot_change_their_own_email_through_the_admin_route,
    a_code_pending_at_the_old_address_dies_with_the_change,
    an_otp_code_past_its_validity_is_refused_with_401,
    an_access_token_past_its_lifetime_is_refused_with_401,
    a_step_up_older_than_the_window_must_be_repeated,
);
