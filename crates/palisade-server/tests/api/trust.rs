//! The Trust Center: claims follow the running system (breaking a control flips its claim), every claim
//! is backed by a self-check or labelled declared, the SBOM validates against CycloneDX 1.5, security.txt
//! carries the RFC 9116 fields, the questionnaire cites only existing claims and never outranks them,
//! and the page is public HTML that works under its own CSP.

use std::collections::BTreeMap;

use palisade_server::config::{Mode, Settings, TrustSubprocessor};
use palisade_server::trust::checks::CheckId;
use palisade_server::trust::claims::{Basis, registry};
use palisade_testkit::{Backend, TestApp, each_backend};
use serde_json::Value;

use crate::expect_problem;

fn claims_of(report: &Value) -> BTreeMap<String, Value> {
    report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["claims"].as_array().unwrap().iter())
        .map(|c| (c["id"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

async fn report(app: &TestApp) -> Value {
    let res = app.system_admin().await.get("/security/json").await;
    assert_eq!(res.status(), 200);
    palisade_testkit::json(res).await
}

async fn the_reports_refuse_anonymous_callers(app: TestApp) {
    for path in [
        "/security/json",
        "/security/questionnaire",
        "/security/sbom",
    ] {
        let res = app.anonymous().get(path).await;
        expect_problem(res, 401, "auth.unauthenticated").await;
    }
}

async fn a_healthy_development_server_verifies_its_checked_claims(app: TestApp) {
    let report = report(&app).await;
    let claims = claims_of(&report);
    for id in [
        "authz.anonymous_refused",
        "authz.routes_declared",
        "auth.jwt_es512",
        "auth.no_passwords",
        "http.security_headers",
        "secrets.configured",
        "secrets.refused_in_production",
        "ops.database",
        "ops.shared_state",
        "supply.sbom",
        "audit.chain",
        "ratelimit.backend",
    ] {
        assert_eq!(claims[id]["status"], "verified", "{id}: {}", claims[id]);
        assert!(claims[id]["evidence"]["at"].is_string(), "{id} has no time");
    }
    // Honest about what development is not.
    assert_eq!(claims["ops.production_mode"]["status"], "failed");
    assert_eq!(claims["transport.tls"]["status"], "failed");
    let m = &report["metrics"];
    assert_eq!(
        m["registry"]["capabilities"].as_u64().unwrap() as usize,
        app.state.capabilities().len()
    );
    assert_eq!(
        m["registry"]["routes"].as_u64().unwrap() as usize,
        app.state.routes().unwrap().entries().len()
    );
    assert!(m["features_enabled"].as_str().unwrap().contains('/'));
    assert_eq!(m["secrets"]["percent"], 100);
    assert_eq!(m["state_backend"], "memory");
    assert!(["sqlite", "postgres"].contains(&m["database_backend"].as_str().unwrap()));
    assert_eq!(m["rate_limit_backend"], "memory");
    // SECURITY: no secret reaches the report.
    let text = report.to_string();
    assert!(
        !text.contains("test-master-key"),
        "the report leaks a secret"
    );
    assert!(!text.contains("master_key"), "the report names a secret");
}

each_backend!(
    the_reports_refuse_anonymous_callers,
    a_healthy_development_server_verifies_its_checked_claims
);

#[tokio::test]
async fn turning_security_headers_off_fails_the_header_claim_in_json_and_on_the_page() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.security_headers = false)
        .await
        .unwrap();
    let report = report(&app).await;
    let claim = &claims_of(&report)["http.security_headers"];
    assert_eq!(claim["status"], "failed", "{claim}");
    assert!(
        claim["evidence"]["detail"]
            .as_str()
            .unwrap()
            .contains("strict-transport-security"),
        "{claim}"
    );
    let control = report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "transport")
        .unwrap();
    assert_eq!(control["status"], "failed");

    let page = app.anonymous().get("/trust").await.text().await.unwrap();
    assert!(
        page.contains(
            "id=\"claim-http.security_headers\" data-status=\"failed\"><span class=\"badge s-failed\">Failed</span>"
        ),
        "the page does not show the failed header claim"
    );
}

