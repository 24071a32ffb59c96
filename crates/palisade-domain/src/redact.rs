//! Log redaction: the last line of defence between a secret and a log sink.
//!
//! Every line the server logs passes through [`redact_line`]. A JSON line (tracing's JSON formatter)
//! is parsed and walked with [`redact_value`]; any other line goes through [`redact_str`]. The rules
//! come in two layers:
//!
//! 1. **Key rules** ([`is_sensitive_key`]). A key is normalised (lowercased, with `-`, `_`, `.` and
//!    spaces removed) and is sensitive when it contains any of these terms:
//!    `password`, `passwd`, `passphrase`, `secret`, `token` (so `access_token`, `refresh_token`,
//!    `id_token`, `mfa_token`, `refreshToken`), `authorization`, `apikey` (so `api_key`, `X-Api-Key`),
//!    `cookie` (so `set-cookie`), `session`, `otp`, `code`, `recovery`, `privatekey`,
//!    `clientassertion`, `dpop`, `signature`, `credential`, `pepper`, `masterkey`, `csrf`, `pin`,
//!    `ssn`, `taxid`, `iban`, `cvv`, `cardnumber`.
//!    The one exception: an occurrence of `code` that is part of `statuscode`, `errorcode`,
//!    `problemcode`, `countrycode` or `currencycode` does not count, so `status_code`,
//!    `http.status_code` and `error_code` stay readable while `recovery_code` or `auth_code` do not.
//!    Matching is by substring, so it over-redacts (`shipping` contains `pin`); that is the safe
//!    direction.
//!    The value of a sensitive key is replaced whole by [`REDACTED`], whatever its type. In free text
//!    the same rule applies to `key=value`, `key: value` and embedded-JSON `"key": value` pairs.
//! 2. **Value patterns** ([`redact_str`]), applied to every string, each replaced by a typed marker
//!    so a reader can still tell what was there:
//!    - URL user-info passwords (`scheme://user:secret@host`) → `[REDACTED]`;
//!    - `Bearer <token>`, `DPoP <token>`, `Basic <base64>` → the scheme is kept, the credential
//!      becomes `[REDACTED]`;
//!    - JWT / JWS / JWE compact serialisations (`eyJ…` base64url segments) → `[REDACTED:jwt]`;
//!    - Palisade API keys `pal_<env>_<prefix>_<secret>`, webhook secrets `whsec_…` and session
//!      cookie values `pss_…` →
//!      `[REDACTED:key]`;
//!    - e-mail addresses → `[REDACTED:email]`;
//!    - payment card numbers (13–19 digits, optionally grouped by single spaces or hyphens) that pass
//!      the Luhn check → `[REDACTED:card]`;
//!    - phone numbers, international (`+` and 7–15 digits, with single spaces, hyphens, dots or
//!      parentheses between groups) and North-American (`(555) 123-4567`, `555-123-4567`) →
//!      `[REDACTED:phone]`.
//!
//!    Card and phone detection check what surrounds a digit run, so UUIDs, RFC 3339 timestamps,
//!    IP addresses and ports, semantic versions, hex digests, status codes and durations are left
//!    alone. JSON numbers are never touched: only strings can carry these patterns.
//!
//! Invariants:
//! - **No panics.** Library code here never unwraps, expects or indexes: every slice goes through
//!   `get`, and a missing piece means "leave this match alone" or "redact", never a crash.
//! - **Bounded recursion.** [`redact_value`] descends at most 64 levels; anything deeper is replaced by
//!   [`REDACTED`] and torn down iteratively, so a hostile value cannot exhaust the stack. Object keys
//!   are redacted too (a map keyed by e-mail address must not leak its keys).
//! - **Fails closed.** If a pattern fails to compile, [`redact_str`] returns [`REDACTED`] for every
//!   input; a line that looks like JSON (`{…`) but does not parse is replaced by [`REDACTED`] whole.
//!   Losing a log line is acceptable; leaking a secret is not.
//! - **Cheap when clean.** [`redact_str`] returns `Cow::Borrowed` when nothing matched, and each pass
//!   is skipped outright when the text lacks the characters its pattern needs.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Match, NoExpand, Regex};
use serde_json::Value;

/// The marker that replaces a secret outright: the value of a sensitive key, an auth-scheme credential,
/// a URL password, or (when redaction cannot run at all) a whole string.
pub const REDACTED: &str = "[REDACTED]";

const REDACTED_EMAIL: &str = "[REDACTED:email]";
const REDACTED_JWT: &str = "[REDACTED:jwt]";
const REDACTED_KEY: &str = "[REDACTED:key]";
const REDACTED_CARD: &str = "[REDACTED:card]";
const REDACTED_PHONE: &str = "[REDACTED:phone]";

/// How many container levels [`redact_value`] descends before replacing the rest.
const MAX_DEPTH: usize = 64;

/// Terms that make a normalised key sensitive when it contains them. Kept in sync with the module
/// header.
const SENSITIVE_KEY_TERMS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "apikey",
    "cookie",
    "session",
    "otp",
    "code",
    "recovery",
    "privatekey",
    "clientassertion",
    "dpop",
    "signature",
    "credential",
    "pepper",
    "masterkey",
    "csrf",
    "pin",
    "ssn",
    "taxid",
    "iban",
    "cvv",
    "cardnumber",
];

/// Normalised words whose `code` is a label, not a secret. Every entry ends in `code`.
const CODE_ALLOWLIST: &[&str] = &[
    "statuscode",
    "errorcode",
    "problemcode",
    "countrycode",
    "currencycode",
];

/// Words that follow `Bearer`/`DPoP`/`Basic` in prose ("missing bearer token") rather than a
/// credential. Redacting them would hide nothing and make messages unreadable.
const SCHEME_STOPWORDS: &[&str] = &[
    "a",
    "an",
    "and",
    "are",
    "auth",
    "authentication",
    "authorisation",
    "authorization",
    "challenge",
    "credential",
    "credentials",
    "expected",
    "expired",
    "for",
    "format",
    "header",
    "headers",
    "invalid",
    "is",
    "malformed",
    "missing",
    "must",
    "not",
    "or",
    "prefix",
    "required",
    "scheme",
    "schemes",
    "the",
    "token",
    "tokens",
    "type",
    "value",
    "was",
    "with",
];

/// The HTTP authentication schemes whose credentials are redacted (matched case-insensitively).
const AUTH_SCHEMES: &[&str] = &["bearer", "dpop", "basic"];

/// Auth-parameter names of `WWW-Authenticate` challenges (`Bearer realm="api", error="…"`): after a
/// scheme they are followed by `=` and a value, and are not credentials.
const AUTH_PARAM_NAMES: &[&str] = &[
    "realm",
    "error",
    "error_description",
    "error_uri",
    "scope",
    "nonce",
    "algs",
    "charset",
    "resource_metadata",
];

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// Whether the value stored under `key` must never be logged.
///
/// The key is normalised (lowercased; `-`, `_`, `.` and spaces dropped) and is sensitive when it
/// contains one of the terms listed in the module header. An occurrence of `code` inside
/// `statuscode`, `errorcode`, `problemcode`, `countrycode` or `currencycode` is ignored, so
/// `status_code` is not sensitive but `recovery_code` is.
#[must_use]
pub fn is_sensitive_key(key: &str) -> bool {
    let normalised = normalise_key(key);
    match SENSITIVE_TERMS.as_ref() {
        Some(terms) => contains_unexcused_term(terms, &normalised),
        // The regex is only a speed-up: this scan gives the same answer term by term.
        None => SENSITIVE_KEY_TERMS.iter().any(|term| {
            normalised
                .match_indices(term)
                .any(|(at, found)| !is_excused(&normalised, found, at + found.len()))
        }),
    }
}

