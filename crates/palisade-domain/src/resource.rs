//! Declared resources: the `[[resource]]` tables of `palisade.toml`, their checks, and the validation
//! of records against them.
//!
//! - [`ResourceDecl`] / [`FieldDecl`] are the configuration shape (unknown keys refused). Types and GDPR
//!   classes are read as plain strings so that [`check`] can explain every mistake with the resource and
//!   field it concerns, instead of a deserializer's message.
//! - [`compile`] turns checked declarations into [`ResourceSchema`]s (patterns compiled once).
//! - [`ResourceSchema::validate`] checks a whole document (a create, or the result of a merge patch)
//!   and returns it normalised, or every problem with its field.
//!
//! Invariants:
//! - Validation is total: every declared constraint is checked, an undeclared field is refused, and
//!   nothing reaches a store that the declaration forbids (property-tested below).
//! - Messages name fields and constraints, never the offending value.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Names that collide with platform paths under `/v1/` and are refused as resource names.
pub const RESERVED_NAMES: &[&str] = &[
    "auth",
    "tenants",
    "users",
    "roles",
    "me",
    "audit",
    "security",
    "api-keys",
    "api_keys",
    "oauth",
    "privacy",
    "vault",
    "webhooks",
    "files",
    "capabilities",
    "policies",
    "routes",
    "health",
    "ready",
    "metrics",
    "openapi",
    "trust",
    "platform",
    "self",
];

/// Keys every record carries besides its declared fields; refused as field names.
pub const SYSTEM_FIELDS: &[&str] = &["id", "created_at", "updated_at", "version", "owner_id"];

/// The default `max_length` of a `string` field, and of `text`.
pub const DEFAULT_STRING_MAX: u32 = 1_000;
/// The default `max_length` of a `text` field.
pub const DEFAULT_TEXT_MAX: u32 = 65_536;

/// One `[[resource]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDecl {
    /// Served at `/v1/{name}`; `[a-z][a-z0-9_]{0,39}`.
    pub name: String,
    /// Members see only their own records unless they hold `{name}.read_all`.
    #[serde(default)]
    pub owner_scoped: bool,
    /// Records older than this many days (counted from `created_at`), soft-deleted ones included, are
    /// purged for good by the retention job; absent keeps them forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// The field that links a record to a data subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_field: Option<String>,
    /// The fields.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldDecl>,
}

/// One field of `[resource.fields]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDecl {
    /// `string`, `text`, `integer`, `number`, `boolean`, `timestamp`, `date`, `email`, `phone`, `url`,
    /// `enum`, `uuid` or `ref`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `enum` only: the accepted values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// `ref` only: the resource referred to (same tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Must be present and non-null.
    #[serde(default)]
    pub required: bool,
    /// Text types: the most characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Numeric types: the least value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Numeric types: the greatest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Text types: a regular expression (`regex` crate syntax) the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Unique within the tenant.
    #[serde(default)]
    pub unique: bool,
    /// May be used in list filters.
    #[serde(default)]
    pub filterable: bool,
    /// `public`, `internal`, `personal` or `sensitive`: required on every field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gdpr: Option<String>,
    /// Reading and writing need `{resource}.field.{field}.read|write`.
    #[serde(default)]
    pub protected: bool,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Short text.
    String,
    /// Long text.
    Text,
    /// 64-bit integer.
    Integer,
    /// Finite floating-point number.
    Number,
    /// `true` / `false`.
    Boolean,
    /// RFC 3339 date-time.
    Timestamp,
    /// `YYYY-MM-DD`.
    Date,
    /// E-mail address.
    Email,
    /// E.164 phone number.
    Phone,
    /// `http(s)://` URL.
    Url,
    /// One of the declared values.
    Enum,
    /// A UUID.
    Uuid,
    /// The id of a record of another resource in the same tenant.
    Ref,
}

impl FieldType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "text" => Self::Text,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "email" => Self::Email,
            "phone" => Self::Phone,
            "url" => Self::Url,
            "enum" => Self::Enum,
            "uuid" => Self::Uuid,
            "ref" => Self::Ref,
            _ => return None,
        })
    }

    /// Whether values are strings limited by `max_length` and `pattern`.
    #[must_use]
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Self::String | Self::Text | Self::Email | Self::Phone | Self::Url
        )
    }

    /// Whether values are numbers limited by `min` and `max`.
    #[must_use]
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Integer | Self::Number)
    }
}

