//! The WAF (DESIGN.md step 5): checks every query string and request body before any handler sees
//! it, counts violations per client, and blocks a client after a burst of them.
//!
//! What is checked, by where the input comes from:
//! - the **query string** (every route, whatever the method): each name and value, percent-decoded
//!   (`+` as a space), must be UTF-8 without NUL and at most `waf.max_string_chars` characters; URLs
//!   and phone numbers are counted across all of them against `waf.max_urls` / `waf.max_phones`;
//! - a **JSON** body: the checks below;
//! - an **`application/x-www-form-urlencoded`** body: each name and value, percent-decoded, must be
//!   UTF-8 without NUL and within `waf.max_string_chars`;
//! - a **`text/*`** body: UTF-8, no NUL, at most `waf.max_string_chars` characters;
//! - a body of **any other type** (binary, multipart, ...): no route of this build accepts one, so it
//!   is refused with 415 `request.unsupported_media_type` before it is read. Not counted as a
//!   violation: it is a client mistake more often than an attack, and it costs nothing to refuse.
//!
//! Every violation, whatever its source, is a 400 with the same codes and counts towards the block.
//!
//! Checks on a body sent as JSON (`application/json`, `application/merge-patch+json`, `*+json`):
//! UTF-8 only (invalid and overlong sequences, and lone surrogate escapes, refused:
//! `waf.invalid_utf8`); no NUL, raw or escaped as `\u0000` (`waf.nul_character`); every string,
//! object keys included, at most `waf.max_string_chars` characters after unescaping
//! (`waf.string_too_long`); nesting at most `waf.max_depth` (`waf.too_deep`); at most
//! `waf.max_elements` values (`waf.too_many_elements`); at most `waf.max_urls` URLs
//! (`waf.too_many_urls`) and `waf.max_phones` phone numbers (`waf.too_many_phones`) across its
//! strings. Each refusal is a 400 problem, before the handler runs, so nothing is written.
//!
//! Invariants:
//! - SECURITY: the scan is one iterative pass over the bytes with a depth *counter*, never recursion,
//!   so a 100,000-deep body costs a counter and a 400, not a stack overflow. It judges only what it
//!   measures; syntax errors are left to the JSON parser behind it (which has its own recursion
//!   limit), so the WAF never accepts what the parser would refuse, and a body the WAF refuses never
//!   reaches the parser.
//! - Violations are counted per client (the user when signed in, else the client IP, IPv6 per /64)
//!   in a fixed window of `waf.violation_window_secs` in shared state; the `violations_before_block`th
//!   blocks the client for `waf.block_secs` in the shared block list, which every instance checks
//!   before authenticating (IP) and after (user): 403 `waf.blocked` with `Retry-After`.
//! - What counts as a URL: a `scheme://` or a `www.` host; as a phone number: a run of 7 to 15 digits,
//!   optionally led by `+` and broken only by spaces, hyphens and parentheses, with no letter or digit
//!   touching either end (so ids, UUIDs, timestamps and decimals are not phone numbers).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::config::WafSettings;
use crate::error::ApiError;
use crate::state::AppState;

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Not UTF-8, or a lone surrogate escape.
    InvalidUtf8,
    /// A NUL character.
    Nul,
    /// A string longer than allowed.
    StringTooLong,
    /// Nested deeper than allowed.
    TooDeep,
    /// More values than allowed.
    TooManyElements,
    /// More URLs than allowed.
    TooManyUrls,
    /// More phone numbers than allowed.
    TooManyPhones,
}

impl Violation {
    /// The problem code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "waf.invalid_utf8",
            Self::Nul => "waf.nul_character",
            Self::StringTooLong => "waf.string_too_long",
            Self::TooDeep => "waf.too_deep",
            Self::TooManyElements => "waf.too_many_elements",
            Self::TooManyUrls => "waf.too_many_urls",
            Self::TooManyPhones => "waf.too_many_phones",
        }
    }

    fn detail(self, limits: &WafSettings) -> String {
        match self {
            Self::InvalidUtf8 => "The body must be valid UTF-8.".to_owned(),
            Self::Nul => "The body must not contain NUL characters.".to_owned(),
            Self::StringTooLong => format!(
                "Every string must be at most {} characters.",
                limits.max_string_chars
            ),
            Self::TooDeep => format!(
                "The body must not nest deeper than {} levels.",
                limits.max_depth
            ),
            Self::TooManyElements => format!(
                "The body must not hold more than {} values.",
                limits.max_elements
            ),
            Self::TooManyUrls => {
                format!("The body must not hold more than {} URLs.", limits.max_urls)
            }
            Self::TooManyPhones => format!(
                "The body must not hold more than {} phone numbers.",
                limits.max_phones
            ),
        }
    }
}

