//! Sign-in and sessions (API.md "Authentication"): passwordless OTP by e-mail or SMS, ES512 access
//! tokens, rotating refresh tokens, logout, logout everywhere, the JWKS, and `/v1/me`.
//!
//! SECURITY:
//! - `otp/start` answers 202 with a challenge id whether or not the tenant or account exists; the
//!   code is delivered off the request path, so timing does not depend on the account either.
//! - Codes are 6 digits from the OS CSPRNG, stored only as a keyed hash bound to the challenge id,
//!   compared in constant time, valid for `auth.otp.code_ttl_secs`, dead after `max_attempts` wrong
//!   tries, and single-use (consumed atomically).
//! - Starts are limited per client IP and per destination, and capped per channel per day; limits
//!   that cannot be checked (shared state down) deny.
//! - Refresh tokens are opaque, stored hashed, and rotate on every use; a spent token presented again
//!   revokes its whole family.

use std::sync::Arc;

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_authz::{Access, InternalRole, Principal, SystemScope, capability::platform};
use palisade_crypto::KeyedHasher;
use palisade_domain::{Slug, UserStatus};
use palisade_store::{
    NewOtpChallenge, NewRefreshFamily, NewRefreshToken, OtpChannel, RotateOutcome, User,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::tokens::{Subject, TokenService};
use crate::error::{ApiError, ApiResult, Challenge, FieldError};
use crate::extract::{Audited, Caller, Json};
use crate::notify::CodeSender;
use crate::pipeline::ClientIp;
use crate::principal_cache;
use crate::router::{SecureRouter, op};
use crate::state::AppState;
use crate::validate;

/// Everything sign-in needs, built once at start.
pub struct AuthContext {
    /// Token issue and verification.
    pub tokens: Arc<TokenService>,
    /// Shared state (revocations, counters).
    pub state: palisade_state::State,
    /// Code delivery.
    pub sender: Arc<dyn CodeSender>,
    /// Hashes OTP codes (bound to their challenge id).
    pub code_hasher: KeyedHasher,
    /// Hashes destinations for per-destination limits.
    pub destination_hasher: KeyedHasher,
    /// Hashes refresh tokens.
    pub refresh_hasher: KeyedHasher,
    /// Hashes recovery codes.
    pub recovery_hasher: KeyedHasher,
    /// Hashes API keys (see `auth::api_keys`).
    pub api_key_hasher: KeyedHasher,
    /// Hashes browser-session cookies (see `auth::sessions`).
    pub session_hasher: KeyedHasher,
    /// Derives CSRF tokens from session ids (see `auth::sessions`).
    pub csrf_hasher: KeyedHasher,
    /// Seals TOTP secrets.
    pub totp_key: palisade_crypto::DerivedKey,
    /// "Now" for authentication-time decisions (shared with the token service).
    pub clock: crate::clock::Clock,
}

/// Disposable e-mail domains refused by default (extend with `auth.otp.disposable_domains`).
pub const DISPOSABLE_DOMAINS: &[&str] = &[
    "10minutemail.com",
    "20minutemail.com",
    "discard.email",
    "dispostable.com",
    "fakeinbox.com",
    "getairmail.com",
    "getnada.com",
    "guerrillamail.com",
    "guerrillamail.net",
    "guerrillamailblock.com",
    "mailcatch.com",
    "maildrop.cc",
    "mailinator.com",
    "mailnesia.com",
    "mintemail.com",
    "mohmal.com",
    "mytemp.email",
    "sharklasers.com",
    "spamgourmet.com",
    "temp-mail.org",
    "tempail.com",
    "tempmail.com",
    "tempmailo.com",
    "tempr.email",
    "throwawaymail.com",
    "trashmail.com",
    "trashmail.de",
    "yopmail.com",
    "yopmail.net",
];

/// `POST /v1/auth/otp/start`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpStartRequest {
    /// `email` or `sms`.
    pub channel: String,
    /// The e-mail address or E.164 phone number.
    pub destination: String,
    /// The tenant's slug.
    pub tenant: String,
}

/// `202` of `otp/start`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OtpStartView {
    /// Pass it to `otp/verify` with the code.
    pub challenge_id: String,
}