/// GDPR classification of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GdprClass {
    /// May be published.
    Public,
    /// Internal business data.
    Internal,
    /// Personal data.
    Personal,
    /// Special-category or otherwise sensitive personal data.
    Sensitive,
}

impl GdprClass {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Self::Public,
            "internal" => Self::Internal,
            "personal" => Self::Personal,
            "sensitive" => Self::Sensitive,
            _ => return None,
        })
    }
}

/// One mistake in the declarations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclProblem {
    /// The setting it concerns: `resource.<name>` or `resource.<name>.fields.<field>`.
    pub setting: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A compiled field.
#[derive(Debug, Clone)]
pub struct FieldSchema {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: FieldType,
    /// `enum` values.
    pub values: Vec<String>,
    /// `ref` target.
    pub to: Option<String>,
    /// Required.
    pub required: bool,
    /// Text types: the most characters (defaults applied).
    pub max_length: Option<u32>,
    /// Least value.
    pub min: Option<f64>,
    /// Greatest value.
    pub max: Option<f64>,
    /// Anchored pattern.
    pub pattern: Option<Regex>,
    /// Unique within the tenant.
    pub unique: bool,
    /// Filterable.
    pub filterable: bool,
    /// GDPR class.
    pub gdpr: GdprClass,
    /// Field-level protection.
    pub protected: bool,
}

/// A compiled resource.
#[derive(Debug, Clone)]
pub struct ResourceSchema {
    /// Name.
    pub name: String,
    /// Owner scoping.
    pub owner_scoped: bool,
    /// Days after creation when records are purged (see [`ResourceDecl::retention_days`]).
    pub retention_days: Option<u32>,
    /// Subject field.
    pub subject_field: Option<String>,
    /// Fields in name order.
    pub fields: Vec<FieldSchema>,
}

