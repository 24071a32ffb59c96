//! Authentication: turning the credential a request presents into an [`Identity`].
//!
//! The pipeline calls one [`Authenticator`]. It answers `None` when the request presents no credential
//! (anonymous), and `Rejected` when it presents one that does not verify; a rejected credential is never
//! downgraded to anonymous on a protected route.
//!
//! The release authenticator is `auth::tokens::BearerAuthenticator` (ES512 access tokens). Tests can
//! also mint principals through the test kit, via [`test_support::TestAuthenticator`], which is compiled
//! only with the `test-auth` feature that the release binary never enables; it delegates every other
//! credential to the real authenticator.

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
    /// The credential's own id (an access token's `jti`), for revocation at logout.
    pub token_id: Option<String>,
    /// When the credential expires (a revocation entry needs to live only until then).
    pub expires_at: Option<OffsetDateTime>,
    /// The sign-in session (refresh family) the credential belongs to.
    pub session_id: Option<String>,
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
    /// The credential could not be checked (the revocation list is unreachable): fail closed.
    Unavailable,
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
    use std::sync::{Arc, OnceLock, RwLock};

    use super::{AuthOutcome, Authenticator, Identity, NoCredentials, async_trait};
    use axum::http::HeaderMap;

    /// Resolves `Authorization: Test <token>` through a table the test kit fills; every other
    /// credential goes to the real authenticator (set when the app is built).
    #[derive(Clone, Default)]
    pub struct TestAuthenticator {
        tokens: Arc<RwLock<HashMap<String, Identity>>>,
        inner: Arc<OnceLock<Arc<dyn Authenticator>>>,
    }

    impl TestAuthenticator {
        /// Registers a token for an identity.
        pub fn insert(&self, token: String, identity: Identity) {
            if let Ok(mut t) = self.tokens.write() {
                t.insert(token, identity);
            }
        }

        /// Sets the real authenticator that handles every other credential.
        pub fn set_inner(&self, inner: Arc<dyn Authenticator>) {
            let _ = self.inner.set(inner);
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
                None => match self.inner.get() {
                    Some(inner) => inner.authenticate(headers).await,
                    None => NoCredentials.authenticate(headers).await,
                },
            }
        }
    }
}
