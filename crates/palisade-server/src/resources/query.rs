//! List query parameters: `limit`, `cursor`, and whitelisted filters `?{field}=v` and
//! `?{field}[op]=v` with `op` in `gt`, `gte`, `lt`, `lte`, `ne`, `in` (comma-separated values).
//!
//! SECURITY: only declared filterable fields that the caller may read are accepted; anything else is a
//! 400, so a filter can never probe a hidden field's values. Operands are converted to the field's
//! indexed form and reach the database as bound parameters.

use palisade_domain::resource::IndexValue;
use palisade_store::{FilterOp, IndexedValue, RecordFilter};

use super::{Resource, Visibility};
use crate::error::ApiError;

/// At most this many filters, and this many values in one `in`.
const MAX_FILTERS: usize = 10;
const MAX_IN: usize = 50;

/// A parsed list query.
pub(super) struct ListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub filters: Vec<RecordFilter>,
}

fn bad(code: &'static str, detail: String) -> ApiError {
    ApiError::BadRequest { code, detail }
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Parses the query string of a list.
///
/// # Errors
/// 400 for an unknown parameter, a field that cannot be filtered on, an unknown operator or an operand
/// of the wrong type.
pub(super) fn parse_list(
    res: &Resource,
    vis: &Visibility,
    raw: &str,
) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        limit: None,
        cursor: None,
        filters: Vec::new(),
    };
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "limit" => {
                q.limit = Some(v.parse().map_err(|_| {
                    bad(
                        "pagination.invalid_limit",
                        "limit must be between 1 and 200.".to_owned(),
                    )
                })?);
            }
            "cursor" => q.cursor = Some(v.into_owned()),
            key => {
                let (field, op) = match key.split_once('[') {
                    None => (key, FilterOp::Eq),
                    Some((f, rest)) => {
                        let op = match rest {
                            "gt]" => FilterOp::Gt,
                            "gte]" => FilterOp::Gte,
                            "lt]" => FilterOp::Lt,
                            "lte]" => FilterOp::Lte,
                            "ne]" => FilterOp::Ne,
                            "in]" => FilterOp::In,
                            _ => {
                                return Err(bad(
                                    "filter.invalid_operator",
                                    format!(
                                        "Unknown filter operator on `{}`; use gt, gte, lt, lte, ne or in.",
                                        printable(f)
                                    ),
                                ));
                            }
                        };
                        (f, op)
                    }
                };
                let Some(schema) = res
                    .schema
                    .field(field)
                    .filter(|f| f.filterable && !vis.hidden.contains(&f.name))
                else {
                    return Err(bad(
                        "filter.not_allowed",
                        format!(
                            "`{}` is not a parameter of this list or a field that can be filtered on.",
                            printable(field)
                        ),
                    ));
                };
                let raw_values: Vec<&str> = if op == FilterOp::In {
                    v.split(',').collect()
                } else {
                    vec![v.as_ref()]
                };
                if raw_values.len() > MAX_IN {
                    return Err(bad(
                        "filter.too_many_values",
                        format!("`in` takes at most {MAX_IN} values."),
                    ));
                }
                let values = raw_values
                    .into_iter()
                    .map(|r| {
                        schema
                            .parse_operand(r)
                            .map(|iv| match iv {
                                IndexValue::Text(t) => IndexedValue::Text(t),
                                IndexValue::Num(n) => IndexedValue::Num(n),
                            })
                            .map_err(|i| {
                                bad(
                                    "filter.invalid_value",
                                    format!("The filter on `{}` {}.", schema.name, i.message),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                q.filters.push(RecordFilter {
                    field: schema.name.clone(),
                    op,
                    values,
                });
                if q.filters.len() > MAX_FILTERS {
                    return Err(bad(
                        "filter.too_many",
                        format!("At most {MAX_FILTERS} filters."),
                    ));
                }
            }
        }
    }
    Ok(q)
}
