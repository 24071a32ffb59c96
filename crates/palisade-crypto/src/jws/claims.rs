//! Validation of the registered JWT claims (RFC 7519 §4.1) after a signature has verified.
//!
//! Invariants:
//! - `iss` must equal the expected issuer; `aud` must equal the expected audience or be an array of
//!   strings containing it.
//! - `exp` and `iat` are required; `nbf` is checked when present. All three are NumericDates given as
//!   JSON integers: floats, strings and out-of-range values are refused, never rounded.
//! - Clock leeway is capped at [`MAX_LEEWAY`], whatever the caller asks for.
//! - Every failure is a refusal; nothing here defaults to "valid".

use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The largest clock leeway [`validate_claims`] applies; larger requests are capped to it.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// The latest NumericDate accepted (9999-12-31T23:59:59Z); beyond it a date is refused as invalid.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// What a token's claims must satisfy.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// The exact `iss` expected.
    pub issuer: String,
    /// The audience this service answers to; `aud` must be it or contain it.
    pub audience: String,
    /// The current time.
    pub now: OffsetDateTime,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`; capped at [`MAX_LEEWAY`].
    pub leeway: Duration,
    /// When set, `exp - iat` may not exceed it (refuses tokens minted with overlong lifetimes).
    pub max_lifetime: Option<Duration>,
}

/// Why a token's claims were refused. Carries no claim values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// `now` is at or past `exp + leeway`.
    #[error("token has expired")]
    Expired,
    /// `nbf` is later than `now + leeway`.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("token has the wrong issuer")]
    WrongIssuer,
    /// `aud` does not name this audience.
    #[error("token has the wrong audience")]
    WrongAudience,
    /// A claim is missing, mistyped or inconsistent; `claim` names which (a constant, not a value).
    #[error("token claim `{claim}` is missing or invalid")]
    InvalidClaims {
        /// The offending claim's name.
        claim: &'static str,
    },
}

impl ClaimError {
    /// A stable machine-readable code for this error.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::InvalidClaims { .. } => "invalid_claims",
        }
    }
}

/// Checks `iss`, `aud`, `exp`, `nbf`, `iat` (and the lifetime, when bounded) of a verified payload.
///
/// # Errors
/// The first [`ClaimError`] found, in this order: shape and types, issuer, audience, expiry, not
/// before, issued in the future, lifetime.
pub fn validate_claims(payload: &Value, rules: &ClaimRules) -> Result<(), ClaimError> {
    let claims = payload
        .as_object()
        .ok_or(ClaimError::InvalidClaims { claim: "payload" })?;

    let iss = match claims.get("iss") {
        Some(Value::String(s)) => s,
        _ => return Err(ClaimError::InvalidClaims { claim: "iss" }),
    };
    let audience_ok = match claims.get("aud") {
        Some(Value::String(s)) => *s == rules.audience,
        Some(Value::Array(items)) => {
            let mut found = false;
            for item in items {
                match item {
                    Value::String(s) => found |= *s == rules.audience,
                    _ => return Err(ClaimError::InvalidClaims { claim: "aud" }),
                }
            }
            found
        }
        _ => return Err(ClaimError::InvalidClaims { claim: "aud" }),
    };
    let exp = numeric_date(claims, "exp")?.ok_or(ClaimError::InvalidClaims { claim: "exp" })?;
    let iat = numeric_date(claims, "iat")?.ok_or(ClaimError::InvalidClaims { claim: "iat" })?;
    let nbf = numeric_date(claims, "nbf")?;
    if exp < iat {
        return Err(ClaimError::InvalidClaims { claim: "exp" });
    }

    if *iss != rules.issuer {
        return Err(ClaimError::WrongIssuer);
    }
    if !audience_ok {
        return Err(ClaimError::WrongAudience);
    }

    // SECURITY: whole seconds on both sides. With integer dates, `now < exp + leeway` holds exactly
    // when `floor(now) < exp + leeway`, and `date <= now + leeway` when `date - leeway <= floor(now)`.
    let now = rules.now.unix_timestamp();
    let leeway = i64::try_from(rules.leeway.min(MAX_LEEWAY).as_secs()).unwrap_or(0);
    if now >= exp.saturating_add(leeway) {
        return Err(ClaimError::Expired);
    }
    if let Some(nbf) = nbf
        && nbf.saturating_sub(leeway) > now
    {
        return Err(ClaimError::NotYetValid);
    }
    if iat.saturating_sub(leeway) > now {
        return Err(ClaimError::InvalidClaims { claim: "iat" });
    }
    if let Some(max) = rules.max_lifetime {
        let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
        if exp.saturating_sub(iat) > max {
            return Err(ClaimError::InvalidClaims { claim: "exp" });
        }
    }
    Ok(())
}

/// Reads an optional NumericDate claim, which must be a JSON integer in `0..=MAX_NUMERIC_DATE`.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, ClaimError> {
    match claims.get(claim) {
        None => Ok(None),
        // SECURITY: `as_i64` is `None` for floats (even `1.0`) and for integers beyond i64, so only
        // JSON integers pass; strings and other types fall to the error arm.
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (0..=MAX_NUMERIC_DATE).contains(&v) => Ok(Some(v)),
            _ => Err(ClaimError::InvalidClaims { claim }),
        },
        Some(_) => Err(ClaimError::InvalidClaims { claim }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: "https://palisade.test".to_owned(),
            audience: "palisade-api".to_owned(),
            now: OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
            leeway: Duration::from_secs(30),
            max_lifetime: Some(Duration::from_secs(3600)),
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://palisade.test",
            "aud": "palisade-api",
            "sub": "user-1",
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "exp": NOW + 900,
        })
    }

    fn with(key: &str, value: Value) -> Value {
        let mut c = claims();
        c[key] = value;
        c
    }

    fn without(key: &str) -> Value {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(key);
        c
    }

    /// Valid claims except that they expire at `exp` (issued a minute before).
    fn expiring(exp: i64) -> Value {
        let mut c = with("exp", json!(exp));
        c["iat"] = json!(exp - 60);
        c.as_object_mut().unwrap().remove("nbf");
        c
    }

    fn code(payload: &Value) -> &'static str {
        validate_claims(payload, &rules()).map_or_else(|e| e.code(), |()| "ok")
    }

    #[test]
    fn valid_claims_pass_and_audience_may_be_an_array() {
        assert_eq!(code(&claims()), "ok");
        assert_eq!(code(&with("aud", json!(["other", "palisade-api"]))), "ok");
        assert_eq!(code(&without("nbf")), "ok");
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        assert_eq!(
            code(&with("iss", json!("https://palisade.test/"))),
            "wrong_issuer"
        );
        assert_eq!(code(&with("aud", json!("Palisade-api"))), "wrong_audience");
        assert_eq!(code(&with("aud", json!(["other"]))), "wrong_audience");
        assert_eq!(code(&with("aud", json!([]))), "wrong_audience");
        assert_eq!(
            code(&with("aud", json!(["palisade-api", 1]))),
            "invalid_claims"
        );
        assert_eq!(code(&without("iss")), "invalid_claims");
        assert_eq!(code(&without("aud")), "invalid_claims");
        assert_eq!(code(&with("iss", json!(null))), "invalid_claims");
    }

    #[test]
    fn expiry_honours_the_leeway_to_the_second() {
        // now < exp + 30
        assert_eq!(code(&expiring(NOW - 29)), "ok");
        assert_eq!(code(&expiring(NOW - 30)), "expired");
        assert_eq!(code(&expiring(NOW - 3000)), "expired");
    }

    #[test]
    fn leeway_is_capped_at_sixty_seconds() {
        let mut r = rules();
        r.leeway = Duration::from_secs(3600);
        assert_eq!(
            validate_claims(&expiring(NOW - 60), &r),
            Err(ClaimError::Expired)
        );
        assert_eq!(validate_claims(&expiring(NOW - 59), &r), Ok(()));
    }

    #[test]
    fn not_before_and_issued_at_may_not_lie_in_the_future() {
        assert_eq!(code(&with("nbf", json!(NOW + 30))), "ok");
        assert_eq!(code(&with("nbf", json!(NOW + 31))), "not_yet_valid");
        assert_eq!(code(&with("iat", json!(NOW + 30))), "ok");
        assert_eq!(code(&with("iat", json!(NOW + 31))), "invalid_claims");
    }

    #[test]
    fn dates_must_be_integers_and_exp_iat_are_required() {
        assert_eq!(code(&without("exp")), "invalid_claims");
        assert_eq!(code(&without("iat")), "invalid_claims");
        for bad in [
            json!((NOW + 900) as f64),
            json!(1.5),
            json!("1700000900"),
            json!(true),
            json!(null),
            json!(-1),
            json!(u64::MAX),
            json!(MAX_NUMERIC_DATE + 1),
        ] {
            assert_eq!(code(&with("exp", bad.clone())), "invalid_claims", "{bad}");
            assert_eq!(code(&with("iat", bad.clone())), "invalid_claims", "{bad}");
            assert_eq!(code(&with("nbf", bad.clone())), "invalid_claims", "{bad}");
        }
    }

    #[test]
    fn lifetime_is_bounded_when_asked_and_exp_may_not_precede_iat() {
        let long = json!({"iss": "https://palisade.test", "aud": "palisade-api",
            "iat": NOW - 10, "exp": NOW + 7200});
        assert_eq!(code(&long), "invalid_claims");
        let mut r = rules();
        r.max_lifetime = None;
        assert_eq!(validate_claims(&long, &r), Ok(()));
        let backwards = with("iat", json!(NOW + 1000));
        assert_eq!(code(&backwards), "invalid_claims");
    }

    #[test]
    fn a_non_object_payload_is_invalid() {
        assert_eq!(code(&json!("x")), "invalid_claims");
        assert_eq!(code(&json!([claims()])), "invalid_claims");
    }
}
