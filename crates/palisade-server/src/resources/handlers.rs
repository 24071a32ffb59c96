//! CRUD handlers of declared resources (registered per resource in `super::register`).
//!
//! Order of checks in a write: body shape → unknown fields (400) → protected fields without write
//! capability (403) → preconditions (428/412) → declaration validation (422) → references (422) →
//! the store's transaction (which checks the version again and claims unique values). Nothing is
//! written before every check has passed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{Principal, TenantScope};
use palisade_domain::resource::{FieldType, IndexValue, ResourceSchema};
use palisade_store::{
    IndexedValue, NewRecord, RECORD_VERSION, RecordKeys, RecordQuery, Reservation, StoreError,
    StoredResponse,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Resource, Visibility, query};
use crate::error::{ApiError, FieldError, problem_response};
use crate::extract::{Audited, Caller, Path, Scoped, actor_of, parse_json};
use crate::routes::{ListParams, page_view};
use crate::state::AppState;

/// How long an idempotency key and its stored response are kept.
const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);
/// The request header naming an idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A failed request: an [`ApiError`], or a precondition problem (412 / 428), which `ApiError` has no
/// variant for.
pub(super) enum Fail {
    Api(ApiError),
    Precondition(StatusCode, &'static str, &'static str),
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::Api(not_found()),
            StoreError::Conflict { constraint } if constraint == RECORD_VERSION => stale(),
            StoreError::Conflict { constraint } => {
                // `<resource>.<field>`: name the field, never the value.
                let field = constraint
                    .split_once('.')
                    .map_or(constraint.as_str(), |(_, f)| f)
                    .to_owned();
                Self::Api(ApiError::Conflict {
                    code: "record.unique_violation",
                    detail: format!("Another record already has this value of `{field}`."),
                })
            }
            other => Self::Api(other.into()),
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Precondition(status, code, detail) => {
                problem_response(status, code, detail.to_owned(), None)
            }
        }
    }
}

type Outcome = Result<Response, Fail>;

pub(super) fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "record.not_found",
    }
}

fn stale() -> Fail {
    Fail::Precondition(
        StatusCode::PRECONDITION_FAILED,
        "precondition.failed",
        "The record has changed since the ETag given in If-Match; read it again.",
    )
}

fn if_match_required() -> Fail {
    Fail::Precondition(
        StatusCode::PRECONDITION_REQUIRED,
        "precondition.required",
        "This request needs an If-Match header with the record's ETag.",
    )
}

/// A strong ETag: SHA-256 over the RFC 8785 canonical form of exactly what the caller receives.
pub(super) fn etag(view: &Map<String, Value>) -> Result<String, ApiError> {
    let bytes = palisade_domain::canonical::jcs(&Value::Object(view.clone()))
        .map_err(|_| ApiError::internal("record does not canonicalise"))?;
    Ok(format!("\"{}\"", hex::encode(Sha256::digest(&bytes))))
}

/// RFC 9110 §13.1.2: weak comparison for If-None-Match.
fn none_match(header: Option<&HeaderValue>, tag: &str) -> bool {
    let Some(h) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    h.split(',').map(str::trim).any(|t| {
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag.strip_prefix("W/").unwrap_or(tag)
    })
}

/// RFC 9110 §13.1.1: strong comparison for If-Match.
fn matches(header: &HeaderValue, tag: &str) -> bool {
    header
        .to_str()
        .is_ok_and(|h| h.split(',').map(str::trim).any(|t| t == "*" || t == tag))
}

/// The id from the path; anything but a UUID names nothing.
fn record_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::try_parse(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| not_found())
}

fn json_response(status: StatusCode, view: &Map<String, Value>, tag: &str) -> Outcome {
    let body = serde_json::to_vec(view).map_err(ApiError::internal)?;
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(tag).map_err(ApiError::internal)?,
    );
    Ok(res)
}

