//! Network controls: the CIDR helpers shared by API keys and tenants, and the two allowlists the
//! guard enforces after authorization (see `guard::check_network`).
//!
//! - **Tenant allowlists** (`tenants.allowed_ips`, set with `PATCH /v1/tenants/{id}`): a request is
//!   refused (403 `network.ip_not_allowed`) unless its client IP is in the list of the tenant it acts
//!   on *and* in the list of the caller's home tenant. The target's list holds for every caller,
//!   partner and system administrators included ("our data is reachable only from our office"); the
//!   home list says where the tenant's own people and keys may work from at all. An empty list allows
//!   any address.
//! - **The platform administration allowlist** (`[server] admin_allowed_ips`): routes whose capability
//!   is platform administration ([`palisade_authz::is_platform_administration`]: system-only
//!   capabilities plus `platform.tenant.create`) are refused from any other address.
//!
//! Invariants:
//! - SECURITY: the client IP is the one the pipeline resolved (`X-Forwarded-For` only across
//!   `server.trusted_proxy_hops`); an unknown IP, or a stored entry that does not parse, allows
//!   nothing when a list is set. IPv4-mapped IPv6 addresses are compared as IPv4.
//! - Lists are stored canonical (network address, explicit prefix) and de-duplicated.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{ApiError, FieldError};

/// At most this many entries in one allowlist (a key's or a tenant's).
pub const MAX_ALLOWED_IPS: usize = 64;

/// The problem code of every network refusal.
pub const IP_NOT_ALLOWED: &str = "network.ip_not_allowed";

/// Whether `ip` is inside one of `allowed` (CIDRs or single addresses); an empty list allows all.
/// SECURITY: an unknown client IP, or a stored entry that does not parse, allows nothing.
#[must_use]
pub fn ip_allowed(allowed: &[String], ip: Option<IpAddr>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(ip) = ip.map(|ip| ip.to_canonical()) else {
        return false;
    };
    allowed.iter().any(|entry| {
        entry
            .parse::<IpNet>()
            .map(|net| net.contains(&ip))
            .or_else(|_| entry.parse::<IpAddr>().map(|a| a.to_canonical() == ip))
            .unwrap_or(false)
    })
}

/// Whether `ip` is inside one of `nets`; an empty list allows all.
#[must_use]
pub fn nets_allow(nets: &[IpNet], ip: Option<IpAddr>) -> bool {
    if nets.is_empty() {
        return true;
    }
    let Some(ip) = ip.map(|ip| ip.to_canonical()) else {
        return false;
    };
    nets.iter().any(|net| net.contains(&ip))
}

/// Parses a CIDR or single address as given by a client, returning its canonical text.
#[must_use]
pub fn canonical_cidr(entry: &str) -> Option<String> {
    entry
        .parse::<IpNet>()
        .map(|n| n.trunc().to_string())
        .or_else(|_| entry.parse::<IpAddr>().map(|a| IpNet::from(a).to_string()))
        .ok()
}

