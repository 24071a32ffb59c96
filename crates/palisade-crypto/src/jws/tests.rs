//! Unit tests of ES512 signing and strict verification. Cross-checks against RustCrypto's `p521` live
//! in `tests/es512_interop.rs`.

use super::*;
use serde_json::json;

fn key() -> Es512SigningKey {
    Es512SigningKey::generate().unwrap()
}

fn typ(t: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("typ".to_owned(), Value::from(t));
    m
}

/// Signs arbitrary header and payload bytes with `key`, bypassing every check of `sign`, so the
/// verifier's refusals can be tested on correctly signed but hostile tokens.
fn raw_token(key: &Es512SigningKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let sig = key
        .pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    format!("{input}.{}", B64URL.encode(sig.as_ref()))
}

fn header_with(key: &Es512SigningKey, extra: &str) -> Vec<u8> {
    format!(r#"{{"alg":"ES512","kid":"{}"{extra}}}"#, key.kid()).into_bytes()
}

fn verify_with(key: &Es512SigningKey, token: &str) -> Result<Verified, JwsError> {
    verify(token, |kid| (kid == key.kid()).then(|| key.verifying_key()))
}

fn code(result: Result<Verified, JwsError>) -> &'static str {
    result.map_or_else(|e| e.code(), |_| "ok")
}

#[test]
fn a_signed_token_verifies_and_carries_alg_kid_and_typ() {
    let k = key();
    let claims = json!({"sub": "u1", "n": 1});
    let token = k.sign(&typ("at+jwt"), &claims).unwrap();
    let v = verify_with(&k, &token).unwrap();
    assert_eq!(v.payload, claims);
    assert_eq!(v.header.get("alg"), Some(&json!("ES512")));
    assert_eq!(v.kid(), k.kid());
    assert_eq!(v.typ(), Some("at+jwt"));
    assert_eq!(v.header.len(), 3);
    let sig = B64URL.decode(token.rsplit('.').next().unwrap()).unwrap();
    assert_eq!(sig.len(), 132);
}

#[test]
fn sign_never_lets_the_extra_header_set_alg_or_kid() {
    let k = key();
    let mut h = Map::new();
    h.insert("alg".to_owned(), json!("none"));
    assert_eq!(k.sign(&h, &json!({})), Err(JwsError::ReservedHeader));
    let mut h = Map::new();
    h.insert("kid".to_owned(), json!("other"));
    assert_eq!(k.sign(&h, &json!({})), Err(JwsError::ReservedHeader));
}

#[test]
fn sign_refuses_non_object_claims_and_oversized_tokens() {
    let k = key();
    assert_eq!(k.sign(&Map::new(), &json!([1])), Err(JwsError::NotAnObject));
    assert_eq!(k.sign(&Map::new(), &json!("x")), Err(JwsError::NotAnObject));
    let big = json!({"pad": "a".repeat(MAX_TOKEN_BYTES)});
    assert_eq!(k.sign(&Map::new(), &big), Err(JwsError::TooLarge));
}

#[test]
fn public_jwk_has_exactly_the_documented_members_and_kid_is_the_thumbprint() {
    let k = key();
    let jwk = k.public_jwk();
    let obj = jwk.as_object().unwrap();
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-521");
    assert_eq!(jwk["alg"], "ES512");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["x"].as_str().unwrap().len(), 88);
    assert_eq!(jwk["y"].as_str().unwrap().len(), 88);
    assert_eq!(jwk["kid"], k.kid());
    assert_eq!(k.kid(), k.verifying_key().thumbprint());
    let parsed = Es512VerifyingKey::from_jwk(&jwk).unwrap();
    assert_eq!(parsed.kid(), k.kid());
    assert_eq!(parsed.to_jwk(), jwk);
}

#[test]
fn a_key_survives_pkcs8_and_keeps_its_public_half() {
    let k = key();
    let der = k.to_pkcs8();
    let back = Es512SigningKey::from_pkcs8(der.expose_secret(), "stored-kid".to_owned()).unwrap();
    assert_eq!(back.kid(), "stored-kid");
    assert_eq!(back.public_jwk()["x"], k.public_jwk()["x"]);
    assert_eq!(back.public_jwk()["y"], k.public_jwk()["y"]);
    let token = back.sign(&Map::new(), &json!({"a": 1})).unwrap();
    let original = k.verifying_key().clone();
    assert!(verify(&token, |_| Some(&original)).is_ok());
}

