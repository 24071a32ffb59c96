//! The test kit: [`TestApp::spawn`] runs the real application (built by the same `build` path as
//! `main`) on `127.0.0.1:0` over an isolated database, and hands out typed actors that are already
//! authenticated.
//!
//! Isolation: SQLite gets a temporary file per app; PostgreSQL gets a fresh schema per app in the
//! database named by `TEST_DATABASE_URL` (dropped when the app is dropped). [`each_backend!`] runs one
//! test body on every backend; without `TEST_DATABASE_URL` the PostgreSQL half is skipped with a note,
//! except under `CI=true`, where it fails.
//!
//! Principals come from the server's `test-auth` feature (`Authorization: Test <token>`), which only
//! this dev-only crate enables; the release binary has no such path.

#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test kit fails loudly"
)]

use std::net::SocketAddr;

use palisade_authz::{AuthMethod, BuiltinRole, InternalRole, SystemScope};
use palisade_domain::{Slug, TenantId, TenantKind};
use palisade_server::authn::Identity;
use palisade_server::authn::test_support::TestAuthenticator;
use palisade_server::config::Settings;
use palisade_server::state::AppState;
use palisade_store::{NewTenant, NewUser, Tenant, User};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh schema in `TEST_DATABASE_URL`.
    Postgres,
}

/// The PostgreSQL URL for tests, if configured. Under `CI=true` its absence is a failure.
#[must_use]
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but TEST_DATABASE_URL is not set: PostgreSQL tests must not be skipped in CI"
                );
            }
            eprintln!(
                "note: TEST_DATABASE_URL is not set; skipping the PostgreSQL half of this test"
            );
            None
        }
    }
}

/// A running application.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state: stores and registries, for arranging and asserting side effects.
    pub state: AppState,
    /// Which backend.
    pub backend: Backend,
    auth: TestAuthenticator,
    system_tenant: Tenant,
    _dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        if let Some((url, schema)) = self.pg_schema.take() {
            // Best effort, on a separate thread so Drop works inside and outside a runtime.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(palisade_store_sql::drop_test_schema(&url, &schema));
                }
            })
            .join();
        }
    }
}

