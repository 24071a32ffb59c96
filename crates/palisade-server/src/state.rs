//! Shared application state, passed to handlers and layers (no global statics).

use std::sync::{Arc, OnceLock};

use palisade_authz::CapabilityRegistry;
use palisade_crypto::SignedToken;
use palisade_store::Stores;
use time::Duration;

use crate::authn::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::router::RouteRegistry;
use crate::routes::auth::AuthContext;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    stores: Stores,
    capabilities: CapabilityRegistry,
    authenticator: Arc<dyn Authenticator>,
    metrics: Metrics,
    cursors: SignedToken,
    auth: AuthContext,
    routes: OnceLock<RouteRegistry>,
    openapi: OnceLock<serde_json::Value>,
    trust: crate::trust::Evidence,
    principals: crate::principal_cache::PrincipalCache,
    key_usage: crate::auth::key_usage::KeyUsage,
    policies: crate::policies::PolicyCache,
}

impl AppState {
    /// Assembles the state.
    #[must_use]
    pub fn new(
        settings: Settings,
        stores: Stores,
        capabilities: CapabilityRegistry,
        authenticator: Arc<dyn Authenticator>,
        cursors: SignedToken,
        auth: AuthContext,
    ) -> Self {
        let principals = crate::principal_cache::PrincipalCache::new(
            std::time::Duration::from_secs(settings.auth.principal_cache_secs),
        );
        Self {
            inner: Arc::new(Inner {
                principals,
                settings,
                stores,
                capabilities,
                authenticator,
                metrics: Metrics::new(),
                cursors,
                auth,
                routes: OnceLock::new(),
                openapi: OnceLock::new(),
                trust: crate::trust::Evidence::default(),
                key_usage: crate::auth::key_usage::KeyUsage::default(),
                policies: crate::policies::PolicyCache::default(),
            }),
        }
    }

    /// The principal cache.
    #[must_use]
    pub fn principals(&self) -> &crate::principal_cache::PrincipalCache {
        &self.inner.principals
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The stores.
    #[must_use]
    pub fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// The capability registry.
    #[must_use]
    pub fn capabilities(&self) -> &CapabilityRegistry {
        &self.inner.capabilities
    }

    /// The authenticator.
    #[must_use]
    pub fn authenticator(&self) -> &dyn Authenticator {
        self.inner.authenticator.as_ref()
    }

    /// Metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The cursor signer.
    #[must_use]
    pub fn cursors(&self) -> &SignedToken {
        &self.inner.cursors
    }

    /// How recent `auth_time` must be for capabilities that require MFA.
    #[must_use]
    pub fn step_up_max_age(&self) -> Duration {
        Duration::seconds(
            i64::try_from(self.inner.settings.auth.step_up_max_age_secs).unwrap_or(300),
        )
    }

    /// Sign-in: tokens, shared state, code delivery.
    #[must_use]
    pub fn auth(&self) -> &AuthContext {
        &self.inner.auth
    }

    /// The clock for authentication-time decisions (OTP and MFA-token expiry, TOTP steps, `auth_time`,
    /// the step-up window, token lifetimes). The system clock; only the test kit can move it.
    #[must_use]
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.inner.auth.clock
    }

    /// The clock's current time.
    #[must_use]
    pub fn now(&self) -> time::OffsetDateTime {
        self.inner.auth.clock.now()
    }

    /// The route registry (set once the router is built).
    #[must_use]
    pub fn routes(&self) -> Option<&RouteRegistry> {
        self.inner.routes.get()
    }

    /// The OpenAPI document (set once the router is built).
    #[must_use]
    pub fn openapi(&self) -> Option<&serde_json::Value> {
        self.inner.openapi.get()
    }

    /// The Trust Center's latest self-check results.
    #[must_use]
    pub fn trust(&self) -> &crate::trust::Evidence {
        &self.inner.trust
    }

    /// API-key uses waiting to be written to `last_used_at`.
    #[must_use]
    pub fn key_usage(&self) -> &crate::auth::key_usage::KeyUsage {
        &self.inner.key_usage
    }

    /// Writes the recorded API-key uses now (the periodic task and graceful shutdown call this; tests
    /// may too). Returns the keys updated.
    ///
    /// # Errors
    /// The store's error; the uses are kept for the next flush.
    pub async fn flush_key_usage(&self) -> palisade_store::StoreResult<u64> {
        self.inner.key_usage.flush(&self.inner.stores).await
    }

    /// The Cedar schema and the tenants' compiled policies (see [`crate::policies`]).
    #[must_use]
    pub fn policies(&self) -> &crate::policies::PolicyCache {
        &self.inner.policies
    }

    pub(crate) fn set_routes(&self, routes: RouteRegistry, openapi: serde_json::Value) {
        // Set exactly once in `build`; a second call is ignored.
        let _ = self.inner.routes.set(routes);
        let _ = self.inner.openapi.set(openapi);
    }
}
