//! The authorization layer: one instance per protected route, carrying that route's capability.
//!
//! For a protected route it (1) authenticates the request, (2) loads the caller's home tenant and user
//! and resolves their capabilities from their roles (built-in, and the home tenant's custom roles with
//! inheritance), (3) picks the target tenant (home, or
//! `X-Tenant-Id` within reach), (4) calls [`palisade_authz::decide`], (5) on Allow applies the target
//! tenant's Cedar conditions ([`crate::policies`], which can only narrow), and then inserts the
//! [`palisade_authz::Principal`] and [`palisade_authz::TenantScope`] for the handler.
//!
//! Around that, on every route but `/health`, `/ready` and `/metrics` (public routes included): a
//! blocked client IP is refused before authentication and a blocked user after it (403
//! `waf.blocked`, [`crate::waf`]); the request is counted by the rate limiter (429, per user, per IP,
//! or per IP on `/v1/auth/*`, [`crate::ratelimit`]); the query string and the body are checked by
//! the WAF before the handler (400 `waf.*`, 415 for a body type no route accepts). Refused
//! credentials are rate limited per IP like anonymous callers.
//!
//! After the decision, the network controls ([`crate::net`]): the client IP must be in the IP
//! allowlist of the tenant acted on and of the caller's home tenant, and, on platform administration
//! routes, in `[server] admin_allowed_ips` (403 `network.ip_not_allowed`). They run after the tenant
//! is resolved and decided, so a tenant out of reach still answers 404 and reveals nothing.
//!
//! SECURITY: every failure on the way denies. No credential → 401; a refused credential → 401 with
//! `error="invalid_token"`; a disabled user, vanished tenant or stale token version → 401; a tenant
//! outside the reach (or malformed, or unknown) → 404; a missing capability → 403; a tenant policy's
//! `forbid` or a policy evaluation error → 403; a store error → 503.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;

use palisade_authz::{
    Access, AuthMethod, BuiltinRole, Capability, Decision, DenyReason, InternalRole, Principal,
    RoleGraph, SystemScope, TenantRef, decide,
};
use palisade_domain::{TenantId, UserStatus};

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::{api_keys, sessions};
use crate::authn::{AuthOutcome, Identity};
use crate::error::{ApiError, Challenge};
use crate::net;
use crate::pipeline::ClientIp;
pub use crate::policies::RequestFacts;
use crate::principal_cache::{self, Resolved};
use crate::state::AppState;
use crate::{ratelimit, waf};

/// The header that selects another tenant within the principal's reach.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The guard's state: the app and the route's access declaration.
#[derive(Clone)]
pub struct Guard {
    /// Shared state.
    pub app: AppState,
    /// What the route demands.
    pub access: Access,
}

/// Who acted, for the access log (put into response extensions).
#[derive(Debug, Clone)]
pub struct AuthInfo {
    /// The user id.
    pub subject: String,
    /// The tenant acted on.
    pub tenant: String,
}