fn valid_resource_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(b'a'..=b'z'))
        && name.len() <= 40
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn valid_field_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(b'a'..=b'z'))
        && name.len() <= 63
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Every mistake in `decls`, each naming its resource and field. Empty when they can be served.
#[must_use]
pub fn check(decls: &[ResourceDecl]) -> Vec<DeclProblem> {
    match compile(decls) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

/// Compiles checked declarations.
///
/// # Errors
/// Every [`DeclProblem`] found (all of them, not just the first).
pub fn compile(decls: &[ResourceDecl]) -> Result<Vec<ResourceSchema>, Vec<DeclProblem>> {
    let mut problems = Vec::new();
    let names: BTreeSet<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for d in decls {
        let setting = format!("resource.{}", d.name);
        let mut problem = |setting: &str, message: String| {
            problems.push(DeclProblem {
                setting: setting.to_owned(),
                message,
            });
        };
        if !valid_resource_name(&d.name) {
            problem(
                "resource.name",
                format!(
                    "`{}` is not a valid resource name: use 1–40 characters [a-z0-9_], starting with a letter",
                    d.name.chars().take(64).collect::<String>()
                ),
            );
            continue;
        }
        if RESERVED_NAMES.contains(&d.name.as_str()) {
            problem(
                &setting,
                format!(
                    "collides with the platform path /v1/{}; choose another name",
                    d.name
                ),
            );
        }
        if !seen.insert(d.name.as_str()) {
            problem(&setting, "is declared twice".to_owned());
        }
        if d.fields.is_empty() {
            problem(&setting, "declares no fields".to_owned());
        }
        if d.retention_days == Some(0) {
            problem(
                &format!("{setting}.retention_days"),
                "is 0, which would purge every record at once; give at least 1, or omit it to keep \
                 records forever"
                    .to_owned(),
            );
        }
        if let Some(subject) = &d.subject_field
            && !d.fields.contains_key(subject)
        {
            problem(
                &format!("{setting}.subject_field"),
                format!("names `{subject}`, which is not a field of this resource"),
            );
        }
        let mut fields = Vec::new();
        for (fname, f) in &d.fields {
            let fs = format!("{setting}.fields.{fname}");
            if !valid_field_name(fname) {
                problem(
                    &fs,
                    "is not a valid field name: use 1–63 characters [a-z0-9_], starting with a letter"
                        .to_owned(),
                );
                continue;
            }
            if SYSTEM_FIELDS.contains(&fname.as_str()) {
                problem(
                    &fs,
                    format!("`{fname}` is reserved for the record's own metadata"),
                );
            }
            let kind = FieldType::parse(&f.kind);
            if kind.is_none() {
                problem(
                    &fs,
                    format!(
                        "has unknown type `{}`; use one of string, text, integer, number, boolean, \
                         timestamp, date, email, phone, url, enum, uuid, ref",
                        f.kind.chars().take(32).collect::<String>()
                    ),
                );
            }
            let gdpr = match f.gdpr.as_deref() {
                None => {
                    problem(
                        &fs,
                        "has no `gdpr` class; every field needs one of public, internal, personal, sensitive"
                            .to_owned(),
                    );
                    None
                }
                Some(g) => {
                    let c = GdprClass::parse(g);
                    if c.is_none() {
                        problem(
                            &fs,
                            "has an unknown `gdpr` class; use public, internal, personal or sensitive"
                                .to_owned(),
                        );
                    }
                    c
                }
            };
            let Some(kind) = kind else { continue };
            let values = f.values.clone().unwrap_or_default();
            if kind == FieldType::Enum {
                if values.is_empty() {
                    problem(&fs, "is an enum without `values`".to_owned());
                }
                let distinct: BTreeSet<&String> = values.iter().collect();
                if distinct.len() != values.len() {
                    problem(&fs, "lists an enum value twice".to_owned());
                }
            } else if f.values.is_some() {
                problem(&fs, "has `values`, which only enum fields take".to_owned());
            }
            if kind == FieldType::Ref {
                match &f.to {
                    None => problem(
                        &fs,
                        "is a ref without `to` naming the resource it refers to".to_owned(),
                    ),
                    Some(to) if !names.contains(to.as_str()) => problem(
                        &fs,
                        format!("refers to `{to}`, which is not a declared resource"),
                    ),
                    Some(_) => {}
                }
            } else if f.to.is_some() {
                problem(&fs, "has `to`, which only ref fields take".to_owned());
            }
            if f.max_length.is_some() && !kind.is_text() {
                problem(
                    &fs,
                    "has `max_length`, which only string, text, email, phone and url fields take"
                        .to_owned(),
                );
            }
            if f.max_length == Some(0) {
                problem(&fs, "has `max_length = 0`".to_owned());
            }
            if (f.min.is_some() || f.max.is_some()) && !kind.is_numeric() {
                problem(
                    &fs,
                    "has `min`/`max`, which only integer and number fields take".to_owned(),
                );
            }
            if let (Some(lo), Some(hi)) = (f.min, f.max)
                && lo > hi
            {
                problem(&fs, "has `min` greater than `max`".to_owned());
            }
            if f.min.is_some_and(|v| !v.is_finite()) || f.max.is_some_and(|v| !v.is_finite()) {
                problem(&fs, "has a non-finite `min` or `max`".to_owned());
            }
            let pattern = match &f.pattern {
                None => None,
                Some(_) if !kind.is_text() => {
                    problem(
                        &fs,
                        "has `pattern`, which only string, text, email, phone and url fields take"
                            .to_owned(),
                    );
                    None
                }
                Some(p) => match regex::RegexBuilder::new(&format!("^(?:{p})$"))
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(r) => Some(r),
                    Err(_) => {
                        problem(
                            &fs,
                            "has a `pattern` that is not a valid regular expression (regex crate syntax)"
                                .to_owned(),
                        );
                        None
                    }
                },
            };
            if f.unique && kind == FieldType::Text {
                problem(
                    &fs,
                    "is `unique`, which long text fields cannot be; use string".to_owned(),
                );
            }
            let max_length = match kind {
                FieldType::String | FieldType::Email | FieldType::Url | FieldType::Phone => {
                    Some(f.max_length.unwrap_or(DEFAULT_STRING_MAX))
                }
                FieldType::Text => Some(f.max_length.unwrap_or(DEFAULT_TEXT_MAX)),
                _ => None,
            };
            if let Some(gdpr) = gdpr {
                fields.push(FieldSchema {
                    name: fname.clone(),
                    kind,
                    values,
                    to: f.to.clone(),
                    required: f.required,
                    max_length,
                    min: f.min,
                    max: f.max,
                    pattern,
                    unique: f.unique,
                    filterable: f.filterable,
                    gdpr,
                    protected: f.protected,
                });
            }
        }
        out.push(ResourceSchema {
            name: d.name.clone(),
            owner_scoped: d.owner_scoped,
            retention_days: d.retention_days,
            subject_field: d.subject_field.clone(),
            fields,
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// One invalid field of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    /// The field.
    pub field: String,
    /// Stable code: `unknown_field`, `required`, `invalid_type`, `too_long`, `too_small`, `too_large`,
    /// `pattern_mismatch`, `invalid_value`, `invalid_email`, `invalid_phone`, `invalid_url`,
    /// `invalid_timestamp`, `invalid_date`, `invalid_uuid`.
    pub code: &'static str,
    /// Safe to show (never the value).
    pub message: String,
}

fn issue(field: &str, code: &'static str, message: impl Into<String>) -> FieldIssue {
    FieldIssue {
        field: field.to_owned(),
        code,
        message: message.into(),
    }
}

/// A typed value as indexed for filtering: text or number.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// Compared as text (bytewise).
    Text(String),
    /// Compared numerically.
    Num(f64),
}

impl ResourceSchema {
    /// The field named `name`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Validates a whole document: every key a declared field, every value of its type and within its
    /// limits, every required field present. `null` values are dropped (an absent optional field).
    /// Returns the normalised document (e-mail domains and UUIDs lowercased).
    ///
    /// # Errors
    /// Every [`FieldIssue`], in field order.
    pub fn validate(
        &self,
        doc: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let mut out = Map::new();
        for key in doc.keys() {
            if self.field(key).is_none() {
                issues.push(issue(
                    key,
                    "unknown_field",
                    "is not a field of this resource",
                ));
            }
        }
        for f in &self.fields {
            match doc.get(&f.name) {
                None | Some(Value::Null) => {
                    if f.required {
                        issues.push(issue(&f.name, "required", "is required"));
                    }
                }
                Some(v) => match f.check(v) {
                    Ok(v) => {
                        out.insert(f.name.clone(), v);
                    }
                    Err(i) => issues.push(i),
                },
            }
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(issues)
        }
    }

    /// `(field, key)` for every unique field present in a validated document: the key identifies the
    /// value case-insensitively for e-mails, exactly otherwise.
    #[must_use]
    pub fn unique_keys(&self, doc: &Map<String, Value>) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|f| f.unique)
            .filter_map(|f| {
                let v = doc.get(&f.name)?;
                let key = match v {
                    Value::String(s) if f.kind == FieldType::Email => s.to_lowercase(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some((f.name.clone(), key))
            })
            .collect()
    }

    /// `(field, value)` for every filterable field present in a validated document.
    #[must_use]
    pub fn index_values(&self, doc: &Map<String, Value>) -> Vec<(String, IndexValue)> {
        self.fields
            .iter()
            .filter(|f| f.filterable)
            .filter_map(|f| Some((f.name.clone(), f.index_value(doc.get(&f.name)?)?)))
            .collect()
    }
}

impl FieldSchema {
    /// Converts a filter operand given as query text to the indexed form of this field.
    ///
    /// # Errors
    /// A [`FieldIssue`] when the text is not a value of the field's type.
    pub fn parse_operand(&self, raw: &str) -> Result<IndexValue, FieldIssue> {
        let v = match self.kind {
            FieldType::Integer | FieldType::Number => serde_json::from_str::<Value>(raw)
                .ok()
                .filter(Value::is_number)
                .ok_or_else(|| issue(&self.name, "invalid_type", "must be a number"))?,
            FieldType::Boolean => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(issue(&self.name, "invalid_type", "must be true or false")),
            },
            _ => Value::String(raw.to_owned()),
        };
        let v = self.check_type(&v)?;
        self.index_value(&v)
            .ok_or_else(|| issue(&self.name, "invalid_value", "cannot be filtered on"))
    }

    fn index_value(&self, v: &Value) -> Option<IndexValue> {
        match (self.kind, v) {
            (FieldType::Integer | FieldType::Number, Value::Number(n)) => {
                n.as_f64().map(IndexValue::Num)
            }
            (FieldType::Boolean, Value::Bool(b)) => Some(IndexValue::Text(b.to_string())),
            (FieldType::Timestamp, Value::String(s)) => {
                let t =
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()?;
                // Microseconds since the epoch: exact in an f64 for the next 285 years.
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "microsecond timestamps fit an f64's 53-bit mantissa"
                )]
                Some(IndexValue::Num((t.unix_timestamp_nanos() / 1_000) as f64))
            }
            (FieldType::Email, Value::String(s)) => Some(IndexValue::Text(s.to_lowercase())),
            (_, Value::String(s)) => Some(IndexValue::Text(s.clone())),
            _ => None,
        }
    }

    /// Checks one non-null value and returns it normalised.
    fn check(&self, v: &Value) -> Result<Value, FieldIssue> {
        let v = self.check_type(v)?;
        if let (Some(max), Value::String(s)) = (self.max_length, &v)
            && s.chars().count() > usize::try_from(max).unwrap_or(usize::MAX)
        {
            return Err(issue(
                &self.name,
                "too_long",
                format!("must be at most {max} characters"),
            ));
        }
        if let (Some(re), Value::String(s)) = (&self.pattern, &v)
            && !re.is_match(s)
        {
            return Err(issue(
                &self.name,
                "pattern_mismatch",
                "does not match the declared pattern",
            ));
        }
        if let Value::Number(n) = &v {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = self.min
                && (x.is_nan() || x < min)
            {
                return Err(issue(
                    &self.name,
                    "too_small",
                    format!("must be at least {min}"),
                ));
            }
            if let Some(max) = self.max
                && (x.is_nan() || x > max)
            {
                return Err(issue(
                    &self.name,
                    "too_large",
                    format!("must be at most {max}"),
                ));
            }
        }
        Ok(v)
    }

    fn check_type(&self, v: &Value) -> Result<Value, FieldIssue> {
        let name = &self.name;
        let wrong = |what: &str| issue(name, "invalid_type", format!("must be {what}"));
        match self.kind {
            FieldType::Integer => match v {
                Value::Number(n) if n.is_i64() => Ok(v.clone()),
                Value::Number(n) if n.is_u64() => {
                    Err(issue(name, "too_large", "must fit a 64-bit signed integer"))
                }
                _ => Err(wrong("an integer")),
            },
            FieldType::Number => match v {
                Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Ok(v.clone()),
                _ => Err(wrong("a number")),
            },
            FieldType::Boolean => match v {
                Value::Bool(_) => Ok(v.clone()),
                _ => Err(wrong("true or false")),
            },
            _ => {
                let Value::String(s) = v else {
                    return Err(wrong("a string"));
                };
                self.check_text(s).map(Value::String)
            }
        }
    }

    fn check_text(&self, s: &str) -> Result<String, FieldIssue> {
        let name = &self.name;
        if s.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
            || (self.kind != FieldType::Text && s.chars().any(char::is_control))
        {
            return Err(issue(
                name,
                "invalid_value",
                "must not contain control characters",
            ));
        }
        match self.kind {
            FieldType::Timestamp => {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map(|_| s.to_owned())
                    .map_err(|_| issue(name, "invalid_timestamp", "must be an RFC 3339 date-time"))
            }
            FieldType::Date => {
                let fmt = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(s, &fmt)
                    .map(|_| s.to_owned())
                    .map_err(|_| issue(name, "invalid_date", "must be a date YYYY-MM-DD"))
            }
            FieldType::Email => {
                if is_email(s) {
                    Ok(s.to_owned())
                } else {
                    Err(issue(name, "invalid_email", "must be an e-mail address"))
                }
            }
            FieldType::Phone => {
                let digits = s.strip_prefix('+').unwrap_or_default();
                let ok = (7..=15).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && !digits.starts_with('0');
                if ok {
                    Ok(s.to_owned())
                } else {
                    Err(issue(
                        name,
                        "invalid_phone",
                        "must be an E.164 phone number",
                    ))
                }
            }
            FieldType::Url => {
                let rest = s
                    .strip_prefix("https://")
                    .or_else(|| s.strip_prefix("http://"));
                match rest {
                    Some(r)
                        if !r.is_empty()
                            && !r.starts_with('/')
                            && !s.chars().any(char::is_whitespace) =>
                    {
                        Ok(s.to_owned())
                    }
                    _ => Err(issue(name, "invalid_url", "must be an http or https URL")),
                }
            }
            FieldType::Enum => {
                if self.values.iter().any(|v| v == s) {
                    Ok(s.to_owned())
                } else {
                    Err(issue(
                        name,
                        "invalid_value",
                        "is not one of the declared values",
                    ))
                }
            }
            FieldType::Uuid | FieldType::Ref => uuid::Uuid::try_parse(s)
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| issue(name, "invalid_uuid", "must be a UUID")),
            _ => Ok(s.to_owned()),
        }
    }
}

