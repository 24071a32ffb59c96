//! Custom roles of a tenant: storage only. What a role may contain (valid names, registered
//! capabilities, no cycles, no escalation) is decided by the caller with `palisade_authz::RoleGraph`
//! before anything is written.
//!
//! Invariants:
//! - SECURITY: every method takes a [`TenantScope`] and touches only the rows of `scope.tenant_id()`;
//!   another tenant's role is `None` on reads and `NotFound` on writes.
//! - A name is unique within its tenant: a second create is `Conflict { constraint:
//!   "custom_roles.tenant_id_name" }` on every backend.
//! - `inherits` and `capabilities` are stored sorted and de-duplicated, and read back as written.
//! - Deleting a role that a user of the tenant holds or another role inherits is refused with
//!   `Conflict { constraint: "custom_roles.in_use" }`, decided in the same write transaction.

use async_trait::async_trait;
use palisade_authz::{RoleDef, TenantScope};
use palisade_domain::TenantId;
use time::OffsetDateTime;

use crate::{AuditMeta, Page, PageRequest, StoreResult};

/// The constraint a refused delete of a role in use reports.
pub const ROLE_IN_USE: &str = "custom_roles.in_use";

/// A custom role row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    /// The tenant that owns it.
    pub tenant_id: TenantId,
    /// Unique within the tenant; `[a-z][a-z0-9_]{0,62}`, never a built-in name (checked by the caller).
    pub name: String,
    /// Inherited role names, sorted and de-duplicated.
    pub inherits: Vec<String>,
    /// Capability names, sorted and de-duplicated.
    pub capabilities: Vec<String>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

impl CustomRole {
    /// The role as the authorization graph sees it.
    #[must_use]
    pub fn to_def(&self) -> RoleDef {
        RoleDef {
            inherits: self.inherits.clone(),
            capabilities: self.capabilities.clone(),
        }
    }
}

/// A custom role to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRole {
    /// The name.
    pub name: String,
    /// Inherited role names.
    pub inherits: Vec<String>,
    /// Capability names.
    pub capabilities: Vec<String>,
}

/// A change to a custom role; `None` leaves the field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolePatch {
    /// Replaces the inherited roles.
    pub inherits: Option<Vec<String>>,
    /// Replaces the capabilities.
    pub capabilities: Option<Vec<String>>,
}

/// Custom roles of a tenant.
#[async_trait]
pub trait RoleStore: Send + Sync {
    /// Creates a role in the scope's tenant. `Conflict` (`custom_roles.tenant_id_name`) when the name
    /// is taken there.
    async fn create_role(
        &self,
        scope: &TenantScope,
        new: NewRole,
        meta: &AuditMeta,
    ) -> StoreResult<CustomRole>;
    /// A role of the scope's tenant.
    async fn get_role(&self, scope: &TenantScope, name: &str) -> StoreResult<Option<CustomRole>>;
    /// Roles of the scope's tenant, ordered by name (keyset: `after` is a name).
    async fn list_roles(
        &self,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> StoreResult<Page<CustomRole>>;
    /// Every role of the scope's tenant, ordered by name: what request-time resolution loads (one
    /// query). The API bounds how many roles a tenant may define.
    async fn all_roles(&self, scope: &TenantScope) -> StoreResult<Vec<CustomRole>>;
    /// Applies a patch; `NotFound` when the role is not in the scope's tenant.
    async fn update_role(
        &self,
        scope: &TenantScope,
        name: &str,
        patch: RolePatch,
        meta: &AuditMeta,
    ) -> StoreResult<CustomRole>;
    /// Deletes a role; `NotFound` when not in the scope's tenant, `Conflict` ([`ROLE_IN_USE`]) when a
    /// user of the tenant holds it or another role of the tenant inherits it.
    async fn delete_role(
        &self,
        scope: &TenantScope,
        name: &str,
        meta: &AuditMeta,
    ) -> StoreResult<()>;
    /// Whether a user of the scope's tenant holds the role or another role of the tenant inherits it.
    async fn roles_in_use(&self, scope: &TenantScope, name: &str) -> StoreResult<bool>;
}