#[test]
fn from_pkcs8_refuses_garbage_other_curves_and_bad_kids() {
    let der = key().to_pkcs8();
    assert_eq!(
        Es512SigningKey::from_pkcs8(b"not a key", "k".to_owned()).unwrap_err(),
        JwsError::InvalidKey
    );
    assert_eq!(
        Es512SigningKey::from_pkcs8(der.expose_secret(), String::new()).unwrap_err(),
        JwsError::InvalidKey
    );
    assert_eq!(
        Es512SigningKey::from_pkcs8(der.expose_secret(), "k".repeat(MAX_KID_BYTES + 1))
            .unwrap_err(),
        JwsError::InvalidKey
    );
    let p256 = EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .unwrap()
        .to_pkcs8v1()
        .unwrap();
    assert_eq!(
        Es512SigningKey::from_pkcs8(p256.as_ref(), "k".to_owned()).unwrap_err(),
        JwsError::InvalidKey
    );
}

#[test]
fn signing_key_debug_output_shows_no_key_material() {
    let k = key();
    let dbg = format!("{k:?}");
    assert!(dbg.contains(k.kid()));
    let x = k.public_jwk()["x"].as_str().unwrap().to_owned();
    assert!(!dbg.contains(&x));
    assert!(!dbg.contains(&B64URL.encode(k.to_pkcs8().expose_secret())));
}

#[test]
fn from_jwk_is_strict_about_every_member() {
    let good = key().public_jwk();
    assert!(Es512VerifyingKey::from_jwk(&good).is_ok());
    let mut no_kid = good.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let parsed = Es512VerifyingKey::from_jwk(&no_kid).unwrap();
    assert_eq!(parsed.kid(), parsed.thumbprint());

    let x = good["x"].as_str().unwrap();
    let x_bytes = B64URL.decode(x).unwrap();
    let set = |name: &str, value: Value| {
        let mut j = good.clone();
        j[name] = value;
        j
    };
    let mut y_plus_one = B64URL.decode(good["y"].as_str().unwrap()).unwrap();
    let last = y_plus_one.last_mut().unwrap();
    *last ^= 1;
    let cases = [
        set("kty", json!("RSA")),
        set("kty", json!("ec")),
        set("crv", json!("P-384")),
        set("crv", json!("p-521")),
        set("crv", json!("P-521 ")),
        set("x", json!(B64URL.encode(&x_bytes[1..]))),
        set("x", json!(B64URL.encode([&x_bytes[..], &[0]].concat()))),
        set("x", json!(format!("{x}=="))),
        set("x", json!(x.replace('-', "+").replace('_', "/") + "+")),
        set("x", json!(1)),
        set("y", json!(B64URL.encode(&y_plus_one))),
        set("y", json!(B64URL.encode([0xff_u8; 66]))),
        set("d", json!("AAAA")),
        set("alg", json!("ES256")),
        set("use", json!("enc")),
        set("kid", json!(7)),
        set("kid", json!("")),
        json!("not an object"),
    ];
    for (i, jwk) in cases.iter().enumerate() {
        assert_eq!(
            Es512VerifyingKey::from_jwk(jwk).unwrap_err(),
            JwsError::InvalidKey,
            "case {i}"
        );
    }
    let mut missing_y = good.clone();
    missing_y.as_object_mut().unwrap().remove("y");
    assert!(Es512VerifyingKey::from_jwk(&missing_y).is_err());
}

#[test]
fn verify_refuses_oversized_tokens_and_wrong_segment_counts() {
    let k = key();
    let token = k.sign(&Map::new(), &json!({"a": 1})).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        code(verify_with(&k, &"a".repeat(MAX_TOKEN_BYTES + 1))),
        "too_large"
    );
    for bad in [
        String::new(),
        parts[..2].join("."),
        format!("{token}."),
        format!("{token}.{}", parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}.", parts[0], parts[1]),
        "..".to_owned(),
    ] {
        assert_eq!(code(verify_with(&k, &bad)), "malformed", "{bad}");
    }
}

