//! Configuration: one typed [`Settings`], layered defaults → `palisade.toml` → environment
//! (`PALISADE__SECTION__KEY`) → command-line flags, validated once at start.
//!
//! Invariants:
//! - Secrets are held in `secrecy` types and can be given inline or as `*_file` (env
//!   `PALISADE__…_FILE`) naming a file that holds them; setting both is an error.
//! - [`Settings::verdicts`] is the single source of start-up judgement: `palisade serve` refuses to bind
//!   when it reports an error, and `palisade config check` prints the same list. Messages name the
//!   setting, never its value.
//! - Unknown keys in known sections are errors (a typo must not silently fall back to a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use palisade_crypto::MasterKey;
use palisade_store::{AuditCategory, RetentionPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Development or production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Generated keys and the development outbox are allowed; weak settings warn.
    Development,
    /// Weak, default or generated secrets stop the server before it binds.
    Production,
}

impl Mode {
    /// The configuration spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to bind.
    pub listen: SocketAddr,
    /// How many reverse proxies in front append to `X-Forwarded-For`; 0 ignores the header.
    pub trusted_proxy_hops: u8,
    /// Requests in flight at once; more are shed with 503 and `Retry-After`.
    pub max_concurrency: usize,
    /// Seconds a request may take before it is answered with 503.
    pub request_timeout_secs: u64,
    /// Origins allowed by CORS; empty denies every cross-origin browser request.
    pub cors_allowed_origins: Vec<String>,
    /// Whether to send the security headers. Turning this off is refused in production.
    pub security_headers: bool,
    /// The public base URL (used for `Location` and, later, token `iss`).
    pub public_url: Option<String>,
    /// Client networks allowed to use platform administration routes (capabilities that are
    /// system-only, and `platform.tenant.create`); empty allows any address. Refusal: 403
    /// `network.ip_not_allowed`.
    pub admin_allowed_ips: Vec<IpNet>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            trusted_proxy_hops: 0,
            max_concurrency: 1024,
            request_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
            security_headers: true,
            public_url: None,
            admin_allowed_ips: Vec::new(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest accepted request body; more is answered 413.
    pub max_body_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://user@host/db`. May hold a password, so it is a secret.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub url: Option<SecretString>,
    /// A file holding the URL.
    pub url_file: Option<PathBuf>,
    /// Pool size.
    pub max_connections: u32,
    /// PostgreSQL only: the schema to use (its `search_path`); default `public`.
    pub schema: Option<String>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            max_connections: 10,
            schema: None,
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// `memory://` (one instance) or `redis://host:port` (several instances).
    pub url: String,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            url: "memory://".to_owned(),
            key_prefix: "palisade:".to_owned(),
        }
    }
}

/// `[secrets]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretSettings {
    /// The master secret every purpose key derives from (at least 32 bytes).
    #[serde(serialize_with = "serialize_secret_opt")]
    pub master_key: Option<SecretString>,
    /// A file holding the master secret.
    pub master_key_file: Option<PathBuf>,
}

/// `[bootstrap]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapSettings {
    /// Slug of the system tenant created on first start.
    pub system_tenant: String,
    /// E-mail of the owner user created on first start (role `system_admin`).
    pub owner_email: String,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        Self {
            system_tenant: "system".to_owned(),
            owner_email: "owner@localhost".to_owned(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Client networks allowed to read `/metrics`.
    pub allowed_ips: Vec<IpNet>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        let v4: IpNet = IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]));
        let v6: IpNet = IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        Self {
            allowed_ips: vec![v4, v6],
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Entries older than this are pruned (a signed checkpoint keeps the rest of the chain
    /// verifiable). `0` keeps everything. Default 90. The default of every category.
    pub retention_days: u32,
    /// `[audit.retention]`: days per category, overriding `retention_days`.
    pub retention: AuditRetention,
    /// How often the retention jobs (audit and records) run, in seconds (default 3600).
    pub retention_interval_secs: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention_days: 90,
            retention: AuditRetention::default(),
            retention_interval_secs: 3600,
        }
    }
}

/// `[audit.retention]`: how many days each category of entries is kept (`0`: forever); an absent
/// category keeps `[audit] retention_days`. Categories: see `palisade_store::AuditCategory`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditRetention {
    /// Security events that change no row (refresh-token reuse).
    pub security: Option<u32>,
    /// Sessions and second factors (logout everywhere, TOTP on/off).
    pub auth: Option<u32>,
    /// Tenants, users and roles.
    pub platform: Option<u32>,
    /// API keys.
    pub api_keys: Option<u32>,
    /// Records of declared resources.
    pub records: Option<u32>,
}

impl AuditSettings {
    /// The days each category is kept (`0`: forever).
    #[must_use]
    pub fn category_days(&self) -> Vec<(AuditCategory, u32)> {
        let r = &self.retention;
        AuditCategory::ALL
            .iter()
            .map(|c| {
                let set = match c {
                    AuditCategory::Security => r.security,
                    AuditCategory::Auth => r.auth,
                    AuditCategory::Platform => r.platform,
                    AuditCategory::ApiKeys => r.api_keys,
                    AuditCategory::Records => r.records,
                };
                (*c, set.unwrap_or(self.retention_days))
            })
            .collect()
    }

    /// The retention policy as of `now`.
    #[must_use]
    pub fn policy(&self, now: time::OffsetDateTime) -> RetentionPolicy {
        RetentionPolicy::new(now, self.retention_days, self.category_days())
    }

