//! Access tokens (RFC 9068 profile, ES512) and the bearer authenticator.
//!
//! Invariants:
//! - Tokens are signed only by the key ring's active key, with `typ: at+jwt`; verification accepts
//!   exactly ES512 with a known `kid` (see `palisade_crypto::jws`), then checks `iss`, `aud`, `exp`, `nbf`
//!   and `iat` with at most 60 s leeway, and a lifetime no longer than configured.
//! - A verified signature may be cached by the token's fingerprint until `exp`, but revocation (the
//!   `jti` deny list) is checked on every request, and the user's token version by the guard. If the
//!   revocation list cannot be asked, the request fails closed (503).
//! - Capabilities are never read from a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::{HeaderMap, header};
use palisade_authz::AuthMethod;
use palisade_crypto::jws::{self, ClaimRules};
use palisade_domain::{ScopeLevel, TenantId, UserId};
use palisade_state::RevocationList;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::keyring::KeyRing;
use crate::authn::{AuthOutcome, Authenticator, Identity};

/// The `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Access-token claims (API.md "Credentials").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id, for revocation.
    pub jti: String,
    /// Home tenant id.
    pub tid: String,
    /// `system`, `partner`, `parent` or `tenant`.
    pub scope_level: ScopeLevel,
    /// The user's token version when issued.
    pub ver: i64,
    /// Authentication methods references.
    pub amr: Vec<String>,
    /// When the user last proved a factor.
    pub auth_time: i64,
    /// The sign-in session (refresh family), so logout can end it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Settings the token service needs.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Access-token lifetime.
    pub access_ttl: time::Duration,
    /// Clock leeway.
    pub leeway: std::time::Duration,
    /// Whether verified signatures are cached until `exp`.
    pub cache_verifications: bool,
}

/// Issues and verifies access tokens.
pub struct TokenService {
    keys: Arc<KeyRing>,
    revocations: Arc<dyn RevocationList>,
    rules: TokenRules,
    clock: crate::clock::Clock,
    cache: Mutex<HashMap<[u8; 32], AccessClaims>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.rules.issuer)
            .finish_non_exhaustive()
    }
}

/// Entries kept in the verification cache before it is cleared.
const CACHE_CAP: usize = 50_000;

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[error("cannot issue a token: {0}")]
pub struct IssueError(pub String);

/// What to put in a new access token.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The user.
    pub user_id: UserId,
    /// Home tenant.
    pub tenant_id: TenantId,
    /// Scope level of the home tenant.
    pub scope_level: ScopeLevel,
    /// Token version.
    pub token_version: i64,
    /// Methods.
    pub amr: Vec<String>,
    /// Last factor proof.
    pub auth_time: OffsetDateTime,
    /// The refresh family.
    pub session_id: Option<String>,
}

impl TokenService {
    /// A token service over the key ring and the revocation list; `iat`, `exp` and `nbf` are
    /// issued and checked against `clock`.
    #[must_use]
    pub fn new(
        keys: Arc<KeyRing>,
        revocations: Arc<dyn RevocationList>,
        rules: TokenRules,
        clock: crate::clock::Clock,
    ) -> Self {
        Self {
            keys,
            revocations,
            rules,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key ring.
    #[must_use]
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The access-token lifetime.
    #[must_use]
    pub fn access_ttl(&self) -> time::Duration {
        self.rules.access_ttl
    }

    /// Issues an access token; returns it with its claims.
    ///
    /// # Errors
    /// [`IssueError`] when no key is active or signing fails.
    pub fn issue(&self, subject: &Subject) -> Result<(String, AccessClaims), IssueError> {
        let signer = self
            .keys
            .signer()
            .ok_or_else(|| IssueError("no active signing key".into()))?;
        let now = self.clock.now().unix_timestamp();
        let claims = AccessClaims {
            iss: self.rules.issuer.clone(),
            sub: subject.user_id.to_string(),
            aud: self.rules.audience.clone(),
            exp: now + self.rules.access_ttl.whole_seconds(),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::now_v7().to_string(),
            tid: subject.tenant_id.to_string(),
            scope_level: subject.scope_level,
            ver: subject.token_version,
            amr: subject.amr.clone(),
            auth_time: subject.auth_time.unix_timestamp(),
            sid: subject.session_id.clone(),
        };
        let value = serde_json::to_value(&claims).map_err(|e| IssueError(e.to_string()))?;
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), ACCESS_TOKEN_TYP.into());
        let token = signer
            .sign(&header, &value)
            .map_err(|e| IssueError(e.to_string()))?;
        Ok((token, claims))
    }