/// The middleware function: WAF block check, authentication and authorization, rate limit, WAF
/// body check, then the handler (see [`crate::ratelimit`] and [`crate::waf`]).
pub async fn authorize(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let app = &guard.app;
    // Liveness and the like: public, neither limited nor screened, so nothing more to do.
    if matches!(guard.access, Access::Public { .. }) && ratelimit::is_exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    // SECURITY: the pipeline always sets the client IP; without it the unspecified address is used,
    // which shares one limit with every other such request.
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0);
    // The Trust Center's in-process probes (a request extension no client can set) are neither
    // limited nor counted: probing must not look like traffic or attacks, nor trip the limiter.
    let self_check = req
        .extensions()
        .get::<crate::trust::checks::SelfCheckProbe>()
        .is_some();
    let shielded = !ratelimit::is_exempt(&path) && !self_check;
    let ip_subject = waf::ip_subject(ip);
    if shielded && let Err(res) = waf::check_block(app, &ip_subject).await {
        return res;
    }
    let Access::Capability(capability) = &guard.access else {
        if !shielded {
            return next.run(req).await;
        }
        let (key, quota) = ratelimit::key_for(app, &path, ip, None, None);
        let rate = match ratelimit::check(app, &key, quota).await {
            Ok(rate) => rate,
            Err(res) => return res,
        };
        let req = match waf::screen(app, &ip_subject, req).await {
            Ok(req) => req,
            Err(res) => return res,
        };
        let mut res = next.run(req).await;
        crate::security_stats::observe_sign_in(app.metrics(), &path, res.status());
        ratelimit::decorate(&mut res, rate);
        return res;
    };
    let authed = match authenticate_full(app, req.method(), req.headers(), Some(ip)).await {
        Ok(authed) => authed,
        Err(e) => {
            if !self_check {
                app.metrics().record_denial();
            }
            if !shielded {
                return e.into_response();
            }
            // Callers without an accepted credential are limited like anonymous ones, per client
            // IP, so a flood of bad or missing credentials is throttled too.
            let (key, quota) = ratelimit::key_for(app, &path, ip, None, None);
            return match ratelimit::check(app, &key, quota).await {
                Ok(rate) => {
                    let mut res = e.into_response();
                    ratelimit::decorate(&mut res, rate);
                    res
                }
                Err(res) => res,
            };
        }
    };
    let Authenticated {
        principal,
        home_ips,
        key_quota,
    } = authed;
    let user_subject = waf::user_subject(&principal.subject);
    if let Err(res) = waf::check_block(app, &user_subject).await {
        return res;
    }
    // Counted per user whether or not the route then grants access.
    let (key, quota) = ratelimit::key_for(app, &path, ip, Some(&principal), key_quota);
    let rate = match ratelimit::check(app, &key, quota).await {
        Ok(rate) => rate,
        Err(res) => return res,
    };
    let facts = RequestFacts {
        ip,
        http_method: req.method().as_str(),
        path: &path,
    };
    let scope = match authorize_principal(
        app,
        &principal,
        &home_ips,
        capability,
        req.headers(),
        &facts,
    )
    .await
    {
        Ok(scope) => scope,
        Err(e) => {
            app.metrics().record_denial();
            let mut res = e.into_response();
            ratelimit::decorate(&mut res, rate);
            return res;
        }
    };
    req = match waf::screen(app, &user_subject, req).await {
        Ok(req) => req,
        Err(res) => return res,
    };
    let info = AuthInfo {
        subject: principal.subject.to_string(),
        tenant: scope.tenant_id().to_string(),
    };
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(scope);
    let mut res = next.run(req).await;
    res.extensions_mut().insert(info);
    ratelimit::decorate(&mut res, rate);
    res
}

/// Authenticates and authorizes one request for `capability`.
///
/// # Errors
/// The [`ApiError`] to answer with.
pub async fn admit(
    app: &AppState,
    capability: &Capability,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
    facts: &RequestFacts<'_>,
) -> Result<(Principal, palisade_authz::TenantScope), ApiError> {
    let authed = authenticate_full(app, method, headers, Some(facts.ip)).await?;
    let scope = authorize_principal(
        app,
        &authed.principal,
        &authed.home_ips,
        capability,
        headers,
        facts,
    )
    .await?;
    Ok((authed.principal, scope))
}

/// A principal with what the guard needs besides it.
pub struct Authenticated {
    /// Who calls.
    pub principal: Principal,
    /// The home tenant's IP allowlist (canonical CIDRs; empty: anywhere).
    pub home_ips: Vec<String>,
    /// An API key's own rate limit, when the credential is a key that has one.
    pub key_quota: Option<palisade_store::KeyRateLimit>,
}

/// Authenticates a request and resolves its principal. A principal authenticated by the session
/// cookie has passed the CSRF defence for `method` too, so no caller can forget it.
///
/// # Errors
/// 401 for a missing or refused credential, 403 `auth.csrf_failed`, 503 when it cannot be checked, a
/// store error.
pub async fn authenticate(
    app: &AppState,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
    ip: Option<IpAddr>,
) -> Result<Principal, ApiError> {
    authenticate_full(app, method, headers, ip)
        .await
        .map(|a| a.principal)
}