    /// Findings about per-category retention: one chain per tenant can only be cut at its oldest
    /// end, so a category kept much longer than another holds back pruning of everything after it.
    fn verdicts(&self) -> Vec<Verdict> {
        let days = self.category_days();
        let forever: Vec<&str> = days
            .iter()
            .filter(|(_, d)| *d == 0)
            .map(|(c, _)| c.as_str())
            .collect();
        let finite: Vec<(AuditCategory, u32)> =
            days.iter().copied().filter(|(_, d)| *d > 0).collect();
        let mut v = Vec::new();
        if !forever.is_empty() && !finite.is_empty() {
            v.push(Verdict::warning(
                "audit.retention",
                format!(
                    "keeps {} forever: pruning stops at the oldest such entry, so later entries of every \
                     other category are kept too",
                    forever.join(", ")
                ),
            ));
        }
        let shortest = finite.iter().min_by_key(|(_, d)| *d);
        let longest = finite.iter().max_by_key(|(_, d)| *d);
        if let (Some((short, s)), Some((long, l))) = (shortest, longest)
            && *l >= s.saturating_mul(4)
        {
            v.push(Verdict::warning(
                "audit.retention",
                format!(
                    "{long} ({l} days) is kept at least 4 times longer than {short} ({s} days): one \
                     audit chain per tenant is pruned only from its oldest end, so an entry of {long} \
                     holds back pruning of every later entry; {short} entries may live up to {l} days"
                ),
            ));
        }
        v
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A tracing filter, e.g. `info` or `palisade_server=debug,info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

/// `[trust]`: organisational facts shown by the Trust Center, labelled as declared (never verified by
/// the server), and how often its self-checks run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSettings {
    /// security.txt `Contact` (a `mailto:` or `https:` URI). Required in production.
    pub contact: Option<String>,
    /// security.txt `Policy`.
    pub policy: Option<String>,
    /// security.txt `Preferred-Languages` (default `["en"]`).
    pub preferred_languages: Vec<String>,
    /// Seconds between two runs of the self-checks (default 600; 10 to 86 400).
    pub check_interval_secs: u64,
    /// Where the data is hosted, e.g. `"EU (Frankfurt)"`.
    pub regions: Vec<String>,
    /// Third parties that process data.
    pub subprocessors: Vec<TrustSubprocessor>,
    /// Incident response commitments, e.g. `"critical: 4 h acknowledgement, 24 h mitigation"`.
    pub incident_response: Option<String>,
    /// Certifications held.
    pub certifications: Vec<TrustCertification>,
    /// Penetration tests performed.
    pub pen_tests: Vec<TrustPenTest>,
}

impl Default for TrustSettings {
    fn default() -> Self {
        Self {
            contact: None,
            policy: None,
            preferred_languages: vec!["en".to_owned()],
            check_interval_secs: 600,
            regions: Vec::new(),
            subprocessors: Vec::new(),
            incident_response: None,
            certifications: Vec::new(),
            pen_tests: Vec::new(),
        }
    }
}

/// `[[trust.subprocessors]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSubprocessor {
    /// Who.
    pub name: String,
    /// What they do with the data.
    pub purpose: String,
    /// Where.
    pub region: Option<String>,
}

/// `[[trust.certifications]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustCertification {
    /// E.g. `ISO/IEC 27001`.
    pub name: String,
    /// Who issued it.
    pub issuer: Option<String>,
    /// Until when (free text or a date).
    pub valid_until: Option<String>,
}

/// `[[trust.pen_tests]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPenTest {
    /// Who tested.
    pub provider: String,
    /// When (a date).
    pub date: String,
    /// What was in scope.
    pub scope: Option<String>,
}

/// `[auth]`: tokens and sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Token `iss`; defaults to `server.public_url`, else `http://<listen>`.
    pub issuer: Option<String>,
    /// Token `aud`.
    pub audience: String,
    /// Access-token lifetime (default 15 minutes).
    pub access_ttl_secs: u64,
    /// Refresh-token lifetime (default 30 days).
    pub refresh_ttl_secs: u64,
    /// How recent `auth_time` must be for capabilities that require MFA (default 300 s).
    pub step_up_max_age_secs: u64,
    /// Clock leeway for `exp`, `nbf`, `iat` (at most 60 s).
    pub leeway_secs: u64,
    /// Cache verified token signatures until `exp` (revocation is still checked every time).
    pub cache_verifications: bool,
    /// How long a resolved principal (user, roles, capabilities) may be served from the in-process
    /// cache; every change through the API invalidates it at once (default 30 s; 0 turns it off).
    pub principal_cache_secs: u64,
    /// `[auth.otp]`.
    pub otp: OtpSettings,
    /// `[auth.sessions]`: browser sessions (cookie + CSRF token), off by default.
    pub sessions: SessionSettings,
}

/// `[auth.sessions]`: optional browser sessions (`docs/sessions.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// Whether sign-in may set a session cookie on request (`"session": true`); off by default, and
    /// while off a session cookie is ignored.
    pub enabled: bool,
    /// A session unused for this long ends (default 30 minutes).
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in, however active (default 12 hours).
    pub absolute_lifetime_secs: u64,
    /// Send the cookie `Secure` with the `__Host-` name prefix (default). `false` drops both, for
    /// development over plain http on a host other than localhost; refused in production.
    pub secure_cookie: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            idle_timeout_secs: 1800,
            absolute_lifetime_secs: 12 * 3600,
            secure_cookie: true,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: "palisade".to_owned(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            step_up_max_age_secs: 300,
            leeway_secs: 30,
            cache_verifications: true,
            principal_cache_secs: 30,
            otp: OtpSettings::default(),
            sessions: SessionSettings::default(),
        }
    }
}

/// A count within a window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowLimit {
    /// How many.
    pub count: u64,
    /// Within how many seconds.
    pub window_secs: u64,
}

/// `[auth.otp]`: one-time codes by e-mail and SMS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpSettings {
    /// `outbox` (development: `data_dir/outbox.ndjson`, refused in production) or `none` (sign-in by
    /// one-time code disabled).
    pub sender: String,
    /// How long a code is valid (default 10 minutes).
    pub code_ttl_secs: u64,
    /// Wrong codes before a challenge dies (default 5).
    pub max_attempts: u32,
    /// Codes sent to one destination.
    pub per_destination: WindowLimit,
    /// Challenges started from one client IP.
    pub per_ip: WindowLimit,
    /// E-mails sent per day, deployment-wide.
    pub daily_cap_email: u64,
    /// SMS sent per day, deployment-wide.
    pub daily_cap_sms: u64,
    /// Disposable e-mail domains refused in addition to the shipped list.
    pub disposable_domains: Vec<String>,
    /// `[auth.otp.smtp]`, used when `sender = "smtp"`.
    pub smtp: Option<SmtpSettings>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required), usually port 587.
    Starttls,
    /// TLS from the first byte, usually port 465.
    Tls,
    /// No encryption: development only (refused in production).
    None,
}

/// `[auth.otp.smtp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// The relay's host name.
    pub host: String,
    /// Port; defaults to 587 (STARTTLS), 465 (TLS) or 25 (none).
    pub port: Option<u16>,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// The `From` address, e.g. `Palisade <no-reply@example.com>`.
    pub from: String,
    /// Login name, if the relay needs one.
    pub username: Option<String>,
    /// Password (a secret; or `password_file`).
    #[serde(default, serialize_with = "serialize_secret_opt")]
    pub password: Option<SecretString>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
}

impl Default for OtpSettings {
    fn default() -> Self {
        Self {
            sender: "outbox".to_owned(),
            code_ttl_secs: 600,
            max_attempts: 5,
            per_destination: WindowLimit {
                count: 5,
                window_secs: 900,
            },
            per_ip: WindowLimit {
                count: 30,
                window_secs: 900,
            },
            daily_cap_email: 50_000,
            daily_cap_sms: 10_000,
            disposable_domains: Vec::new(),
            smtp: None,
        }
    }
}

