//! Browser sessions: the `palisade_session` cookie, its authentication, and the CSRF defence
//! (`docs/sessions.md`).
//!
//! Invariants:
//! - Off unless `auth.sessions.enabled`; while off, a session cookie is never read.
//! - The cookie value is `pss_` + 256 random bits (base64url); only an HMAC-SHA-256 of it (key derived
//!   from the master key, `palisade/session-cookie/v1`) is stored. The cookie is `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, without `Domain`, and `Secure` with the `__Host-` name prefix unless
//!   `auth.sessions.secure_cookie = false` (development only; refused in production).
//! - A session is a refresh family: every request reads it from the database (no cache), and it is
//!   refused when its family is revoked (logout, logout-all, refresh reuse), after the idle timeout or
//!   the absolute lifetime, when the user's token version moved (logout-all), or when the user is
//!   disabled or gone (the guard resolves the user on every request). A store error denies (503).
//! - SECURITY (CSRF): an unsafe method (anything but GET, HEAD, OPTIONS, TRACE) authenticated by the
//!   cookie needs `X-CSRF-Token` equal to HMAC-SHA-256(key `palisade/csrf-token/v1`, session id),
//!   compared in constant time, and must not come from another site: `Sec-Fetch-Site` other than
//!   `same-origin`/`none`, or an `Origin` that is neither the request's own host nor listed in
//!   `server.cors_allowed_origins`, is refused even with a valid token. Every refusal is
//!   `403 auth.csrf_failed`.
//! - Bearer, DPoP and API-key requests never read the cookie: when one of those credentials is
//!   present the cookie is ignored, so it can neither widen nor confuse their authentication.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine as _;
use palisade_authz::{AuthMethod, Principal};
use palisade_store::BrowserSession;
use time::OffsetDateTime;

use crate::authn::Identity;
use crate::error::{ApiError, Challenge};
use crate::state::AppState;

/// The cookie's name without a prefix (API.md).
pub const COOKIE_NAME: &str = "palisade_session";
/// The cookie's name when it is `Secure` (RFC 6265bis `__Host-` prefix: Secure, `Path=/`, no Domain).
pub const SECURE_COOKIE_NAME: &str = "__Host-palisade_session";
/// The request header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The prefix of cookie values.
pub const COOKIE_VALUE_PREFIX: &str = "pss_";
/// `pss_` + 43 characters of base64url (256 bits).
const COOKIE_VALUE_LEN: usize = 4 + 43;
/// Uses are recorded at most this often per session (a write per request would be wasteful); the idle
/// timeout is therefore exact to within this many seconds.
const TOUCH_EVERY_SECS: i64 = 60;

/// The cookie name in force for these settings.
#[must_use]
pub fn cookie_name(app: &AppState) -> &'static str {
    if app.settings().auth.sessions.secure_cookie {
        SECURE_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}

/// Whether browser sessions are enabled.
#[must_use]
pub fn enabled(app: &AppState) -> bool {
    app.settings().auth.sessions.enabled
}

fn attributes(app: &AppState) -> &'static str {
    if app.settings().auth.sessions.secure_cookie {
        "Path=/; HttpOnly; Secure; SameSite=Strict"
    } else {
        "Path=/; HttpOnly; SameSite=Strict"
    }
}

/// The `Set-Cookie` value that hands a session to the browser.
///
/// # Errors
/// Never in practice: the value is base64url.
pub fn set_cookie(app: &AppState, value: &str) -> Result<HeaderValue, ApiError> {
    let max_age = app.settings().auth.sessions.absolute_lifetime_secs;
    HeaderValue::from_str(&format!(
        "{}={value}; Max-Age={max_age}; {}",
        cookie_name(app),
        attributes(app)
    ))
    .map_err(ApiError::internal)
}

/// The `Set-Cookie` value that makes the browser forget the session (`Max-Age=0`).
///
/// # Errors
/// Never in practice: the value is fixed text.
pub fn clear_cookie(app: &AppState) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!(
        "{}=; Max-Age=0; {}",
        cookie_name(app),
        attributes(app)
    ))
    .map_err(ApiError::internal)
}

