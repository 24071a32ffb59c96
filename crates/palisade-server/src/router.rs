//! `SecureRouter`: the only way routes enter the server.
//!
//! Invariants:
//! - Every route is registered with exactly one [`Access`]: a capability, or `Public { reason }`.
//! - [`SecureRouter::finish`] refuses to produce a router when a route names an unregistered capability,
//!   a public route gives no reason, or a (method, path) is registered twice; the server then refuses
//!   to start.
//! - Each protected route gets its own authorization layer ([`crate::guard`]) carrying its capability,
//!   so no handler can be reached without the decision, and the registry it records is exactly what
//!   is enforced. The registry feeds `/v1/capabilities`, `/v1/routes`, `/openapi.json`, the
//!   anonymous-probe and matrix tests, and the Trust Center.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use palisade_authz::{Access, CapabilityRegistry};
use serde::Serialize;
use utoipa::openapi::{RefOr, schema::Schema};

use crate::state::AppState;

/// A schema reference for the OpenAPI document: a `utoipa::ToSchema` type, or a JSON Schema built at
/// start from the configuration (the declared resources).
#[derive(Clone)]
pub enum SchemaRef {
    /// Captured from a `utoipa::ToSchema` type.
    Typed {
        /// The component name.
        name: fn() -> String,
        /// Adds the type's schema and its dependencies to the components.
        collect: fn(&mut Vec<(String, RefOr<Schema>)>),
    },
    /// Built at start: the component name and every component it needs (itself included).
    Json {
        /// The component name.
        name: &'static str,
        /// `(name, JSON Schema)` of the component and its dependencies.
        components: Arc<Vec<(String, serde_json::Value)>>,
    },
}

impl SchemaRef {
    /// The component name.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Typed { name, .. } => name(),
            Self::Json { name, .. } => (*name).to_owned(),
        }
    }

    /// Adds the schema and its dependencies: typed ones to `typed`, built ones to `json`.
    pub fn collect(
        &self,
        typed: &mut Vec<(String, RefOr<Schema>)>,
        json: &mut Vec<(String, serde_json::Value)>,
    ) {
        match self {
            Self::Typed { collect, .. } => collect(typed),
            Self::Json { components, .. } => json.extend(components.iter().cloned()),
        }
    }
}

impl std::fmt::Debug for SchemaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Captures `T`'s schema.
#[must_use]
pub fn schema<T: utoipa::ToSchema>() -> SchemaRef {
    fn name<T: utoipa::ToSchema>() -> String {
        T::name().into_owned()
    }
    fn collect<T: utoipa::ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((
            T::name().into_owned(),
            <T as utoipa::PartialSchema>::schema(),
        ));
        T::schemas(out);
    }
    SchemaRef::Typed {
        name: name::<T>,
        collect: collect::<T>,
    }
}

/// What the OpenAPI document says about one operation.
#[derive(Debug, Clone)]
pub struct OpDoc {
    /// `operationId`.
    pub id: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Grouping tag.
    pub tag: &'static str,
    /// The JSON request body, if any.
    pub request: Option<SchemaRef>,
    /// The success status and its body schema (`None`: no body).
    pub success: (u16, Option<SchemaRef>),
    /// Other bodies the same success status may carry (documented as `oneOf`).
    pub alternatives: Vec<SchemaRef>,
    /// Non-JSON success media type (e.g. Prometheus text), if any.
    pub media_type: Option<&'static str>,
}

/// Starts an operation's documentation.
#[must_use]
pub fn op(id: &'static str, summary: &'static str, tag: &'static str) -> OpDoc {
    OpDoc {
        id,
        summary,
        tag,
        request: None,
        success: (200, None),
        alternatives: Vec::new(),
        media_type: None,
    }
}

impl OpDoc {
    /// The JSON request body.
    #[must_use]
    pub fn body<T: utoipa::ToSchema>(mut self) -> Self {
        self.request = Some(schema::<T>());
        self
    }

    /// The success status and body.
    #[must_use]
    pub fn ok<T: utoipa::ToSchema>(mut self, status: u16) -> Self {
        self.success = (status, Some(schema::<T>()));
        self
    }

    /// Another body the success status may carry (e.g. sign-in answers tokens, an MFA step or a
    /// browser session).
    #[must_use]
    pub fn or<T: utoipa::ToSchema>(mut self) -> Self {
        self.alternatives.push(schema::<T>());
        self
    }

    /// A success without a body (e.g. 204).
    #[must_use]
    pub fn empty(mut self, status: u16) -> Self {
        self.success = (status, None);
        self
    }

    /// The JSON request body, as a schema built at start.
    #[must_use]
    pub fn body_schema(mut self, schema: SchemaRef) -> Self {
        self.request = Some(schema);
        self
    }

    /// The success status and body, as a schema built at start.
    #[must_use]
    pub fn ok_schema(mut self, status: u16, schema: SchemaRef) -> Self {
        self.success = (status, Some(schema));
        self
    }

    /// A success with a non-JSON body.
    #[must_use]
    pub fn media(mut self, media_type: &'static str) -> Self {
        self.media_type = Some(media_type);
        self
    }
}

/// One registered route.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// HTTP method.
    pub method: Method,
    /// The axum path template, e.g. `/v1/tenants/{id}`.
    pub path: &'static str,
    /// What the route demands.
    pub access: Access,
    /// Documentation.
    pub doc: OpDoc,
}

