//! Self-checks: functions that probe the running system and record what they saw.
//!
//! Invariants:
//! - A check observes; it never changes state. HTTP probes go in-process through the real router
//!   (`tower::ServiceExt::oneshot`), so they pass through the same pipeline and guards as a client.
//! - Every result records when it ran, whether it passed, a human `detail` and the `observed` values.
//!   Details name routes, backends and counts, never a secret, a secret's name or a URL with
//!   credentials.
//! - A check that errors or times out is a failed check, never a skipped one.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use palisade_authz::Access;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;
use utoipa::ToSchema;

use crate::config::{Level, Mode};
use crate::pipeline::SECURITY_HEADERS;
use crate::state::AppState;

/// `v[key]` without the panicking `Index` (absent keys and non-objects read as `null`).
fn at<'a>(v: &'a Value, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    v.get(key).unwrap_or(&NULL)
}

/// Longest a single check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Every self-check the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckId {
    /// Anonymous request to every protected route → 401.
    AnonymousProbe,
    /// A real response carries every security header.
    SecurityHeaders,
    /// The signing key is ES512/P-521 and published in the JWKS.
    SigningKey,
    /// The route table declares an access for every route, with registered capabilities.
    RouteRegistry,
    /// The database answers.
    Database,
    /// The shared-state backend answers.
    SharedState,
    /// Share of required secrets that are set and non-default.
    Secrets,
    /// Production's start-up verdicts refuse default secrets, a missing contact, headers off.
    StartupGuard,
    /// The server runs in production mode.
    ProductionMode,
    /// TLS in front of the server (a trusted proxy and an https public URL).
    Transport,
    /// Which known features are enabled.
    Features,
    /// No request body of the API takes a password.
    NoPasswords,
    /// The embedded SBOM is well formed.
    Sbom,
    /// The audit hash chain of every tenant (up to a bound) verifies.
    AuditChain,
    /// Rate limiting is on, and which backend takes the decisions.
    RateLimit,
}

impl CheckId {
    /// Every check, in the order they run.
    pub const ALL: [Self; 15] = [
        Self::AnonymousProbe,
        Self::SecurityHeaders,
        Self::SigningKey,
        Self::RouteRegistry,
        Self::Database,
        Self::SharedState,
        Self::Secrets,
        Self::StartupGuard,
        Self::ProductionMode,
        Self::Transport,
        Self::Features,
        Self::NoPasswords,
        Self::Sbom,
        Self::AuditChain,
        Self::RateLimit,
    ];

    /// The stable name used in JSON and on the page.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnonymousProbe => "anonymous_probe",
            Self::SecurityHeaders => "security_headers",
            Self::SigningKey => "signing_key",
            Self::RouteRegistry => "route_registry",
            Self::Database => "database",
            Self::SharedState => "shared_state",
            Self::Secrets => "secrets",
            Self::StartupGuard => "startup_guard",
            Self::ProductionMode => "production_mode",
            Self::Transport => "transport",
            Self::Features => "features",
            Self::NoPasswords => "no_passwords",
            Self::Sbom => "sbom",
            Self::AuditChain => "audit_chain",
            Self::RateLimit => "rate_limit",
        }
    }
}

/// Marks a request as a self-check probe (a request extension, which no remote client can set): the
/// pipeline leaves it out of the request metrics and the access log, and the guard out of the denial
/// count, so the Trust Center's own probing does not show up as traffic or as attacks.
#[derive(Debug, Clone, Copy)]
pub struct SelfCheckProbe;

/// What one run of one check saw.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResult {
    /// Which check.
    pub check: CheckId,
    /// When it ran (RFC 3339 UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub at: OffsetDateTime,
    /// Whether what it saw satisfies the claim it backs.
    pub passed: bool,
    /// What it saw, in one sentence.
    pub detail: String,
    /// The observed values.
    #[schema(value_type = Object)]
    pub observed: Value,
}

struct Outcome {
    passed: bool,
    detail: String,
    observed: Value,
}

fn outcome(passed: bool, detail: impl Into<String>, observed: Value) -> Outcome {
    Outcome {
        passed,
        detail: detail.into(),
        observed,
    }
}