/// `POST /v1/auth/otp/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpVerifyRequest {
    /// From `otp/start`.
    pub challenge_id: String,
    /// The 6-digit code.
    pub code: String,
    /// Ask for a browser session instead of tokens (needs `auth.sessions.enabled`): the answer sets
    /// the session cookie and carries a CSRF token, and no token (docs/sessions.md).
    #[serde(default)]
    pub session: bool,
}

/// `200` of a sign-in that asked for a browser session: the cookie is in `Set-Cookie`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Always true.
    pub session: bool,
    /// Send it as `X-CSRF-Token` on every unsafe request made with the cookie.
    pub csrf_token: String,
    /// The absolute end of the session (RFC 3339); it ends earlier when idle for
    /// `auth.sessions.idle_timeout_secs`.
    pub expires_at: String,
}

/// `GET /v1/auth/csrf`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CsrfView {
    /// The session's CSRF token, for the `X-CSRF-Token` header.
    pub csrf_token: String,
}

/// Tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// ES512 JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque; exchange at `token/refresh`, once.
    pub refresh_token: String,
}

/// `POST /v1/auth/token/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The current refresh token.
    pub refresh_token: String,
}

/// `GET /v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// The user id.
    pub subject: String,
    /// Home tenant.
    pub tenant_id: String,
    /// `system`, `partner`, `parent` or `tenant`.
    pub scope_level: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Capabilities resolved now.
    pub capabilities: Vec<String>,
    /// How the caller authenticated.
    pub method: String,
    /// Authentication methods references.
    pub amr: Vec<String>,
}

/// The JWKS.
#[derive(Debug, Serialize, ToSchema)]
pub struct JwksView {
    /// Public keys.
    pub keys: Vec<serde_json::Value>,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.post(
        "/v1/auth/otp/start",
        Access::Public { reason: "starts passwordless sign-in; answers identically whether or not the account exists" },
        op("startOtp", "Send a one-time code by e-mail or SMS", "authentication").body::<OtpStartRequest>().ok::<OtpStartView>(202),
        start_otp,
    )
    .post(
        "/v1/auth/otp/verify",
        Access::Public { reason: "completes sign-in with the one-time code" },
        op("verifyOtp", "Exchange a one-time code for tokens, the MFA step, or a browser session (`\"session\": true`: Set-Cookie, no tokens)", "authentication").body::<OtpVerifyRequest>().ok::<TokenView>(200).or::<crate::routes::mfa::MfaRequiredView>().or::<SessionView>(),
        verify_otp,
    )
    .post(
        "/v1/auth/token/refresh",
        Access::Public { reason: "the refresh token is the credential" },
        op("refreshToken", "Rotate a refresh token for new tokens", "authentication").body::<RefreshRequest>().ok::<TokenView>(200),
        refresh_token,
    )
    .post(
        "/v1/auth/logout",
        Access::cap(platform::SELF_SESSION_REVOKE),
        op("logout", "Revoke this access token and its refresh family", "authentication").empty(204),
        logout,
    )
    .post(
        "/v1/auth/logout-all",
        Access::cap(platform::SELF_SESSION_REVOKE),
        op("logoutAll", "Revoke every token of the user", "authentication").empty(204),
        logout_all,
    )
    .get(
        "/v1/auth/csrf",
        Access::cap(platform::SELF_PROFILE_READ),
        op("getCsrfToken", "The CSRF token of the caller's browser session", "authentication").ok::<CsrfView>(200),
        get_csrf,
    )
    .get(
        "/.well-known/jwks.json",
        Access::Public { reason: "public keys that verify access tokens (RFC 7517)" },
        op("getJwks", "Active and retiring ES512 public keys", "authentication").ok::<JwksView>(200),
        get_jwks,
    )
    .get(
        "/v1/me",
        Access::cap(platform::SELF_PROFILE_READ),
        op("getMe", "The authenticated principal", "authentication").ok::<MeView>(200),
        get_me,
    )
}

fn state_down() -> ApiError {
    ApiError::Unavailable {
        code: "state.unavailable",
        retry_after: 1,
    }
}

