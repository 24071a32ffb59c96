//! The Trust Center: a security posture computed from, and checked against, the running system.
//!
//! - [`checks`]: self-checks that probe the running server (in-process, through the real router) and
//!   record when they ran and what they saw. They run once while the server is built, then every
//!   `trust.check_interval_secs` (default 600 s) on a background task.
//! - [`claims`]: the controls and their claims; each claim is verified/failed by a check, declared in
//!   `[trust]`, or unverified (its check never ran, or the feature that would back it is not built).
//! - [`questionnaire`]: the sixteen CAIQ-inspired sections, each answer derived from and citing claims.
//! - [`sbom`]: the CycloneDX SBOM embedded at build time.
//! - [`security_txt`] and [`page`]: RFC 9116 security.txt and the public `/trust` page.
//!
//! Invariants: nothing here is marketing text. Every sentence shown as a fact is a claim whose status
//! comes from a check result or from the operator's declaration, labelled as such; a failed or
//! never-run check shows as failed or unverified everywhere (JSON, questionnaire, page). No secret,
//! secret name or credential-bearing URL ever reaches a report.

pub mod checks;
pub mod claims;
pub mod page;
pub mod questionnaire;
pub mod sbom;
pub mod security_txt;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::state::AppState;
use checks::{CheckId, CheckResult, Feature, RouteCounts, SecretsHealth};
use claims::{ClaimStatus, ControlView};

/// The latest result of every self-check, shared by the runner and the handlers.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    latest: Arc<RwLock<BTreeMap<CheckId, CheckResult>>>,
}

impl Evidence {
    /// Records results, replacing older ones of the same checks.
    pub fn record(&self, results: Vec<CheckResult>) {
        if let Ok(mut map) = self.latest.write() {
            for r in results {
                map.insert(r.check, r);
            }
        }
    }

    /// The latest result of one check.
    #[must_use]
    pub fn latest(&self, id: CheckId) -> Option<CheckResult> {
        self.latest.read().ok().and_then(|m| m.get(&id).cloned())
    }

    /// Every latest result, in check order.
    #[must_use]
    pub fn all(&self) -> Vec<CheckResult> {
        self.latest
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Runs the self-checks now, then every `trust.check_interval_secs` on a background task that holds
/// the router (the state does not, so there is no reference cycle; the task ends with the runtime).
pub async fn start(app: &AppState, router: &Router) {
    let results = checks::run_all(app, router).await;
    log_failures(app, &results);
    app.trust().record(results);
    let app = app.clone();
    let router = router.clone();
    let every = Duration::from_secs(app.settings().trust.check_interval_secs.max(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the checks have just run.
        tick.tick().await;
        loop {
            tick.tick().await;
            let results = checks::run_all(&app, &router).await;
            log_failures(&app, &results);
            app.trust().record(results);
        }
    });
}

fn log_failures(app: &AppState, results: &[CheckResult]) {
    // Development fails some checks by design (mode, TLS, generated key): say so without alarm.
    let production = app.settings().mode == crate::config::Mode::Production;
    for r in results.iter().filter(|r| !r.passed) {
        if production {
            tracing::warn!(target: "palisade::trust", check = r.check.as_str(), detail = %r.detail, "self-check failed");
        } else {
            tracing::info!(target: "palisade::trust", check = r.check.as_str(), detail = %r.detail, "self-check failed");
        }
    }
}

/// The live metrics at the top of the page and in `/security/json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Metrics {
    /// Route and capability counts from the registries.
    pub registry: RouteCounts,
    /// Declared resources served (`[[resource]]`).
    pub resources: usize,
    /// Sign-in methods enabled.
    pub auth_methods: Vec<&'static str>,
    /// `enabled/known`, e.g. `5/15`.
    pub features_enabled: String,
    /// Each known feature.
    pub features: Vec<Feature>,
    /// Secrets set and non-default (counts only).
    pub secrets: SecretsHealth,
    /// The database backend: `sqlite` or `postgres`.
    pub database_backend: &'static str,
    /// The shared-state backend: `memory` or `redis`.
    pub state_backend: &'static str,
    /// The rate-limit backend (`memory` or `redis`), `null` when rate limiting is off.
    pub rate_limit_backend: Option<&'static str>,
    /// `development` or `production`.
    pub mode: &'static str,
    /// Self-checks passing out of those run, e.g. `11/13`.
    pub checks_passed: String,
    /// When the oldest of the latest check results was taken.
    pub checked_at: Option<String>,
}

/// `/security/json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrustReport {
    /// When this report was assembled (RFC 3339).
    pub generated_at: String,
    /// Controls with their claims, statuses and evidence.
    pub controls: Vec<ControlView>,
    /// Live metrics.
    pub metrics: Metrics,
    /// Claims per status.
    pub summary: BTreeMap<&'static str, usize>,
}

/// RFC 3339 UTC to the second, as reports show times.
#[must_use]
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Assembles the report from the latest check results (no probing happens here).
#[must_use]
pub fn report(app: &AppState) -> TrustReport {
    let registry = claims::registry(app.settings());
    let evidence = app.trust();
    let controls = claims::evaluate_all(&registry, &|id| evidence.latest(id));
    let mut summary: BTreeMap<&'static str, usize> = [
        ClaimStatus::Verified,
        ClaimStatus::Failed,
        ClaimStatus::Unverified,
        ClaimStatus::Declared,
    ]
    .into_iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    for c in controls.iter().flat_map(|c| &c.claims) {
        *summary.entry(c.status.as_str()).or_insert(0) += 1;
    }
    let results = evidence.all();
    let features = checks::features_of(app);
    let s = app.settings();
    let mut auth_methods = Vec::new();
    if s.auth.otp.sender != "none" {
        auth_methods.push("email_otp");
    }
    auth_methods.push("totp");
    if s.auth.sessions.enabled {
        auth_methods.push("browser_session");
    }
    let metrics = Metrics {
        registry: checks::route_counts(app),
        resources: s.resources.len(),
        auth_methods,
        features_enabled: format!(
            "{}/{}",
            features.iter().filter(|f| f.enabled).count(),
            features.len()
        ),
        features,
        secrets: checks::secrets_health(app),
        database_backend: app.stores().health.backend(),
        state_backend: app.auth().state.health.backend(),
        rate_limit_backend: s
            .rate_limit
            .enabled
            .then(|| app.auth().state.limiter.health().backend),
        mode: s.mode.as_str(),
        checks_passed: format!(
            "{}/{}",
            results.iter().filter(|r| r.passed).count(),
            results.len()
        ),
        checked_at: results.iter().map(|r| r.at).min().map(rfc3339),
    };
    TrustReport {
        generated_at: rfc3339(OffsetDateTime::now_utc()),
        controls,
        metrics,
        summary,
    }
}
