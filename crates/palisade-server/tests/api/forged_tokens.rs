//! A forged-token corpus against the bearer authenticator, end to end through the real socket.
//!
//! Every forgery starts from a real sign-in and changes one thing, so a refusal can only come from
//! that one thing: header-level attacks are assembled by hand and, wherever the attack allows it,
//! signed with the server's own active key (taken from the key ring), so the signature itself is
//! valid and only the attacked property is wrong. Positive controls (the untouched token, a token
//! re-signed by the active key, one assembled by hand the same way as the attacks, one signed by a
//! retiring key, the scheme in other letter cases) prove the forging machinery itself produces
//! acceptable tokens, so each negative case fails for the right reason.

use std::collections::HashSet;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_ASN1_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_authz::{InternalRole, SystemScope};
use palisade_crypto::jws::Es512SigningKey;
use palisade_testkit::{Role, TestApp, each_backend};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value, json};

use crate::expect_problem;

/// The URL-safe base64 alphabet (RFC 4648 §5), to reason about single characters.
const URL_SAFE_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn segments(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
    )
}

/// A JSON object's text with these members in this order; repeated names are kept as given.
fn object_text(members: &[(&str, Value)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{value}", Value::from(*name)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The compact JWS `b64(header).b64(payload).b64(sign(signing input))` of these exact texts.
fn assemble(header: &str, payload: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(signature))
}

/// A signing input given as already-encoded segments, signed, with the signature appended.
fn sign_segments(header_b64: &str, payload_b64: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{header_b64}.{payload_b64}");
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(signature))
}

fn ec_pair(alg: &'static EcdsaSigningAlgorithm, key: &Es512SigningKey) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(alg, key.to_pkcs8().expose_secret()).unwrap()
}

fn ec_sign(pair: &EcdsaKeyPair, input: &[u8]) -> Vec<u8> {
    pair.sign(&SystemRandom::new(), input)
        .unwrap()
        .as_ref()
        .to_vec()
}

fn hmac_sign(alg: hmac::Algorithm, key: &[u8], input: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(alg, key), input)
        .as_ref()
        .to_vec()
}

