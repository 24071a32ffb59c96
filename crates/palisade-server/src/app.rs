//! Assembly: settings → database → state → routes → pipeline. `main` and the test kit both call
//! [`build`], so tests exercise exactly what runs in production.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method};
use palisade_authz::{BuiltinRole, CapabilityRegistry, InternalRole, SystemScope};
use palisade_crypto::{MasterKey, SignedToken};
use palisade_domain::Slug;
use palisade_store::{NewUser, StoreError, Stores};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::auth::keyring::KeyRing;
use crate::auth::tokens::{BearerAuthenticator, TokenRules, TokenService};
use crate::authn::Authenticator;
use crate::config::{Mode, Settings};
use crate::notify::Outbox;
use crate::pipeline::{self, Cap};
use crate::router::SecureRouter;
use crate::routes::auth::AuthContext;
use crate::state::AppState;
use palisade_crypto::KeyedHasher;

/// Why the server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A configuration verdict is an error.
    #[error("configuration refused:\n{0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(String),
    /// The route table is wrong.
    #[error("routes: {0}")]
    Routes(#[from] crate::router::RouteError),
    /// Key material could not be prepared.
    #[error("keys: {0}")]
    Keys(String),
    /// The shared-state backend could not be reached.
    #[error("state: {0}")]
    State(String),
}

/// A built application, ready to serve.
pub struct App {
    /// The router with the whole pipeline.
    pub router: Router,
    /// Shared state (stores, registries) for tests and the CLI.
    pub state: AppState,
}

/// Builds the application with the release authenticator.
///
/// # Errors
/// [`BuildError`] when the configuration is refused, the database fails, or the route table is wrong.
pub async fn build(settings: Settings) -> Result<App, BuildError> {
    build_with(settings, |real| real).await
}

/// Builds the application with a test authenticator (test kit only).
///
/// # Errors
/// As [`build`].
#[cfg(feature = "test-auth")]
pub async fn build_for_tests(
    settings: Settings,
    test_auth: crate::authn::test_support::TestAuthenticator,
) -> Result<App, BuildError> {
    build_with(settings, move |real| {
        test_auth.set_inner(real);
        Arc::new(test_auth)
    })
    .await
}

async fn build_with(
    settings: Settings,
    wrap_authenticator: impl FnOnce(Arc<dyn Authenticator>) -> Arc<dyn Authenticator>,
) -> Result<App, BuildError> {
    let verdicts = settings.verdicts();
    if Settings::has_errors(&verdicts) {
        let text: Vec<String> = verdicts
            .iter()
            .filter(|v| v.level == crate::config::Level::Error)
            .map(ToString::to_string)
            .collect();
        return Err(BuildError::Config(text.join("\n")));
    }
    prepare_data_dir(&settings)?;
    let master = master_key(&settings)?;
    let stores = open_database(&settings, true).await?;
    let mut capabilities = CapabilityRegistry::with_platform();
    crate::resources::register_capabilities(&settings, &mut capabilities)
        .map_err(BuildError::Config)?;
    let cursors = SignedToken::new(master.derive("palisade/cursor/v1"));
    let auth = auth_context(&settings, &stores, &master).await?;
    let authenticator = wrap_authenticator(Arc::new(BearerAuthenticator::new(auth.tokens.clone())));
    let state = AppState::new(settings, stores, capabilities, authenticator, cursors, auth);
    bootstrap(&state).await?;
    let router = assemble(state.clone())?;
    Ok(App { router, state })
}

impl App {
    /// Starts what only a serving instance needs: the Trust Center's self-checks (now, through the
    /// router, then periodically) and the batched API-key `last_used_at` writes. Maintenance
    /// commands (`migrate`, `audit verify`, `keys rotate`, …) build the app without them.
    pub async fn start_background(&self) {
        crate::trust::start(&self.state, &self.router).await;
        start_key_usage_flush(&self.state);
    }
}

