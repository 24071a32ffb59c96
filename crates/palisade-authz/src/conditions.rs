//! Cedar conditions: optional per-tenant [Cedar](https://docs.cedarpolicy.com/) policies evaluated
//! *after* [`crate::decide`] has granted a capability. They can only narrow a grant.
//!
//! The published schema ([`ConditionSchema::text`], namespace `Palisade`):
//! - principal `Palisade::User::"<user id>"` with `id`, `roles: Set<String>`, `home_tenant`,
//!   `scope_level` (`system`|`partner`|`parent`|`tenant`) and `method` (`bearer`|`dpop`|`api_key`|…);
//! - one action per registered capability, named after it: `Palisade::Action::"customers.delete"`;
//! - resource `Palisade::Tenant::"<tenant id>"` (the *target* tenant) with `id`, `slug`, `kind`;
//! - context `ip` (`ipaddr`), `now` (Unix seconds), `hour_utc` (0–23), `weekday` (`monday`…`sunday`,
//!   UTC), `mfa` (a TOTP factor was proved), `mfa_age` (seconds since then; [`MFA_NEVER`] when never),
//!   `method`, `http_method`, `path` and `capability` (the action's name, for `like` patterns).
//!
//! Invariants:
//! - SECURITY: a policy text is accepted only when it parses, holds no templates, stays within
//!   [`MAX_POLICY_BYTES`], [`MAX_POLICIES`] and [`MAX_NESTING`], and passes Cedar's *strict*
//!   validation against the schema. Anything else is refused with every Cedar message.
//! - SECURITY: only narrowing. The tenant's policies are evaluated together with an implicit
//!   `permit(principal, action, resource);`, so a request is allowed exactly when no `forbid` matches;
//!   a tenant's own `permit` adds nothing, and the capability grant is required before this runs.
//! - SECURITY: Cedar skips a policy whose evaluation errors, which for a `forbid` would fail open.
//!   [`ConditionSchema::evaluate`] therefore answers [`ConditionDecision::Error`] (deny) on *any*
//!   diagnostic error, and on any failure to build the request.
//! - `mfa_age` is never absent: a principal that never proved a second factor gets [`MFA_NEVER`], so
//!   `forbid … unless { context.mfa_age < 300 }` denies it, and arithmetic on it overflows into an
//!   evaluation error, which denies too.
//! - No I/O: the server loads texts, caches compiled sets and supplies the request facts.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use palisade_domain::TenantId;
use time::OffsetDateTime;

use crate::capability::{Capability, CapabilityRegistry, platform};
use crate::principal::Principal;
use crate::scope::TenantScope;

/// The largest policy text accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// The most policies one tenant's text may hold.
pub const MAX_POLICIES: usize = 256;
/// The deepest bracket nesting accepted, checked on the raw text before parsing.
pub const MAX_NESTING: usize = 32;
/// The most operators (`.`, `&&`, `+`, `==`, `if`, `in`, `has`, brackets, …) one policy may hold.
///
/// SECURITY: Cedar's parser, validator, evaluator and destructors recurse over the expression tree,
/// and nesting without brackets (`if … then if …`, `1+1+…`, `a.b.c…`) reaches thousands of levels in
/// 64 KiB: enough to overflow a 2 MiB async worker's stack, which aborts the process. Every level of
/// the tree needs at least one operator, so this cap bounds the depth of every accepted policy.
pub const MAX_OPERATORS: usize = 256;
/// The stack of the thread that parses and validates a text: headroom beyond what
/// [`MAX_OPERATORS`] allows, in case a later Cedar recurses deeper per level.
const COMPILE_STACK_BYTES: usize = 16 * 1024 * 1024;
/// `context.mfa_age` of a principal that never proved a second factor (`i64::MAX`: "infinitely old").
pub const MFA_NEVER: i64 = i64::MAX;

/// The Cedar namespace of the schema.
pub const NAMESPACE: &str = "Palisade";

/// The id of the implicit permit added to every tenant set. Tenant policies get Cedar's `policyN` ids.
const IMPLICIT_PERMIT_ID: &str = "palisade.implicit_permit";

