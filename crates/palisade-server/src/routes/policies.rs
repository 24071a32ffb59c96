//! `/v1/policies`: the selected tenant's Cedar policy document (see `docs/policies.md`).
//!
//! Invariants:
//! - SECURITY: a text is stored only after it parsed and passed strict validation against the
//!   deployment's schema (422 `validation.failed`, one `errors` entry per Cedar message, nothing
//!   stored); the dry run (`POST /v1/policies/validate`) runs exactly the same check.
//! - Writing (PUT, DELETE) needs `platform.policy.write`, which requires a recent step-up; `If-Match`
//!   is honoured (412 `precondition.failed` when stale) and the response carries the `ETag`.
//! - Every change is audited by the store in the same transaction, with the old and the new text.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::conditions::{MAX_POLICIES, MAX_POLICY_BYTES};
use palisade_authz::{Access, PolicyProblem, capability::platform};
use palisade_store::{POLICY_ETAG_MISMATCH, StoreError, TenantPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use axum::extract::State;

use crate::error::{ApiError, ApiResult, FieldError, problem_response};
use crate::extract::{Audited, Json, Scoped};
use crate::router::{SecureRouter, op};
use crate::routes::tenants::rfc3339;
use crate::state::AppState;

/// The tenant's policy document.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    /// The Cedar text, as written.
    pub policies: String,
    /// 1 on the first write, +1 on each replacement.
    pub version: i64,
    /// The document's entity tag (also in the `ETag` header, quoted).
    pub etag: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Who wrote it: `user:<id>` or `api_key:<id>`.
    pub updated_by: String,
}

impl From<TenantPolicy> for PolicyView {
    fn from(p: TenantPolicy) -> Self {
        Self {
            policies: p.policies,
            version: p.version,
            etag: p.etag,
            updated_at: rfc3339(p.updated_at),
            updated_by: p.updated_by,
        }
    }
}

/// `PUT /v1/policies` and `POST /v1/policies/validate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// Cedar policies (at most 64 KiB and 256 policies), validated strictly against the schema at
    /// `/v1/policies/schema`.
    pub policies: String,
}

/// The dry run's answer for a text that would be accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyValidationView {
    /// Always true (a text that would be refused answers 422).
    pub valid: bool,
    /// How many policies the text holds.
    pub policies: usize,
    /// Cedar's validation warnings (accepted, worth reading).
    pub warnings: Vec<String>,
}

/// The Cedar schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicySchemaView {
    /// The schema in Cedar's schema syntax (namespace `Palisade`).
    pub schema: String,
    /// The largest text accepted, in bytes.
    pub max_bytes: usize,
    /// The most policies one text may hold.
    pub max_policies: usize,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/policies",
        Access::cap(platform::POLICY_READ),
        op(
            "getPolicies",
            "The selected tenant's Cedar policies",
            "policies",
        )
        .ok::<PolicyView>(200),
        get_policies,
    )
    .put(
        "/v1/policies",
        Access::cap(platform::POLICY_WRITE),
        op(
            "putPolicies",
            "Replace the selected tenant's Cedar policies (validated; If-Match honoured; step-up required)",
            "policies",
        )
        .body::<PolicyRequest>()
        .ok::<PolicyView>(200),
        put_policies,
    )
    .delete(
        "/v1/policies",
        Access::cap(platform::POLICY_WRITE),
        op(
            "deletePolicies",
            "Delete the selected tenant's Cedar policies (If-Match honoured; step-up required)",
            "policies",
        )
        .empty(204),
        delete_policies,
    )
    .post(
        "/v1/policies/validate",
        Access::cap(platform::POLICY_READ),
        op(
            "validatePolicies",
            "Dry run: check a Cedar text as PUT would, storing nothing",
            "policies",
        )
        .body::<PolicyRequest>()
        .ok::<PolicyValidationView>(200),
        validate_policies,
    )
    .get(
        "/v1/policies/schema",
        Access::cap(platform::POLICY_READ),
        op(
            "getPolicySchema",
            "The Cedar schema tenant policies are validated against",
            "policies",
        )
        .ok::<PolicySchemaView>(200),
        get_policy_schema,
    )
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "policy.not_found",
    }
}

fn refused(problems: Vec<PolicyProblem>) -> ApiError {
    ApiError::Validation(
        problems
            .into_iter()
            .map(|p| FieldError::new("policies", p.code, p.message))
            .collect(),
    )
}

