//! The route registry is the single source of truth: every protected route refuses anonymous callers,
//! the OpenAPI document lists exactly the registered routes, and the role × route matrix is pinned.

use palisade_authz::Access;
use palisade_testkit::{Backend, Role, TestApp, each_backend};
use reqwest::Method;

use crate::{concrete_path, expect_problem};

async fn every_protected_route_refuses_anonymous_callers(app: TestApp) {
    let routes = app.state.routes().expect("routes").entries().to_vec();
    let anon = app.anonymous();
    let mut probed = 0;
    for route in routes
        .iter()
        .filter(|r| matches!(r.access, Access::Capability(_)))
    {
        let path = concrete_path(route.path);
        let res = anon
            .request(
                Method::from_bytes(route.method.as_str().as_bytes()).unwrap(),
                &path,
            )
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            res.status().as_u16(),
            401,
            "{} {} answered an anonymous caller",
            route.method,
            route.path
        );
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"palisade\""));
        expect_problem(res, 401, "auth.unauthenticated").await;
        probed += 1;
    }
    assert!(probed >= 10, "the probe covered {probed} routes");
}

async fn a_presented_but_unverifiable_credential_is_refused_not_ignored(app: TestApp) {
    let res = reqwest::Client::new()
        .get(format!("{}/v1/tenants", app.base_url))
        .header("authorization", "Bearer eyJhbGciOiJub25lIn0.e30.")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"palisade\", error=\"invalid_token\""
    );
    expect_problem(res, 401, "auth.invalid_token").await;
    let res = reqwest::Client::new()
        .get(format!("{}/v1/tenants", app.base_url))
        .header("authorization", "Test not-a-registered-token")
        .send()
        .await
        .unwrap();
    expect_problem(res, 401, "auth.invalid_token").await;
}

each_backend!(
    every_protected_route_refuses_anonymous_callers,
    a_presented_but_unverifiable_credential_is_refused_not_ignored
);

#[tokio::test]
async fn openapi_lists_exactly_the_registered_routes_with_their_access() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let doc = palisade_testkit::json(app.anonymous().get("/openapi.json").await).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let access = op
                .get("x-palisade-capability")
                .or_else(|| op.get("x-palisade-public"));
            assert!(access.is_some(), "{method} {path} documents no access");
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut registered: Vec<(String, String)> = app
        .state
        .routes()
        .unwrap()
        .entries()
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect();
    documented.sort();
    registered.sort();
    assert_eq!(documented, registered);
    // Every referenced schema exists.
    let text = doc.to_string();
    for piece in text.split("#/components/schemas/").skip(1) {
        let name: String = piece.chars().take_while(|c| *c != '"').collect();
        assert!(
            doc["components"]["schemas"].get(&name).is_some(),
            "schema {name} is referenced but missing"
        );
    }
    let summary: Vec<String> = app
        .state
        .routes()
        .unwrap()
        .views()
        .iter()
        .map(|r| {
            format!(
                "{} {} -> {}",
                r.method,
                r.path,
                r.capability.clone().unwrap_or_else(|| format!(
                    "public ({})",
                    r.public_reason.clone().unwrap_or_default()
                ))
            )
        })
        .collect();
    insta::assert_snapshot!("route_registry", summary.join("\n"));
}

#[tokio::test]
async fn a_route_table_naming_an_unregistered_capability_is_refused() {
    use palisade_authz::{Capability, CapabilityRegistry};
    use palisade_server::router::{RouteError, SecureRouter, op};
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    async fn handler() {}
    let table = SecureRouter::new(app.state.clone()).get(
        "/v1/ghost",
        Access::cap(Capability::from_static("ghost.read")),
        op("ghost", "ghost", "test"),
        handler,
    );
    let err = table
        .finish(&CapabilityRegistry::with_platform())
        .expect_err("refused");
    assert!(matches!(err, RouteError::UnknownCapability { .. }), "{err}");

    let table = SecureRouter::new(app.state.clone()).get(
        "/x",
        Access::Public { reason: " " },
        op("x", "x", "test"),
        handler,
    );
    assert!(matches!(
        table.finish(&CapabilityRegistry::with_platform()),
        Err(RouteError::PublicWithoutReason { .. })
    ));

    let table = SecureRouter::new(app.state.clone())
        .get(
            "/x",
            Access::Public { reason: "a" },
            op("x", "x", "test"),
            handler,
        )
        .get(
            "/x",
            Access::Public { reason: "b" },
            op("y", "y", "test"),
            handler,
        );
    assert!(matches!(
        table.finish(&CapabilityRegistry::with_platform()),
        Err(RouteError::Duplicate { .. })
    ));
}

