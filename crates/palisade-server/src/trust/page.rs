//! The public `/trust` page: server-rendered HTML from a [`TrustReport`], and its stylesheet.
//!
//! Invariants:
//! - Every dynamic value passes through [`escape`] (claim texts quote operator configuration).
//! - No script and no inline style: the page works under its own CSP, which allows only the
//!   same-origin stylesheet `/trust.css` ([`PAGE_CSP`]).
//! - Status is never conveyed by colour alone: each badge carries its word; colours meet WCAG AA
//!   contrast; landmarks (banner, navigation, main, contentinfo) and a skip link are present.

use std::fmt::Write;

use super::TrustReport;
use super::claims::{ClaimStatus, ClaimView, ControlView};

/// The Content-Security-Policy of `/trust`: the stylesheet from this origin, nothing else.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Escapes text for HTML element content and quoted attribute values.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn label(s: ClaimStatus) -> &'static str {
    match s {
        ClaimStatus::Verified => "Verified",
        ClaimStatus::Failed => "Failed",
        ClaimStatus::Unverified => "Unverified",
        ClaimStatus::Declared => "Declared",
    }
}

fn badge(s: ClaimStatus) -> String {
    format!("<span class=\"badge s-{}\">{}</span>", s.as_str(), label(s))
}

fn tile(out: &mut String, name: &str, value: &str, note: &str) {
    let _ = write!(
        out,
        "<div class=\"tile\"><dt>{}</dt><dd><span class=\"value\">{}</span><span class=\"note\">{}</span></dd></div>",
        escape(name),
        escape(value),
        escape(note)
    );
}

fn claim(out: &mut String, c: &ClaimView) {
    let _ = write!(
        out,
        "<li class=\"claim\" id=\"claim-{id}\" data-status=\"{status}\">{badge}<div class=\"body\"><p class=\"text\">{text}</p><p class=\"evidence\">{detail}</p><p class=\"meta\">",
        id = escape(c.id),
        status = c.status.as_str(),
        badge = badge(c.status),
        text = escape(&c.text),
        detail = escape(&c.evidence.detail),
    );
    match (c.evidence.check, &c.evidence.at) {
        (Some(check), Some(at)) => {
            let _ = write!(
                out,
                "Self-check <code>{}</code>, run at <time datetime=\"{at}\">{at}</time>",
                escape(check),
                at = escape(at)
            );
        }
        (Some(check), None) => {
            let _ = write!(out, "Self-check <code>{}</code> has not run", escape(check));
        }
        (None, _) if c.basis == "declared" => out.push_str("Declared in configuration"),
        (None, _) => out.push_str("No self-check exists yet"),
    }
    let _ = write!(out, " · claim <code>{}</code></p></div></li>", escape(c.id));
}

fn control(out: &mut String, c: &ControlView) {
    let _ = write!(
        out,
        "<section class=\"control\" aria-labelledby=\"control-{id}\"><h3 id=\"control-{id}\">{title} {badge}</h3><ul class=\"claims\">",
        id = escape(c.id),
        title = escape(c.title),
        badge = badge(c.status),
    );
    for cl in &c.claims {
        claim(out, cl);
    }
    out.push_str("</ul></section>");
}