    /// Verifies a token's signature and claims (not revocation). `Err` carries a stable reason code.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, &'static str> {
        let fingerprint = palisade_crypto::fingerprint(token.as_bytes());
        let now = self.clock.now();
        if self.rules.cache_verifications
            && let Some(c) = self
                .cache
                .lock()
                .ok()
                .and_then(|m| m.get(&fingerprint).cloned())
        {
            // The cached signature still holds; only time can have changed.
            if now.unix_timestamp()
                < c.exp + i64::try_from(self.rules.leeway.as_secs()).unwrap_or(0)
            {
                return Ok(c);
            }
        }
        let kid = peek_kid(token).ok_or("auth.invalid_token")?;
        let key = self.keys.verifier(&kid).await;
        let verified = jws::verify(token, |k: &str| if k == kid { key.clone() } else { None })
            .map_err(|e| {
                tracing::debug!(target: "security", reason = e.code(), "bearer token refused");
                "auth.invalid_token"
            })?;
        if verified.typ() != Some(ACCESS_TOKEN_TYP) {
            return Err("auth.invalid_token");
        }
        let rules = ClaimRules {
            issuer: self.rules.issuer.clone(),
            audience: self.rules.audience.clone(),
            now,
            leeway: self.rules.leeway,
            max_lifetime: Some(std::time::Duration::from_secs(
                u64::try_from(self.rules.access_ttl.whole_seconds()).unwrap_or(0) + 60,
            )),
        };
        jws::validate_claims(&verified.payload, &rules).map_err(|e| match e.code() {
            "expired" => "auth.token_expired",
            _ => "auth.invalid_token",
        })?;
        let claims: AccessClaims =
            serde_json::from_value(verified.payload).map_err(|_| "auth.invalid_token")?;
        if self.rules.cache_verifications
            && let Ok(mut m) = self.cache.lock()
        {
            if m.len() >= CACHE_CAP {
                m.retain(|_, c| c.exp > now.unix_timestamp());
                if m.len() >= CACHE_CAP {
                    m.clear();
                }
            }
            m.insert(fingerprint, claims.clone());
        }
        Ok(claims)
    }
}

/// Reads the `kid` from a token's header without trusting anything else in it; the full strict
/// parse happens in `jws::verify`.
fn peek_kid(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    if header.len() > 2048 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("kid")?.as_str().map(str::to_owned)
}

/// The bearer-token authenticator of the release build.
pub struct BearerAuthenticator {
    tokens: Arc<TokenService>,
}

impl BearerAuthenticator {
    /// Over a token service.
    #[must_use]
    pub fn new(tokens: Arc<TokenService>) -> Self {
        Self { tokens }
    }
}

#[async_trait]
impl Authenticator for BearerAuthenticator {
    async fn authenticate(&self, headers: &HeaderMap) -> AuthOutcome {
        // SECURITY: Authorization is not a list header (RFC 9110 §11.6.2). Two of them could make a
        // proxy and this server disagree about who is calling, so any repetition is refused.
        if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
            return AuthOutcome::Rejected("auth.invalid_token");
        }
        let Some(raw) = headers.get(header::AUTHORIZATION) else {
            return if crate::authn::presents_credential(headers) {
                AuthOutcome::Rejected("auth.invalid_token")
            } else {
                AuthOutcome::Anonymous
            };
        };
        let Ok(raw) = raw.to_str() else {
            return AuthOutcome::Rejected("auth.invalid_token");
        };
        let mut parts = raw.splitn(2, ' ');
        let (Some(scheme), Some(token)) = (parts.next(), parts.next()) else {
            return AuthOutcome::Rejected("auth.invalid_token");
        };
        if !scheme.eq_ignore_ascii_case("bearer")
            || token.trim().is_empty()
            || token.trim() != token
        {
            return AuthOutcome::Rejected("auth.invalid_token");
        }
        let claims = match self.tokens.verify(token).await {
            Ok(c) => c,
            Err(code) => return AuthOutcome::Rejected(code),
        };
        // SECURITY: revocation is checked on every request, never cached; unreachable state denies.
        match self.tokens.revocations.is_revoked(&claims.jti).await {
            Ok(false) => {}
            Ok(true) => return AuthOutcome::Rejected("auth.token_revoked"),
            Err(_) => return AuthOutcome::Unavailable,
        }
        let (Ok(user_id), Ok(tenant_id)) =
            (claims.sub.parse::<UserId>(), claims.tid.parse::<TenantId>())
        else {
            return AuthOutcome::Rejected("auth.invalid_token");
        };
        AuthOutcome::Authenticated(Identity {
            user_id,
            tenant_id,
            method: AuthMethod::Bearer,
            amr: claims.amr.clone(),
            auth_time: OffsetDateTime::from_unix_timestamp(claims.auth_time).ok(),
            token_version: Some(claims.ver),
            token_id: Some(claims.jti.clone()),
            expires_at: OffsetDateTime::from_unix_timestamp(claims.exp).ok(),
            session_id: claims.sid.clone(),
        })
    }
}
