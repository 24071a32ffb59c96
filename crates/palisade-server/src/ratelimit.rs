//! Rate limiting in the pipeline (DESIGN.md step 7), run by the per-route guard ([`crate::guard`]).
//!
//! Who is limited, and against which `[rate_limit]` quota:
//! - `/v1/auth/*`: per client IP with `auth`, whoever calls (sign-in is where guessing happens);
//! - a signed-in user: per user with `default`, or the `tenants` override of the user's home tenant;
//! - an API key: per key with the key's own `rate_limit` (bounded by `api_key_max` at every use),
//!   else the `tenants` override of the key's tenant, else `default`;
//! - anyone else (no credential, or a refused one): per client IP with `anonymous`. IPv6 clients are
//!   limited per /64, the block one subscriber usually holds, so rotating addresses inside it does
//!   not buy a fresh quota;
//! - OAuth clients ([`LimitKey::OAuthClient`]) are the seam for machine clients (not issued yet).
//!
//! `/health`, `/ready` and `/metrics` are exempt, so probes and scrapes never see 429.
//!
//! Responses of limited routes carry `RateLimit-Policy` and `RateLimit` as defined by
//! draft-ietf-httpapi-ratelimit-headers-10 (27 September 2025), §2 and §3: a policy item
//! `"<name>";q=<quota>;w=<window s>` and a limit item `"<name>";r=<remaining>;t=<reset s>`. With GCRA
//! the quota is the burst and the window the time a drained bucket needs to refill
//! (`burst / per_second`, rounded up), so `r ≤ q` and `t ≤ w` always hold. A refusal is 429
//! `rate_limit.exceeded` with `Retry-After` (RFC 9110 §10.2.3, whole seconds, rounded up).
//!
//! SECURITY: a limiter error (the in-process table is full) refuses the request with 503; Redis being
//! unreachable is handled inside the limiter, which then limits per instance (never "no limit").

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use palisade_authz::Principal;
use palisade_state::{Decision, Quota};

use crate::error::ApiError;
use crate::state::AppState;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Paths never limited.
const EXEMPT: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Whether `path` is exempt from rate limiting (and from WAF blocks).
#[must_use]
pub fn is_exempt(path: &str) -> bool {
    EXEMPT.contains(&path)
}

/// Whether `path` is one of the sign-in endpoints limited with the `auth` quota.
#[must_use]
pub fn is_auth_route(path: &str) -> bool {
    path.starts_with("/v1/auth/")
}

/// What a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// A signed-in user, by id.
    User(String),
    /// A caller without an accepted credential, by client IP (IPv6 by /64).
    Ip(IpAddr),
    /// The sign-in endpoints, by client IP (IPv6 by /64).
    AuthIp(IpAddr),
    /// An API key, by key id.
    ApiKey(String),
    /// An OAuth machine client, by client id (not issued yet).
    OAuthClient(String),
}

impl LimitKey {
    /// The limiter key (the limiter stores only its digest in Redis).
    #[must_use]
    pub fn storage_key(&self) -> String {
        match self {
            Self::User(id) => format!("user:{id}"),
            Self::Ip(ip) => format!("ip:{}", ip_bucket(*ip)),
            Self::AuthIp(ip) => format!("auth:{}", ip_bucket(*ip)),
            Self::ApiKey(id) => format!("key:{id}"),
            Self::OAuthClient(id) => format!("client:{id}"),
        }
    }

    /// The policy name shown in the headers.
    #[must_use]
    pub fn policy(&self) -> &'static str {
        match self {
            Self::User(_) | Self::ApiKey(_) | Self::OAuthClient(_) => "default",
            Self::Ip(_) => "anonymous",
            Self::AuthIp(_) => "auth",
        }
    }
}

/// The address an IP is counted under: IPv4 as is, IPv6 by its /64 network.
#[must_use]
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                let net = std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// An allowed decision, to be shown on the response.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    policy: &'static str,
    quota: Quota,
    decision: Decision,
}