/// `[sms]`: an HTTPS SMS gateway that delivers one-time codes sent by SMS (e-mail keeps going to
/// `auth.otp.sender`). Each code is one JSON `POST` to `url` with `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// The gateway endpoint. `https://` is required in production; plain `http://` is accepted in
    /// development only (local test gateways).
    pub url: String,
    /// The bearer token (a secret; or `token_file`). Required in production.
    #[serde(default, serialize_with = "serialize_secret_opt")]
    pub token: Option<SecretString>,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// Sender id or number, sent as `from` (omitted when unset).
    pub from: Option<String>,
    /// Seconds before a request is abandoned (1–60, default 10).
    #[serde(default = "default_sms_timeout_secs")]
    pub timeout_secs: u64,
    /// The JSON body to send instead of the fixed `{"to","text","from"?}`: a JSON object whose string
    /// values may hold the placeholders `{to}`, `{text}`, `{code}` and `{from}` (substituted as JSON
    /// strings, so a value can never break out of its string).
    pub body: Option<serde_json::Value>,
}

fn default_sms_timeout_secs() -> u64 {
    10
}

/// The placeholders an `[sms] body` template may use.
pub const SMS_PLACEHOLDERS: &[&str] = &["to", "text", "code", "from"];

/// One GCRA quota: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateQuota {
    /// Sustained requests per second (1–1,000,000).
    pub per_second: u32,
    /// Requests admitted at once (at least 1).
    pub burst: u32,
}

impl RateQuota {
    /// The limiter's quota, or `None` when a value is out of range (refused by the verdicts).
    #[must_use]
    pub fn quota(self) -> Option<palisade_state::Quota> {
        palisade_state::Quota::new(self.per_second, self.burst).ok()
    }
}

/// `[rate_limit]`: GCRA limits; the backend follows `[state]` (in-process, or Redis with a
/// per-instance fallback).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Whether requests are limited at all. Turning it off is refused in production.
    pub enabled: bool,
    /// Per signed-in user (later: per API key and OAuth client).
    pub default: RateQuota,
    /// Per client IP (IPv6: per /64) for callers without a credential.
    pub anonymous: RateQuota,
    /// The `/v1/auth/*` endpoints, per client IP, whoever calls.
    pub auth: RateQuota,
    /// Overrides of `default` for the users and API keys of a tenant, by tenant id.
    pub tenants: std::collections::BTreeMap<String, RateQuota>,
    /// The most an API key's own `rate_limit` may ask for (checked at creation, and applied again at
    /// every use, so lowering it takes effect at once).
    pub api_key_max: RateQuota,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            default: RateQuota {
                per_second: 10,
                burst: 20,
            },
            anonymous: RateQuota {
                per_second: 5,
                burst: 10,
            },
            auth: RateQuota {
                per_second: 1,
                burst: 5,
            },
            tenants: std::collections::BTreeMap::new(),
            api_key_max: RateQuota {
                per_second: 1_000,
                burst: 2_000,
            },
        }
    }
}

/// `[waf]`: checks on every JSON request body before the handler, and blocking after bursts of
/// violations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WafSettings {
    /// Whether bodies are checked. Turning it off is refused in production.
    pub enabled: bool,
    /// Longest string (object keys included), in characters.
    pub max_string_chars: usize,
    /// Most URLs in one body.
    pub max_urls: usize,
    /// Most phone numbers in one body.
    pub max_phones: usize,
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
    /// Most JSON values (containers, strings, keys, numbers, literals) in one body.
    pub max_elements: usize,
    /// Violations by one client (user, or IP without a credential) within `violation_window_secs`
    /// that block it.
    pub violations_before_block: u64,
    /// The window in which violations are counted.
    pub violation_window_secs: u64,
    /// How long a block lasts.
    pub block_secs: u64,
}

impl Default for WafSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_string_chars: 8_192,
            max_urls: 5,
            max_phones: 3,
            max_depth: 32,
            max_elements: 10_000,
            violations_before_block: 10,
            violation_window_secs: 60,
            block_secs: 900,
        }
    }
}

/// `[api_keys]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeySettings {
    /// How often recorded key uses are written to `last_used_at` (1–3600 s; also at shutdown).
    pub last_used_flush_secs: u64,
}

impl Default for ApiKeySettings {
    fn default() -> Self {
        Self {
            last_used_flush_secs: 30,
        }
    }
}

/// All settings. (Top-level unknown keys land in `pending` and are judged by [`Settings::verdicts`].)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Development or production.
    pub mode: Mode,
    /// Where generated keys, the SQLite file and the outbox live.
    pub data_dir: PathBuf,
    /// `[server]`.
    pub server: ServerSettings,
    /// `[limits]`.
    pub limits: LimitSettings,
    /// `[database]`.
    pub database: DatabaseSettings,
    /// `[state]`.
    pub state: StateSettings,
    /// `[secrets]`.
    pub secrets: SecretSettings,
    /// `[bootstrap]`.
    pub bootstrap: BootstrapSettings,
    /// `[metrics]`.
    pub metrics: MetricsSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[trust]`.
    pub trust: TrustSettings,
    /// `[auth]`.
    pub auth: AuthSettings,
    /// `[audit]`.
    pub audit: AuditSettings,
    /// `[rate_limit]`.
    pub rate_limit: RateLimitSettings,
    /// `[waf]`.
    pub waf: WafSettings,
    /// `[sms]`: the SMS gateway, when codes may be sent by SMS.
    pub sms: Option<SmsSettings>,
    /// `[api_keys]`.
    pub api_keys: ApiKeySettings,
    /// `[[resource]]`: the declared resources served at `/v1/{name}` (checked by [`Settings::verdicts`]).
    #[serde(rename = "resource")]
    pub resources: Vec<palisade_domain::resource::ResourceDecl>,
    /// Sections of the configuration contract that later features implement (rate limiting, OTP,
    /// webhooks, privacy). Accepted so one `palisade.toml` serves every version;
    /// `config check` warns that this build does not act on them yet.
    #[serde(flatten, serialize_with = "serialize_pending")]
    pub pending: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Development,
            data_dir: PathBuf::from("./data"),
            server: ServerSettings::default(),
            limits: LimitSettings::default(),
            database: DatabaseSettings::default(),
            state: StateSettings::default(),
            secrets: SecretSettings::default(),
            bootstrap: BootstrapSettings::default(),
            metrics: MetricsSettings::default(),
            log: LogSettings::default(),
            trust: TrustSettings::default(),
            auth: AuthSettings::default(),
            audit: AuditSettings::default(),
            rate_limit: RateLimitSettings::default(),
            waf: WafSettings::default(),
            sms: None,
            api_keys: ApiKeySettings::default(),
            resources: Vec::new(),
            pending: std::collections::BTreeMap::new(),
        }
    }
}

fn serialize_secret_opt<S: serde::Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    // SECURITY: secrets never serialise; defaults merged through figment carry `None` only.
    match v {
        Some(_) => s.serialize_str("[REDACTED]"),
        None => s.serialize_none(),
    }
}

fn serialize_pending<S: serde::Serializer>(
    v: &std::collections::BTreeMap<String, serde_json::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, val) in v {
        m.serialize_entry(k, val)?;
    }
    m.end()
}

/// Sections later features implement; anything else unknown at the top level is an error.
pub const PENDING_SECTIONS: &[&str] = &["webhooks", "privacy", "oauth", "vault"];

/// Command-line overrides, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--mode`.
    pub mode: Option<Mode>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// Why configuration could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, environment or flags do not fit the settings' shape.
    #[error("{0}")]
    Invalid(String),
    /// A secret file could not be read.
    #[error("{setting}: cannot read the file it names ({reason})")]
    SecretFile {
        /// The setting.
        setting: &'static str,
        /// The I/O error kind (never the content).
        reason: String,
    },
}