/// Validates an allowlist from a request body (`field` names it in errors): at most
/// [`MAX_ALLOWED_IPS`] entries, each a CIDR or address. Returns the canonical entries, sorted and
/// de-duplicated.
///
/// # Errors
/// The field errors (422) naming the field, and the entry, at fault.
pub fn check_cidrs(field: &str, entries: &[String]) -> Result<Vec<String>, Vec<FieldError>> {
    if entries.len() > MAX_ALLOWED_IPS {
        return Err(vec![FieldError::new(
            field,
            "too_many",
            "at most 64 entries",
        )]);
    }
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match canonical_cidr(e) {
            Some(c) => out.push(c),
            None => errors.push(FieldError::new(
                format!("{field}[{i}]"),
                "invalid_cidr",
                "is not a CIDR or IP address",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The 403 of a network refusal.
#[must_use]
pub fn ip_not_allowed(detail: &str) -> ApiError {
    ApiError::Forbidden {
        code: IP_NOT_ALLOWED,
        detail: detail.to_owned(),
    }
}

/// Operator recovery (`palisade tenants allowed-ips`): replaces the IP allowlist of the tenant named
/// by id or slug, outside any request and so outside every allowlist. Audited (`tenant.update`,
/// actor `system:cli`) in the tenant's own chain, in the same transaction.
///
/// # Errors
/// A message for the operator: an invalid entry, an unknown tenant, or the store's error.
pub async fn recover_tenant_allowed_ips(
    app: &crate::state::AppState,
    tenant: &str,
    entries: &[String],
) -> Result<palisade_store::Tenant, String> {
    use palisade_authz::{InternalRole, SystemScope};
    let ips = check_cidrs("allowed_ips", entries).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{} {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let stores = app.stores();
    let found = match tenant.parse::<palisade_domain::TenantId>() {
        Ok(id) => stores.tenants.resolve_tenant(id).await,
        Err(_) => match palisade_domain::Slug::parse(tenant) {
            Ok(slug) => stores.tenants.resolve_tenant_by_slug(&slug).await,
            Err(_) => Ok(None),
        },
    }
    .map_err(|e| e.to_string())?
    .ok_or_else(|| "no such tenant (give its id or slug)".to_owned())?;
    let scope = SystemScope::internal(InternalRole::Recovery).tenant_scope(found.to_ref());
    let patch = palisade_store::TenantPatch {
        name: None,
        allowed_ips: Some(ips),
    };
    // The allowlist is cached with the tenant's principals: move their epoch (seen at once by
    // servers sharing Redis; a server on the in-process backend sees it within
    // `auth.principal_cache_secs`).
    crate::principal_cache::invalidate(app, found.id, async {
        stores
            .tenants
            .update_tenant(
                &scope,
                found.id,
                patch,
                &palisade_store::AuditMeta::system("cli"),
            )
            .await
            .map_err(crate::error::ApiError::from)
    })
    .await
    .map_err(|e| {
        // The problem an HTTP caller would get, as one line: "<detail> (<code>)".
        let res = axum::response::IntoResponse::into_response(e);
        res.extensions().get::<crate::error::Problem>().map_or_else(
            || res.status().to_string(),
            |p| format!("{} ({})", p.detail, p.code),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_lists() {
        let ip = "10.1.2.3".parse().ok();
        assert!(ip_allowed(&[], None));
        assert!(ip_allowed(&["10.0.0.0/8".into()], ip));
        assert!(!ip_allowed(&["192.168.0.0/16".into()], ip));
        assert!(!ip_allowed(&["10.0.0.0/8".into()], None));
        assert!(!ip_allowed(&["garbage".into()], ip));
        let mapped = "::ffff:10.1.2.3".parse().ok();
        assert!(ip_allowed(&["10.0.0.0/8".into()], mapped));
        assert_eq!(canonical_cidr("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(canonical_cidr("::1").as_deref(), Some("::1/128"));
        assert_eq!(canonical_cidr("nope"), None);
        let nets: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap_or_else(|_| IpNet::default())];
        assert!(nets_allow(&[], None));
        assert!(nets_allow(&nets, "192.0.2.9".parse().ok()));
        assert!(!nets_allow(&nets, "198.51.100.1".parse().ok()));
        assert!(!nets_allow(&nets, None));
    }

    #[test]
    fn checked_lists_are_canonical_and_name_the_bad_entry() {
        let ok = check_cidrs("allowed_ips", &["10.1.2.3/8".into(), "10.0.0.0/8".into()]);
        assert_eq!(ok.ok(), Some(vec!["10.0.0.0/8".to_owned()]));
        assert!(check_cidrs("allowed_ips", &["x".into()]).is_err());
        assert!(check_cidrs("allowed_ips", &vec!["10.0.0.1".to_owned(); 65]).is_err());
    }
}