/// All sensitive terms as one alternation, so a key is scanned once rather than once per term.
static SENSITIVE_TERMS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let alternation: Vec<String> = SENSITIVE_KEY_TERMS
        .iter()
        .map(|term| regex::escape(term))
        .collect();
    Regex::new(&alternation.join("|")).ok()
});

fn normalise_key(key: &str) -> String {
    let keep = |c: &char| !matches!(c, '-' | '_' | '.' | ' ');
    if key.is_ascii() {
        // Fast path for the keys that actually occur; same result as the general one.
        key.chars()
            .filter(keep)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    } else {
        key.chars()
            .filter(keep)
            .flat_map(char::to_lowercase)
            .collect()
    }
}

fn contains_unexcused_term(terms: &Regex, normalised: &str) -> bool {
    let mut at = 0;
    while let Some(found) = terms.find_at(normalised, at) {
        if !is_excused(normalised, found.as_str(), found.end()) {
            return true;
        }
        // SECURITY: resume one byte after the start, not after the match, so a term overlapping
        // an excused `code` is still found. Terms are ASCII, so this stays on a char boundary.
        at = found.start() + 1;
    }
    false
}

/// Whether the term occurrence ending at `end` is the `code` of an allowlisted word such as
/// `statuscode`. Each occurrence is judged on its own, so `errorcode_authcode` stays sensitive.
fn is_excused(normalised: &str, term: &str, end: usize) -> bool {
    term == "code"
        && normalised
            .get(..end)
            .is_some_and(|upto| CODE_ALLOWLIST.iter().any(|allowed| upto.ends_with(allowed)))
}

// ---------------------------------------------------------------------------------------------
// JSON values
// ---------------------------------------------------------------------------------------------

/// Redacts a JSON value in place.
///
/// Walks objects and arrays: the value of a sensitive key (see [`is_sensitive_key`]) becomes the
/// string [`REDACTED`] whatever its type, including objects and arrays; every other string goes
/// through [`redact_str`]. Numbers, booleans and nulls under ordinary keys are left alone. Object keys
/// go through [`redact_str`] as well (sensitivity is judged on the original key); if two keys redact
/// to the same text, one of their values is kept. Containers nested deeper than 64 levels are
/// replaced by [`REDACTED`].
pub fn redact_value(value: &mut Value) {
    redact_value_at(value, 0);
}

