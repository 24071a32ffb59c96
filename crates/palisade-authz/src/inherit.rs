//! Custom roles per tenant and their inheritance: the pure graph walk behind role resolution.
//!
//! A tenant defines custom roles `{name, inherits, capabilities}`; `inherits` names built-in roles or
//! other custom roles of the same tenant. A [`RoleGraph`] holds the built-in roles plus one tenant's
//! custom roles and resolves role names to capability sets, transitively.
//!
//! *Depth* counts custom-to-custom inheritance edges: a custom role that inherits only built-in roles
//! (or nothing) has depth 0, and one that inherits a custom role of depth `d` has depth `d + 1`.
//! Built-in roles are leaves. A role deeper than [`MAX_INHERIT_DEPTH`] is refused.
//!
//! Invariants:
//! - SECURITY: resolution fails closed. A role that is unknown, or that reaches an unknown role, a
//!   cycle, or a chain deeper than [`MAX_INHERIT_DEPTH`], grants nothing at all through
//!   [`RoleGraph::resolve`]; [`RoleGraph::check`] reports which rule broke so the API can refuse a write.
//! - SECURITY: a built-in name always means the built-in role; a custom definition stored under a
//!   built-in name is ignored. A custom role only ever contributes registered capabilities that are
//!   not system-only, whatever storage says.
//! - The walk is bounded whatever the data: it never holds more than `MAX_INHERIT_DEPTH + 1` custom
//!   roles on its stack, and it visits each role once per walk (memoised), so a wide diamond-shaped
//!   graph costs linear, not exponential, time.
//! - No I/O: callers load the tenant's definitions and pass them in.

use std::collections::{BTreeMap, BTreeSet};

use crate::capability::{Capability, CapabilityRegistry, platform};
use crate::role::BuiltinRole;

/// The deepest custom-to-custom inheritance chain a role may have.
pub const MAX_INHERIT_DEPTH: usize = 8;

/// Whether `name` is a well-formed role name: `[a-z][a-z0-9_]{0,62}`.
#[must_use]
pub fn is_valid_role_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// One custom role's definition, as the graph sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleDef {
    /// Names of the roles this one inherits (built-in or custom of the same tenant).
    pub inherits: Vec<String>,
    /// Capability names the role grants itself.
    pub capabilities: Vec<String>,
}

/// Why a role does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// The role, or one it inherits, does not exist.
    #[error("role `{0}` is not known")]
    Unknown(String),
    /// Inheritance loops back to this role.
    #[error("role inheritance forms a cycle through `{0}`")]
    Cycle(String),
    /// The inheritance chain is longer than [`MAX_INHERIT_DEPTH`].
    #[error("role inheritance is deeper than {MAX_INHERIT_DEPTH}")]
    TooDeep,
}

/// The built-in roles plus one tenant's custom roles.
#[derive(Debug, Clone)]
pub struct RoleGraph<'a> {
    registry: &'a CapabilityRegistry,
    custom: BTreeMap<String, RoleDef>,
}

/// A fully resolved custom role within one walk.
struct Resolved {
    depth: usize,
    caps: BTreeSet<Capability>,
}

/// The state of one walk: finished roles and the current inheritance path.
#[derive(Default)]
struct Walk<'g> {
    done: BTreeMap<&'g str, Resolved>,
    stack: Vec<&'g str>,
}

impl<'a> RoleGraph<'a> {
    /// The built-in roles only.
    #[must_use]
    pub fn builtin(registry: &'a CapabilityRegistry) -> Self {
        Self {
            registry,
            custom: BTreeMap::new(),
        }
    }

    /// The built-in roles plus these custom roles. A definition under a built-in name is ignored.
    #[must_use]
    pub fn new(
        registry: &'a CapabilityRegistry,
        custom: impl IntoIterator<Item = (String, RoleDef)>,
    ) -> Self {
        let mut graph = Self::builtin(registry);
        for (name, def) in custom {
            graph = graph.with_role(name, def);
        }
        graph
    }