/// [`authenticate`], keeping the home tenant's IP allowlist and an API key's own quota.
///
/// # Errors
/// As [`authenticate`].
pub async fn authenticate_full(
    app: &AppState,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
    ip: Option<IpAddr>,
) -> Result<Authenticated, ApiError> {
    if headers.contains_key(api_keys::API_KEY_HEADER) {
        // SECURITY: two credentials could name two callers; neither is picked silently.
        if headers.contains_key(axum::http::header::AUTHORIZATION) || headers.contains_key("dpop") {
            return Err(ApiError::Unauthenticated {
                code: "auth.ambiguous_credentials",
                detail: "Send either an API key or an Authorization header, not both.",
                challenge: Challenge::InvalidToken,
            });
        }
        return authenticate_api_key(app, headers, ip).await;
    }
    // A session cookie counts only when sessions are on and no other credential is presented: a
    // bearer, DPoP or API-key request ignores the cookie (docs/sessions.md).
    if sessions::enabled(app)
        && !crate::authn::presents_credential(headers)
        && let Some(value) = sessions::presented(app, headers)?
    {
        let identity = sessions::authenticate(app, &value).await?;
        let (principal, home_ips) =
            resolve_principal(app, identity)
                .await
                .map_err(|e| match e {
                    ApiError::Unauthenticated { .. } => ApiError::Unauthenticated {
                        code: "auth.invalid_session",
                        detail: "The session is not valid; sign in again.",
                        challenge: Challenge::InvalidToken,
                    },
                    other => other,
                })?;
        sessions::check_csrf(app, &principal, method, headers)?;
        return Ok(Authenticated {
            principal,
            home_ips,
            key_quota: None,
        });
    }
    let identity = match app.authenticator().authenticate(headers).await {
        AuthOutcome::Authenticated(id) => id,
        AuthOutcome::Anonymous => {
            return Err(ApiError::Unauthenticated {
                code: "auth.unauthenticated",
                detail: "This route needs a credential.",
                challenge: Challenge::Missing,
            });
        }
        AuthOutcome::Rejected(code) => {
            return Err(ApiError::Unauthenticated {
                code,
                detail: "The credential was refused.",
                challenge: Challenge::InvalidToken,
            });
        }
        // SECURITY: a credential that cannot be checked for revocation is not accepted.
        AuthOutcome::Unavailable => {
            return Err(ApiError::Unavailable {
                code: "state.unavailable",
                retry_after: 1,
            });
        }
    };
    let (principal, home_ips) = resolve_principal(app, identity).await?;
    Ok(Authenticated {
        principal,
        home_ips,
        key_quota: None,
    })
}

/// Picks the target tenant and decides `capability` for an authenticated principal, then applies the
/// target tenant's Cedar conditions to a grant ([`crate::policies::enforce`]: they can only narrow it).
///
/// On Allow, the network controls run (see the module header): the client IP `ip` (`None`: unknown,
/// which no non-empty list admits) against the target's and the home tenant's allowlists, and
/// against `[server] admin_allowed_ips` on platform administration routes.
///
/// # Errors
/// 404 for a tenant out of reach, 403 for a missing capability, step-up, a refused network or a
/// tenant policy's veto, a
/// store error.
pub async fn authorize_principal(
    app: &AppState,
    principal: &Principal,
    home_ips: &[String],
    capability: &Capability,
    headers: &axum::http::HeaderMap,
    facts: &RequestFacts<'_>,
) -> Result<palisade_authz::TenantScope, ApiError> {
    let (target, target_ips) = select_tenant(app, principal, headers).await?;
    let scope = match decide(
        principal,
        &target,
        capability,
        app.capabilities(),
        app.now(),
        app.step_up_max_age(),
    ) {
        Decision::Allow(scope) => scope,
        Decision::Deny(DenyReason::NotInReach) => {
            return Err(ApiError::NotFound {
                code: "tenant.not_found",
            });
        }
        Decision::Deny(DenyReason::StepUpRequired) => {
            return Err(ApiError::Forbidden {
                code: "auth.step_up_required",
                detail: format!(
                    "`{capability}` needs a second factor proved within the step-up window."
                ),
            });
        }
        Decision::Deny(_) => {
            return Err(ApiError::Forbidden {
                code: "authz.forbidden",
                detail: format!("This route needs the capability `{capability}`."),
            });
        }
    };
    check_network(
        app,
        principal,
        capability,
        home_ips,
        target_ips.as_deref(),
        Some(facts.ip),
    )?;
    // SECURITY: only after the grant, and only narrowing it; any failure denies.
    crate::policies::enforce(app, principal, &scope, capability, facts).await?;
    Ok(scope)
}

