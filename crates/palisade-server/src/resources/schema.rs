//! OpenAPI 3.1 schemas of one declared resource, built at start from its declaration: `<Name>` (a
//! record as returned), `<Name>Create` (the create body), `<Name>Patch` (the JSON Merge Patch body)
//! and `<Name>Page` (a list page), where `<Name>` is the resource name in UpperCamelCase.
//!
//! Invariants:
//! - Every declared constraint the validator enforces and JSON Schema can say is stated: type, format,
//!   `enum`, `maxLength`, `minimum`/`maximum`, `pattern` (the anchored regex the validator runs),
//!   `required`, and `additionalProperties: false` on request bodies (unknown fields are refused).
//! - Protected fields carry `x-palisade-protected: true` and name their read and write capabilities;
//!   they are never `required` in `<Name>`, because a caller without the read capability does not
//!   receive them.

use std::sync::Arc;

use palisade_domain::resource::{FieldSchema, FieldType, ResourceSchema};
use serde_json::{Map, Value, json};

use crate::router::SchemaRef;

/// The four schemas of one resource.
#[derive(Debug, Clone)]
pub(crate) struct ResourceSchemas {
    /// `<Name>`.
    pub record: SchemaRef,
    /// `<Name>Create`.
    pub create: SchemaRef,
    /// `<Name>Patch`.
    pub patch: SchemaRef,
    /// `<Name>Page` (refers to `<Name>`).
    pub page: SchemaRef,
}

fn field_schema(resource: &str, f: &FieldSchema) -> Map<String, Value> {
    let mut s = Map::new();
    let (kind, format) = match f.kind {
        FieldType::Integer => ("integer", Some("int64")),
        FieldType::Number => ("number", Some("double")),
        FieldType::Boolean => ("boolean", None),
        FieldType::Timestamp => ("string", Some("date-time")),
        FieldType::Date => ("string", Some("date")),
        FieldType::Email => ("string", Some("email")),
        FieldType::Url => ("string", Some("uri")),
        FieldType::Uuid | FieldType::Ref => ("string", Some("uuid")),
        FieldType::String | FieldType::Text | FieldType::Phone | FieldType::Enum => {
            ("string", None)
        }
    };
    s.insert("type".into(), json!(kind));
    if let Some(format) = format {
        s.insert("format".into(), json!(format));
    }
    if f.kind == FieldType::Enum {
        s.insert("enum".into(), json!(f.values));
    }
    if let Some(max) = f.max_length {
        s.insert("maxLength".into(), json!(max));
    }
    if let Some(min) = f.min {
        s.insert("minimum".into(), json!(min));
    }
    if let Some(max) = f.max {
        s.insert("maximum".into(), json!(max));
    }
    let mut notes = Vec::new();
    if let Some(re) = &f.pattern {
        s.insert("pattern".into(), json!(re.as_str()));
    }
    if f.kind == FieldType::Phone {
        s.insert("pattern".into(), json!("^\\+[1-9][0-9]{6,14}$"));
        notes.push("An E.164 phone number.".to_owned());
    }
    if let Some(to) = &f.to {
        s.insert("x-palisade-ref".into(), json!(to));
        notes.push(format!("The id of a `{to}` record of the same tenant."));
    }
    s.insert("x-palisade-gdpr".into(), json!(f.gdpr));
    if f.unique {
        s.insert("x-palisade-unique".into(), json!(true));
        notes.push("Unique within the tenant (409 on a clash).".to_owned());
    }
    if f.filterable {
        s.insert("x-palisade-filterable".into(), json!(true));
    }
    if f.protected {
        s.insert("x-palisade-protected".into(), json!(true));
        notes.push(format!(
            "Protected: returned only with `{resource}.field.{0}.read`, written only with \
             `{resource}.field.{0}.write`.",
            f.name
        ));
    }
    if !notes.is_empty() {
        s.insert("description".into(), json!(notes.join(" ")));
    }
    s
}

