//! The second factor (API.md "Authentication"): TOTP enrolment and confirmation (RFC 6238, SHA-1,
//! 6 digits, 30 s), single-use recovery codes, the MFA step of sign-in, step-up, and disabling TOTP.
//!
//! SECURITY:
//! - TOTP secrets rest sealed (AES-256-GCM under `palisade/totp/v1`, the user id as associated data).
//! - A TOTP code is accepted at most once: the accepted time step only moves forward, atomically.
//! - Recovery codes (10, shown once) are stored as keyed hashes and are single-use.
//! - The `mfa_token` between the OTP and the TOTP step is HMAC-signed, bound to the user, valid for
//!   5 minutes and single-use.
//! - Disabling TOTP is a `requires_mfa` capability: it needs a step-up within the window.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use palisade_authz::{
    Access, InternalRole, Principal, SystemScope, TenantScope, capability::platform,
};
use palisade_crypto::TotpSecret;
use palisade_domain::{TenantId, UserId, UserStatus};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Challenge};
use crate::extract::{Audited, Caller, Json};
use crate::router::{SecureRouter, op};
use crate::routes::auth::{Session, TokenView, issue_tokens};
use crate::state::AppState;

/// `POST /v1/auth/totp/enroll` → the secret to put in an authenticator app.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrollView {
    /// Base32 secret.
    pub secret: String,
    /// `otpauth://totp/...` for a QR code.
    pub otpauth_uri: String,
}

/// A second-factor code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A 6-digit TOTP code (or, where accepted, a recovery code).
    pub code: String,
}

/// `POST /v1/auth/totp/confirm` → recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodesView {
    /// Ten single-use codes.
    pub recovery_codes: Vec<String>,
}

/// `POST /v1/auth/mfa/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyRequest {
    /// From `otp/verify`.
    pub mfa_token: String,
    /// TOTP or recovery code.
    pub code: String,
    /// Ask for a browser session instead of tokens (see `otp/verify`).
    #[serde(default)]
    pub session: bool,
}

/// `200` of `otp/verify` when TOTP is enrolled.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaRequiredView {
    /// Always true.
    pub mfa_required: bool,
    /// Pass to `mfa/verify` with the code.
    pub mfa_token: String,
}

pub(crate) fn register(r: SecureRouter) -> SecureRouter {
    r.post(
        "/v1/auth/totp/enroll",
        Access::cap(platform::SELF_MFA_MANAGE),
        op("enrollTotp", "Start TOTP enrolment", "authentication").ok::<TotpEnrollView>(200),
        enroll_totp,
    )
    .post(
        "/v1/auth/totp/confirm",
        Access::cap(platform::SELF_MFA_MANAGE),
        op(
            "confirmTotp",
            "Confirm TOTP with a code; returns recovery codes once",
            "authentication",
        )
        .body::<CodeRequest>()
        .ok::<RecoveryCodesView>(200),
        confirm_totp,
    )
    .delete(
        "/v1/auth/totp",
        Access::cap(platform::SELF_MFA_DISABLE),
        op(
            "disableTotp",
            "Disable TOTP (needs step-up)",
            "authentication",
        )
        .empty(204),
        disable_totp,
    )
    .post(
        "/v1/auth/step-up",
        Access::cap(platform::SELF_MFA_MANAGE),
        op(
            "stepUp",
            "Prove TOTP again for a fresh auth_time",
            "authentication",
        )
        .body::<CodeRequest>()
        .ok::<TokenView>(200),
        step_up,
    )
    .post(
        "/v1/auth/mfa/verify",
        Access::Public {
            reason: "second step of sign-in; the mfa_token from otp/verify is the credential",
        },
        op(
            "verifyMfa",
            "Complete sign-in with TOTP or a recovery code",
            "authentication",
        )
        .body::<MfaVerifyRequest>()
        .ok::<TokenView>(200)
        .or::<crate::routes::auth::SessionView>(),
        verify_mfa,
    )
}

fn invalid_code() -> ApiError {
    ApiError::Unauthenticated {
        code: "auth.invalid_code",
        detail: "The code is wrong or already used.",
        challenge: Challenge::InvalidToken,
    }
}

fn own_scope(caller: &Principal) -> TenantScope {
    SystemScope::internal(InternalRole::SignIn).tenant_scope(caller.home.clone())
}