/// Capabilities tenant policies never restrict: the policy routes themselves, so a tenant cannot lock
/// its administrators out of repairing its policies (writing them still needs a recent step-up).
pub const EXEMPT: [Capability; 2] = [platform::POLICY_READ, platform::POLICY_WRITE];

/// Whether tenant policies apply to a route demanding `capability`.
#[must_use]
pub fn applies_to(capability: &Capability) -> bool {
    !EXEMPT.contains(capability)
}

/// Why a policy text was refused: one entry per Cedar message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// `policy.too_large`, `policy.too_many`, `policy.too_complex`, `policy.parse_error`,
    /// `policy.template`, or `policy.schema_error`.
    pub code: &'static str,
    /// Cedar's message, prefixed with `line:column` when Cedar names a place in the text.
    pub message: String,
}

impl PolicyProblem {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Why the schema could not be built (a bug: capability names are validated when registered).
#[derive(Debug, thiserror::Error)]
#[error("the Cedar schema does not build: {0}")]
pub struct SchemaBuildError(String);

/// A compiled, validated tenant policy set, ready to evaluate.
#[derive(Debug, Clone)]
pub struct TenantPolicies {
    set: PolicySet,
    count: usize,
    warnings: Vec<String>,
}

impl TenantPolicies {
    /// How many policies the tenant wrote.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the tenant wrote no policy (then nothing is ever narrowed).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Cedar's validation warnings (accepted, shown by the dry run).
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// What the request looks like to the tenant's policies.
#[derive(Debug, Clone, Copy)]
pub struct ConditionRequest<'a> {
    /// The caller, with capabilities already granted by [`crate::decide`].
    pub principal: &'a Principal,
    /// The granted scope (the target tenant).
    pub scope: &'a TenantScope,
    /// The target tenant's slug.
    pub tenant_slug: &'a str,
    /// The capability the route demands (the action).
    pub capability: &'a Capability,
    /// The client IP as the pipeline resolved it.
    pub ip: IpAddr,
    /// Now.
    pub now: OffsetDateTime,
    /// The HTTP method, e.g. `DELETE`.
    pub http_method: &'a str,
    /// The request path.
    pub path: &'a str,
}

/// The outcome of evaluating a tenant's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionDecision {
    /// No `forbid` matched.
    Allow,
    /// These policies (their `@id` annotation, else Cedar's `policyN`) forbid the request.
    Deny {
        /// The determining policies.
        policies: Vec<String>,
    },
    /// Evaluation failed: some policy errored, or the request could not be built. Denies.
    Error {
        /// What failed (for logs; never shown to the caller).
        messages: Vec<String>,
    },
}

/// The Cedar schema of this deployment (built once at start from the capability registry) and the
/// operations over it.
#[derive(Debug)]
pub struct ConditionSchema {
    schema: Schema,
    validator: Validator,
    authorizer: Authorizer,
    text: String,
    user_type: EntityTypeName,
    tenant_type: EntityTypeName,
    action_type: EntityTypeName,
}

fn entity_type(name: &str) -> Result<EntityTypeName, SchemaBuildError> {
    EntityTypeName::from_str(&format!("{NAMESPACE}::{name}"))
        .map_err(|e| SchemaBuildError(e.to_string()))
}

impl ConditionSchema {
    /// Builds the schema: one action per registered capability.
    ///
    /// # Errors
    /// [`SchemaBuildError`] when Cedar refuses the generated schema (cannot happen for dotted names).
    pub fn new(registry: &CapabilityRegistry) -> Result<Self, SchemaBuildError> {
        let text = schema_text(registry);
        let (schema, _warnings) =
            Schema::from_cedarschema_str(&text).map_err(|e| SchemaBuildError(e.to_string()))?;
        Ok(Self {
            validator: Validator::new(schema.clone()),
            schema,
            authorizer: Authorizer::new(),
            text,
            user_type: entity_type("User")?,
            tenant_type: entity_type("Tenant")?,
            action_type: entity_type("Action")?,
        })
    }