/// Reads a JSON object body (JSON or merge-patch JSON).
async fn read_object(
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Map<String, Value>, ApiError> {
    if !crate::extract::is_json_content_type(headers.get(header::CONTENT_TYPE)) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        if crate::extract::is_length_limit(&e) {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest {
                code: "request.body_unreadable",
                detail: "The body could not be read.".to_owned(),
            }
        }
    })?;
    match parse_json::<Value>(&bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::field(
            "body",
            "invalid_type",
            "must be a JSON object",
        )),
    }
}

/// A field name as it may be quoted back: printable, bounded.
fn safe_name(k: &str) -> String {
    k.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Unknown fields → 400; protected fields the caller may not write → 403 naming the field.
fn check_keys(res: &Resource, vis: &Visibility, doc: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(k) = doc.keys().find(|k| res.schema.field(k).is_none()) {
        return Err(ApiError::BadRequest {
            code: "request.unknown_field",
            detail: format!("Unknown field `{}`.", safe_name(k)),
        });
    }
    if let Some(k) = doc.keys().find(|k| vis.read_only.contains(k)) {
        let cap = res
            .caps
            .fields
            .get(k)
            .map(|(_, w)| w.to_string())
            .unwrap_or_default();
        return Err(ApiError::Forbidden {
            code: "authz.field_forbidden",
            detail: format!("Writing the field `{k}` needs the capability `{cap}`."),
        });
    }
    Ok(())
}

fn validate(
    schema: &ResourceSchema,
    doc: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    schema.validate(doc).map_err(|issues| {
        ApiError::Validation(
            issues
                .into_iter()
                .map(|i| FieldError::new(safe_name(&i.field), i.code, i.message))
                .collect(),
        )
    })
}

/// Every `ref` field named in `changed` must name a live record of its resource in this tenant.
async fn check_refs(
    app: &AppState,
    schema: &ResourceSchema,
    scope: &TenantScope,
    doc: &Map<String, Value>,
    changed: impl Fn(&str) -> bool,
) -> Result<(), Fail> {
    let mut errors = Vec::new();
    for f in schema.fields.iter().filter(|f| f.kind == FieldType::Ref) {
        let (Some(to), Some(Value::String(id))) = (&f.to, doc.get(&f.name)) else {
            continue;
        };
        if !changed(&f.name) {
            continue;
        }
        if app
            .stores()
            .records
            .get_record(scope, to, id, None)
            .await?
            .is_none()
        {
            errors.push(FieldError::new(
                &f.name,
                "ref_not_found",
                format!("names no record of `{to}`"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors).into())
    }
}

/// The keys the store maintains for a validated document.
pub(super) fn keys(schema: &ResourceSchema, data: &Map<String, Value>) -> RecordKeys {
    RecordKeys {
        unique: schema.unique_keys(data),
        indexed: schema
            .index_values(data)
            .into_iter()
            .map(|(f, v)| {
                (
                    f,
                    match v {
                        IndexValue::Text(t) => IndexedValue::Text(t),
                        IndexValue::Num(n) => IndexedValue::Num(n),
                    },
                )
            })
            .collect(),
    }
}

/// RFC 7396 JSON Merge Patch of one member.
fn merge_patch(target: Option<&Value>, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Some(Value::Object(t)) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// `GET /v1/{resource}`.
pub(super) async fn list(
    res: Arc<Resource>,
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    uri: Uri,
) -> Outcome {
    let vis = res.access(&app, &caller, &scope);
    let q = query::parse_list(&res, &vis, uri.query().unwrap_or_default())?;
    let list_name = format!("records:{}", res.schema.name);
    let params = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = params.page_request(&app, &scope, &list_name)?;
    let records = app
        .stores()
        .records
        .list_records(
            &scope,
            &res.schema.name,
            &RecordQuery {
                owner: vis.owner.clone(),
                filters: q.filters,
            },
            &page,
        )
        .await?;
    let view = page_view(&app, &scope, &list_name, records, |r| vis.view(&r))?;
    Ok(axum::Json(view).into_response())
}

/// `GET /v1/{resource}/{id}`.
pub(super) async fn get(
    res: Arc<Resource>,
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Outcome {
    let id = record_id(&id)?;
    let vis = res.access(&app, &caller, &scope);
    let record = app
        .stores()
        .records
        .get_record(&scope, &res.schema.name, &id, vis.owner.as_deref())
        .await?
        .ok_or_else(not_found)?;
    let view = vis.view(&record);
    let tag = etag(&view)?;
    if none_match(headers.get(header::IF_NONE_MATCH), &tag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&tag).map_err(ApiError::internal)?,
        );
        return Ok(r);
    }
    json_response(StatusCode::OK, &view, &tag)
}

/// A syntactically acceptable `Idempotency-Key`: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest {
        code: "idempotency.invalid_key",
        detail: "Idempotency-Key must be 1–255 visible ASCII characters.".to_owned(),
    };
    let key = raw.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut res = (status, stored.body).into_response();
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            res.headers_mut().insert(n, v);
        }
    }
    res.headers_mut().insert(
        axum::http::HeaderName::from_static("idempotent-replayed"),
        HeaderValue::from_static("true"),
    );
    res
}

