//! Audit retention per category: which category every action belongs to, and when an entry may be
//! pruned.
//!
//! Invariants:
//! - [`PLATFORM_ACTIONS`] is the one place that maps an action to its [`AuditCategory`]. The actions
//!   of declared resources (`<resource>.create|update|delete|restore|purge`) are [`AuditCategory::Records`].
//!   A test in the server scans the sources for action literals, so a new action cannot ship
//!   uncategorised; and an action that is unknown at run time (written by a newer build) is kept as
//!   long as the longest-retained category (fail closed: never pruned early).
//! - A hash chain can only be cut at its oldest end. An entry is prunable when it is older than its own
//!   category's retention; [`AuditStore::prune`](super::AuditStore::prune) removes the longest prunable
//!   prefix, so one longer-retained entry holds back every entry after it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What an audit entry is about; each category has its own retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditCategory {
    /// Security events that change no row: refresh-token reuse, and the like.
    Security,
    /// A user's sessions and second factor: browser sessions, logout everywhere, TOTP on and off.
    Auth,
    /// Tenants, users, roles and tenant policies.
    Platform,
    /// API keys: create, rotate, revoke.
    ApiKeys,
    /// Records of declared resources, their purges included.
    Records,
}

impl AuditCategory {
    /// Every category, in configuration order.
    pub const ALL: [Self; 5] = [
        Self::Security,
        Self::Auth,
        Self::Platform,
        Self::ApiKeys,
        Self::Records,
    ];

    /// The configuration key (`[audit.retention] <key> = days`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Auth => "auth",
            Self::Platform => "platform",
            Self::ApiKeys => "api_keys",
            Self::Records => "records",
        }
    }
}

impl fmt::Display for AuditCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every platform action the stores and the server write, with its category. Keep it sorted by
/// action; add a new action here in the same change that writes it.
pub const PLATFORM_ACTIONS: &[(&str, AuditCategory)] = &[
    ("api_key.create", AuditCategory::ApiKeys),
    ("api_key.revoke", AuditCategory::ApiKeys),
    ("api_key.rotate", AuditCategory::ApiKeys),
    ("auth.refresh_reused", AuditCategory::Security),
    ("auth.session_created", AuditCategory::Auth),
    ("policy.delete", AuditCategory::Platform),
    ("policy.update", AuditCategory::Platform),
    ("role.create", AuditCategory::Platform),
    ("role.delete", AuditCategory::Platform),
    ("role.update", AuditCategory::Platform),
    ("tenant.create", AuditCategory::Platform),
    ("tenant.update", AuditCategory::Platform),
    ("user.create", AuditCategory::Platform),
    ("user.delete", AuditCategory::Platform),
    ("user.logout_all", AuditCategory::Auth),
    ("user.totp_disable", AuditCategory::Auth),
    ("user.totp_enable", AuditCategory::Auth),
    ("user.update", AuditCategory::Platform),
];

/// The verbs of a declared resource's actions (`<resource>.<verb>`).
pub const RECORD_VERBS: &[&str] = &["create", "update", "delete", "restore", "purge"];

/// The category of an entry, from its action and resource; `None` for an action this build does not
/// know (see the module invariants for how such entries are kept).
#[must_use]
pub fn category_of(action: &str, resource: &str) -> Option<AuditCategory> {
    if let Some((_, c)) = PLATFORM_ACTIONS.iter().find(|(a, _)| *a == action) {
        return Some(*c);
    }
    let (prefix, verb) = action.rsplit_once('.')?;
    (prefix == resource && RECORD_VERBS.contains(&verb)).then_some(AuditCategory::Records)
}

/// How long each category is kept, as of one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    now: OffsetDateTime,
    /// Days per category; `0` keeps the category forever.
    days: BTreeMap<AuditCategory, u32>,
}

