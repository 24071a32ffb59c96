//! Palisade's domain vocabulary: identifiers, validated newtypes, tenant hierarchy terms, configuration
//! types and the log redaction rules.
//!
//! Invariants: nothing here performs I/O; every newtype that crosses a trust boundary (slugs, e-mail
//! addresses, ids) can only be built through a validating constructor, so a value of the type is proof
//! that it was checked.

pub mod canonical;
pub mod ids;
pub mod redact;
pub mod resource;
pub mod tenant;

pub use ids::{TenantId, UserId};
pub use tenant::{ScopeLevel, Slug, TenantKind, UserStatus};