    /// The schema in Cedar's human-readable schema format, as published at `/v1/policies/schema`.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Parses and strictly validates a tenant's policy text, on a thread of its own with a large
    /// stack (see [`COMPILE_STACK_BYTES`]); the caller blocks until it is done (milliseconds).
    ///
    /// # Errors
    /// Every problem found, in order: size, nesting, parse errors, templates, count, depth, then every
    /// strict validation error against the schema.
    pub fn compile(&self, text: &str) -> Result<TenantPolicies, Vec<PolicyProblem>> {
        let failed = || {
            vec![PolicyProblem::new(
                "policy.internal",
                "The policy text could not be compiled.",
            )]
        };
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("cedar-compile".to_owned())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(s, || self.compile_here(text))
                .map_err(|_| failed())?
                .join()
                .map_err(|_| failed())?
        })
    }

    fn compile_here(&self, text: &str) -> Result<TenantPolicies, Vec<PolicyProblem>> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(vec![PolicyProblem::new(
                "policy.too_large",
                format!("The policy text exceeds {MAX_POLICY_BYTES} bytes."),
            )]);
        }
        if let Some((offset, what)) = too_complex(text) {
            return Err(vec![PolicyProblem::new(
                "policy.too_complex",
                format!("{}: {what}", line_col(text, offset)),
            )]);
        }
        let parsed = PolicySet::from_str(text).map_err(|errs| {
            errs.iter()
                .map(|e| PolicyProblem::new("policy.parse_error", located(text, e)))
                .collect::<Vec<_>>()
        })?;
        if parsed.num_of_templates() > 0 {
            return Err(vec![PolicyProblem::new(
                "policy.template",
                "Templates (policies with ?principal or ?resource slots) are not supported.",
            )]);
        }
        let count = parsed.num_of_policies();
        if count > MAX_POLICIES {
            return Err(vec![PolicyProblem::new(
                "policy.too_many",
                format!("The text holds {count} policies; at most {MAX_POLICIES} are allowed."),
            )]);
        }
        let result = self.validator.validate(&parsed, ValidationMode::Strict);
        let errors: Vec<PolicyProblem> = result
            .validation_errors()
            .map(|e| PolicyProblem::new("policy.schema_error", located(text, e)))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let warnings = result
            .validation_warnings()
            .map(|w| located(text, w))
            .collect();
        let mut set = parsed;
        let permit = Policy::parse(
            Some(PolicyId::new(IMPLICIT_PERMIT_ID)),
            "permit(principal, action, resource);",
        )
        .map_err(|e| vec![PolicyProblem::new("policy.parse_error", e.to_string())])?;
        set.add(permit)
            .map_err(|e| vec![PolicyProblem::new("policy.parse_error", e.to_string())])?;
        Ok(TenantPolicies {
            set,
            count,
            warnings,
        })
    }

    /// Evaluates a compiled set for one request.
    ///
    /// SECURITY: fails closed. Any error building the request, or any policy that errors during
    /// evaluation, answers [`ConditionDecision::Error`]; only Cedar's `Allow` with no diagnostic error
    /// allows.
    #[must_use]
    pub fn evaluate(
        &self,
        policies: &TenantPolicies,
        req: &ConditionRequest<'_>,
    ) -> ConditionDecision {
        let (request, entities) = match self.build(req) {
            Ok(built) => built,
            Err(message) => {
                return ConditionDecision::Error {
                    messages: vec![message],
                };
            }
        };
        let response = self
            .authorizer
            .is_authorized(&request, &policies.set, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            return ConditionDecision::Error { messages: errors };
        }
        match response.decision() {
            Decision::Allow => ConditionDecision::Allow,
            Decision::Deny => {
                let mut names: Vec<String> = response
                    .diagnostics()
                    .reason()
                    .map(|id| {
                        policies
                            .set
                            .annotation(id, "id")
                            .map_or_else(|| id.to_string(), ToOwned::to_owned)
                    })
                    .collect();
                names.sort();
                ConditionDecision::Deny { policies: names }
            }
        }
    }

    fn build(&self, req: &ConditionRequest<'_>) -> Result<(Request, Entities), String> {
        let p = req.principal;
        let tenant = req.scope.tenant();
        let user_uid = EntityUid::from_type_name_and_id(
            self.user_type.clone(),
            EntityId::new(p.subject.to_string()),
        );
        let tenant_uid = EntityUid::from_type_name_and_id(
            self.tenant_type.clone(),
            EntityId::new(tenant.id.to_string()),
        );
        let action_uid = EntityUid::from_type_name_and_id(
            self.action_type.clone(),
            EntityId::new(req.capability.as_str()),
        );
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let user = Entity::new(
            user_uid.clone(),
            HashMap::from([
                ("id".to_owned(), s(&p.subject.to_string())),
                (
                    "roles".to_owned(),
                    RestrictedExpression::new_set(p.roles.iter().map(|r| s(r))),
                ),
                ("home_tenant".to_owned(), s(&p.home.id.to_string())),
                ("scope_level".to_owned(), s(p.scope_level().as_str())),
                ("method".to_owned(), s(p.method.as_str())),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let target = Entity::new(
            tenant_uid.clone(),
            HashMap::from([
                ("id".to_owned(), s(&tenant.id.to_string())),
                ("slug".to_owned(), s(req.tenant_slug)),
                ("kind".to_owned(), s(tenant.kind.as_str())),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([user, target], Some(&self.schema))
            .map_err(|e| e.to_string())?;
        let mfa_age = mfa_age(p, req.now);
        let long = RestrictedExpression::new_long;
        let context = Context::from_pairs([
            (
                "ip".to_owned(),
                RestrictedExpression::new_ip(req.ip.to_string()),
            ),
            ("now".to_owned(), long(req.now.unix_timestamp())),
            ("hour_utc".to_owned(), long(i64::from(req.now.hour()))),
            (
                "weekday".to_owned(),
                s(&req.now.weekday().to_string().to_ascii_lowercase()),
            ),
            (
                "mfa".to_owned(),
                RestrictedExpression::new_bool(mfa_age != MFA_NEVER),
            ),
            ("mfa_age".to_owned(), long(mfa_age)),
            ("method".to_owned(), s(p.method.as_str())),
            ("http_method".to_owned(), s(req.http_method)),
            ("path".to_owned(), s(req.path)),
            ("capability".to_owned(), s(req.capability.as_str())),
        ])
        .map_err(|e| e.to_string())?;
        let request = Request::new(
            user_uid,
            action_uid,
            tenant_uid,
            context,
            Some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

/// Seconds since the principal last proved TOTP, or [`MFA_NEVER`]. An `auth_time` in the future is
/// treated as never (fail closed), exactly as [`crate::decide`] refuses it for step-up.
#[must_use]
pub fn mfa_age(principal: &Principal, now: OffsetDateTime) -> i64 {
    match principal.auth_time {
        Some(t) if t <= now && principal.amr.iter().any(|m| m == "totp") => {
            (now - t).whole_seconds()
        }
        _ => MFA_NEVER,
    }
}

/// The schema text for a registry. Capability names are dotted lowercase `[a-z0-9_]` (checked when
/// they are registered), so quoting them needs no escaping.
fn schema_text(registry: &CapabilityRegistry) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "// Palisade's Cedar schema: tenant policies are validated against it (strict mode).\n\
         namespace {NAMESPACE} {{\n\
         \x20 // The target tenant of the request.\n\
         \x20 entity Tenant {{ id: String, slug: String, kind: String }};\n\
         \x20 // The caller.\n\
         \x20 entity User {{ id: String, roles: Set<String>, home_tenant: String, scope_level: String, method: String }};\n\
         \x20 // mfa_age is {MFA_NEVER} when no second factor was ever proved.\n\
         \x20 type Context = {{ ip: __cedar::ipaddr, now: Long, hour_utc: Long, weekday: String, mfa: Bool, mfa_age: Long, method: String, http_method: String, path: String, capability: String }};\n\
         \x20 // One action per capability.\n"
    ));
    for def in registry.iter() {
        let _ = writeln!(
            out,
            "  action \"{}\" appliesTo {{ principal: [User], resource: [Tenant], context: Context }};",
            def.name
        );
    }
    out.push_str("}\n");
    out
}

/// Where a text first nests brackets deeper than [`MAX_NESTING`] or a policy holds more than
/// [`MAX_OPERATORS`] operators, skipping string literals and `//` comments. Policies are split at `;`
/// outside brackets, so unbalanced brackets make the rest of the text count as one policy.
fn too_complex(text: &str) -> Option<(usize, String)> {
    let bytes = text.as_bytes();
    let (mut depth, mut operators, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        match b {
            b'"' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'\\' => i += 1,
                        b'"' => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'/' if next == Some(b'/') => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b';' if depth == 0 => operators = 0,
            b'(' | b'[' | b'{' => {
                depth += 1;
                operators += 1;
                if depth > MAX_NESTING {
                    return Some((i, format!("brackets nest deeper than {MAX_NESTING}.")));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'.' | b'!' | b'-' | b'+' | b'*' | b'<' | b'>' | b'=' | b'&' | b'|' => {
                // Two-character operators (`&&`, `==`, `<=`, …) count once.
                if matches!(next, Some(b'=' | b'&' | b'|')) {
                    i += 1;
                }
                operators += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while bytes
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                if matches!(
                    text.get(start..=i),
                    Some("if" | "in" | "has" | "like" | "is")
                ) {
                    operators += 1;
                }
            }
            _ => {}
        }
        if operators > MAX_OPERATORS {
            return Some((
                i,
                format!("a policy holds more than {MAX_OPERATORS} operators; split it."),
            ));
        }
        i += 1;
    }
    None
}

/// `line:column` (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}

/// A Cedar diagnostic as one line, prefixed with its first location in `text` when it has one.
fn located(text: &str, e: &(impl Diagnostic + ?Sized)) -> String {
    let mut message = e.to_string();
    if let Some(help) = e.help() {
        let _ = write!(message, " ({help})");
    }
    match e.labels().and_then(|mut l| l.next()) {
        Some(label) => format!("{}: {message}", line_col(text, label.offset())),
        None => message,
    }
}

/// The id of a tenant as the schema's `Tenant` entity names it (for documentation and tests).
#[must_use]
pub fn tenant_uid(id: TenantId) -> String {
    format!("{NAMESPACE}::Tenant::\"{id}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::CapabilityDef;
    use crate::principal::AuthMethod;
    use crate::scope::{InternalRole, SystemScope, TenantRef};
    use palisade_domain::{TenantKind, UserId};
    use std::borrow::Cow;

    fn registry() -> CapabilityRegistry {
        let mut reg = CapabilityRegistry::with_platform();
        for name in ["customers.read", "customers.delete"] {
            reg.register(CapabilityDef {
                name: Capability::parse(name).unwrap(),
                description: Cow::Borrowed("test"),
                requires_mfa: false,
                system_only: false,
            })
            .unwrap();
        }
        reg
    }

    fn tenant() -> TenantRef {
        let id = TenantId::new();
        TenantRef {
            id,
            kind: TenantKind::Tenant,
            path: format!("/{id}/"),
            has_children: false,
        }
    }

    fn principal(home: &TenantRef, amr: &[&str], auth_time: Option<OffsetDateTime>) -> Principal {
        Principal {
            subject: UserId::new(),
            home: home.clone(),
            roles: vec!["member".to_owned()],
            capabilities: std::collections::BTreeSet::new(),
            method: AuthMethod::Bearer,
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            auth_time,
            token_id: None,
            token_expires_at: None,
            session_id: None,
        }
    }

    fn eval(text: &str, p: &Principal, cap: &str, ip: &str) -> ConditionDecision {
        let schema = ConditionSchema::new(&registry()).unwrap();
        let compiled = schema.compile(text).expect("compiles");
        let scope =
            SystemScope::internal(InternalRole::Authentication).tenant_scope(p.home.clone());
        let cap = Capability::parse(cap).unwrap();
        schema.evaluate(
            &compiled,
            &ConditionRequest {
                principal: p,
                scope: &scope,
                tenant_slug: "acme",
                capability: &cap,
                ip: ip.parse().unwrap(),
                now: OffsetDateTime::now_utc(),
                http_method: "DELETE",
                path: "/v1/customers/x",
            },
        )
    }

    #[test]
    fn the_schema_builds_with_one_action_per_capability() {
        let schema = ConditionSchema::new(&registry()).unwrap();
        assert!(schema.text().contains("action \"customers.delete\""));
        assert!(schema.text().contains("action \"platform.tenant.read\""));
    }

    #[test]
    fn an_empty_text_narrows_nothing() {
        let home = tenant();
        let p = principal(&home, &["otp"], None);
        assert_eq!(
            eval("", &p, "customers.read", "10.0.0.1"),
            ConditionDecision::Allow
        );
    }

    #[test]
    fn forbid_narrows_and_permit_adds_nothing() {
        let home = tenant();
        let p = principal(&home, &["otp"], None);
        let text = r#"@id("no-deletes") forbid(principal, action == Palisade::Action::"customers.delete", resource);
            permit(principal, action, resource);"#;
        assert_eq!(
            eval(text, &p, "customers.delete", "10.0.0.1"),
            ConditionDecision::Deny {
                policies: vec!["no-deletes".to_owned()]
            }
        );
        assert_eq!(
            eval(text, &p, "customers.read", "10.0.0.1"),
            ConditionDecision::Allow
        );
    }

    #[test]
    fn ip_ranges_are_matched() {
        let home = tenant();
        let p = principal(&home, &["otp"], None);
        let text = r#"forbid(principal, action, resource) unless { context.ip.isInRange(ip("10.0.0.0/8")) };"#;
        assert_eq!(
            eval(text, &p, "customers.read", "10.1.2.3"),
            ConditionDecision::Allow
        );
        assert!(matches!(
            eval(text, &p, "customers.read", "192.0.2.1"),
            ConditionDecision::Deny { .. }
        ));
        assert!(matches!(
            eval(text, &p, "customers.read", "::1"),
            ConditionDecision::Deny { .. }
        ));
    }

    #[test]
    fn mfa_age_fails_closed_when_never_proved() {
        let home = tenant();
        let text = r#"forbid(principal, action == Palisade::Action::"customers.delete", resource) unless { context.mfa_age < 300 };"#;
        let never = principal(&home, &["otp"], None);
        assert!(matches!(
            eval(text, &never, "customers.delete", "10.0.0.1"),
            ConditionDecision::Deny { .. }
        ));
        // An auth_time without a TOTP factor is not a second factor.
        let otp_only = principal(&home, &["otp"], Some(OffsetDateTime::now_utc()));
        assert!(matches!(
            eval(text, &otp_only, "customers.delete", "10.0.0.1"),
            ConditionDecision::Deny { .. }
        ));
        let fresh = principal(&home, &["otp", "totp"], Some(OffsetDateTime::now_utc()));
        assert_eq!(
            eval(text, &fresh, "customers.delete", "10.0.0.1"),
            ConditionDecision::Allow
        );
        let stale = principal(
            &home,
            &["otp", "totp"],
            Some(OffsetDateTime::now_utc() - time::Duration::hours(1)),
        );
        assert!(matches!(
            eval(text, &stale, "customers.delete", "10.0.0.1"),
            ConditionDecision::Deny { .. }
        ));
    }

    #[test]
    fn an_evaluation_error_denies_even_where_cedar_would_skip_the_forbid() {
        let home = tenant();
        let p = principal(&home, &["otp"], None);
        // Overflows at run time (mfa_age is MFA_NEVER): Cedar skips the erroring forbid and the implicit
        // permit would allow; we must not.
        let text = "forbid(principal, action, resource) when { context.mfa_age + 1 > 0 };";
        assert!(matches!(
            eval(text, &p, "customers.read", "10.0.0.1"),
            ConditionDecision::Error { .. }
        ));
    }

    #[test]
    fn unparsable_and_schema_invalid_texts_are_refused_with_every_message() {
        let schema = ConditionSchema::new(&registry()).unwrap();
        let errs = schema
            .compile("forbid(principal, action, resource")
            .unwrap_err();
        assert!(
            errs.iter().all(|e| e.code == "policy.parse_error"),
            "{errs:?}"
        );
        let errs = schema
            .compile(
                r#"forbid(principal, action == Palisade::Action::"nope.read", resource);
                   forbid(principal, action, resource) when { context.nope == 1 };"#,
            )
            .unwrap_err();
        assert!(errs.len() >= 2, "{errs:?}");
        assert!(
            errs.iter().all(|e| e.code == "policy.schema_error"),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.message.starts_with("2:")), "{errs:?}");
        let errs = schema
            .compile("permit(principal == ?principal, action, resource);")
            .unwrap_err();
        assert_eq!(errs[0].code, "policy.template");
    }

    #[test]
    fn oversized_and_deeply_nested_texts_are_refused_before_parsing() {
        let schema = ConditionSchema::new(&registry()).unwrap();
        let big = format!("// {}\n", "x".repeat(MAX_POLICY_BYTES));
        assert_eq!(
            schema.compile(&big).unwrap_err()[0].code,
            "policy.too_large"
        );
        let deep = format!(
            "forbid(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(1000),
            ")".repeat(1000)
        );
        assert_eq!(
            schema.compile(&deep).unwrap_err()[0].code,
            "policy.too_complex"
        );
        // Brackets inside strings and comments do not count.
        let quoted = format!(
            "// {}\nforbid(principal, action, resource) when {{ context.path == \"{}\" }};",
            "(".repeat(100),
            "[".repeat(100)
        );
        assert!(schema.compile(&quoted).is_ok());
    }

    #[test]
    fn texts_nesting_without_brackets_are_refused_without_overflowing_the_stack() {
        // Nesting without brackets reaches thousands of levels in 64 KiB; the worst must be an error,
        // not an abort, and must be refused even when called from a small (2 MiB) stack.
        let budget = MAX_POLICY_BYTES - 64;
        let shapes = [
            format!(
                "{} true {}",
                "if true then ".repeat(budget / 24),
                " else false".repeat(budget / 24)
            ),
            format!("{} true", "if true then true else ".repeat(budget / 23)),
            format!("1{} > 0", "+1".repeat(budget / 2)),
            format!("context.path{} == 1", ".a".repeat(budget / 2 - 10)),
            format!("true{}", " && true".repeat(budget / 8)),
        ];
        let schema = std::sync::Arc::new(ConditionSchema::new(&registry()).unwrap());
        for body in shapes {
            let text = format!("forbid(principal, action, resource) when {{ {body} }};");
            assert!(text.len() <= MAX_POLICY_BYTES);
            let schema = schema.clone();
            let errs = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || schema.compile(&text).unwrap_err())
                .unwrap()
                .join()
                .expect("no stack overflow");
            assert!(!errs.is_empty());
        }
        // The deepest policy the cap lets through is evaluated and dropped on a 2 MiB stack without
        // overflowing: Cedar's evaluator checks the remaining stack, and an unoptimised build may run
        // short, which is an evaluation error and so a denial, never a crash or an allow by mistake.
        let text = format!(
            "forbid(principal, action, resource) when {{ context.hour_utc{} < 0 }};",
            " + 1".repeat(MAX_OPERATORS - 4)
        );
        let compiled = schema.compile(&text).expect("within the cap");
        let home = tenant();
        let p = principal(&home, &["otp"], None);
        let decision = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let scope = SystemScope::internal(InternalRole::Authentication)
                    .tenant_scope(p.home.clone());
                let cap = Capability::parse("customers.read").unwrap();
                let d = schema.evaluate(
                    &compiled,
                    &ConditionRequest {
                        principal: &p,
                        scope: &scope,
                        tenant_slug: "acme",
                        capability: &cap,
                        ip: "10.0.0.1".parse().unwrap(),
                        now: OffsetDateTime::now_utc(),
                        http_method: "GET",
                        path: "/v1/customers",
                    },
                );
                drop(compiled);
                d
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(
            matches!(
                decision,
                ConditionDecision::Allow | ConditionDecision::Error { .. }
            ),
            "{decision:?}"
        );
        let schema = ConditionSchema::new(&registry()).unwrap();
        // Ordinary nesting is fine.
        let ok = "forbid(principal, action, resource) when { if context.mfa then context.mfa_age > 600 else (context.hour_utc < 6 || context.hour_utc > 20) && context.weekday != \"monday\" };";
        assert!(schema.compile(ok).is_ok());
    }
}