/// The `If-Match` etag, unquoted; `*` means "whatever is there" and is treated as absent for a
/// document that exists (the store still refuses `*` when there is none: see [`precondition`]).
fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().map_err(|_| ApiError::BadRequest {
        code: "precondition.invalid",
        detail: "If-Match must be an entity tag.".to_owned(),
    })?;
    let text = text.trim();
    if text == "*" {
        return Ok(Some(IfMatch::Any));
    }
    let tag = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains('"'))
        .ok_or_else(|| ApiError::BadRequest {
            code: "precondition.invalid",
            detail: "If-Match must be one strong entity tag or `*`.".to_owned(),
        })?;
    Ok(Some(IfMatch::Tag(tag.to_owned())))
}

enum IfMatch {
    Any,
    Tag(String),
}

fn stale() -> Response {
    problem_response(
        StatusCode::PRECONDITION_FAILED,
        "precondition.failed",
        "The policies have changed since the ETag given in If-Match; read them again.".to_owned(),
        None,
    )
}

/// Resolves `If-Match: *` against the current document: the expected etag to pass to the store.
async fn precondition(
    app: &AppState,
    scope: &palisade_authz::TenantScope,
    wanted: Option<IfMatch>,
) -> Result<Result<Option<String>, Response>, ApiError> {
    Ok(match wanted {
        None => Ok(None),
        Some(IfMatch::Tag(t)) => Ok(Some(t)),
        Some(IfMatch::Any) => match app.stores().policies.policy_etag(scope).await? {
            Some(current) => Ok(Some(current)),
            None => Err(stale()),
        },
    })
}

fn with_etag(view: PolicyView) -> ApiResult<Response> {
    let tag = HeaderValue::from_str(&format!("\"{}\"", view.etag)).map_err(ApiError::internal)?;
    let mut res = axum::Json(view).into_response();
    res.headers_mut().insert(header::ETAG, tag);
    Ok(res)
}

async fn get_policies(State(app): State<AppState>, Scoped(scope): Scoped) -> ApiResult<Response> {
    let doc = app
        .stores()
        .policies
        .get_policy(&scope)
        .await?
        .ok_or_else(not_found)?;
    with_etag(doc.into())
}

async fn put_policies(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Scoped(scope): Scoped,
    headers: HeaderMap,
    Json(body): Json<PolicyRequest>,
) -> ApiResult<Response> {
    let wanted = if_match(&headers)?;
    // SECURITY: refused whole before anything is written.
    crate::policies::schema(&app)?
        .compile(&body.policies)
        .map_err(refused)?;
    let expected = match precondition(&app, &scope, wanted).await? {
        Ok(e) => e,
        Err(res) => return Ok(res),
    };
    // Compiled policies are cached per tenant under its authorization epoch.
    let outcome = crate::principal_cache::invalidate(&app, scope.tenant_id(), async {
        Ok(app
            .stores()
            .policies
            .put_policy(&scope, body.policies, expected.as_deref(), &audit)
            .await)
    })
    .await?;
    match outcome {
        Ok(doc) => {
            tracing::info!(target: "security", event = "policy.updated", tenant = %scope.tenant_id(), version = doc.version, by = %audit.actor, "tenant policies replaced");
            with_etag(doc.into())
        }
        Err(StoreError::Conflict { constraint }) if constraint == POLICY_ETAG_MISMATCH => {
            Ok(stale())
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete_policies(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Scoped(scope): Scoped,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let expected = match precondition(&app, &scope, if_match(&headers)?).await? {
        Ok(e) => e,
        Err(res) => return Ok(res),
    };
    let outcome = crate::principal_cache::invalidate(&app, scope.tenant_id(), async {
        Ok(app
            .stores()
            .policies
            .delete_policy(&scope, expected.as_deref(), &audit)
            .await)
    })
    .await?;
    match outcome {
        Ok(()) => {
            tracing::info!(target: "security", event = "policy.deleted", tenant = %scope.tenant_id(), by = %audit.actor, "tenant policies deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(StoreError::NotFound) => Err(not_found()),
        Err(StoreError::Conflict { constraint }) if constraint == POLICY_ETAG_MISMATCH => {
            Ok(stale())
        }
        Err(e) => Err(e.into()),
    }
}

async fn validate_policies(
    State(app): State<AppState>,
    Json(body): Json<PolicyRequest>,
) -> ApiResult<axum::Json<PolicyValidationView>> {
    let compiled = crate::policies::schema(&app)?
        .compile(&body.policies)
        .map_err(refused)?;
    Ok(axum::Json(PolicyValidationView {
        valid: true,
        policies: compiled.len(),
        warnings: compiled.warnings().to_vec(),
    }))
}

async fn get_policy_schema(State(app): State<AppState>) -> ApiResult<axum::Json<PolicySchemaView>> {
    Ok(axum::Json(PolicySchemaView {
        schema: crate::policies::schema(&app)?.text().to_owned(),
        max_bytes: MAX_POLICY_BYTES,
        max_policies: MAX_POLICIES,
    }))
}