fn seal_label(user: UserId) -> String {
    format!("totp:{user}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn open_secret(app: &AppState, user: UserId, sealed: &str) -> ApiResult<TotpSecret> {
    let raw = STANDARD
        .decode(sealed)
        .map_err(|_| ApiError::internal("stored TOTP secret is not base64"))?;
    let bytes =
        palisade_crypto::aead::open(&app.auth().totp_key, seal_label(user).as_bytes(), &raw)
            .map_err(ApiError::internal)?;
    TotpSecret::from_bytes(bytes.expose_secret()).map_err(ApiError::internal)
}

/// Tells the user by e-mail that their second factor changed (off the request path).
async fn send_notice(
    app: &AppState,
    scope: &TenantScope,
    user: UserId,
    subject: &'static str,
    text: &'static str,
) {
    let Ok(Some(u)) = app.stores().users.get_user(scope, user).await else {
        return;
    };
    crate::notify::notice_in_background(app, u.email, subject, text.to_owned());
}

fn now_unix(app: &AppState) -> u64 {
    u64::try_from(app.now().unix_timestamp()).unwrap_or(0)
}

/// Checks a second factor for `user`: a TOTP code (each time step accepted once) or, when
/// `allow_recovery`, a recovery code (single use).
async fn check_second_factor(
    app: &AppState,
    scope: &TenantScope,
    user: UserId,
    code: &str,
    allow_recovery: bool,
) -> ApiResult<()> {
    let stores = app.stores();
    let mfa = stores
        .mfa
        .get_mfa(scope, user)
        .await?
        .ok_or_else(invalid_code)?;
    let (true, Some(sealed)) = (mfa.totp_enabled, mfa.totp_sealed.as_deref()) else {
        return Err(invalid_code());
    };
    let code = code.trim();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret = open_secret(app, user, sealed)?;
        let step = secret
            .verify(code, now_unix(app), 1)
            .ok_or_else(invalid_code)?;
        let step = i64::try_from(step).map_err(ApiError::internal)?;
        // SECURITY: the step moves forward atomically, so a code is accepted at most once.
        if !stores.mfa.advance_totp_step(scope, user, step).await? {
            return Err(invalid_code());
        }
        return Ok(());
    }
    if allow_recovery
        && let Some(normalized) = palisade_crypto::recovery::normalize_recovery_code(code)
    {
        let hash = hex(&app
            .auth()
            .recovery_hasher
            .hash(normalized.expose_secret().as_bytes()));
        if stores.mfa.consume_recovery_code(scope, user, &hash).await? {
            tracing::warn!(target: "security", event = "mfa.recovery_code_used", user = %user, "recovery code used");
            return Ok(());
        }
    }
    Err(invalid_code())
}