async fn present(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: &str,
) -> reqwest::Response {
    app.anonymous()
        .request(method, path)
        .header(
            AUTHORIZATION,
            HeaderValue::from_bytes(authorization.as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap()
}

/// 401, an RFC 9457 problem with `code`, a `Bearer ... error="invalid_token"` challenge, and no echo
/// of the presented credential.
async fn expect_refused(res: reqwest::Response, class: &str, code: &str, presented: &str) {
    assert_eq!(res.status().as_u16(), 401, "{class}: status");
    let challenge = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer"),
        "{class}: WWW-Authenticate {challenge:?}"
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{class}: WWW-Authenticate {challenge:?}"
    );
    eprintln!("checking the problem of class {class:?}");
    let body = expect_problem(res, 401, code).await;
    let text = body.to_string();
    if let Some(tail) = presented.rsplit(['.', ' ']).next()
        && tail.len() >= 16
    {
        assert!(
            !text.contains(tail),
            "{class}: the problem echoes the credential"
        );
    }
}

async fn forged_bearer_tokens_are_refused_for_the_right_reason(app: TestApp) {
    let tokens_service = &app.state.auth().tokens;
    let keys = tokens_service.keys().clone();
    let ttl = tokens_service.access_ttl();

    // ---- Key history: K0 retired, K1 retiring, K2 active. ----
    let first = app.sign_in("owner@localhost", "system").await;
    // Issued under K0 and never presented, so no verification of it can have been cached.
    let genuine_under_k0 = first["access_token"].as_str().unwrap().to_owned();
    let k0 = keys.signer().unwrap();
    let k0_claims = decode_json(&segments(&genuine_under_k0).1);
    let mut typ_at_jwt = Map::new();
    typ_at_jwt.insert("typ".into(), json!("at+jwt"));
    let refreshed = |claims: &Value| {
        let mut c = claims.clone();
        c["jti"] = json!(uuid::Uuid::now_v7().to_string());
        c
    };
    let forged_under_k0 = k0.sign(&typ_at_jwt, &refreshed(&k0_claims)).unwrap();

    keys.rotate(time::Duration::ZERO).await.unwrap();
    let k1 = keys.signer().unwrap();
    assert_ne!(k1.kid(), k0.kid());
    let signed_by_retiring = k1.sign(&typ_at_jwt, &refreshed(&k0_claims)).unwrap();
    keys.rotate(ttl).await.unwrap();
    let k2 = keys.signer().unwrap();
    assert_ne!(k2.kid(), k1.kid());
    // `rotate(lifetime)` keeps the previous key verifying for lifetime + 60 s, so by the wall clock
    // nothing is due yet, even after `rotate(0)` ...
    assert_eq!(keys.retire_due().await.unwrap(), 0);
    // ... so retire as the store would two minutes from now: K0 (due at +60 s) goes, K1 (due at
    // +ttl+60 s) stays retiring. Then the ring reloads, as `KeyRing::retire_due` does.
    let retired = app
        .state
        .stores()
        .signing_keys
        .retire_due(
            &SystemScope::internal(InternalRole::KeyRotation),
            time::OffsetDateTime::now_utc() + time::Duration::minutes(2),
        )
        .await
        .unwrap();
    assert_eq!(retired, 1, "exactly K0 is retired");
    keys.reload().await.unwrap();
    let jwks = palisade_testkit::json(app.anonymous().get("/.well-known/jwks.json").await).await;
    let published: HashSet<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !published.contains(k0.kid()),
        "a retired key is not published"
    );
    assert!(published.contains(k1.kid()) && published.contains(k2.kid()));

    // ---- The real token everything else is forged from (issued under K2). ----
    let tokens = app.sign_in("owner@localhost", "system").await;
    let genuine = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (g_header, g_payload, g_signature) = segments(&genuine);
    let header = decode_json(&g_header);
    assert_eq!(header["alg"], "ES512");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], k2.kid());
    let claims = decode_json(&g_payload);
    let owner_id = claims["sub"].as_str().unwrap().to_owned();
    let kid = k2.kid().to_owned();

    let server = ec_pair(&ECDSA_P521_SHA512_FIXED_SIGNING, &k2);
    let server_der = ec_pair(&ECDSA_P521_SHA512_ASN1_SIGNING, &k2);
    let sign_real = |input: &[u8]| ec_sign(&server, input);
    let real_signature = |header: &str, payload: &str| assemble(header, payload, &sign_real);

    // Valid claims with a fresh jti, then `edit`: the payload of every claim-level forgery.
    let fresh = |edit: &dyn Fn(&mut Map<String, Value>)| -> Value {
        let mut c = claims.as_object().unwrap().clone();
        let t = now();
        c.insert("jti".into(), json!(uuid::Uuid::now_v7().to_string()));
        c.insert("iat".into(), json!(t));
        c.insert("nbf".into(), json!(t));
        c.insert("exp".into(), json!(t + ttl.whole_seconds()));
        edit(&mut c);
        Value::Object(c)
    };
    let fresh_payload = || fresh(&|_| {}).to_string();
    let signed_claims = |edit: &dyn Fn(&mut Map<String, Value>)| {
        bearer(&k2.sign(&typ_at_jwt, &fresh(edit)).unwrap())
    };
    let header_with = |members: &[(&str, Value)]| object_text(members);
    let std_header = header_with(&[
        ("alg", json!("ES512")),
        ("kid", json!(kid)),
        ("typ", json!("at+jwt")),
    ]);
    // The same header with whitespace before `}` so its length is not a multiple of 3: its base64url
    // then has trailing bits and would take `=` padding.
    let mut odd_header = std_header.clone();
    if odd_header.len() % 3 == 0 {
        odd_header.insert(odd_header.len() - 1, ' ');
    }
    assert_ne!(odd_header.len() % 3, 0);
    // A tampered payload keeps the genuine header and signature.
    let tampered = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        edit(&mut c);
        bearer(&format!("{g_header}.{}.{g_signature}", b64(c.to_string())))
    };

    // The server's public key, as the JWKS publishes it.
    let jwks = palisade_testkit::json(app.anonymous().get("/.well-known/jwks.json").await).await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    let jwk_text = jwk.to_string();
    let mut x_y = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    x_y.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    assert_eq!(x_y.len(), 132);
    let mut sec1_point = vec![0x04_u8];
    sec1_point.extend(&x_y);

    // Attackers' keys.
    let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let attacker = Es512SigningKey::generate().unwrap();
    let attacker_pair = ec_pair(&ECDSA_P521_SHA512_FIXED_SIGNING, &attacker);
    let sign_attacker = |input: &[u8]| ec_sign(&attacker_pair, input);
    let attacker_jwk = attacker.public_jwk();
    let other_deployment_own_kid = Es512SigningKey::generate().unwrap();
    let other_deployment_same_kid = Es512SigningKey::from_pkcs8(
        Es512SigningKey::generate()
            .unwrap()
            .to_pkcs8()
            .expose_secret(),
        kid.clone(),
    )
    .unwrap();
    assert_eq!(other_deployment_same_kid.kid(), kid);

    // ---- Stateful classes. ----
    // Revoked jti: a second session of the owner, logged out.
    let session = app.sign_in("owner@localhost", "system").await;
    let revoked = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.bearer(&revoked).get("/v1/me").await.status(), 200);
    assert_eq!(
        app.bearer(&revoked)
            .post("/v1/auth/logout", &json!({}))
            .await
            .status(),
        204
    );
    // Stale token version: another user (so the owner's tokens stay valid) logs out everywhere.
    let victim_tenant = app.tenant("forged-victim").await;
    let victim = victim_tenant.user(Role::Member).await;
    let victim_user = victim.user.clone().unwrap();
    let victim_tokens = app.sign_in(&victim_user.email, "forged-victim").await;
    let stale = victim_tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.bearer(&stale).get("/v1/me").await.status(), 200);
    assert_eq!(
        app.bearer(&stale)
            .post("/v1/auth/logout-all", &json!({}))
            .await
            .status(),
        204
    );

    // ---- Positive controls: the forging machinery produces tokens the server accepts. ----
    let controls: Vec<(&str, String)> = vec![
        ("genuine token", bearer(&genuine)),
        ("lowercase `bearer` scheme", format!("bearer {genuine}")),
        ("uppercase `BEARER` scheme", format!("BEARER {genuine}")),
        (
            "re-signed by the active key through Es512SigningKey::sign",
            signed_claims(&|_| {}),
        ),
        (
            "hand-assembled and signed with the active key",
            bearer(&real_signature(&std_header, &fresh_payload())),
        ),
        (
            "hand-assembled, header with whitespace (length not a multiple of 3)",
            bearer(&real_signature(&odd_header, &fresh_payload())),
        ),
        (
            "exp - iat exactly the configured lifetime + 60 s",
            signed_claims(&|c| {
                let t = now();
                c.insert("iat".into(), json!(t));
                c.insert("exp".into(), json!(t + ttl.whole_seconds() + 60));
            }),
        ),
        ("signed by the retiring key K1", bearer(&signed_by_retiring)),
    ];
    for (class, authorization) in &controls {
        for path in ["/v1/me", "/v1/tenants"] {
            let res = present(&app, Method::GET, path, authorization).await;
            assert_eq!(res.status(), 200, "control {class:?} on {path}");
            if path == "/v1/me" {
                let me = palisade_testkit::json(res).await;
                assert_eq!(me["subject"], owner_id.as_str(), "control {class:?}");
                assert_eq!(me["method"], "bearer");
            }
        }
    }

    // ---- The corpus. ----
    const INVALID: &str = "auth.invalid_token";
    const EXPIRED: &str = "auth.token_expired";
    const REVOKED: &str = "auth.token_revoked";
    let hs = |alg: &str, mac: hmac::Algorithm, key: &[u8]| {
        let h = header_with(&[
            ("alg", json!(alg)),
            ("kid", json!(kid)),
            ("typ", json!("at+jwt")),
        ]);
        let key = key.to_vec();
        bearer(&assemble(&h, &fresh_payload(), &move |i: &[u8]| {
            hmac_sign(mac, &key, i)
        }))
    };
    let with_alg =
        |alg: Value| header_with(&[("alg", alg), ("kid", json!(kid)), ("typ", json!("at+jwt"))]);
    let with_kid = |kid: Value| {
        header_with(&[
            ("alg", json!("ES512")),
            ("kid", kid),
            ("typ", json!("at+jwt")),
        ])
    };
    let with_extra = |name: &str, value: Value| {
        header_with(&[
            ("alg", json!("ES512")),
            ("kid", json!(kid)),
            ("typ", json!("at+jwt")),
            (name, value),
        ])
    };
    // A valid signature whose signing input is `header.payload`, then the signature mangled.
    let signature_bytes_then = |mangle: &dyn Fn(Vec<u8>) -> Vec<u8>| {
        let input = format!("{}.{}", b64(&std_header), b64(fresh_payload()));
        let signature = mangle(ec_sign(&server, input.as_bytes()));
        bearer(&format!("{input}.{}", b64(signature)))
    };
    // The standard alphabet: re-sign until the signature's base64url holds `-` or `_`, then spell it
    // with `+` and `/`; a lenient decoder would read the very same bytes.
    let standard_alphabet = {
        let input = format!("{}.{}", b64(&std_header), b64(fresh_payload()));
        let mut encoded = String::new();
        for _ in 0..200 {
            encoded = b64(ec_sign(&server, input.as_bytes()));
            if encoded.contains(['-', '_']) {
                break;
            }
        }
        assert!(encoded.contains(['-', '_']));
        bearer(&format!(
            "{input}.{}",
            encoded.replace('-', "+").replace('_', "/")
        ))
    };
    // `=` padding on the header segment, signed over the padded text (as a lenient verifier would).
    let padded_header = {
        let mut h = b64(&odd_header);
        while h.len() % 4 != 0 {
            h.push('=');
        }
        bearer(&sign_segments(&h, &b64(fresh_payload()), &sign_real))
    };
    // Non-zero trailing bits: the header's last character with its lowest (unused) bit set decodes,
    // leniently, to the same bytes. Signed over the altered text.
    let trailing_bits = {
        let mut h = b64(&odd_header).into_bytes();
        let last = h.last_mut().unwrap();
        let index = URL_SAFE_ALPHABET.iter().position(|c| c == last).unwrap();
        *last = URL_SAFE_ALPHABET[index | 1];
        let h = String::from_utf8(h).unwrap();
        assert_ne!(h, b64(&odd_header));
        assert_eq!(
            base64::engine::GeneralPurpose::new(
                &base64::alphabet::URL_SAFE,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                    .with_decode_allow_trailing_bits(true),
            )
            .decode(&h)
            .unwrap(),
            odd_header.as_bytes(),
            "a lenient decoder reads the same header"
        );
        bearer(&sign_segments(&h, &b64(fresh_payload()), &sign_real))
    };
    // A validly signed token of more than 16 KiB.
    let oversized = bearer(&real_signature(
        &std_header,
        &fresh(&|c| {
            c.insert("pad".into(), json!("x".repeat(16 * 1024)));
        })
        .to_string(),
    ));
    assert!(oversized.len() > 16 * 1024);
    // Two `sub` members: the first names another user, the last the owner (last-wins parsers agree
    // with the owner's token; a first-wins parser would act as the victim).
    let duplicate_sub_payload = {
        let text = fresh_payload();
        format!(
            "{{\"sub\":{},{}",
            Value::from(victim_user.id.to_string()),
            &text[1..]
        )
    };

    let corpus: Vec<(&str, String, &str)> = vec![
        // Algorithm confusion.
        (
            "alg none, empty signature",
            bearer(&format!(
                "{}.{}.",
                b64(with_alg(json!("none"))),
                b64(fresh_payload())
            )),
            INVALID,
        ),
        (
            "alg none, no signature segment",
            bearer(&format!(
                "{}.{}",
                b64(with_alg(json!("none"))),
                b64(fresh_payload())
            )),
            INVALID,
        ),
        (
            "alg NONE over a valid ES512 signature",
            bearer(&real_signature(&with_alg(json!("NONE")), &fresh_payload())),
            INVALID,
        ),
        (
            "HS256 keyed with the public key's x||y",
            hs("HS256", hmac::HMAC_SHA256, &x_y),
            INVALID,
        ),
        (
            "HS256 keyed with the public JWK's JSON text",
            hs("HS256", hmac::HMAC_SHA256, jwk_text.as_bytes()),
            INVALID,
        ),
        (
            "HS256 keyed with the SEC1 uncompressed point",
            hs("HS256", hmac::HMAC_SHA256, &sec1_point),
            INVALID,
        ),
        (
            "HS512 keyed with the public key's x||y",
            hs("HS512", hmac::HMAC_SHA512, &x_y),
            INVALID,
        ),
        (
            "HS512 keyed with the public JWK's JSON text",
            hs("HS512", hmac::HMAC_SHA512, jwk_text.as_bytes()),
            INVALID,
        ),
        (
            "ES256 header, signed by a P-256 key",
            bearer(&assemble(
                &with_alg(json!("ES256")),
                &fresh_payload(),
                &|i: &[u8]| ec_sign(&p256, i),
            )),
            INVALID,
        ),
        (
            "ES256 header over a valid ES512 signature",
            bearer(&real_signature(&with_alg(json!("ES256")), &fresh_payload())),
            INVALID,
        ),
        (
            "ES384 header, signed by a P-384 key",
            bearer(&assemble(
                &with_alg(json!("ES384")),
                &fresh_payload(),
                &|i: &[u8]| ec_sign(&p384, i),
            )),
            INVALID,
        ),
        (
            "ES512 header, signed by a P-256 key",
            bearer(&assemble(&std_header, &fresh_payload(), &|i: &[u8]| {
                ec_sign(&p256, i)
            })),
            INVALID,
        ),
        (
            "lowercase alg es512 over a valid ES512 signature",
            bearer(&real_signature(&with_alg(json!("es512")), &fresh_payload())),
            INVALID,
        ),
        // Signature encoding.
        (
            "DER-encoded signature by the real key",
            bearer(&assemble(&std_header, &fresh_payload(), &|i: &[u8]| {
                ec_sign(&server_der, i)
            })),
            INVALID,
        ),
        (
            "truncated signature (131 bytes)",
            signature_bytes_then(&|mut s| {
                s.pop();
                s
            }),
            INVALID,
        ),
        (
            "padded signature (133 bytes)",
            signature_bytes_then(&|mut s| {
                s.push(0);
                s
            }),
            INVALID,
        ),
        (
            "all-zero signature r = s = 0 (CVE-2022-21449)",
            signature_bytes_then(&|s| vec![0; s.len()]),
            INVALID,
        ),
        // Key selection.
        (
            "unknown kid",
            bearer(&real_signature(
                &with_kid(json!(uuid::Uuid::new_v4().to_string())),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "missing kid",
            bearer(&real_signature(
                &header_with(&[("alg", json!("ES512")), ("typ", json!("at+jwt"))]),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "kid with path traversal and SQL",
            bearer(&real_signature(
                &with_kid(json!("../../../../dev/null' OR '1'='1")),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "jwk header injection: the attacker's key under its own kid",
            bearer(&assemble(
                &header_with(&[
                    ("alg", json!("ES512")),
                    ("kid", json!(attacker.kid())),
                    ("typ", json!("at+jwt")),
                    ("jwk", attacker_jwk.clone()),
                ]),
                &fresh_payload(),
                &sign_attacker,
            )),
            INVALID,
        ),
        (
            "jwk header injection: the attacker's key under the server's kid",
            bearer(&assemble(
                &with_extra("jwk", attacker_jwk.clone()),
                &fresh_payload(),
                &sign_attacker,
            )),
            INVALID,
        ),
        (
            "jwk header naming the server's own key, signed by it",
            bearer(&real_signature(
                &with_extra("jwk", jwk.clone()),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "jku header",
            bearer(&real_signature(
                &with_extra("jku", json!("https://attacker.example/jwks.json")),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "x5u header",
            bearer(&real_signature(
                &with_extra("x5u", json!("https://attacker.example/cert.pem")),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "x5c header",
            bearer(&real_signature(
                &with_extra("x5c", json!([b64(b"not really a certificate")])),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "crit header",
            bearer(&real_signature(
                &with_extra("crit", json!(["exp"])),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "another deployment's key under the server's kid",
            bearer(
                &other_deployment_same_kid
                    .sign(&typ_at_jwt, &fresh(&|_| {}))
                    .unwrap(),
            ),
            INVALID,
        ),
        (
            "another deployment's key under its own kid",
            bearer(
                &other_deployment_own_kid
                    .sign(&typ_at_jwt, &fresh(&|_| {}))
                    .unwrap(),
            ),
            INVALID,
        ),
        (
            "retired key: a genuine token it issued",
            bearer(&genuine_under_k0),
            INVALID,
        ),
        (
            "retired key: a fresh token it signed",
            bearer(&forged_under_k0),
            INVALID,
        ),
        // Claims, signed by the real key.
        (
            "expired two minutes ago (beyond any leeway)",
            signed_claims(&|c| {
                let t = now();
                c.insert("iat".into(), json!(t - 120 - 900));
                c.insert("nbf".into(), json!(t - 120 - 900));
                c.insert("exp".into(), json!(t - 120));
            }),
            EXPIRED,
        ),
        (
            "expired a day ago",
            signed_claims(&|c| {
                let t = now() - 86_400;
                c.insert("iat".into(), json!(t - 900));
                c.insert("nbf".into(), json!(t - 900));
                c.insert("exp".into(), json!(t));
            }),
            EXPIRED,
        ),
        (
            "nbf in the future",
            signed_claims(&|c| {
                c.insert("nbf".into(), json!(now() + 600));
            }),
            INVALID,
        ),
        (
            "iat in the future",
            signed_claims(&|c| {
                let t = now() + 3600;
                c.insert("iat".into(), json!(t));
                c.insert("exp".into(), json!(t + 900));
            }),
            INVALID,
        ),
        (
            "exp - iat longer than the configured lifetime",
            signed_claims(&|c| {
                let t = now();
                c.insert("iat".into(), json!(t));
                c.insert("exp".into(), json!(t + ttl.whole_seconds() + 61));
            }),
            INVALID,
        ),
        (
            "missing exp",
            signed_claims(&|c| {
                c.remove("exp");
            }),
            INVALID,
        ),
        (
            "exp as a string",
            signed_claims(&|c| {
                let exp = c["exp"].to_string();
                c.insert("exp".into(), json!(exp));
            }),
            INVALID,
        ),
        (
            "wrong iss",
            signed_claims(&|c| {
                c.insert("iss".into(), json!("https://attacker.example"));
            }),
            INVALID,
        ),
        (
            "wrong aud",
            signed_claims(&|c| {
                c.insert("aud".into(), json!("another-service"));
            }),
            INVALID,
        ),
        (
            "aud array without this audience",
            signed_claims(&|c| {
                c.insert("aud".into(), json!(["another-service"]));
            }),
            INVALID,
        ),
        (
            "typ JWT instead of at+jwt",
            {
                let mut h = Map::new();
                h.insert("typ".into(), json!("JWT"));
                bearer(&k2.sign(&h, &fresh(&|_| {})).unwrap())
            },
            INVALID,
        ),
        (
            "no typ",
            bearer(&k2.sign(&Map::new(), &fresh(&|_| {})).unwrap()),
            INVALID,
        ),
        (
            "payload is an array, not an object",
            bearer(&real_signature(
                &std_header,
                &Value::Array(vec![fresh(&|_| {})]).to_string(),
            )),
            INVALID,
        ),
        // Tampering without re-signing.
        (
            "tampered sub (another user)",
            tampered(&|c| c["sub"] = json!(victim_user.id.to_string())),
            INVALID,
        ),
        (
            "tampered scope_level",
            tampered(&|c| c["scope_level"] = json!("partner")),
            INVALID,
        ),
        (
            "tampered exp (extended by a day)",
            tampered(&|c| c["exp"] = json!(c["exp"].as_i64().unwrap() + 86_400)),
            INVALID,
        ),
        // Server-side state.
        ("revoked jti (logged out)", bearer(&revoked), REVOKED),
        ("stale token version (logout-all)", bearer(&stale), INVALID),
        (
            "refresh token as an access token",
            bearer(&refresh),
            INVALID,
        ),
        // Transport and encoding.
        ("empty bearer value", "Bearer ".to_owned(), INVALID),
        ("scheme without a value", "Bearer".to_owned(), INVALID),
        (
            "whitespace-only bearer value",
            "Bearer \t \t ".to_owned(),
            INVALID,
        ),
        ("16 KiB bearer value (validly signed)", oversized, INVALID),
        (
            "non-ASCII bytes after the token",
            format!("Bearer {genuine}\u{e9}"),
            INVALID,
        ),
        (
            "signature in the standard alphabet (+ and /)",
            standard_alphabet,
            INVALID,
        ),
        ("header with = padding", padded_header, INVALID),
        ("header with non-zero trailing bits", trailing_bits, INVALID),
        (
            "four segments (trailing dot)",
            bearer(&format!("{genuine}.")),
            INVALID,
        ),
        (
            "five segments (JWE-shaped)",
            bearer(&format!("{g_header}.{g_payload}.{g_signature}.AAAA.AAAA")),
            INVALID,
        ),
        // Parser differentials, signed by the real key.
        (
            "duplicate alg: none, then ES512",
            bearer(&real_signature(
                &header_with(&[
                    ("alg", json!("none")),
                    ("kid", json!(kid)),
                    ("typ", json!("at+jwt")),
                    ("alg", json!("ES512")),
                ]),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "duplicate alg through an escaped name (\\u0061lg)",
            bearer(&real_signature(
                &format!(
                    r#"{{"alg":"none","kid":{},"typ":"at+jwt","\u0061lg":"ES512"}}"#,
                    Value::from(kid.clone())
                ),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "duplicate kid: unknown, then the server's",
            bearer(&real_signature(
                &header_with(&[
                    ("alg", json!("ES512")),
                    ("kid", json!("unknown-key")),
                    ("typ", json!("at+jwt")),
                    ("kid", json!(kid)),
                ]),
                &fresh_payload(),
            )),
            INVALID,
        ),
        (
            "duplicate sub in the payload",
            bearer(&real_signature(&std_header, &duplicate_sub_payload)),
            INVALID,
        ),
    ];

    let classes: HashSet<&str> = corpus.iter().map(|(class, _, _)| *class).collect();
    assert_eq!(classes.len(), corpus.len(), "every class appears once");
    assert!(classes.len() >= 25, "{} classes", classes.len());

    for (class, authorization, code) in &corpus {
        for path in ["/v1/me", "/v1/tenants"] {
            let res = present(&app, Method::GET, path, authorization).await;
            expect_refused(res, &format!("{class} on {path}"), code, authorization).await;
        }
    }

    // An access token is not a refresh token.
    let res = app
        .anonymous()
        .post("/v1/auth/token/refresh", &json!({"refresh_token": genuine}))
        .await;
    expect_refused(
        res,
        "access token as a refresh token",
        "auth.invalid_refresh_token",
        &genuine,
    )
    .await;

    // Nothing above spent or locked out the real credentials.
    let res = present(&app, Method::GET, "/v1/me", &bearer(&genuine)).await;
    assert_eq!(res.status(), 200, "the genuine token still works");
    let res = app
        .anonymous()
        .post("/v1/auth/token/refresh", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(res.status(), 200, "the genuine refresh token still works");
}

/// Two `Authorization` field lines, one genuine and one forged, are ambiguous: `Authorization` is not
/// a list field (RFC 9110 §5.3 forbids a sender to repeat it) and RFC 6750 §3.1 calls a request that
/// "repeats the same parameter" `invalid_request`. Which credential counts must never depend on the
/// order of the lines, or an intermediary that checks the last line and the server that uses the
/// first disagree about who is calling (the same parser differential as duplicate JSON members).
/// So both orders are refused: 400 `invalid_request` or 401 `invalid_token`, never 200.
async fn two_authorization_headers_are_refused_whatever_their_order(app: TestApp) {
    let tokens = app.sign_in("owner@localhost", "system").await;
    let genuine = bearer(tokens["access_token"].as_str().unwrap());
    let (_, payload, _) = segments(tokens["access_token"].as_str().unwrap());
    let mut claims = decode_json(&payload);
    claims["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let forged = bearer(&format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"at+jwt"}"#),
        b64(claims.to_string())
    ));
    // Control: the genuine line alone is accepted.
    let res = present(&app, Method::GET, "/v1/me", &genuine).await;
    assert_eq!(res.status(), 200);

    for (order, first, second) in [
        ("forged line, then genuine line", &forged, &genuine),
        ("genuine line, then forged line", &genuine, &forged),
    ] {
        for path in ["/v1/me", "/v1/tenants"] {
            let res = app
                .anonymous()
                .request(Method::GET, path)
                .header(AUTHORIZATION, HeaderValue::from_str(first).unwrap())
                .header(AUTHORIZATION, HeaderValue::from_str(second).unwrap())
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            assert!(
                status == 400 || status == 401,
                "{order} on {path}: status {status}, expected 400 or 401 (the first line was \
                 used and the second ignored)"
            );
            let challenge = res
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                challenge.starts_with("Bearer")
                    && (challenge.contains(r#"error="invalid_request""#)
                        || challenge.contains(r#"error="invalid_token""#)),
                "{order} on {path}: WWW-Authenticate {challenge:?}"
            );
            let ct = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(ct, "application/problem+json", "{order} on {path}");
        }
    }
}

each_backend!(
    forged_bearer_tokens_are_refused_for_the_right_reason,
    two_authorization_headers_are_refused_whatever_their_order,
);
