//! The one error type of the HTTP layer, rendered as RFC 9457 `application/problem+json`.
//!
//! Invariants:
//! - Every error response has the same shape: `type`, `title`, `status`, `detail`, `code`,
//!   `request_id`, plus `errors` for validation.
//! - `Internal` and `Unavailable` show nothing about their cause. The cause travels in the response
//!   extensions to the access-log middleware, which logs it once with the request id.
//! - 401 responses carry `WWW-Authenticate`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://palisade.dev/problems/";

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `roles[1]`.
    pub field: String,
    /// Stable code, e.g. `invalid_email`.
    pub code: String,
    /// Safe to show.
    pub message: String,
}

impl FieldError {
    /// A field error.
    #[must_use]
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document as Palisade sends it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short human summary of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, safe to show.
    pub detail: String,
    /// Stable dotted code, e.g. `auth.token_expired`.
    pub code: String,
    /// The request id (also in `X-Request-Id`).
    pub request_id: String,
    /// Validation errors, one per field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// How a 401 should challenge the client (RFC 6750 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No credential was presented.
    Missing,
    /// A credential was presented and refused.
    InvalidToken,
}

/// The cause of an internal error, attached to the response for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// Every error the HTTP layer answers with.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a code.
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Safe detail.
        detail: String,
    },
    /// 401.
    Unauthenticated {
        /// Stable code.
        code: &'static str,
        /// Safe detail.
        detail: &'static str,
        /// Challenge kind.
        challenge: Challenge,
    },
    /// 403.
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Safe detail.
        detail: String,
    },
    /// 404.
    NotFound {
        /// Stable code.
        code: &'static str,
    },
    /// 409.
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Safe detail.
        detail: String,
    },
    /// 415.
    UnsupportedMediaType,
    /// 413.
    PayloadTooLarge,
    /// 422 with field errors.
    Validation(Vec<FieldError>),
    /// 422 for a well-formed request that breaks a rule spanning several fields or records (e.g. a
    /// role inheritance cycle), with its own code.
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Safe detail.
        detail: String,
    },
    /// 429.
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// 503.
    Unavailable {
        /// Stable code.
        code: &'static str,
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// 500. The cause is logged, never shown.
    Internal(String),
}

impl ApiError {
    /// An internal error with its cause (logged, never shown).
    #[must_use]
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// One invalid field.
    #[must_use]
    pub fn field(field: &str, code: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::BadRequest { code, detail } => (StatusCode::BAD_REQUEST, code, detail.clone()),
            Self::Unauthenticated { code, detail, .. } => {
                (StatusCode::UNAUTHORIZED, code, (*detail).to_owned())
            }
            Self::Forbidden { code, detail } => (StatusCode::FORBIDDEN, code, detail.clone()),
            Self::NotFound { code } => (
                StatusCode::NOT_FOUND,
                code,
                "The resource does not exist.".to_owned(),
            ),
            Self::Conflict { code, detail } => (StatusCode::CONFLICT, code, detail.clone()),
            Self::Unprocessable { code, detail } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, detail.clone())
            }
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.unsupported_media_type",
                "The body must be sent as application/json.".to_owned(),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request.too_large",
                "The request body exceeds the configured limit.".to_owned(),
            ),
            Self::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation.failed",
                "One or more fields are invalid.".to_owned(),
            ),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit.exceeded",
                "Too many requests; retry later.".to_owned(),
            ),
            Self::Unavailable { code, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                "The service is temporarily unavailable; retry later.".to_owned(),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server.internal",
                "An internal error occurred; quote the request id when reporting it.".to_owned(),
            ),
        }
    }
}

/// Builds a problem response. `request_id` is filled in by the pipeline (see
/// [`crate::pipeline::finish_problem`]) because errors are created far from the request's metadata.
#[must_use]
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Option<Vec<FieldError>>,
) -> Response {
    let problem = Problem {
        problem_type: format!("{PROBLEM_BASE}{}", code.replace('.', "/")),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        request_id: String::new(),
        errors,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res.extensions_mut().insert(problem);
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        let errors = match &self {
            Self::Validation(e) => Some(e.clone()),
            _ => None,
        };
        let mut res = problem_response(status, code, detail, errors);
        match self {
            Self::Unauthenticated { challenge, .. } => {
                let value = match challenge {
                    Challenge::Missing => "Bearer realm=\"palisade\"",
                    Challenge::InvalidToken => "Bearer realm=\"palisade\", error=\"invalid_token\"",
                };
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
            }
            Self::RateLimited { retry_after } | Self::Unavailable { retry_after, .. } => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Self::Internal(cause) => {
                res.extensions_mut().insert(InternalCause(cause));
            }
            _ => {}
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound {
                code: "resource.not_found",
            },
            StoreError::Conflict { constraint } => Self::Conflict {
                code: "resource.conflict",
                detail: format!("A value must be unique ({constraint})."),
            },
            StoreError::Unavailable(src) => {
                tracing::error!(error = %src, "store unavailable");
                Self::Unavailable {
                    code: "store.unavailable",
                    retry_after: 1,
                }
            }
            StoreError::Internal(src) => Self::Internal(format!("store: {src}")),
        }
    }
}

/// The handler result type.
pub type ApiResult<T> = Result<T, ApiError>;
