//! The authenticated caller as the rest of the request sees it.
//!
//! Capabilities are resolved on the server at request time from the user's roles; nothing in a token
//! is trusted to carry them.

use std::collections::BTreeSet;

use palisade_domain::{ScopeLevel, TenantKind, UserId};
use time::OffsetDateTime;

use crate::capability::Capability;
use crate::scope::TenantRef;

/// How the principal authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// An ES512 bearer access token.
    Bearer,
    /// A DPoP-bound access token.
    Dpop,
    /// An API key.
    ApiKey,
    /// A browser session cookie with CSRF token.
    Session,
    /// A principal minted by the test kit (only compiled with the `test-auth` feature).
    Test,
}

impl AuthMethod {
    /// The spelling in `/v1/me`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Dpop => "dpop",
            Self::ApiKey => "api_key",
            Self::Session => "session",
            Self::Test => "test",
        }
    }
}

/// An authenticated caller with its resolved capabilities.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub subject: UserId,
    /// The home tenant.
    pub home: TenantRef,
    /// Role names held in the home tenant.
    pub roles: Vec<String>,
    /// Capabilities resolved from the roles.
    pub capabilities: BTreeSet<Capability>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// Authentication methods references (RFC 8176), e.g. `["otp","totp"]`.
    pub amr: Vec<String>,
    /// When the user last proved a factor (for step-up).
    pub auth_time: Option<OffsetDateTime>,
    /// The presented token's id (`jti`), when the credential is a token.
    pub token_id: Option<String>,
    /// When the presented token expires.
    pub token_expires_at: Option<OffsetDateTime>,
    /// The sign-in session (refresh family) the token belongs to.
    pub session_id: Option<String>,
}

impl Principal {
    /// The principal's reach, from its home tenant.
    #[must_use]
    pub fn scope_level(&self) -> ScopeLevel {
        Self::scope_level_of(&self.home)
    }

    /// The reach of a principal whose home is `home`.
    #[must_use]
    pub fn scope_level_of(home: &TenantRef) -> ScopeLevel {
        match home.kind {
            TenantKind::System => ScopeLevel::System,
            TenantKind::Partner => ScopeLevel::Partner,
            TenantKind::Tenant if home.has_children => ScopeLevel::Parent,
            TenantKind::Tenant => ScopeLevel::Tenant,
        }
    }
}