impl TestApp {
    /// Spawns the app on `backend` with test settings. Returns `None` for PostgreSQL when it is not
    /// configured (outside CI).
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns the app after letting `configure` adjust the settings.
    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::for_test(dir.path());
        if std::env::var("TEST_LOG").is_ok() {
            std::mem::forget(palisade_server::logging::init("debug"));
        }
        let mut pg_schema = None;
        match backend {
            Backend::Sqlite => {
                settings.database.url =
                    Some(format!("sqlite://{}", dir.path().join("test.db").display()).into());
            }
            Backend::Postgres => {
                let url = postgres_url()?;
                let schema = palisade_store_sql::create_test_schema(&url)
                    .await
                    .expect("create test schema");
                settings.database.url = Some(url.clone().into());
                settings.database.schema = Some(schema.clone());
                settings.database.max_connections = 5;
                pg_schema = Some((url, schema));
            }
        }
        configure(&mut settings);
        Some(Self::launch(settings, dir, backend, pg_schema).await)
    }

    /// A second instance over the same database (and whatever shared state `configure` names), as a
    /// deployment with several instances runs. The first instance keeps ownership of the database.
    pub async fn spawn_sibling(&self, configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = self.state.settings().clone();
        settings.data_dir = dir.path().to_path_buf();
        configure(&mut settings);
        Self::launch(settings, dir, self.backend, None).await
    }

    /// A Redis URL for tests, if configured (`TEST_REDIS_URL`). Under `CI=true` its absence fails.
    #[must_use]
    pub fn redis_url() -> Option<String> {
        match std::env::var("TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!(
                        "CI=true but TEST_REDIS_URL is not set: Redis tests must not be skipped in CI"
                    );
                }
                eprintln!("note: TEST_REDIS_URL is not set; skipping a Redis test");
                None
            }
        }
    }

    async fn launch(
        settings: Settings,
        dir: tempfile::TempDir,
        backend: Backend,
        pg_schema: Option<(String, String)>,
    ) -> Self {
        let auth = TestAuthenticator::default();
        let app = palisade_server::app::build_for_tests(settings, auth.clone())
            .await
            .expect("build the app");
        app.start_background().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = app.router;
        let server = tokio::spawn(async move {
            let _ = palisade_server::app::serve(listener, router, std::future::pending()).await;
        });
        let system_slug = Slug::parse(&app.state.settings().bootstrap.system_tenant).expect("slug");
        let system_tenant = app
            .state
            .stores()
            .tenants
            .resolve_tenant_by_slug(&system_slug)
            .await
            .expect("store")
            .expect("bootstrap created the system tenant");
        Self {
            base_url: format!("http://{addr}"),
            addr,
            state: app.state,
            backend,
            auth,
            system_tenant,
            _dir: dir,
            pg_schema,
            server,
        }
    }

    /// Moves the app's clock forward by `by`: OTP and MFA-token expiry, TOTP steps, the step-up window
    /// and access-token lifetimes see the later time (see `palisade_server::clock`). Only the
    /// `test-auth` build has this; the release binary's clock cannot be moved.
    pub fn advance_clock(&self, by: time::Duration) {
        self.state.clock().advance(by);
    }

    /// Runs raw SQL against the app's database, as an attacker with database access would (tamper
    /// tests). Returns the database's error instead of panicking, so refusals can be asserted.
    pub async fn raw_sql(&self, sql: &str) -> Result<u64, palisade_store::StoreError> {
        use secrecy::ExposeSecret as _;
        let db = &self.state.settings().database;
        let url = db.url.as_ref().expect("test database url");
        let backend = palisade_store_sql::connect(
            url.expose_secret(),
            &palisade_store_sql::ConnectOptions {
                max_connections: 1,
                pg_schema: db.schema.clone(),
                ..palisade_store_sql::ConnectOptions::default()
            },
        )
        .await?;
        let out = backend.execute_raw_for_tests(sql).await;
        backend.close().await;
        out
    }

    /// Every message the development outbox holds, oldest first.
    #[must_use]
    pub fn outbox(&self) -> Vec<Value> {
        let path = self.state.settings().data_dir.join("outbox.ndjson");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (briefly) for the newest code sent to `destination` through the outbox.
    pub async fn code_for(&self, destination: &str, after: usize) -> String {
        for _ in 0..100 {
            let msgs = self.outbox();
            if let Some(m) = msgs
                .iter()
                .skip(after)
                .rfind(|m| m["destination"] == destination)
            {
                return m["code"].as_str().expect("code").to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no code for {destination} in the outbox");
    }

    /// Starts an e-mail OTP sign-in and returns the challenge id with the code from the outbox.
    pub async fn start_otp(&self, email: &str, tenant_slug: &str) -> (String, String) {
        let before = self.outbox().len();
        let res = self
            .anonymous()
            .post(
                "/v1/auth/otp/start",
                &serde_json::json!({"channel": "email", "destination": email, "tenant": tenant_slug}),
            )
            .await;
        assert_eq!(res.status().as_u16(), 202, "otp/start");
        let challenge = json(res).await["challenge_id"]
            .as_str()
            .expect("challenge")
            .to_owned();
        (challenge, self.code_for(email, before).await)
    }

    /// Starts and verifies an OTP sign-in; returns the `otp/verify` body (tokens, or the MFA step).
    pub async fn verify_otp(&self, email: &str, tenant_slug: &str) -> Value {
        let (challenge, code) = self.start_otp(email, tenant_slug).await;
        let res = self
            .anonymous()
            .post(
                "/v1/auth/otp/verify",
                &serde_json::json!({"challenge_id": challenge, "code": code}),
            )
            .await;
        assert_eq!(res.status().as_u16(), 200, "otp/verify");
        json(res).await
    }

    /// Signs in through the real OTP flow (start, code from the outbox, verify) and returns the
    /// token response.
    pub async fn sign_in(&self, email: &str, tenant_slug: &str) -> Value {
        self.verify_otp(email, tenant_slug).await
    }

    /// An actor presenting a real bearer token.
    #[must_use]
    pub fn bearer(&self, access_token: &str) -> Actor {
        Actor {
            base_url: self.base_url.clone(),
            client: client(),
            token: None,
            bearer: Some(access_token.to_owned()),
            tenant_header: None,
            user: None,
            tenant: None,
        }
    }

    /// The system tenant created by bootstrap.
    #[must_use]
    pub fn system_tenant(&self) -> &Tenant {
        &self.system_tenant
    }

    /// An HTTP client with no credential.
    #[must_use]
    pub fn anonymous(&self) -> Actor {
        Actor {
            base_url: self.base_url.clone(),
            client: client(),
            token: None,
            bearer: None,
            tenant_header: None,
            user: None,
            tenant: None,
        }
    }

    /// The bootstrap owner (`system_admin` of the system tenant).
    pub async fn system_admin(&self) -> Actor {
        let scope = SystemScope::internal(InternalRole::Bootstrap)
            .tenant_scope(self.system_tenant.to_ref());
        let email = self.state.settings().bootstrap.owner_email.clone();
        let user = self
            .state
            .stores()
            .users
            .find_user_by_email(&scope, &email)
            .await
            .expect("store")
            .expect("owner exists");
        self.actor_for(user, self.system_tenant.clone())
    }

    /// Creates a tenant directly beneath `parent` (the system tenant when `None`).
    pub async fn tenant_under(
        &self,
        slug: &str,
        kind: TenantKind,
        parent: Option<&Tenant>,
    ) -> TenantFixture<'_> {
        let parent = parent.unwrap_or(&self.system_tenant);
        let scope = SystemScope::internal(InternalRole::Bootstrap).tenant_scope(parent.to_ref());
        let tenant = self
            .state
            .stores()
            .tenants
            .create_child_tenant(
                &scope,
                NewTenant {
                    slug: Slug::parse(slug).expect("slug"),
                    name: slug.to_owned(),
                    kind,
                    allowed_ips: Vec::new(),
                },
                &palisade_store::AuditMeta::system("testkit"),
            )
            .await
            .expect("create tenant");
        TenantFixture { app: self, tenant }
    }

    /// A fixture for a tenant that already exists (e.g. created on a sibling sharing the database).
    #[must_use]
    pub fn fixture(&self, tenant: Tenant) -> TenantFixture<'_> {
        TenantFixture { app: self, tenant }
    }

    /// Creates an ordinary tenant beneath the system tenant.
    pub async fn tenant(&self, slug: &str) -> TenantFixture<'_> {
        self.tenant_under(slug, TenantKind::Tenant, None).await
    }

    /// The users of `tenant` (up to 200), read directly from the store, for asserting side effects.
    pub async fn users_of(&self, tenant: &Tenant) -> Vec<User> {
        let scope = SystemScope::internal(InternalRole::Bootstrap).tenant_scope(tenant.to_ref());
        let page = palisade_store::PageRequest {
            limit: 200,
            after: None,
        };
        self.state
            .stores()
            .users
            .list_users(&scope, &page)
            .await
            .expect("store")
            .items
    }

    /// Every tenant (up to 200), read directly from the store, for asserting side effects.
    pub async fn all_tenants(&self) -> Vec<Tenant> {
        let scope = SystemScope::internal(InternalRole::Bootstrap)
            .tenant_scope(self.system_tenant.to_ref());
        let page = palisade_store::PageRequest {
            limit: 200,
            after: None,
        };
        self.state
            .stores()
            .tenants
            .list_tenants(&scope, &page)
            .await
            .expect("store")
            .items
    }

    /// Re-reads a tenant (e.g. after children were added, for `has_children`).
    pub async fn reload(&self, id: TenantId) -> Tenant {
        self.state
            .stores()
            .tenants
            .resolve_tenant(id)
            .await
            .expect("store")
            .expect("tenant exists")
    }

    fn actor_for(&self, user: User, tenant: Tenant) -> Actor {
        let token = uuid::Uuid::new_v4().to_string();
        self.auth.insert(
            token.clone(),
            Identity {
                user_id: user.id,
                tenant_id: user.tenant_id,
                method: AuthMethod::Test,
                amr: vec!["otp".to_owned()],
                auth_time: None,
                token_version: Some(user.token_version),
                token_id: None,
                expires_at: None,
                session_id: None,
            },
        );
        Actor {
            base_url: self.base_url.clone(),
            client: client(),
            token: Some(token),
            bearer: None,
            tenant_header: None,
            user: Some(user),
            tenant: Some(tenant),
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

/// A tenant created for a test.
pub struct TenantFixture<'a> {
    app: &'a TestApp,
    /// The tenant.
    pub tenant: Tenant,
}

impl TenantFixture<'_> {
    /// A user of this tenant holding `role`, signed in.
    pub async fn user(&self, role: BuiltinRole) -> Actor {
        self.user_with_roles(&[role.name()]).await
    }

    /// A user of this tenant with these role names (unknown names allowed, to test deny-by-default).
    pub async fn user_with_roles(&self, roles: &[&str]) -> Actor {
        let scope = SystemScope::internal(InternalRole::Bootstrap)
            .tenant_scope(self.app.reload(self.tenant.id).await.to_ref());
        let email = format!(
            "{}@{}.test",
            uuid::Uuid::new_v4().simple(),
            self.tenant.slug
        );
        let user = self
            .app
            .state
            .stores()
            .users
            .create_user(
                &scope,
                NewUser {
                    email,
                    phone: None,
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                },
                &palisade_store::AuditMeta::system("testkit"),
            )
            .await
            .expect("create user");
        self.app.actor_for(user, self.tenant.clone())
    }
}