fn redact_value_at(value: &mut Value, depth: usize) {
    let is_container = matches!(value, Value::Array(_) | Value::Object(_));
    if is_container && depth >= MAX_DEPTH {
        // SECURITY: bounded recursion. What lies below the limit is not inspected, so it is not
        // logged either; it is torn down without recursion because it may be arbitrarily deep.
        let deeper = std::mem::replace(value, Value::String(REDACTED.to_owned()));
        drop_iteratively(deeper);
        return;
    }
    match value {
        Value::String(text) => {
            if let Cow::Owned(redacted) = redact_str(text) {
                *text = redacted;
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                redact_value_at(item, depth + 1);
            }
        }
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if is_sensitive_key(key) {
                    let secret = std::mem::replace(child, Value::String(REDACTED.to_owned()));
                    drop_iteratively(secret);
                } else {
                    redact_value_at(child, depth + 1);
                }
            }
            // SECURITY: keys carry data too (a map keyed by e-mail address or token). Renaming
            // happens after the values are judged by their original keys.
            let renames: Vec<(String, String)> = map
                .keys()
                .filter_map(|key| match redact_str(key) {
                    Cow::Owned(redacted) => Some((key.clone(), redacted)),
                    Cow::Borrowed(_) => None,
                })
                .collect();
            for (old, new) in renames {
                if let Some(child) = map.remove(&old) {
                    // Any value displaced by a colliding key is already redacted and bounded.
                    map.insert(new, child);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Drops a value of any depth with a heap stack, since `Value`'s own drop glue recurses.
fn drop_iteratively(value: Value) {
    let mut pending = vec![value];
    while let Some(next) = pending.pop() {
        match next {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.into_iter().map(|(_, child)| child)),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

/// Redacts one formatted log line.
///
/// A line that parses as a JSON object (tracing's JSON formatter) is walked with [`redact_value`] and
/// re-serialised on one line (key order follows `serde_json`'s map, which is sorted unless the
/// `preserve_order` feature is on). A line that starts like a JSON object but does not parse (for
/// example nested beyond `serde_json`'s recursion limit, or truncated) is replaced by [`REDACTED`].
/// Any other line goes through [`redact_str`]. A trailing `\n` or `\r\n` is kept.
#[must_use]
pub fn redact_line(line: &str) -> String {
    let (body, ending) = split_line_ending(line);
    let mut out = redact_line_body(body);
    out.push_str(ending);
    out
}

fn split_line_ending(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

fn redact_line_body(body: &str) -> String {
    if !body.trim_start().starts_with('{') {
        return redact_str(body).into_owned();
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value);
            // Serialising a `Value` cannot fail in practice; if it ever did, emit nothing readable.
            serde_json::to_string(&value).unwrap_or_else(|_| REDACTED.to_owned())
        }
        // SECURITY: fail closed. A JSON-looking line we cannot parse cannot be walked by key, and
        // pattern redaction alone would let `"password":…` through inside unusual structure.
        Err(_) => REDACTED.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Free text
// ---------------------------------------------------------------------------------------------

/// Redacts secrets and personal data inside free text.
///
/// Applies, in order: URL user-info passwords, `Bearer`/`DPoP`/`Basic` credentials, sensitive
/// `key=value` / `key: value` / `"key": value` pairs, JWTs, Palisade API keys and webhook secrets,
/// e-mail addresses, Luhn-valid card numbers and phone numbers (see the module header). Returns
/// `Cow::Borrowed` when nothing matched. If the patterns failed to compile, returns [`REDACTED`] for
/// every input.
#[must_use]
pub fn redact_str(s: &str) -> Cow<'_, str> {
    redact_with(PATTERNS.as_ref(), s)
}

/// The compiled patterns, or `None` if any failed to compile.
static PATTERNS: LazyLock<Option<Patterns>> = LazyLock::new(|| Patterns::compile().ok());

fn redact_with<'a>(patterns: Option<&Patterns>, s: &'a str) -> Cow<'a, str> {
    let Some(p) = patterns else {
        // SECURITY: fail closed. Without the patterns nothing can be vouched for.
        return Cow::Owned(REDACTED.to_owned());
    };
    // Order matters: credentials keep their scheme only if they are handled before the key/value
    // pass, and the key/value pass runs before the typed patterns so a sensitive key's value is
    // plainly `[REDACTED]`, as in `redact_value`.
    let mut out = Cow::Borrowed(s);
    out = apply(out, |t| p.redact_userinfo(t));
    out = apply(out, |t| p.redact_auth_schemes(t));
    out = apply(out, |t| p.redact_key_values(t));
    out = apply(out, |t| p.redact_jwts(t));
    out = apply(out, |t| p.redact_keys(t));
    out = apply(out, |t| p.redact_emails(t));
    out = apply(out, |t| p.redact_cards(t));
    out = apply(out, |t| p.redact_international_phones(t));
    out = apply(out, |t| p.redact_north_american_phones(t));
    out
}

/// Runs one pass; a pass returns `Some` only when it changed something.
fn apply<'a>(current: Cow<'a, str>, pass: impl FnOnce(&str) -> Option<String>) -> Cow<'a, str> {
    match pass(&current) {
        Some(changed) => Cow::Owned(changed),
        None => current,
    }
}

struct Patterns {
    userinfo: Regex,
    auth_scheme: Regex,
    key_value: Regex,
    jwt: Regex,
    key: Regex,
    email: Regex,
    digit_run: Regex,
    international_phone: Regex,
    north_american_phone: Regex,
}

impl Patterns {
    fn compile() -> Result<Self, regex::Error> {
        Ok(Self {
            // scheme://user:password@ — the password may itself contain `@`, so take up to the last
            // `@` before the path.
            userinfo: Regex::new(
                r"(?i)(?-u:\b)[a-z][a-z0-9+.\-]*://[^\s/?#@:]*:(?P<pw>[^\s/?#]*)@",
            )?,
            auth_scheme: Regex::new(
                r"(?-u:\b)(?P<scheme>(?i:bearer|dpop|basic))(?P<ws>[ \t]+)(?P<cred>[A-Za-z0-9\-._~+/]+=*)",
            )?,
            // A quoted key followed by `:` (embedded JSON), or a bare key followed by `=` or `:`.
            key_value: Regex::new(
                r#""[^"\\\r\n]+"[ \t]*:[ \t]*|(?-u:\b)[A-Za-z][A-Za-z0-9_.\-]*[=:][ \t]*"#,
            )?,
            // JWS has three segments (the payload may be empty when detached), JWE five.
            jwt: Regex::new(
                r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*){0,2}",
            )?,
            key: Regex::new(
                r"pal_[A-Za-z0-9]+_[A-Za-z0-9]+_[A-Za-z0-9][A-Za-z0-9_\-]*|whsec_[A-Za-z0-9+/=_\-]+|pss_[A-Za-z0-9_\-]{43}",
            )?,
            email: Regex::new(
                r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
            )?,
            // ASCII digits only: `\d` would also match other scripts' digits.
            digit_run: Regex::new(r"[0-9]+(?:[ \-][0-9]+)*")?,
            international_phone: Regex::new(r"\+\(?[0-9]+\)?(?:[ .\-]?\(?[0-9]+\)?)*")?,
            north_american_phone: Regex::new(
                r"(?:(?-u:\b)1[ .\-])?(?:\([0-9]{3}\) ?[0-9]{3}-[0-9]{4}|[0-9]{3}-[0-9]{3}-[0-9]{4}|[0-9]{3}\.[0-9]{3}\.[0-9]{4})",
            )?,
        })
    }

    fn redact_userinfo(&self, text: &str) -> Option<String> {
        if !text.contains("://") {
            return None;
        }
        replace_matches(text, &self.userinfo, |caps| {
            let whole = caps.get(0)?;
            let password = caps.name("pw")?;
            if password.as_str().is_empty() || is_marker(password.as_str()) {
                return None;
            }
            let before = text.get(whole.start()..password.start())?;
            Some(format!("{before}{REDACTED}@"))
        })
    }

    fn redact_auth_schemes(&self, text: &str) -> Option<String> {
        if !mentions_auth_scheme(text) {
            return None;
        }
        replace_matches(text, &self.auth_scheme, |caps| {
            let whole = caps.get(0)?;
            let scheme = caps.name("scheme")?.as_str();
            let ws = caps.name("ws")?.as_str();
            let credential = caps.name("cred")?.as_str();
            let bare = credential.trim_end_matches('=').to_ascii_lowercase();
            if credential.ends_with('=')
                && AUTH_PARAM_NAMES.contains(&bare.as_str())
                && next_char(text, whole.end()).is_some_and(|c| !c.is_whitespace())
            {
                // `Bearer realm="api"`: a challenge parameter, not a credential.
                return None;
            }
            if SCHEME_STOPWORDS.contains(&bare.as_str()) {
                return None;
            }
            // The canonical spellings are almost never prose, so they always redact; other
            // spellings ("basic", "BEARER", and "Basic", a common English word) need the
            // credential to look like one.
            let canonical = matches!(scheme, "Bearer" | "DPoP");
            if !canonical && !looks_like_credential(credential) {
                return None;
            }
            Some(format!("{scheme}{ws}{REDACTED}"))
        })
    }

    fn redact_key_values(&self, text: &str) -> Option<String> {
        if !text.contains(['=', ':']) {
            return None;
        }
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut pos = 0;
        while pos < text.len() {
            let Some(whole) = self.key_value.find_at(text, pos) else {
                break;
            };
            // Every match is non-empty, so this always moves forward.
            let resume = whole.end().max(pos + 1);
            let Some((key, style)) = key_and_style(text, whole) else {
                pos = resume;
                continue;
            };
            if !is_sensitive_key(key) {
                // Keep scanning inside the value: `uri=/cb?code=…` hides a sensitive pair.
                pos = resume;
                continue;
            }
            let value_start = whole.end();
            let value_end = value_end(text, value_start, style);
            let value = text.get(value_start..value_end).unwrap_or_default();
            if let Some(replacement) = redact_secret_value(value) {
                let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                buf.push_str(text.get(copied..value_start).unwrap_or_default());
                buf.push_str(&replacement);
                copied = value_end;
            }
            pos = value_end.max(resume);
        }
        let mut buf = out?;
        buf.push_str(text.get(copied..).unwrap_or_default());
        Some(buf)
    }

    fn redact_jwts(&self, text: &str) -> Option<String> {
        if !text.contains("eyJ") {
            return None;
        }
        replace_all(text, &self.jwt, REDACTED_JWT)
    }

    fn redact_keys(&self, text: &str) -> Option<String> {
        if !text.contains("pal_") && !text.contains("whsec_") && !text.contains("pss_") {
            return None;
        }
        replace_all(text, &self.key, REDACTED_KEY)
    }

    fn redact_emails(&self, text: &str) -> Option<String> {
        if !text.contains('@') {
            return None;
        }
        replace_all(text, &self.email, REDACTED_EMAIL)
    }

    fn redact_cards(&self, text: &str) -> Option<String> {
        if longest_digit_stretch(text, b" -", 1) < 13 {
            return None;
        }
        replace_found(text, &self.digit_run, |run| {
            redact_cards_in_run(text, run.start(), run.end())
        })
    }

    fn redact_international_phones(&self, text: &str) -> Option<String> {
        if !text.contains('+') || longest_digit_stretch(text, PHONE_SEPARATORS, 3) < 7 {
            return None;
        }
        replace_found(text, &self.international_phone, |whole| {
            // `1.0.0+20130313144700` (semver build metadata), `…:30+05:30`, `UTC+14`: a `+` glued to
            // a word is not the start of a phone number.
            if touches_word_before(text, whole.start()) {
                return None;
            }
            let matched = whole.as_str();
            let mut groups = digit_groups(matched);
            if touches_word_after(text, whole.end()) {
                // The last group runs into a word (`+1234567ms`), so it is not part of a number.
                groups.pop();
            }
            // Take whole groups up to the 15-digit maximum (E.164), so a phone number followed by
            // other digits is still caught.
            let mut digits = 0;
            let mut cut = None;
            for (start, end) in groups {
                let len = end - start;
                if digits + len > 15 {
                    break;
                }
                digits += len;
                cut = Some(end);
            }
            let mut cut = cut?;
            if digits < 7 {
                return None;
            }
            if matched.get(cut..).is_some_and(|rest| rest.starts_with(')')) {
                cut += 1;
            }
            let rest = matched.get(cut..)?;
            Some(format!("{REDACTED_PHONE}{rest}"))
        })
    }

    fn redact_north_american_phones(&self, text: &str) -> Option<String> {
        if longest_digit_stretch(text, PHONE_SEPARATORS, 3) < 10 {
            return None;
        }
        replace_found(text, &self.north_american_phone, |whole| {
            // `ord-555-123-4567`, `v555.123.4567-2`: part of a longer identifier, not a phone.
            let before = prev_char(text, whole.start());
            if before.is_some_and(|c| is_word_char(c) || matches!(c, '.' | '-' | '+')) {
                return None;
            }
            if touches_word_after(text, whole.end()) {
                return None;
            }
            Some(REDACTED_PHONE.to_owned())
        })
    }
}