/// How serious a verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Stops `serve`; `config check` exits non-zero.
    Error,
    /// Printed; does not stop.
    Warning,
    /// For the record (e.g. "a development key was generated").
    Info,
}

/// One judgement about the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// How serious.
    pub level: Level,
    /// The setting it concerns, e.g. `secrets.master_key`.
    pub setting: String,
    /// What is wrong and what to do, never the value.
    pub message: String,
}

impl Verdict {
    fn error(setting: &str, message: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
    fn warning(setting: &str, message: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        };
        write!(f, "{tag}: {}: {}", self.setting, self.message)
    }
}

impl Settings {
    /// Loads settings: defaults, then `file` (when given, or `./palisade.toml` when it exists), then the
    /// environment, then `overrides`; then resolves `*_file` secrets.
    ///
    /// # Errors
    /// [`ConfigError`] when a layer does not fit the settings' shape or a secret file cannot be read.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("PALISADE__").split("__"))
    }

    /// [`Settings::load`] with an explicit environment provider (tests pass a fixed one).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Invalid(format!(
                        "configuration file {} does not exist",
                        path.display()
                    )));
                }
                fig = fig.merge(Toml::file_exact(path));
            }
            None => {
                let default = Path::new("palisade.toml");
                if default.exists() {
                    fig = fig.merge(Toml::file_exact(default));
                }
            }
        }
        fig = fig.merge(env);
        let mut settings: Settings = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(describe_figment_error(&e)))?;
        if let Some(l) = overrides.listen {
            settings.server.listen = l;
        }
        if let Some(u) = &overrides.database_url {
            settings.database.url = Some(SecretString::from(u.clone()));
            settings.database.url_file = None;
        }
        if let Some(m) = overrides.mode {
            settings.mode = m;
        }
        if let Some(d) = &overrides.data_dir {
            settings.data_dir = d.clone();
        }
        settings.resolve_secret_files()?;
        Ok(settings)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = self.secrets.master_key_file.clone() {
            if self.secrets.master_key.is_some() {
                return Err(ConfigError::Invalid(
                    "secrets.master_key and secrets.master_key_file are both set; set one"
                        .to_owned(),
                ));
            }
            self.secrets.master_key = Some(read_secret_file("secrets.master_key_file", &path)?);
        }
        if let Some(smtp) = self.auth.otp.smtp.as_mut()
            && let Some(path) = smtp.password_file.clone()
        {
            if smtp.password.is_some() {
                return Err(ConfigError::Invalid(
                    "auth.otp.smtp.password and auth.otp.smtp.password_file are both set; set one"
                        .to_owned(),
                ));
            }
            smtp.password = Some(read_secret_file("auth.otp.smtp.password_file", &path)?);
        }
        if let Some(sms) = self.sms.as_mut()
            && let Some(path) = sms.token_file.clone()
        {
            if sms.token.is_some() {
                return Err(ConfigError::Invalid(
                    "sms.token and sms.token_file are both set; set one".to_owned(),
                ));
            }
            sms.token = Some(read_secret_file("sms.token_file", &path)?);
        }
        if let Some(path) = self.database.url_file.clone() {
            if self.database.url.is_some() {
                return Err(ConfigError::Invalid(
                    "database.url and database.url_file are both set; set one".to_owned(),
                ));
            }
            self.database.url = Some(read_secret_file("database.url_file", &path)?);
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    #[must_use]
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(u) => u.clone(),
            None => SecretString::from(format!(
                "sqlite://{}",
                self.data_dir.join("palisade.db").display()
            )),
        }
    }

    /// The database URL with any password removed, for banners and logs.
    #[must_use]
    pub fn database_display(&self) -> String {
        redact_url_password(self.database_url().expose_secret())
    }

    /// Every judgement about these settings; the server refuses to start when any is an error.
    #[must_use]
    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut v = Vec::new();
        let prod = self.mode == Mode::Production;
        match &self.secrets.master_key {
            None if prod => v.push(Verdict::error(
                "secrets.master_key",
                "is not set; production needs a master key of at least 32 random bytes \
                 (PALISADE__SECRETS__MASTER_KEY or PALISADE__SECRETS__MASTER_KEY_FILE)",
            )),
            None => v.push(Verdict {
                level: Level::Info,
                setting: "secrets.master_key".to_owned(),
                message: format!(
                    "is not set; a development key is generated in {} (refused in production)",
                    self.data_dir.join("master.key").display()
                ),
            }),
            Some(key) => {
                if let Some(weak) = MasterKey::new(key.clone()).weakness() {
                    let text = format!("{weak}");
                    if prod {
                        v.push(Verdict::error(
                            "secrets.master_key",
                            format!("{text}; production refuses it"),
                        ));
                    } else if weak != palisade_crypto::MasterKeyError::GeneratedForDevelopment {
                        v.push(Verdict::warning(
                            "secrets.master_key",
                            format!("{text}; production would refuse it"),
                        ));
                    }
                }
            }
        }
        let db = self.database_url();
        let db = db.expose_secret();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            v.push(Verdict::error(
                "database.url",
                "must start with sqlite:// or postgres://",
            ));
        } else if prod && db.starts_with("sqlite:") {
            v.push(Verdict::warning(
                "database.url",
                "SQLite serves one instance; production deployments with several instances need PostgreSQL",
            ));
        }
        if self.database.schema.is_some() && db.starts_with("sqlite:") {
            v.push(Verdict::error(
                "database.schema",
                "applies to PostgreSQL only; remove it for SQLite",
            ));
        }
        if !(self.state.url == "memory://"
            || self.state.url.starts_with("redis://")
            || self.state.url.starts_with("rediss://"))
        {
            v.push(Verdict::error(
                "state.url",
                "must be memory:// or redis://host:port",
            ));
        }
        if self.server.max_concurrency == 0 {
            v.push(Verdict::error(
                "server.max_concurrency",
                "must be at least 1",
            ));
        }
        if self.server.request_timeout_secs == 0 || self.server.request_timeout_secs > 600 {
            v.push(Verdict::error(
                "server.request_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if self.limits.max_body_bytes < 1024 || self.limits.max_body_bytes > 64 * 1024 * 1024 {
            v.push(Verdict::error(
                "limits.max_body_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        for origin in &self.server.cors_allowed_origins {
            if origin == "*" || origin.contains('*') {
                v.push(Verdict::error(
                    "server.cors_allowed_origins",
                    "wildcards are refused; list exact origins",
                ));
            } else if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || origin.ends_with('/')
            {
                v.push(Verdict::error(
                    "server.cors_allowed_origins",
                    "each origin is scheme://host[:port] without a path or trailing slash",
                ));
            } else if prod && origin.starts_with("http://") {
                v.push(Verdict::error(
                    "server.cors_allowed_origins",
                    "production refuses plain-http origins",
                ));
            }
        }
        if !self.server.security_headers {
            if prod {
                v.push(Verdict::error(
                    "server.security_headers",
                    "cannot be turned off in production",
                ));
            } else {
                v.push(Verdict::warning(
                    "server.security_headers",
                    "is off: responses carry no security headers",
                ));
            }
        }
        if palisade_domain::Slug::parse(&self.bootstrap.system_tenant).is_err() {
            v.push(Verdict::error(
                "bootstrap.system_tenant",
                "must be a slug: 1-63 of [a-z0-9-], no leading or trailing hyphen",
            ));
        }
        if crate::validate::email(&self.bootstrap.owner_email).is_err() {
            v.push(Verdict::error(
                "bootstrap.owner_email",
                "must be an e-mail address",
            ));
        }
        match &self.trust.contact {
            None if prod => v.push(Verdict::error(
                "trust.contact",
                "is not set; production publishes security.txt and needs a mailto: or https: contact",
            )),
            Some(c) if !(c.starts_with("mailto:") || c.starts_with("https://")) => {
                v.push(Verdict::error("trust.contact", "must be a mailto: or https: URI"));
            }
            _ => {}
        }
        if prod && self.server.public_url.is_none() {
            v.push(Verdict::warning(
                "server.public_url",
                "is not set: security.txt cannot state its Canonical address",
            ));
        }
        if let Some(p) = &self.trust.policy
            && !p.starts_with("https://")
        {
            v.push(Verdict::error("trust.policy", "must be an https: URL"));
        }
        if self
            .trust
            .preferred_languages
            .iter()
            .any(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            v.push(Verdict::error(
                "trust.preferred_languages",
                "each entry must be a language tag such as `en` or `pt-BR`",
            ));
        }
        if !(10..=86_400).contains(&self.trust.check_interval_secs) {
            v.push(Verdict::error(
                "trust.check_interval_secs",
                "must be between 10 and 86400",
            ));
        }
        v.extend(self.audit.verdicts());
        if self.auth.leeway_secs > 60 {
            v.push(Verdict::error("auth.leeway_secs", "must be at most 60"));
        }
        if !(60..=3600).contains(&self.auth.access_ttl_secs) {
            v.push(Verdict::error(
                "auth.access_ttl_secs",
                "must be between 60 and 3600",
            ));
        }
        if self.auth.refresh_ttl_secs < self.auth.access_ttl_secs
            || self.auth.refresh_ttl_secs > 90 * 24 * 3600
        {
            v.push(Verdict::error(
                "auth.refresh_ttl_secs",
                "must be at least the access lifetime and at most 90 days",
            ));
        }
        if !(1..=20).contains(&self.auth.otp.max_attempts) {
            v.push(Verdict::error(
                "auth.otp.max_attempts",
                "must be between 1 and 20",
            ));
        }
        if !(60..=3600).contains(&self.auth.otp.code_ttl_secs) {
            v.push(Verdict::error(
                "auth.otp.code_ttl_secs",
                "must be between 60 and 3600",
            ));
        }
        match self.auth.otp.sender.as_str() {
            "outbox" if prod => v.push(Verdict::error(
                "auth.otp.sender",
                "the development outbox is refused in production; configure a real sender",
            )),
            "outbox" => {}
            "smtp" => match &self.auth.otp.smtp {
                None => v.push(Verdict::error("auth.otp.smtp", "is required when auth.otp.sender is `smtp`")),
                Some(smtp) => {
                    if smtp.tls == SmtpTls::None && prod {
                        v.push(Verdict::error("auth.otp.smtp.tls", "`none` sends codes in clear text; production needs `starttls` or `tls`"));
                    }
                    if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                        v.push(Verdict::error("auth.otp.smtp.from", "must be an address such as `Palisade <no-reply@example.com>`"));
                    }
                    if smtp.username.is_some() != smtp.password.is_some() {
                        v.push(Verdict::error("auth.otp.smtp.password", "username and password go together"));
                    }
                }
            },
            "none" => v.push(Verdict::warning("auth.otp.sender", "is `none`: one-time-code sign-in is disabled")),
            _ => v.push(Verdict::error(
                "auth.otp.sender",
                "must be `smtp`, `outbox` (development) or `none` (codes sent by SMS go to the gateway in [sms])",
            )),
        }
        self.judge_sms(&mut v);
        let sessions = &self.auth.sessions;
        if sessions.enabled {
            if !sessions.secure_cookie && prod {
                v.push(Verdict::error(
                    "auth.sessions.secure_cookie",
                    "is false; production sends the session cookie only as `Secure` with the `__Host-` prefix",
                ));
            } else if !sessions.secure_cookie {
                v.push(Verdict::warning(
                    "auth.sessions.secure_cookie",
                    "is false: the session cookie goes over plain http without the `__Host-` prefix (development only)",
                ));
            }
            if sessions.idle_timeout_secs == 0
                || sessions.absolute_lifetime_secs == 0
                || sessions.idle_timeout_secs > sessions.absolute_lifetime_secs
            {
                v.push(Verdict::error(
                    "auth.sessions.idle_timeout_secs",
                    "must be above 0 and at most auth.sessions.absolute_lifetime_secs (also above 0)",
                ));
            }
            if sessions.absolute_lifetime_secs > self.auth.refresh_ttl_secs {
                v.push(Verdict::error(
                    "auth.sessions.absolute_lifetime_secs",
                    "must not exceed auth.refresh_ttl_secs (a session is a refresh family)",
                ));
            }
        }
        if self.metrics.allowed_ips.iter().any(|n| n.prefix_len() == 0) {
            v.push(Verdict::warning(
                "metrics.allowed_ips",
                "allows every address; metrics reveal traffic patterns",
            ));
        }
        self.judge_limits(&mut v);
        for p in palisade_domain::resource::check(&self.resources) {
            v.push(Verdict::error(&p.setting, p.message));
        }
        for key in self.pending.keys() {
            if PENDING_SECTIONS.contains(&key.as_str()) {
                v.push(Verdict::warning(
                    key,
                    "is part of the configuration contract but this build does not act on it yet",
                ));
            } else {
                v.push(Verdict::error(key, "is not a known setting"));
            }
        }
        v
    }

    /// `[sms]`.
    fn judge_sms(&self, v: &mut Vec<Verdict>) {
        let Some(sms) = &self.sms else {
            return;
        };
        let prod = self.mode == Mode::Production;
        match reqwest::Url::parse(&sms.url) {
            Err(_) => v.push(Verdict::error("sms.url", "must be an https:// URL")),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                v.push(Verdict::error("sms.url", "must name a host"));
            }
            Ok(url) if !url.username().is_empty() || url.password().is_some() => v.push(
                Verdict::error("sms.url", "must not carry credentials; use sms.token"),
            ),
            Ok(url) => match url.scheme() {
                "https" => {}
                "http" if prod => v.push(Verdict::error(
                    "sms.url",
                    "must be https:// in production: codes and the token would travel in clear text",
                )),
                "http" => v.push(Verdict::warning(
                    "sms.url",
                    "is plain http://: codes and the token travel in clear text (production refuses it)",
                )),
                _ => v.push(Verdict::error("sms.url", "must be an https:// URL")),
            },
        }
        if sms.token.is_none() {
            if prod {
                v.push(Verdict::error(
                    "sms.token",
                    "is not set; production needs the gateway's bearer token (sms.token or sms.token_file)",
                ));
            } else {
                v.push(Verdict::warning(
                    "sms.token",
                    "is not set: requests to the gateway carry no Authorization header",
                ));
            }
        }
        if !(1..=60).contains(&sms.timeout_secs) {
            v.push(Verdict::error(
                "sms.timeout_secs",
                "must be between 1 and 60",
            ));
        }
        if let Some(from) = &sms.from
            && (from.is_empty() || from.chars().count() > 64 || from.chars().any(char::is_control))
        {
            v.push(Verdict::error(
                "sms.from",
                "must be 1 to 64 characters without control characters",
            ));
        }
        if let Some(body) = &sms.body {
            if !body.is_object() {
                v.push(Verdict::error(
                    "sms.body",
                    "must be a JSON object (a TOML table)",
                ));
            } else if let Some(bad) = unknown_placeholder(body) {
                v.push(Verdict::error(
                    "sms.body",
                    format!("uses the unknown placeholder `{{{bad}}}`; known: {{to}}, {{text}}, {{code}}, {{from}}"),
                ));
            } else if !(mentions(body, "{text}") || mentions(body, "{code}")) {
                v.push(Verdict::error(
                    "sms.body",
                    "must contain `{text}` or `{code}`, else the code never reaches the user",
                ));
            }
        }
        if self.auth.otp.sender == "none" {
            v.push(Verdict::warning(
                "sms",
                "is set but auth.otp.sender is `none`: no code is sent at all",
            ));
        }
    }

    /// `[rate_limit]` and `[waf]`.
    fn judge_limits(&self, v: &mut Vec<Verdict>) {
        let prod = self.mode == Mode::Production;
        let rl = &self.rate_limit;
        for (name, quota) in [
            ("rate_limit.default", rl.default),
            ("rate_limit.anonymous", rl.anonymous),
            ("rate_limit.auth", rl.auth),
            ("rate_limit.api_key_max", rl.api_key_max),
        ] {
            if quota.quota().is_none() {
                v.push(Verdict::error(
                    name,
                    "needs per_second between 1 and 1000000 and a burst of at least 1",
                ));
            }
        }
        for (tenant, quota) in &rl.tenants {
            if tenant.parse::<palisade_domain::TenantId>().is_err() {
                v.push(Verdict::error(
                    "rate_limit.tenants",
                    "every key must be a tenant id",
                ));
            } else if quota.quota().is_none() {
                v.push(Verdict::error(
                    "rate_limit.tenants",
                    "each override needs per_second between 1 and 1000000 and a burst of at least 1",
                ));
            }
        }
        let waf = &self.waf;
        for (name, off) in [
            ("rate_limit.enabled", !rl.enabled),
            ("waf.enabled", !waf.enabled),
        ] {
            if off && prod {
                v.push(Verdict::error(name, "cannot be turned off in production"));
            } else if off {
                v.push(Verdict::warning(
                    name,
                    "is off: this protection does not run",
                ));
            }
        }
        let ranges: [(&str, usize, usize, usize); 5] = [
            ("waf.max_string_chars", waf.max_string_chars, 16, 1 << 20),
            ("waf.max_urls", waf.max_urls, 0, 10_000),
            ("waf.max_phones", waf.max_phones, 0, 10_000),
            ("waf.max_depth", waf.max_depth, 2, 512),
            ("waf.max_elements", waf.max_elements, 16, 10_000_000),
        ];
        for (name, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                v.push(Verdict::error(
                    name,
                    format!("must be between {low} and {high}"),
                ));
            }
        }
        if waf.violations_before_block == 0 {
            v.push(Verdict::error(
                "waf.violations_before_block",
                "must be at least 1",
            ));
        }
        if !(1..=86_400).contains(&waf.violation_window_secs) {
            v.push(Verdict::error(
                "waf.violation_window_secs",
                "must be between 1 and 86400",
            ));
        }
        if !(1..=30 * 86_400).contains(&waf.block_secs) {
            v.push(Verdict::error(
                "waf.block_secs",
                "must be between 1 and 2592000 (30 days)",
            ));
        }
        if !(1..=3_600).contains(&self.api_keys.last_used_flush_secs) {
            v.push(Verdict::error(
                "api_keys.last_used_flush_secs",
                "must be between 1 and 3600",
            ));
        }
        if self
            .server
            .admin_allowed_ips
            .iter()
            .any(|n| n.prefix_len() == 0)
        {
            v.push(Verdict::warning(
                "server.admin_allowed_ips",
                "contains a network that allows every address",
            ));
        }
    }

    /// Whether any verdict is an error.
    #[must_use]
    pub fn has_errors(verdicts: &[Verdict]) -> bool {
        verdicts.iter().any(|v| v.level == Level::Error)
    }

    /// Settings for tests: development mode, a fixed strong master key, everything else default.
    #[must_use]
    pub fn for_test(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            secrets: SecretSettings {
                master_key: Some(SecretString::from(
                    "test-master-key-0123456789-abcdefghijklmnop".to_owned(),
                )),
                master_key_file: None,
            },
            // Tests enable realistic limits explicitly; elsewhere the limiter and the WAF run (every
            // request goes through them) with limits no test reaches.
            rate_limit: RateLimitSettings {
                default: UNREACHABLE_QUOTA,
                anonymous: UNREACHABLE_QUOTA,
                auth: UNREACHABLE_QUOTA,
                ..RateLimitSettings::default()
            },
            waf: WafSettings {
                violations_before_block: 1_000_000,
                ..WafSettings::default()
            },
            ..Self::default()
        }
    }
}

