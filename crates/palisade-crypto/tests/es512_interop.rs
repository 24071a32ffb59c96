//! Cross-checks our ES512 (aws-lc-rs) against an independent implementation, RustCrypto's `p521` +
//! `ecdsa`: tokens we sign verify there, tokens signed there verify here, and PKCS#8 keys move both
//! ways with the same public point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking"
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ecdsa::signature::{Signer as _, Verifier as _};
use p521::ecdsa::{Signature, SigningKey, VerifyingKey};
use p521::elliptic_curve::rand_core::OsRng;
use p521::elliptic_curve::sec1::ToEncodedPoint as _;
use p521::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use palisade_crypto::jws::{self, Es512SigningKey, Es512VerifyingKey, JwsError};
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value, json};

/// The private scalar of the RFC 7520 §3.2 P-521 key.
const RFC7520_D: &str =
    "AAhRON2r9cqXX1hg-RoI6R1tX5p2rUAYdmpHZoC1XNM56KtscrX6zbKipQrCW9CGZH3T4ubpnoTKLDYJ_fF3_rJt";
const RFC7520_X: &str =
    "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt";
const RFC7520_Y: &str =
    "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The p521 verifying key for one of our public JWKs, rebuilt from its `x` and `y`.
fn p521_key_from_jwk(jwk: &Value) -> VerifyingKey {
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let point = [&[0x04][..], &x, &y].concat();
    VerifyingKey::from_sec1_bytes(&point).unwrap()
}

/// Our verifying key for a p521 key, as a JWK built from its encoded point.
fn jwk_from_p521(key: &VerifyingKey, kid: &str) -> Value {
    let point = key.to_encoded_point(false);
    json!({
        "kty": "EC",
        "crv": "P-521",
        "x": b64(point.x().unwrap()),
        "y": b64(point.y().unwrap()),
        "kid": kid,
    })
}

/// Signs a compact JWS with p521 (raw `r || s`, RFC 7518 §3.4).
fn p521_sign(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(serde_json::to_vec(header).unwrap()),
        b64(serde_json::to_vec(claims).unwrap())
    );
    let signature: Signature = key.sign(input.as_bytes());
    let raw = signature.to_bytes();
    assert_eq!(raw.len(), 132);
    format!("{input}.{}", b64(raw))
}

#[test]
fn a_token_signed_by_us_verifies_with_p521() {
    let ours = Es512SigningKey::generate().unwrap();
    let claims = json!({"iss": "https://palisade.test", "sub": "u1", "exp": 2_000_000_000});
    for _ in 0..8 {
        let token = ours.sign(&Map::new(), &claims).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(sig.len(), 132);
        let signature = Signature::from_slice(&sig).unwrap();
        let theirs = p521_key_from_jwk(&ours.public_jwk());
        theirs.verify(input.as_bytes(), &signature).unwrap();
        // And p521 refuses it once the signed bytes change.
        let mut altered = input.as_bytes().to_vec();
        altered[0] ^= 1;
        assert!(theirs.verify(&altered, &signature).is_err());
    }
}

#[test]
fn a_token_signed_by_p521_verifies_with_us() {
    let theirs = SigningKey::random(&mut OsRng);
    let jwk = jwk_from_p521(&VerifyingKey::from(&theirs), "client-key-1");
    let key = Es512VerifyingKey::from_jwk(&jwk).unwrap();
    for _ in 0..8 {
        let claims = json!({"iss": "client", "sub": "client", "jti": b64(rand_bytes())});
        let token = p521_sign(
            &theirs,
            &json!({"alg": "ES512", "kid": "client-key-1", "typ": "JWT"}),
            &claims,
        );
        let verified = jws::verify(&token, |kid| (kid == "client-key-1").then_some(&key)).unwrap();
        assert_eq!(verified.payload, claims);
        assert_eq!(verified.typ(), Some("JWT"));
    }
}

#[test]
fn a_der_signature_from_p521_is_refused() {
    let theirs = SigningKey::random(&mut OsRng);
    let key =
        Es512VerifyingKey::from_jwk(&jwk_from_p521(&VerifyingKey::from(&theirs), "k")).unwrap();
    let token = p521_sign(&theirs, &json!({"alg": "ES512", "kid": "k"}), &json!({}));
    let (input, raw) = token.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(raw).unwrap()).unwrap();
    let der = signature.to_der();
    assert_ne!(der.as_bytes().len(), 132);
    let der_token = format!("{input}.{}", b64(der.as_bytes()));
    assert_eq!(
        jws::verify(&der_token, |_| Some(&key)),
        Err(JwsError::InvalidSignatureLength)
    );
    assert!(jws::verify(&token, |_| Some(&key)).is_ok());
}

#[test]
fn a_p521_signature_by_another_key_is_refused() {
    let theirs = SigningKey::random(&mut OsRng);
    let impostor = SigningKey::random(&mut OsRng);
    let key =
        Es512VerifyingKey::from_jwk(&jwk_from_p521(&VerifyingKey::from(&theirs), "k")).unwrap();
    let token = p521_sign(&impostor, &json!({"alg": "ES512", "kid": "k"}), &json!({}));
    assert_eq!(
        jws::verify(&token, |_| Some(&key)),
        Err(JwsError::BadSignature)
    );
}

#[test]
fn the_rfc7520_key_loads_from_p521_pkcs8_with_the_rfc_public_point() {
    let d = URL_SAFE_NO_PAD.decode(RFC7520_D).unwrap();
    let secret = p521::SecretKey::from_slice(&d).unwrap();
    let der = secret.to_pkcs8_der().unwrap();
    let ours = Es512SigningKey::from_pkcs8(der.as_bytes(), "bilbo".to_owned()).unwrap();
    let jwk = ours.public_jwk();
    assert_eq!(jwk["x"], RFC7520_X);
    assert_eq!(jwk["y"], RFC7520_Y);
    // Thumbprint computed independently with Python's hashlib (see src/jwk.rs).
    assert_eq!(
        ours.verifying_key().thumbprint(),
        "dHri3SADZkrush5HU_50AoRhcKFryN-PI6jPBtPL55M"
    );
    // A token we sign with the RFC key verifies under p521's view of the same key.
    let token = ours.sign(&Map::new(), &json!({"a": 1})).unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    let theirs = VerifyingKey::from(&SigningKey::from(ecdsa::SigningKey::from(secret.clone())));
    theirs.verify(input.as_bytes(), &signature).unwrap();
}

#[test]
fn our_pkcs8_export_loads_in_p521_with_the_same_public_point() {
    let ours = Es512SigningKey::generate().unwrap();
    let der = ours.to_pkcs8();
    let secret = p521::SecretKey::from_pkcs8_der(der.expose_secret()).unwrap();
    let point = secret.public_key().to_encoded_point(false);
    assert_eq!(b64(point.x().unwrap()), ours.public_jwk()["x"]);
    assert_eq!(b64(point.y().unwrap()), ours.public_jwk()["y"]);
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    p521::elliptic_curve::rand_core::RngCore::fill_bytes(&mut OsRng, &mut b);
    b
}