/// Replaces every match for which `decide` returns a replacement; `None` when nothing was replaced.
fn replace_matches(
    text: &str,
    re: &Regex,
    mut decide: impl FnMut(&Captures<'_>) -> Option<String>,
) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for caps in re.captures_iter(text) {
        let Some(whole) = caps.get(0) else {
            continue;
        };
        let Some(replacement) = decide(&caps) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(text.get(copied..whole.start()).unwrap_or_default());
        buf.push_str(&replacement);
        copied = whole.end();
    }
    let mut buf = out?;
    buf.push_str(text.get(copied..).unwrap_or_default());
    Some(buf)
}

/// Like [`replace_matches`] for passes that need only the match itself (cheaper than captures).
fn replace_found(
    text: &str,
    re: &Regex,
    mut decide: impl FnMut(Match<'_>) -> Option<String>,
) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for found in re.find_iter(text) {
        let Some(replacement) = decide(found) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(text.get(copied..found.start()).unwrap_or_default());
        buf.push_str(&replacement);
        copied = found.end();
    }
    let mut buf = out?;
    buf.push_str(text.get(copied..).unwrap_or_default());
    Some(buf)
}

/// Replaces every match with a fixed marker; `None` when nothing matched.
fn replace_all(text: &str, re: &Regex, marker: &str) -> Option<String> {
    match re.replace_all(text, NoExpand(marker)) {
        Cow::Owned(changed) => Some(changed),
        Cow::Borrowed(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Key/value pairs in free text
// ---------------------------------------------------------------------------------------------

/// How far a value after `key=` / `key:` / `"key":` extends.
#[derive(Clone, Copy)]
enum ValueStyle {
    /// `key=value` or `key: value` (tracing's text fields, query strings, headers, `Debug` output):
    /// up to whitespace, skipping over quoted and bracketed parts; `Bearer x` counts as one value.
    Plain,
    /// `"key": value` inside embedded JSON: one JSON value.
    Json,
    /// Cookie headers are `a=b; c=d` lists, so everything to the end of the line is the value.
    ToEndOfLine,
}

fn key_and_style<'t>(text: &'t str, whole: Match<'t>) -> Option<(&'t str, ValueStyle)> {
    // Keys contain neither quotes, `=` nor `:`, so the match splits unambiguously.
    let matched = whole.as_str();
    if let Some(after_quote) = matched.strip_prefix('"') {
        let key = after_quote.get(..after_quote.find('"')?)?;
        return Some((key, ValueStyle::Json));
    }
    let sep_at = matched.find(['=', ':'])?;
    let key = matched.get(..sep_at)?;
    if matched.get(sep_at..)?.starts_with(':') {
        // `palisade_server::session: …` is a module path, and `a::b` is not a pair.
        let sep_end = whole.start() + sep_at + 1;
        if prev_char(text, whole.start()) == Some(':') || next_char(text, sep_end) == Some(':') {
            return None;
        }
    }
    let style = if normalise_key(key).contains("cookie") {
        ValueStyle::ToEndOfLine
    } else {
        ValueStyle::Plain
    };
    Some((key, style))
}

/// The byte index where the value starting at `start` ends.
fn value_end(text: &str, start: usize, style: ValueStyle) -> usize {
    let rest = text.get(start..).unwrap_or_default();
    let first = rest.chars().next();
    let len = match (style, first) {
        (_, None) => 0,
        (_, Some(quote @ ('"' | '\''))) => quoted_len(rest, quote),
        (ValueStyle::ToEndOfLine, _) => rest.find(['\r', '\n']).unwrap_or(rest.len()),
        (ValueStyle::Json, Some('{' | '[')) => bracketed_len(rest),
        (ValueStyle::Json, _) => rest
            .find(|c: char| matches!(c, ',' | '}' | ']') || c.is_whitespace())
            .unwrap_or(rest.len()),
        (ValueStyle::Plain, _) => plain_len(rest),
    };
    start + len
}

/// A plain value: one token, or an auth scheme followed by its credential.
fn plain_len(rest: &str) -> usize {
    let first = token_len(rest);
    let word = rest.get(..first).unwrap_or_default();
    if !is_auth_scheme(word) {
        return first;
    }
    let after = rest.get(first..).unwrap_or_default();
    let gap = after.len() - after.trim_start_matches([' ', '\t']).len();
    if gap == 0 {
        return first;
    }
    let credential = token_len(after.get(gap..).unwrap_or_default());
    if credential == 0 {
        first
    } else {
        first + gap + credential
    }
}

/// Up to the next whitespace outside quotes and brackets, so `Some("two words")` is one token.
fn token_len(rest: &str) -> usize {
    let mut idx = 0;
    while let Some(c) = rest.get(idx..).and_then(|r| r.chars().next()) {
        if c.is_whitespace() {
            break;
        }
        let tail = rest.get(idx..).unwrap_or_default();
        idx += match c {
            '"' => quoted_len(tail, '"'),
            '(' | '[' | '{' => bracketed_len(tail),
            _ => c.len_utf8(),
        };
    }
    idx
}

/// Length of a quoted string starting at `s` (which starts with `quote`), honouring backslash escapes;
/// the whole of `s` if it is never closed.
fn quoted_len(s: &str, quote: char) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return i + c.len_utf8();
        }
    }
    s.len()
}