/// The hex keyed hash of a cookie value, as stored.
#[must_use]
pub fn hash_cookie(app: &AppState, value: &str) -> String {
    app.auth()
        .session_hasher
        .hash(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The CSRF token of a session: base64url of HMAC-SHA-256(csrf key, `csrf|<session id>`).
#[must_use]
pub fn csrf_token(app: &AppState, session_id: &str) -> String {
    let mac = app
        .auth()
        .csrf_hasher
        .hash(format!("csrf|{session_id}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
}

fn invalid_session() -> ApiError {
    ApiError::Unauthenticated {
        code: "auth.invalid_session",
        detail: "The session is not valid; sign in again.",
        challenge: Challenge::InvalidToken,
    }
}

/// The session cookie's value, if the request carries our cookie. Several values under our name are
/// refused (a planted second cookie must not pick the session).
///
/// # Errors
/// 401 `auth.invalid_session` for duplicates.
pub fn presented(app: &AppState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let name = cookie_name(app);
    let mut found: Option<String> = None;
    for raw in headers.get_all(header::COOKIE) {
        let Ok(raw) = raw.to_str() else {
            continue;
        };
        for pair in raw.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() != name {
                continue;
            }
            if found.is_some() {
                return Err(invalid_session());
            }
            found = Some(v.trim().trim_matches('"').to_owned());
        }
    }
    Ok(found)
}

/// Whether `value` has the shape of a cookie this server issues (checked before any lookup).
fn well_formed(value: &str) -> bool {
    value.len() == COOKIE_VALUE_LEN
        && value.starts_with(COOKIE_VALUE_PREFIX)
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Authenticates a session cookie value into an [`Identity`] (the user is resolved and checked by the
/// guard, like every other credential).
///
/// # Errors
/// 401 `auth.invalid_session` (unknown, malformed, revoked) or `auth.session_expired` (idle or
/// absolute); a store error (503).
pub async fn authenticate(app: &AppState, value: &str) -> Result<Identity, ApiError> {
    if !well_formed(value) {
        return Err(invalid_session());
    }
    let stores = app.stores();
    let session = stores
        .sessions
        .find_session(&hash_cookie(app, value))
        .await?
        .ok_or_else(invalid_session)?;
    let now = OffsetDateTime::now_utc();
    check_live(app, &session, now)?;
    if (now - session.last_seen_at).whole_seconds() >= TOUCH_EVERY_SECS {
        stores
            .sessions
            .touch_session(&session.family_id, now)
            .await?;
    }
    Ok(Identity {
        user_id: session.user_id,
        tenant_id: session.tenant_id,
        method: AuthMethod::Session,
        amr: session.amr,
        auth_time: Some(session.auth_time),
        token_version: Some(session.token_version),
        token_id: None,
        expires_at: Some(session.expires_at),
        session_id: Some(session.family_id),
    })
}

fn check_live(
    app: &AppState,
    session: &BrowserSession,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    if session.revoked_at.is_some() {
        return Err(invalid_session());
    }
    let idle = time::Duration::seconds(
        i64::try_from(app.settings().auth.sessions.idle_timeout_secs).unwrap_or(0),
    );
    if session.expires_at <= now || session.last_seen_at + idle <= now {
        return Err(ApiError::Unauthenticated {
            code: "auth.session_expired",
            detail: "The session has expired; sign in again.",
            challenge: Challenge::InvalidToken,
        });
    }
    Ok(())
}

fn csrf_failed(detail: &str) -> ApiError {
    ApiError::Forbidden {
        code: "auth.csrf_failed",
        detail: detail.to_owned(),
    }
}

/// Whether `method` is safe (RFC 9110 §9.2.1): it needs no CSRF token.
#[must_use]
pub fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The CSRF defence for a principal authenticated by the session cookie; other principals pass.
///
/// # Errors
/// 403 `auth.csrf_failed`.
pub fn check_csrf(
    app: &AppState,
    principal: &Principal,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if principal.method != AuthMethod::Session || is_safe(method) {
        return Ok(());
    }
    check_origin(app, headers)?;
    let Some(session_id) = principal.session_id.as_deref() else {
        return Err(csrf_failed("The session has no CSRF binding."));
    };
    let mut presented = headers.get_all(CSRF_HEADER).iter();
    let (Some(token), None) = (presented.next(), presented.next()) else {
        return Err(csrf_failed(
            "This request needs exactly one X-CSRF-Token header (GET /v1/auth/csrf).",
        ));
    };
    let decoded = token
        .to_str()
        .ok()
        .filter(|t| t.len() <= 64)
        .and_then(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
        })
        .unwrap_or_default();
    // SECURITY: constant-time comparison of the keyed hash.
    if !app
        .auth()
        .csrf_hasher
        .verify(format!("csrf|{session_id}").as_bytes(), &decoded)
    {
        tracing::info!(target: "security", event = "csrf.refused", user = %principal.subject, "wrong CSRF token");
        return Err(csrf_failed("The X-CSRF-Token does not match the session."));
    }
    Ok(())
}

/// Defence in depth: a cookie-authenticated unsafe request from another site is refused, token or not.
fn check_origin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let allowed = &app.settings().server.cors_allowed_origins;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    // The operator's own front ends: `server.cors_allowed_origins` and the origin of `server.public_url`.
    let public = app.settings().server.public_url.as_deref().map(origin_of);
    let listed = origin.is_some_and(|o| allowed.iter().any(|a| a == o) || public == Some(o));
    if let Some(site) = headers.get("sec-fetch-site") {
        let same = matches!(site.to_str(), Ok("same-origin" | "none"));
        if !same && !listed {
            tracing::info!(target: "security", event = "csrf.refused", "cross-site request with a session cookie");
            return Err(csrf_failed("Cross-site requests cannot use the session."));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, authority)| Some(authority) == host);
        if !own && !listed {
            tracing::info!(target: "security", event = "csrf.refused", "foreign Origin with a session cookie");
            return Err(csrf_failed("Cross-site requests cannot use the session."));
        }
    }
    Ok(())
}

/// `scheme://authority` of a URL (its path dropped).
fn origin_of(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url
        .get(start..)
        .and_then(|rest| rest.find('/'))
        .map_or(url.len(), |i| start + i);
    url.get(..end).unwrap_or(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_of_a_url_drops_its_path() {
        assert_eq!(
            origin_of("https://app.example.com/base/"),
            "https://app.example.com"
        );
        assert_eq!(
            origin_of("https://app.example.com"),
            "https://app.example.com"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/x"),
            "http://127.0.0.1:8080"
        );
    }

    use super::*;

    #[test]
    fn cookie_values_are_checked_for_shape_before_lookup() {
        let good = format!("pss_{}", "A".repeat(43));
        assert!(well_formed(&good));
        assert!(!well_formed("pss_short"));
        assert!(!well_formed(&format!("prt_{}", "A".repeat(43))));
        assert!(!well_formed(&format!("pss_{}!", "A".repeat(42))));
        assert!(!well_formed(&format!("pss_{}", "A".repeat(44))));
    }

    #[test]
    fn unsafe_methods_are_the_ones_needing_a_token() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(is_safe(&m));
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_safe(&m));
        }
    }
}
