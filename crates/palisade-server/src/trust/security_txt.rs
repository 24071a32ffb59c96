//! `/.well-known/security.txt` (RFC 9116) from the `[trust]` configuration.
//!
//! `Contact` is `trust.contact` (production refuses to start without it; without it in development
//! there is no valid file and the route answers 404). `Expires` is 180 days ahead (RFC 9116 §2.5.5
//! recommends less than a year). `Canonical` is under `server.public_url` (omitted when it is not set).
//! `Policy` is `trust.policy`, else this deployment's `/trust` page.

use time::{Duration, OffsetDateTime};

use crate::config::Settings;

/// How far ahead `Expires` lies.
pub const EXPIRES_IN: Duration = Duration::days(180);

/// The deployment's public base URL (`server.public_url`), without a trailing slash. The listen
/// address is not used: behind a proxy, or on `0.0.0.0`, it is not where clients find the server.
#[must_use]
pub fn base_url(settings: &Settings) -> Option<String> {
    settings
        .server
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
}

/// The file, or `None` when no contact is configured. Without `server.public_url` there is no
/// canonical address to state, so `Canonical` (and the `/trust` fallback for `Policy`) is left out
/// and a comment says why.
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
        .or_else(|| base.as_ref().map(|b| format!("{b}/trust")));
    let languages = if settings.trust.preferred_languages.is_empty() {
        "en".to_owned()
    } else {
        settings.trust.preferred_languages.join(", ")
    };
    // One field per line; values come from validated configuration, newlines are removed anyway.
    let clean = |v: &str| v.replace(['\r', '\n'], " ");
    let mut out = String::from(
        "# Security contact for this Palisade deployment (RFC 9116), generated from its configuration.\n",
    );
    out.push_str(&format!("Contact: {}\n", clean(contact)));
    out.push_str(&format!("Expires: {expires}\n"));
    match &base {
        Some(b) => out.push_str(&format!(
            "Canonical: {}/.well-known/security.txt\n",
            clean(b)
        )),
        None => out.push_str("# Canonical omitted: server.public_url is not set.\n"),
    }
    if let Some(p) = policy {
        out.push_str(&format!("Policy: {}\n", clean(&p)));
    }
    out.push_str(&format!("Preferred-Languages: {}\n", clean(&languages)));
    Some(out)
}