/// Length of a bracketed group starting at `s`, skipping double-quoted strings; the whole of `s` if
/// it never closes (failing closed: the rest of the text is treated as the secret).
fn bracketed_len(s: &str) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + c.len_utf8();
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The replacement for a sensitive key's value, or `None` when it is already redacted.
fn redact_secret_value(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let (open, inner, close) = split_quotes(value);
    if is_marker(inner) {
        return None;
    }
    if let Some((scheme_and_gap, credential)) = split_auth_scheme(inner) {
        // Keep `Bearer`/`Basic` visible, as the scheme pass does.
        if is_marker(credential) {
            return None;
        }
        return Some(format!("{open}{scheme_and_gap}{REDACTED}{close}"));
    }
    // SECURITY: anything else is replaced whole, including a value that merely starts with a
    // marker (`[REDACTED]hunter2`), so a marker cannot be used to smuggle a secret past this pass.
    Some(format!("{open}{REDACTED}{close}"))
}

/// Splits `"inner"` / `'inner'` into quote, inner text and closing quote (empty if unterminated).
fn split_quotes(value: &str) -> (&str, &str, &str) {
    for quote in ["\"", "'"] {
        if let Some(after_open) = value.strip_prefix(quote) {
            return match after_open.strip_suffix(quote) {
                Some(inner) => (quote, inner, quote),
                None => (quote, after_open, ""),
            };
        }
    }
    ("", value, "")
}

/// Splits `Bearer xyz` into (`Bearer `, `xyz`).
fn split_auth_scheme(value: &str) -> Option<(&str, &str)> {
    let word_len = value.find([' ', '\t'])?;
    let word = value.get(..word_len)?;
    if !is_auth_scheme(word) {
        return None;
    }
    let after = value.get(word_len..)?;
    let credential = after.trim_start_matches([' ', '\t']);
    if credential.is_empty() {
        return None;
    }
    let split = value.len() - credential.len();
    Some((value.get(..split)?, credential))
}

/// Whether `text` contains `bearer`, `dpop` or `basic` in any case: a prefilter for the scheme
/// pass, whose case-insensitive regex is the slowest of the passes to run on clean text.
fn mentions_auth_scheme(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(at, b)| {
        matches!(b, b'b' | b'B' | b'd' | b'D')
            && AUTH_SCHEMES.iter().any(|scheme| {
                bytes
                    .get(at..at + scheme.len())
                    .is_some_and(|word| word.eq_ignore_ascii_case(scheme.as_bytes()))
            })
    })
}

fn is_auth_scheme(word: &str) -> bool {
    AUTH_SCHEMES
        .iter()
        .any(|scheme| word.eq_ignore_ascii_case(scheme))
}

/// Whether `s` is exactly one of this module's markers.
fn is_marker(s: &str) -> bool {
    if s == REDACTED {
        return true;
    }
    s.strip_prefix("[REDACTED:")
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|kind| {
            !kind.is_empty() && kind.len() <= 8 && kind.bytes().all(|b| b.is_ascii_lowercase())
        })
}

/// Whether a word after a non-canonical scheme spelling looks like a credential rather than prose:
/// opaque tokens and base64 carry digits, symbols or inner capitals; English words do not.
fn looks_like_credential(token: &str) -> bool {
    token.len() >= 20
        || token
            .bytes()
            .any(|b| b.is_ascii_digit() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'~'))
        || token.bytes().skip(1).any(|b| b.is_ascii_uppercase())
}

// ---------------------------------------------------------------------------------------------
// Digits: cards and phones
// ---------------------------------------------------------------------------------------------

/// Bytes that may sit between the digit groups of a phone number.
const PHONE_SEPARATORS: &[u8] = b"( ).-";

/// The most digits in one stretch of `text` whose digits are separated by at most `max_gap`
/// consecutive bytes from `separators`. A cheap prefilter: it never undercounts what the card and
/// phone patterns could match, so skipping a pass when it is too small loses nothing.
fn longest_digit_stretch(text: &str, separators: &[u8], max_gap: usize) -> usize {
    let mut best = 0;
    let mut current = 0;
    let mut gap = 0;
    for b in text.bytes() {
        if b.is_ascii_digit() {
            current += 1;
            gap = 0;
            best = best.max(current);
        } else if current > 0 && gap < max_gap && separators.contains(&b) {
            gap += 1;
        } else {
            current = 0;
            gap = 0;
        }
    }
    best
}

fn count_ascii_digits(text: &str) -> usize {
    text.bytes().filter(u8::is_ascii_digit).count()
}

fn prev_char(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|before| before.chars().next_back())
}

