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
        Self {
            inner: Arc::new(Inner {
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
                policies: crate::policies::PolicyCache::default(),
            }),
        }
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