/// Writes API keys' `last_used_at` every `api_keys.last_used_flush_secs` (see
/// [`crate::auth::key_usage`]); the CLI flushes once more after a graceful shutdown.
fn start_key_usage_flush(state: &AppState) {
    let app = state.clone();
    let every = std::time::Duration::from_secs(app.settings().api_keys.last_used_flush_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = app.flush_key_usage().await {
                tracing::error!(target: "palisade::api_keys", error = %e, "writing API-key last_used_at failed; kept for the next flush");
            }
        }
    });
}

/// The token issuer: `auth.issuer`, else `server.public_url`, else `http://<listen>`.
#[must_use]
pub fn issuer(settings: &Settings) -> String {
    settings
        .auth
        .issuer
        .clone()
        .or_else(|| settings.server.public_url.clone())
        .unwrap_or_else(|| format!("http://{}", settings.server.listen))
}

/// Connects the shared state and opens the key ring.
///
/// # Errors
/// [`BuildError`] when the state backend is unreachable or the keys cannot be opened.
pub async fn auth_context(
    settings: &Settings,
    stores: &Stores,
    master: &MasterKey,
) -> Result<AuthContext, BuildError> {
    let opts = palisade_state::StateOptions {
        key_prefix: settings.state.key_prefix.clone(),
        ..palisade_state::StateOptions::default()
    };
    let state = palisade_state::connect(&settings.state.url, &opts)
        .await
        .map_err(|e| BuildError::State(e.to_string()))?;
    let access_ttl =
        time::Duration::seconds(i64::try_from(settings.auth.access_ttl_secs).unwrap_or(900));
    let keys = KeyRing::open(
        stores.signing_keys.clone(),
        master.derive("palisade/signing-key/v1"),
        access_ttl,
    )
    .await
    .map_err(|e| BuildError::Keys(e.to_string()))?;
    let rules = TokenRules {
        issuer: issuer(settings),
        audience: settings.auth.audience.clone(),
        access_ttl,
        leeway: std::time::Duration::from_secs(settings.auth.leeway_secs.min(60)),
        cache_verifications: settings.auth.cache_verifications,
    };
    let clock = crate::clock::Clock::system();
    let tokens = Arc::new(TokenService::new(
        Arc::new(keys),
        state.revocations.clone(),
        rules,
        clock.clone(),
    ));
    Ok(AuthContext {
        tokens,
        state,
        sender: code_sender(settings)?,
        code_hasher: KeyedHasher::new(master.derive("palisade/otp-code/v1")),
        destination_hasher: KeyedHasher::new(master.derive("palisade/otp-destination/v1")),
        refresh_hasher: KeyedHasher::new(master.derive("palisade/refresh-token/v1")),
        recovery_hasher: KeyedHasher::new(master.derive("palisade/recovery-code/v1")),
        api_key_hasher: KeyedHasher::new(master.derive("palisade/api-key/v1")),
        session_hasher: KeyedHasher::new(master.derive("palisade/session-cookie/v1")),
        csrf_hasher: KeyedHasher::new(master.derive("palisade/csrf-token/v1")),
        totp_key: master.derive("palisade/totp/v1"),
        clock,
    })
}

/// The code sender: e-mail by `auth.otp.sender` (SMTP, else the development outbox); SMS through the
/// `[sms]` gateway when one is configured, else the same sender as e-mail (the outbox records both in
/// development; with SMTP, `otp/start` refuses the SMS channel).
fn code_sender(settings: &Settings) -> Result<Arc<dyn crate::notify::CodeSender>, BuildError> {
    let ttl = settings.auth.otp.code_ttl_secs;
    let email: Arc<dyn crate::notify::CodeSender> =
        match (settings.auth.otp.sender.as_str(), &settings.auth.otp.smtp) {
            ("smtp", Some(smtp)) => Arc::new(
                crate::notify::Smtp::new(smtp, ttl)
                    .map_err(|e| BuildError::Config(format!("auth.otp.smtp: {e}")))?,
            ),
            _ => Arc::new(Outbox::new(settings.data_dir.join("outbox.ndjson"))),
        };
    Ok(match &settings.sms {
        Some(sms) => Arc::new(crate::notify::Routed {
            email,
            sms: Arc::new(
                crate::notify::SmsGateway::new(sms, ttl)
                    .map_err(|e| BuildError::Config(format!("sms: {e}")))?,
            ),
        }),
        None => email,
    })
}

