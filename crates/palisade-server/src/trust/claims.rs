//! The claims registry: controls, each with claims, each claim backed by a self-check, declared by the
//! operator in `[trust]`, or openly unverified because the feature that would back it is not built.
//!
//! Invariants:
//! - A claim's status comes only from its basis: `verified`/`failed` from the latest result of its
//!   check, `unverified` when that check never ran (or nothing can check it yet), `declared` for
//!   configuration facts. No code path sets a status by hand.
//! - Claim texts state what is claimed; the numbers and names live in the evidence. Declared texts
//!   quote the operator's configuration and are labelled as such.
//! - Features register their claims through [`ClaimRegistry::control`]; ids are unique and stable
//!   (the questionnaire cites them).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::checks::{CheckId, CheckResult};
use crate::config::Settings;

/// A claim's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClaimStatus {
    /// Its check ran and passed.
    Verified,
    /// An organisational fact from configuration; the server cannot check it.
    Declared,
    /// Its check never ran, or nothing can check it yet.
    Unverified,
    /// Its check ran and failed.
    Failed,
}

impl ClaimStatus {
    /// The JSON spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Declared => "declared",
            Self::Unverified => "unverified",
            Self::Failed => "failed",
        }
    }

    /// How bad: the worst status of a group is the group's status.
    fn severity(self) -> u8 {
        match self {
            Self::Verified => 0,
            Self::Declared => 1,
            Self::Unverified => 2,
            Self::Failed => 3,
        }
    }

    /// The worst of several statuses (`None` when there are none).
    pub fn worst(all: impl IntoIterator<Item = Self>) -> Option<Self> {
        all.into_iter().max_by_key(|s| s.severity())
    }
}

/// What backs a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// A self-check.
    Check(CheckId),
    /// The `[trust]` setting it quotes; `None` when the operator did not declare it.
    Declared {
        /// The setting, e.g. `trust.regions`.
        setting: &'static str,
        /// Whether it is set.
        present: bool,
    },
    /// Nothing can check it yet: the feature is being built.
    NotBuilt {
        /// What is missing.
        reason: &'static str,
    },
}

/// One claim as registered.
#[derive(Debug, Clone)]
pub struct ClaimDef {
    /// Stable id, e.g. `authz.anonymous_refused`.
    pub id: &'static str,
    /// What is claimed.
    pub text: String,
    /// What backs it.
    pub basis: Basis,
}

/// One control as registered.
#[derive(Debug, Clone)]
pub struct ControlDef {
    /// Stable id.
    pub id: &'static str,
    /// Heading.
    pub title: &'static str,
    /// Its claims.
    pub claims: Vec<ClaimDef>,
}

/// Every control, in display order.
#[derive(Debug, Clone, Default)]
pub struct ClaimRegistry {
    controls: Vec<ControlDef>,
}

impl ClaimRegistry {
    /// Adds a control with its claims.
    pub fn control(&mut self, id: &'static str, title: &'static str, claims: Vec<ClaimDef>) {
        self.controls.push(ControlDef { id, title, claims });
    }

    /// The controls.
    #[must_use]
    pub fn controls(&self) -> &[ControlDef] {
        &self.controls
    }

    /// Every claim id.
    pub fn claim_ids(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.controls
            .iter()
            .flat_map(|c| c.claims.iter().map(|cl| cl.id))
    }
}

fn checked(id: &'static str, text: &str, check: CheckId) -> ClaimDef {
    ClaimDef {
        id,
        text: text.to_owned(),
        basis: Basis::Check(check),
    }
}

fn declared(
    id: &'static str,
    setting: &'static str,
    value: Option<String>,
    absent: &str,
) -> ClaimDef {
    match value {
        Some(text) => ClaimDef {
            id,
            text,
            basis: Basis::Declared {
                setting,
                present: true,
            },
        },
        None => ClaimDef {
            id,
            text: absent.to_owned(),
            basis: Basis::Declared {
                setting,
                present: false,
            },
        },
    }
}

fn list(items: Vec<String>) -> Option<String> {
    (!items.is_empty()).then(|| items.join("; "))
}

