//! `/v1/audit`: query, export and verify the selected tenant's audit trail.
//!
//! SECURITY:
//! - Every read goes through the guard's `TenantScope`: a tenant's chain is all a caller sees.
//! - Field masks apply to `old` and `new`: a field protected by `{resource}.field.{field}.read` (a
//!   capability that exists only for protected fields) is removed unless the caller holds it, in
//!   every view: the query, both export formats.
//! - Exports stream page by page and never hold the tenant's trail in memory; CSV cells that a
//!   spreadsheet would run as a formula are neutralised.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::{Access, CapabilityRegistry, Principal, capability::platform};
use palisade_store::{AuditEntry, AuditFilter, AuditPageRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, FieldError};
use crate::export::{self, ExportFormat};
use crate::extract::{Caller, Query, Scoped};
use crate::router::{SecureRouter, op};
use crate::routes::tenants::rfc3339;
use crate::routes::{cursor_context, invalid_cursor};
use crate::state::AppState;

/// Entries per store round trip while exporting.
const EXPORT_BATCH: u32 = 500;

/// One audit entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Position in the tenant's chain.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// `user:<id>`, `system:<what>`, `anonymous`.
    pub actor: String,
    /// Dotted action, e.g. `user.update`.
    pub action: String,
    /// `tenant`, `user`, `role`, or a declared resource.
    pub resource: String,
    /// The changed record.
    pub record_id: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Before (masked).
    #[schema(value_type = Option<Object>)]
    pub old: Option<Value>,
    /// After (masked).
    #[schema(value_type = Option<Object>)]
    pub new: Option<Value>,
    /// This entry's hash, hex.
    pub hash: String,
    /// The previous entry's hash, hex.
    pub prev_hash: String,
}

/// `GET /v1/audit/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    /// Whether the chain verifies from its checkpoint (or genesis) to its head.
    pub valid: bool,
    /// Entries checked.
    pub entries: u64,
    /// The head hash.
    pub head: String,
    /// The first sequence number that does not verify.
    pub first_invalid_seq: Option<i64>,
}

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// 1–200, default 50.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Exact actor, e.g. `user:<id>`.
    pub actor: Option<String>,
    /// Exact action, e.g. `user.update`.
    pub action: Option<String>,
    /// Exact resource kind.
    pub resource: Option<String>,
    /// Exact record id.
    pub record_id: Option<String>,
    /// RFC 3339: entries at or after.
    pub since: Option<String>,
    /// RFC 3339: entries before.
    pub until: Option<String>,
}

/// `GET /v1/audit/export` query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `ndjson` (default) or `csv`.
    pub format: Option<String>,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Oldest first.
    pub items: Vec<AuditEntryView>,
    /// The cursor of the next page, or null.
    pub next_cursor: Option<String>,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.get(
        "/v1/audit",
        Access::cap(platform::AUDIT_LOG_READ),
        op(
            "listAudit",
            "The selected tenant's audit trail, oldest first, with field masks applied",
            "audit",
        )
        .ok::<AuditPage>(200),
        list_audit,
    )
    .get(
        "/v1/audit/verify",
        Access::cap(platform::AUDIT_LOG_READ),
        op(
            "verifyAudit",
            "Recompute the selected tenant's hash chain and name the first invalid entry",
            "audit",
        )
        .ok::<VerifyView>(200),
        verify_audit,
    )
    .get(
        "/v1/audit/export",
        Access::cap(platform::AUDIT_LOG_EXPORT),
        op(
            "exportAudit",
            "Stream the selected tenant's audit trail as NDJSON or CSV, with field masks applied",
            "audit",
        )
        .empty(200),
        export_audit,
    )
}

fn parse_time(field: &str, value: Option<&str>) -> ApiResult<Option<OffsetDateTime>> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::Validation(vec![FieldError::new(
                    field,
                    "invalid_timestamp",
                    "must be an RFC 3339 timestamp",
                )])
            })
        })
        .transpose()
}

/// Bounded text filters: a filter longer than anything the server writes cannot match.
fn bounded(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.len() > 256 => Err(ApiError::Validation(vec![FieldError::new(
            field,
            "too_long",
            "at most 256 characters",
        )])),
        other => Ok(other),
    }
}

/// What the caller may not read: the protected-field capabilities that exist and the caller lacks.
/// Computed once per request.
#[derive(Debug, Clone)]
pub(crate) struct FieldMask {
    hidden: BTreeSet<String>,
}

impl FieldMask {
    /// The mask for `caller` over every registered `*.field.*.read` capability.
    pub(crate) fn for_caller(registry: &CapabilityRegistry, caller: &Principal) -> Self {
        let hidden = registry
            .iter()
            .filter(|def| {
                let name = def.name.as_str();
                name.ends_with(".read") && name.contains(".field.")
            })
            .filter(|def| !caller.capabilities.contains(&def.name))
            .map(|def| def.name.as_str().to_owned())
            .collect();
        Self { hidden }
    }

    /// Removes from a record snapshot the fields of `resource` the caller may not read.
    pub(crate) fn apply(&self, resource: &str, value: Option<Value>) -> Option<Value> {
        let mut value = value?;
        if let Value::Object(map) = &mut value {
            map.retain(|field, _| {
                !self
                    .hidden
                    .contains(&format!("{resource}.field.{field}.read"))
            });
        }
        Some(value)
    }
}

