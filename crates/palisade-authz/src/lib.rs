//! Authorization for Palisade: the capability registry, the built-in roles, the pure deny-by-default
//! [`decide`], and [`TenantScope`], the only key to tenant-owned data.
//!
//! Invariants:
//! - `decide` starts from Deny and allows only when the principal holds the capability *and* the target
//!   tenant lies within its reach *and* any step-up requirement is met. Anything unknown denies.
//! - A [`TenantScope`] can only be constructed in this crate, by [`decide`] on Allow (or, for explicitly
//!   named internal work, by [`SystemScope`]); store methods that touch tenant-owned rows take one, so a
//!   handler cannot query tenant data without having passed authorization.
//! - Custom roles resolve through [`RoleGraph`], which fails closed: a role that is unknown, cyclic or
//!   too deep grants nothing.
//! - Cedar [`conditions`] run only after [`decide`] allowed, and can only narrow: a tenant's policies
//!   are evaluated with an implicit permit, so only a `forbid` changes the outcome, and any evaluation
//!   error denies.
//! - No I/O: callers load tenants and roles and pass them in.

pub mod capability;
pub mod conditions;
pub mod decide;
pub mod inherit;
pub mod principal;
pub mod role;
pub mod scope;

pub use capability::{Access, Capability, CapabilityDef, CapabilityRegistry, RegistryError};
pub use conditions::{
    ConditionDecision, ConditionRequest, ConditionSchema, PolicyProblem, TenantPolicies,
};
pub use decide::{Decision, DenyReason, decide};
pub use inherit::{
    MAX_INHERIT_DEPTH, RoleDef, RoleError, RoleGraph, first_excess, is_valid_role_name,
};
pub use principal::{AuthMethod, Principal};
pub use role::{BuiltinRole, RoleSet, is_platform_administration};
pub use scope::{InternalRole, SystemScope, TenantRef, TenantScope};