/// Running totals of one scan.
struct Tally<'a> {
    limits: &'a WafSettings,
    urls: usize,
    phones: usize,
}

impl Tally<'_> {
    fn string(&mut self, s: &str) -> Result<(), Violation> {
        self.urls += count_urls(s);
        if self.urls > self.limits.max_urls {
            return Err(Violation::TooManyUrls);
        }
        self.phones += count_phones(s);
        if self.phones > self.limits.max_phones {
            return Err(Violation::TooManyPhones);
        }
        Ok(())
    }
}

/// Scans a JSON body against `limits`.
///
/// # Errors
/// The first [`Violation`] found.
pub fn scan(bytes: &[u8], limits: &WafSettings) -> Result<(), Violation> {
    let text = std::str::from_utf8(bytes).map_err(|_| Violation::InvalidUtf8)?;
    let b = text.as_bytes();
    let mut tally = Tally {
        limits,
        urls: 0,
        phones: 0,
    };
    let mut depth = 0usize;
    let mut elements = 0usize;
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                let (end, decoded) = read_string(b, i + 1, limits.max_string_chars)?;
                tally.string(&decoded)?;
                elements += 1;
                i = end;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                elements += 1;
                if depth > limits.max_depth {
                    return Err(Violation::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'0'..=b'9' | b'-' | b't' | b'f' | b'n' => {
                elements += 1;
                // Skip the rest of the token.
                while b
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_alphanumeric() || matches!(n, b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            0 => return Err(Violation::Nul),
            _ => {}
        }
        if elements > limits.max_elements {
            return Err(Violation::TooManyElements);
        }
        i += 1;
    }
    Ok(())
}

/// Reads a string starting after its opening quote. Returns the index after the closing quote (or
/// the end of the input) and the unescaped text. Malformed escapes end the string early: the JSON
/// parser behind the WAF refuses the body anyway.
fn read_string(b: &[u8], mut i: usize, max_chars: usize) -> Result<(usize, String), Violation> {
    let mut out = String::new();
    let mut chars = 0usize;
    let mut push = |out: &mut String, c: char| -> Result<(), Violation> {
        if c == '\0' {
            return Err(Violation::Nul);
        }
        chars += 1;
        if chars > max_chars {
            return Err(Violation::StringTooLong);
        }
        out.push(c);
        Ok(())
    };
    loop {
        let Some(&c) = b.get(i) else {
            return Ok((i, out));
        };
        match c {
            b'"' => return Ok((i + 1, out)),
            b'\\' => {
                let Some(&e) = b.get(i + 1) else {
                    return Ok((i + 1, out));
                };
                i += 2;
                let simple = match e {
                    b'"' => Some('"'),
                    b'\\' => Some('\\'),
                    b'/' => Some('/'),
                    b'b' => Some('\u{8}'),
                    b'f' => Some('\u{c}'),
                    b'n' => Some('\n'),
                    b'r' => Some('\r'),
                    b't' => Some('\t'),
                    _ => None,
                };
                if let Some(ch) = simple {
                    push(&mut out, ch)?;
                    continue;
                }
                if e != b'u' {
                    return Ok((i, out));
                }
                let Some(unit) = hex4(b, i) else {
                    return Ok((i, out));
                };
                i += 4;
                let ch = match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low surrogate.
                        let low = (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(b, i + 2))
                            .flatten()
                            .filter(|l| (0xDC00..=0xDFFF).contains(l))
                            .ok_or(Violation::InvalidUtf8)?;
                        i += 6;
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(code).ok_or(Violation::InvalidUtf8)?
                    }
                    0xDC00..=0xDFFF => return Err(Violation::InvalidUtf8),
                    _ => char::from_u32(unit).ok_or(Violation::InvalidUtf8)?,
                };
                push(&mut out, ch)?;
            }
            _ => {
                // Copy one UTF-8 character (the input was checked to be UTF-8).
                let len = match c {
                    0x00..=0x7F => 1,
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                };
                let ch = b
                    .get(i..i + len)
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.chars().next())
                    .ok_or(Violation::InvalidUtf8)?;
                push(&mut out, ch)?;
                i += len;
            }
        }
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let digits = std::str::from_utf8(b.get(i..i + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// URLs in `s`: each `://` and each `www.` not directly after one.
#[must_use]
pub fn count_urls(s: &str) -> usize {
    let lower = s.to_ascii_lowercase();
    let schemes = lower.matches("://").count();
    let bare = lower
        .match_indices("www.")
        .filter(|(at, _)| {
            !lower
                .get(..*at)
                .is_some_and(|before| before.ends_with("://"))
        })
        .count();
    schemes + bare
}

/// Phone numbers in `s` (see the module header).
#[must_use]
pub fn count_phones(s: &str) -> usize {
    let chars: Vec<char> = s.chars().collect();
    let touches = |at: Option<&char>| at.is_some_and(|c| c.is_alphanumeric());
    let mut count = 0;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let starts = (c == '+' || c.is_ascii_digit())
            && !(i > 0 && touches(chars.get(i - 1)))
            && !(i > 0 && chars.get(i - 1) == Some(&'.'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut digits = 0;
        let mut end = i;
        while let Some(&d) = chars.get(j) {
            if d.is_ascii_digit() {
                digits += 1;
                end = j + 1;
            } else if !(matches!(d, ' ' | '-' | '(' | ')') || (d == '+' && j == i)) {
                break;
            }
            j += 1;
        }
        let after = chars.get(end);
        let clean_end = !touches(after) && after != Some(&'.');
        if (7..=15).contains(&digits) && clean_end {
            count += 1;
        }
        i = j.max(i + 1);
    }
    count
}

/// How a request body is checked, by its declared media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// No body, or no media type (left to the extractors, which refuse a body they cannot read).
    None,
    /// `application/json`, `*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `text/*`.
    Text,
    /// Anything else: no route accepts it.
    Other,
}

/// The kind of a request's body.
fn body_kind(req: &Request) -> BodyKind {
    let headers = req.headers();
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return BodyKind::None;
    };
    let media = ct
        .to_str()
        .ok()
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media == "application/json" || media.ends_with("+json") {
        return BodyKind::Json;
    }
    if media == "application/x-www-form-urlencoded" {
        return BodyKind::Form;
    }
    if media.starts_with("text/") {
        return BodyKind::Text;
    }
    // A declared type with no body (`Content-Length: 0`) carries nothing to refuse.
    let empty = !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n == 0);
    if empty {
        BodyKind::None
    } else {
        BodyKind::Other
    }
}

/// Checks one decoded piece of text (a query or form name or value, a text body): UTF-8, no NUL,
/// at most `max_chars` characters.
fn check_text(bytes: &[u8], max_chars: usize) -> Result<&str, Violation> {
    let text = std::str::from_utf8(bytes).map_err(|_| Violation::InvalidUtf8)?;
    if text.contains('\0') {
        return Err(Violation::Nul);
    }
    if text.chars().count() > max_chars {
        return Err(Violation::StringTooLong);
    }
    Ok(text)
}

/// Percent-decodes one `application/x-www-form-urlencoded` component (`+` is a space) to bytes,
/// without assuming UTF-8.
fn form_decode(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}

/// Checks `a=1&b=2` input (a query string, or a form body). With `count`, URLs and phone numbers are
/// counted across every name and value.
///
/// # Errors
/// The first [`Violation`] found.
pub fn scan_pairs(raw: &[u8], limits: &WafSettings, count: bool) -> Result<(), Violation> {
    let mut tally = Tally {
        limits,
        urls: 0,
        phones: 0,
    };
    for pair in raw.split(|b| *b == b'&') {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (
                pair.get(..at).unwrap_or_default(),
                pair.get(at + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        };
        for part in [name, value] {
            let decoded = form_decode(part);
            let text = check_text(&decoded, limits.max_string_chars)?;
            if count {
                tally.string(text)?;
            }
        }
    }
    Ok(())
}

/// Checks a `text/*` body.
///
/// # Errors
/// The first [`Violation`] found.
pub fn scan_text(bytes: &[u8], limits: &WafSettings) -> Result<(), Violation> {
    check_text(bytes, limits.max_string_chars).map(|_| ())
}

/// The subject a client is counted and blocked as.
#[must_use]
pub fn ip_subject(ip: std::net::IpAddr) -> String {
    format!("ip:{}", crate::ratelimit::ip_bucket(ip))
}

/// The subject of a signed-in user.
#[must_use]
pub fn user_subject(user: &impl std::fmt::Display) -> String {
    format!("user:{user}")
}

/// Refuses a blocked subject with 403 `waf.blocked`.
///
/// # Errors
/// The refusal to send.
pub async fn check_block(app: &AppState, subject: &str) -> Result<(), Response> {
    match app.auth().state.blocks.blocked(subject).await {
        Ok(None) => Ok(()),
        Ok(Some(left)) => {
            app.metrics().record_waf_block();
            Err(blocked_response(left.as_secs().max(1)))
        }
        // SECURITY: a block that cannot be checked is treated as a block (fail closed).
        Err(e) => {
            tracing::error!(target: "security", error = %e, "block list failed; refusing");
            Err(ApiError::Unavailable {
                code: "state.unavailable",
                retry_after: 1,
            }
            .into_response())
        }
    }
}

fn blocked_response(retry_after: u64) -> Response {
    let mut res = ApiError::Forbidden {
        code: "waf.blocked",
        detail: "This client is blocked for a while after repeated refused requests.".to_owned(),
    }
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    res
}

/// Checks the query string and the body before the handler (see the module header), counting a
/// violation against `subject`. Returns the request with its body restored.
///
/// # Errors
/// The refusal to send: 400 `waf.*`, 413 when the body exceeds the cap, 415 for a body no route
/// accepts, 403 `waf.blocked` when this violation completes a burst.
pub async fn screen(app: &AppState, subject: &str, req: Request) -> Result<Request, Response> {
    let limits = &app.settings().waf;
    if !limits.enabled {
        return Ok(req);
    }
    if let Some(query) = req.uri().query()
        && let Err(violation) = scan_pairs(query.as_bytes(), limits, true)
    {
        return Err(refuse(app, subject, limits, violation, "query string").await);
    }
    let kind = body_kind(&req);
    let scan_body: fn(&[u8], &WafSettings) -> Result<(), Violation> = match kind {
        BodyKind::None => return Ok(req),
        BodyKind::Other => return Err(ApiError::UnsupportedMediaType.into_response()),
        BodyKind::Json => scan,
        BodyKind::Form => |b, l| scan_pairs(b, l, false),
        BodyKind::Text => scan_text,
    };
    let (parts, body) = req.into_parts();
    // The body is capped by the pipeline's limit layer; reading past it fails here.
    let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        if crate::extract::is_length_limit(&e) {
            ApiError::PayloadTooLarge.into_response()
        } else {
            ApiError::BadRequest {
                code: "request.body_unreadable",
                detail: "The body could not be read.".to_owned(),
            }
            .into_response()
        }
    })?;
    if let Err(violation) = scan_body(&bytes, limits) {
        return Err(refuse(app, subject, limits, violation, "request body").await);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Records and counts a violation found in `source`; the 400 to send, or the 403 of a new block.
async fn refuse(
    app: &AppState,
    subject: &str,
    limits: &WafSettings,
    violation: Violation,
    source: &'static str,
) -> Response {
    app.metrics().record_waf_violation(violation.code());
    tracing::warn!(target: "security", event = "waf.violation", code = violation.code(), source, subject = %subject, "request refused");
    if let Some(block) = count_violation(app, subject, limits).await {
        return block;
    }
    ApiError::BadRequest {
        code: violation.code(),
        detail: violation.detail(limits),
    }
    .into_response()
}

/// Counts a violation; on the one that completes a burst, blocks `subject` and returns the 403.
async fn count_violation(app: &AppState, subject: &str, limits: &WafSettings) -> Option<Response> {
    let state = &app.auth().state;
    let window = std::time::Duration::from_secs(limits.violation_window_secs);
    let count = match state
        .counters
        .hit(&format!("waf:violations:{subject}"), window)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            // The request is refused anyway; only the burst count is lost.
            tracing::error!(target: "security", error = %e, "could not count a WAF violation");
            return None;
        }
    };
    if count < limits.violations_before_block {
        return None;
    }
    let ttl = std::time::Duration::from_secs(limits.block_secs);
    match state.blocks.block(subject, "waf.burst", ttl).await {
        Ok(block) => {
            app.metrics().record_waf_block();
            tracing::warn!(target: "security", event = "waf.blocked", block = %block.id, subject = %subject, violations = count, "client blocked");
        }
        Err(e) => {
            tracing::error!(target: "security", error = %e, "could not store a WAF block");
        }
    }
    Some(blocked_response(limits.block_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> WafSettings {
        WafSettings::default()
    }

    fn check(body: &str) -> Result<(), Violation> {
        scan(body.as_bytes(), &limits())
    }

    #[test]
    fn ordinary_bodies_pass() {
        assert_eq!(
            check(
                r#"{"email":"a@b.test","phone":"+1 415 555 0123","roles":["member"],"parent_id":"01936f6e-8a2b-7c3d-9e4f-123456789abc","at":"2026-11-25T09:51:28Z","n":-1.5e10,"ok":true,"x":null}"#
            ),
            Ok(())
        );
        assert_eq!(check(r#"{"name":"caf\u00e9 \ud83d\ude00"}"#), Ok(()));
    }

    #[test]
    fn each_limit_has_its_violation() {
        let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(8_193));
        assert_eq!(check(&long), Err(Violation::StringTooLong));
        let long_key = format!(r#"{{"{}":1}}"#, "k".repeat(8_193));
        assert_eq!(check(&long_key), Err(Violation::StringTooLong));
        // Escapes count as the one character they stand for.
        let escaped = format!(r#"{{"name":"{}"}}"#, "\\u0041".repeat(8_192));
        assert_eq!(check(&escaped), Ok(()));
        assert_eq!(check(r#"{"name":"a\u0000b"}"#), Err(Violation::Nul));
        assert_eq!(check(r#"{"name":"\ud800"}"#), Err(Violation::InvalidUtf8));
        assert_eq!(check(r#"{"name":"\udc00x"}"#), Err(Violation::InvalidUtf8));
        assert_eq!(
            scan(b"{\"name\":\"\xc0\xaf\"}", &limits()),
            Err(Violation::InvalidUtf8),
            "overlong"
        );
        assert_eq!(
            scan(b"{\"name\":\"\xff\"}", &limits()),
            Err(Violation::InvalidUtf8)
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(check(&deep), Err(Violation::TooDeep));
        let many = format!("[{}]", vec!["1"; 10_001].join(","));
        assert_eq!(check(&many), Err(Violation::TooManyElements));
        let urls = r#"{"a":"see http://a.test and https://b.test","b":["www.c.test","ftp://d.test","https://www.e.test","http://f.test"]}"#;
        assert_eq!(check(urls), Err(Violation::TooManyUrls));
        let phones = r#"{"a":"+1 (415) 555-0123","b":"020 7946 0958","c":"+33 1 23 45 67 89","d":"555-0100-555"}"#;
        assert_eq!(check(phones), Err(Violation::TooManyPhones));
    }

    #[test]
    fn urls_and_phones_are_counted_as_documented() {
        assert_eq!(count_urls("https://www.example.test/x"), 1);
        assert_eq!(count_urls("WWW.example.test and mailto:x"), 1);
        assert_eq!(count_phones("call +1 415 555 0123 or (020) 7946-0958"), 2);
        assert_eq!(count_phones("01936f6e-8a2b-7c3d-9e4f-123456789abc"), 0);
        assert_eq!(count_phones("2026-11-25T09:51:28Z"), 0);
        assert_eq!(count_phones("3.14159265358"), 0);
        assert_eq!(count_phones("order 12345"), 0);
        assert_eq!(count_phones("id42345678"), 0);
    }

    #[test]
    fn query_strings_and_forms_are_checked_decoded() {
        let l = limits();
        assert_eq!(scan_pairs(b"a=1&b=caf%C3%A9+x&flag", &l, true), Ok(()));
        assert_eq!(
            scan_pairs(b"q=%C0%AF", &l, true),
            Err(Violation::InvalidUtf8)
        );
        assert_eq!(scan_pairs(b"q=a%00b", &l, true), Err(Violation::Nul));
        let long = format!("q={}", "x".repeat(8_193));
        assert_eq!(
            scan_pairs(long.as_bytes(), &l, true),
            Err(Violation::StringTooLong)
        );
        let urls = (1..=6)
            .map(|i| format!("u{i}=https%3A%2F%2Fu{i}.test"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            scan_pairs(urls.as_bytes(), &l, true),
            Err(Violation::TooManyUrls)
        );
        assert_eq!(scan_pairs(urls.as_bytes(), &l, false), Ok(()));
        let phones =
            "a=%2B1+415+555+0123&b=%2B44+20+7946+0958&c=%2B33+1+23+45+67+89&d=(212)+555-0199";
        assert_eq!(
            scan_pairs(phones.as_bytes(), &l, true),
            Err(Violation::TooManyPhones)
        );
        assert_eq!(scan_text(b"hello\x00", &l), Err(Violation::Nul));
        assert_eq!(scan_text(b"\xff", &l), Err(Violation::InvalidUtf8));
        assert_eq!(scan_text("ok".as_bytes(), &l), Ok(()));
    }

    #[test]
    fn a_hundred_thousand_levels_cost_a_counter() {
        let deep = "[".repeat(100_000);
        assert_eq!(check(&deep), Err(Violation::TooDeep));
    }
}