/// The network controls of one granted request (see [`crate::net`]). `target_ips` is `None` when the
/// target is the home tenant (its list is `home_ips`).
///
/// # Errors
/// 403 `network.ip_not_allowed`.
fn check_network(
    app: &AppState,
    principal: &Principal,
    capability: &Capability,
    home_ips: &[String],
    target_ips: Option<&[String]>,
    ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    let admin = app
        .capabilities()
        .get(capability)
        .is_some_and(palisade_authz::is_platform_administration);
    let refusal = if admin && !net::nets_allow(&app.settings().server.admin_allowed_ips, ip) {
        Some((
            "admin",
            "Platform administration is not allowed from this address.",
        ))
    } else if !net::ip_allowed(home_ips, ip) {
        Some((
            "home_tenant",
            "Your tenant does not allow access from this address.",
        ))
    } else if target_ips.is_some_and(|list| !net::ip_allowed(list, ip)) {
        Some((
            "target_tenant",
            "The tenant acted on does not allow access from this address.",
        ))
    } else {
        None
    };
    let Some((list, detail)) = refusal else {
        return Ok(());
    };
    tracing::warn!(target: "security", event = "network.ip_not_allowed", list, subject = %principal.subject, capability = %capability, "request refused by an IP allowlist");
    Err(net::ip_not_allowed(detail))
}

/// An API-key caller: the key's creator, resolved as of now (disabled, deleted or moved → refused),
/// holding only the capabilities both the key and the creator hold. The key id rides in `token_id`
/// (audit actor `api_key:<id>`, rate limit per key); no step-up factor is ever claimed.
async fn authenticate_api_key(
    app: &AppState,
    headers: &axum::http::HeaderMap,
    ip: Option<IpAddr>,
) -> Result<Authenticated, ApiError> {
    let key = api_keys::verify(app, headers, ip).await?;
    let key_quota = key.rate_limit;
    let identity = Identity {
        user_id: key.created_by,
        tenant_id: key.tenant_id,
        method: AuthMethod::ApiKey,
        amr: Vec::new(),
        auth_time: None,
        token_version: None,
        token_id: Some(key.id.clone()),
        expires_at: key.expires_at,
        session_id: None,
    };
    let (mut principal, home_ips) =
        resolve_principal(app, identity)
            .await
            .map_err(|e| match e {
                ApiError::Unauthenticated { .. } => ApiError::Unauthenticated {
                    code: "auth.invalid_api_key",
                    detail: "The API key's creator can no longer use it.",
                    challenge: Challenge::InvalidToken,
                },
                other => other,
            })?;
    let granted: BTreeSet<Capability> = key
        .capabilities
        .iter()
        .filter_map(|c| Capability::parse(c).ok())
        .collect();
    principal.capabilities.retain(|c| granted.contains(c));
    // Batched: written to `last_used_at` by the periodic flush, never on the request path.
    app.key_usage().record(&key.id, app.now());
    Ok(Authenticated {
        principal,
        home_ips,
        key_quota,
    })
}

fn refused(detail: &'static str) -> ApiError {
    ApiError::Unauthenticated {
        code: "auth.invalid_token",
        detail,
        challenge: Challenge::InvalidToken,
    }
}

