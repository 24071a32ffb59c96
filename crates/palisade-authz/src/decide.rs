//! The one authorization decision.
//!
//! SECURITY: [`decide`] is pure and starts from Deny. It allows only when every condition holds:
//! the capability is registered, the principal holds it, a system-only capability is used by a
//! system-scope principal, the target tenant lies within the principal's reach, and a capability that
//! requires MFA sees an `auth_time` within the step-up window. The order of checks decides which reason
//! is reported: reach first, so a tenant outside the reach answers 404 whatever the capability.

use time::{Duration, OffsetDateTime};

use crate::capability::{Capability, CapabilityRegistry};
use crate::principal::Principal;
use crate::scope::{TenantRef, TenantScope};
use palisade_domain::ScopeLevel;

/// Why access was denied. The HTTP layer maps `NotInReach` to 404 and the rest to 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The target tenant is outside the principal's reach (answered as "not found").
    NotInReach,
    /// The capability is not in the registry.
    UnknownCapability,
    /// The principal does not hold the capability.
    MissingCapability,
    /// The capability is reserved to system-scope principals.
    SystemOnly,
    /// The capability needs a second factor proved within the step-up window.
    StepUpRequired,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: the scope is the key to the tenant's data.
    Allow(TenantScope),
    /// Denied, with the reason.
    Deny(DenyReason),
}

