//! Scopes: the proof that authorization allowed access to one tenant.
//!
//! SECURITY: the fields are private and the only constructors are [`crate::decide`] (on Allow) and
//! [`SystemScope`], which names the internal role it acts for. Store methods over tenant-owned rows take
//! `&TenantScope` and filter by it, so no query path exists without a grant.

use palisade_domain::{TenantId, TenantKind};

/// A tenant as authorization sees it: its id, kind and materialised path (`/root/.../self/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRef {
    /// The tenant's id.
    pub id: TenantId,
    /// What the tenant is in the hierarchy.
    pub kind: TenantKind,
    /// Ids from the root down to this tenant, each followed by `/`, starting with `/`.
    pub path: String,
    /// Whether the tenant has child tenants (then its members' scope level is `parent`).
    pub has_children: bool,
}

impl TenantRef {
    /// Whether `other` is this tenant or one of its descendants.
    #[must_use]
    pub fn reaches(&self, other: &TenantRef) -> bool {
        // SECURITY: paths end with '/', so "/a/" is not a prefix of "/ab/".
        self.path.ends_with('/') && other.path.starts_with(&self.path)
    }
}

/// Access to one tenant's data, granted by authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    tenant: TenantRef,
}

impl TenantScope {
    pub(crate) fn granted(tenant: TenantRef) -> Self {
        Self { tenant }
    }

    /// The tenant every query of this scope is filtered by.
    #[must_use]
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    /// The tenant's materialised path; queries over the subtree (child tenants) filter by this prefix.
    #[must_use]
    pub fn tenant_path(&self) -> &str {
        &self.tenant.path
    }

    /// The tenant as authorization saw it.
    #[must_use]
    pub fn tenant(&self) -> &TenantRef {
        &self.tenant
    }
}

/// The internal roles background and start-up work act as. Each use is named, so it can be audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalRole {
    /// First-start bootstrap of the system tenant and owner.
    Bootstrap,
    /// Trust Center self-checks (read-only probes).
    SelfCheck,
    /// Resolving the principal of an authenticated request (reading the caller's own user row).
    Authentication,
    /// Rotating and retiring the token signing keys.
    KeyRotation,
    /// Sign-in before a principal exists (OTP challenges, token issue for the signing-in user).
    SignIn,
    /// Audit retention and chain verification across every tenant (the CLI and the background job).
    AuditMaintenance,
    /// Record retention: purging records of declared resources past their `retention_days`.
    Retention,
    /// Writing API keys' batched `last_used_at` (usage metadata, not an audited change).
    KeyUsage,
    /// Operator recovery from the command line (e.g. clearing a tenant's IP allowlist after a
    /// lock-out); every change it makes is audited with actor `system:cli`.
    Recovery,
}

impl InternalRole {
    /// A stable name for logs and audit.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bootstrap => "internal.bootstrap",
            Self::SelfCheck => "internal.self_check",
            Self::Authentication => "internal.authentication",
            Self::KeyRotation => "internal.key_rotation",
            Self::SignIn => "internal.sign_in",
            Self::AuditMaintenance => "internal.audit_maintenance",
            Self::Retention => "internal.retention",
            Self::KeyUsage => "internal.key_usage",
            Self::Recovery => "internal.recovery",
        }
    }
}

/// Work done by the system itself, not on behalf of a request's principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemScope {
    role: InternalRole,
}

impl SystemScope {
    /// A system scope for the named internal role.
    #[must_use]
    pub fn internal(role: InternalRole) -> Self {
        Self { role }
    }

    /// Who this scope acts as.
    #[must_use]
    pub fn role(&self) -> InternalRole {
        self.role
    }

    /// A tenant scope for internal work on one tenant.
    #[must_use]
    pub fn tenant_scope(&self, tenant: TenantRef) -> TenantScope {
        TenantScope::granted(tenant)
    }
}