/// Opens the configured database and, when asked, runs its migrations.
///
/// # Errors
/// [`BuildError::Database`].
pub async fn open_database(settings: &Settings, migrate: bool) -> Result<Stores, BuildError> {
    let url = settings.database_url();
    let opts = palisade_store_sql::ConnectOptions {
        max_connections: settings.database.max_connections,
        pg_schema: settings.database.schema.clone(),
        ..palisade_store_sql::ConnectOptions::default()
    };
    let backend = palisade_store_sql::connect(url.expose_secret(), &opts)
        .await
        .map_err(|e| BuildError::Database(describe_store_error(&e)))?;
    if migrate {
        backend
            .migrate()
            .await
            .map_err(|e| BuildError::Database(describe_store_error(&e)))?;
    }
    Ok(backend.stores())
}

fn describe_store_error(e: &StoreError) -> String {
    // The source chain names the failing step (file, connection) without values from the URL.
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&crate::config::redact_url_password(&s.to_string()));
        src = s.source();
    }
    text
}

/// The master key: configured, or in development generated once into `data_dir/master.key` (0600).
///
/// # Errors
/// [`BuildError::Keys`] when the key file cannot be read or written, or production lacks a key.
pub fn master_key(settings: &Settings) -> Result<MasterKey, BuildError> {
    if let Some(k) = &settings.secrets.master_key {
        return Ok(MasterKey::new(k.clone()));
    }
    if settings.mode == Mode::Production {
        return Err(BuildError::Keys("secrets.master_key is not set".to_owned()));
    }
    let path = settings.data_dir.join("master.key");
    if path.exists() {
        let raw = std::fs::read_to_string(&path)
            .map_err(|e| BuildError::Keys(format!("{}: {}", path.display(), e.kind())))?;
        return Ok(MasterKey::new(SecretString::from(raw.trim().to_owned())));
    }
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| BuildError::Keys(format!("{}: {}", settings.data_dir.display(), e.kind())))?;
    let key = MasterKey::generate_development();
    write_private_file(&path, key.expose_secret())
        .map_err(|e| BuildError::Keys(format!("{}: {}", path.display(), e.kind())))?;
    Ok(MasterKey::new(key))
}

/// Creates the data directory (mode 0700) when the embedded defaults need it: a generated key or the
/// default SQLite file. An operator-provided directory keeps its permissions.
fn prepare_data_dir(settings: &Settings) -> Result<(), BuildError> {
    let needs_dir = settings.secrets.master_key.is_none() || settings.database.url.is_none();
    if !needs_dir || settings.data_dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(&settings.data_dir)
        .map_err(|e| BuildError::Keys(format!("{}: {}", settings.data_dir.display(), e.kind())))
}

fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