/// The key and quota for a request: `principal` when authenticated (with an API key's own quota
/// `own`, if any), else the client IP.
#[must_use]
pub fn key_for(
    app: &AppState,
    path: &str,
    ip: IpAddr,
    principal: Option<&Principal>,
    own: Option<palisade_store::KeyRateLimit>,
) -> (LimitKey, Quota) {
    let rl = &app.settings().rate_limit;
    // SECURITY: an invalid quota (refused at start by the verdicts) falls back to the tightest one.
    let fallback = |q: crate::config::RateQuota| q.quota().unwrap_or(Quota::STRICTEST);
    if is_auth_route(path) {
        return (LimitKey::AuthIp(ip), fallback(rl.auth));
    }
    match principal {
        Some(p) => {
            let tenant_quota = rl
                .tenants
                .get(&p.home.id.to_string())
                .copied()
                .unwrap_or(rl.default);
            // SECURITY: a key's own limit is bounded by the configured maximum at every use, so
            // lowering `api_key_max` caps existing keys at once.
            let quota = own.map_or(tenant_quota, |o| crate::config::RateQuota {
                per_second: o.per_second.min(rl.api_key_max.per_second),
                burst: o.burst.min(rl.api_key_max.burst),
            });
            let key = match (p.method, p.token_id.as_deref()) {
                (palisade_authz::AuthMethod::ApiKey, Some(id)) => LimitKey::ApiKey(id.to_owned()),
                _ => LimitKey::User(p.subject.to_string()),
            };
            (key, fallback(quota))
        }
        None => (LimitKey::Ip(ip), fallback(rl.anonymous)),
    }
}

/// Counts the request against `key`: `Ok(None)` when limiting is off, `Ok(Some)` when allowed, and the
/// 429 (or 503) response when not.
///
/// # Errors
/// The refusal to send.
pub async fn check(
    app: &AppState,
    key: &LimitKey,
    quota: Quota,
) -> Result<Option<RateInfo>, Response> {
    if !app.settings().rate_limit.enabled {
        return Ok(None);
    }
    let limiter = &app.auth().state.limiter;
    let outcome = limiter.check(&key.storage_key(), quota).await;
    app.metrics().set_limiter_health(limiter.health());
    let decision = match outcome {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(target: "security", error = %e, "rate limiter failed; refusing");
            return Err(ApiError::Unavailable {
                code: "rate_limit.unavailable",
                retry_after: 1,
            }
            .into_response());
        }
    };
    let info = RateInfo {
        policy: key.policy(),
        quota,
        decision,
    };
    if decision.allowed {
        return Ok(Some(info));
    }
    app.metrics().record_rate_limited();
    let mut res = ApiError::RateLimited {
        retry_after: ceil_secs(decision.retry_after).max(1),
    }
    .into_response();
    decorate(&mut res, Some(info));
    Err(res)
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Adds `RateLimit-Policy` and `RateLimit` to a response of a limited route.
pub fn decorate(res: &mut Response, info: Option<RateInfo>) {
    let Some(info) = info else { return };
    let policy = format!(
        "\"{}\";q={};w={}",
        info.policy,
        info.quota.burst(),
        info.quota.window_secs()
    );
    let limit = format!(
        "\"{}\";r={};t={}",
        info.policy,
        info.decision.remaining,
        ceil_secs(info.decision.reset)
    );
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&limit) {
        headers.insert(RATELIMIT, v);
    }
    if !headers.contains_key(header::VARY) {
        // The values depend on who asks.
        headers.insert(header::VARY, HeaderValue::from_static("authorization"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let b: IpAddr = "2001:db8:1:2:ffff::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(ip_bucket(a), ip_bucket(b));
        assert_ne!(ip_bucket(a), ip_bucket(c));
        assert_eq!(ip_bucket(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(ip_bucket(mapped), "192.0.2.1");
    }

    #[test]
    fn keys_name_their_policy() {
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(LimitKey::Ip(ip).storage_key(), "ip:192.0.2.1");
        assert_eq!(LimitKey::AuthIp(ip).storage_key(), "auth:192.0.2.1");
        assert_eq!(LimitKey::AuthIp(ip).policy(), "auth");
        assert_eq!(LimitKey::User("u".into()).policy(), "default");
        assert_eq!(LimitKey::ApiKey("k".into()).storage_key(), "key:k");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2_001)), 3);
    }
}