/// The principal behind a verified credential, and its home tenant's IP allowlist: from the
/// principal cache when it is fresh (see [`crate::principal_cache`]), else from the store. The
/// credential's token version is compared with the user's either way.
async fn resolve_principal(
    app: &AppState,
    identity: Identity,
) -> Result<(Principal, Vec<String>), ApiError> {
    let cache = app.principals();
    let epoch = if cache.enabled() {
        Some(principal_cache::epoch(app, identity.tenant_id).await?)
    } else {
        None
    };
    let cached = epoch.and_then(|e| cache.get(identity.user_id, identity.tenant_id, e));
    let resolved = match cached {
        Some(resolved) => resolved,
        None => {
            let resolved = Arc::new(load_principal(app, &identity).await?);
            if let Some(e) = epoch {
                cache.put(identity.user_id, identity.tenant_id, e, resolved.clone());
            }
            resolved
        }
    };
    if identity
        .token_version
        .is_some_and(|v| v != resolved.token_version)
    {
        return Err(refused("The credential was revoked."));
    }
    let principal = Principal {
        subject: identity.user_id,
        home: resolved.home.clone(),
        roles: resolved.roles.clone(),
        capabilities: resolved.capabilities.clone(),
        method: identity.method,
        amr: identity.amr,
        auth_time: identity.auth_time,
        token_id: identity.token_id,
        token_expires_at: identity.expires_at,
        session_id: identity.session_id,
    };
    Ok((principal, resolved.allowed_ips.clone()))
}

/// Loads a principal's home tenant, user and roles from the store.
async fn load_principal(app: &AppState, identity: &Identity) -> Result<Resolved, ApiError> {
    let stores = app.stores();
    let home = stores
        .tenants
        .resolve_tenant(identity.tenant_id)
        .await?
        .ok_or_else(|| refused("The credential's tenant no longer exists."))?;
    let home_ref = home.to_ref();
    // SECURITY: reading the caller's own user row is internal work of authentication, named as such.
    let own = SystemScope::internal(InternalRole::Authentication).tenant_scope(home_ref.clone());
    let user = stores
        .users
        .get_user(&own, identity.user_id)
        .await?
        .ok_or_else(|| refused("The credential's user no longer exists."))?;
    if user.status != UserStatus::Active {
        return Err(refused("The user is disabled."));
    }
    // Custom roles are resolved against the home tenant's definitions, loaded only when the user holds
    // a name that is not built-in (one query). SECURITY: resolution fails closed: an unknown or deleted
    // role, or one whose inheritance is cyclic or too deep, grants nothing; a store error denies (503).
    let graph = if user.roles.iter().all(|r| BuiltinRole::parse(r).is_some()) {
        RoleGraph::builtin(app.capabilities())
    } else {
        let roles = stores.roles.all_roles(&own).await?;
        RoleGraph::new(
            app.capabilities(),
            roles.into_iter().map(|r| {
                let def = r.to_def();
                (r.name, def)
            }),
        )
    };
    let capabilities = graph.resolve_for_user(&user.roles);
    Ok(Resolved {
        home: home_ref,
        token_version: user.token_version,
        roles: user.roles,
        capabilities,
        allowed_ips: home.allowed_ips,
    })
}

/// The target tenant, and its IP allowlist when it is not the home tenant.
async fn select_tenant(
    app: &AppState,
    principal: &Principal,
    headers: &axum::http::HeaderMap,
) -> Result<(TenantRef, Option<Vec<String>>), ApiError> {
    let Some(raw) = headers.get(TENANT_HEADER) else {
        return Ok((principal.home.clone(), None));
    };
    // SECURITY: an API key acts on its own tenant only, whatever its creator could reach.
    if principal.method == AuthMethod::ApiKey
        && raw.to_str().ok() != Some(principal.home.id.to_string().as_str())
    {
        return Err(ApiError::NotFound {
            code: "tenant.not_found",
        });
    }
    // SECURITY: a malformed, unknown or unreachable tenant all answer the same 404.
    let not_found = || ApiError::NotFound {
        code: "tenant.not_found",
    };
    let id: TenantId = raw
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_found)?;
    if id == principal.home.id {
        return Ok((principal.home.clone(), None));
    }
    let tenant = app
        .stores()
        .tenants
        .resolve_tenant(id)
        .await?
        .ok_or_else(not_found)?;
    let target = tenant.to_ref();
    if !principal.home.reaches(&target) {
        return Err(not_found());
    }
    Ok((target, Some(tenant.allowed_ips)))
}