fn view(entry: AuditEntry, mask: &FieldMask) -> AuditEntryView {
    AuditEntryView {
        seq: entry.seq,
        at: rfc3339(entry.at),
        old: mask.apply(&entry.resource, entry.old),
        new: mask.apply(&entry.resource, entry.new),
        actor: entry.actor,
        action: entry.action,
        resource: entry.resource,
        record_id: entry.record_id,
        ip: entry.ip,
        request_id: entry.request_id,
        hash: entry.hash,
        prev_hash: entry.prev_hash,
    }
}

async fn list_audit(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "pagination.invalid_limit",
            detail: "limit must be between 1 and 200.".to_owned(),
        });
    }
    let after_seq = match &q.cursor {
        None => None,
        Some(c) => {
            let payload = app
                .cursors()
                .verify(&cursor_context(&scope, "audit"), c)
                .map_err(|_| invalid_cursor())?;
            let text = String::from_utf8(payload).map_err(|_| invalid_cursor())?;
            Some(text.parse::<i64>().map_err(|_| invalid_cursor())?)
        }
    };
    let filter = AuditFilter {
        since: parse_time("since", q.since.as_deref())?,
        until: parse_time("until", q.until.as_deref())?,
        actor: bounded("actor", q.actor)?,
        action: bounded("action", q.action)?,
        resource: bounded("resource", q.resource)?,
        record_id: bounded("record_id", q.record_id)?,
    };
    let page = app
        .stores()
        .audit
        .list(&scope, &filter, &AuditPageRequest { limit, after_seq })
        .await?;
    let next_cursor = match page.next_after {
        Some(after) => Some(
            app.cursors()
                .sign(&cursor_context(&scope, "audit"), after.as_bytes())
                .map_err(ApiError::internal)?,
        ),
        None => None,
    };
    let mask = FieldMask::for_caller(app.capabilities(), &caller);
    Ok(axum::Json(AuditPage {
        items: page.items.into_iter().map(|e| view(e, &mask)).collect(),
        next_cursor,
    }))
}

async fn verify_audit(
    State(app): State<AppState>,
    Scoped(scope): Scoped,
) -> ApiResult<axum::Json<VerifyView>> {
    let report = app.stores().audit.verify(&scope).await?;
    if !report.valid {
        tracing::error!(
            target: "security",
            tenant = %scope.tenant_id(),
            first_invalid_seq = report.first_invalid_seq,
            "audit chain does not verify"
        );
    }
    Ok(axum::Json(VerifyView {
        valid: report.valid,
        entries: report.entries,
        head: report.head,
        first_invalid_seq: report.first_invalid_seq,
    }))
}

/// The CSV header of an audit export.
const CSV_COLUMNS: [&str; 12] = [
    "seq",
    "at",
    "actor",
    "action",
    "resource",
    "record_id",
    "ip",
    "request_id",
    "old",
    "new",
    "prev_hash",
    "hash",
];

fn csv_line(e: &AuditEntryView) -> String {
    let json = |v: &Option<Value>| v.as_ref().map(Value::to_string).unwrap_or_default();
    export::csv_row(&[
        e.seq.to_string(),
        e.at.clone(),
        e.actor.clone(),
        e.action.clone(),
        e.resource.clone(),
        e.record_id.clone().unwrap_or_default(),
        e.ip.clone().unwrap_or_default(),
        e.request_id.clone().unwrap_or_default(),
        json(&e.old),
        json(&e.new),
        e.prev_hash.clone(),
        e.hash.clone(),
    ])
}

async fn export_audit(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let format = ExportFormat::parse(q.format.as_deref())?;
    let mask = FieldMask::for_caller(app.capabilities(), &caller);
    let header_line = match format {
        ExportFormat::Csv => Some(export::csv_row(&CSV_COLUMNS.map(str::to_owned))),
        ExportFormat::Ndjson => None,
    };
    let pages = export::paged(move |after: Option<i64>| {
        let app = app.clone();
        let scope = scope.clone();
        let mask = mask.clone();
        async move {
            let page = app
                .stores()
                .audit
                .list(
                    &scope,
                    &AuditFilter::default(),
                    &AuditPageRequest {
                        limit: EXPORT_BATCH,
                        after_seq: after,
                    },
                )
                .await?;
            let last = page.items.last().map(|e| e.seq);
            let more = page.next_after.is_some();
            let mut chunk = String::new();
            for entry in page.items {
                let v = view(entry, &mask);
                match format {
                    ExportFormat::Csv => chunk.push_str(&csv_line(&v)),
                    ExportFormat::Ndjson => {
                        chunk.push_str(
                            &serde_json::to_string(&v)
                                .map_err(|e| palisade_store::StoreError::Internal(Box::new(e)))?,
                        );
                        chunk.push('\n');
                    }
                }
            }
            Ok((chunk, if more { last } else { None }))
        }
    });
    let body = Body::from_stream(export::with_header(header_line, pages));
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    res.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(match format {
            ExportFormat::Csv => "attachment; filename=\"audit.csv\"",
            ExportFormat::Ndjson => "attachment; filename=\"audit.ndjson\"",
        }),
    );
    Ok(res)
}