/// Decides whether `principal` may use `capability` on `target`.
#[must_use]
pub fn decide(
    principal: &Principal,
    target: &TenantRef,
    capability: &Capability,
    registry: &CapabilityRegistry,
    now: OffsetDateTime,
    step_up_max_age: Duration,
) -> Decision {
    if !principal.home.reaches(target) {
        return Decision::Deny(DenyReason::NotInReach);
    }
    let Some(def) = registry.get(capability) else {
        return Decision::Deny(DenyReason::UnknownCapability);
    };
    if !principal.capabilities.contains(capability) {
        return Decision::Deny(DenyReason::MissingCapability);
    }
    if def.system_only && principal.scope_level() != ScopeLevel::System {
        return Decision::Deny(DenyReason::SystemOnly);
    }
    if def.requires_mfa {
        let fresh = principal
            .auth_time
            .is_some_and(|t| t <= now && now - t <= step_up_max_age)
            && principal.amr.iter().any(|m| m == "totp");
        if !fresh {
            return Decision::Deny(DenyReason::StepUpRequired);
        }
    }
    Decision::Allow(TenantScope::granted(target.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{CapabilityDef, platform};
    use crate::principal::AuthMethod;
    use crate::role::RoleSet;
    use palisade_domain::{TenantId, TenantKind, UserId};
    use std::borrow::Cow;

    fn tenant(kind: TenantKind, parent: Option<&TenantRef>) -> TenantRef {
        let id = TenantId::new();
        let path = match parent {
            Some(p) => format!("{}{id}/", p.path),
            None => format!("/{id}/"),
        };
        TenantRef {
            id,
            kind,
            path,
            has_children: false,
        }
    }

    fn registry() -> CapabilityRegistry {
        let mut reg = CapabilityRegistry::with_platform();
        reg.register(CapabilityDef {
            name: Capability::from_static("vault.secret.reveal"),
            description: Cow::Borrowed("reveal"),
            requires_mfa: true,
            system_only: false,
        })
        .unwrap();
        reg.register(CapabilityDef {
            name: Capability::from_static("customers.read"),
            description: Cow::Borrowed("read"),
            requires_mfa: false,
            system_only: false,
        })
        .unwrap();
        reg
    }

    fn principal(home: &TenantRef, roles: &[&str], reg: &CapabilityRegistry) -> Principal {
        Principal {
            subject: UserId::new(),
            home: home.clone(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            capabilities: RoleSet::new(reg).resolve(roles),
            method: AuthMethod::Test,
            amr: vec!["otp".into()],
            auth_time: None,
            token_id: None,
            token_expires_at: None,
            session_id: None,
        }
    }

    #[test]
    fn decide_table() {
        let reg = registry();
        let now = OffsetDateTime::now_utc();
        let five_min = Duration::seconds(300);
        let mut system = tenant(TenantKind::System, None);
        system.has_children = true;
        let partner = tenant(TenantKind::Partner, Some(&system));
        let acme = tenant(TenantKind::Tenant, Some(&partner));
        let acme_child = tenant(TenantKind::Tenant, Some(&acme));
        let globex = tenant(TenantKind::Tenant, Some(&system));

        let read = platform::TENANT_READ;
        let partner_cap = platform::TENANT_CREATE_PARTNER;
        let reveal = Capability::from_static("vault.secret.reveal");
        let unknown = Capability::from_static("nothing.here");
        let customers = Capability::from_static("customers.read");

        use DenyReason::*;
        let allow = None;
        /// (name, home, roles, target, capability, expected deny reason or None for Allow)
        type Case<'a> = (
            &'a str,
            &'a TenantRef,
            &'a [&'a str],
            &'a TenantRef,
            &'a Capability,
            Option<DenyReason>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "system admin reaches every tenant",
                &system,
                &["system_admin"],
                &globex,
                &read,
                allow.clone(),
            ),
            (
                "system admin creates partners",
                &system,
                &["system_admin"],
                &system,
                &partner_cap,
                allow.clone(),
            ),
            (
                "partner admin reaches its tenants",
                &partner,
                &["partner_admin"],
                &acme,
                &read,
                allow.clone(),
            ),
            (
                "partner admin reaches grandchildren",
                &partner,
                &["partner_admin"],
                &acme_child,
                &read,
                allow.clone(),
            ),
            (
                "partner admin cannot reach another branch",
                &partner,
                &["partner_admin"],
                &globex,
                &read,
                Some(NotInReach),
            ),
            (
                "partner admin cannot reach the system tenant",
                &partner,
                &["partner_admin"],
                &system,
                &read,
                Some(NotInReach),
            ),
            (
                "partner admin cannot create partners",
                &partner,
                &["partner_admin"],
                &partner,
                &partner_cap,
                Some(MissingCapability),
            ),
            (
                "tenant admin reads its own tenant",
                &acme,
                &["tenant_admin"],
                &acme,
                &read,
                allow.clone(),
            ),
            (
                "tenant admin reaches its child",
                &acme,
                &["tenant_admin"],
                &acme_child,
                &read,
                allow.clone(),
            ),
            (
                "tenant admin cannot reach its parent",
                &acme,
                &["tenant_admin"],
                &partner,
                &read,
                Some(NotInReach),
            ),
            (
                "child admin cannot reach its parent",
                &acme_child,
                &["tenant_admin"],
                &acme,
                &read,
                Some(NotInReach),
            ),
            (
                "member holds no platform capability",
                &acme,
                &["member"],
                &acme,
                &read,
                Some(MissingCapability),
            ),
            (
                "member reads records",
                &acme,
                &["member"],
                &acme,
                &customers,
                allow.clone(),
            ),
            (
                "viewer reads records",
                &acme,
                &["viewer"],
                &acme,
                &customers,
                allow.clone(),
            ),
            (
                "an unknown role grants nothing",
                &acme,
                &["root"],
                &acme,
                &customers,
                Some(MissingCapability),
            ),
            (
                "no roles grants nothing",
                &acme,
                &[],
                &acme,
                &customers,
                Some(MissingCapability),
            ),
            (
                "an unregistered capability is denied even to system",
                &system,
                &["system_admin"],
                &system,
                &unknown,
                Some(UnknownCapability),
            ),
            (
                "mfa capability without step-up",
                &acme,
                &["tenant_admin"],
                &acme,
                &reveal,
                Some(StepUpRequired),
            ),
            (
                "reach is checked before capability",
                &acme,
                &[],
                &globex,
                &unknown,
                Some(NotInReach),
            ),
        ];
        for (name, home, roles, target, cap, expected) in cases {
            let p = principal(home, roles, &reg);
            let got = decide(&p, target, cap, &reg, now, five_min);
            match (&got, &expected) {
                (Decision::Allow(scope), None) => {
                    assert_eq!(scope.tenant_id(), target.id, "{name}")
                }
                (Decision::Deny(r), Some(e)) => assert_eq!(r, e, "{name}"),
                _ => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn step_up_needs_a_recent_totp() {
        let reg = registry();
        let now = OffsetDateTime::now_utc();
        let acme = tenant(TenantKind::Tenant, None);
        let reveal = Capability::from_static("vault.secret.reveal");
        let mut p = principal(&acme, &["tenant_admin"], &reg);
        let window = Duration::seconds(300);

        p.amr = vec!["otp".into(), "totp".into()];
        p.auth_time = Some(now - Duration::seconds(60));
        assert!(matches!(
            decide(&p, &acme, &reveal, &reg, now, window),
            Decision::Allow(_)
        ));

        p.auth_time = Some(now - Duration::seconds(301));
        assert_eq!(
            decide(&p, &acme, &reveal, &reg, now, window),
            Decision::Deny(DenyReason::StepUpRequired)
        );

        p.auth_time = Some(now + Duration::seconds(600));
        assert_eq!(
            decide(&p, &acme, &reveal, &reg, now, window),
            Decision::Deny(DenyReason::StepUpRequired)
        );

        p.auth_time = Some(now);
        p.amr = vec!["otp".into()];
        assert_eq!(
            decide(&p, &acme, &reveal, &reg, now, window),
            Decision::Deny(DenyReason::StepUpRequired)
        );
    }

    #[test]
    fn system_only_capability_is_refused_outside_system_scope_even_if_held() {
        let reg = registry();
        let partner = tenant(TenantKind::Partner, None);
        let mut p = principal(&partner, &["partner_admin"], &reg);
        p.capabilities.insert(platform::TENANT_CREATE_PARTNER);
        let got = decide(
            &p,
            &partner,
            &platform::TENANT_CREATE_PARTNER,
            &reg,
            OffsetDateTime::now_utc(),
            Duration::seconds(300),
        );
        assert_eq!(got, Decision::Deny(DenyReason::SystemOnly));
    }

    #[test]
    fn a_sibling_with_a_shared_id_prefix_is_not_reached() {
        let a = TenantRef {
            id: TenantId::new(),
            kind: TenantKind::Tenant,
            path: "/ab/".into(),
            has_children: false,
        };
        let b = TenantRef {
            id: TenantId::new(),
            kind: TenantKind::Tenant,
            path: "/abc/".into(),
            has_children: false,
        };
        let a_short = TenantRef {
            path: "/a".into(),
            ..a.clone()
        };
        assert!(!a.reaches(&b));
        assert!(
            !a_short.reaches(&b),
            "a path without a trailing slash reaches nothing"
        );
    }
}