/// The quota [`Settings::for_test`] gives every class: far beyond what a test sends.
const UNREACHABLE_QUOTA: RateQuota = RateQuota {
    per_second: 1_000_000,
    burst: 1_000_000,
};

/// Whether any string in `value` contains `needle`.
fn mentions(value: &serde_json::Value, needle: &str) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains(needle),
        serde_json::Value::Array(a) => a.iter().any(|v| mentions(v, needle)),
        serde_json::Value::Object(o) => o.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}

/// The first `{name}` in a string of `value` that is not one of [`SMS_PLACEHOLDERS`].
fn unknown_placeholder(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(open) = rest.find('{') {
                let after = rest.get(open + 1..).unwrap_or_default();
                let Some(close) = after.find('}') else {
                    break;
                };
                let name = after.get(..close).unwrap_or_default();
                if !SMS_PLACEHOLDERS.contains(&name) {
                    return Some(name.chars().take(32).collect());
                }
                rest = after.get(close + 1..).unwrap_or_default();
            }
            None
        }
        serde_json::Value::Array(a) => a.iter().find_map(unknown_placeholder),
        serde_json::Value::Object(o) => o.values().find_map(unknown_placeholder),
        _ => None,
    }
}

fn read_secret_file(setting: &'static str, path: &Path) -> Result<SecretString, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|e| ConfigError::SecretFile {
        setting,
        reason: e.kind().to_string(),
    })?;
    Ok(SecretString::from(
        raw.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

fn describe_figment_error(e: &figment::Error) -> String {
    // SECURITY: figment's messages can quote the offending value; keep only the key path and the kind.
    let path = e.path.join(".");
    let what = match &e.kind {
        figment::error::Kind::UnknownField(f, _) => format!("unknown setting `{f}`"),
        figment::error::Kind::MissingField(f) => format!("missing setting `{f}`"),
        figment::error::Kind::InvalidType(_, expected) => {
            format!("wrong type, expected {expected}")
        }
        figment::error::Kind::InvalidValue(_, expected) => {
            format!("invalid value, expected {expected}")
        }
        figment::error::Kind::UnknownVariant(_, expected) => {
            format!("unknown value, expected one of {}", expected.join(", "))
        }
        figment::error::Kind::Message(m) if m.len() < 200 && !m.contains('"') => m.clone(),
        _ => "invalid configuration".to_owned(),
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    if path.is_empty() {
        format!("{what}{source}")
    } else {
        format!("{path}: {what}{source}")
    }
}

/// Removes the password from a URL's userinfo.
#[must_use]
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:[REDACTED]@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::prefixed("PALISADE_TEST_NOTHING__").split("__")
    }

    #[test]
    fn defaults_are_development_on_sqlite() {
        let s = Settings::default();
        assert_eq!(s.mode, Mode::Development);
        assert!(s.database_url().expose_secret().starts_with("sqlite://"));
        assert!(!Settings::has_errors(&s.verdicts()));
    }

    #[test]
    fn production_refuses_missing_default_short_and_generated_keys() {
        let mut s = Settings {
            mode: Mode::Production,
            ..Settings::default()
        };
        s.auth.otp.sender = "none".into();
        s.trust.contact = Some("mailto:security@example.com".into());
        s.database.url = Some(SecretString::from("postgres://app@db/palisade".to_owned()));
        let check = |s: &Settings| {
            let v = s.verdicts();
            v.iter()
                .find(|v| v.level == Level::Error && v.setting == "secrets.master_key")
                .cloned()
        };
        assert!(check(&s).is_some(), "missing key");
        for bad in [
            "changeme",
            "short-key",
            MasterKey::generate_development().expose_secret(),
        ] {
            s.secrets.master_key = Some(SecretString::from(bad.to_owned()));
            let verdict = check(&s).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(!verdict.message.contains(bad), "verdict echoes the secret");
        }
        s.secrets.master_key = Some(SecretString::from(
            "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G".to_owned(),
        ));
        assert!(check(&s).is_none());
        assert!(!Settings::has_errors(&s.verdicts()), "{:?}", s.verdicts());
    }

    #[test]
    fn toml_env_and_overrides_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "mode = \"development\"\n[server]\nlisten = \"127.0.0.1:9000\"\ntrusted_proxy_hops = 1\n").unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env()).unwrap();
        assert_eq!(s.server.listen.port(), 9000);
        assert_eq!(s.server.trusted_proxy_hops, 1);
        let o = Overrides {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..Overrides::default()
        };
        let s = Settings::load_from(Some(&file), &o, env()).unwrap();
        assert_eq!(s.server.listen.port(), 9100);
    }

    #[test]
    fn a_typo_in_a_known_section_is_an_error_and_does_not_echo_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:9000\"\ntrusted_proxy_hop = 1\n",
        )
        .unwrap();
        let err = Settings::load_from(Some(&file), &Overrides::default(), env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("trusted_proxy_hop"), "{err}");
        std::fs::write(&file, "[secrets]\nmaster_key = 42\n").unwrap();
        let err = Settings::load_from(Some(&file), &Overrides::default(), env())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("secrets.master_key") && !err.contains("42"),
            "{err}"
        );
    }

    #[test]
    fn secret_files_are_read_and_both_forms_together_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G\n").unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            format!("[secrets]\nmaster_key_file = \"{}\"\n", key.display()),
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env()).unwrap();
        assert_eq!(
            s.secrets.master_key.unwrap().expose_secret(),
            "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G"
        );
        std::fs::write(
            &file,
            format!(
                "[secrets]\nmaster_key = \"x\"\nmaster_key_file = \"{}\"\n",
                key.display()
            ),
        )
        .unwrap();
        assert!(Settings::load_from(Some(&file), &Overrides::default(), env()).is_err());
    }

    #[test]
    fn unknown_top_level_sections_are_errors_and_contract_sections_warn() {
        let mut s = Settings::default();
        s.pending.insert("webhooks".into(), serde_json::json!({}));
        s.pending.insert("ratelimit".into(), serde_json::json!({}));
        let v = s.verdicts();
        assert!(
            v.iter()
                .any(|v| v.setting == "webhooks" && v.level == Level::Warning)
        );
        assert!(
            v.iter()
                .any(|v| v.setting == "ratelimit" && v.level == Level::Error)
        );
    }

    #[test]
    fn trust_declarations_parse_and_a_typo_in_them_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "[trust]\ncontact = \"mailto:s@example.com\"\nregions = [\"EU\"]\ncheck_interval_secs = 60\n\
             [[trust.subprocessors]]\nname = \"Host\"\npurpose = \"compute\"\n\
             [[trust.pen_tests]]\nprovider = \"Tester\"\ndate = \"2026-01-01\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env()).unwrap();
        assert_eq!(s.trust.regions, ["EU"]);
        assert_eq!(s.trust.subprocessors.len(), 1);
        assert_eq!(s.trust.check_interval_secs, 60);
        assert_eq!(s.trust.preferred_languages, ["en"]);
        assert!(!Settings::has_errors(&s.verdicts()));
        std::fs::write(&file, "[trust]\nregion = [\"EU\"]\n").unwrap();
        let err = Settings::load_from(Some(&file), &Overrides::default(), env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("region"), "{err}");
        let mut s = Settings::default();
        s.trust.check_interval_secs = 1;
        s.trust.policy = Some("http://example.com/p".into());
        let bad: Vec<String> = s.verdicts().into_iter().map(|v| v.setting).collect();
        assert!(bad.contains(&"trust.check_interval_secs".to_owned()));
        assert!(bad.contains(&"trust.policy".to_owned()));
    }

    #[test]
    fn rate_limit_and_waf_sections_are_typed_and_judged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        let tenant = uuid::Uuid::now_v7();
        std::fs::write(
            &file,
            format!(
                "[rate_limit]\ndefault = {{ per_second = 3, burst = 4 }}\n\
                 [rate_limit.tenants]\n\"{tenant}\" = {{ per_second = 50, burst = 100 }}\n\
                 [waf]\nmax_urls = 2\n"
            ),
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env()).unwrap();
        assert_eq!(s.rate_limit.default.per_second, 3);
        assert_eq!(s.rate_limit.auth.burst, 5, "defaults fill the rest");
        assert_eq!(s.rate_limit.tenants[&tenant.to_string()].burst, 100);
        assert_eq!(s.waf.max_urls, 2);
        assert_eq!(s.waf.max_string_chars, 8_192);
        assert!(!Settings::has_errors(&s.verdicts()), "{:?}", s.verdicts());

        std::fs::write(
            &file,
            "[rate_limit]\nanonymous = { per_second = 0, burst = 1 }\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env()).unwrap();
        assert!(
            s.verdicts()
                .iter()
                .any(|v| v.setting == "rate_limit.anonymous" && v.level == Level::Error)
        );
        std::fs::write(
            &file,
            "[rate_limit.tenants]\nacme = { per_second = 1, burst = 1 }\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env()).unwrap();
        assert!(
            s.verdicts()
                .iter()
                .any(|v| v.setting == "rate_limit.tenants" && v.level == Level::Error)
        );
        std::fs::write(&file, "[waf]\nmax_url = 2\n").unwrap();
        assert!(
            Settings::load_from(Some(&file), &Overrides::default(), env()).is_err(),
            "typo refused"
        );

        let mut s = Settings {
            mode: Mode::Production,
            ..Settings::default()
        };
        s.rate_limit.enabled = false;
        s.waf.enabled = false;
        let v = s.verdicts();
        for name in ["rate_limit.enabled", "waf.enabled"] {
            assert!(
                v.iter()
                    .any(|v| v.setting == name && v.level == Level::Error),
                "{name}"
            );
        }
    }

    #[test]
    fn sms_settings_parse_resolve_the_token_file_and_are_judged() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("sms-token");
        std::fs::write(&token, "gw-token-value\n").unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            format!(
                "[sms]\nurl = \"https://sms.example.com/v1/messages\"\ntoken_file = \"{}\"\nfrom = \"Palisade\"\n\
                 [sms.body]\nrecipient = \"{{to}}\"\nmessage = \"{{text}}\"\n",
                token.display()
            ),
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env()).unwrap();
        let sms = s.sms.clone().unwrap();
        assert_eq!(sms.token.unwrap().expose_secret(), "gw-token-value");
        assert_eq!(sms.timeout_secs, 10);
        assert_eq!(sms.body.unwrap()["recipient"], "{to}");
        assert!(!Settings::has_errors(&s.verdicts()), "{:?}", s.verdicts());
        assert!(
            !format!("{:?}", s.sms).contains("gw-token-value"),
            "Debug hides the token"
        );

        let judged = |mode: Mode, edit: &dyn Fn(&mut SmsSettings)| {
            let mut s = s.clone();
            s.mode = mode;
            if let Some(sms) = s.sms.as_mut() {
                edit(sms);
            }
            s.verdicts()
                .into_iter()
                .filter(|v| v.setting.starts_with("sms"))
                .map(|v| (v.level, v.setting))
                .collect::<Vec<_>>()
        };
        let http = |s: &mut SmsSettings| s.url = "http://127.0.0.1:9000/send".into();
        assert_eq!(
            judged(Mode::Production, &http),
            [(Level::Error, "sms.url".to_owned())]
        );
        assert_eq!(
            judged(Mode::Development, &http),
            [(Level::Warning, "sms.url".to_owned())]
        );
        for bad_url in ["ftp://x/y", "not a url", "https://user:pw@sms.example.com/"] {
            let v = judged(Mode::Development, &|s| s.url = bad_url.into());
            assert_eq!(v, [(Level::Error, "sms.url".to_owned())], "{bad_url}");
        }
        assert_eq!(
            judged(Mode::Production, &|s| s.token = None),
            [(Level::Error, "sms.token".to_owned())]
        );
        assert_eq!(
            judged(Mode::Development, &|s| s.timeout_secs = 0),
            [(Level::Error, "sms.timeout_secs".to_owned())]
        );
        for body in [
            serde_json::json!("{text}"),
            serde_json::json!({"to": "{to}"}),
            serde_json::json!({"text": "{text} {secret}"}),
        ] {
            let v = judged(Mode::Development, &|s| s.body = Some(body.clone()));
            assert_eq!(v, [(Level::Error, "sms.body".to_owned())], "{body}");
        }
        std::fs::write(&file, "[sms]\nurl = \"https://x.example\"\ntokn = \"t\"\n").unwrap();
        assert!(
            Settings::load_from(Some(&file), &Overrides::default(), env()).is_err(),
            "a typo in [sms] is refused"
        );
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://app:hunter2@db/x"),
            "postgres://app:[REDACTED]@db/x"
        );
        assert_eq!(
            redact_url_password("postgres://app@db/x"),
            "postgres://app@db/x"
        );
        assert_eq!(
            redact_url_password("sqlite://./data/p.db"),
            "sqlite://./data/p.db"
        );
    }
}
