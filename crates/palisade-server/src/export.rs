//! Streamed exports (NDJSON and CSV), shared by every export route.
//!
//! Invariants:
//! - An export is produced page by page from the store ([`paged`]): memory is bounded by one page,
//!   whatever the size of the tenant's data.
//! - CSV follows RFC 4180 quoting, and a cell that a spreadsheet would evaluate (starting with `=`,
//!   `+`, `-`, `@`, a tab or a carriage return) is neutralised with a leading `'` (OWASP "CSV
//!   injection").
//! - A failure after the first byte cannot change the status any more: the stream ends with an error,
//!   the connection is cut (the client sees a truncated body, never a silently short file), and the
//!   failure is logged.

use std::future::Future;

use bytes::Bytes;
use futures::Stream;
use futures::stream::{self, StreamExt};
use palisade_store::StoreError;

use crate::error::ApiError;

/// The formats every export offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Ndjson,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl ExportFormat {
    /// `?format=`: `ndjson` (the default) or `csv`.
    ///
    /// # Errors
    /// 400 `export.invalid_format` for anything else.
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("ndjson") => Ok(Self::Ndjson),
            Some("csv") => Ok(Self::Csv),
            Some(_) => Err(ApiError::BadRequest {
                code: "export.invalid_format",
                detail: "format must be ndjson or csv.".to_owned(),
            }),
        }
    }

    /// The response's media type.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// One CSV cell: neutralised against formula injection, quoted when needed.
#[must_use]
pub fn csv_cell(value: &str) -> String {
    let neutral = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if neutral.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

/// One CSV line (CRLF-terminated, as RFC 4180 asks).
#[must_use]
pub fn csv_row(cells: &[String]) -> String {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

enum Step<C> {
    Next(Option<C>),
    Done,
}

/// Streams the chunks that `fetch` produces page by page: `fetch(after)` returns one page's text and
/// the position to continue after, or `None` when it was the last page.
pub fn paged<C, F, Fut>(fetch: F) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    C: Send + 'static,
    F: FnMut(Option<C>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(String, Option<C>), StoreError>> + Send,
{
    stream::unfold((Step::Next(None), fetch), |(step, mut fetch)| async move {
        let Step::Next(after) = step else {
            return None;
        };
        match fetch(after).await {
            Ok((chunk, Some(next))) => {
                Some((Ok(Bytes::from(chunk)), (Step::Next(Some(next)), fetch)))
            }
            Ok((chunk, None)) => Some((Ok(Bytes::from(chunk)), (Step::Done, fetch))),
            Err(e) => {
                tracing::error!(target: "palisade::error", error = %e, "export failed mid-stream");
                Some((
                    Err(std::io::Error::other("export failed")),
                    (Step::Done, fetch),
                ))
            }
        }
    })
}

/// Puts an optional header line (the CSV column names) in front of a stream.
pub fn with_header(
    header: Option<String>,
    body: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    stream::iter(header.map(|h| Ok(Bytes::from(h)))).chain(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_quoted_cells_escaped() {
        assert_eq!(csv_cell("=SUM(A1:A9)"), "'=SUM(A1:A9)");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@cmd"), "'@cmd");
        assert_eq!(csv_cell("\t=1"), "'\t=1");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1,2"), "\"'=1,2\"");
        assert_eq!(csv_row(&["a".to_owned(), "=b".to_owned()]), "a,'=b\r\n");
    }

    #[test]
    fn formats_parse_and_refuse_the_rest() {
        assert_eq!(ExportFormat::parse(None).unwrap(), ExportFormat::Ndjson);
        assert_eq!(ExportFormat::parse(Some("csv")).unwrap(), ExportFormat::Csv);
        assert!(ExportFormat::parse(Some("xlsx")).is_err());
    }
}