/// Runs every check once.
pub async fn run_all(app: &AppState, router: &Router) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(CheckId::ALL.len());
    for id in CheckId::ALL {
        results.push(run_one(id, app, router).await);
    }
    results
}

/// Runs one check, turning a timeout into a failure.
pub async fn run_one(id: CheckId, app: &AppState, router: &Router) -> CheckResult {
    let at = OffsetDateTime::now_utc();
    let fut = async {
        match id {
            CheckId::AnonymousProbe => anonymous_probe(app, router).await,
            CheckId::SecurityHeaders => security_headers(router).await,
            CheckId::SigningKey => signing_key(app, router).await,
            CheckId::RouteRegistry => route_registry(app),
            CheckId::Database => database(app).await,
            CheckId::SharedState => shared_state(app).await,
            CheckId::Secrets => secrets(app),
            CheckId::StartupGuard => startup_guard(app),
            CheckId::ProductionMode => production_mode(app),
            CheckId::Transport => transport(app),
            CheckId::Features => features(app),
            CheckId::NoPasswords => no_passwords(app),
            CheckId::Sbom => sbom(),
            CheckId::AuditChain => audit_chain(app).await,
            CheckId::RateLimit => rate_limit(app),
        }
    };
    let o = tokio::time::timeout(CHECK_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            outcome(
                false,
                format!(
                    "the check did not finish within {} s",
                    CHECK_TIMEOUT.as_secs()
                ),
                Value::Null,
            )
        });
    CheckResult {
        check: id,
        at,
        passed: o.passed,
        detail: o.detail,
        observed: o.observed,
    }
}

/// Replaces `{param}` segments with a fresh id that names nothing.
fn concrete_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                uuid::Uuid::now_v7().to_string()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One in-process request through the whole router.
async fn probe(
    router: &Router,
    method: Method,
    path: &str,
) -> Result<axum::response::Response, String> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .extension(SelfCheckProbe)
        .body(Body::from("{}"))
        .map_err(|e| format!("request could not be built: {e}"))?;
    match router.clone().oneshot(req).await {
        Ok(res) => Ok(res),
        Err(never) => match never {},
    }
}

async fn anonymous_probe(app: &AppState, router: &Router) -> Outcome {
    let Some(routes) = app.routes() else {
        return outcome(false, "the route registry is not built", Value::Null);
    };
    let mut probed = 0_usize;
    let mut refused = 0_usize;
    let mut answered: Vec<String> = Vec::new();
    for e in routes
        .entries()
        .iter()
        .filter(|e| matches!(e.access, Access::Capability(_)))
    {
        probed += 1;
        match probe(router, e.method.clone(), &concrete_path(e.path)).await {
            Ok(res)
                if res.status() == StatusCode::UNAUTHORIZED
                    && res.headers().contains_key(header::WWW_AUTHENTICATE) =>
            {
                refused += 1;
            }
            Ok(res) => answered.push(format!("{} {} → {}", e.method, e.path, res.status())),
            Err(err) => answered.push(format!("{} {} → {err}", e.method, e.path)),
        }
    }
    let observed = json!({ "probed": probed, "refused_401": refused, "not_refused": answered });
    if probed == 0 {
        return outcome(false, "no protected route to probe", observed);
    }
    if answered.is_empty() {
        outcome(
            true,
            format!(
                "{probed} protected routes probed without a credential: all {refused} answered 401 with WWW-Authenticate"
            ),
            observed,
        )
    } else {
        outcome(
            false,
            format!(
                "{} of {probed} protected routes did not answer 401: {}",
                answered.len(),
                answered.join(", ")
            ),
            observed,
        )
    }
}

