//! Authentication: turning the credential a request presents into an [`Identity`].
//!
//! The pipeline calls one [`Authenticator`]. It answers `None` when the request presents no credential
//! (anonymous), and `Rejected` when it presents one that does not verify; a rejected credential is never
//! downgraded to anonymous on a protected route.
//!
//! This build has no sign-in yet (ES512 tokens arrive with issue 5), so the release authenticator,
//! [`NoCredentials`], rejects every credential. Tests get principals through the test kit only, via
//! [`test_support::TestAuthenticator`], which is compiled only with the `test-auth` feature that the
//! release binary never enables.

use async_trait::async_trait;
use axum::http::HeaderMap;
use palisade_authz::AuthMethod;
use palisade_domain::{TenantId, UserId};
use time::OffsetDateTime;

/// Who a verified credential says the caller is. Capabilities are resolved later, from the store.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user.
    pub user_id: UserId,
    /// The user's home tenant.
    pub tenant_id: TenantId,
    /// How the credential was presented.
    pub method: AuthMethod,
    /// Authentication methods references.
    pub amr: Vec<String>,
    /// When the user last proved a factor.
    pub auth_time: Option<OffsetDateTime>,
    /// The token version the credential carries; compared with the user's.
    pub token_version: Option<i64>,
}

/// The result of authenticating a request.
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    /// No credential presented.
    Anonymous,
    /// A verified credential.
    Authenticated(Identity),
    /// A credential was presented and refused; the code says why (e.g. `auth.invalid_token`).
    Rejected(&'static str),
}

/// Verifies credentials.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Authenticates a request from its headers.
    async fn authenticate(&self, headers: &HeaderMap) -> AuthOutcome;
}

/// Whether the request presents any credential header.
#[must_use]
pub fn presents_credential(headers: &HeaderMap) -> bool {
    headers.contains_key(axum::http::header::AUTHORIZATION)
        || headers.contains_key("x-api-key")
        || headers.contains_key("dpop")
}

/// The release authenticator until sign-in exists: every presented credential is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

#[async_trait]
impl Authenticator for NoCredentials {
    async fn authenticate(&self, headers: &HeaderMap) -> AuthOutcome {
        if presents_credential(headers) {
            AuthOutcome::Rejected("auth.invalid_token")
        } else {
            AuthOutcome::Anonymous
        }
    }
}

/// Test-only authentication (feature `test-auth`).
#[cfg(feature = "test-auth")]
pub mod test_support {
    use std::collections::HashMap;
    use std::sync::{Arc, RwLock};

    use super::{AuthOutcome, Authenticator, Identity, NoCredentials, async_trait};
    use axum::http::HeaderMap;

    /// Resolves `Authorization: Test <token>` through a table the test kit fills; anything else is
    /// handled like the release authenticator.
    #[derive(Debug, Clone, Default)]
    pub struct TestAuthenticator {
        tokens: Arc<RwLock<HashMap<String, Identity>>>,
    }

    impl TestAuthenticator {
        /// Registers a token for an identity.
        pub fn insert(&self, token: String, identity: Identity) {
            if let Ok(mut t) = self.tokens.write() {
                t.insert(token, identity);
            }
        }
    }

    #[async_trait]
    impl Authenticator for TestAuthenticator {
        async fn authenticate(&self, headers: &HeaderMap) -> AuthOutcome {
            let presented = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Test "));
            match presented {
                Some(token) => match self.tokens.read().ok().and_then(|t| t.get(token).cloned()) {
                    Some(identity) => AuthOutcome::Authenticated(identity),
                    None => AuthOutcome::Rejected("auth.invalid_token"),
                },
                None => NoCredentials.authenticate(headers).await,
            }
        }
    }
}