fn too_many(retry_after: u64) -> ApiError {
    ApiError::RateLimited { retry_after }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid_code() -> ApiError {
    ApiError::Unauthenticated {
        code: "auth.invalid_code",
        detail: "The code is wrong, expired or used.",
        challenge: Challenge::InvalidToken,
    }
}

async fn start_otp(
    State(app): State<AppState>,
    ip: Option<axum::Extension<ClientIp>>,
    Json(body): Json<OtpStartRequest>,
) -> ApiResult<Response> {
    let auth = app.auth();
    let settings = &app.settings().auth.otp;
    if settings.sender == "none" {
        return Err(ApiError::Unavailable {
            code: "auth.otp_disabled",
            retry_after: 3600,
        });
    }
    let channel = OtpChannel::parse(&body.channel);
    let mut errors = Vec::new();
    if channel.is_none() {
        errors.push(FieldError::new(
            "channel",
            "invalid_value",
            "must be email or sms",
        ));
    }
    if channel == Some(OtpChannel::Sms) && settings.sender == "smtp" && app.settings().sms.is_none()
    {
        errors.push(FieldError::new(
            "channel",
            "unavailable",
            "SMS delivery is not configured",
        ));
    }
    let destination = match channel {
        Some(OtpChannel::Email) => validate::email(&body.destination)
            .map_err(|e| errors.push(FieldError::new("destination", e.code, e.message)))
            .ok(),
        Some(OtpChannel::Sms) => validate::phone(&body.destination)
            .map_err(|e| errors.push(FieldError::new("destination", e.code, e.message)))
            .ok(),
        None => None,
    };
    let slug = Slug::parse(&body.tenant)
        .map_err(|_| {
            errors.push(FieldError::new(
                "tenant",
                "invalid_slug",
                "must be a tenant slug",
            ))
        })
        .ok();
    let (Some(channel), Some(destination), Some(slug), true) =
        (channel, destination, slug, errors.is_empty())
    else {
        return Err(ApiError::Validation(errors));
    };
    if channel == OtpChannel::Email {
        let domain = destination.rsplit('@').next().unwrap_or_default();
        let refused = DISPOSABLE_DOMAINS.contains(&domain)
            || settings
                .disposable_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain));
        if refused {
            return Err(ApiError::field(
                "destination",
                "disposable_email",
                "disposable e-mail domains are not accepted",
            ));
        }
    }
    let ip = ip.map_or_else(
        || "unknown".to_owned(),
        |axum::Extension(ClientIp(ip))| ip.to_string(),
    );
    let dest_hash = hex(&auth
        .destination_hasher
        .hash(format!("{}:{destination}", channel.as_str()).as_bytes()));
    let counters = &auth.state.counters;
    let per_ip = counters
        .hit(
            &format!("otp:start:ip:{ip}"),
            std::time::Duration::from_secs(settings.per_ip.window_secs),
        )
        .await
        .map_err(|_| state_down())?;
    if per_ip > settings.per_ip.count {
        return Err(too_many(settings.per_ip.window_secs));
    }
    let per_dest = counters
        .hit(
            &format!("otp:start:dest:{dest_hash}"),
            std::time::Duration::from_secs(settings.per_destination.window_secs),
        )
        .await
        .map_err(|_| state_down())?;
    if per_dest > settings.per_destination.count {
        return Err(too_many(settings.per_destination.window_secs));
    }
    let today = OffsetDateTime::now_utc().date();
    let cap = match channel {
        OtpChannel::Email => settings.daily_cap_email,
        OtpChannel::Sms => settings.daily_cap_sms,
    };
    let sent_today = counters
        .hit(
            &format!("otp:daily:{}:{today}", channel.as_str()),
            std::time::Duration::from_secs(86_400),
        )
        .await
        .map_err(|_| state_down())?;
    if sent_today > cap {
        return Err(ApiError::Unavailable {
            code: "auth.otp_daily_cap",
            retry_after: 3600,
        });
    }
    // Who is signing in, if anyone. Unknown tenants and accounts take the same path to the end.
    let stores = app.stores();
    let tenant = stores.tenants.resolve_tenant_by_slug(&slug).await?;
    let user = match &tenant {
        Some(t) => {
            let scope = SystemScope::internal(InternalRole::SignIn).tenant_scope(t.to_ref());
            let found = match channel {
                OtpChannel::Email => {
                    stores
                        .users
                        .find_user_by_email(&scope, &destination)
                        .await?
                }
                OtpChannel::Sms => {
                    stores
                        .users
                        .find_user_by_phone(&scope, &destination)
                        .await?
                }
            };
            found.filter(|u| u.status == UserStatus::Active)
        }
        None => None,
    };
    let challenge_id = uuid::Uuid::new_v4().to_string();
    let code = palisade_crypto::otp::numeric_code(6);
    let code_hash = hex(&auth
        .code_hasher
        .hash(format!("{challenge_id}:{}", code.expose_secret()).as_bytes()));
    stores
        .otp
        .create_challenge(NewOtpChallenge {
            id: challenge_id.clone(),
            tenant_id: tenant.as_ref().map(|t| t.id),
            channel,
            destination_hash: dest_hash,
            user_id: user.as_ref().map(|u| u.id),
            code_hash,
            expires_at: app.now()
                + time::Duration::seconds(i64::try_from(settings.code_ttl_secs).unwrap_or(600)),
        })
        .await?;
    if user.is_some() {
        // Delivered off the request path: the answer's timing does not reveal the account.
        // A failed delivery is logged (the reason only: never the code, token or destination) and
        // counted; the answer stays 202 either way, so it is no oracle for the account.
        let sender = auth.sender.clone();
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = sender.send(channel, &destination, &code).await {
                app.metrics().record_notify_failure(channel.as_str());
                tracing::error!(target: "palisade::notify", channel = channel.as_str(), error = %e, "one-time code not delivered");
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        AxumJson(OtpStartView { challenge_id }),
    )
        .into_response())
}