    /// The graph with `name` defined as `def` (added, or replacing an earlier definition): how a
    /// proposed create or update is checked before it is written.
    #[must_use]
    pub fn with_role(mut self, name: String, def: RoleDef) -> Self {
        if BuiltinRole::parse(&name).is_none() {
            self.custom.insert(name, def);
        }
        self
    }

    /// Whether `name` is a built-in role or a custom role of this graph.
    #[must_use]
    pub fn is_known(&self, name: &str) -> bool {
        BuiltinRole::parse(name).is_some() || self.custom.contains_key(name)
    }

    /// A custom role's definition.
    #[must_use]
    pub fn custom(&self, name: &str) -> Option<&RoleDef> {
        self.custom.get(name)
    }

    /// The custom roles that name `name` in their `inherits`.
    pub fn inheritors<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.custom
            .iter()
            .filter(move |(_, def)| def.inherits.iter().any(|p| p == name))
            .map(|(n, _)| n.as_str())
    }

    /// The fully resolved capabilities of one role (its own plus everything it inherits).
    ///
    /// # Errors
    /// [`RoleError`] when the role or one it reaches is unknown, a cycle is reached, or the chain is
    /// deeper than [`MAX_INHERIT_DEPTH`].
    pub fn check(&self, name: &str) -> Result<BTreeSet<Capability>, RoleError> {
        let mut walk = Walk::default();
        let mut out = BTreeSet::new();
        self.visit(name, &mut walk, &mut out)?;
        Ok(out)
    }

    /// Checks every custom role of the graph: after a proposed change, this finds cycles and excess
    /// depth that the change creates through *other* roles (a role inheriting the changed one).
    ///
    /// # Errors
    /// The first failure, with the custom role it was found from.
    pub fn check_all(&self) -> Result<(), (String, RoleError)> {
        let mut walk = Walk::default();
        for name in self.custom.keys() {
            let mut sink = BTreeSet::new();
            self.visit(name, &mut walk, &mut sink)
                .map_err(|e| (name.clone(), e))?;
        }
        Ok(())
    }

    /// The union of the capabilities of the named roles.
    ///
    /// SECURITY: deny by default. A role that does not resolve (unknown, reaching an unknown role, a
    /// cycle or too deep) contributes nothing at all, not even its own capabilities.
    #[must_use]
    pub fn resolve<S: AsRef<str>>(&self, roles: &[S]) -> BTreeSet<Capability> {
        roles
            .iter()
            .filter_map(|r| self.check(r.as_ref()).ok())
            .flatten()
            .collect()
    }

    /// What a signed-in user holds: [`RoleGraph::resolve`] plus the self-service capabilities every
    /// authenticated principal has (they reach only its own sessions and profile).
    #[must_use]
    pub fn resolve_for_user<S: AsRef<str>>(&self, roles: &[S]) -> BTreeSet<Capability> {
        let mut caps = self.resolve(roles);
        caps.extend(
            platform::SELF_SERVICE
                .iter()
                .filter(|c| self.registry.get(c).is_some())
                .cloned(),
        );
        caps
    }

    /// Resolves `name` into `out` and returns its depth (`None` for a built-in role).
    fn visit<'g>(
        &'g self,
        name: &'g str,
        walk: &mut Walk<'g>,
        out: &mut BTreeSet<Capability>,
    ) -> Result<Option<usize>, RoleError> {
        if let Some(builtin) = BuiltinRole::parse(name) {
            out.extend(builtin.capabilities(self.registry));
            return Ok(None);
        }
        if let Some(done) = walk.done.get(name) {
            out.extend(done.caps.iter().cloned());
            return Ok(Some(done.depth));
        }
        // SECURITY: the cycle check comes before the depth check so a short loop is named as one; the
        // stack bound below holds whatever the data, so recursion never runs away.
        if walk.stack.contains(&name) {
            return Err(RoleError::Cycle(name.to_owned()));
        }
        if walk.stack.len() > MAX_INHERIT_DEPTH {
            return Err(RoleError::TooDeep);
        }
        let (key, def) = self
            .custom
            .get_key_value(name)
            .ok_or_else(|| RoleError::Unknown(name.to_owned()))?;
        walk.stack.push(key);
        let mut caps: BTreeSet<Capability> = def
            .capabilities
            .iter()
            .filter_map(|c| Capability::parse(c).ok())
            .filter_map(|c| self.registry.get(&c))
            // SECURITY: system-only capabilities never come through a custom role.
            .filter(|d| !d.system_only)
            .map(|d| d.name.clone())
            .collect();
        let mut depth = 0;
        for parent in &def.inherits {
            if let Some(d) = self.visit(parent, walk, &mut caps)? {
                depth = depth.max(d + 1);
            }
        }
        walk.stack.pop();
        if depth > MAX_INHERIT_DEPTH {
            return Err(RoleError::TooDeep);
        }
        out.extend(caps.iter().cloned());
        walk.done.insert(key, Resolved { depth, caps });
        Ok(Some(depth))
    }
}

