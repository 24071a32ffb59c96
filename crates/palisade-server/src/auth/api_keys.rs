//! API keys: the format, generation, hashing and the checks made when one is presented.
//!
//! Format: `pal_<env>_<prefix>_<secret><checksum>`.
//! - `env` is `live` (production) or `test` (development); a server accepts only its own.
//! - `prefix`: 12 characters of lowercase RFC 4648 base32 (60 random bits), the public lookup handle.
//! - `secret`: 256 bits from the OS CSPRNG, lowercase base32 (52 characters).
//! - `checksum`: the first 32 bits of SHA-256 over everything before it, base32 (7 characters), so
//!   secret scanners and this server reject a mistyped or truncated key without a database lookup.
//!
//! Invariants:
//! - SECURITY: only the prefix and an HMAC-SHA-256 of the whole key (key derived from the master key,
//!   `palisade/api-key/v1`) are stored; the presented key's hash is compared in constant time. The key
//!   is shown once, at creation or rotation.
//! - SECURITY: a presented key is looked up in the database on every request (no cache), so a
//!   revocation, expiry or the end of a rotation grace period holds at once on every instance.
//! - SECURITY: errors never echo the presented key; every refusal has a fixed message.

use std::net::IpAddr;

use axum::http::HeaderMap;
use palisade_crypto::KeyedHasher;
use palisade_store::ApiKey;
use time::OffsetDateTime;

use crate::config::Mode;
use crate::error::{ApiError, Challenge};
use crate::state::AppState;

/// The request header carrying an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const PREFIX_LEN: usize = 12;
const SECRET_LEN: usize = 52;
const CHECKSUM_LEN: usize = 7;

/// Lowercase RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    let mut push = |v: u32| {
        let c = ALPHABET
            .get(usize::try_from(v & 31).unwrap_or(0))
            .copied()
            .unwrap_or(b'a');
        out.push(char::from(c));
    };
    for b in bytes {
        buffer = (buffer << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            push(buffer >> bits);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        push(buffer << (5 - bits));
    }
    out
}

fn is_base32(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// The checksum of a key's body (everything before the checksum).
fn checksum(body: &str) -> String {
    let digest = palisade_crypto::fingerprint(body.as_bytes());
    let mut sum = base32(digest.get(..5).unwrap_or_default());
    sum.truncate(CHECKSUM_LEN);
    sum
}

/// The `env` segment a server in `mode` issues and accepts.
#[must_use]
pub fn env_for(mode: Mode) -> &'static str {
    match mode {
        Mode::Production => "live",
        Mode::Development => "test",
    }
}

/// A freshly generated key and its prefix.
pub struct Generated {
    /// The whole key, shown once.
    pub key: String,
    /// Its public lookup handle.
    pub prefix: String,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Generates a key for `env`.
#[must_use]
pub fn generate(env: &str) -> Generated {
    let mut prefix = base32(&palisade_crypto::random_bytes::<8>());
    prefix.truncate(PREFIX_LEN);
    let secret = base32(&palisade_crypto::random_bytes::<32>());
    let body = format!("pal_{env}_{prefix}_{secret}");
    let sum = checksum(&body);
    Generated {
        key: format!("{body}{sum}"),
        prefix,
    }
}

/// The stored form of a key: hex HMAC-SHA-256 of the whole key.
#[must_use]
pub fn hash(hasher: &KeyedHasher, key: &str) -> String {
    hasher
        .hash(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The prefix of a well-formed key for `env` whose checksum holds; `None` otherwise (no lookup needed).
#[must_use]
pub fn parse<'a>(key: &'a str, env: &str) -> Option<&'a str> {
    let rest = key.strip_prefix("pal_")?;
    let (key_env, rest) = rest.split_once('_')?;
    let (prefix, tail) = rest.split_once('_')?;
    if key_env != env
        || !is_base32(prefix, PREFIX_LEN)
        || !is_base32(tail, SECRET_LEN + CHECKSUM_LEN)
    {
        return None;
    }
    let body = key.get(..key.len() - CHECKSUM_LEN)?;
    let sum = key.get(key.len() - CHECKSUM_LEN..)?;
    palisade_crypto::ct_eq(checksum(body).as_bytes(), sum.as_bytes()).then_some(prefix)
}

fn refused(detail: &'static str) -> ApiError {
    ApiError::Unauthenticated {
        code: "auth.invalid_api_key",
        detail,
        challenge: Challenge::InvalidToken,
    }
}

/// Verifies the `X-API-Key` of a request: shape and checksum, then the row by prefix, the keyed hash
/// in constant time, revocation, expiry, the rotation grace period and the allowed IPs.
///
/// # Errors
/// 401 `auth.invalid_api_key` (fixed messages, never the key), 403 `auth.ip_not_allowed`, or the
/// store's error (503).
pub async fn verify(
    app: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
) -> Result<ApiKey, ApiError> {
    let mut values = headers.get_all(API_KEY_HEADER).iter();
    let (Some(raw), None) = (values.next(), values.next()) else {
        return Err(refused("Send exactly one X-API-Key header."));
    };
    let presented = raw
        .to_str()
        .map_err(|_| refused("The API key is malformed."))?;
    let prefix = parse(presented, env_for(app.settings().mode))
        .ok_or_else(|| refused("The API key is malformed or mistyped."))?;
    let key = app
        .stores()
        .api_keys
        .find_api_key_by_prefix(prefix)
        .await?
        .ok_or_else(|| refused("The API key was refused."))?;
    let computed = hash(&app.auth().api_key_hasher, presented);
    if !palisade_crypto::ct_eq(computed.as_bytes(), key.secret_hash.as_bytes()) {
        return Err(refused("The API key was refused."));
    }
    if !key.is_live(OffsetDateTime::now_utc()) {
        return Err(refused("The API key is revoked or expired."));
    }
    if !crate::net::ip_allowed(&key.allowed_ips, ip) {
        return Err(ApiError::Forbidden {
            code: "auth.ip_not_allowed",
            detail: "This API key may not be used from this address.".to_owned(),
        });
    }
    Ok(key)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_typos_do_not() {
        let g = generate("test");
        assert_eq!(parse(&g.key, "test"), Some(g.prefix.as_str()));
        assert_eq!(parse(&g.key, "live"), None);
        assert!(g.key.starts_with("pal_test_"));
        assert_eq!(g.prefix.len(), PREFIX_LEN);
        // Change one character of the secret: the checksum catches it.
        let mut typo = g.key.clone().into_bytes();
        let i = 30;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(parse(&typo, "test"), None);
        assert_eq!(parse(&g.key[..g.key.len() - 1], "test"), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }
}