/// `POST /v1/{resource}`.
pub(super) async fn create(
    res: Arc<Resource>,
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Audited(meta): Audited,
    req: Request,
) -> Outcome {
    let (parts, body) = req.into_parts();
    let key = idempotency_key(&parts.headers)?;
    let doc = read_object(&parts.headers, body).await?;
    let Some(key) = key else {
        return create_record(&res, &app, &caller, &scope, &meta, doc).await;
    };
    // SECURITY: the key is reserved (committed) before anything is created, so a concurrent duplicate
    // finds the reservation and cannot create a second record.
    let principal = actor_of(&caller);
    let canonical = palisade_domain::canonical::jcs(&Value::Object(doc.clone()))
        .map_err(|_| ApiError::internal("body does not canonicalise"))?;
    let body_hash = hex::encode(Sha256::digest(&canonical));
    let records = &app.stores().records;
    match records
        .reserve_idempotency(&scope, &principal, &key, &body_hash, IDEMPOTENCY_TTL)
        .await?
    {
        Reservation::Reserved => {}
        Reservation::Replay(stored) => return Ok(replay(stored)),
        Reservation::KeyReused => {
            return Err(ApiError::Unprocessable {
                code: "idempotency.key_reused",
                detail: "This Idempotency-Key was used with another body.".to_owned(),
            }
            .into());
        }
        Reservation::InProgress => {
            return Err(ApiError::Conflict {
                code: "idempotency.in_progress",
                detail: "A request with this Idempotency-Key is still being processed.".to_owned(),
            }
            .into());
        }
    }
    let outcome = create_record(&res, &app, &caller, &scope, &meta, doc).await;
    match outcome {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(ApiError::internal)?;
            let stored = StoredResponse {
                status: parts.status.as_u16(),
                headers: [header::LOCATION, header::ETAG, header::CONTENT_TYPE]
                    .iter()
                    .filter_map(|h| {
                        parts
                            .headers
                            .get(h)
                            .and_then(|v| v.to_str().ok())
                            .map(|v| (h.as_str().to_owned(), v.to_owned()))
                    })
                    .collect(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
                record_id: serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned)),
            };
            if let Err(e) = records
                .complete_idempotency(&scope, &principal, &key, &stored)
                .await
            {
                // The record exists; the key stays reserved (a retry answers 409 until it expires).
                tracing::error!(error = %e, "idempotency response not stored");
            }
            Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
        }
        Err(e) => {
            records
                .release_idempotency(&scope, &principal, &key)
                .await?;
            Err(e)
        }
    }
}

