//! `/.well-known/security.txt` (RFC 9116) from the `[trust]` configuration.
//!
//! `Contact` is `trust.contact` (production refuses to start without it; without it in development
//! there is no valid file and the route answers 404). `Expires` is 180 days ahead (RFC 9116 §2.5.5
//! recommends less than a year). `Canonical` is under `server.public_url`. `Policy` is `trust.policy`,
//! else this deployment's `/trust` page.

use time::{Duration, OffsetDateTime};

use crate::config::Settings;

/// How far ahead `Expires` lies.
pub const EXPIRES_IN: Duration = Duration::days(180);

/// The deployment's public base URL, without a trailing slash.
#[must_use]
pub fn base_url(settings: &Settings) -> String {
    settings
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.server.listen))
        .trim_end_matches('/')
        .to_owned()
}

/// The file, or `None` when no contact is configured.
#[must_use]
pub fn render(settings: &Settings, now: OffsetDateTime) -> Option<String> {
    let contact = settings.trust.contact.as_deref()?;
    let base = base_url(settings);
    let expires = (now + EXPIRES_IN)
        .replace_nanosecond(0)
        .unwrap_or(now + EXPIRES_IN)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    let policy = settings
        .trust
        .policy
        .clone()
        .unwrap_or_else(|| format!("{base}/trust"));
    let languages = if settings.trust.preferred_languages.is_empty() {
        "en".to_owned()
    } else {
        settings.trust.preferred_languages.join(", ")
    };
    // One field per line; values come from validated configuration and never contain a newline.
    let clean = |v: &str| v.replace(['\r', '\n'], " ");
    Some(format!(
        "# Security contact for this Palisade deployment (RFC 9116), generated from its configuration.\n\
         Contact: {}\n\
         Expires: {expires}\n\
         Canonical: {}/.well-known/security.txt\n\
         Policy: {}\n\
         Preferred-Languages: {}\n",
        clean(contact),
        clean(&base),
        clean(&policy),
        clean(&languages),
    ))
}
