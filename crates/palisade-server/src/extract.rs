//! App-owned extractors, so every rejection uses the problem envelope and no serde message (which can
//! quote the offending value) reaches a client.
//!
//! - [`Json`]: requires `application/json` (or `application/merge-patch+json`), reads at most the body
//!   limit, refuses invalid UTF-8, and reports shape errors with the JSON path only.
//! - [`Path`] and [`Query`]: rejections become 400 / 404 problems.
//! - [`Caller`] and [`Scoped`]: the principal and the [`TenantScope`] that the authorization layer put
//!   into the request. A handler on a route that skipped the layer cannot get them: that is a bug, answered
//!   500 and logged as a security event.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use palisade_authz::{Principal, TenantScope};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// Whether a `Content-Type` names JSON (or JSON Merge Patch).
pub(crate) fn is_json_content_type(parts_ct: Option<&axum::http::HeaderValue>) -> bool {
    let Some(ct) = parts_ct.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || mime == "application/merge-patch+json"
}

/// Parses JSON bytes into `T`, reporting the failing path without quoting values.
///
/// # Errors
/// 400 `request.malformed_json`, `request.invalid_utf8`, `request.unknown_field`, or 422 with the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::BadRequest {
            code: "request.invalid_utf8",
            detail: "The body is not valid UTF-8.".to_owned(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            // serde_json reports some type mismatches (a number where an enum's string belongs) as
            // syntax errors; a body that parses as JSON is well-formed, so those are field errors.
            let well_formed = serde_json::from_slice::<serde_json::Value>(bytes).is_ok();
            return Err(match inner.classify() {
                serde_json::error::Category::Syntax if well_formed => {
                    let field = if path == "." || path.is_empty() {
                        "body".to_owned()
                    } else {
                        path
                    };
                    ApiError::Validation(vec![FieldError::new(
                        field,
                        "invalid_type",
                        "has the wrong type",
                    )])
                }
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    ApiError::BadRequest {
                        code: "request.malformed_json",
                        detail: format!(
                            "The body is not well-formed JSON (line {}, column {}).",
                            inner.line(),
                            inner.column()
                        ),
                    }
                }
                serde_json::error::Category::Io => ApiError::BadRequest {
                    code: "request.malformed_json",
                    detail: "The body could not be read.".to_owned(),
                },
                serde_json::error::Category::Data => data_error(&path, &inner.to_string()),
            });
        }
    };
    // Trailing characters after the value.
    if de.end().is_err() {
        return Err(ApiError::BadRequest {
            code: "request.malformed_json",
            detail: "The body holds more than one JSON value.".to_owned(),
        });
    }
    Ok(value)
}

fn data_error(path: &str, message: &str) -> ApiError {
    // SECURITY: serde's message may quote the value; keep only its category and the field names.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field: String = rest
            .split('`')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        // serde_path_to_error's path already ends with the unknown key.
        let at = if path == "." || path.is_empty() {
            field
        } else {
            path.chars().filter(|c| !c.is_control()).take(128).collect()
        };
        return ApiError::BadRequest {
            code: "request.unknown_field",
            detail: format!("Unknown field `{at}`."),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field: String = rest
            .split('`')
            .next()
            .unwrap_or_default()
            .chars()
            .take(64)
            .collect();
        let at = if path == "." || path.is_empty() {
            field
        } else {
            format!("{path}.{field}")
        };
        return ApiError::Validation(vec![FieldError::new(at, "required", "is required")]);
    }
    let (code, msg) = if message.starts_with("invalid type") {
        ("invalid_type", "has the wrong type")
    } else if message.starts_with("unknown variant") {
        ("invalid_value", "is not one of the accepted values")
    } else {
        ("invalid_value", "is invalid")
    };
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    ApiError::Validation(vec![FieldError::new(field, code, msg)])
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // The body is already capped by the pipeline's limit layer; reading past it fails here.
        let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(|e| {
                if is_length_limit(&e) {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest {
                        code: "request.body_unreadable",
                        detail: "The body could not be read.".to_owned(),
                    }
                }
            })?;
        parse_json(&bytes).map(Json)
    }
}

/// Whether a body read failed on the configured size limit.
pub(crate) fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = s.source();
    }
    false
}

/// Path parameters.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            // A malformed id names nothing that exists.
            Err(_) => Err(ApiError::NotFound {
                code: "resource.not_found",
            }),
        }
    }
}

/// Query parameters.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de).map(Self).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            match data_error(&path, &msg) {
                ApiError::BadRequest { detail, .. } => ApiError::BadRequest {
                    code: "request.unknown_parameter",
                    detail,
                },
                ApiError::Validation(errs) => ApiError::BadRequest {
                    code: "request.invalid_parameter",
                    detail: format!(
                        "Query parameter `{}` {}.",
                        errs.first().map(|f| f.field.as_str()).unwrap_or("?"),
                        errs.first()
                            .map(|f| f.message.as_str())
                            .unwrap_or("is invalid")
                    ),
                },
                other => other,
            }
        })
    }
}

/// The authenticated principal of the request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().map(Self).ok_or_else(|| {
            tracing::error!(target: "security", path = %parts.uri.path(), "handler asked for a principal on a route without authorization");
            ApiError::internal("principal missing: route skipped the authorization layer")
        })
    }
}

/// The tenant scope granted by the authorization layer.
#[derive(Debug, Clone)]
pub struct Scoped(pub TenantScope);

impl<S: Send + Sync> FromRequestParts<S> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<TenantScope>().cloned().map(Self).ok_or_else(|| {
            tracing::error!(target: "security", path = %parts.uri.path(), "handler asked for a tenant scope on a route without authorization");
            ApiError::internal("tenant scope missing: route skipped the authorization layer")
        })
    }
}

/// The client IP the pipeline resolved (`X-Forwarded-For` only across `trusted_proxy_hops`);
/// `None` outside the pipeline. Never fails.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<crate::pipeline::ClientIp>()
                .map(|ip| ip.0),
        ))
    }
}

/// Who is acting and from where, for the audit entry a mutation writes: the principal (when the
/// route has one), the client IP and the request id the pipeline resolved. Never fails: a public
/// route's events are recorded as `anonymous`.
#[derive(Debug, Clone)]
pub struct Audited(pub palisade_store::AuditMeta);

impl Audited {
    /// The audit metadata from request parts.
    #[must_use]
    pub fn from_parts(parts: &Parts) -> palisade_store::AuditMeta {
        let actor = parts
            .extensions
            .get::<Principal>()
            .map_or_else(|| "anonymous".to_owned(), actor_of);
        palisade_store::AuditMeta {
            actor,
            ip: parts
                .extensions
                .get::<crate::pipeline::ClientIp>()
                .map(|ip| ip.0.to_string()),
            request_id: parts
                .extensions
                .get::<crate::pipeline::RequestId>()
                .map(|id| id.0.clone()),
        }
    }
}

/// The audit actor of a principal: `user:<id>` (or `api_key:<id>` / `client:<id>` once those
/// credentials exist).
#[must_use]
pub fn actor_of(principal: &Principal) -> String {
    match (principal.method, principal.token_id.as_deref()) {
        (palisade_authz::AuthMethod::ApiKey, Some(id)) => format!("api_key:{id}"),
        _ => format!("user:{}", principal.subject),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Audited {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Self::from_parts(parts)))
    }
}