#[tokio::test]
async fn every_claim_is_backed_by_a_check_or_labelled_declared() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.trust.contact = Some("mailto:security@example.com".into());
        s.trust.regions = vec!["EU (Frankfurt)".into()];
    })
    .await
    .unwrap();
    let reg = registry(app.state.settings());
    let report = report(&app).await;
    let claims = claims_of(&report);
    assert_eq!(
        claims.keys().cloned().collect::<Vec<_>>().len(),
        reg.claim_ids().count(),
        "the JSON shows exactly the registered claims"
    );
    let mut checked = 0;
    for control in reg.controls() {
        for def in &control.claims {
            let view = &claims[def.id];
            match &def.basis {
                Basis::Check(id) => {
                    checked += 1;
                    assert!(CheckId::ALL.contains(id));
                    assert_eq!(view["basis"], "check");
                    assert_eq!(view["evidence"]["check"], id.as_str());
                    assert!(
                        view["evidence"]["at"].is_string(),
                        "{} was never checked",
                        def.id
                    );
                    assert!(["verified", "failed"].contains(&view["status"].as_str().unwrap()));
                }
                Basis::Declared { setting, present } => {
                    assert_eq!(view["basis"], "declared");
                    assert!(view["evidence"]["check"].is_null());
                    assert!(setting.starts_with("trust."));
                    let expected = if *present { "declared" } else { "unverified" };
                    assert_eq!(view["status"], expected, "{}", def.id);
                }
                Basis::NotBuilt { reason } => {
                    assert_eq!(view["basis"], "not_built");
                    assert_eq!(view["status"], "unverified");
                    assert!(reason.contains("not built yet"));
                }
            }
            // Only a check can verify; only configuration can declare.
            if view["status"] == "verified" {
                assert!(matches!(def.basis, Basis::Check(_)));
            }
            if view["status"] == "declared" {
                assert!(matches!(def.basis, Basis::Declared { present: true, .. }));
            }
        }
    }
    assert!(checked >= 10, "{checked} checked claims");
    assert_eq!(claims["org.contact"]["status"], "declared");
    assert_eq!(claims["org.regions"]["status"], "declared");
    assert_eq!(claims["org.pen_tests"]["status"], "unverified");
}

#[tokio::test]
async fn the_sbom_is_cyclonedx_1_5_valid_and_lists_the_linked_crates_with_purls_and_licences() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let res = app.system_admin().await.get("/security/sbom").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/vnd.cyclonedx+json")
    );
    let sbom = palisade_testkit::json(res).await;

    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cyclonedx");
    let load = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fixtures.join(name)).unwrap()).unwrap()
    };
    let registry = jsonschema::Registry::new()
        .add(
            "http://cyclonedx.org/schema/spdx.schema.json",
            load("spdx.schema.json"),
        )
        .unwrap()
        .add(
            "http://cyclonedx.org/schema/jsf-0.82.schema.json",
            load("jsf-0.82.schema.json"),
        )
        .unwrap()
        .prepare()
        .unwrap();
    let validator = jsonschema::options()
        .with_registry(&registry)
        .build(&load("bom-1.5.schema.json"))
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sbom)
        .take(10)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}");
    // The validator does bite: a component of an unknown type is refused.
    let mut broken = sbom.clone();
    broken["components"][0]["type"] = "not-a-type".into();
    assert!(!validator.is_valid(&broken));

    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["metadata"]["component"]["name"], "palisade-server");
    let components = sbom["components"].as_array().unwrap();
    assert!(components.len() > 100, "{} components", components.len());
    for c in components {
        let (name, version) = (c["name"].as_str().unwrap(), c["version"].as_str().unwrap());
        assert_eq!(c["purl"], format!("pkg:cargo/{name}@{version}"));
        assert!(!c["licenses"].as_array().unwrap().is_empty(), "{name}");
    }
    // Exact versions from the lockfile, and nothing that only the tests use.
    let lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"),
    )
    .unwrap();
    let axum = components.iter().find(|c| c["name"] == "axum").unwrap();
    assert!(lock.contains(&format!(
        "name = \"axum\"\nversion = \"{}\"",
        axum["version"].as_str().unwrap()
    )));
    assert_eq!(axum["scope"], "required");
    assert!(axum["hashes"][0]["content"].as_str().unwrap().len() == 64);
    // Features are resolved as for this binary: sqlx's MySQL driver is not compiled in.
    for dev_only in [
        "insta",
        "jsonschema",
        "palisade-testkit",
        "tempfile",
        "sqlx-mysql",
    ] {
        assert!(
            components.iter().all(|c| c["name"] != dev_only),
            "{dev_only} is not compiled into the binary"
        );
    }
    let syn = components.iter().find(|c| c["name"] == "syn").unwrap();
    assert_eq!(
        syn["scope"], "excluded",
        "proc-macro code is build-time only"
    );
}

#[test]
fn the_cli_prints_the_same_sbom() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("sbom")
        .env("PALISADE_CONFIG", "/nonexistent/palisade.toml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let embedded: Value = serde_json::from_str(palisade_server::trust::sbom::SBOM_JSON).unwrap();
    assert_eq!(printed, embedded);
}

fn security_txt_fields(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (k, v) = line.split_once(": ").expect("field: value");
        fields
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.to_owned());
    }
    fields
}

