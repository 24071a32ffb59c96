//! How values are stored, and the conversions both backends share.
//!
//! - **Ids** are TEXT holding the canonical lowercase hyphenated UUID, the only spelling `TenantId` and
//!   `UserId` parse. Both drivers return TEXT as `String`, so one decoder serves both; comparisons are
//!   bytewise on both (SQLite's BINARY collation, `COLLATE "C"` on PostgreSQL), and UUIDv7 text sorts by
//!   creation time, which keyset pagination relies on. A native PostgreSQL `uuid` column would need a
//!   second decoding path and has no SQLite counterpart; materialised paths are text anyway.
//! - **Timestamps** are INTEGER (SQLite) / BIGINT (PostgreSQL) microseconds since the Unix epoch, UTC.
//!   Both drivers return `i64`, ordering and range comparisons are numeric on both (RFC 3339 text only
//!   sorts correctly with a fixed fraction width and offset), and microseconds is PostgreSQL's own
//!   timestamp precision. Times are truncated to microseconds before they are stored *and* returned, so
//!   a row read back equals the struct a write returned.
//! - **Enums** (`kind`, `status`, `channel`) are their stored spelling, guarded by CHECK constraints.
//! - **Booleans** are INTEGER / BIGINT `0` or `1` on both backends (one decoder, one CHECK spelling).
//! - **String lists** that are read whole (a refresh family's `amr`) are JSON array text on both.
//!
//! Invariant: a stored value that does not decode is `Internal` (corrupt data), and the error names the
//! column, never the value.

use std::str::FromStr;

use palisade_store::{Page, PageRequest, StoreError, StoreResult};
use sea_query::{Expr, ExprTrait, IntoColumnRef, Order, SelectStatement};
use time::OffsetDateTime;

use crate::dialect::{DbRow, Exec, acquire};

/// The largest page a list returns, whatever the caller asked for.
pub(crate) const MAX_PAGE: u32 = 200;

/// The current time, truncated to the stored precision (microseconds).
pub(crate) fn now() -> StoreResult<OffsetDateTime> {
    from_micros(to_micros(OffsetDateTime::now_utc())?)
}

/// A time as stored: microseconds since the Unix epoch.
pub(crate) fn to_micros(t: OffsetDateTime) -> StoreResult<i64> {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000))
        .map_err(|_| StoreError::internal("timestamp out of the stored range"))
}

/// A stored time back as an `OffsetDateTime` in UTC.
pub(crate) fn from_micros(micros: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|_| StoreError::internal("stored timestamp out of range"))
}

/// A nullable stored time.
pub(crate) fn opt_from_micros(micros: Option<i64>) -> StoreResult<Option<OffsetDateTime>> {
    micros.map(from_micros).transpose()
}

/// A boolean as stored.
pub(crate) fn to_flag(b: bool) -> i64 {
    i64::from(b)
}

/// A stored boolean; anything but `0` or `1` is corrupt.
pub(crate) fn from_flag(value: i64, column: &'static str) -> StoreResult<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(StoreError::internal(format!(
            "stored {column} does not decode"
        ))),
    }
}

/// A list of strings as stored: a JSON array.
pub(crate) fn to_json_list(items: &[String]) -> StoreResult<String> {
    serde_json::to_string(items).map_err(|e| StoreError::Internal(Box::new(e)))
}

/// A stored JSON array of strings, naming only the column on failure.
pub(crate) fn from_json_list(text: &str, column: &'static str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|_| StoreError::internal(format!("stored {column} does not decode")))
}

/// Parses an optional stored id.
pub(crate) fn parse_opt_stored<T: FromStr>(
    text: Option<String>,
    column: &'static str,
) -> StoreResult<Option<T>> {
    text.map(|t| parse_stored(&t, column)).transpose()
}

/// Parses a stored id (or any stored spelling with a `FromStr`), naming only the column on failure.
pub(crate) fn parse_stored<T: FromStr>(text: &str, column: &'static str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::internal(format!("stored {column} does not decode")))
}