/// The role × route authorization matrix: for each built-in role (in the tenant kind where it exists),
/// whether the guard lets the request through. A change to any grant changes this snapshot.
#[tokio::test]
async fn the_role_route_authorization_matrix_is_pinned() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let partner = app
        .tenant_under("partner-co", palisade_domain::TenantKind::Partner, None)
        .await;
    let acme = app.tenant("acme").await;
    let actors = vec![
        ("system_admin", app.system_admin().await),
        ("partner_admin", partner.user(Role::PartnerAdmin).await),
        ("tenant_admin", acme.user(Role::TenantAdmin).await),
        ("member", acme.user(Role::Member).await),
        ("viewer", acme.user(Role::Viewer).await),
        ("no_roles", acme.user_with_roles(&[]).await),
        ("unknown_role", acme.user_with_roles(&["root"]).await),
    ];
    let mut routes = app.state.routes().unwrap().entries().to_vec();
    // logout-all ends the actors' sessions, so it is probed last.
    routes.sort_by_key(|r| r.path == "/v1/auth/logout-all");
    let mut lines = Vec::new();
    for route in routes
        .iter()
        .filter(|r| matches!(r.access, Access::Capability(_)))
    {
        let mut cells = Vec::new();
        for (name, actor) in &actors {
            // Use fresh ids and invalid bodies so an allowed request changes nothing.
            let res = actor
                .request(
                    Method::from_bytes(route.method.as_str().as_bytes()).unwrap(),
                    &concrete_path(route.path),
                )
                .header("content-type", "application/json")
                .body("{\"__probe\": true}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            assert_ne!(
                status, 401,
                "{name} is authenticated ({} {})",
                route.method, route.path
            );
            assert!(
                status < 500,
                "{name} {} {} -> {status}",
                route.method,
                route.path
            );
            cells.push(format!(
                "{name}={}",
                if status == 403 { "deny" } else { "allow" }
            ));
        }
        lines.push(format!(
            "{:6} {:22} {}",
            route.method.as_str(),
            route.path,
            cells.join(" ")
        ));
    }
    insta::assert_snapshot!("authorization_matrix", lines.join("\n"));
}

/// `SystemScope` is the one way around a grant, so every use in the server is listed here and
/// reviewed: a new use fails this test until it is added with its internal role.
#[test]
fn system_scope_is_used_only_where_reviewed() {
    const REVIEWED: &[(&str, &str)] = &[
        ("app.rs", "InternalRole::Bootstrap"),
        ("guard.rs", "InternalRole::Authentication"),
        ("keyring.rs", "InternalRole::KeyRotation"),
        ("auth.rs", "InternalRole::SignIn"),
        ("mfa.rs", "InternalRole::SignIn"),
        ("audit_jobs.rs", "InternalRole::AuditMaintenance"),
        ("record_jobs.rs", "InternalRole::Retention"),
        ("key_usage.rs", "InternalRole::KeyUsage"),
        ("net.rs", "InternalRole::Recovery"),
    ];
    let mut found = Vec::new();
    for (path, text) in crate::source_files(&["palisade-server/src"]) {
        for (i, _) in text.match_indices("SystemScope::internal(") {
            let role: String = text[i..]
                .chars()
                .skip("SystemScope::internal(".len())
                .take_while(|c| *c != ')')
                .collect();
            found.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                role,
            ));
        }
    }
    assert!(!found.is_empty());
    for (file, role) in &found {
        assert!(
            REVIEWED.iter().any(|(f, r)| f == file && r == role),
            "unreviewed SystemScope::internal({role}) in {file}"
        );
    }
}