impl RetentionPolicy {
    /// Every category kept `default_days`, except those in `overrides`; `0` keeps forever.
    #[must_use]
    pub fn new(
        now: OffsetDateTime,
        default_days: u32,
        overrides: impl IntoIterator<Item = (AuditCategory, u32)>,
    ) -> Self {
        let mut days: BTreeMap<AuditCategory, u32> = AuditCategory::ALL
            .iter()
            .map(|c| (*c, default_days))
            .collect();
        days.extend(overrides);
        Self { now, days }
    }

    /// The days a category is kept (`0`: forever).
    #[must_use]
    pub fn days(&self, category: AuditCategory) -> u32 {
        self.days.get(&category).copied().unwrap_or(0)
    }

    /// Whether nothing at all can be pruned (every category kept forever).
    #[must_use]
    pub fn keeps_everything(&self) -> bool {
        self.days.values().all(|d| *d == 0)
    }

    /// The retention of entries whose action this build does not know: the longest of all (forever
    /// if any category is kept forever).
    fn unknown_days(&self) -> u32 {
        if self.days.values().any(|d| *d == 0) {
            0
        } else {
            self.days.values().copied().max().unwrap_or(0)
        }
    }

    /// Whether an entry written `at` with this action and resource is past its retention.
    #[must_use]
    pub fn prunable(&self, action: &str, resource: &str, at: OffsetDateTime) -> bool {
        let days =
            category_of(action, resource).map_or_else(|| self.unknown_days(), |c| self.days(c));
        days != 0 && at < self.now - time::Duration::days(i64::from(days))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_action_is_listed_once_and_sorted() {
        let names: Vec<&str> = PLATFORM_ACTIONS.iter().map(|(a, _)| *a).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "PLATFORM_ACTIONS must be sorted and unique");
    }

    #[test]
    fn actions_map_to_exactly_one_category() {
        assert_eq!(
            category_of("tenant.create", "tenant"),
            Some(AuditCategory::Platform)
        );
        assert_eq!(
            category_of("auth.refresh_reused", "refresh_family"),
            Some(AuditCategory::Security)
        );
        assert_eq!(
            category_of("user.totp_enable", "user"),
            Some(AuditCategory::Auth)
        );
        assert_eq!(
            category_of("api_key.rotate", "api_key"),
            Some(AuditCategory::ApiKeys)
        );
        for verb in RECORD_VERBS {
            assert_eq!(
                category_of(&format!("customers.{verb}"), "customers"),
                Some(AuditCategory::Records)
            );
        }
        // A record verb on another resource name, or an unknown verb, is not a record action.
        assert_eq!(category_of("customers.create", "notes"), None);
        assert_eq!(category_of("customers.explode", "customers"), None);
        assert_eq!(category_of("nodots", "nodots"), None);
    }

    #[test]
    fn config_keys_are_distinct_and_round_trip_through_serde() {
        for c in AuditCategory::ALL {
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(text, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<AuditCategory>(&text).unwrap(), c);
        }
    }

    #[test]
    fn an_entry_is_prunable_only_past_its_own_category() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        let policy = RetentionPolicy::new(
            now,
            90,
            [(AuditCategory::Security, 365), (AuditCategory::Records, 0)],
        );
        let days_ago = |d: i64| now - time::Duration::days(d);
        assert!(policy.prunable("user.update", "user", days_ago(91)));
        assert!(!policy.prunable("user.update", "user", days_ago(89)));
        assert!(!policy.prunable("auth.refresh_reused", "refresh_family", days_ago(91)));
        assert!(policy.prunable("auth.refresh_reused", "refresh_family", days_ago(366)));
        // 0 keeps forever.
        assert!(!policy.prunable("customers.create", "customers", days_ago(900)));
        // An unknown action is kept like the longest category: here forever.
        assert!(!policy.prunable("future.thing", "future", days_ago(900)));
        let finite = RetentionPolicy::new(now, 30, [(AuditCategory::Security, 365)]);
        assert!(!finite.prunable("future.thing", "future", days_ago(300)));
        assert!(finite.prunable("future.thing", "future", days_ago(366)));
        assert!(!finite.keeps_everything());
        assert!(RetentionPolicy::new(now, 0, []).keeps_everything());
    }
}
