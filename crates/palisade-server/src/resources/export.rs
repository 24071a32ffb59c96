//! `GET /v1/{resource}/export?format=ndjson|csv`: the tenant's live records, streamed one page at a
//! time (never the whole tenant in memory), with the caller's field masks and owner scoping applied.
//!
//! SECURITY: CSV cells holding text that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
//! are prefixed with `'` so a spreadsheet does not evaluate them as formulas (OWASP "CSV injection").
//! Numbers and booleans are written as JSON spells them and cannot start a formula.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use palisade_store::{PageRequest, RecordQuery};
use serde_json::{Map, Value};

use super::handlers::Fail;
use super::{Resource, Visibility};
use crate::error::ApiError;
use crate::extract::{Caller, Scoped};
use crate::state::AppState;

/// Records per page read from the store.
const EXPORT_PAGE: u32 = 200;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

fn parse_format(raw: &str) -> Result<Format, ApiError> {
    let mut format = Format::Ndjson;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("format", "ndjson") => format = Format::Ndjson,
            ("format", "csv") => format = Format::Csv,
            ("format", _) => {
                return Err(ApiError::BadRequest {
                    code: "export.invalid_format",
                    detail: "format must be ndjson or csv.".to_owned(),
                });
            }
            _ => {
                return Err(ApiError::BadRequest {
                    code: "request.unknown_parameter",
                    detail: "The export takes only `format`.".to_owned(),
                });
            }
        }
    }
    Ok(format)
}

/// Neutralises a text cell against formula injection, then quotes it per RFC 4180 when needed.
pub(crate) fn csv_text(s: &str) -> String {
    let neutral = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if neutral.contains([',', '"', '\n', '\r']) || neutral.starts_with(' ') {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

fn csv_cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => csv_text(s),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(other) => csv_text(&other.to_string()),
    }
}

fn csv_line(columns: &[String], view: &Map<String, Value>) -> String {
    let mut line = columns
        .iter()
        .map(|c| csv_cell(view.get(c)))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

struct Cursor {
    after: Option<String>,
    first: bool,
    done: bool,
}

/// The export handler.
pub(super) async fn export(
    res: Arc<Resource>,
    State(app): State<AppState>,
    Caller(caller): Caller,
    Scoped(scope): Scoped,
    uri: Uri,
) -> Result<Response, Fail> {
    let format = parse_format(uri.query().unwrap_or_default())?;
    let vis: Visibility = res.access(&app, &caller, &scope);
    let mut columns = vec!["id".to_owned()];
    columns.extend(
        res.schema
            .fields
            .iter()
            .filter(|f| !vis.hidden.contains(&f.name))
            .map(|f| f.name.clone()),
    );
    columns.extend(["created_at", "updated_at", "version"].map(str::to_owned));
    let query = RecordQuery {
        owner: vis.owner.clone(),
        filters: Vec::new(),
    };
    let start = Cursor {
        after: None,
        first: true,
        done: false,
    };
    let filename = match format {
        Format::Ndjson => format!("attachment; filename=\"{}.ndjson\"", res.schema.name),
        Format::Csv => format!("attachment; filename=\"{}.csv\"", res.schema.name),
    };
    let stream = futures::stream::unfold(start, move |mut cur| {
        let (app, scope, res, vis, query, columns) = (
            app.clone(),
            scope.clone(),
            res.clone(),
            vis.clone(),
            query.clone(),
            columns.clone(),
        );
        async move {
            if cur.done {
                return None;
            }
            let mut chunk = String::new();
            if cur.first && format == Format::Csv {
                chunk.push_str(&columns.join(","));
                chunk.push_str("\r\n");
            }
            cur.first = false;
            let page = PageRequest {
                limit: EXPORT_PAGE,
                after: cur.after.take(),
            };
            let records = match app
                .stores()
                .records
                .list_records(&scope, &res.schema.name, &query, &page)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    // Headers are gone; all that is left is to cut the stream short.
                    tracing::error!(error = %e, "export aborted");
                    cur.done = true;
                    return Some((Err(std::io::Error::other("export aborted")), cur));
                }
            };
            for r in &records.items {
                let view = vis.view(r);
                match format {
                    Format::Ndjson => {
                        chunk.push_str(&Value::Object(view).to_string());
                        chunk.push('\n');
                    }
                    Format::Csv => chunk.push_str(&csv_line(&columns, &view)),
                }
            }
            cur.done = records.next_after.is_none();
            cur.after = records.next_after;
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), cur))
        }
    });
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&filename).map_err(ApiError::internal)?,
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::csv_text;

    #[test]
    fn formula_cells_are_neutralised_and_quoted() {
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text("+cmd"), "'+cmd");
        assert_eq!(csv_text("-2"), "'-2");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(
            csv_text("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(csv_text("plain"), "plain");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
    }
}
