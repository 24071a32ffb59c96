//! The HTTPS SMS gateway sender (`[sms]`): a local HTTP gateway inside the test receives the POST
//! (bearer token, body shape or template, the code itself), e-mail keeps going to the outbox, a failing,
//! slow or unreachable gateway leaves `otp/start` at 202 and is counted, and production refuses a
//! plain-http gateway.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use palisade_server::config::{Mode, Settings, SmsSettings};
use palisade_testkit::{Role, TestApp, each_backend, json};
use secrecy::SecretString;
use serde_json::{Value, json};

const TOKEN: &str = "gw-secret-token-123";
const PHONE: &str = "+4915112345678";

/// A message as the gateway received it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// A local SMS gateway: records every request and answers with `status` after `delay_ms`.
#[derive(Clone)]
struct Gateway {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    addr: SocketAddr,
}

impl Gateway {
    async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = Self {
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(202)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            addr: listener.local_addr().unwrap(),
        };
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(gateway.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        gateway
    }

    fn url(&self) -> String {
        format!("http://{}/v1/messages", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..150 {
            if self.received().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.received()
    }
}

async fn receive(
    State(g): State<Gateway>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    g.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let delay = g.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    StatusCode::from_u16(g.status.load(Ordering::SeqCst)).unwrap()
}

fn sms_settings(url: String, body: Option<Value>) -> SmsSettings {
    SmsSettings {
        url,
        token: Some(SecretString::from(TOKEN.to_owned())),
        token_file: None,
        from: Some("Palisade".to_owned()),
        timeout_secs: 1,
        body,
    }
}

/// The app of `app` again, with `[sms]` pointing at `sms` (same backend, fresh database).
async fn with_gateway(app: &TestApp, sms: SmsSettings) -> TestApp {
    TestApp::spawn_with(app.backend, |s| {
        s.sms = Some(sms);
        // These tests send more codes to one number than the default per-destination limit allows.
        s.auth.otp.per_destination.count = 100;
    })
    .await
    .expect("app with a gateway")
}

/// A tenant `acme` with a member whose phone is [`PHONE`].
async fn member_with_phone(app: &TestApp) {
    let acme = app.tenant("acme").await;
    let admin = acme.user(Role::TenantAdmin).await;
    let res = admin
        .post(
            "/v1/users",
            &json!({"email": "sms@acme.test", "phone": PHONE, "roles": ["member"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
}

async fn start_sms(app: &TestApp, destination: &str) -> String {
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/start",
            &json!({"channel": "sms", "destination": destination, "tenant": "acme"}),
        )
        .await;
    assert_eq!(res.status(), 202, "always 202");
    json(res).await["challenge_id"].as_str().unwrap().to_owned()
}

/// Waits (briefly) until `n` SMS deliveries have failed.
async fn wait_failures(app: &TestApp, n: u64) {
    for _ in 0..150 {
        if app.state.metrics().notify_failures("sms") >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn six_digits_in(text: &str) -> String {
    let digits: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(digits.len(), 6, "no code in {text:?}");
    digits
}

async fn an_sms_code_is_posted_to_the_gateway_with_the_bearer_token_and_signs_in(app: TestApp) {
    // Arrange
    let gateway = Gateway::spawn().await;
    let app = with_gateway(&app, sms_settings(gateway.url(), None)).await;
    member_with_phone(&app).await;

    // Act
    let challenge = start_sms(&app, PHONE).await;

    // Assert: one JSON POST with the token, the fixed shape, and the code.
    let got = gateway.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let msg = &got[0];
    assert_eq!(msg.path, "/v1/messages");
    assert_eq!(
        msg.authorization.as_deref(),
        Some("Bearer gw-secret-token-123")
    );
    assert_eq!(msg.content_type.as_deref(), Some("application/json"));
    assert_eq!(msg.body["to"], PHONE);
    assert_eq!(msg.body["from"], "Palisade");
    assert_eq!(
        msg.body.as_object().unwrap().len(),
        3,
        "exactly to, text, from: {}",
        msg.body
    );
    let code = six_digits_in(msg.body["text"].as_str().unwrap());
    assert!(
        app.outbox().iter().all(|m| m["channel"] != "sms"),
        "SMS codes no longer go to the outbox"
    );
    let res = app
        .anonymous()
        .post(
            "/v1/auth/otp/verify",
            &json!({"challenge_id": challenge, "code": code}),
        )
        .await;
    assert_eq!(res.status(), 200, "the delivered code signs in");

    // E-mail still goes to the e-mail sender (the outbox), not the gateway.
    let tokens = app.sign_in("sms@acme.test", "acme").await;
    assert!(tokens["access_token"].is_string());
    assert_eq!(gateway.received().len(), 1);
    // An unknown number: 202, and nothing is sent.
    start_sms(&app, "+4915199999999").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(gateway.received().len(), 1);
}

async fn a_body_template_is_filled_with_json_safe_values(app: TestApp) {
    let gateway = Gateway::spawn().await;
    let template = json!({
        "recipient": {"msisdn": "{to}"},
        "message": "{text}",
        "pin": "{code}",
        "sender": "{from}",
        "flags": ["otp", 1]
    });
    let app = with_gateway(&app, sms_settings(gateway.url(), Some(template))).await;
    member_with_phone(&app).await;
    start_sms(&app, PHONE).await;
    let got = gateway.wait_for(1).await;
    let body = &got[0].body;
    assert_eq!(body["recipient"]["msisdn"], PHONE);
    assert_eq!(body["sender"], "Palisade");
    assert_eq!(body["flags"], json!(["otp", 1]));
    let pin = body["pin"].as_str().unwrap();
    assert_eq!(six_digits_in(body["message"].as_str().unwrap()), pin);
}

async fn a_failing_slow_or_unreachable_gateway_still_answers_202_and_is_counted(app: TestApp) {
    // Arrange
    let gateway = Gateway::spawn().await;
    let app = with_gateway(&app, sms_settings(gateway.url(), None)).await;
    member_with_phone(&app).await;
    let failures = || app.state.metrics().notify_failures("sms");
    // Non-2xx statuses.
    for (i, status) in [500u16, 401, 429, 302].into_iter().enumerate() {
        gateway.status.store(status, Ordering::SeqCst);
        start_sms(&app, PHONE).await;
        wait_failures(&app, i as u64 + 1).await;
        assert_eq!(failures(), i as u64 + 1, "status {status} counted");
    }
    // A 302 is not followed (the token must not travel elsewhere): one request per start.
    assert_eq!(gateway.received().len(), 4);
    // A gateway slower than the timeout (1 s).
    gateway.status.store(200, Ordering::SeqCst);
    gateway.delay_ms.store(2_500, Ordering::SeqCst);
    start_sms(&app, PHONE).await;
    wait_failures(&app, 5).await;
    assert_eq!(failures(), 5, "timeout counted");
    gateway.delay_ms.store(0, Ordering::SeqCst);
    // A success is not a failure.
    start_sms(&app, PHONE).await;
    gateway.wait_for(6).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(failures(), 5);

    // Unreachable: nothing listens on the port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = with_gateway(
        &app,
        sms_settings(format!("http://{closed}/v1/messages"), None),
    )
    .await;
    member_with_phone(&down).await;
    let res = down
        .anonymous()
        .post(
            "/v1/auth/otp/start",
            &json!({"channel": "sms", "destination": PHONE, "tenant": "acme"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    wait_failures(&down, 1).await;
    assert_eq!(down.state.metrics().notify_failures("sms"), 1);
    let metrics = down.anonymous().get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("palisade_notify_failures_total{channel=\"sms\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains(TOKEN));
}

each_backend!(
    an_sms_code_is_posted_to_the_gateway_with_the_bearer_token_and_signs_in,
    a_body_template_is_filled_with_json_safe_values,
    a_failing_slow_or_unreachable_gateway_still_answers_202_and_is_counted,
);

fn production(dir: &std::path::Path) -> Settings {
    let mut s = Settings::for_test(dir);
    s.mode = Mode::Production;
    s.trust.contact = Some("mailto:security@example.com".into());
    s.auth.otp.sender = "none".into();
    s.secrets.master_key = Some(SecretString::from(
        "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G-prod".to_owned(),
    ));
    s.database.url = Some(format!("sqlite://{}", dir.join("p.db").display()).into());
    s
}

#[tokio::test]
async fn production_refuses_a_plain_http_gateway_and_a_missing_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = production(dir.path());
    s.sms = Some(SmsSettings {
        token: None,
        ..sms_settings("http://sms.example.com/send".to_owned(), None)
    });
    let err = palisade_server::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("sms.url") && err.contains("https"), "{err}");
    assert!(err.contains("sms.token"), "{err}");
    assert!(
        !dir.path().join("p.db").exists(),
        "refused before the database"
    );

    let mut s = production(dir.path());
    s.sms = Some(sms_settings(
        "https://sms.example.com/send".to_owned(),
        None,
    ));
    assert!(
        palisade_server::build(s).await.is_ok(),
        "https with a token starts"
    );
}

#[test]
fn config_check_refuses_an_http_gateway_in_production_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("sms-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let run = |mode: &str, url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["config", "check"])
            .current_dir(dir.path())
            .env("PALISADE__MODE", mode)
            .env(
                "PALISADE__SECRETS__MASTER_KEY",
                "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G-prod",
            )
            .env("PALISADE__TRUST__CONTACT", "mailto:security@example.com")
            .env("PALISADE__AUTH__OTP__SENDER", "none")
            .env("PALISADE__SMS__URL", url)
            .env("PALISADE__SMS__TOKEN_FILE", &token)
            .env_remove("PALISADE_CONFIG")
            .output()
            .unwrap()
    };
    let out = run("production", "http://sms.example.com/send");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("sms.url"), "{text}");
    assert!(!text.contains(TOKEN), "the token is never printed: {text}");
    let out = run("production", "https://sms.example.com/send");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("development", "http://127.0.0.1:9999/send");
    assert!(
        out.status.success(),
        "development accepts http://: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