/// A client acting as one principal (or anonymously).
#[derive(Clone)]
pub struct Actor {
    base_url: String,
    client: reqwest::Client,
    token: Option<String>,
    bearer: Option<String>,
    tenant_header: Option<String>,
    /// The user, for authenticated actors.
    pub user: Option<User>,
    /// The home tenant, for authenticated actors.
    pub tenant: Option<Tenant>,
}

impl Actor {
    /// The same actor, selecting another tenant with `X-Tenant-Id`.
    #[must_use]
    pub fn acting_on(&self, tenant: TenantId) -> Self {
        Self {
            tenant_header: Some(tenant.to_string()),
            ..self.clone()
        }
    }

    /// A request builder with the actor's credential.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        if let Some(t) = &self.token {
            rb = rb.header("authorization", format!("Test {t}"));
        }
        if let Some(t) = &self.bearer {
            rb = rb.header("authorization", format!("Bearer {t}"));
        }
        if let Some(t) = &self.tenant_header {
            rb = rb.header("x-tenant-id", t);
        }
        rb
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path)
            .send()
            .await
            .expect("request")
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// PATCH with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path)
            .send()
            .await
            .expect("request")
    }
}

/// Reads a response as JSON (any content type).
pub async fn json(res: Response) -> Value {
    let bytes = res.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
}

/// Runs an `async fn(TestApp)` test on every backend:
/// `each_backend!(name_of_test_fn);` defines `mod name_of_test_fn { sqlite, postgres }`.
#[macro_export]
macro_rules! each_backend {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::TestApp::spawn($crate::Backend::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = $crate::TestApp::spawn($crate::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            }
        )+
    };
}

/// Re-exported for tests.
pub use palisade_authz::BuiltinRole as Role;