#[tokio::test]
async fn security_txt_has_the_rfc_9116_fields_and_expires_within_a_year() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.trust.contact = Some("mailto:security@example.com".into());
        s.trust.policy = Some("https://example.com/disclosure".into());
        s.trust.preferred_languages = vec!["en".into(), "sv".into()];
        s.server.public_url = Some("https://api.example.com/".into());
    })
    .await
    .unwrap();
    let res = app.anonymous().get("/.well-known/security.txt").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    let fields = security_txt_fields(&res.text().await.unwrap());
    assert_eq!(fields["contact"], ["mailto:security@example.com"]);
    assert_eq!(
        fields["canonical"],
        ["https://api.example.com/.well-known/security.txt"]
    );
    assert_eq!(fields["policy"], ["https://example.com/disclosure"]);
    assert_eq!(fields["preferred-languages"], ["en, sv"]);
    assert_eq!(fields["expires"].len(), 1, "Expires appears exactly once");
    let expires = time::OffsetDateTime::parse(
        &fields["expires"][0],
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(expires > now && expires <= now + time::Duration::days(365));

    // Without a public URL there is no canonical address to state: the field is left out, not guessed.
    let no_url = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.trust.contact = Some("mailto:security@example.com".into());
    })
    .await
    .unwrap();
    let text = no_url
        .anonymous()
        .get("/.well-known/security.txt")
        .await
        .text()
        .await
        .unwrap();
    let fields = security_txt_fields(&text);
    assert!(fields.contains_key("contact") && fields.contains_key("expires"));
    assert!(!fields.contains_key("canonical"), "{text}");

    // Without a contact there is no valid file (development only; production refuses to start).
    let bare = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let res = bare.anonymous().get("/.well-known/security.txt").await;
    expect_problem(res, 404, "trust.contact_not_configured").await;
}

#[tokio::test]
async fn production_refuses_to_start_without_a_security_contact() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::for_test(dir.path());
    s.mode = Mode::Production;
    s.auth.otp.sender = "none".into();
    s.secrets.master_key = Some("k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G".to_owned().into());
    s.database.url = Some(format!("sqlite://{}", dir.path().join("p.db").display()).into());
    s.trust.contact = None;
    let err = palisade_server::build(s.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("trust.contact"), "{err}");
    s.trust.contact = Some("mailto:security@example.com".into());
    let app = palisade_server::build(s)
        .await
        .expect("starts with a contact");
    app.start_background().await;
    // In production the mode claim holds.
    let results = app.state.trust().all();
    let mode = results
        .iter()
        .find(|r| r.check == CheckId::ProductionMode)
        .unwrap();
    assert!(mode.passed, "{}", mode.detail);
}

/// Maintenance commands build the app without serving it: the self-checks (which probe the router)
/// run only once a serving instance starts its background work.
#[tokio::test]
async fn self_checks_run_only_for_a_serving_instance() {
    let dir = tempfile::tempdir().unwrap();
    let app = palisade_server::build(Settings::for_test(dir.path()))
        .await
        .unwrap();
    assert!(app.state.trust().all().is_empty());
    app.start_background().await;
    assert!(!app.state.trust().all().is_empty());
}

#[tokio::test]
async fn questionnaire_answers_cite_existing_claims_and_never_say_more_than_they_prove() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.security_headers = false)
        .await
        .unwrap();
    let admin = app.system_admin().await;
    let claims = claims_of(&report(&app).await);
    let q = palisade_testkit::json(admin.get("/security/questionnaire").await).await;
    let sections = q["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 16);
    let severity = |s: &str| match s {
        "verified" => 0,
        "declared" => 1,
        "unverified" => 2,
        "failed" => 3,
        other => panic!("status {other}"),
    };
    let mut cited = 0;
    for (i, section) in sections.iter().enumerate() {
        assert_eq!(section["number"], i + 1);
        for a in section["answers"].as_array().unwrap() {
            let ids = a["claims"].as_array().unwrap();
            let status = a["status"].as_str().unwrap();
            if ids.is_empty() {
                assert_eq!(status, "unverified", "an uncited answer asserts something");
                continue;
            }
            let mut worst = 0;
            for id in ids {
                let id = id.as_str().unwrap();
                let claim = claims
                    .get(id)
                    .unwrap_or_else(|| panic!("cites unknown {id}"));
                worst = worst.max(severity(claim["status"].as_str().unwrap()));
                assert!(a["answer"].as_str().unwrap().contains(id));
                cited += 1;
            }
            assert_eq!(severity(status), worst, "{a}");
        }
    }
    assert!(cited >= 20);
    let misuse = &sections[5]["answers"][0];
    assert_eq!(misuse["status"], "failed", "{misuse}");
    assert!(misuse["answer"].as_str().unwrap().starts_with("FAILED"));
}

