//! Declared resources: the `[[resource]]` tables of `palisade.toml` served at `/v1/{resource}`.
//!
//! At start, [`register_capabilities`] derives and registers each resource's capabilities
//! (`{r}.read|list|create|update|delete|restore|export`, `{r}.read_all` for owner-scoped resources,
//! `{r}.field.{f}.read|write` for protected fields) and [`register`] adds its routes to the
//! [`SecureRouter`], so the route registry, the OpenAPI document and the authorization matrix include
//! them. Built-in roles derive their share from the names (see `palisade_authz::role`): `tenant_admin`
//! (and above) holds every resource capability including field-level ones; `member` holds
//! `read|list|create|update`; `viewer` holds `read|list`. Nobody but admins holds `read_all`, `delete`,
//! `restore`, `export` or field capabilities unless a custom role grants them.
//!
//! Invariants:
//! - Every route is reached through the guard with its one capability, and every store call takes the
//!   [`palisade_authz::TenantScope`] the guard granted: a record of another tenant is a 404.
//! - A request is validated whole against the declaration before any write; a refused request changes
//!   nothing. Unknown fields → 400; writing a protected field without its write capability → 403
//!   naming the field; filtering on a field that is not filterable or not readable → 400.
//! - Fields the caller may not read are removed from every record it receives (single reads, lists,
//!   exports, replayed idempotent responses), and the ETag covers exactly what it receives.

mod export;
mod handlers;
mod query;
mod schema;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_authz::{
    Access, Capability, CapabilityDef, CapabilityRegistry, Decision, Principal, TenantScope, decide,
};
use palisade_domain::resource::{ResourceSchema, compile};
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::router::{OpDoc, SecureRouter};
use crate::state::AppState;

/// The capabilities of one resource.
#[derive(Debug, Clone)]
pub(crate) struct ResourceCaps {
    pub read: Capability,
    pub list: Capability,
    pub create: Capability,
    pub update: Capability,
    pub delete: Capability,
    pub restore: Capability,
    pub export: Capability,
    pub read_all: Capability,
    /// Protected field → (read, write).
    pub fields: BTreeMap<String, (Capability, Capability)>,
}

/// A resource as the handlers use it.
#[derive(Debug)]
pub(crate) struct Resource {
    pub schema: ResourceSchema,
    pub caps: ResourceCaps,
}

fn cap(name: String) -> Result<Capability, String> {
    Capability::parse(&name).map_err(|e| e.to_string())
}

impl ResourceCaps {
    fn of(schema: &ResourceSchema) -> Result<Self, String> {
        let n = &schema.name;
        let mut fields = BTreeMap::new();
        for f in schema.fields.iter().filter(|f| f.protected) {
            fields.insert(
                f.name.clone(),
                (
                    cap(format!("{n}.field.{}.read", f.name))?,
                    cap(format!("{n}.field.{}.write", f.name))?,
                ),
            );
        }
        Ok(Self {
            read: cap(format!("{n}.read"))?,
            list: cap(format!("{n}.list"))?,
            create: cap(format!("{n}.create"))?,
            update: cap(format!("{n}.update"))?,
            delete: cap(format!("{n}.delete"))?,
            restore: cap(format!("{n}.restore"))?,
            export: cap(format!("{n}.export"))?,
            read_all: cap(format!("{n}.read_all"))?,
            fields,
        })
    }

    fn defs(&self, schema: &ResourceSchema) -> Vec<CapabilityDef> {
        let n = &schema.name;
        let def = |name: &Capability, text: String| CapabilityDef {
            name: name.clone(),
            description: Cow::Owned(text),
            requires_mfa: false,
            system_only: false,
        };
        let mut out = vec![
            def(&self.read, format!("Read a record of `{n}`.")),
            def(&self.list, format!("List and filter records of `{n}`.")),
            def(&self.create, format!("Create records of `{n}`.")),
            def(&self.update, format!("Change records of `{n}`.")),
            def(&self.delete, format!("Soft-delete records of `{n}`.")),
            def(
                &self.restore,
                format!("Restore soft-deleted records of `{n}`."),
            ),
            def(
                &self.export,
                format!("Export the records of `{n}` (NDJSON, CSV)."),
            ),
        ];
        if schema.owner_scoped {
            out.push(def(
                &self.read_all,
                format!("See every record of owner-scoped `{n}`, not only one's own."),
            ));
        }
        for (field, (r, w)) in &self.fields {
            out.push(def(r, format!("Read the protected field `{n}.{field}`.")));
            out.push(def(w, format!("Write the protected field `{n}.{field}`.")));
        }
        out
    }
}

