//! The OpenAPI 3.1 document, generated from the route registry (so it cannot drift from what is
//! enforced) and the `utoipa::ToSchema` types of the request and response bodies.
//!
//! Each operation carries `x-palisade-capability` (or `x-palisade-public` with the reason) and the
//! error responses its access implies, all as RFC 9457 problems. Operations whose capability is
//! platform administration carry `x-palisade-platform-admin: true` (fenced by
//! `[server] admin_allowed_ips`).

use std::collections::BTreeMap;

use palisade_authz::Access;
use serde_json::{Value, json};
use utoipa::openapi::{RefOr, schema::Schema};

use crate::error::{FieldError, Problem};
use crate::router::{RouteError, RouteRegistry, schema};

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Builds the document.
///
/// # Errors
/// [`RouteError::SchemaClash`] when a schema built from the declared resources would take the name of
/// another schema.
pub fn document(
    routes: &RouteRegistry,
    capabilities: &palisade_authz::CapabilityRegistry,
) -> Result<Value, RouteError> {
    let mut components: Vec<(String, RefOr<Schema>)> = Vec::new();
    let mut built: Vec<(String, Value)> = Vec::new();
    schema::<Problem>().collect(&mut components, &mut built);
    schema::<FieldError>().collect(&mut components, &mut built);
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for entry in routes.entries() {
        let doc = &entry.doc;
        let mut operation = serde_json::Map::new();
        operation.insert("operationId".into(), json!(doc.id));
        operation.insert("summary".into(), json!(doc.summary));
        operation.insert("tags".into(), json!([doc.tag]));
        let mut responses = serde_json::Map::new();
        let (status, body) = &doc.success;
        let success = match (body, doc.media_type) {
            (Some(s), _) if !doc.alternatives.is_empty() => {
                s.collect(&mut components, &mut built);
                let mut one_of = vec![schema_ref(&s.name())];
                for alt in &doc.alternatives {
                    alt.collect(&mut components, &mut built);
                    one_of.push(schema_ref(&alt.name()));
                }
                json!({ "description": "Success", "content": { "application/json": { "schema": { "oneOf": one_of } } } })
            }
            (Some(s), _) => {
                s.collect(&mut components, &mut built);
                json!({ "description": "Success", "content": { "application/json": { "schema": schema_ref(&s.name()) } } })
            }
            (None, Some(media)) => {
                json!({ "description": "Success", "content": { media: { "schema": { "type": "string" } } } })
            }
            (None, None) if *status == 204 => json!({ "description": "No content" }),
            (None, None) => {
                json!({ "description": "Success", "content": { "application/json": {} } })
            }
        };
        responses.insert(status.to_string(), success);
        let params: Vec<Value> = entry
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        match &entry.access {
            Access::Capability(cap) => {
                operation.insert("x-palisade-capability".into(), json!(cap.as_str()));
                if capabilities
                    .get(cap)
                    .is_some_and(palisade_authz::is_platform_administration)
                {
                    operation.insert("x-palisade-platform-admin".into(), json!(true));
                }
                operation.insert(
                    "security".into(),
                    json!([{ "bearer": [] }, { "apiKey": [] }, { "session": [] }]),
                );
                responses.insert(
                    "401".into(),
                    problem_response("No credential, or the credential was refused"),
                );
                responses.insert(
                    "403".into(),
                    problem_response(
                        "The capability is not held (authz.forbidden), or the client IP is outside the acted-on or home tenant's allowed_ips or, for platform administration, server.admin_allowed_ips (network.ip_not_allowed)",
                    ),
                );
                responses.insert(
                    "404".into(),
                    problem_response("Not found, or outside the caller's reach"),
                );
                let mut all = params.clone();
                all.push(json!({
                    "name": "X-Tenant-Id", "in": "header", "required": false,
                    "description": "Act on another tenant within the caller's reach",
                    "schema": { "type": "string" }
                }));
                operation.insert("parameters".into(), json!(all));
            }
            Access::Public { reason } => {
                operation.insert("x-palisade-public".into(), json!(reason));
                operation.insert("security".into(), json!([]));
                if !params.is_empty() {
                    operation.insert("parameters".into(), json!(params));
                }
            }
        }
        if let Some(req) = &doc.request {
            req.collect(&mut components, &mut built);
            operation.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": schema_ref(&req.name()) } } }),
            );
            responses.insert(
                "400".into(),
                problem_response(
                    "Malformed JSON or unknown field, or a WAF check on the body or query string (waf.*)",
                ),
            );
            responses.insert("413".into(), problem_response("Body too large"));
            responses.insert(
                "415".into(),
                problem_response(
                    "Not application/json (a binary or multipart body is refused before it is read)",
                ),
            );
            responses.insert("422".into(), problem_response("Invalid fields"));
        }
        responses.entry("400").or_insert_with(|| {
            problem_response("A query parameter was refused by the WAF (waf.*)")
        });
        responses.insert("429".into(), problem_response("Rate limited"));
        responses.insert(
            "503".into(),
            problem_response("Overloaded or a dependency is unavailable"),
        );
        operation.insert("responses".into(), Value::Object(responses));
        paths.entry(entry.path.to_owned()).or_default().insert(
            entry.method.as_str().to_ascii_lowercase(),
            Value::Object(operation),
        );
    }
    let mut schemas: BTreeMap<String, Value> = components
        .into_iter()
        .map(|(name, s)| (name, serde_json::to_value(s).unwrap_or(Value::Null)))
        .collect();
    for (name, s) in built {
        // The same resource schema is collected by each of its operations; a different schema under
        // a taken name would make `$ref`s ambiguous, so the server refuses to start instead.
        match schemas.get(&name) {
            Some(existing) if *existing != s => return Err(RouteError::SchemaClash { name }),
            Some(_) => {}
            None => {
                schemas.insert(name, s);
            }
        }
    }
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Palisade",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Security-first multi-tenant API. Every operation declares the capability it needs (x-palisade-capability) or why it is public (x-palisade-public). Errors are RFC 9457 problems."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT (ES512)" },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "session": {
                    "type": "apiKey", "in": "cookie", "name": "__Host-palisade_session",
                    "description": "Optional browser session (auth.sessions.enabled; `palisade_session` without the prefix when auth.sessions.secure_cookie = false). Unsafe methods also need the X-CSRF-Token header from GET /v1/auth/csrf; a missing or wrong token is 403 auth.csrf_failed."
                }
            }
        }
    }))
}