async fn enroll_totp(
    State(app): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<AxumJson<TotpEnrollView>> {
    let scope = own_scope(&caller);
    let user = app
        .stores()
        .users
        .get_user(&scope, caller.subject)
        .await?
        .ok_or(ApiError::NotFound {
            code: "user.not_found",
        })?;
    let secret = TotpSecret::generate();
    let sealed = palisade_crypto::aead::seal(
        &app.auth().totp_key,
        seal_label(caller.subject).as_bytes(),
        secret.expose_bytes(),
    )
    .map_err(ApiError::internal)?;
    app.stores()
        .mfa
        .set_pending_totp(&scope, caller.subject, STANDARD.encode(sealed))
        .await?;
    let uri = secret
        .otpauth_uri("Palisade", &user.email)
        .map_err(ApiError::internal)?;
    Ok(AxumJson(TotpEnrollView {
        secret: secret.base32().expose_secret().to_owned(),
        otpauth_uri: uri.expose_secret().to_owned(),
    }))
}

async fn confirm_totp(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
    Json(body): Json<CodeRequest>,
) -> ApiResult<AxumJson<RecoveryCodesView>> {
    let scope = own_scope(&caller);
    let stores = app.stores();
    let mfa = stores.mfa.get_mfa(&scope, caller.subject).await?;
    let Some(pending) = mfa.as_ref().and_then(|m| m.pending_sealed.clone()) else {
        return Err(ApiError::Conflict {
            code: "mfa.not_enrolling",
            detail: "Start with POST /v1/auth/totp/enroll.".to_owned(),
        });
    };
    let secret = open_secret(&app, caller.subject, &pending)?;
    let step = secret
        .verify(body.code.trim(), now_unix(&app), 1)
        .ok_or_else(invalid_code)?;
    let step = i64::try_from(step).map_err(ApiError::internal)?;
    if !stores
        .mfa
        .advance_totp_step(&scope, caller.subject, step)
        .await?
    {
        return Err(invalid_code());
    }
    let codes = palisade_crypto::recovery::recovery_codes(10);
    let hashes = codes
        .iter()
        .map(|c| {
            hex(&app
                .auth()
                .recovery_hasher
                .hash(c.expose_secret().as_bytes()))
        })
        .collect();
    stores
        .mfa
        .enable_totp(&scope, caller.subject, hashes, &audit)
        .await?;
    tracing::info!(target: "security", event = "mfa.totp_enabled", user = %caller.subject, "TOTP enabled");
    send_notice(&app, &scope, caller.subject, "Two-factor sign-in was turned on", "TOTP was enabled on your Palisade account. If this was not you, contact your administrator.").await;
    Ok(AxumJson(RecoveryCodesView {
        recovery_codes: codes.iter().map(|c| c.expose_secret().to_owned()).collect(),
    }))
}

async fn disable_totp(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Caller(caller): Caller,
) -> ApiResult<StatusCode> {
    let scope = own_scope(&caller);
    match app
        .stores()
        .mfa
        .disable_totp(&scope, caller.subject, &audit)
        .await
    {
        Ok(()) => {}
        Err(palisade_store::StoreError::NotFound) => {
            return Err(ApiError::Conflict {
                code: "mfa.not_enabled",
                detail: "TOTP is not enabled.".to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(target: "security", event = "mfa.totp_disabled", user = %caller.subject, "TOTP disabled");
    send_notice(&app, &scope, caller.subject, "Two-factor sign-in was turned off", "TOTP was disabled on your Palisade account. If this was not you, contact your administrator.").await;
    Ok(StatusCode::NO_CONTENT)
}

async fn step_up(
    State(app): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CodeRequest>,
) -> ApiResult<AxumJson<TokenView>> {
    let scope = own_scope(&caller);
    // Step-up proves possession now: TOTP only, never a recovery code.
    check_second_factor(&app, &scope, caller.subject, &body.code, false).await?;
    let user = app
        .stores()
        .users
        .get_user(&scope, caller.subject)
        .await?
        .ok_or_else(invalid_code)?;
    tracing::info!(target: "security", event = "mfa.step_up", user = %caller.subject, "step-up");
    Ok(AxumJson(
        issue_tokens(
            &app,
            &scope,
            &user,
            Session::New,
            vec!["otp".to_owned(), "totp".to_owned()],
            app.now(),
        )
        .await?,
    ))
}

/// The payload of an `mfa_token`: who passed the first factor, and when the token expires.
fn mfa_context() -> &'static str {
    "mfa-token"
}

/// Mints the token between the OTP and TOTP steps of sign-in.
///
/// # Errors
/// 500 if signing fails.
pub fn mint_mfa_token(
    app: &AppState,
    user: UserId,
    tenant: TenantId,
) -> ApiResult<MfaRequiredView> {
    let exp = app.now().unix_timestamp() + 300;
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let payload = format!("{user}|{tenant}|{exp}|{nonce}");
    let token = app
        .cursors()
        .sign(mfa_context(), payload.as_bytes())
        .map_err(ApiError::internal)?;
    Ok(MfaRequiredView {
        mfa_required: true,
        mfa_token: token,
    })
}

async fn verify_mfa(
    State(app): State<AppState>,
    Audited(audit): Audited,
    Json(body): Json<MfaVerifyRequest>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    crate::routes::auth::check_session_request(&app, body.session)?;
    let refused = || ApiError::Unauthenticated {
        code: "auth.invalid_mfa_token",
        detail: "The MFA token is not valid.",
        challenge: Challenge::InvalidToken,
    };
    let payload = app
        .cursors()
        .verify(mfa_context(), &body.mfa_token)
        .map_err(|_| refused())?;
    let payload = String::from_utf8(payload).map_err(|_| refused())?;
    let mut parts = payload.split('|');
    let (Some(user), Some(tenant), Some(exp), Some(nonce)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused());
    };
    let user: UserId = user.parse().map_err(|_| refused())?;
    let tenant: TenantId = tenant.parse().map_err(|_| refused())?;
    let exp: i64 = exp.parse().map_err(|_| refused())?;
    if app.now().unix_timestamp() >= exp {
        return Err(refused());
    }
    let tenant = app
        .stores()
        .tenants
        .resolve_tenant(tenant)
        .await?
        .ok_or_else(refused)?;
    let scope = SystemScope::internal(InternalRole::SignIn).tenant_scope(tenant.to_ref());
    check_second_factor(&app, &scope, user, &body.code, true).await?;
    // SECURITY: single use, across instances.
    let fresh = app
        .auth()
        .state
        .once
        .first_use(
            &format!("mfa-token:{nonce}"),
            std::time::Duration::from_secs(300),
        )
        .await
        .map_err(|_| ApiError::Unavailable {
            code: "state.unavailable",
            retry_after: 1,
        })?;
    if !fresh {
        return Err(refused());
    }
    let user = app
        .stores()
        .users
        .get_user(&scope, user)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(refused)?;
    tracing::info!(target: "security", event = "sign_in.succeeded", user = %user.id, amr = "otp+totp", "signed in with a second factor");
    let amr = vec!["otp".to_owned(), "totp".to_owned()];
    if body.session {
        return crate::routes::auth::start_session(&app, &scope, &user, amr, app.now(), audit)
            .await;
    }
    Ok(
        AxumJson(issue_tokens(&app, &scope, &user, Session::New, amr, app.now()).await?)
            .into_response(),
    )
}
