//! MFA recovery codes, shown once when TOTP is enabled and usable once each instead of a TOTP code.
//!
//! Format: `xxxxx-xxxxx`, ten symbols from a 32-symbol alphabet of lowercase letters and digits
//! without the easily confused `0`, `o`, `1` and `l` (and no uppercase, so `O` and `I` can't occur).
//!
//! Invariants:
//! - Each code carries exactly 50 bits (10 symbols × 5 bits) from the OS CSPRNG; because 32 divides
//!   256, masking a random byte to 5 bits picks every symbol with equal probability.
//! - Codes are `SecretString`s; only their keyed hash (see [`crate::keyed_hash`]) of the normalised
//!   form ([`normalize_recovery_code`]) is stored.

use secrecy::SecretString;

/// The 32 symbols codes are drawn from.
pub const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// Symbols per code (excluding the hyphen).
pub const RECOVERY_CODE_SYMBOLS: usize = 10;

/// Entropy of one code, in bits.
pub const RECOVERY_CODE_BITS: usize = RECOVERY_CODE_SYMBOLS * 5;

// SECURITY: checked at compile time; a change to the format can't drop a code below 50 bits.
const _: () = assert!(RECOVERY_CODE_BITS >= 50 && RECOVERY_ALPHABET.len() == 32);

/// `n` fresh recovery codes, each `xxxxx-xxxxx`.
#[must_use]
pub fn recovery_codes(n: usize) -> Vec<SecretString> {
    (0..n).map(|_| recovery_code()).collect()
}

fn recovery_code() -> SecretString {
    let random: [u8; RECOVERY_CODE_SYMBOLS] = crate::os_random_bytes();
    let mut code = String::with_capacity(RECOVERY_CODE_SYMBOLS + 1);
    for (i, byte) in random.iter().enumerate() {
        if i == RECOVERY_CODE_SYMBOLS / 2 {
            code.push('-');
        }
        // SECURITY: `byte & 31` is uniform over 0..32 and always a valid index.
        if let Some(symbol) = RECOVERY_ALPHABET.get(usize::from(byte & 31)) {
            code.push(char::from(*symbol));
        }
    }
    SecretString::from(code)
}

/// Normalises what a user typed into the canonical `xxxxx-xxxxx` form, or `None` if it can't be a
/// recovery code. Case, surrounding whitespace, and spaces or hyphens between symbols are ignored.
#[must_use]
pub fn normalize_recovery_code(input: &str) -> Option<SecretString> {
    let mut code = String::with_capacity(RECOVERY_CODE_SYMBOLS + 1);
    let mut count = 0;
    for c in input.trim().chars() {
        if c == '-' || c == ' ' {
            continue;
        }
        let c = c.to_ascii_lowercase();
        let symbol = u8::try_from(c).ok()?;
        if !RECOVERY_ALPHABET.contains(&symbol) || count == RECOVERY_CODE_SYMBOLS {
            return None;
        }
        if count == RECOVERY_CODE_SYMBOLS / 2 {
            code.push('-');
        }
        code.push(c);
        count += 1;
    }
    (count == RECOVERY_CODE_SYMBOLS).then(|| SecretString::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;
    use std::collections::HashSet;

    #[test]
    fn the_alphabet_has_32_unambiguous_distinct_symbols() {
        let set: HashSet<&u8> = RECOVERY_ALPHABET.iter().collect();
        assert_eq!(set.len(), 32);
        for confusable in b"0O1lI" {
            assert!(!RECOVERY_ALPHABET.contains(confusable));
        }
        assert!(!RECOVERY_ALPHABET.contains(&b'o'));
    }

    #[test]
    fn codes_have_the_documented_shape_and_differ() {
        let codes = recovery_codes(10);
        assert_eq!(codes.len(), 10);
        let mut seen = HashSet::new();
        for c in &codes {
            let c = c.expose_secret();
            assert_eq!(c.len(), 11);
            let (a, b) = c.split_once('-').unwrap();
            assert_eq!((a.len(), b.len()), (5, 5));
            assert!(
                a.bytes()
                    .chain(b.bytes())
                    .all(|s| RECOVERY_ALPHABET.contains(&s))
            );
            assert!(seen.insert(c.to_owned()));
        }
        assert!(recovery_codes(0).is_empty());
    }

    #[test]
    fn every_symbol_appears_over_many_codes() {
        let symbols: HashSet<u8> = recovery_codes(200)
            .iter()
            .flat_map(|c| c.expose_secret().bytes().collect::<Vec<_>>())
            .filter(|b| *b != b'-')
            .collect();
        assert_eq!(symbols.len(), 32);
    }

    #[test]
    fn normalisation_accepts_what_users_type_and_refuses_the_rest() {
        let code = recovery_codes(1).remove(0);
        let code = code.expose_secret();
        let n = |s: &str| normalize_recovery_code(s).map(|c| c.expose_secret().to_owned());
        assert_eq!(n(code).as_deref(), Some(code));
        assert_eq!(n(&code.to_ascii_uppercase()).as_deref(), Some(code));
        assert_eq!(n(&code.replace('-', "")).as_deref(), Some(code));
        assert_eq!(
            n(&format!("  {} ", code.replace('-', " "))).as_deref(),
            Some(code)
        );
        assert_eq!(n("abcde-fghij").as_deref(), Some("abcde-fghij"));
        assert_eq!(n("abcde-fghi"), None);
        assert_eq!(n("abcde-fghijk"), None);
        assert_eq!(n("abcd0-fghij"), None);
        assert_eq!(n("abcdl-fghij"), None);
        assert_eq!(n("abcdé-fghij"), None);
        assert_eq!(n(""), None);
    }
}
