//! Built-in roles and their capability sets.
//!
//! | role | holds |
//! |---|---|
//! | `system_admin` | every registered capability |
//! | `partner_admin` | every capability that is not system-only |
//! | `tenant_admin` | every capability that is not system-only, except creating tenants |
//! | `member` | declared-resource capabilities ending in `read`, `list`, `create`, `update` (not field-level) |
//! | `viewer` | declared-resource capabilities ending in `read`, `list` (not field-level) |
//!
//! `member` and `viewer` never hold `platform.*` or `trust.*` capabilities (the Trust Center's reports
//! describe the deployment, not records).
//!
//! Every signed-in user also holds the self-service capabilities (`self.profile.read`,
//! `self.session.revoke`), whatever its roles. Tenants add custom roles with inheritance on top of
//! these (see [`crate::inherit`]); an unknown role name grants nothing.

use std::collections::BTreeSet;

use crate::capability::{Capability, CapabilityDef, CapabilityRegistry, platform};

/// The roles every deployment has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinRole {
    /// Operates the whole deployment.
    SystemAdmin,
    /// Manages a partner's tenants.
    PartnerAdmin,
    /// Manages one tenant.
    TenantAdmin,
    /// Reads and writes records.
    Member,
    /// Reads records.
    Viewer,
}

/// Capability namespaces that belong to the platform rather than to declared resources.
pub const ADMIN_NAMESPACES: &[&str] = &[
    "platform.",
    "audit.",
    "trust.",
    "security.",
    "vault.",
    "privacy.",
    "webhooks.",
    "oauth.",
    "api_keys.",
    "files.",
];

/// Whether a capability administers the platform as a whole, the set `[server] admin_allowed_ips`
/// fences: every system-only capability (partners, WAF blocks, Trust Center reports and counters,
/// and whatever is marked system-only later) plus `platform.tenant.create`, which grows the tenant
/// tree. The other `platform.*` capabilities manage one tenant (its users, roles, keys, its own
/// record) and are fenced by that tenant's own `allowed_ips` instead. This is the one definition;
/// the guard, the docs and the tests read it.
#[must_use]
pub fn is_platform_administration(def: &CapabilityDef) -> bool {
    def.system_only || def.name == platform::TENANT_CREATE
}

impl BuiltinRole {
    /// Every built-in role.
    pub const ALL: [Self; 5] = [
        Self::SystemAdmin,
        Self::PartnerAdmin,
        Self::TenantAdmin,
        Self::Member,
        Self::Viewer,
    ];

    /// The role's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SystemAdmin => "system_admin",
            Self::PartnerAdmin => "partner_admin",
            Self::TenantAdmin => "tenant_admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    /// Looks a built-in role up by name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    fn grants(self, def: &CapabilityDef) -> bool {
        let name = def.name.as_str();
        // SECURITY: members and viewers get declared-resource capabilities only; every platform
        // namespace (administration, audit, trust reports, security controls, vault, privacy, keys)
        // stays with the admin roles. Resource names cannot take these namespaces: the
        // configuration check refuses resources named after platform paths.
        let is_platform = ADMIN_NAMESPACES.iter().any(|ns| name.starts_with(ns));
        let is_field = name.contains(".field.");
        let action = name.rsplit('.').next().unwrap_or_default();
        match self {
            Self::SystemAdmin => true,
            Self::PartnerAdmin => !def.system_only,
            Self::TenantAdmin => !def.system_only && def.name != platform::TENANT_CREATE,
            Self::Member => {
                !is_platform
                    && !def.system_only
                    && !is_field
                    && matches!(action, "read" | "list" | "create" | "update")
            }
            Self::Viewer => {
                !is_platform && !def.system_only && !is_field && matches!(action, "read" | "list")
            }
        }
    }

    /// The capabilities this role holds among those registered.
    #[must_use]
    pub fn capabilities(self, registry: &CapabilityRegistry) -> BTreeSet<Capability> {
        registry
            .iter()
            .filter(|def| self.grants(def))
            .map(|def| def.name.clone())
            .collect()
    }
}

/// Resolves role names to capabilities.
#[derive(Debug, Clone, Copy)]
pub struct RoleSet<'a> {
    registry: &'a CapabilityRegistry,
}

impl<'a> RoleSet<'a> {
    /// Role resolution over a registry.
    #[must_use]
    pub fn new(registry: &'a CapabilityRegistry) -> Self {
        Self { registry }
    }

    /// Whether a role name is known.
    #[must_use]
    pub fn is_known(&self, name: &str) -> bool {
        BuiltinRole::parse(name).is_some()
    }

    /// The union of the capabilities of the named roles. Unknown names grant nothing (deny by default).
    #[must_use]
    pub fn resolve<S: AsRef<str>>(&self, roles: &[S]) -> BTreeSet<Capability> {
        roles
            .iter()
            .filter_map(|r| BuiltinRole::parse(r.as_ref()))
            .flat_map(|r| r.capabilities(self.registry))
            .collect()
    }

    /// What a signed-in user holds: [`RoleSet::resolve`] plus the self-service capabilities, which
    /// every authenticated principal has whatever its roles (they reach only its own sessions).
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
}