#[tokio::test]
async fn the_trust_page_is_public_escaped_html_under_its_own_csp_with_a_same_origin_stylesheet() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.trust.regions = vec!["<script>alert(1)</script> EU".into()];
        s.trust.subprocessors = vec![TrustSubprocessor {
            name: "Hosting \"Co\" & Sons".into(),
            purpose: "compute".into(),
            region: Some("EU".into()),
        }];
    })
    .await
    .unwrap();
    let res = app.anonymous().get("/trust").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(csp, palisade_server::trust::page::PAGE_CSP);
    assert!(csp.contains("style-src 'self'") && !csp.contains("script-src"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let html = res.text().await.unwrap();
    assert!(
        !html.contains("<script"),
        "no script, and operator text is escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; EU"));
    assert!(html.contains("Hosting &quot;Co&quot; &amp; Sons"));
    assert!(!html.contains("style="), "no inline style");
    for landmark in [
        "<header",
        "<nav",
        "<main",
        "<footer",
        "lang=\"en\"",
        "name=\"viewport\"",
    ] {
        assert!(html.contains(landmark), "{landmark}");
    }
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/trust.css\">"));
    for endpoint in [
        "/security/json",
        "/security/sbom",
        "/security/questionnaire",
        "/.well-known/security.txt",
    ] {
        assert!(html.contains(&format!("href=\"{endpoint}\"")), "{endpoint}");
    }

    let css = app.anonymous().get("/trust.css").await;
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let icon = app.anonymous().get("/trust/icon.svg").await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    // The global policy (no script, nothing embeddable) still applies to the stylesheet itself.
    assert_eq!(
        css.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

#[tokio::test]
async fn self_check_probes_are_not_counted_as_traffic_or_denials() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let denials = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("palisade_authz_denials_total"))
            .unwrap_or("palisade_authz_denials_total missing")
            .to_owned()
    };
    // The checks ran at start: dozens of anonymous probes through this app's router, all refused.
    let probe = app.state.trust().latest(CheckId::AnonymousProbe).unwrap();
    assert!(probe.passed && probe.observed["refused_401"].as_u64().unwrap() >= 10);
    let text = app.anonymous().get("/metrics").await.text().await.unwrap();
    assert!(denials(&text).ends_with(" 0"), "{}", denials(&text));
    assert!(
        !text.contains("/v1/tenants"),
        "a probed route shows up in the request metrics"
    );
    // A real anonymous request is counted (the counters work).
    assert_eq!(app.anonymous().get("/v1/tenants").await.status(), 401);
    let text = app.anonymous().get("/metrics").await.text().await.unwrap();
    assert!(denials(&text).ends_with(" 1"), "{text}");
}

#[tokio::test]
async fn the_self_checks_run_again_after_the_configured_interval() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.trust.check_interval_secs = 10)
        .await
        .unwrap();
    let first = app
        .state
        .trust()
        .latest(CheckId::SecurityHeaders)
        .unwrap()
        .at;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let latest = app
            .state
            .trust()
            .latest(CheckId::SecurityHeaders)
            .unwrap()
            .at;
        if latest > first {
            assert!(
                latest - first >= time::Duration::seconds(9),
                "ran too early"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the checks did not run again"
        );
    }
    let report = report(&app).await;
    assert_eq!(
        claims_of(&report)["http.security_headers"]["status"],
        "verified"
    );
}

async fn a_tampered_audit_chain_fails_its_claim(app: TestApp) {
    // Something to audit, then a change behind the server's back (triggers dropped first).
    let admin = app.system_admin().await;
    let res = admin
        .post(
            "/v1/tenants",
            &serde_json::json!({"name": "Chained", "slug": "chained"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    for sql in [
        "DROP TRIGGER audit_log_no_update",
        "DROP TRIGGER audit_log_no_update ON audit_log",
    ] {
        let _ = app.raw_sql(sql).await;
    }
    app.raw_sql("UPDATE audit_log SET actor = 'user:nobody'")
        .await
        .unwrap();
    // A fresh instance on the same database runs its self-checks at start.
    let sibling = app.spawn_sibling(|_| {}).await;
    let report = report(&sibling).await;
    let claims = claims_of(&report);
    assert_eq!(
        claims["audit.chain"]["status"], "failed",
        "{}",
        claims["audit.chain"]
    );
    assert!(
        claims["audit.chain"]["evidence"]["detail"]
            .as_str()
            .unwrap()
            .contains("do not verify")
    );
}

each_backend!(a_tampered_audit_chain_fails_its_claim);
