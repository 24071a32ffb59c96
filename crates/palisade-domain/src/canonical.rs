//! RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value, whatever the key
//! order or whitespace it arrived with. ETags and the audit hash chain are computed over it, so two
//! servers (or a server and an auditor's script) agree on the bytes they hash.
//!
//! The canonicalization itself is `serde_json_canonicalizer` (an RFC 8785 implementation, including
//! its ECMAScript number formatting); this module only fixes the one way Palisade calls it.

use serde_json::Value;

/// A value that JCS cannot represent (in practice: none that `serde_json::Value` can hold, but the
/// library's signature is fallible and we never unwrap).
#[derive(Debug, thiserror::Error)]
#[error("value cannot be canonicalised")]
pub struct NotCanonicalizable;

/// The JCS bytes of `value`.
///
/// # Errors
/// [`NotCanonicalizable`] when the canonicalizer refuses the value.
pub fn jcs(value: &Value) -> Result<Vec<u8>, NotCanonicalizable> {
    serde_json_canonicalizer::to_vec(value).map_err(|_| NotCanonicalizable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_removed() {
        let v: Value = serde_json::from_str("{ \"b\" : 1,\n \"a\": [true, null, \"x\"] }").unwrap();
        assert_eq!(jcs(&v).unwrap(), br#"{"a":[true,null,"x"],"b":1}"#.to_vec());
    }

    #[test]
    fn numbers_use_the_shortest_ecmascript_form() {
        // RFC 8785 §3.2.2.3: 1.0 serialises as 1, 1e21 in exponent form.
        assert_eq!(jcs(&json!(1.0)).unwrap(), b"1".to_vec());
        assert_eq!(jcs(&json!(1e21)).unwrap(), b"1e+21".to_vec());
        assert_eq!(jcs(&json!(0.000001)).unwrap(), b"0.000001".to_vec());
    }

    #[test]
    fn non_ascii_is_kept_and_controls_are_escaped() {
        assert_eq!(
            jcs(&json!("é\u{1}")).unwrap(),
            "\"é\\u0001\"".as_bytes().to_vec()
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-zA-Z0-9 é\"\\\\]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Writes `v` as JSON text with every object's keys in reverse order and extra whitespace.
    fn reversed_text(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .rev()
                    .map(|(k, v)| {
                        format!(" {} :\n {} ", Value::String(k.clone()), reversed_text(v))
                    })
                    .collect();
                format!("{{ {} }}", parts.join(" ,\t"))
            }
            Value::Array(a) => {
                let parts: Vec<String> = a.iter().map(reversed_text).collect();
                format!("[ {} ]", parts.join(" , "))
            }
            other => other.to_string(),
        }
    }

    proptest! {
        #[test]
        fn stable_under_key_order_and_whitespace(v in arb_json()) {
            let canonical = jcs(&v).unwrap();
            // Key order and whitespace: the same value written differently.
            let text = reversed_text(&v);
            let reparsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&jcs(&reparsed).unwrap(), &canonical);
            // Canonical output is a fixed point.
            let again: Value = serde_json::from_slice(&canonical).unwrap();
            prop_assert_eq!(jcs(&again).unwrap(), canonical);
        }
    }
}
