//! The second factor end to end: TOTP enrolment, codes accepted once, recovery codes single-use, the
//! MFA step of sign-in, step-up for `requires_mfa` capabilities, and disabling TOTP.

use palisade_crypto::TotpSecret;
use palisade_testkit::{TestApp, each_backend};
use serde_json::{Value, json};

use crate::expect_problem;

pub(crate) fn base32_decode(s: &str) -> Vec<u8> {
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

pub(crate) fn code_at(secret: &TotpSecret, offset_steps: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + offset_steps * 30;
    secrecy::ExposeSecret::expose_secret(&secret.code_at(now as u64)).to_owned()
}

async fn start_and_verify(app: &TestApp) -> Value {
    app.verify_otp("owner@localhost", "system").await
}

async fn totp_enrolment_step_up_recovery_and_disable(app: TestApp) {
    // Arrange: a signed-in owner enrols TOTP.
    let first = app.sign_in("owner@localhost", "system").await;
    let me = app.bearer(first["access_token"].as_str().unwrap());
    let enrol = palisade_testkit::json(me.post("/v1/auth/totp/enroll", &json!({})).await).await;
    assert!(
        enrol["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let secret = TotpSecret::from_bytes(&base32_decode(enrol["secret"].as_str().unwrap())).unwrap();

    // A wrong code does not confirm; the right one does, once, and returns ten recovery codes.
    expect_problem(
        me.post("/v1/auth/totp/confirm", &json!({"code": "000000"}))
            .await,
        401,
        "auth.invalid_code",
    )
    .await;
    let res = me
        .post(
            "/v1/auth/totp/confirm",
            &json!({"code": code_at(&secret, 0)}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let recovery: Vec<String> = palisade_testkit::json(res).await["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // Disabling needs a step-up: the OTP-only token is refused.
    expect_problem(
        me.delete("/v1/auth/totp").await,
        403,
        "auth.step_up_required",
    )
    .await;
    // The code just used for confirmation cannot be replayed for step-up.
    expect_problem(
        me.post("/v1/auth/step-up", &json!({"code": code_at(&secret, 0)}))
            .await,
        401,
        "auth.invalid_code",
    )
    .await;
    // A recovery code is not a step-up.
    expect_problem(
        me.post("/v1/auth/step-up", &json!({"code": recovery[0]}))
            .await,
        401,
        "auth.invalid_code",
    )
    .await;
    let stepped = palisade_testkit::json(
        me.post("/v1/auth/step-up", &json!({"code": code_at(&secret, 1)}))
            .await,
    )
    .await;
    let stepped_me = app.bearer(stepped["access_token"].as_str().unwrap());
    let who = palisade_testkit::json(stepped_me.get("/v1/me").await).await;
    assert_eq!(who["amr"], json!(["otp", "totp"]));

    // Sign-in now needs the second factor.
    let owed = start_and_verify(&app).await;
    assert_eq!(owed["mfa_required"], true);
    assert!(owed.get("access_token").is_none());
    let mfa_token = owed["mfa_token"].as_str().unwrap().to_owned();
    let anon = app.anonymous();
    expect_problem(
        anon.post(
            "/v1/auth/mfa/verify",
            &json!({"mfa_token": mfa_token, "code": "abcde-fghij"}),
        )
        .await,
        401,
        "auth.invalid_code",
    )
    .await;
    let res = anon
        .post(
            "/v1/auth/mfa/verify",
            &json!({"mfa_token": mfa_token, "code": recovery[0]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let tokens = palisade_testkit::json(res).await;
    let who = palisade_testkit::json(
        app.bearer(tokens["access_token"].as_str().unwrap())
            .get("/v1/me")
            .await,
    )
    .await;
    assert_eq!(who["amr"], json!(["otp", "totp"]));
    // The MFA token is single-use, and so is the recovery code.
    expect_problem(
        anon.post(
            "/v1/auth/mfa/verify",
            &json!({"mfa_token": mfa_token, "code": recovery[1]}),
        )
        .await,
        401,
        "auth.invalid_mfa_token",
    )
    .await;
    let owed = start_and_verify(&app).await;
    let res = anon
        .post(
            "/v1/auth/mfa/verify",
            &json!({"mfa_token": owed["mfa_token"], "code": recovery[0]}),
        )
        .await;
    expect_problem(res, 401, "auth.invalid_code").await;
    // A tampered MFA token is refused.
    let forged = format!("{}x", owed["mfa_token"].as_str().unwrap());
    expect_problem(
        anon.post(
            "/v1/auth/mfa/verify",
            &json!({"mfa_token": forged, "code": recovery[2]}),
        )
        .await,
        401,
        "auth.invalid_mfa_token",
    )
    .await;

    // With the step-up, TOTP can be disabled; sign-in is one step again.
    assert_eq!(stepped_me.delete("/v1/auth/totp").await.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let notices: Vec<String> = app
        .outbox()
        .iter()
        .filter(|m| m["kind"] == "notice" && m["destination"] == "owner@localhost")
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        notices,
        [
            "Two-factor sign-in was turned on",
            "Two-factor sign-in was turned off"
        ]
    );
    let plain = start_and_verify(&app).await;
    assert!(plain["access_token"].is_string());
}

each_backend!(totp_enrolment_step_up_recovery_and_disable);