/// Renders the page.
#[must_use]
pub fn render(report: &TrustReport, version: &str) -> String {
    let m = &report.metrics;
    let mut out = String::with_capacity(32 * 1024);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Trust Center · Palisade</title><link rel=\"stylesheet\" href=\"/trust.css\"><link rel=\"icon\" type=\"image/svg+xml\" href=\"/trust/icon.svg\"></head><body>");
    out.push_str("<a class=\"skip\" href=\"#main\">Skip to content</a>");
    let _ = write!(
        out,
        "<header class=\"masthead\"><div class=\"wrap\"><p class=\"product\">Palisade {version}</p><h1>Trust Center</h1><p class=\"lede\">The security posture of this deployment, computed from the running system. Each claim is <strong>verified</strong> or <strong>failed</strong> by a self-check that probes the server, <strong>unverified</strong> when no check has run or none exists yet, or <strong>declared</strong> by the operator. Report generated at <time datetime=\"{gen}\">{gen}</time>.</p>",
        version = escape(version),
        gen = escape(&report.generated_at)
    );
    out.push_str("<nav aria-label=\"On this page\"><ul><li><a href=\"#metrics\">Live metrics</a></li><li><a href=\"#controls\">Controls and evidence</a></li><li><a href=\"#endpoints\">Machine-readable endpoints</a></li></ul></nav></div></header>");
    out.push_str("<main id=\"main\"><div class=\"wrap\">");

    out.push_str("<section id=\"metrics\" aria-labelledby=\"metrics-h\"><h2 id=\"metrics-h\">Live metrics</h2><dl class=\"tiles\">");
    tile(
        &mut out,
        "Capabilities",
        &m.registry.capabilities.to_string(),
        &format!("{} on routes", m.registry.capabilities_on_routes),
    );
    tile(
        &mut out,
        "Routes",
        &m.registry.routes.to_string(),
        &format!(
            "{} protected, {} public",
            m.registry.protected, m.registry.public
        ),
    );
    tile(
        &mut out,
        "Resources",
        &m.resources.to_string(),
        "declared resources served",
    );
    tile(
        &mut out,
        "Authentication methods",
        &m.auth_methods.len().to_string(),
        &m.auth_methods.join(", "),
    );
    tile(
        &mut out,
        "Features enabled",
        &m.features_enabled,
        "of the known set",
    );
    tile(
        &mut out,
        "Secrets configured",
        &format!("{} %", m.secrets.percent),
        &format!(
            "{} of {} set and non-default",
            m.secrets.healthy, m.secrets.required
        ),
    );
    tile(
        &mut out,
        "Rate-limit backend",
        m.rate_limit_backend.unwrap_or("off"),
        if m.rate_limit_backend == Some("redis") {
            "GCRA, shared across instances"
        } else if m.rate_limit_backend.is_some() {
            "GCRA, per instance"
        } else {
            "rate limiting is turned off"
        },
    );
    tile(
        &mut out,
        "Self-checks passing",
        &m.checks_passed,
        &format!(
            "mode {}; database {}; state {}",
            m.mode, m.database_backend, m.state_backend
        ),
    );
    out.push_str("</dl>");
    let _ = write!(out, "<p class=\"summary\">Claims: ");
    let parts: Vec<String> = report
        .summary
        .iter()
        .map(|(k, v)| format!("{v} {}", escape(k)))
        .collect();
    let _ = write!(out, "{}.</p></section>", parts.join(", "));

    out.push_str("<section id=\"controls\" aria-labelledby=\"controls-h\"><h2 id=\"controls-h\">Controls and evidence</h2>");
    for c in &report.controls {
        control(&mut out, c);
    }
    out.push_str("</section>");

    out.push_str("<section id=\"endpoints\" aria-labelledby=\"endpoints-h\"><h2 id=\"endpoints-h\">Machine-readable endpoints</h2><div class=\"table\"><table><caption>For automated compliance workflows</caption><thead><tr><th scope=\"col\">Endpoint</th><th scope=\"col\">What</th><th scope=\"col\">Access</th><th scope=\"col\">Format</th></tr></thead><tbody>");
    for (path, what, access, format) in [
        (
            "/security/json",
            "Controls, claims, evidence and metrics",
            "trust.report.read",
            "JSON",
        ),
        (
            "/security/questionnaire",
            "Security questionnaire, each answer citing claims",
            "trust.report.read",
            "JSON",
        ),
        (
            "/security/sbom",
            "Software bill of materials of this binary",
            "trust.report.read",
            "CycloneDX 1.5 JSON",
        ),
        (
            "/.well-known/security.txt",
            "Security contact",
            "public",
            "RFC 9116",
        ),
        (
            "/.well-known/jwks.json",
            "Token verification keys",
            "public",
            "JWKS (RFC 7517)",
        ),
        ("/openapi.json", "API contract", "public", "OpenAPI 3.1"),
    ] {
        let _ = write!(
            out,
            "<tr><td><a href=\"{p}\"><code>{p}</code></a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(what),
            escape(access),
            escape(format),
            p = escape(path)
        );
    }
    out.push_str("</tbody></table></div></section>");
    out.push_str("</div></main><footer class=\"foot\"><div class=\"wrap\"><p>Claims marked declared are the operator's statements; the server cannot verify them. Unverified claims assert nothing.</p></div></footer></body></html>");
    out
}