async fn security_headers(router: &Router) -> Outcome {
    // A success and an error response: both must carry every header.
    let mut seen = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for path in ["/health", "/.well-known/palisade-self-check-not-found"] {
        match probe(router, Method::GET, path).await {
            Ok(res) => {
                let absent: Vec<&str> = SECURITY_HEADERS
                    .iter()
                    .filter(|(name, value)| {
                        res.headers()
                            .get(*name)
                            .and_then(|v| v.to_str().ok())
                            .is_none_or(|v| v != *value)
                    })
                    .map(|(name, _)| *name)
                    .collect();
                seen.push(json!({ "path": path, "status": res.status().as_u16(), "missing_or_changed": absent }));
                for a in absent {
                    missing.push(format!("{a} on {path}"));
                }
            }
            Err(e) => missing.push(format!("{path}: {e}")),
        }
    }
    let observed = json!({ "expected": SECURITY_HEADERS.iter().map(|(n, _)| *n).collect::<Vec<_>>(), "responses": seen });
    if missing.is_empty() {
        outcome(
            true,
            format!(
                "a 200 and a 404 response each carried all {} security headers with their configured values",
                SECURITY_HEADERS.len()
            ),
            observed,
        )
    } else {
        outcome(
            false,
            format!("missing or changed: {}", missing.join(", ")),
            observed,
        )
    }
}

async fn signing_key(app: &AppState, router: &Router) -> Outcome {
    let Some(signer) = app.auth().tokens.keys().signer() else {
        return outcome(false, "there is no active signing key", Value::Null);
    };
    let kid = signer.kid().to_owned();
    let jwks = match probe(router, Method::GET, "/.well-known/jwks.json").await {
        Ok(res) if res.status() == StatusCode::OK => match res.into_body().collect().await {
            Ok(body) => serde_json::from_slice::<Value>(&body.to_bytes()).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        },
        Ok(res) => {
            return outcome(
                false,
                format!("the JWKS answered {}", res.status()),
                json!({ "kid": kid }),
            );
        }
        Err(e) => return outcome(false, e, json!({ "kid": kid })),
    };
    let keys = at(&jwks, "keys").as_array().cloned().unwrap_or_default();
    let published = keys
        .iter()
        .find(|k| at(k, "kid").as_str() == Some(kid.as_str()));
    let observed = json!({ "kid": kid, "jwks_keys": keys.len(), "alg": "ES512", "crv": published.and_then(|k| at(k, "crv").as_str()) });
    let Some(jwk) = published else {
        return outcome(
            false,
            format!(
                "the active key {kid} is not in the JWKS ({} keys)",
                keys.len()
            ),
            observed,
        );
    };
    // SECURITY: `from_jwk` accepts only kty EC, crv P-521 and a point on the curve (aws-lc-rs).
    match palisade_crypto::Es512VerifyingKey::from_jwk(jwk) {
        Ok(k) if k.thumbprint() == signer.verifying_key().thumbprint() => outcome(
            true,
            format!(
                "the active signing key {kid} is ES512 on P-521, and the JWKS ({} keys) publishes it with the same RFC 7638 thumbprint",
                keys.len()
            ),
            observed,
        ),
        Ok(_) => outcome(
            false,
            format!("the JWKS entry for {kid} is a different key than the one that signs"),
            observed,
        ),
        Err(_) => outcome(
            false,
            format!("the JWKS entry for {kid} is not a P-521 ES512 public key"),
            observed,
        ),
    }
}

/// Counts of the route registry, shared by the check and the live metrics.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RouteCounts {
    /// Every route.
    pub routes: usize,
    /// Routes that demand a capability.
    pub protected: usize,
    /// Public routes (each with a recorded reason).
    pub public: usize,
    /// Capabilities registered.
    pub capabilities: usize,
    /// Distinct capabilities demanded by routes.
    pub capabilities_on_routes: usize,
}

/// The registry counts.
#[must_use]
pub fn route_counts(app: &AppState) -> RouteCounts {
    let entries = app.routes().map(|r| r.entries()).unwrap_or_default();
    let used: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e.access.capability().map(|c| c.as_str()))
        .collect();
    let protected = entries
        .iter()
        .filter(|e| matches!(e.access, Access::Capability(_)))
        .count();
    RouteCounts {
        routes: entries.len(),
        protected,
        public: entries.len() - protected,
        capabilities: app.capabilities().len(),
        capabilities_on_routes: used.len(),
    }
}

