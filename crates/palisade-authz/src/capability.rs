//! Capabilities: named permissions such as `platform.tenant.read`. Every route declares exactly one
//! capability or an explicit [`Access::Public`] with a reason; the [`CapabilityRegistry`] holds every
//! capability the running server knows (platform ones from code, resource ones derived at start), with
//! a description and whether it demands a recent second factor (step-up).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// A capability name: dotted lowercase, e.g. `platform.user.create` or `customers.field.tax_id.read`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(Cow<'static, str>);

impl Capability {
    /// A capability named in code.
    #[must_use]
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// A capability derived at run time (resources), or read back from storage. The name must be dotted
    /// lowercase `[a-z0-9_]` segments; anything else is refused so a stored name cannot smuggle patterns.
    ///
    /// # Errors
    /// [`RegistryError::InvalidName`] for a malformed name.
    pub fn parse(name: &str) -> Result<Self, RegistryError> {
        let valid_segment = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if name.len() > 128 || name.split('.').count() < 2 || !name.split('.').all(valid_segment) {
            return Err(RegistryError::InvalidName(name.chars().take(64).collect()));
        }
        Ok(Self(Cow::Owned(name.to_owned())))
    }

    /// The dotted name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// What a route demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// An authenticated principal holding this capability in the selected tenant.
    Capability(Capability),
    /// Anyone, including anonymous callers. The reason is recorded in the route registry so the decision
    /// is visible in review and in the Trust Center.
    Public {
        /// Why this route needs no credential.
        reason: &'static str,
    },
}

impl Access {
    /// Shorthand for [`Access::Capability`].
    #[must_use]
    pub fn cap(capability: Capability) -> Self {
        Self::Capability(capability)
    }

    /// The capability, when the route is not public.
    #[must_use]
    pub fn capability(&self) -> Option<&Capability> {
        match self {
            Self::Capability(c) => Some(c),
            Self::Public { .. } => None,
        }
    }
}

/// A registered capability with what `/v1/capabilities` says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityDef {
    /// The dotted name.
    pub name: Capability,
    /// One sentence for administrators.
    pub description: Cow<'static, str>,
    /// Whether using it needs a recent second factor (`auth_time` within the step-up window).
    pub requires_mfa: bool,
    /// Whether only principals of system scope may hold it (never granted through tenant roles).
    pub system_only: bool,
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is not dotted lowercase.
    #[error("capability name `{0}` is not dotted lowercase")]
    InvalidName(String),
    /// Registered twice.
    #[error("capability `{0}` is registered twice")]
    Duplicate(String),
    /// Referenced but never registered.
    #[error("capability `{0}` is not registered")]
    Unknown(String),
}

/// Every capability the server knows, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct CapabilityRegistry {
    defs: BTreeMap<Capability, CapabilityDef>,
}

impl CapabilityRegistry {
    /// A registry holding the platform capabilities of [`crate::capability::platform`].
    #[must_use]
    pub fn with_platform() -> Self {
        let mut reg = Self::default();
        for def in platform::all() {
            reg.defs.insert(def.name.clone(), def);
        }
        reg
    }

    /// Adds a capability.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when the name is already registered.
    pub fn register(&mut self, def: CapabilityDef) -> Result<(), RegistryError> {
        if self.defs.contains_key(&def.name) {
            return Err(RegistryError::Duplicate(def.name.to_string()));
        }
        self.defs.insert(def.name.clone(), def);
        Ok(())
    }

    /// Looks a capability up.
    #[must_use]
    pub fn get(&self, name: &Capability) -> Option<&CapabilityDef> {
        self.defs.get(name)
    }

    /// Every definition, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &CapabilityDef> {
        self.defs.values()
    }

    /// How many capabilities are registered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// Whether the registry is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

/// The platform capabilities, named `platform.<resource>.<action>` (DESIGN.md "Data").
pub mod platform {
    use super::{Capability, CapabilityDef};
    use std::borrow::Cow;