/// Which refresh session new tokens belong to.
pub(crate) enum Session {
    /// A new sign-in: start a refresh family with a fresh token.
    New,
    /// A refresh: the store already rotated the family to `refresh_token`.
    Rotated {
        /// The family.
        family_id: String,
        /// The token that replaced the presented one.
        refresh_token: secrecy::SecretString,
    },
}

/// Issues an access token for a user of the scope's tenant, with the refresh token of `session`.
///
/// # Errors
/// Store and signing failures.
pub(crate) async fn issue_tokens(
    app: &AppState,
    scope: &palisade_authz::TenantScope,
    user: &User,
    session: Session,
    amr: Vec<String>,
    auth_time: OffsetDateTime,
) -> ApiResult<TokenView> {
    let auth = app.auth();
    let scope_level = Principal::scope_level_of(scope.tenant());
    let (family_id, refresh) = match session {
        Session::Rotated {
            family_id,
            refresh_token,
        } => (family_id, refresh_token),
        Session::New => {
            let refresh = palisade_crypto::otp::opaque_token("prt_");
            let id = uuid::Uuid::new_v4().to_string();
            let expires_at = app.now()
                + time::Duration::seconds(
                    i64::try_from(app.settings().auth.refresh_ttl_secs).unwrap_or(0),
                );
            app.stores()
                .refresh
                .create_family(
                    scope,
                    NewRefreshFamily {
                        id: id.clone(),
                        user_id: user.id,
                        amr: amr.clone(),
                        auth_time,
                    },
                    NewRefreshToken {
                        token_hash: hex(&auth
                            .refresh_hasher
                            .hash(refresh.expose_secret().as_bytes())),
                        expires_at,
                    },
                )
                .await?;
            (id, refresh)
        }
    };
    let (access, claims) = auth
        .tokens
        .issue(&Subject {
            user_id: user.id,
            tenant_id: user.tenant_id,
            scope_level,
            token_version: user.token_version,
            amr,
            auth_time,
            session_id: Some(family_id),
        })
        .map_err(ApiError::internal)?;
    Ok(TokenView {
        access_token: access,
        token_type: "Bearer",
        expires_in: claims.exp - claims.iat,
        refresh_token: refresh.expose_secret().to_owned(),
    })
}

/// Refuses `"session": true` while sessions are off, before anything is spent.
pub(crate) fn check_session_request(app: &AppState, session: bool) -> ApiResult<()> {
    if session && !crate::auth::sessions::enabled(app) {
        return Err(ApiError::field(
            "session",
            "sessions_disabled",
            "browser sessions are not enabled on this server",
        ));
    }
    Ok(())
}

