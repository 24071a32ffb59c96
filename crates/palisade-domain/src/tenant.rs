//! Tenant hierarchy terms.
//!
//! Tenants form one tree rooted at the system tenant: system > partner > parent tenant > tenant. Each
//! tenant stores its materialised `path` (the ids from the root down to itself, `/`-separated), so "is
//! tenant B within the reach of tenant A" is the prefix test `B.path starts with A.path`.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a tenant is in the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantKind {
    /// The one root tenant that operates the deployment.
    System,
    /// A partner (reseller, agency) that manages the tenants beneath it.
    Partner,
    /// An ordinary customer tenant, which may have child tenants of its own.
    Tenant,
}

impl TenantKind {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Partner => "partner",
            Self::Tenant => "tenant",
        }
    }

    /// Parses the stored spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(Self::System),
            "partner" => Some(Self::Partner),
            "tenant" => Some(Self::Tenant),
            _ => None,
        }
    }
}

/// How far a principal's reach extends, from its home tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeLevel {
    /// Every tenant.
    System,
    /// The partner's own tenant and every tenant beneath it.
    Partner,
    /// A tenant with children: itself and its descendants.
    Parent,
    /// Its home tenant only.
    Tenant,
}

impl ScopeLevel {
    /// The claim spelling (`scope_level` in API.md).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Partner => "partner",
            Self::Parent => "parent",
            Self::Tenant => "tenant",
        }
    }
}

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// May sign in and act.
    Active,
    /// Refused at every request.
    Disabled,
}

impl UserStatus {
    /// The stored spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the stored spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// Why a slug was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Empty or longer than 63 characters.
    #[error("a slug is 1 to 63 characters long")]
    Length,
    /// Characters outside `[a-z0-9-]`, or a leading or trailing hyphen.
    #[error("a slug uses only lowercase letters, digits and inner hyphens")]
    Charset,
}

/// A tenant slug: 1–63 characters of `[a-z0-9-]`, not starting or ending with `-` (a DNS label, so it
/// can later name a subdomain).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    /// Validates a slug.
    ///
    /// # Errors
    /// [`SlugError`] when the string is not a valid slug.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        if s.is_empty() || s.len() > 63 {
            return Err(SlugError::Length);
        }
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(SlugError::Charset);
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Slug {
    type Error = SlugError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs_follow_the_dns_label_rules() {
        for good in ["acme", "a", "acme-2", "0day"] {
            assert!(Slug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "-acme",
            "acme-",
            "ac me",
            "acme_1",
            "é",
            &"a".repeat(64),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn an_accepted_slug_is_always_lowercase_ascii(s in "\\PC{0,80}") {
            if let Ok(slug) = Slug::parse(&s) {
                prop_assert!(slug.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!slug.as_str().is_empty() && slug.as_str().len() <= 63);
            }
        }
    }
}