    /// Read tenants within reach.
    pub const TENANT_READ: Capability = Capability::from_static("platform.tenant.read");
    /// Create child tenants within reach.
    pub const TENANT_CREATE: Capability = Capability::from_static("platform.tenant.create");
    /// Rename tenants within reach.
    pub const TENANT_UPDATE: Capability = Capability::from_static("platform.tenant.update");
    /// Create partner tenants (system only).
    pub const TENANT_CREATE_PARTNER: Capability =
        Capability::from_static("platform.tenant.create_partner");
    /// Read users of the selected tenant.
    pub const USER_READ: Capability = Capability::from_static("platform.user.read");
    /// Create users in the selected tenant.
    pub const USER_CREATE: Capability = Capability::from_static("platform.user.create");
    /// Change a user's status or roles.
    pub const USER_UPDATE: Capability = Capability::from_static("platform.user.update");
    /// Delete users.
    pub const USER_DELETE: Capability = Capability::from_static("platform.user.delete");
    /// Read the custom roles of the selected tenant.
    pub const ROLE_READ: Capability = Capability::from_static("platform.role.read");
    /// Create custom roles in the selected tenant.
    pub const ROLE_CREATE: Capability = Capability::from_static("platform.role.create");
    /// Change a custom role's inheritance or capabilities.
    pub const ROLE_UPDATE: Capability = Capability::from_static("platform.role.update");
    /// Delete custom roles that nothing uses.
    pub const ROLE_DELETE: Capability = Capability::from_static("platform.role.delete");
    /// Read the selected tenant's Cedar policies and the schema, and dry-run a policy text.
    pub const POLICY_READ: Capability = Capability::from_static("platform.policy.read");
    /// Replace or delete the selected tenant's Cedar policies. Requires a recent step-up: removing a
    /// policy can undo a restriction, so it takes the same proof as the strongest one it could lift.
    pub const POLICY_WRITE: Capability = Capability::from_static("platform.policy.write");
    /// Read the capability registry.
    pub const CAPABILITY_READ: Capability = Capability::from_static("platform.capability.read");
    /// Read the route registry (method, path, capability).
    pub const ROUTE_READ: Capability = Capability::from_static("platform.route.read");

    /// Read the selected tenant's audit trail and verify its chain.
    pub const AUDIT_LOG_READ: Capability = Capability::from_static("audit.log.read");
    /// Export the selected tenant's audit trail.
    pub const AUDIT_LOG_EXPORT: Capability = Capability::from_static("audit.log.export");
    /// List the WAF's blocked clients (deployment-wide, so system only).
    pub const SECURITY_BLOCK_READ: Capability = Capability::from_static("security.block.read");
    /// Lift a block (deployment-wide, so system only).
    pub const SECURITY_BLOCK_DELETE: Capability = Capability::from_static("security.block.delete");
    /// Read the Trust Center's reports (claims with evidence, SBOM, questionnaire) and the security
    /// counters (`/v1/security/stats`). Deployment-wide, so system only; the public `/trust` page
    /// shows buyers the posture without these details.
    pub const TRUST_REPORT_READ: Capability = Capability::from_static("trust.report.read");

    /// Read the selected tenant's API keys (metadata only; a secret is never shown again).
    pub const API_KEYS_READ: Capability = Capability::from_static("api_keys.read");
    /// Create API keys in the selected tenant (capabilities a subset of the creator's).
    pub const API_KEYS_CREATE: Capability = Capability::from_static("api_keys.create");
    /// Revoke API keys of the selected tenant.
    pub const API_KEYS_DELETE: Capability = Capability::from_static("api_keys.delete");
    /// Rotate API keys of the selected tenant (the old key keeps working for a grace period).
    pub const API_KEYS_ROTATE: Capability = Capability::from_static("api_keys.rotate");

    /// Read one's own principal (`/v1/me`). Held by every signed-in user.
    pub const SELF_PROFILE_READ: Capability = Capability::from_static("self.profile.read");
    /// End one's own sessions (logout, logout-all). Held by every signed-in user.
    pub const SELF_SESSION_REVOKE: Capability = Capability::from_static("self.session.revoke");

    /// Enrol and confirm one's own TOTP, and step up. Held by every signed-in user.
    pub const SELF_MFA_MANAGE: Capability = Capability::from_static("self.mfa.manage");
    /// Disable one's own TOTP. Requires a recent step-up.
    pub const SELF_MFA_DISABLE: Capability = Capability::from_static("self.mfa.disable");

    /// The self-service capabilities every signed-in user holds: they touch only the caller's own
    /// sessions, second factor and profile.
    pub const SELF_SERVICE: [Capability; 4] = [
        SELF_PROFILE_READ,
        SELF_SESSION_REVOKE,
        SELF_MFA_MANAGE,
        SELF_MFA_DISABLE,
    ];

    fn def(name: Capability, description: &'static str, system_only: bool) -> CapabilityDef {
        CapabilityDef {
            name,
            description: Cow::Borrowed(description),
            requires_mfa: false,
            system_only,
        }
    }