/// `{"type": [t, "null"]}`: a merge patch removes an optional field with `null` (RFC 7396).
fn nullable(mut s: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::String(t)) = s.get("type").cloned() {
        s.insert("type".into(), json!([t, "null"]));
    }
    if let Some(Value::Array(values)) = s.get_mut("enum") {
        values.push(Value::Null);
    }
    s
}

fn object(
    properties: Map<String, Value>,
    required: Vec<String>,
    closed: bool,
    text: String,
) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!("object"));
    o.insert("description".into(), json!(text));
    o.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    if closed {
        o.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(o)
}

/// `Arc`'d components: every operation of the resource shares them.
fn built(name: &'static str, components: &Arc<Vec<(String, Value)>>) -> SchemaRef {
    SchemaRef::Json {
        name,
        components: Arc::clone(components),
    }
}

/// Builds the schemas of `schema`, named from `camel` (the resource name in UpperCamelCase).
pub(crate) fn schemas(schema: &ResourceSchema, camel: &str) -> ResourceSchemas {
    let n = &schema.name;
    let names = [
        camel.to_owned(),
        format!("{camel}Create"),
        format!("{camel}Patch"),
        format!("{camel}Page"),
    ]
    .map(super::leak);
    let [record_name, create_name, patch_name, page_name] = names;

    let mut record_props = Map::new();
    record_props.insert(
        "id".into(),
        json!({"type": "string", "format": "uuid", "description": "UUIDv7."}),
    );
    let mut create_props = Map::new();
    let mut patch_props = Map::new();
    let mut record_required = vec!["id".to_owned()];
    let mut create_required = Vec::new();
    for f in &schema.fields {
        let s = field_schema(n, f);
        record_props.insert(f.name.clone(), Value::Object(s.clone()));
        create_props.insert(f.name.clone(), Value::Object(s.clone()));
        let patch = if f.required { s } else { nullable(s) };
        patch_props.insert(f.name.clone(), Value::Object(patch));
        if f.required {
            create_required.push(f.name.clone());
            if !f.protected {
                record_required.push(f.name.clone());
            }
        }
    }
    for (key, text) in [("created_at", "RFC 3339."), ("updated_at", "RFC 3339.")] {
        record_props.insert(
            key.into(),
            json!({"type": "string", "format": "date-time", "description": text}),
        );
        record_required.push(key.to_owned());
    }
    record_props.insert(
        "version".into(),
        json!({"type": "integer", "format": "int64", "minimum": 1, "description": "From 1; every change increments it (the ETag follows it)."}),
    );
    record_required.push("version".to_owned());

    let record = object(
        record_props,
        record_required,
        false,
        format!(
            "A record of `{n}`. Protected fields are left out unless the caller may read them."
        ),
    );
    let create = object(
        create_props,
        create_required,
        true,
        format!("The body that creates a record of `{n}`; unknown fields are refused."),
    );
    let patch = object(
        patch_props,
        Vec::new(),
        true,
        format!(
            "A JSON Merge Patch (RFC 7396) of a `{n}` record: absent fields stay, `null` removes an \
             optional field; the result is validated whole."
        ),
    );
    let page = json!({
        "type": "object",
        "description": format!("A page of `{n}` records."),
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{record_name}")}},
            "next_cursor": {"type": ["string", "null"], "description": "The cursor of the next page, or null."}
        }
    });
    let only = |name: &'static str, s: Value| Arc::new(vec![(name.to_owned(), s)]);
    let record_c = only(record_name, record.clone());
    let create_c = only(create_name, create);
    let patch_c = only(patch_name, patch);
    let page_c = Arc::new(vec![
        (page_name.to_owned(), page),
        (record_name.to_owned(), record),
    ]);
    ResourceSchemas {
        record: built(record_name, &record_c),
        create: built(create_name, &create_c),
        patch: built(patch_name, &patch_c),
        page: built(page_name, &page_c),
    }
}
