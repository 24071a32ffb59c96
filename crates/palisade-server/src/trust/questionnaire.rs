//! The security questionnaire: sixteen CAIQ-inspired sections (the seed's "Security Assessment"),
//! each question answered only from claims.
//!
//! Invariants: an answer's status is the worst status of the claims it cites, and its text restates
//! those claims with their statuses and evidence; nothing else. A question no claim covers is answered
//! `unverified` with "nothing is asserted". So the questionnaire can never say more than the claims
//! prove, and a failed claim makes every answer citing it say so.

use serde::Serialize;
use utoipa::ToSchema;

use super::TrustReport;
use super::claims::{ClaimStatus, ClaimView};

/// One answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Answer {
    /// The question.
    pub question: &'static str,
    /// The worst status of the cited claims (`unverified` when none applies).
    pub status: ClaimStatus,
    /// Derived from the cited claims.
    pub answer: String,
    /// Ids of the claims it rests on (see `/security/json`).
    pub claims: Vec<&'static str>,
}

/// One section.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Section {
    /// 1–16.
    pub number: u8,
    /// Heading.
    pub title: &'static str,
    /// Answers.
    pub answers: Vec<Answer>,
}

/// `/security/questionnaire`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Questionnaire {
    /// When it was derived (RFC 3339).
    pub generated_at: String,
    /// What this is.
    pub basis: &'static str,
    /// The sixteen sections.
    pub sections: Vec<Section>,
}

type Q = (&'static str, &'static [&'static str]);

/// The sections: title and (question, cited claim ids).
const SECTIONS: [(&str, &[Q]); 16] = [
    (
        "System Diagram",
        &[
            (
                "Which components make up the system, and which backends does it run on?",
                &["ops.database", "ops.shared_state", "supply.sbom"],
            ),
            (
                "Is every entry point of the API inventoried?",
                &["authz.routes_declared"],
            ),
        ],
    ),
    (
        "Attack Surfaces",
        &[
            (
                "Do all API endpoints enforce authentication (deny by default)?",
                &["authz.anonymous_refused", "authz.routes_declared"],
            ),
            ("Is traffic encrypted in transit?", &["transport.tls"]),
        ],
    ),
    (
        "Access Control Quality",
        &[
            (
                "Is access control centralised and enforced on the server for every endpoint?",
                &["authz.routes_declared", "authz.anonymous_refused"],
            ),
            (
                "How are sessions and tokens protected?",
                &["auth.jwt_es512"],
            ),
        ],
    ),
    (
        "Password Storage",
        &[("How are user passwords stored?", &["auth.no_passwords"])],
    ),
    (
        "Cryptographic & Hash Algorithms",
        &[
            ("Which algorithms sign tokens?", &["auth.jwt_es512"]),
            ("Is TLS used for every connection?", &["transport.tls"]),
        ],
    ),
    (
        "Application Misuse",
        &[
            (
                "Are browser-facing protections (CSP, framing, sniffing) applied to every response?",
                &["http.security_headers"],
            ),
            ("Is abuse limited by rate limiting?", &["ratelimit.backend"]),
        ],
    ),
    (
        "Software Dependencies",
        &[(
            "Is there an inventory (SBOM) of third-party components?",
            &["supply.sbom"],
        )],
    ),
    (
        "File Upload Validation",
        &[("How are uploaded files validated?", &[])],
    ),
    (
        "Secrets in Source Code",
        &[(
            "Are default or missing secrets refused outside development?",
            &["secrets.refused_in_production"],
        )],
    ),
    (
        "Secret Management",
        &[
            (
                "Are all required secrets configured with non-default values?",
                &["secrets.configured"],
            ),
            (
                "Does the service refuse to start with unsafe secrets?",
                &["secrets.refused_in_production"],
            ),
        ],
    ),
    (
        "Phishing Prevention",
        &[(
            "How are users protected from phishing through the service's messages?",
            &[],
        )],
    ),
    (
        "Testing & Quality Assurance",
        &[
            (
                "Is the running system checked continuously?",
                &[
                    "authz.anonymous_refused",
                    "http.security_headers",
                    "auth.jwt_es512",
                ],
            ),
            (
                "Has the system been penetration tested?",
                &["org.pen_tests"],
            ),
        ],
    ),
    (
        "Secure Deployment",
        &[(
            "Does production run with production settings only?",
            &["ops.production_mode", "secrets.refused_in_production"],
        )],
    ),
    (
        "Infrastructure Permissions",
        &[(
            "Where is data hosted, and which third parties process it?",
            &["org.regions", "org.subprocessors"],
        )],
    ),
    (
        "Host & Network Security Basics",
        &[
            (
                "Is the service behind TLS and hardened HTTP headers?",
                &["transport.tls", "http.security_headers"],
            ),
            (
                "Which certifications cover the hosting?",
                &["org.certifications"],
            ),
        ],
    ),
    (
        "Security Logging",
        &[
            (
                "Are changes recorded in a tamper-evident audit trail?",
                &["audit.chain"],
            ),
            (
                "How are security incidents handled and reported?",
                &["org.incident_response", "org.contact"],
            ),
        ],
    ),
];

fn restate(c: &ClaimView) -> String {
    let lead = match c.status {
        ClaimStatus::Verified => "Verified",
        ClaimStatus::Failed => "FAILED",
        ClaimStatus::Unverified => "Not verified",
        ClaimStatus::Declared => "Declared by the operator (not verified)",
    };
    format!("{lead}: {} [{}: {}]", c.text, c.id, c.evidence.detail)
}

/// Derives the questionnaire from a report.
#[must_use]
pub fn derive(report: &TrustReport) -> Questionnaire {
    let claims: Vec<&ClaimView> = report.controls.iter().flat_map(|c| &c.claims).collect();
    let find = |id: &str| claims.iter().copied().find(|c| c.id == id);
    let sections = SECTIONS
        .iter()
        .zip(1_u8..)
        .map(|((title, questions), number)| Section {
            number,
            title,
            answers: questions
                .iter()
                .map(|(question, ids)| {
                    let cited: Vec<&ClaimView> = ids.iter().filter_map(|id| find(id)).collect();
                    match ClaimStatus::worst(cited.iter().map(|c| c.status)) {
                        Some(status) => Answer {
                            question,
                            status,
                            answer: cited
                                .iter()
                                .map(|c| restate(c))
                                .collect::<Vec<_>>()
                                .join(" "),
                            claims: cited.iter().map(|c| c.id).collect(),
                        },
                        None => Answer {
                            question,
                            status: ClaimStatus::Unverified,
                            answer: "No claim of this deployment covers this question; nothing is asserted.".to_owned(),
                            claims: Vec::new(),
                        },
                    }
                })
                .collect(),
        })
        .collect();
    Questionnaire {
        generated_at: report.generated_at.clone(),
        basis: "Each answer restates the claims it cites, with their status and evidence, from /security/json; it asserts nothing more.",
        sections,
    }
}