/// The first capability of `wanted` that `held` lacks, if any: the subset check behind "a role (or a
/// user's role set) can never grant more than the caller holds".
#[must_use]
pub fn first_excess<'w>(
    wanted: &'w BTreeSet<Capability>,
    held: &BTreeSet<Capability>,
) -> Option<&'w Capability> {
    wanted.iter().find(|c| !held.contains(*c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::CapabilityDef;
    use std::borrow::Cow;

    fn registry() -> CapabilityRegistry {
        let mut reg = CapabilityRegistry::with_platform();
        for name in ["customers.read", "customers.list", "customers.delete"] {
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

    fn def(inherits: &[&str], caps: &[&str]) -> RoleDef {
        RoleDef {
            inherits: inherits.iter().map(|s| (*s).to_owned()).collect(),
            capabilities: caps.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn graph<'r>(reg: &'r CapabilityRegistry, roles: &[(&str, RoleDef)]) -> RoleGraph<'r> {
        RoleGraph::new(reg, roles.iter().map(|(n, d)| ((*n).to_owned(), d.clone())))
    }

    fn caps(names: &[&str]) -> BTreeSet<Capability> {
        names
            .iter()
            .map(|n| Capability::parse(n).unwrap())
            .collect()
    }

    /// `d0` … `d{n}`: each inherits the previous one; `d0` holds `customers.read`.
    fn chain(n: usize) -> Vec<(String, RoleDef)> {
        (0..=n)
            .map(|i| {
                let inherits = if i == 0 {
                    Vec::new()
                } else {
                    vec![format!("d{}", i - 1)]
                };
                let caps = if i == 0 {
                    vec!["customers.read".to_owned()]
                } else {
                    Vec::new()
                };
                (
                    format!("d{i}"),
                    RoleDef {
                        inherits,
                        capabilities: caps,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn role_names_follow_the_pattern() {
        for good in ["a", "auditor", "read_only_2", &"a".repeat(63)] {
            assert!(is_valid_role_name(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "_a",
            "Auditor",
            "a-b",
            "a b",
            "a.b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_role_name(bad), "{bad}");
        }
    }

    #[test]
    fn check_table() {
        let reg = registry();
        let viewer = BuiltinRole::Viewer.capabilities(&reg);
        let mut viewer_plus_users = viewer.clone();
        viewer_plus_users.insert(platform::USER_READ);
        /// (case, roles, role to check, expected resolution)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, RoleDef)>,
            &'a str,
            Result<BTreeSet<Capability>, RoleError>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "own capabilities",
                vec![("auditor", def(&[], &["platform.user.read"]))],
                "auditor",
                Ok(caps(&["platform.user.read"])),
            ),
            (
                "a built-in parent",
                vec![("auditor", def(&["viewer"], &["platform.user.read"]))],
                "auditor",
                Ok(viewer_plus_users.clone()),
            ),
            (
                "transitive through custom roles",
                vec![
                    ("a", def(&["b"], &[])),
                    ("b", def(&["c"], &["platform.user.read"])),
                    ("c", def(&["viewer"], &[])),
                ],
                "a",
                Ok(viewer_plus_users.clone()),
            ),
            (
                "a diamond is fine",
                vec![
                    ("top", def(&["l", "r"], &[])),
                    ("l", def(&["base"], &[])),
                    ("r", def(&["base"], &["customers.delete"])),
                    ("base", def(&[], &["customers.read"])),
                ],
                "top",
                Ok(caps(&["customers.delete", "customers.read"])),
            ),
            (
                "a built-in name means the built-in role",
                vec![("viewer", def(&[], &["platform.user.delete"]))],
                "viewer",
                Ok(viewer.clone()),
            ),
            (
                "unregistered capabilities contribute nothing",
                vec![(
                    "a",
                    def(&[], &["nothing.here", "Bad name", "customers.read"]),
                )],
                "a",
                Ok(caps(&["customers.read"])),
            ),
            (
                "system-only capabilities never come through a custom role",
                vec![("a", def(&[], &["platform.tenant.create_partner"]))],
                "a",
                Ok(BTreeSet::new()),
            ),
            (
                "an unknown role",
                vec![],
                "ghost",
                Err(RoleError::Unknown("ghost".into())),
            ),
            (
                "an unknown parent",
                vec![("a", def(&["ghost"], &["customers.read"]))],
                "a",
                Err(RoleError::Unknown("ghost".into())),
            ),
            (
                "a self-loop",
                vec![("a", def(&["a"], &[]))],
                "a",
                Err(RoleError::Cycle("a".into())),
            ),
            (
                "a two-role cycle",
                vec![("a", def(&["b"], &[])), ("b", def(&["a"], &[]))],
                "a",
                Err(RoleError::Cycle("a".into())),
            ),
            (
                "a cycle below the role",
                vec![
                    ("a", def(&["b"], &[])),
                    ("b", def(&["c"], &[])),
                    ("c", def(&["b"], &[])),
                ],
                "a",
                Err(RoleError::Cycle("b".into())),
            ),
        ];
        for (name, roles, role, expected) in cases {
            let g = graph(&reg, &roles);
            assert_eq!(g.check(role), expected, "{name}");
        }
    }

    #[test]
    fn depth_8_resolves_and_depth_9_is_refused() {
        let reg = registry();
        let eight = RoleGraph::new(&reg, chain(8));
        assert_eq!(eight.check("d8"), Ok(caps(&["customers.read"])));
        assert_eq!(eight.check_all(), Ok(()));

        let nine = RoleGraph::new(&reg, chain(9));
        assert_eq!(nine.check("d9"), Err(RoleError::TooDeep));
        assert_eq!(nine.check("d8"), Ok(caps(&["customers.read"])));
        assert!(matches!(nine.check_all(), Err((n, RoleError::TooDeep)) if n == "d9"));
        assert!(nine.resolve(&["d9"]).is_empty(), "fails closed");

        // Built-in parents are leaves: they add no depth.
        let mut with_builtin = chain(8);
        if let Some((_, d0)) = with_builtin.first_mut() {
            d0.inherits.push("viewer".to_owned());
        }
        assert!(RoleGraph::new(&reg, with_builtin).check("d8").is_ok());
    }

    #[test]
    fn a_long_cycle_is_refused_and_bounded() {
        let reg = registry();
        let mut roles = chain(20);
        if let Some((_, d0)) = roles.first_mut() {
            d0.inherits.push("d20".to_owned());
        }
        let g = RoleGraph::new(&reg, roles);
        assert!(g.check("d5").is_err());
        assert!(g.check_all().is_err());
        assert!(g.resolve(&["d0", "d20"]).is_empty());
    }

    #[test]
    fn a_wide_diamond_graph_resolves_in_linear_time() {
        // Nine layers of 16 roles, each inheriting every role of the layer below: 16^8 paths, but each
        // role is visited once per walk.
        let reg = registry();
        let mut roles = Vec::new();
        for layer in 0..9 {
            for i in 0..16 {
                let inherits = if layer == 0 {
                    Vec::new()
                } else {
                    (0..16).map(|j| format!("l{}_{j}", layer - 1)).collect()
                };
                let capabilities = if layer == 0 {
                    vec!["customers.list".to_owned()]
                } else {
                    Vec::new()
                };
                roles.push((
                    format!("l{layer}_{i}"),
                    RoleDef {
                        inherits,
                        capabilities,
                    },
                ));
            }
        }
        let g = RoleGraph::new(&reg, roles);
        assert_eq!(g.check("l8_0"), Ok(caps(&["customers.list"])));
        assert_eq!(g.check_all(), Ok(()));
    }

    #[test]
    fn an_update_creating_a_cycle_through_another_role_is_found() {
        let reg = registry();
        let before = graph(
            &reg,
            &[
                ("a", def(&["b"], &[])),
                ("b", def(&[], &["customers.read"])),
            ],
        );
        assert_eq!(before.check_all(), Ok(()));
        let after = before.with_role("b".to_owned(), def(&["a"], &[]));
        assert_eq!(after.check("b"), Err(RoleError::Cycle("b".into())));
        assert!(after.check_all().is_err());
    }

    #[test]
    fn an_update_making_an_inheritor_too_deep_is_found() {
        let reg = registry();
        // d0..d8 is at the limit; giving d0 a custom parent pushes d8 to depth 9.
        let g = RoleGraph::new(&reg, chain(8)).with_role("root".to_owned(), def(&[], &[]));
        assert_eq!(g.check_all(), Ok(()));
        let g = g.with_role("d0".to_owned(), def(&["root"], &["customers.read"]));
        assert_eq!(g.check("d0").map(|c| c.len()), Ok(1), "d0 itself is fine");
        assert!(matches!(g.check_all(), Err((n, RoleError::TooDeep)) if n == "d8"));
    }

    #[test]
    fn resolve_is_the_union_of_the_roles_that_resolve() {
        let reg = registry();
        let g = graph(
            &reg,
            &[
                ("ok", def(&[], &["platform.user.read"])),
                ("broken", def(&["ghost"], &["platform.user.delete"])),
                ("loop", def(&["loop"], &["platform.user.create"])),
            ],
        );
        assert_eq!(
            g.resolve(&["ok", "broken", "loop", "ghost"]),
            caps(&["platform.user.read"])
        );
        let user = g.resolve_for_user(&["broken"]);
        assert_eq!(user, platform::SELF_SERVICE.iter().cloned().collect());
    }

    #[test]
    fn inheritors_and_known_names() {
        let reg = registry();
        let g = graph(
            &reg,
            &[
                ("a", def(&["b", "viewer"], &[])),
                ("b", def(&[], &[])),
                ("c", def(&["b"], &[])),
            ],
        );
        assert_eq!(g.inheritors("b").collect::<Vec<_>>(), vec!["a", "c"]);
        assert_eq!(g.inheritors("a").count(), 0);
        assert!(g.is_known("viewer") && g.is_known("c") && !g.is_known("d"));
    }

    #[test]
    fn excess_is_what_the_caller_lacks() {
        let held = caps(&["customers.read", "platform.user.read"]);
        assert_eq!(first_excess(&caps(&["customers.read"]), &held), None);
        assert_eq!(first_excess(&BTreeSet::new(), &held), None);
        assert_eq!(
            first_excess(&caps(&["customers.read", "platform.tenant.create"]), &held),
            Some(&platform::TENANT_CREATE)
        );
    }
}