/// The claims of this deployment. Organisational claims quote `[trust]`.
#[must_use]
pub fn registry(settings: &Settings) -> ClaimRegistry {
    let t = &settings.trust;
    let mut r = ClaimRegistry::default();
    r.control(
        "access-control",
        "Access control",
        vec![
            checked(
                "authz.anonymous_refused",
                "Every protected route refuses a caller without a credential (401).",
                CheckId::AnonymousProbe,
            ),
            checked(
                "authz.routes_declared",
                "Every route declares exactly one registered capability, or is public with a recorded reason.",
                CheckId::RouteRegistry,
            ),
        ],
    );
    r.control(
        "authentication",
        "Authentication",
        vec![
            checked(
                "auth.jwt_es512",
                "Access tokens are signed with ES512 (ECDSA P-521), and the signing key is published in the JWKS.",
                CheckId::SigningKey,
            ),
            checked(
                "auth.no_passwords",
                "No API request takes a password: sign-in is by one-time code, with TOTP as second factor.",
                CheckId::NoPasswords,
            ),
        ],
    );
    r.control(
        "transport",
        "HTTP hardening and transport",
        vec![
            checked(
                "http.security_headers",
                "Responses, errors included, carry the security headers (HSTS, CSP, nosniff, Referrer-Policy, frame and cross-origin policies).",
                CheckId::SecurityHeaders,
            ),
            checked(
                "transport.tls",
                "Clients reach the server over TLS, terminated by a declared trusted proxy.",
                CheckId::Transport,
            ),
        ],
    );
    r.control(
        "secrets",
        "Secrets",
        vec![
            checked(
                "secrets.configured",
                "Every secret this configuration needs is set and is not a default, weak or generated value.",
                CheckId::Secrets,
            ),
            checked(
                "secrets.refused_in_production",
                "Production refuses to start with a default or missing secret, without a security contact, or with security headers off.",
                CheckId::StartupGuard,
            ),
        ],
    );
    r.control(
        "operations",
        "Operations",
        vec![
            checked(
                "ops.production_mode",
                "The server runs in production mode.",
                CheckId::ProductionMode,
            ),
            checked(
                "ops.database",
                "The database is reachable.",
                CheckId::Database,
            ),
            checked(
                "ops.shared_state",
                "The shared-state backend (revocations, replay guards, counters) is reachable.",
                CheckId::SharedState,
            ),
            checked(
                "ops.features",
                "The features enabled in this deployment are counted from its configuration.",
                CheckId::Features,
            ),
        ],
    );
    r.control(
        "audit",
        "Audit trail",
        vec![checked(
            "audit.chain",
            "Every change is recorded in a per-tenant SHA-256 hash chain, and each tenant's chain verifies from its checkpoint to its head.",
            CheckId::AuditChain,
        )],
    );
    r.control(
        "abuse",
        "Abuse protection",
        vec![checked(
            "ratelimit.backend",
            "Requests are rate limited per credential and per client IP.",
            CheckId::RateLimit,
        )],
    );
    r.control(
        "supply-chain",
        "Software supply chain",
        vec![checked(
            "supply.sbom",
            "A CycloneDX SBOM of every crate compiled into this binary, with versions, purls and licences, is embedded at build time.",
            CheckId::Sbom,
        )],
    );
    r.control(
        "organisation",
        "Organisation (declared by the operator)",
        vec![
            declared(
                "org.contact",
                "trust.contact",
                t.contact.as_ref().map(|c| format!("Security contact: {c}")),
                "No security contact is declared.",
            ),
            declared(
                "org.policy",
                "trust.policy",
                t.policy
                    .as_ref()
                    .map(|p| format!("Vulnerability disclosure policy: {p}")),
                "No disclosure policy is declared.",
            ),
            declared(
                "org.incident_response",
                "trust.incident_response",
                t.incident_response
                    .as_ref()
                    .map(|i| format!("Incident response: {i}")),
                "No incident response commitment is declared.",
            ),
            declared(
                "org.regions",
                "trust.regions",
                list(t.regions.clone()).map(|r| format!("Data is hosted in: {r}")),
                "No hosting region is declared.",
            ),
            declared(
                "org.subprocessors",
                "trust.subprocessors",
                list(
                    t.subprocessors
                        .iter()
                        .map(|s| match &s.region {
                            Some(region) => format!("{} ({}, {region})", s.name, s.purpose),
                            None => format!("{} ({})", s.name, s.purpose),
                        })
                        .collect(),
                )
                .map(|s| format!("Subprocessors: {s}")),
                "No subprocessor is declared.",
            ),
            declared(
                "org.certifications",
                "trust.certifications",
                list(
                    t.certifications
                        .iter()
                        .map(|c| {
                            let mut s = c.name.clone();
                            if let Some(i) = &c.issuer {
                                s.push_str(&format!(", issued by {i}"));
                            }
                            if let Some(v) = &c.valid_until {
                                s.push_str(&format!(", valid until {v}"));
                            }
                            s
                        })
                        .collect(),
                )
                .map(|c| format!("Certifications: {c}")),
                "No certification is declared.",
            ),
            declared(
                "org.pen_tests",
                "trust.pen_tests",
                list(
                    t.pen_tests
                        .iter()
                        .map(|p| match &p.scope {
                            Some(scope) => format!("{} on {} (scope: {scope})", p.provider, p.date),
                            None => format!("{} on {}", p.provider, p.date),
                        })
                        .collect(),
                )
                .map(|p| format!("Penetration tests: {p}")),
                "No penetration test is declared.",
            ),
        ],
    );
    r
}

