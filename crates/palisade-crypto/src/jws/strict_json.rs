//! Strict JSON object parsing for JWS headers and payloads.
//!
//! `serde_json` silently keeps the last of two members with the same name, so `{"alg":"ES512",
//! "alg":"none"}` would mean different things to different parsers (RFC 7515 §5.2 allows a
//! recipient to reject such input, and we must, to avoid parser-differential attacks).
//!
//! Invariants:
//! - Input with a repeated member name at any depth is refused, comparing names after unescaping
//!   (`"a"` and `"\u0061"` are the same name).
//! - Only a single JSON object with nothing after it is accepted; invalid UTF-8 and lone surrogate
//!   escapes are refused by `serde_json`.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why strict parsing refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// Not well-formed JSON, or trailing data.
    Invalid,
    /// A member name appears twice in one object.
    DuplicateMember,
    /// Well-formed JSON, but not an object.
    NotAnObject,
}

/// Parses `bytes` as one JSON object whose objects, at every depth, have unique member names.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    // SECURITY: a first pass over the same bytes refuses duplicate names; the second builds the
    // value. Two passes keep this independent of serde_json's number representation features.
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = UniqueMembers {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if duplicate.get() {
        return Err(StrictJsonError::DuplicateMember);
    }
    checked.map_err(|_| StrictJsonError::Invalid)?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(StrictJsonError::NotAnObject),
        Err(_) => Err(StrictJsonError::Invalid),
    }
}

/// Walks any JSON value and fails on the first object that repeats a member name.
#[derive(Clone, Copy)]
struct UniqueMembers<'a> {
    duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for UniqueMembers<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueMembers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                self.duplicate.set(true);
                return Err(A::Error::custom("duplicate member name"));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_an_object_with_unique_members_at_every_depth() {
        let m = parse_object(br#"{"a":1,"b":{"a":[{"a":1},{"a":2}]},"c":1.5,"d":null}"#).unwrap();
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn refuses_duplicate_members_at_any_depth_and_after_unescaping() {
        for input in [
            &br#"{"alg":"ES512","alg":"none"}"#[..],
            br#"{"a":{"b":1,"b":2}}"#,
            br#"{"a":[{"x":1,"x":1}]}"#,
            br#"{"alg":"ES512","\u0061lg":"none"}"#,
        ] {
            assert_eq!(
                parse_object(input),
                Err(StrictJsonError::DuplicateMember),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn refuses_non_objects_trailing_data_and_bad_unicode() {
        assert_eq!(parse_object(b"[1]"), Err(StrictJsonError::NotAnObject));
        assert_eq!(parse_object(b"\"x\""), Err(StrictJsonError::NotAnObject));
        assert_eq!(parse_object(b"{} {}"), Err(StrictJsonError::Invalid));
        assert_eq!(parse_object(b"{\"a\":1}x"), Err(StrictJsonError::Invalid));
        assert_eq!(parse_object(b""), Err(StrictJsonError::Invalid));
        assert_eq!(
            parse_object(br#"{"a":"\ud800"}"#),
            Err(StrictJsonError::Invalid)
        );
        assert_eq!(
            parse_object(b"{\"a\":\"\xff\"}"),
            Err(StrictJsonError::Invalid)
        );
        assert_eq!(
            parse_object(b"\xef\xbb\xbf{}"),
            Err(StrictJsonError::Invalid)
        );
    }
}