fn route_registry(app: &AppState) -> Outcome {
    let Some(routes) = app.routes() else {
        return outcome(false, "the route registry is not built", Value::Null);
    };
    let mut problems = Vec::new();
    for e in routes.entries() {
        match &e.access {
            Access::Capability(c) if app.capabilities().get(c).is_none() => {
                problems.push(format!(
                    "{} {} demands unregistered `{c}`",
                    e.method, e.path
                ));
            }
            Access::Public { reason } if reason.trim().is_empty() => {
                problems.push(format!(
                    "{} {} is public without a reason",
                    e.method, e.path
                ));
            }
            _ => {}
        }
    }
    let c = route_counts(app);
    let observed = serde_json::to_value(&c).unwrap_or(Value::Null);
    if problems.is_empty() && c.routes > 0 {
        outcome(
            true,
            format!(
                "{} routes: {} demand one of {} registered capabilities ({} distinct), {} are public with a recorded reason",
                c.routes, c.protected, c.capabilities, c.capabilities_on_routes, c.public
            ),
            observed,
        )
    } else {
        outcome(false, problems.join("; "), observed)
    }
}

async fn database(app: &AppState) -> Outcome {
    let backend = app.stores().health.backend();
    let ping = tokio::time::timeout(Duration::from_secs(2), app.stores().health.ping()).await;
    let ok = matches!(ping, Ok(Ok(())));
    outcome(
        ok,
        if ok {
            format!("the {backend} database answered a ping")
        } else {
            format!("the {backend} database did not answer a ping within 2 s")
        },
        json!({ "backend": backend, "reachable": ok }),
    )
}

/// At most this many tenants' chains are recomputed per run, so the check's cost stays bounded.
const AUDIT_CHECK_MAX_TENANTS: usize = 50;

async fn audit_chain(app: &AppState) -> Outcome {
    match crate::audit_jobs::verify_first(app, AUDIT_CHECK_MAX_TENANTS).await {
        Ok((reports, total)) => {
            let broken: Vec<String> = reports
                .iter()
                .filter(|(_, r)| !r.valid)
                .map(|(t, r)| {
                    format!(
                        "{} at seq {}",
                        t.id,
                        r.first_invalid_seq.unwrap_or_default()
                    )
                })
                .collect();
            let entries: u64 = reports.iter().map(|(_, r)| r.entries).sum();
            let checked = reports.len();
            outcome(
                broken.is_empty(),
                if broken.is_empty() {
                    format!(
                        "the audit hash chains of {checked} of {total} tenants verify ({entries} entries)"
                    )
                } else {
                    format!(
                        "{} of {checked} tenants' audit chains do not verify",
                        broken.len()
                    )
                },
                json!({ "tenants_checked": checked, "tenants": total, "entries": entries, "invalid": broken }),
            )
        }
        Err(e) => outcome(
            false,
            "the audit chains could not be read",
            json!({ "error": e.to_string() }),
        ),
    }
}

fn rate_limit(app: &AppState) -> Outcome {
    let health = app.auth().state.limiter.health();
    let enabled = app.settings().rate_limit.enabled;
    let passed = enabled && !health.degraded;
    let detail = if !enabled {
        "rate limiting is turned off".to_owned()
    } else if health.degraded {
        format!(
            "the {} limiter is unreachable: decisions fall back to per-instance limits",
            health.backend
        )
    } else {
        format!(
            "requests are rate limited (GCRA) by the {} backend{}",
            health.backend,
            if health.backend == "memory" {
                ", per instance"
            } else {
                ", shared across instances"
            }
        )
    };
    outcome(
        passed,
        detail,
        json!({ "enabled": enabled, "backend": health.backend, "degraded": health.degraded }),
    )
}

async fn shared_state(app: &AppState) -> Outcome {
    let health = &app.auth().state.health;
    let backend = health.backend();
    let ping = tokio::time::timeout(Duration::from_secs(2), health.ping()).await;
    let ok = matches!(ping, Ok(Ok(())));
    let scope = if backend == "memory" {
        "in-process, one instance"
    } else {
        "shared across instances"
    };
    outcome(
        ok,
        if ok {
            format!("the {backend} shared-state backend ({scope}) answered a ping")
        } else {
            format!("the {backend} shared-state backend did not answer a ping within 2 s")
        },
        json!({ "backend": backend, "reachable": ok }),
    )
}