/// A route as `/v1/routes` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RouteView {
    /// HTTP method.
    pub method: String,
    /// Path template.
    pub path: String,
    /// The capability, or `null` for public routes.
    pub capability: Option<String>,
    /// Why the route is public, for public routes.
    pub public_reason: Option<String>,
}

/// Every route of the running server.
#[derive(Debug, Clone, Default)]
pub struct RouteRegistry {
    entries: Vec<RouteEntry>,
}

impl RouteRegistry {
    /// Every route, in registration order.
    #[must_use]
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// The routes as `/v1/routes` shows them.
    #[must_use]
    pub fn views(&self) -> Vec<RouteView> {
        self.entries
            .iter()
            .map(|e| RouteView {
                method: e.method.to_string(),
                path: e.path.to_owned(),
                capability: e.access.capability().map(ToString::to_string),
                public_reason: match &e.access {
                    Access::Public { reason } => Some((*reason).to_owned()),
                    Access::Capability(_) => None,
                },
            })
            .collect()
    }
}

/// Why the route table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A route names a capability that is not registered.
    #[error("route {method} {path} demands unregistered capability `{capability}`")]
    UnknownCapability {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Capability.
        capability: String,
    },
    /// A public route without a reason.
    #[error("public route {method} {path} gives no reason")]
    PublicWithoutReason {
        /// Method.
        method: String,
        /// Path.
        path: String,
    },
    /// Two OpenAPI schemas share a name (a declared resource named like a platform schema, or two
    /// resources whose names give the same component name).
    #[error("the OpenAPI schema name `{name}` is used twice; rename the declared resource")]
    SchemaClash {
        /// The component name.
        name: String,
    },
    /// Registered twice.
    #[error("route {method} {path} is registered twice")]
    Duplicate {
        /// Method.
        method: String,
        /// Path.
        path: String,
    },
}

/// Collects routes with their access declarations.
pub struct SecureRouter {
    state: AppState,
    paths: BTreeMap<&'static str, MethodRouter<AppState>>,
    entries: Vec<RouteEntry>,
    duplicate: Option<RouteError>,
}

macro_rules! method_fn {
    ($name:ident, $filter:expr, $method:expr) => {
        /// Registers a route for this method.
        #[must_use]
        pub fn $name<H, T>(self, path: &'static str, access: Access, doc: OpDoc, handler: H) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.add($method, $filter, path, access, doc, handler)
        }
    };
}

impl SecureRouter {
    /// An empty table whose guards share `state`.
    #[must_use]
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            paths: BTreeMap::new(),
            entries: Vec::new(),
            duplicate: None,
        }
    }

    /// The shared state the routes are built for (declared resources read their schemas from it).
    #[must_use]
    pub fn app(&self) -> &AppState {
        &self.state
    }

    method_fn!(get, MethodFilter::GET, Method::GET);
    method_fn!(post, MethodFilter::POST, Method::POST);
    method_fn!(put, MethodFilter::PUT, Method::PUT);
    method_fn!(patch, MethodFilter::PATCH, Method::PATCH);
    method_fn!(delete, MethodFilter::DELETE, Method::DELETE);

    fn add<H, T>(
        mut self,
        method: Method,
        filter: MethodFilter,
        path: &'static str,
        access: Access,
        doc: OpDoc,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        if self
            .entries
            .iter()
            .any(|e| e.method == method && e.path == path)
        {
            self.duplicate.get_or_insert(RouteError::Duplicate {
                method: method.to_string(),
                path: path.to_owned(),
            });
            return self;
        }
        let guard = crate::guard::Guard {
            app: self.state.clone(),
            access: access.clone(),
        };
        // SECURITY: the guard wraps this one endpoint; it runs before the handler on every request.
        let endpoint = axum::routing::on(filter, handler).route_layer(
            axum::middleware::from_fn_with_state(guard, crate::guard::authorize),
        );
        let merged = match self.paths.remove(path) {
            Some(existing) => existing.merge(endpoint),
            None => endpoint,
        };
        self.paths.insert(path, merged);
        self.entries.push(RouteEntry {
            method,
            path,
            access,
            doc,
        });
        self
    }

    /// Checks the table against the capability registry and builds the router.
    ///
    /// # Errors
    /// [`RouteError`] when a declaration is missing or wrong; the server must not start.
    pub fn finish(
        self,
        capabilities: &CapabilityRegistry,
    ) -> Result<(Router<AppState>, RouteRegistry), RouteError> {
        if let Some(dup) = self.duplicate {
            return Err(dup);
        }
        for e in &self.entries {
            match &e.access {
                Access::Capability(c) if capabilities.get(c).is_none() => {
                    return Err(RouteError::UnknownCapability {
                        method: e.method.to_string(),
                        path: e.path.to_owned(),
                        capability: c.to_string(),
                    });
                }
                Access::Public { reason } if reason.trim().is_empty() => {
                    return Err(RouteError::PublicWithoutReason {
                        method: e.method.to_string(),
                        path: e.path.to_owned(),
                    });
                }
                _ => {}
            }
        }
        let mut router = Router::new();
        for (path, mr) in self.paths {
            #[expect(
                clippy::disallowed_methods,
                reason = "SecureRouter is the one place raw routes are added"
            )]
            {
                router = router.route(path, mr);
            }
        }
        Ok((
            router,
            RouteRegistry {
                entries: self.entries,
            },
        ))
    }
}