fn next_char(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|after| after.chars().next())
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the digits starting at `at` are glued to something before them: a word (`v2`, a hex
/// digest, a UUID group), a decimal point (`3.14…`), an identifier's hyphen (`id-4111…`) or a
/// version's build metadata (`1.0.0+2026…`).
fn touches_word_before(text: &str, at: usize) -> bool {
    match prev_char(text, at) {
        Some(c) if is_word_char(c) => true,
        Some(c @ ('.' | '-' | '+')) => {
            let before_sep = prev_char(text, at - c.len_utf8());
            before_sep.is_some_and(is_word_char)
        }
        _ => false,
    }
}

/// Whether the digits ending at `at` run on into a word, a decimal part or an identifier.
fn touches_word_after(text: &str, at: usize) -> bool {
    match next_char(text, at) {
        Some(c) if is_word_char(c) => true,
        Some(c @ ('.' | '-')) => next_char(text, at + c.len_utf8()).is_some_and(is_word_char),
        _ => false,
    }
}

/// Byte ranges of the maximal ASCII digit sequences in `s`.
fn digit_groups(s: &str) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut start = None;
    for (i, b) in s.bytes().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(begun)) => {
                groups.push((begun, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(begun) = start {
        groups.push((begun, s.len()));
    }
    groups
}

/// Redacts the card numbers inside one run of digit groups (`[0-9]+([ -][0-9]+)*`) spanning
/// `start..end` of `text`; `None` when the run holds none.
fn redact_cards_in_run(text: &str, start: usize, end: usize) -> Option<String> {
    let run = text.get(start..end)?;
    if count_ascii_digits(run) < 13 {
        return None;
    }
    let groups = digit_groups(run);
    // A group glued to a word or decimal point on the outside (a UUID's `9a55`, a timestamp's
    // `25T06`, a fraction) cannot be part of a card number.
    let first_usable = !touches_word_before(text, start);
    let last_usable = !touches_word_after(text, end);
    let usable =
        |idx: usize| (idx != 0 || first_usable) && (idx + 1 != groups.len() || last_usable);

    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < groups.len() {
        let found = if usable(i) {
            longest_card_from(run, &groups, i, &usable)
        } else {
            None
        };
        match (found, groups.get(i)) {
            (Some((j, card_end)), Some(&(card_start, _))) => {
                out.push_str(run.get(copied..card_start).unwrap_or_default());
                out.push_str(REDACTED_CARD);
                copied = card_end;
                changed = true;
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(run.get(copied..).unwrap_or_default());
    Some(out)
}

/// The last group index and end offset of the longest card number starting at group `i`.
fn longest_card_from(
    run: &str,
    groups: &[(usize, usize)],
    i: usize,
    usable: &impl Fn(usize) -> bool,
) -> Option<(usize, usize)> {
    let mut best = None;
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    for (j, &(g_start, g_end)) in groups.iter().enumerate().skip(i) {
        if !usable(j) {
            break;
        }
        digits.extend(
            run.get(g_start..g_end)?
                .bytes()
                .map(|b| b.wrapping_sub(b'0')),
        );
        if digits.len() > 19 {
            break;
        }
        let candidate = groups.get(i..=j)?;
        if digits.len() >= 13 && is_card_grouping(candidate, &digits) && luhn_valid(&digits) {
            best = Some((j, g_end));
        }
    }
    best
}

/// Whether digit groups (byte ranges) look like a card number as people write one.
fn is_card_grouping(groups: &[(usize, usize)], digits: &[u8]) -> bool {
    let len = |&(start, end): &(usize, usize)| end - start;
    match groups {
        // Ungrouped: also require a payment-card major industry identifier (2–6), which keeps
        // Luhn-valid Unix millisecond and nanosecond timestamps (starting with 1) out.
        [_single] => digits.first().is_some_and(|d| (2..=6).contains(d)),
        // Grouped: 4-4-4-4, 4-6-5 (Amex), 4-6-4 (Diners), 4-4-4-4-3, 4-4-4-1 …: a leading group
        // of four, middle groups of four to six, a last group of at most six. This rules out the
        // 8-4-4-4-12 shape of an all-digit UUID.
        [first, middle @ .., last] => {
            len(first) == 4
                && middle.iter().all(|group| (4..=6).contains(&len(group)))
                && (1..=6).contains(&len(last))
        }
        [] => false,
    }
}

/// The Luhn (mod 10) check over digit values 0–9.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    /// (input, expected) for `redact_str`.
    fn str_corpus() -> Vec<(String, String)> {
        let cases: Vec<(&str, &str)> = vec![
            // --- e-mail ---
            (
                "login failed for alice@example.com",
                "login failed for [REDACTED:email]",
            ),
            (
                "cc Bob.Smith+tag@mail.example.co.uk.",
                "cc [REDACTED:email].",
            ),
            ("<first_last-1@sub-domain.example.io>", "<[REDACTED:email]>"),
            // --- JWT ---
            // built below with the JWT constant
            // --- Palisade keys and webhook secrets ---
            (
                "created pal_live_a1b2c3_S3cr3tV4lue for tenant",
                "created [REDACTED:key] for tenant",
            ),
            ("pal_test_Xy12_abcDEF987 rotated", "[REDACTED:key] rotated"),
            (
                "signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "signing with [REDACTED:key]",
            ),
            // --- auth schemes ---
            ("Basic dXNlcjpwYXNzd29yZA==", "Basic [REDACTED]"),
            (
                "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l",
                "Authorization: Basic [REDACTED]",
            ),
            ("Bearer abcdef", "Bearer [REDACTED]"),
            ("bearer 0a1b2c3d4e", "bearer [REDACTED]"),
            ("DPoP Kz~8-proof", "DPoP [REDACTED]"),
            ("missing Bearer token", "missing Bearer token"),
            (
                "Basic authentication is disabled",
                "Basic authentication is disabled",
            ),
            (
                r#"WWW-Authenticate: Bearer realm="palisade", error="invalid_token""#,
                r#"WWW-Authenticate: Bearer realm="palisade", error="invalid_token""#,
            ),
            // --- URL user-info ---
            (
                "connecting to postgres://app:s3cr3t@db.internal:5432/palisade",
                "connecting to postgres://app:[REDACTED]@db.internal:5432/palisade",
            ),
            // --- key/value pairs in text ---
            (
                "user=alice password=hunter2 ok",
                "user=alice password=[REDACTED] ok",
            ),
            (
                r#"password="correct horse battery""#,
                r#"password="[REDACTED]""#,
            ),
            (
                "X-Api-Key: k_live_abcdef tail",
                "X-Api-Key: [REDACTED] tail",
            ),
            ("otp=123456", "otp=[REDACTED]"),
            (
                "GET /oauth/cb?code=SplxlOBe&state=xyz",
                "GET /oauth/cb?code=[REDACTED]",
            ),
            ("Cookie: sid=abc123; theme=dark", "Cookie: [REDACTED]"),
            (
                r#"body={"otp":"123456","user":"bob"}"#,
                r#"body={"otp":"[REDACTED]","user":"bob"}"#,
            ),
            (
                r#"Creds { user: "bob", pin: Some("12 34") }"#,
                r#"Creds { user: "bob", pin: [REDACTED] }"#,
            ),
            ("session_id=[REDACTED]hunter2", "session_id=[REDACTED]"),
            (
                "status_code=200 error_code=E42 http.status_code=404",
                "status_code=200 error_code=E42 http.status_code=404",
            ),
            // --- cards ---
            (
                "card 4111 1111 1111 1111 declined",
                "card [REDACTED:card] declined",
            ),
            ("card 4111-1111-1111-1111", "card [REDACTED:card]"),
            ("pan=4242424242424242", "pan=[REDACTED:card]"),
            ("amex 378282246310005.", "amex [REDACTED:card]."),
            ("amex 3782 822463 10005", "amex [REDACTED:card]"),
            ("visa13 4222222222222", "visa13 [REDACTED:card]"),
            ("order 12 5555 5555 5555 4444", "order 12 [REDACTED:card]"),
            (
                "luhn-invalid 4111 1111 1111 1112",
                "luhn-invalid 4111 1111 1111 1112",
            ),
            (
                "luhn-invalid 4111111111111112",
                "luhn-invalid 4111111111111112",
            ),
            // Luhn-valid, but an ungrouped run starting with 1 is a timestamp, not a card.
            ("ts=1000000000009", "ts=1000000000009"),
            // --- phones ---
            ("call +1 (555) 123-4567 now", "call [REDACTED:phone] now"),
            ("+44 20 7946 0958", "[REDACTED:phone]"),
            ("tel:+49.30.1234567", "tel:[REDACTED:phone]"),
            ("sms to +15551234567, ok", "sms to [REDACTED:phone], ok"),
            ("(555) 123-4567", "[REDACTED:phone]"),
            ("call 555-123-4567.", "call [REDACTED:phone]."),
            // --- negatives: must stay intact ---
            (
                "request_id=0192f0c4-7b7e-7c3a-9a55-3f1d2e4b5a6c",
                "request_id=0192f0c4-7b7e-7c3a-9a55-3f1d2e4b5a6c",
            ),
            (
                "uuid 12345678-1234-5678-1234-567812345678",
                "uuid 12345678-1234-5678-1234-567812345678",
            ),
            ("at 2026-11-25T06:53:30.123Z", "at 2026-11-25T06:53:30.123Z"),
            (
                "at 2026-11-25T06:53:30+05:30",
                "at 2026-11-25T06:53:30+05:30",
            ),
            ("peer 127.0.0.1:8080", "peer 127.0.0.1:8080"),
            (
                "listening on [2001:db8::1]:8443",
                "listening on [2001:db8::1]:8443",
            ),
            ("latency_ms: 1234567", "latency_ms: 1234567"),
            ("elapsed=1234567890123ns", "elapsed=1234567890123ns"),
            (
                "HTTP/1.1 503 Service Unavailable status=503",
                "HTTP/1.1 503 Service Unavailable status=503",
            ),
            (
                "palisade v2.10.3+20261125063000",
                "palisade v2.10.3+20261125063000",
            ),
            ("version 1.2.3-rc.1", "version 1.2.3-rc.1"),
            (
                "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "digest 4111111111111111e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c",
                "digest 4111111111111111e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c",
            ),
            ("problem=auth.token_expired", "problem=auth.token_expired"),
            (
                "palisade_server::session: session created",
                "palisade_server::session: session created",
            ),
            (
                "The quick brown fox jumps over the lazy dog.",
                "The quick brown fox jumps over the lazy dog.",
            ),
            (
                "User logged in after 3 attempts in 250ms",
                "User logged in after 3 attempts in 250ms",
            ),
            ("pi=3.1415926535897932384", "pi=3.1415926535897932384"),
            ("user@localhost", "user@localhost"),
            ("npm i left-pad@1.3.0", "npm i left-pad@1.3.0"),
            ("", ""),
        ];
        let mut owned: Vec<(String, String)> = cases
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        owned.push((
            format!("id token {JWT} issued"),
            "id token [REDACTED:jwt] issued".to_owned(),
        ));
        owned.push((
            format!("Authorization: Bearer {JWT}"),
            "Authorization: Bearer [REDACTED]".to_owned(),
        ));
        owned.push((format!("DPoP {JWT}"), "DPoP [REDACTED]".to_owned()));
        owned.push((format!("token={JWT}"), "token=[REDACTED]".to_owned()));
        // A detached-payload JWS and a five-segment JWE.
        owned.push((
            "sig eyJhbGciOiJFUzI1NiJ9..MEUCIQDx".to_owned(),
            "sig [REDACTED:jwt]".to_owned(),
        ));
        owned.push((
            "jwe eyJhbGciOiJSU0EifQ.a.b.c.d end".to_owned(),
            "jwe [REDACTED:jwt] end".to_owned(),
        ));
        owned
    }

    #[test]
    fn redact_str_corpus() {
        let corpus = str_corpus();
        assert!(corpus.len() >= 40, "corpus has {} cases", corpus.len());
        let mut failures = Vec::new();
        for (input, expected) in &corpus {
            let actual = redact_str(input);
            if actual != expected.as_str() {
                failures.push(format!(
                    "\n  input:    {input:?}\n  expected: {expected:?}\n  actual:   {actual:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:{}",
            failures.len(),
            failures.concat()
        );
    }

    #[test]
    fn redact_str_borrows_when_clean() {
        for clean in [
            "GET /v1/tenants 200 in 12ms",
            "request_id=0192f0c4-7b7e-7c3a-9a55-3f1d2e4b5a6c",
            "problem=auth.token_expired",
        ] {
            assert!(matches!(redact_str(clean), Cow::Borrowed(_)), "{clean}");
        }
    }

    #[test]
    fn redaction_is_idempotent_on_the_corpus() {
        for (input, _) in str_corpus() {
            let once = redact_str(&input).into_owned();
            let twice = redact_str(&once).into_owned();
            assert_eq!(once, twice, "input {input:?}");
        }
    }

    #[test]
    fn sensitive_keys() {
        let sensitive = [
            "password",
            "Password",
            "new_password",
            "passwd",
            "passphrase",
            "client_secret",
            "token",
            "access_token",
            "refresh_token",
            "refreshToken",
            "id_token",
            "mfa_token",
            "authorization",
            "Authorization",
            "apikey",
            "api_key",
            "API_KEY",
            "x-api-key",
            "X-Api-Key",
            "cookie",
            "Set-Cookie",
            "session",
            "session_id",
            "otp",
            "code",
            "auth_code",
            "recovery_codes",
            "private_key",
            "client_assertion",
            "DPoP",
            "signature",
            "credentials",
            "pepper",
            "master_key",
            "csrf_token",
            "x-csrf",
            "pin",
            "ssn",
            "tax_id",
            "iban",
            "cvv",
            "card_number",
            "cardNumber",
            "request.headers.authorization",
            "error_code_otp",
            "errorcode authcode",
        ];
        for key in sensitive {
            assert!(is_sensitive_key(key), "{key} should be sensitive");
        }
        let ordinary = [
            "status_code",
            "STATUS-CODE",
            "error_code",
            "problem_code",
            "country_code",
            "currency.code",
            "http.status_code",
            "http_status",
            "user_id",
            "request_id",
            "tenant_id",
            "email",
            "message",
            "level",
            "target",
            "timestamp",
            "latency_ms",
            "problem",
            "",
        ];
        for key in ordinary {
            assert!(!is_sensitive_key(key), "{key} should not be sensitive");
        }
    }

    #[test]
    fn redact_value_nested_objects_and_arrays() {
        let mut value = json!({
            "request": {
                "headers": {
                    "authorization": format!("Bearer {JWT}"),
                    "X-Api-Key": "pal_live_abc_def",
                    "accept": "application/json",
                },
                "body": { "email": "alice@example.com", "refreshToken": "r-123" },
            },
            "credentials": { "user": "bob", "pass": "hunter2" },
            "API_KEY": ["k1", "k2"],
            "otp": 123_456,
            "events": [
                { "password": "p1", "note": "contact bob@example.org" },
                ["nested", { "cvv": "123" }],
            ],
            "latency_ms": 1_234_567,
            "card": 4_111_111_111_111_111_u64,
            "status_code": 200,
            "problem_code": "auth.token_expired",
            "fields": { "message": "retry from +44 20 7946 0958" },
        });
        redact_value(&mut value);
        let expected = json!({
            "request": {
                "headers": {
                    "authorization": "[REDACTED]",
                    "X-Api-Key": "[REDACTED]",
                    "accept": "application/json",
                },
                "body": { "email": "[REDACTED:email]", "refreshToken": "[REDACTED]" },
            },
            "credentials": "[REDACTED]",
            "API_KEY": "[REDACTED]",
            "otp": "[REDACTED]",
            "events": [
                { "password": "[REDACTED]", "note": "contact [REDACTED:email]" },
                ["nested", { "cvv": "[REDACTED]" }],
            ],
            "latency_ms": 1_234_567,
            "card": 4_111_111_111_111_111_u64,
            "status_code": 200,
            "problem_code": "auth.token_expired",
            "fields": { "message": "retry from [REDACTED:phone]" },
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn redact_value_redacts_object_keys() {
        let mut value = json!({
            "by_user": { "alice@example.com": { "logins": 3 }, "bob": { "logins": 1 } },
            "otp": { "bob@example.com": "x" },
        });
        redact_value(&mut value);
        assert_eq!(
            value,
            json!({
                "by_user": { "[REDACTED:email]": { "logins": 3 }, "bob": { "logins": 1 } },
                "otp": "[REDACTED]",
            })
        );
    }

    /// Nesting depth of the first-child chain, counted without recursion.
    fn chain_depth(value: &Value) -> (usize, &Value) {
        let mut depth = 0;
        let mut current = value;
        loop {
            let next = match current {
                Value::Array(items) => items.first(),
                Value::Object(map) => map.values().next(),
                _ => None,
            };
            match next {
                Some(child) => {
                    depth += 1;
                    current = child;
                }
                None => return (depth, current),
            }
        }
    }

    #[test]
    fn redact_value_bounds_depth_of_deep_arrays() {
        let mut value = json!("alice@example.com");
        for _ in 0..10_000 {
            value = Value::Array(vec![value]);
        }
        redact_value(&mut value);
        let (depth, leaf) = chain_depth(&value);
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(leaf, &json!(REDACTED));
    }

    #[test]
    fn redact_value_bounds_depth_of_deep_objects() {
        let mut value = json!({ "leaf": "x" });
        for _ in 0..10_000 {
            let mut map = serde_json::Map::new();
            map.insert("child".to_owned(), value);
            value = Value::Object(map);
        }
        redact_value(&mut value);
        let (depth, leaf) = chain_depth(&value);
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(leaf, &json!(REDACTED));
    }

    #[test]
    fn redact_value_drops_deep_secret_without_overflow() {
        let mut secret = json!("s");
        for _ in 0..100_000 {
            secret = Value::Array(vec![secret]);
        }
        let mut value = json!({ "password": null });
        if let Some(slot) = value.get_mut("password") {
            *slot = secret;
        }
        redact_value(&mut value);
        assert_eq!(value, json!({ "password": REDACTED }));
    }

    #[test]
    fn redact_line_json() {
        let line = format!(
            r#"{{"timestamp":"2026-11-25T06:53:30.123Z","level":"INFO","fields":{{"message":"login alice@example.com","password":"hunter2","latency_ms":12}},"target":"palisade_server::auth","span":{{"authorization":"Bearer {JWT}","request_id":"0192f0c4-7b7e-7c3a-9a55-3f1d2e4b5a6c"}}}}"#
        ) + "\n";
        let out = redact_line(&line);
        assert!(out.ends_with('\n'));
        assert_eq!(out.matches('\n').count(), 1, "one line: {out}");
        let parsed: Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(
            parsed,
            json!({
                "timestamp": "2026-11-25T06:53:30.123Z",
                "level": "INFO",
                "fields": { "message": "login [REDACTED:email]", "password": "[REDACTED]", "latency_ms": 12 },
                "target": "palisade_server::auth",
                "span": { "authorization": "[REDACTED]", "request_id": "0192f0c4-7b7e-7c3a-9a55-3f1d2e4b5a6c" },
            })
        );
        assert!(!out.contains("hunter2") && !out.contains("alice@") && !out.contains("eyJ"));
    }

    #[test]
    fn redact_line_text_and_line_endings() {
        assert_eq!(
            redact_line(
                "2026-11-25T06:53:30.123Z  INFO palisade_server: login alice@example.com password=hunter2\n"
            ),
            "2026-11-25T06:53:30.123Z  INFO palisade_server: login [REDACTED:email] password=[REDACTED]\n"
        );
        assert_eq!(redact_line("no newline"), "no newline");
        assert_eq!(
            redact_line("crlf bob@example.com\r\n"),
            "crlf [REDACTED:email]\r\n"
        );
        assert_eq!(redact_line("\n"), "\n");
        assert_eq!(redact_line(""), "");
        // A JSON array line is not an object: it is treated as text.
        assert_eq!(
            redact_line(r#"["bob@example.com"]"#),
            r#"["[REDACTED:email]"]"#
        );
        // A JSON-looking line that does not parse fails closed.
        assert_eq!(
            redact_line("{\"password\":\"hunter2\", oops\n"),
            "[REDACTED]\n"
        );
    }

    #[test]
    fn redact_line_deep_input_does_not_panic() {
        let deep_arrays = format!("{}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(redact_line(&deep_arrays), deep_arrays);
        let deep_objects = format!("{}1{}\n", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert_eq!(redact_line(&deep_objects), "[REDACTED]\n");
        let unbalanced = "{".repeat(100_000);
        assert_eq!(redact_line(&unbalanced), REDACTED);
    }

    #[test]
    fn fails_closed_without_patterns() {
        assert!(PATTERNS.is_some(), "the patterns must compile");
        assert_eq!(redact_with(None, "hello alice@example.com"), REDACTED);
        assert_eq!(redact_with(None, "nothing secret"), REDACTED);
    }

    #[test]
    fn luhn() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
        for valid in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "79927398713",
        ] {
            assert!(luhn_valid(&digits(valid)), "{valid}");
        }
        for invalid in ["4111111111111112", "1234567812345678", "79927398710"] {
            assert!(!luhn_valid(&digits(invalid)), "{invalid}");
        }
    }

    proptest! {
        #[test]
        fn redact_str_never_panics(s in any::<String>()) {
            let _ = redact_str(&s);
            let _ = redact_line(&s);
        }

        #[test]
        fn redact_str_never_panics_on_digit_soup(s in "[0-9 ()+.:=\\-a-fA-F@{}\"]{0,80}") {
            let _ = redact_str(&s);
            let _ = redact_line(&s);
        }

        #[test]
        fn emails_never_survive(
            prefix in any::<String>(),
            local in "[A-Za-z0-9][A-Za-z0-9._%+\\-]{0,20}",
            domain in "[A-Za-z0-9]([A-Za-z0-9\\-]{0,10}[A-Za-z0-9])?(\\.[A-Za-z0-9]{1,10}){0,2}",
            tld in "[A-Za-z]{2,8}",
            suffix in any::<String>(),
        ) {
            let email = format!("{local}@{domain}.{tld}");
            let input = format!("{prefix}{email}{suffix}");
            let out = redact_str(&input);
            prop_assert!(!out.contains(&email), "{input:?} -> {out:?}");
        }

        #[test]
        fn luhn_valid_grouped_cards_never_survive(body in proptest::collection::vec(0u8..10, 15)) {
            // Complete a 16-digit Visa-like number with its Luhn check digit.
            let mut digits = vec![4u8];
            digits.extend(body.iter().take(14));
            let check = (0u8..10).find(|c| {
                let mut candidate = digits.clone();
                candidate.push(*c);
                luhn_valid(&candidate)
            }).unwrap();
            digits.push(check);
            let number: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
            let grouped: Vec<String> = number.as_bytes().chunks(4).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
            for rendered in [number.clone(), grouped.join(" "), grouped.join("-")] {
                let line = format!("paid with {rendered} today");
                let out = redact_str(&line);
                prop_assert_eq!(out.as_ref(), "paid with [REDACTED:card] today");
            }
        }
    }
}