/// First start: the system tenant and its owner (`system_admin`). Idempotent.
///
/// # Errors
/// [`BuildError::Database`] when the store refuses.
pub async fn bootstrap(state: &AppState) -> Result<BootstrapOutcome, BuildError> {
    let settings = state.settings();
    let db = |e: StoreError| BuildError::Database(describe_store_error(&e));
    let slug = Slug::parse(&settings.bootstrap.system_tenant)
        .map_err(|e| BuildError::Config(format!("bootstrap.system_tenant: {e}")))?;
    let system = SystemScope::internal(InternalRole::Bootstrap);
    let stores = state.stores();
    let (tenant, created_tenant) = match stores
        .tenants
        .resolve_tenant_by_slug(&slug)
        .await
        .map_err(db)?
    {
        Some(t) => (t, false),
        None => match stores
            .tenants
            .create_system_tenant(
                &system,
                slug.clone(),
                "System".to_owned(),
                &palisade_store::AuditMeta::system("bootstrap"),
            )
            .await
        {
            Ok(t) => (t, true),
            // Another instance bootstrapped at the same moment.
            Err(StoreError::Conflict { .. }) => {
                let t = stores
                    .tenants
                    .resolve_tenant_by_slug(&slug)
                    .await
                    .map_err(db)?;
                (
                    t.ok_or_else(|| {
                        BuildError::Database("system tenant vanished during bootstrap".to_owned())
                    })?,
                    false,
                )
            }
            Err(e) => return Err(db(e)),
        },
    };
    if tenant.kind != palisade_domain::TenantKind::System {
        return Err(BuildError::Config(format!(
            "bootstrap.system_tenant names `{slug}`, which exists but is not the system tenant"
        )));
    }
    let scope = system.tenant_scope(tenant.to_ref());
    let email = crate::validate::email(&settings.bootstrap.owner_email).map_err(|_| {
        BuildError::Config("bootstrap.owner_email is not an e-mail address".to_owned())
    })?;
    let created_owner = match stores
        .users
        .find_user_by_email(&scope, &email)
        .await
        .map_err(db)?
    {
        Some(_) => false,
        None => {
            let new = NewUser {
                email: email.clone(),
                phone: None,
                roles: vec![BuiltinRole::SystemAdmin.name().to_owned()],
            };
            match stores
                .users
                .create_user(&scope, new, &palisade_store::AuditMeta::system("bootstrap"))
                .await
            {
                Ok(_) => true,
                Err(StoreError::Conflict { .. }) => false,
                Err(e) => return Err(db(e)),
            }
        }
    };
    if created_tenant || created_owner {
        tracing::info!(target: "palisade::bootstrap", internal_role = system.role().as_str(), tenant = %tenant.id, created_tenant, created_owner, "bootstrap");
    }
    Ok(BootstrapOutcome {
        system_tenant: tenant.id.to_string(),
        created_tenant,
        created_owner,
    })
}

/// What bootstrap did.
#[derive(Debug, Clone)]
pub struct BootstrapOutcome {
    /// The system tenant's id.
    pub system_tenant: String,
    /// Whether it was created now.
    pub created_tenant: bool,
    /// Whether the owner was created now.
    pub created_owner: bool,
}

async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError::NotFound {
        code: "route.not_found",
    }
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::IF_MATCH,
                axum::http::header::IF_NONE_MATCH,
                HeaderName::from_static("x-tenant-id"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-csrf-token"),
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("dpop"),
            ])
            .expose_headers([
                axum::http::header::ETAG,
                axum::http::header::LOCATION,
                axum::http::header::RETRY_AFTER,
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Registers the routes and wraps them in the pipeline.
///
/// # Errors
/// [`BuildError::Routes`] when the route table is refused.
pub fn assemble(state: AppState) -> Result<Router, BuildError> {
    let (router, registry) =
        crate::routes::register(SecureRouter::new(state.clone())).finish(state.capabilities())?;
    let doc = crate::openapi::document(&registry, state.capabilities())?;
    state
        .metrics()
        .set_routes(registry.entries().iter().map(|e| e.path));
    state.set_routes(registry, doc);
    let settings = state.settings();
    let cap = Cap(Arc::new(Semaphore::new(settings.server.max_concurrency)));
    let mut router = router
        .fallback(not_found)
        .layer(CatchPanicLayer::custom(pipeline::panic_response))
        .layer(RequestBodyLimitLayer::new(settings.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), cap),
            pipeline::admission,
        ));
    if let Some(cors) = cors_layer(&settings.server.cors_allowed_origins) {
        router = router.layer(cors);
    }
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pipeline::edge,
        ))
        .with_state(state);
    Ok(router)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
