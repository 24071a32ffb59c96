//! The Trust Center's routes: the reports (capability `trust.report.read`), and the public
//! security.txt, `/trust` page and its stylesheet. See [`crate::trust`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{Access, capability::platform};

use crate::error::{ApiError, ApiResult};
use crate::extract::Scoped;
use crate::router::{SecureRouter, op};
use crate::state::AppState;
use crate::trust::{self, TrustReport, page, questionnaire::Questionnaire, sbom, security_txt};

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/security/json",
        Access::cap(platform::TRUST_REPORT_READ),
        op(
            "getSecurityReport",
            "Controls, claims with their status and evidence, and live metrics",
            "trust",
        )
        .ok::<TrustReport>(200),
        get_security_report,
    )
    .get(
        "/security/questionnaire",
        Access::cap(platform::TRUST_REPORT_READ),
        op(
            "getSecurityQuestionnaire",
            "CAIQ-inspired questionnaire; each answer cites the claims it rests on",
            "trust",
        )
        .ok::<Questionnaire>(200),
        get_security_questionnaire,
    )
    .get(
        "/security/sbom",
        Access::cap(platform::TRUST_REPORT_READ),
        op(
            "getSbom",
            "CycloneDX 1.5 SBOM of the running binary",
            "trust",
        )
        .media("application/vnd.cyclonedx+json"),
        get_sbom,
    )
    .get(
        "/.well-known/security.txt",
        Access::Public {
            reason: "RFC 9116 security contact; must be readable by anyone reporting a vulnerability",
        },
        op("getSecurityTxt", "RFC 9116 security.txt", "trust").media("text/plain"),
        get_security_txt,
    )
    .get(
        "/trust",
        Access::Public {
            reason: "the public Trust Center page for prospective customers; shows posture, never secrets",
        },
        op("getTrustPage", "The Trust Center page", "trust").media("text/html"),
        get_trust_page,
    )
    .get(
        "/trust.css",
        Access::Public {
            reason: "the stylesheet of the public Trust Center page",
        },
        op("getTrustStylesheet", "The Trust Center page's stylesheet", "trust").media("text/css"),
        get_trust_stylesheet,
    )
    .get(
        "/trust/icon.svg",
        Access::Public {
            reason: "the icon of the public Trust Center page",
        },
        op("getTrustIcon", "The Trust Center page's icon", "trust").media("image/svg+xml"),
        get_trust_icon,
    )
}

async fn get_security_report(
    State(app): State<AppState>,
    _scope: Scoped,
) -> ApiResult<Json<TrustReport>> {
    Ok(Json(trust::report(&app)))
}

async fn get_security_questionnaire(
    State(app): State<AppState>,
    _scope: Scoped,
) -> ApiResult<Json<Questionnaire>> {
    Ok(Json(trust::questionnaire::derive(&trust::report(&app))))
}

async fn get_sbom(_scope: Scoped) -> Response {
    ([(header::CONTENT_TYPE, sbom::MEDIA_TYPE)], sbom::SBOM_JSON).into_response()
}

async fn get_security_txt(State(app): State<AppState>) -> Response {
    match security_txt::render(app.settings(), time::OffsetDateTime::now_utc()) {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        // RFC 9116 makes Contact mandatory: without one there is no valid file to serve.
        None => ApiError::NotFound {
            code: "trust.contact_not_configured",
        }
        .into_response(),
    }
}

async fn get_trust_page(State(app): State<AppState>) -> Response {
    let html = page::render(&trust::report(&app), env!("CARGO_PKG_VERSION"));
    let mut res = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    // SECURITY: a route-specific CSP (the pipeline keeps it): the same-origin stylesheet, no script.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::PAGE_CSP),
    );
    res
}

async fn get_trust_stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        page::STYLESHEET,
    )
        .into_response()
}

async fn get_trust_icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        page::ICON_SVG,
    )
        .into_response()
}