/// The evidence behind a claim's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceView {
    /// The self-check that backs the claim (`null` for declared and not-built claims).
    pub check: Option<&'static str>,
    /// When that check last ran (`null` when it never ran).
    pub at: Option<String>,
    /// What it saw, or where a declared fact comes from, or why nothing checks it.
    pub detail: String,
    /// The observed values of the last run.
    #[schema(value_type = Object)]
    pub observed: Value,
}

/// A claim with its status and evidence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClaimView {
    /// Stable id.
    pub id: &'static str,
    /// What is claimed.
    pub text: String,
    /// `verified`, `failed`, `unverified` or `declared`.
    pub status: ClaimStatus,
    /// `check`, `declared` or `not_built`.
    pub basis: &'static str,
    /// The evidence.
    pub evidence: EvidenceView,
}

/// A control with its claims.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ControlView {
    /// Stable id.
    pub id: &'static str,
    /// Heading.
    pub title: &'static str,
    /// The worst status among its claims.
    pub status: ClaimStatus,
    /// Its claims.
    pub claims: Vec<ClaimView>,
}

/// Evaluates a claim against the latest results.
#[must_use]
pub fn evaluate(def: &ClaimDef, latest: &dyn Fn(CheckId) -> Option<CheckResult>) -> ClaimView {
    let (status, basis, evidence) = match &def.basis {
        Basis::Check(id) => match latest(*id) {
            Some(r) => (
                if r.passed {
                    ClaimStatus::Verified
                } else {
                    ClaimStatus::Failed
                },
                "check",
                EvidenceView {
                    check: Some(id.as_str()),
                    at: Some(super::rfc3339(r.at)),
                    detail: r.detail,
                    observed: r.observed,
                },
            ),
            None => (
                ClaimStatus::Unverified,
                "check",
                EvidenceView {
                    check: Some(id.as_str()),
                    at: None,
                    detail: "the check has not run yet".to_owned(),
                    observed: Value::Null,
                },
            ),
        },
        Basis::Declared { setting, present } => (
            if *present {
                ClaimStatus::Declared
            } else {
                ClaimStatus::Unverified
            },
            "declared",
            EvidenceView {
                check: None,
                at: None,
                detail: if *present {
                    format!("declared by the operator in {setting}; the server cannot verify it")
                } else {
                    format!("{setting} is not set")
                },
                observed: Value::Null,
            },
        ),
        Basis::NotBuilt { reason } => (
            ClaimStatus::Unverified,
            "not_built",
            EvidenceView {
                check: None,
                at: None,
                detail: (*reason).to_owned(),
                observed: Value::Null,
            },
        ),
    };
    ClaimView {
        id: def.id,
        text: def.text.clone(),
        status,
        basis,
        evidence,
    }
}

/// Evaluates every control.
#[must_use]
pub fn evaluate_all(
    registry: &ClaimRegistry,
    latest: &dyn Fn(CheckId) -> Option<CheckResult>,
) -> Vec<ControlView> {
    registry
        .controls()
        .iter()
        .map(|c| {
            let claims: Vec<ClaimView> = c.claims.iter().map(|d| evaluate(d, latest)).collect();
            ControlView {
                id: c.id,
                title: c.title,
                status: ClaimStatus::worst(claims.iter().map(|c| c.status))
                    .unwrap_or(ClaimStatus::Unverified),
                claims,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_unique_and_declared_claims_without_a_value_are_unverified() {
        let reg = registry(&Settings::default());
        let ids: Vec<&str> = reg.claim_ids().collect();
        let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len());
        let views = evaluate_all(&reg, &|_| None);
        for c in views.iter().flat_map(|c| &c.claims) {
            assert_ne!(
                c.status,
                ClaimStatus::Verified,
                "{} verified without a run",
                c.id
            );
            assert_ne!(
                c.status,
                ClaimStatus::Declared,
                "{} declared without a value",
                c.id
            );
        }
    }

    #[test]
    fn the_worst_status_wins() {
        use ClaimStatus::*;
        assert_eq!(ClaimStatus::worst([Verified, Declared]), Some(Declared));
        assert_eq!(
            ClaimStatus::worst([Verified, Failed, Unverified]),
            Some(Failed)
        );
        assert_eq!(ClaimStatus::worst([]), None);
    }
}