/// The page's icon (a shield), served at `/trust/icon.svg` so browsers do not ask for `/favicon.ico`.
pub const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path d="M16 2 4 6v9c0 7.5 5.1 13.4 12 15 6.9-1.6 12-7.5 12-15V6z" fill="#10213f"/><path d="m10.5 16.5 4 4 7.5-8" fill="none" stroke="#8ee0a6" stroke-width="3" stroke-linecap="round" stroke-linejoin="round"/></svg>"##;

/// The stylesheet served at `/trust.css`.
pub const STYLESHEET: &str = r#":root{--bg:#f7f8fa;--fg:#15191f;--muted:#4a5361;--card:#fff;--line:#d9dde3;--accent:#1f4fd1;
--ok-fg:#0b5d27;--ok-bg:#e3f4e8;--bad-fg:#9b1118;--bad-bg:#fde7e8;--warn-fg:#6a4a00;--warn-bg:#fff1cc;--decl-fg:#1e40af;--decl-bg:#e6edff}
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Ubuntu,sans-serif;line-height:1.5;color:var(--fg);background:var(--bg)}
body{margin:0}
.wrap{max-width:72rem;margin:0 auto;padding:0 1rem}
a{color:var(--accent)}
a:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.skip{position:absolute;left:-999px;top:0;background:var(--card);padding:.5rem 1rem}
.skip:focus{left:1rem}
.masthead{background:#10213f;color:#fff;padding:1.5rem 0 1rem}
.masthead a{color:#cfe0ff}
.masthead h1{margin:.25rem 0;font-size:2rem}
.product{margin:0;color:#c7d2e6;font-size:.9rem;text-transform:uppercase;letter-spacing:.06em}
.lede{max-width:52rem;color:#e8edf7}
.masthead nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:1rem;padding:0;margin:1rem 0 0}
h2{font-size:1.4rem;margin:2rem 0 1rem}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(10rem,1fr));gap:.75rem;margin:0}
.tile{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.75rem 1rem}
.tile dt{color:var(--muted);font-size:.85rem}
.tile dd{margin:0}
.tile .value{display:block;font-size:1.75rem;font-weight:700}
.tile .note{display:block;color:var(--muted);font-size:.85rem}
.summary{color:var(--muted)}
.control{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.25rem 1rem 1rem;margin:0 0 1rem}
.control h3{display:flex;align-items:center;gap:.75rem;flex-wrap:wrap;font-size:1.15rem}
.claims{list-style:none;margin:0;padding:0}
.claim{display:grid;grid-template-columns:7.5rem 1fr;gap:.75rem;padding:.75rem 0;border-top:1px solid var(--line)}
.claim p{margin:0 0 .25rem}
.text{font-weight:600}
.evidence{color:var(--fg)}
.meta{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.badge{display:inline-block;font-size:.8rem;font-weight:700;padding:.15rem .5rem;border-radius:1rem;border:1px solid currentColor;text-align:center;align-self:start;white-space:nowrap}
.s-verified{color:var(--ok-fg);background:var(--ok-bg)}
.s-failed{color:var(--bad-fg);background:var(--bad-bg)}
.s-unverified{color:var(--warn-fg);background:var(--warn-bg)}
.s-declared{color:var(--decl-fg);background:var(--decl-bg)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:var(--card)}
caption{text-align:left;color:var(--muted);padding:.5rem 0}
th,td{text-align:left;padding:.5rem .75rem;border:1px solid var(--line);vertical-align:top}
.foot{margin-top:2rem;padding:1rem 0;border-top:1px solid var(--line);color:var(--muted);font-size:.9rem}
@media (max-width:36rem){.claim{grid-template-columns:1fr}.masthead h1{font-size:1.6rem}.tile .value{font-size:1.4rem}}
@media (prefers-color-scheme:dark){:root{--bg:#0f1318;--fg:#e8ecf1;--muted:#aab4c2;--card:#171c23;--line:#2c3440;--accent:#8fb3ff;
--ok-fg:#8ee0a6;--ok-bg:#10301b;--bad-fg:#ffb3b7;--bad-bg:#3a1216;--warn-fg:#ffd97a;--warn-bg:#33290b;--decl-fg:#b5c8ff;--decl-bg:#18244a}}
"#;