#[test]
fn verify_refuses_anything_but_strict_base64url() {
    let k = key();
    let token = k.sign(&Map::new(), &json!({"a": 1})).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    for bad in [
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}=.{s}"),
        format!("{h}.{p}.{s}=="),
        format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/") + "+/"),
        format!(" {h}.{p}.{s}"),
        format!("{h}.{p}.{s}\n"),
        format!("{h}.{p}%.{s}"),
        format!("{h}.{p}.{}", &s[..s.len() - 3]),
    ] {
        assert_eq!(code(verify_with(&k, &bad)), "invalid_encoding", "{bad}");
    }
}

#[test]
fn verify_refuses_non_canonical_trailing_bits() {
    let k = key();
    // A segment of 3n+1 bytes ends in a character that carries 4 unused bits, which must be zero.
    let header = header_with(&k, "");
    let spaces = (4 - header.len() % 3) % 3;
    let header = [header, vec![b' '; spaces]].concat();
    assert_eq!(header.len() % 3, 1);
    let token = raw_token(&k, &header, br#"{"a":1}"#);
    assert_eq!(code(verify_with(&k, &token)), "ok");
    let (h, rest) = token.split_once('.').unwrap();
    let mut h = h.to_owned();
    let last = h.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    h.push(alphabet.as_bytes()[idx | 1] as char);
    assert_eq!(
        code(verify_with(&k, &format!("{h}.{rest}"))),
        "invalid_encoding"
    );
}

#[test]
fn verify_refuses_duplicate_members_in_header_and_payload() {
    let k = key();
    let t = raw_token(&k, &header_with(&k, r#","alg":"ES512""#), b"{}");
    assert_eq!(code(verify_with(&k, &t)), "duplicate_member");
    let t = raw_token(&k, &header_with(&k, r#","typ":"a","typ":"b""#), b"{}");
    assert_eq!(code(verify_with(&k, &t)), "duplicate_member");
    let t = raw_token(&k, &header_with(&k, ""), br#"{"sub":"a","sub":"b"}"#);
    assert_eq!(code(verify_with(&k, &t)), "duplicate_member");
    let t = raw_token(&k, &header_with(&k, ""), br#"{"x":{"y":1,"y":2}}"#);
    assert_eq!(code(verify_with(&k, &t)), "duplicate_member");
}

#[test]
fn verify_accepts_only_alg_es512_exactly() {
    let k = key();
    for alg in [
        r#""none""#,
        r#""HS256""#,
        r#""HS512""#,
        r#""ES256""#,
        r#""ES384""#,
        r#""RS512""#,
        r#""es512""#,
        r#""ES512 ""#,
        r#"["ES512"]"#,
        "null",
    ] {
        let header = format!(r#"{{"alg":{alg},"kid":"{}"}}"#, k.kid());
        let t = raw_token(&k, header.as_bytes(), b"{}");
        assert_eq!(code(verify_with(&k, &t)), "unsupported_alg", "{alg}");
    }
    let header = format!(r#"{{"kid":"{}"}}"#, k.kid());
    let t = raw_token(&k, header.as_bytes(), b"{}");
    assert_eq!(code(verify_with(&k, &t)), "unsupported_alg");
}

#[test]
fn an_hmac_token_keyed_with_the_public_key_is_refused() {
    // The classic algorithm confusion: HS256 with the public key as the HMAC secret.
    let k = key();
    let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, k.kid());
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(b"{}"));
    let secret = serde_json::to_vec(&k.public_jwk()).unwrap();
    let hkey = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    let tag = aws_lc_rs::hmac::sign(&hkey, input.as_bytes());
    let t = format!("{input}.{}", B64URL.encode(tag.as_ref()));
    assert_eq!(code(verify_with(&k, &t)), "unsupported_alg");
}

#[test]
fn verify_requires_a_string_kid() {
    let k = key();
    for header in [
        r#"{"alg":"ES512"}"#.to_owned(),
        r#"{"alg":"ES512","kid":1}"#.to_owned(),
        r#"{"alg":"ES512","kid":""}"#.to_owned(),
        format!(
            r#"{{"alg":"ES512","kid":"{}"}}"#,
            "k".repeat(MAX_KID_BYTES + 1)
        ),
    ] {
        let t = raw_token(&k, header.as_bytes(), b"{}");
        assert_eq!(code(verify(&t, |_| Some(k.verifying_key()))), "invalid_kid");
    }
}

#[test]
fn verify_never_trusts_keys_or_extensions_named_in_the_header() {
    let k = key();
    let jwk = k.public_jwk().to_string();
    for (name, value) in [
        ("jwk", jwk.as_str()),
        ("jku", r#""https://attacker.example/jwks""#),
        ("x5u", r#""https://attacker.example/cert""#),
        ("x5c", r#"["MIIB"]"#),
        ("x5t", r#""abc""#),
        ("x5t#S256", r#""abc""#),
        ("crit", r#"["exp"]"#),
        ("b64", "false"),
        ("zip", r#""DEF""#),
    ] {
        let t = raw_token(
            &k,
            &header_with(&k, &format!(r#","{name}":{value}"#)),
            b"{}",
        );
        assert_eq!(
            verify_with(&k, &t).unwrap_err(),
            JwsError::ForbiddenHeader {
                name: FORBIDDEN_HEADER_PARAMETERS
                    .iter()
                    .find(|n| **n == name)
                    .unwrap()
            },
            "{name}"
        );
    }
}

#[test]
fn verify_requires_a_raw_132_byte_signature() {
    let k = key();
    let token = k.sign(&Map::new(), &json!({"a": 1})).unwrap();
    let (input, s) = token.rsplit_once('.').unwrap();
    let sig = B64URL.decode(s).unwrap();
    let with_sig = |bytes: &[u8]| format!("{input}.{}", B64URL.encode(bytes));
    assert_eq!(
        code(verify_with(&k, &with_sig(&sig[..131]))),
        "invalid_signature_length"
    );
    assert_eq!(
        code(verify_with(&k, &with_sig(&[&sig[..], &[0]].concat()))),
        "invalid_signature_length"
    );
    assert_eq!(
        code(verify_with(&k, &with_sig(&[&[0][..], &sig[..]].concat()))),
        "invalid_signature_length"
    );
    assert_eq!(
        code(verify_with(&k, &with_sig(&[0; 64]))),
        "invalid_signature_length"
    );
    // A DER-shaped blob (SEQUENCE of two INTEGERs) is never accepted, whatever its length.
    let mut der = vec![0x30, 0x81, 0x88, 0x02, 0x42];
    der.extend_from_slice(&sig[..66]);
    der.extend_from_slice(&[0x02, 0x42]);
    der.extend_from_slice(&sig[66..]);
    assert_eq!(
        code(verify_with(&k, &with_sig(&der))),
        "invalid_signature_length"
    );
}

#[test]
fn verify_refuses_tampering_wrong_keys_and_unknown_kids() {
    let k = key();
    let other = key();
    let token = k.sign(&Map::new(), &json!({"role": "member"})).unwrap();
    let (input, s) = token.rsplit_once('.').unwrap();
    let mut sig = B64URL.decode(s).unwrap();
    sig[10] ^= 0x01;
    let flipped = format!("{input}.{}", B64URL.encode(&sig));
    assert_eq!(code(verify_with(&k, &flipped)), "bad_signature");
    assert_eq!(
        code(verify_with(
            &k,
            &format!("{input}.{}", B64URL.encode([0u8; 132]))
        )),
        "bad_signature"
    );

    let (h, rest) = token.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let forged = format!("{h}.{}.{s}", B64URL.encode(br#"{"role":"admin"}"#));
    assert_eq!(code(verify_with(&k, &forged)), "bad_signature");

    assert_eq!(
        code(verify(&token, |_| Some(other.verifying_key()))),
        "bad_signature"
    );
    assert_eq!(
        code(verify(&token, |_| None::<&Es512VerifyingKey>)),
        "unknown_key"
    );
}

#[test]
fn verify_refuses_headers_and_payloads_that_are_not_json_objects() {
    let k = key();
    let t = raw_token(&k, &header_with(&k, ""), b"[1,2]");
    assert_eq!(code(verify_with(&k, &t)), "not_an_object");
    let t = raw_token(&k, &header_with(&k, ""), b"\"sub\"");
    assert_eq!(code(verify_with(&k, &t)), "not_an_object");
    let t = raw_token(&k, &header_with(&k, ""), b"{\"a\":1");
    assert_eq!(code(verify_with(&k, &t)), "invalid_json");
    let t = raw_token(&k, br#"["ES512"]"#, b"{}");
    assert_eq!(code(verify_with(&k, &t)), "not_an_object");
    let t = raw_token(&k, b"not json", b"{}");
    assert_eq!(code(verify_with(&k, &t)), "invalid_json");
}

#[test]
fn the_lookup_receives_the_header_kid() {
    let k = key();
    let token = k.sign(&Map::new(), &json!({})).unwrap();
    let mut seen = None;
    verify(&token, |kid| {
        seen = Some(kid.to_owned());
        Some(k.verifying_key().clone())
    })
    .unwrap();
    assert_eq!(seen.as_deref(), Some(k.kid()));
}

#[test]
fn error_messages_never_echo_token_contents() {
    let k =
        Es512SigningKey::from_pkcs8(key().to_pkcs8().expose_secret(), "kid-MARKER-42".to_owned())
            .unwrap();
    let cases = [
        raw_token(
            &k,
            br#"{"alg":"none","kid":"kid-MARKER-42"}"#,
            br#"{"sub":"MARKER"}"#,
        ),
        raw_token(
            &k,
            br#"{"alg":"ES512","kid":"kid-MARKER-42","jku":"MARKER"}"#,
            b"{}",
        ),
        raw_token(
            &k,
            br#"{"alg":"ES512","kid":"kid-MARKER-42"}"#,
            br#"{"MARKER":1,"MARKER":2}"#,
        ),
        k.sign(&Map::new(), &json!({"sub": "MARKER"})).unwrap() + "x",
    ];
    for t in &cases {
        let err = verify(t, |_| None::<&Es512VerifyingKey>)
            .or_else(|_| verify(t, |_| Some(k.verifying_key())))
            .unwrap_err();
        assert!(!err.to_string().contains("MARKER"), "{err}");
        assert!(!format!("{err:?}").contains("MARKER"), "{err:?}");
    }
}

#[test]
fn every_error_has_a_distinct_stable_code() {
    let all = [
        JwsError::TooLarge,
        JwsError::Malformed,
        JwsError::InvalidEncoding,
        JwsError::InvalidJson,
        JwsError::DuplicateMember,
        JwsError::NotAnObject,
        JwsError::UnsupportedAlgorithm,
        JwsError::InvalidKid,
        JwsError::ForbiddenHeader { name: "jwk" },
        JwsError::InvalidSignatureLength,
        JwsError::UnknownKey,
        JwsError::BadSignature,
        JwsError::ReservedHeader,
        JwsError::InvalidKey,
        JwsError::Crypto,
    ];
    let mut codes: Vec<&str> = all.iter().map(JwsError::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
}

/// RFC 7520 §4.3: an ES512 signature by the "bilbo.baggins@hobbiton.example" P-521 key over a text
/// payload. The signature verifies (proving interoperability with the RFC's implementation); the
/// token is then refused only because its payload is plain text, which is parsed after the signature.
#[test]
fn the_rfc7520_es512_example_signature_verifies() {
    let jwk = json!({
        "kty": "EC",
        "kid": "bilbo.baggins@hobbiton.example",
        "use": "sig",
        "crv": "P-521",
        "x": "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
        "y": "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"
    });
    let token = concat!(
        "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9",
        ".",
        "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0",
        "aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91",
        "IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4",
        ".",
        "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu",
        "_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2",
    );
    let key = Es512VerifyingKey::from_jwk(&jwk).unwrap();
    assert_eq!(key.kid(), "bilbo.baggins@hobbiton.example");
    let lookup = |kid: &str| (kid == "bilbo.baggins@hobbiton.example").then_some(&key);
    assert_eq!(verify(token, lookup), Err(JwsError::InvalidJson));
    let tampered = token.replace("AE_R_YZ", "AE_R_YY");
    assert_eq!(verify(&tampered, lookup), Err(JwsError::BadSignature));
}

#[test]
fn keys_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Es512SigningKey>();
    shareable::<Es512VerifyingKey>();
    shareable::<crate::KeyedHasher>();
    shareable::<crate::TotpSecret>();
}