/// Secrets health: how many of the secrets this configuration needs are set and non-default.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct SecretsHealth {
    /// Secrets this configuration needs.
    pub required: usize,
    /// Of those, set and not a known default, weak or generated value.
    pub healthy: usize,
    /// `healthy / required` in percent, rounded down.
    pub percent: u8,
}

/// Computes [`SecretsHealth`]. SECURITY: only counts leave this function, never names or values.
#[must_use]
pub fn secrets_health(app: &AppState) -> SecretsHealth {
    let s = app.settings();
    let mut required = 1_usize;
    let mut healthy = usize::from(s.secrets.master_key.as_ref().is_some_and(|k| {
        palisade_crypto::MasterKey::new(k.clone())
            .weakness()
            .is_none()
    }));
    if s.auth.otp.sender == "smtp"
        && let Some(smtp) = &s.auth.otp.smtp
        && smtp.username.is_some()
    {
        required += 1;
        healthy += usize::from(smtp.password.as_ref().is_some_and(|p| {
            use secrecy::ExposeSecret;
            !p.expose_secret().trim().is_empty()
        }));
    }
    let percent = u8::try_from(healthy * 100 / required).unwrap_or(0);
    SecretsHealth {
        required,
        healthy,
        percent,
    }
}

fn secrets(app: &AppState) -> Outcome {
    let h = secrets_health(app);
    outcome(
        h.healthy == h.required,
        format!(
            "{} of {} required secrets are set and non-default ({} %)",
            h.healthy, h.required, h.percent
        ),
        serde_json::to_value(h).unwrap_or(Value::Null),
    )
}

fn startup_guard(app: &AppState) -> Outcome {
    // Judge this very configuration as production would, with each control broken in turn.
    let refuses = |break_it: &dyn Fn(&mut crate::Settings), setting: &str| {
        let mut s = app.settings().clone();
        s.mode = Mode::Production;
        break_it(&mut s);
        s.verdicts()
            .iter()
            .any(|v| v.level == Level::Error && v.setting == setting)
    };
    let cases: [(&str, bool); 4] = [
        (
            "a default master key",
            refuses(
                &|s| s.secrets.master_key = Some("changeme".to_owned().into()),
                "secrets.master_key",
            ),
        ),
        (
            "a missing master key",
            refuses(&|s| s.secrets.master_key = None, "secrets.master_key"),
        ),
        (
            "a missing security contact",
            refuses(&|s| s.trust.contact = None, "trust.contact"),
        ),
        (
            "security headers turned off",
            refuses(
                &|s| s.server.security_headers = false,
                "server.security_headers",
            ),
        ),
    ];
    let refused: Vec<&str> = cases.iter().filter(|(_, r)| *r).map(|(n, _)| *n).collect();
    let accepted: Vec<&str> = cases.iter().filter(|(_, r)| !*r).map(|(n, _)| *n).collect();
    let observed = json!({ "refused": refused, "accepted": accepted });
    if accepted.is_empty() {
        outcome(
            true,
            format!("production start-up refuses {}", refused.join(", ")),
            observed,
        )
    } else {
        outcome(
            false,
            format!("production start-up would accept {}", accepted.join(", ")),
            observed,
        )
    }
}

fn production_mode(app: &AppState) -> Outcome {
    let mode = app.settings().mode;
    outcome(
        mode == Mode::Production,
        format!("mode = {}", mode.as_str()),
        json!({ "mode": mode.as_str() }),
    )
}

fn transport(app: &AppState) -> Outcome {
    let s = &app.settings().server;
    let https = s
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let hops = s.trusted_proxy_hops;
    let observed = json!({ "public_url_https": https, "trusted_proxy_hops": hops });
    // The server speaks plain HTTP; TLS is terminated by the proxy the operator declares.
    match (https, hops) {
        (true, h) if h > 0 => outcome(
            true,
            format!(
                "the public URL is https and {h} trusted proxy hop(s) terminate TLS in front of the server"
            ),
            observed,
        ),
        (true, _) => outcome(
            false,
            "the public URL is https but server.trusted_proxy_hops is 0: no proxy in front is declared",
            observed,
        ),
        (false, _) => outcome(
            false,
            "server.public_url is not https: this server listens in plain HTTP with no TLS in front declared",
            observed,
        ),
    }
}