/// The declared resources, compiled. The configuration check has refused mistakes before this runs.
fn resources(settings: &Settings) -> Result<Vec<Arc<Resource>>, String> {
    let schemas = compile(&settings.resources).map_err(|problems| {
        problems
            .iter()
            .map(|p| format!("{}: {}", p.setting, p.message))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    schemas
        .into_iter()
        .map(|schema| {
            let caps = ResourceCaps::of(&schema)?;
            Ok(Arc::new(Resource { schema, caps }))
        })
        .collect()
}

/// Registers every declared resource's capabilities.
///
/// # Errors
/// A description of the declaration mistakes or of a name clash with a registered capability.
pub fn register_capabilities(
    settings: &Settings,
    registry: &mut CapabilityRegistry,
) -> Result<(), String> {
    for r in resources(settings)? {
        for def in r.caps.defs(&r.schema) {
            registry.register(def).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Route paths and documentation live for the whole process; they are built once per declared
/// resource at start-up, so leaking them is bounded by the configuration.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn doc(id: String, summary: String, tag: &'static str) -> OpDoc {
    crate::router::op(leak(id), leak(summary), tag)
}

fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|first| first.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Adds the routes of every declared resource. (Declarations that do not compile were refused before
/// the router is built, so none are skipped here in a running server.)
#[must_use]
pub fn register(router: SecureRouter) -> SecureRouter {
    let Ok(list) = resources(router.app().settings()) else {
        return router;
    };
    list.into_iter().fold(router, register_one)
}

fn register_one(r: SecureRouter, res: Arc<Resource>) -> SecureRouter {
    let name = res.schema.name.clone();
    let tag = leak(name.clone());
    let c = camel(&name);
    let collection = leak(format!("/v1/{name}"));
    let item = leak(format!("/v1/{name}/{{id}}"));
    let restore = leak(format!("/v1/{name}/{{id}}/restore"));
    let export = leak(format!("/v1/{name}/export"));
    let caps = res.caps.clone();
    let schemas = schema::schemas(&res.schema, &c);
    let (a, b, d, e, f, g, h) = (
        res.clone(),
        res.clone(),
        res.clone(),
        res.clone(),
        res.clone(),
        res.clone(),
        res,
    );
    r.get(
        collection,
        Access::cap(caps.list),
        doc(format!("list{c}"), format!("List records of `{name}`"), tag)
            .ok_schema(200, schemas.page.clone()),
        move |st, caller, scoped, uri| handlers::list(a, st, caller, scoped, uri),
    )
    .post(
        collection,
        Access::cap(caps.create),
        doc(
            format!("create{c}"),
            format!("Create a record of `{name}`"),
            tag,
        )
        .body_schema(schemas.create.clone())
        .ok_schema(201, schemas.record.clone()),
        move |st, caller, scoped, audited, req| {
            handlers::create(b, st, caller, scoped, audited, req)
        },
    )
    .get(
        export,
        Access::cap(caps.export),
        doc(
            format!("export{c}"),
            format!("Export the records of `{name}`"),
            tag,
        )
        .media("application/x-ndjson"),
        move |st, caller, scoped, uri| export::export(d, st, caller, scoped, uri),
    )
    .get(
        item,
        Access::cap(caps.read),
        doc(format!("get{c}"), format!("A record of `{name}`"), tag)
            .ok_schema(200, schemas.record.clone()),
        move |st, caller, scoped, path, headers| {
            handlers::get(e, st, caller, scoped, path, headers)
        },
    )
    .patch(
        item,
        Access::cap(caps.update),
        doc(
            format!("update{c}"),
            format!("Change a record of `{name}` (JSON Merge Patch, If-Match)"),
            tag,
        )
        .body_schema(schemas.patch.clone())
        .ok_schema(200, schemas.record.clone()),
        move |st, caller, scoped, audited, path, req| {
            handlers::update(f, st, caller, scoped, audited, path, req)
        },
    )
    .delete(
        item,
        Access::cap(caps.delete),
        doc(
            format!("delete{c}"),
            format!("Soft-delete a record of `{name}` (If-Match)"),
            tag,
        )
        .empty(204),
        move |st, caller, scoped, audited, path, headers| {
            handlers::delete(g, st, caller, scoped, audited, path, headers)
        },
    )
    .post(
        restore,
        Access::cap(caps.restore),
        doc(
            format!("restore{c}"),
            format!("Restore a soft-deleted record of `{name}`"),
            tag,
        )
        .ok_schema(200, schemas.record),
        move |st, caller, scoped, audited, path| {
            handlers::restore(h, st, caller, scoped, audited, path)
        },
    )
}

/// Whether the caller holds `capability` on the scope's tenant (the same decision the guard makes).
pub(crate) fn can(
    app: &AppState,
    caller: &Principal,
    scope: &TenantScope,
    capability: &Capability,
) -> bool {
    matches!(
        decide(
            caller,
            scope.tenant(),
            capability,
            app.capabilities(),
            time::OffsetDateTime::now_utc(),
            app.step_up_max_age(),
        ),
        Decision::Allow(_)
    )
}

/// What one caller may see and do with one resource on one tenant.
#[derive(Debug, Clone)]
pub(crate) struct Visibility {
    /// Protected fields the caller may not read.
    pub hidden: Vec<String>,
    /// Protected fields the caller may not write.
    pub read_only: Vec<String>,
    /// `Some(owner)` when the caller sees only its own records.
    pub owner: Option<String>,
}

impl Resource {
    /// The caller's view of this resource.
    pub(crate) fn access(
        &self,
        app: &AppState,
        caller: &Principal,
        scope: &TenantScope,
    ) -> Visibility {
        let mut hidden = Vec::new();
        let mut read_only = Vec::new();
        for (field, (r, w)) in &self.caps.fields {
            if !can(app, caller, scope, r) {
                hidden.push(field.clone());
            }
            if !can(app, caller, scope, w) {
                read_only.push(field.clone());
            }
        }
        let owner = (self.schema.owner_scoped && !can(app, caller, scope, &self.caps.read_all))
            .then(|| crate::extract::actor_of(caller));
        Visibility {
            hidden,
            read_only,
            owner,
        }
    }
}

impl Visibility {
    /// The record as this caller may see it.
    pub(crate) fn view(&self, record: &palisade_store::Record) -> Map<String, Value> {
        let Value::Object(mut m) = record.to_json() else {
            return Map::new();
        };
        for f in &self.hidden {
            m.remove(f);
        }
        m
    }
}