/// Starts a browser session for a user who just signed in: a refresh family whose token is never
/// handed out, the session row and its audit entry (one transaction), then the cookie.
///
/// # Errors
/// Store failures.
pub(crate) async fn start_session(
    app: &AppState,
    scope: &palisade_authz::TenantScope,
    user: &User,
    amr: Vec<String>,
    auth_time: OffsetDateTime,
    mut audit: palisade_store::AuditMeta,
) -> ApiResult<Response> {
    use crate::auth::sessions;
    let auth = app.auth();
    let settings = &app.settings().auth;
    let now = OffsetDateTime::now_utc();
    let family_id = uuid::Uuid::new_v4().to_string();
    let cookie = palisade_crypto::otp::opaque_token(sessions::COOKIE_VALUE_PREFIX);
    // The family's refresh token exists only so the family has the usual shape; nobody receives it.
    let unused_refresh = palisade_crypto::otp::opaque_token("prt_");
    let expires_at = now
        + time::Duration::seconds(
            i64::try_from(settings.sessions.absolute_lifetime_secs).unwrap_or(0),
        );
    audit.actor = format!("user:{}", user.id);
    let session = app
        .stores()
        .sessions
        .create_session(
            scope,
            NewRefreshFamily {
                id: family_id,
                user_id: user.id,
                amr,
                auth_time,
            },
            NewRefreshToken {
                token_hash: hex(&auth
                    .refresh_hasher
                    .hash(unused_refresh.expose_secret().as_bytes())),
                expires_at,
            },
            palisade_store::NewBrowserSession {
                token_hash: sessions::hash_cookie(app, cookie.expose_secret()),
                token_version: user.token_version,
                expires_at,
            },
            &audit,
        )
        .await?;
    let view = SessionView {
        session: true,
        csrf_token: sessions::csrf_token(app, &session.family_id),
        expires_at: session
            .expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(ApiError::internal)?,
    };
    let mut res = AxumJson(view).into_response();
    res.headers_mut().insert(
        axum::http::header::SET_COOKIE,
        sessions::set_cookie(app, cookie.expose_secret())?,
    );
    tracing::info!(target: "security", event = "session.started", user = %user.id, "browser session started");
    Ok(res)
}