/// One known feature and whether this deployment has it on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Feature {
    /// Stable name.
    pub name: &'static str,
    /// Whether it is on.
    pub enabled: bool,
    /// Why (the setting, or that the build lacks it).
    pub note: &'static str,
}

/// The known features and whether each is on.
#[must_use]
pub fn features_of(app: &AppState) -> Vec<Feature> {
    let s = app.settings();
    let f = |name, enabled, note| Feature {
        name,
        enabled,
        note,
    };
    let not_built = "not in this build yet";
    vec![
        f(
            "otp_sign_in",
            s.auth.otp.sender != "none",
            "auth.otp.sender",
        ),
        f("totp_mfa", true, "built in"),
        f(
            "security_headers",
            s.server.security_headers,
            "server.security_headers",
        ),
        f(
            "multi_instance_state",
            s.state.url != "memory://",
            "state.url",
        ),
        f("metrics", true, "built in; metrics.allowed_ips"),
        f("trust_center", true, "built in"),
        f("audit_log", true, "built in; [audit]"),
        f("rate_limiting", s.rate_limit.enabled, "rate_limit.enabled"),
        f("waf", s.waf.enabled, "waf.enabled"),
        f("api_keys", true, "built in; /v1/api-keys"),
        f(
            "declared_resources",
            !s.resources.is_empty(),
            "[[resource]] in palisade.toml",
        ),
        f("privacy_gdpr", false, not_built),
        f("vault", false, not_built),
        f("webhooks", false, not_built),
        f("oauth_m2m", false, not_built),
    ]
}

fn features(app: &AppState) -> Outcome {
    let list = features_of(app);
    let on = list.iter().filter(|f| f.enabled).count();
    outcome(
        true,
        format!("{on} of {} known features are enabled", list.len()),
        json!({ "enabled": on, "known": list.len(), "features": list }),
    )
}

fn no_passwords(app: &AppState) -> Outcome {
    let Some(doc) = app.openapi() else {
        return outcome(false, "the OpenAPI document is not built", Value::Null);
    };
    let schemas = at(at(doc, "components"), "schemas")
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut with_password = Vec::new();
    for (name, schema) in &schemas {
        if let Some(props) = at(schema, "properties").as_object()
            && props
                .keys()
                .any(|k| k.to_ascii_lowercase().contains("password"))
        {
            with_password.push(name.clone());
        }
    }
    let otp = app
        .routes()
        .is_some_and(|r| r.entries().iter().any(|e| e.path == "/v1/auth/otp/start"));
    let observed = json!({ "schemas_scanned": schemas.len(), "with_password_field": with_password, "otp_sign_in_route": otp });
    if with_password.is_empty() && otp {
        outcome(
            true,
            format!(
                "{} API schemas scanned: none has a password field; sign-in is by one-time code (and TOTP)",
                schemas.len()
            ),
            observed,
        )
    } else if !otp {
        outcome(
            false,
            "the one-time-code sign-in route is missing",
            observed,
        )
    } else {
        outcome(
            false,
            format!(
                "schemas with a password field: {}",
                with_password.join(", ")
            ),
            observed,
        )
    }
}

fn sbom() -> Outcome {
    let s = super::sbom::summary();
    let observed = serde_json::to_value(&s).unwrap_or(Value::Null);
    let ok = s.spec_version.as_deref() == Some("1.5")
        && s.linked > 0
        && s.without_purl_or_version == 0
        && s.without_licence == 0;
    outcome(
        ok,
        format!(
            "embedded CycloneDX {} SBOM lists {} crates linked into this binary and {} used only at build time; {} lack a purl or version, {} lack a licence",
            s.spec_version.as_deref().unwrap_or("?"),
            s.linked,
            s.build_time,
            s.without_purl_or_version,
            s.without_licence
        ),
        observed,
    )
}
