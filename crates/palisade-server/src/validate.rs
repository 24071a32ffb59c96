//! Validation of user-supplied values that are not worth a newtype yet (e-mail, phone, display names).
//! Each returns a stable error code; messages never echo the value.

/// Why a value was refused: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Stable code, e.g. `invalid_email`.
    pub code: &'static str,
    /// Safe to show.
    pub message: &'static str,
}

/// Lowercases and checks an e-mail address (a practical subset of RFC 5321: one `@`, a dotted domain,
/// no whitespace or control characters, at most 254 characters).
///
/// # Errors
/// [`Invalid`] with code `invalid_email`.
pub fn email(s: &str) -> Result<String, Invalid> {
    const BAD: Invalid = Invalid {
        code: "invalid_email",
        message: "must be an e-mail address",
    };
    let s = s.trim();
    if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(BAD);
    }
    let (local, domain) = s.rsplit_once('@').ok_or(BAD)?;
    if local.is_empty() || local.len() > 64 || local.contains('@') || domain.is_empty() {
        return Err(BAD);
    }
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if !labels_ok || (!domain.contains('.') && domain != "localhost") {
        return Err(BAD);
    }
    Ok(s.to_lowercase())
}

/// Checks an E.164 phone number: `+`, then 7 to 15 digits, the first not zero.
///
/// # Errors
/// [`Invalid`] with code `invalid_phone`.
pub fn phone(s: &str) -> Result<String, Invalid> {
    const BAD: Invalid = Invalid {
        code: "invalid_phone",
        message: "must be an E.164 number such as +14155550123",
    };
    let digits = s.strip_prefix('+').ok_or(BAD)?;
    if !(7..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(BAD);
    }
    Ok(s.to_owned())
}

/// Checks a display name: 1–200 characters after trimming, no control characters.
///
/// # Errors
/// [`Invalid`] with code `invalid_name`.
pub fn display_name(s: &str) -> Result<String, Invalid> {
    const BAD: Invalid = Invalid {
        code: "invalid_name",
        message: "must be 1 to 200 characters without control characters",
    };
    let t = s.trim();
    // SECURITY: bidirectional overrides and zero-width characters make a name render as something
    // else (spoofing in admin UIs and audit views), so they are refused with the control characters.
    let deceptive = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    if t.is_empty() || t.chars().count() > 200 || t.chars().any(deceptive) {
        return Err(BAD);
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email("Ada@Example.COM").unwrap(), "ada@example.com");
        assert!(email("owner@localhost").is_ok());
        for bad in [
            "",
            "ada",
            "@x.com",
            "ada@",
            "ada@x",
            "a b@x.com",
            "ada@-x.com",
            "ada@x..com",
            "a@b@c.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@x.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn phones() {
        assert!(phone("+14155550123").is_ok());
        for bad in [
            "14155550123",
            "+0123456789",
            "+1 415 555",
            "+12",
            "+1234567890123456",
            "+1415555012a",
        ] {
            assert!(phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(display_name("  Acme  ").unwrap(), "Acme");
        assert!(display_name("").is_err());
        assert!(display_name("a\u{0}b").is_err());
        assert!(display_name("evil\u{202E}gnp.exe").is_err());
        assert!(display_name("zero\u{200B}width").is_err());
        assert!(display_name(&"x".repeat(201)).is_err());
    }
}