/// A pragmatic e-mail check: one `@`, a non-empty local part, a dotted domain of letters, digits,
/// hyphens; at most 254 characters; no whitespace.
fn is_email(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn decls(toml_fields: Vec<(&str, FieldDecl)>) -> Vec<ResourceDecl> {
        vec![ResourceDecl {
            name: "customers".into(),
            owner_scoped: false,
            retention_days: None,
            subject_field: None,
            fields: toml_fields
                .into_iter()
                .map(|(n, f)| (n.to_owned(), f))
                .collect(),
        }]
    }

    fn field(kind: &str) -> FieldDecl {
        FieldDecl {
            kind: kind.into(),
            gdpr: Some("internal".into()),
            ..FieldDecl::default()
        }
    }

    #[test]
    fn every_mistake_is_named_with_its_resource_and_field() {
        let mut d = decls(vec![
            ("a", field("strng")),
            (
                "b",
                FieldDecl {
                    gdpr: None,
                    ..field("string")
                },
            ),
            ("c", field("enum")),
            (
                "d",
                FieldDecl {
                    to: Some("nowhere".into()),
                    ..field("ref")
                },
            ),
            (
                "e",
                FieldDecl {
                    pattern: Some("(".into()),
                    ..field("string")
                },
            ),
            ("id", field("string")),
        ]);
        d.push(ResourceDecl {
            name: "users".into(),
            ..d[0].clone()
        });
        let problems = check(&d);
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.setting, p.message))
            .collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(
            has("resource.customers.fields.a: has unknown type"),
            "{text:?}"
        );
        assert!(
            has("resource.customers.fields.b: has no `gdpr`"),
            "{text:?}"
        );
        assert!(
            has("resource.customers.fields.c: is an enum without"),
            "{text:?}"
        );
        assert!(
            has("resource.customers.fields.d: refers to `nowhere`"),
            "{text:?}"
        );
        assert!(
            has("resource.customers.fields.e: has a `pattern`"),
            "{text:?}"
        );
        assert!(
            has("resource.customers.fields.id: `id` is reserved"),
            "{text:?}"
        );
        assert!(
            has("resource.users: collides with the platform path"),
            "{text:?}"
        );
    }

    #[test]
    fn a_document_is_validated_whole() {
        let schema = compile(&decls(vec![
            (
                "name",
                FieldDecl {
                    required: true,
                    max_length: Some(5),
                    ..field("string")
                },
            ),
            (
                "n",
                FieldDecl {
                    min: Some(1.0),
                    max: Some(3.0),
                    ..field("integer")
                },
            ),
            ("mail", field("email")),
        ]))
        .unwrap()
        .remove(0);
        assert!(
            schema
                .validate(json!({"name": "abc"}).as_object().unwrap())
                .is_ok()
        );
        let errs = schema
            .validate(
                json!({"name": "abcdef", "n": 9, "mail": "x", "zz": 1})
                    .as_object()
                    .unwrap(),
            )
            .unwrap_err();
        let codes: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert!(codes.contains(&("zz", "unknown_field")));
        assert!(codes.contains(&("name", "too_long")));
        assert!(codes.contains(&("n", "too_large")));
        assert!(codes.contains(&("mail", "invalid_email")));
        let errs = schema.validate(&Map::new()).unwrap_err();
        assert_eq!(errs[0].code, "required");
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            "[a-z@.+0-9:/ -]{0,12}".prop_map(Value::String),
            Just(json!("2024-02-30")),
            Just(json!("2024-02-03")),
            Just(json!("a@b.example")),
            Just(json!("+4915112345678")),
            Just(json!("https://x.example/a")),
            Just(json!("2024-01-01T00:00:00Z")),
            Just(json!("0191e1a0-0000-7000-8000-000000000000")),
            Just(json!("free")),
        ];
        leaf.prop_recursive(2, 6, 3, |inner| {
            prop::collection::vec(inner, 0..3).prop_map(Value::Array)
        })
    }

    fn strict_schema() -> ResourceSchema {
        let mut fields = Vec::new();
        for kind in [
            "string",
            "text",
            "integer",
            "number",
            "boolean",
            "timestamp",
            "date",
            "email",
            "phone",
            "url",
            "uuid",
        ] {
            fields.push((kind, field(kind)));
        }
        fields.push((
            "enum",
            FieldDecl {
                values: Some(vec!["free".into(), "pro".into()]),
                ..field("enum")
            },
        ));
        fields.push((
            "bounded",
            FieldDecl {
                min: Some(-5.0),
                max: Some(5.0),
                required: true,
                ..field("number")
            },
        ));
        fields.push((
            "short",
            FieldDecl {
                max_length: Some(3),
                pattern: Some("[a-z]*".into()),
                ..field("string")
            },
        ));
        compile(&decls(fields)).unwrap().remove(0)
    }

    proptest! {
        /// Whatever the input, an accepted document satisfies every declared constraint.
        #[test]
        fn validation_never_accepts_what_the_declaration_forbids(
            doc in prop::collection::btree_map(
                prop_oneof![
                    Just("string"), Just("text"), Just("integer"), Just("number"), Just("boolean"),
                    Just("timestamp"), Just("date"), Just("email"), Just("phone"), Just("url"),
                    Just("uuid"), Just("enum"), Just("bounded"), Just("short"), Just("nope")
                ].prop_map(str::to_owned),
                any_json(),
                0..10,
            )
        ) {
            let schema = strict_schema();
            let doc: Map<String, Value> = doc.into_iter().collect();
            if let Ok(out) = schema.validate(&doc) {
                prop_assert!(!doc.contains_key("nope"));
                let b = out.get("bounded").and_then(Value::as_f64);
                prop_assert!(b.is_some_and(|b| (-5.0..=5.0).contains(&b)));
                for (k, v) in &out {
                    let f = schema.field(k).unwrap();
                    match f.kind {
                        FieldType::Integer => prop_assert!(v.is_i64()),
                        FieldType::Number => prop_assert!(v.as_f64().is_some_and(f64::is_finite)),
                        FieldType::Boolean => prop_assert!(v.is_boolean()),
                        FieldType::Enum => prop_assert!(v == "free" || v == "pro"),
                        FieldType::Date => prop_assert!(v != "2024-02-30"),
                        FieldType::Email => prop_assert!(v.as_str().is_some_and(|s| s.contains('@'))),
                        FieldType::Phone => prop_assert!(v.as_str().is_some_and(|s| s.starts_with('+'))),
                        FieldType::Url => prop_assert!(v.as_str().is_some_and(|s| s.starts_with("http"))),
                        FieldType::Uuid => prop_assert!(v.as_str().is_some_and(|s| uuid::Uuid::try_parse(s).is_ok())),
                        _ => prop_assert!(v.is_string()),
                    }
                    if k == "short" {
                        let s = v.as_str().unwrap();
                        prop_assert!(s.chars().count() <= 3 && s.chars().all(|c| c.is_ascii_lowercase()));
                    }
                }
            }
        }
    }
}