async fn verify_otp(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Json(body): Json<OtpVerifyRequest>,
) -> ApiResult<Response> {
    let auth = app.auth();
    let settings = &app.settings().auth.otp;
    let stores = app.stores();
    check_session_request(&app, body.session)?;
    if body.challenge_id.len() > 64 || body.code.len() > 16 {
        return Err(invalid_code());
    }
    let Some(challenge) = stores.otp.find_challenge(&body.challenge_id).await? else {
        return Err(invalid_code());
    };
    let now = app.now();
    if challenge.consumed_at.is_some() || challenge.expires_at <= now {
        return Err(invalid_code());
    }
    // Attempts across every challenge of one destination, so new challenges do not reset guessing.
    let dest_attempts = auth
        .state
        .counters
        .hit(
            &format!("otp:verify:dest:{}", challenge.destination_hash),
            std::time::Duration::from_secs(settings.per_destination.window_secs),
        )
        .await
        .map_err(|_| state_down())?;
    if dest_attempts > u64::from(settings.max_attempts) * settings.per_destination.count {
        return Err(too_many(settings.per_destination.window_secs));
    }
    let attempts = stores.otp.record_attempt(&challenge.id).await?;
    if attempts > i64::from(settings.max_attempts) {
        return Err(ApiError::Unauthenticated {
            code: "auth.too_many_attempts",
            detail: "This challenge is spent; start a new one.",
            challenge: Challenge::InvalidToken,
        });
    }
    let presented = format!("{}:{}", challenge.id, body.code);
    let stored = hex_decode(&challenge.code_hash);
    // SECURITY: constant-time comparison of keyed hashes.
    if !auth.code_hasher.verify(presented.as_bytes(), &stored) {
        tracing::info!(target: "security", event = "sign_in.failed", challenge = %challenge.id, "wrong one-time code");
        return Err(invalid_code());
    }
    let (Some(user_id), Some(tenant_id)) = (challenge.user_id, challenge.tenant_id) else {
        return Err(invalid_code());
    };
    if !stores.otp.consume_challenge(&challenge.id, now).await? {
        return Err(invalid_code());
    }
    let tenant = stores
        .tenants
        .resolve_tenant(tenant_id)
        .await?
        .ok_or_else(invalid_code)?;
    let scope = SystemScope::internal(InternalRole::SignIn).tenant_scope(tenant.to_ref());
    let user = stores
        .users
        .get_user(&scope, user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(invalid_code)?;
    // SECURITY: the code signs in only while it went to the user's current address: after an
    // e-mail or phone change, a code still pending at the old address is dead.
    let current = match challenge.channel {
        OtpChannel::Email => Some(user.email.as_str()),
        OtpChannel::Sms => user.phone.as_deref(),
    };
    let still_current = current.is_some_and(|address| {
        auth.destination_hasher.verify(
            format!("{}:{address}", challenge.channel.as_str()).as_bytes(),
            &hex_decode(&challenge.destination_hash),
        )
    });
    if !still_current {
        tracing::info!(target: "security", event = "sign_in.failed", challenge = %challenge.id, "one-time code sent to an address the user no longer has");
        return Err(invalid_code());
    }
    let mfa = stores.mfa.get_mfa(&scope, user.id).await?;
    if mfa.is_some_and(|m| m.totp_enabled) {
        // The second factor is still owed: hand out a short-lived, single-use MFA token instead.
        let view = crate::routes::mfa::mint_mfa_token(&app, user.id, tenant.id)?;
        return Ok(AxumJson(view).into_response());
    }
    if body.session {
        tracing::info!(target: "security", event = "sign_in.succeeded", user = %user.id, tenant = %tenant.id, "signed in");
        return start_session(&app, &scope, &user, vec!["otp".to_owned()], now, audit).await;
    }
    let tokens = issue_tokens(
        &app,
        &scope,
        &user,
        Session::New,
        vec!["otp".to_owned()],
        now,
    )
    .await?;
    tracing::info!(target: "security", event = "sign_in.succeeded", user = %user.id, tenant = %tenant.id, "signed in");
    Ok(AxumJson(tokens).into_response())
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| {
            s.get(2 * i..2 * i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

async fn refresh_token(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<AxumJson<TokenView>> {
    let auth = app.auth();
    let refused = || ApiError::Unauthenticated {
        code: "auth.invalid_refresh_token",
        detail: "The refresh token is not valid.",
        challenge: Challenge::InvalidToken,
    };
    if !body.refresh_token.starts_with("prt_") || body.refresh_token.len() > 128 {
        return Err(refused());
    }
    let presented = hex(&auth.refresh_hasher.hash(body.refresh_token.as_bytes()));
    let next = palisade_crypto::otp::opaque_token("prt_");
    let next_hash = hex(&auth.refresh_hasher.hash(next.expose_secret().as_bytes()));
    let now = app.now();
    let expires = now
        + time::Duration::seconds(i64::try_from(app.settings().auth.refresh_ttl_secs).unwrap_or(0));
    let outcome = app
        .stores()
        .refresh
        .rotate(
            &presented,
            NewRefreshToken {
                token_hash: next_hash,
                expires_at: expires,
            },
            now,
        )
        .await?;
    let session = match outcome {
        RotateOutcome::Rotated(s) => s,
        RotateOutcome::Reused {
            family_id,
            user_id,
            tenant_id,
        } => {
            tracing::warn!(target: "security", event = "refresh.reused", family = %family_id, user = %user_id, tenant = %tenant_id, "spent refresh token presented again; family revoked");
            // The security event goes into the user's tenant chain. The family is already revoked
            // (that commit stands); a failed audit write is logged, and the caller is refused anyway.
            let event = palisade_store::AuditEvent {
                action: "auth.refresh_reused".to_owned(),
                resource: "user".to_owned(),
                record_id: Some(user_id.to_string()),
                old: None,
                new: Some(serde_json::json!({ "family_revoked": family_id })),
            };
            if let Err(e) = app
                .stores()
                .audit
                .record_system(
                    &SystemScope::internal(InternalRole::SignIn),
                    tenant_id,
                    &audit,
                    event,
                )
                .await
            {
                tracing::error!(target: "security", error = %e, "recording refresh-token reuse in the audit trail failed");
            }
            return Err(ApiError::Unauthenticated {
                code: "auth.refresh_reused",
                detail: "The refresh token was already used; the session is revoked.",
                challenge: Challenge::InvalidToken,
            });
        }
        RotateOutcome::NotFound | RotateOutcome::FamilyRevoked | RotateOutcome::Expired => {
            return Err(refused());
        }
    };
    let tenant = app
        .stores()
        .tenants
        .resolve_tenant(session.tenant_id)
        .await?
        .ok_or_else(refused)?;
    let scope = SystemScope::internal(InternalRole::SignIn).tenant_scope(tenant.to_ref());
    let user = app
        .stores()
        .users
        .get_user(&scope, session.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(refused)?;
    let view = issue_tokens(
        &app,
        &scope,
        &user,
        Session::Rotated {
            family_id: session.family_id,
            refresh_token: next,
        },
        session.amr,
        session.auth_time,
    )
    .await?;
    Ok(AxumJson(view))
}

/// `204`, with the session cookie cleared when the caller used it.
fn no_content_for(app: &AppState, caller: &Principal) -> ApiResult<Response> {
    let mut res = StatusCode::NO_CONTENT.into_response();
    if caller.method == palisade_authz::AuthMethod::Session {
        res.headers_mut().insert(
            axum::http::header::SET_COOKIE,
            crate::auth::sessions::clear_cookie(app)?,
        );
    }
    Ok(res)
}

async fn logout(State(app): State<AppState>, Caller(caller): Caller) -> ApiResult<Response> {
    let auth = app.auth();
    let now = OffsetDateTime::now_utc();
    if let Some(jti) = &caller.token_id {
        let until = caller
            .token_expires_at
            .unwrap_or(now + auth.tokens.access_ttl());
        auth.state
            .revocations
            .revoke(jti, until)
            .await
            .map_err(|_| state_down())?;
    }
    if let Some(sid) = &caller.session_id {
        match app.stores().refresh.revoke_family(sid, now).await {
            Ok(()) | Err(palisade_store::StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(target: "security", event = "logout", user = %caller.subject, "logged out");
    no_content_for(&app, &caller)
}

async fn logout_all(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
) -> ApiResult<Response> {
    let scope = SystemScope::internal(InternalRole::SignIn).tenant_scope(caller.home.clone());
    principal_cache::invalidate(&app, caller.home.id, async {
        app.stores()
            .users
            .bump_token_version(&scope, caller.subject, &audit)
            .await?;
        app.stores()
            .refresh
            .revoke_user_families(&scope, caller.subject, OffsetDateTime::now_utc())
            .await?;
        Ok(())
    })
    .await?;
    tracing::info!(target: "security", event = "logout_all", user = %caller.subject, "every token of the user revoked");
    no_content_for(&app, &caller)
}

async fn get_csrf(
    State(app): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<AxumJson<CsrfView>> {
    let session_id = caller
        .session_id
        .as_deref()
        .filter(|_| caller.method == palisade_authz::AuthMethod::Session)
        .ok_or_else(|| ApiError::Forbidden {
            code: "auth.session_required",
            detail: "Only a browser session has a CSRF token; tokens and API keys need none."
                .to_owned(),
        })?;
    Ok(AxumJson(CsrfView {
        csrf_token: crate::auth::sessions::csrf_token(&app, session_id),
    }))
}

async fn get_jwks(State(app): State<AppState>) -> Response {
    let mut res = AxumJson(app.auth().tokens.keys().jwks()).into_response();
    // Public keys may be cached briefly; rotation keeps the old key published while it verifies.
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("public, max-age=300"),
    );
    res
}

async fn get_me(Caller(caller): Caller) -> AxumJson<MeView> {
    AxumJson(MeView {
        subject: caller.subject.to_string(),
        tenant_id: caller.home.id.to_string(),
        scope_level: caller.scope_level().as_str().to_owned(),
        roles: caller.roles.clone(),
        capabilities: caller
            .capabilities
            .iter()
            .map(ToString::to_string)
            .collect(),
        method: caller.method.as_str().to_owned(),
        amr: caller.amr.clone(),
    })
}