async fn create_record(
    res: &Resource,
    app: &AppState,
    caller: &Principal,
    scope: &TenantScope,
    meta: &palisade_store::AuditMeta,
    doc: Map<String, Value>,
) -> Outcome {
    let vis = res.access(app, caller, scope);
    check_keys(res, &vis, &doc)?;
    let data = validate(&res.schema, &doc)?;
    check_refs(app, &res.schema, scope, &data, |_| true).await?;
    let new = NewRecord {
        resource: res.schema.name.clone(),
        owner_id: actor_of(caller),
        keys: keys(&res.schema, &data),
        data,
    };
    let record = app.stores().records.create_record(scope, meta, new).await?;
    let view = vis.view(&record);
    let tag = etag(&view)?;
    let mut response = json_response(StatusCode::CREATED, &view, &tag)?;
    let location = format!("/v1/{}/{}", res.schema.name, record.id);
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// `PATCH /v1/{resource}/{id}`: JSON Merge Patch (RFC 7396) under `If-Match`.
pub(super) async fn update(
    res: Arc<Resource>,
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Audited(meta): Audited,
    Path(id): Path<String>,
    req: Request,
) -> Outcome {
    let id = record_id(&id)?;
    let (parts, body) = req.into_parts();
    let if_match = parts
        .headers
        .get(header::IF_MATCH)
        .cloned()
        .ok_or_else(if_match_required)?;
    let patch = read_object(&parts.headers, body).await?;
    let vis = res.access(&app, &caller, &scope);
    check_keys(&res, &vis, &patch)?;
    let store = &app.stores().records;
    let current = store
        .get_record(&scope, &res.schema.name, &id, vis.owner.as_deref())
        .await?
        .ok_or_else(not_found)?;
    if !matches(&if_match, &etag(&vis.view(&current))?) {
        return Err(stale());
    }
    let mut data = current.data.clone();
    for (k, v) in &patch {
        if v.is_null() {
            data.remove(k);
        } else {
            let merged = merge_patch(data.get(k), v);
            data.insert(k.clone(), merged);
        }
    }
    let data = validate(&res.schema, &data)?;
    check_refs(&app, &res.schema, &scope, &data, |f| patch.contains_key(f)).await?;
    let k = keys(&res.schema, &data);
    let record = store
        .update_record(
            &scope,
            &meta,
            &res.schema.name,
            &id,
            vis.owner.as_deref(),
            current.version,
            data,
            k,
        )
        .await?;
    let view = vis.view(&record);
    let tag = etag(&view)?;
    json_response(StatusCode::OK, &view, &tag)
}

/// `DELETE /v1/{resource}/{id}`: soft delete under `If-Match`.
pub(super) async fn delete(
    res: Arc<Resource>,
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Audited(meta): Audited,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Outcome {
    let id = record_id(&id)?;
    let if_match = headers
        .get(header::IF_MATCH)
        .ok_or_else(if_match_required)?;
    let vis = res.access(&app, &caller, &scope);
    let store = &app.stores().records;
    let current = store
        .get_record(&scope, &res.schema.name, &id, vis.owner.as_deref())
        .await?
        .ok_or_else(not_found)?;
    if !matches(if_match, &etag(&vis.view(&current))?) {
        return Err(stale());
    }
    store
        .delete_record(
            &scope,
            &meta,
            &res.schema.name,
            &id,
            vis.owner.as_deref(),
            current.version,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/{resource}/{id}/restore`.
pub(super) async fn restore(
    res: Arc<Resource>,
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Audited(meta): Audited,
    Path(id): Path<String>,
) -> Outcome {
    let id = record_id(&id)?;
    let vis = res.access(&app, &caller, &scope);
    let schema = &res.schema;
    let keys_of = |data: &Map<String, Value>| keys(schema, data);
    let record = app
        .stores()
        .records
        .restore_record(
            &scope,
            &meta,
            &schema.name,
            &id,
            vis.owner.as_deref(),
            &keys_of,
        )
        .await?;
    let view = vis.view(&record);
    let tag = etag(&view)?;
    json_response(StatusCode::OK, &view, &tag)
}