    /// Every platform capability with its description.
    #[must_use]
    pub fn all() -> Vec<CapabilityDef> {
        vec![
            def(
                TENANT_READ,
                "Read tenants within the principal's reach.",
                false,
            ),
            def(
                TENANT_CREATE,
                "Create child tenants beneath a tenant within reach.",
                false,
            ),
            def(TENANT_UPDATE, "Rename tenants within reach.", false),
            def(
                TENANT_CREATE_PARTNER,
                "Create partner tenants, which manage tenants of their own.",
                true,
            ),
            def(USER_READ, "Read the users of the selected tenant.", false),
            def(USER_CREATE, "Create users in the selected tenant.", false),
            def(
                USER_UPDATE,
                "Change a user's status and roles in the selected tenant.",
                false,
            ),
            def(USER_DELETE, "Delete users of the selected tenant.", false),
            def(
                ROLE_READ,
                "Read the custom roles of the selected tenant.",
                false,
            ),
            def(
                ROLE_CREATE,
                "Create custom roles in the selected tenant (never granting more than the creator holds).",
                false,
            ),
            def(
                ROLE_UPDATE,
                "Change a custom role's inherited roles and capabilities.",
                false,
            ),
            def(
                ROLE_DELETE,
                "Delete custom roles that no user holds and no role inherits.",
                false,
            ),
            def(
                POLICY_READ,
                "Read the selected tenant's Cedar policies and the Cedar schema, and dry-run a policy text.",
                false,
            ),
            CapabilityDef {
                name: POLICY_WRITE,
                description: Cow::Borrowed(
                    "Replace or delete the selected tenant's Cedar policies, which narrow every grant (needs a step-up within the window).",
                ),
                requires_mfa: true,
                system_only: false,
            },
            def(
                CAPABILITY_READ,
                "Read the registry of capabilities with their descriptions.",
                false,
            ),
            def(
                API_KEYS_READ,
                "Read the selected tenant's API keys: metadata only, never a secret.",
                false,
            ),
            def(
                API_KEYS_CREATE,
                "Create API keys in the selected tenant (never carrying more than the creator holds).",
                false,
            ),
            def(
                API_KEYS_DELETE,
                "Revoke API keys of the selected tenant, at once.",
                false,
            ),
            def(
                API_KEYS_ROTATE,
                "Rotate API keys of the selected tenant, the old key working for a grace period.",
                false,
            ),
            def(
                SELF_PROFILE_READ,
                "Read one's own principal: roles, capabilities, authentication methods.",
                false,
            ),
            def(
                SELF_SESSION_REVOKE,
                "End one's own sessions (logout, logout everywhere).",
                false,
            ),
            def(
                SELF_MFA_MANAGE,
                "Enrol and confirm one's own TOTP, and step up.",
                false,
            ),
            CapabilityDef {
                name: SELF_MFA_DISABLE,
                description: Cow::Borrowed(
                    "Disable one's own TOTP (needs a step-up within the window).",
                ),
                requires_mfa: true,
                system_only: false,
            },
            def(
                AUDIT_LOG_READ,
                "Read the selected tenant's audit trail (field masks applied) and verify its hash chain.",
                false,
            ),
            def(
                AUDIT_LOG_EXPORT,
                "Export the selected tenant's audit trail as NDJSON or CSV (field masks applied).",
                false,
            ),
            def(
                ROUTE_READ,
                "Read the route registry: every route with the capability it demands.",
                false,
            ),
            def(
                SECURITY_BLOCK_READ,
                "List the clients the WAF has blocked across the deployment.",
                true,
            ),
            def(
                SECURITY_BLOCK_DELETE,
                "Lift a WAF block before it expires.",
                true,
            ),
            def(
                TRUST_REPORT_READ,
                "Read the Trust Center reports (claims with their evidence, the SBOM, the questionnaire) and the deployment-wide security counters.",
                true,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_must_be_dotted_lowercase() {
        assert!(Capability::parse("customers.read").is_ok());
        assert!(Capability::parse("customers.field.tax_id.read").is_ok());
        for bad in [
            "",
            "read",
            "Customers.read",
            "a..b",
            "a.*",
            "a.b ",
            "a.b-c",
            ".a.b",
        ] {
            assert!(Capability::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registering_a_capability_twice_is_refused() {
        let mut reg = CapabilityRegistry::with_platform();
        let again = platform::all().remove(0);
        assert!(matches!(
            reg.register(again),
            Err(RegistryError::Duplicate(_))
        ));
    }
}