/// The effective page size: the request's limit within 1..=[`MAX_PAGE`].
pub(crate) fn page_size(page: &PageRequest) -> u32 {
    page.limit.clamp(1, MAX_PAGE)
}

/// How many rows a page query fetches: one more than the page size, to learn whether more follow.
pub(crate) fn fetch_size(page: &PageRequest) -> u64 {
    u64::from(page_size(page)) + 1
}

/// Cuts the `fetch_size` rows of a keyset query down to one page. `next_after` is the last returned
/// item's id when a further row exists.
pub(crate) fn into_page<T>(
    mut items: Vec<T>,
    page: &PageRequest,
    id_of: impl Fn(&T) -> String,
) -> Page<T> {
    let size = usize::try_from(page_size(page)).unwrap_or(usize::MAX);
    let more = items.len() > size;
    items.truncate(size);
    let next_after = if more { items.last().map(id_of) } else { None };
    Page { items, next_after }
}

/// One keyset page of `stmt`: rows whose `key` is after the page's `after`, ordered by `key`, decoded,
/// and cut to the page size (one extra row is fetched to learn whether more follow).
pub(crate) async fn fetch_keyset_page<D: Exec, T, K: IntoColumnRef + Copy>(
    pool: &sqlx::Pool<D::DB>,
    mut stmt: SelectStatement,
    key: K,
    page: &PageRequest,
    decode: fn(&DbRow<D>) -> StoreResult<T>,
    key_of: impl Fn(&T) -> String,
) -> StoreResult<Page<T>> {
    let stmt = stmt
        .and_where_option(page.after.as_deref().map(|after| Expr::col(key).gt(after)))
        .order_by(key, Order::Asc)
        .limit(fetch_size(page))
        .take();
    let mut conn = acquire::<D>(pool).await?;
    let items = D::fetch_all(&mut conn, D::render(&stmt))
        .await?
        .iter()
        .map(decode)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(into_page(items, page, key_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let t = now().unwrap();
        assert_eq!(t.nanosecond() % 1_000, 0);
        assert_eq!(from_micros(to_micros(t).unwrap()).unwrap(), t);
    }

    #[test]
    fn times_before_the_epoch_truncate_downwards() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(-1_500).unwrap();
        assert_eq!(to_micros(t).unwrap(), -2);
    }

    #[test]
    fn flags_and_lists_round_trip_and_corrupt_values_name_only_the_column() {
        assert!(from_flag(to_flag(true), "t.c").unwrap());
        assert!(!from_flag(to_flag(false), "t.c").unwrap());
        let err = from_flag(7, "t.c").unwrap_err();
        assert!(format!("{:?}", std::error::Error::source(&err)).contains("t.c"));
        let amr = vec!["otp".to_owned(), "totp".to_owned()];
        assert_eq!(
            from_json_list(&to_json_list(&amr).unwrap(), "t.c").unwrap(),
            amr
        );
        let err = from_json_list("{\"secret\":1}", "t.c").unwrap_err();
        assert!(!format!("{:?}", std::error::Error::source(&err)).contains("secret"));
    }

    #[test]
    fn a_page_reports_more_only_when_a_further_row_exists() {
        let req = PageRequest {
            limit: 2,
            after: None,
        };
        assert_eq!(fetch_size(&req), 3);
        let full = into_page(vec![1, 2, 3], &req, ToString::to_string);
        assert_eq!(full.items, vec![1, 2]);
        assert_eq!(full.next_after.as_deref(), Some("2"));
        let last = into_page(vec![1, 2], &req, ToString::to_string);
        assert_eq!(last.next_after, None);
    }

    #[test]
    fn page_sizes_are_clamped() {
        assert_eq!(
            page_size(&PageRequest {
                limit: 0,
                after: None
            }),
            1
        );
        assert_eq!(
            page_size(&PageRequest {
                limit: 10_000,
                after: None
            }),
            MAX_PAGE
        );
    }
}
