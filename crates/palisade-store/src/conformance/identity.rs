//! Conformance cases for sign-in storage: signing keys, OTP challenges, refresh tokens, token versions,
//! TOTP and recovery codes. Registered in [`CASES`](super::CASES) and
//! [`conformance_tests!`](crate::conformance_tests) like every other case.
//!
//! Times handed to the stores are whole seconds, so values read back compare exactly; times the stores
//! take from their own clock (`created_at`) are only compared by order.

use palisade_domain::{TenantKind, UserId};
use time::{Duration, OffsetDateTime};

use super::{
    assert_conflict, assert_not_found, audit_meta, bootstrap, child, join_all, scope,
    system_tenant, user,
};
use crate::{
    MfaState, NewOtpChallenge, NewRefreshFamily, NewRefreshToken, NewSigningKey, NewUser,
    OtpChallenge, OtpChannel, RefreshSession, RotateOutcome, SigningKey, SigningKeyStatus,
    StoreError, StoreResult, Stores, Tenant, User,
};

// ---------------------------------------------------------------------------------------------------
// Helpers

/// The current time, truncated to whole seconds so that it reads back exactly.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("the current time is representable")
}

fn key(kid: &str) -> NewSigningKey {
    NewSigningKey {
        kid: kid.to_owned(),
        public_jwk: format!(r#"{{"kty":"EC","crv":"P-521","kid":"{kid}"}}"#),
        private_sealed: format!("sealed-{kid}"),
    }
}

fn kids(keys: &[SigningKey]) -> Vec<&str> {
    keys.iter().map(|k| k.kid.as_str()).collect()
}

async fn all_keys(stores: &Stores) -> Vec<SigningKey> {
    stores
        .signing_keys
        .list_keys(&bootstrap())
        .await
        .expect("list keys")
}

fn challenge(
    id: &str,
    tenant: Option<&Tenant>,
    user: Option<&User>,
    expires_at: OffsetDateTime,
) -> NewOtpChallenge {
    NewOtpChallenge {
        id: id.to_owned(),
        tenant_id: tenant.map(|t| t.id),
        channel: OtpChannel::Email,
        destination_hash: format!("dest-hash-{id}"),
        user_id: user.map(|u| u.id),
        code_hash: format!("code-hash-{id}"),
        expires_at,
    }
}

async fn find_challenge(stores: &Stores, id: &str) -> Option<OtpChallenge> {
    stores.otp.find_challenge(id).await.expect("find challenge")
}

fn token(hash: &str, expires_at: OffsetDateTime) -> NewRefreshToken {
    NewRefreshToken {
        token_hash: hash.to_owned(),
        expires_at,
    }
}

fn amr(methods: &[&str]) -> Vec<String> {
    methods.iter().map(|m| (*m).to_owned()).collect()
}

/// Starts a family `family_id` for `user` with first token `hash`, valid for a day after `at`.
async fn family(
    stores: &Stores,
    tenant: &Tenant,
    user: &User,
    family_id: &str,
    hash: &str,
    at: OffsetDateTime,
) {
    stores
        .refresh
        .create_family(
            &scope(tenant),
            NewRefreshFamily {
                id: family_id.to_owned(),
                user_id: user.id,
                amr: amr(&["otp"]),
                auth_time: at,
            },
            token(hash, at + Duration::days(1)),
        )
        .await
        .expect("create a refresh family");
}

/// Rotates `hash` into `next` (valid for a day) at `at`.
async fn rotate(stores: &Stores, hash: &str, next: &str, at: OffsetDateTime) -> RotateOutcome {
    stores
        .refresh
        .rotate(hash, token(next, at + Duration::days(1)), at)
        .await
        .expect("rotate")
}

fn assert_rotated(outcome: RotateOutcome, family_id: &str) -> RefreshSession {
    match outcome {
        RotateOutcome::Rotated(session) => {
            assert_eq!(session.family_id, family_id);
            session
        }
        other => panic!("expected Rotated in {family_id}, got {other:?}"),
    }
}

/// A system tenant with two sibling tenants `tenant-a` and `tenant-b`.
async fn two_tenants(stores: &Stores) -> (Tenant, Tenant) {
    let root = system_tenant(stores).await;
    let a = child(stores, &root, "tenant-a", TenantKind::Tenant).await;
    let b = child(stores, &root, "tenant-b", TenantKind::Tenant).await;
    (a, b)
}

async fn with_phone(
    stores: &Stores,
    tenant: &Tenant,
    email: &str,
    phone: &str,
) -> StoreResult<User> {
    stores
        .users
        .create_user(
            &scope(tenant),
            NewUser {
                email: email.to_owned(),
                phone: Some(phone.to_owned()),
                roles: Vec::new(),
            },
            audit_meta(),
        )
        .await
}

/// Enrols and enables TOTP for `user` with sealed secret `sealed` and the given recovery-code hashes.
async fn enable_totp(stores: &Stores, tenant: &Tenant, user: &User, sealed: &str, codes: &[&str]) {
    let s = scope(tenant);
    stores
        .mfa
        .set_pending_totp(&s, user.id, sealed.to_owned())
        .await
        .expect("set a pending secret");
    stores
        .mfa
        .enable_totp(
            &s,
            user.id,
            codes.iter().map(|c| (*c).to_owned()).collect(),
            audit_meta(),
        )
        .await
        .expect("enable TOTP");
}

// ---------------------------------------------------------------------------------------------------
// Signing keys

/// A rotation makes the new key active and keeps the previous one verifying until its `retire_at`;
/// `retire_due` then retires it and wipes its private part. A refused rotation changes nothing.
pub async fn signing_key_rotation_keeps_the_previous_key_until_retired(stores: &Stores) {
    let system = bootstrap();
    let keys = &stores.signing_keys;
    let t = t0();
    assert_eq!(keys.active_key().await.expect("active"), None);
    assert!(keys.verification_keys().await.expect("verify").is_empty());

    // The first key: nothing to demote.
    let before = OffsetDateTime::now_utc() - Duration::seconds(1);
    keys.insert_active_key(&system, None, key("k1"), t + Duration::hours(1))
        .await
        .expect("first key");
    let k1 = keys
        .active_key()
        .await
        .expect("active")
        .expect("k1 is active");
    assert_eq!(k1.kid, "k1");
    assert_eq!(k1.status, SigningKeyStatus::Active);
    assert_eq!(k1.public_jwk, key("k1").public_jwk);
    assert_eq!(k1.private_sealed, "sealed-k1");
    assert_eq!((k1.retire_at, k1.retired_at), (None, None));
    assert!(k1.created_at >= before);
    assert_eq!(
        keys.verification_keys().await.expect("verify"),
        vec![k1.clone()]
    );

    // Rotation: k2 signs, k1 still verifies until its retire_at.
    keys.insert_active_key(&system, Some("k1"), key("k2"), t + Duration::hours(1))
        .await
        .expect("rotate to k2");
    let verifying = keys.verification_keys().await.expect("verify");
    assert_eq!(kids(&verifying), ["k2", "k1"]);
    let old = verifying.get(1).expect("k1 still verifies");
    assert_eq!(old.status, SigningKeyStatus::Retiring);
    assert_eq!(old.retire_at, Some(t + Duration::hours(1)));
    assert_eq!(old.private_sealed, "sealed-k1", "kept until retired");
    assert_eq!(
        keys.active_key().await.expect("active").map(|k| k.kid),
        Some("k2".to_owned())
    );

    // Not due yet.
    assert_eq!(
        keys.retire_due(&system, t + Duration::minutes(30))
            .await
            .expect("retire"),
        0
    );
    keys.insert_active_key(&system, Some("k2"), key("k3"), t + Duration::hours(2))
        .await
        .expect("rotate to k3");
    assert_eq!(
        kids(&keys.verification_keys().await.expect("verify")),
        ["k3", "k2", "k1"],
        "active first, then retiring keys newest first"
    );

    // A taken kid is refused, and the refused rotation did not demote k3.
    assert_conflict(
        keys.insert_active_key(&system, Some("k3"), key("k2"), t)
            .await,
        "signing_keys.kid",
    );
    // SECURITY: a rotation that read a stale active key (k2, or "none yet") is refused whole.
    assert_conflict(
        keys.insert_active_key(&system, Some("k2"), key("k4"), t)
            .await,
        "signing_keys.status",
    );
    assert_conflict(
        keys.insert_active_key(&system, None, key("k4"), t).await,
        "signing_keys.status",
    );
    assert_conflict(
        keys.insert_active_key(&system, Some("nope"), key("k4"), t)
            .await,
        "signing_keys.status",
    );
    assert!(
        all_keys(stores).await.iter().all(|k| k.kid != "k4"),
        "a refused rotation left its key behind"
    );
    let k2 = all_keys(stores)
        .await
        .into_iter()
        .find(|k| k.kid == "k2")
        .expect("k2");
    assert_eq!(
        k2.retire_at,
        Some(t + Duration::hours(2)),
        "a refused rotation changed a retiring key (k3's rotation set it)"
    );
    let after_refusal = keys.verification_keys().await.expect("verify");
    assert_eq!(kids(&after_refusal), ["k3", "k2", "k1"]);
    assert_eq!(
        after_refusal.first().map(|k| k.status),
        Some(SigningKeyStatus::Active)
    );

    // Due at exactly retire_at: k1 is retired and wiped, k2 still verifies.
    assert_eq!(
        keys.retire_due(&system, t + Duration::hours(1))
            .await
            .expect("retire"),
        1
    );
    assert_eq!(
        kids(&keys.verification_keys().await.expect("verify")),
        ["k3", "k2"]
    );
    let listed = all_keys(stores).await;
    assert_eq!(kids(&listed), ["k3", "k2", "k1"]);
    let retired = listed.iter().find(|k| k.kid == "k1").expect("k1 listed");
    assert_eq!(retired.status, SigningKeyStatus::Retired);
    assert_eq!(retired.retired_at, Some(t + Duration::hours(1)));
    assert_eq!(retired.retire_at, Some(t + Duration::hours(1)));
    assert_eq!(
        retired.private_sealed, "",
        "SECURITY: the private part is wiped"
    );
    assert_eq!(retired.public_jwk, key("k1").public_jwk);
    assert_eq!(
        keys.retire_due(&system, t + Duration::hours(1))
            .await
            .expect("retire"),
        0,
        "retiring is idempotent"
    );

    // Later, k2 goes the same way; the active key is never retired.
    assert_eq!(
        keys.retire_due(&system, t + Duration::days(365))
            .await
            .expect("retire"),
        1
    );
    let verifying = keys.verification_keys().await.expect("verify");
    assert_eq!(kids(&verifying), ["k3"]);
    assert_eq!(
        verifying.first().map(|k| k.private_sealed.as_str()),
        Some("sealed-k3")
    );
    assert!(
        all_keys(stores)
            .await
            .iter()
            .filter(|k| k.status == SigningKeyStatus::Retired)
            .all(|k| k.private_sealed.is_empty())
    );
}

/// SECURITY: racing rotations are a compare-and-set on the active key: of six rotations that read the
/// same active key (none yet, then the round-0 winner), exactly one commits on every backend; the others
/// get `Conflict` on `signing_keys.status` and leave nothing behind; one key is active afterwards and
/// the replaced one is retiring.
pub async fn at_most_one_signing_key_is_active_under_concurrent_rotations(stores: &Stores) {
    let system = bootstrap();
    let t = t0();
    // Round 0 races for the first key (nothing to demote); round 1 races to replace it.
    for round in 0..2 {
        let before = stores
            .signing_keys
            .active_key()
            .await
            .expect("active")
            .map(|k| k.kid);
        let names: Vec<String> = (0..6).map(|i| format!("r{round}-k{i}")).collect();
        let results = join_all(
            names
                .iter()
                .map(|kid| {
                    stores.signing_keys.insert_active_key(
                        &system,
                        before.as_deref(),
                        key(kid),
                        t + Duration::hours(1),
                    )
                })
                .collect(),
        )
        .await;

        let mut won = Vec::new();
        for (kid, result) in names.iter().zip(results) {
            match result {
                Ok(()) => won.push(kid.clone()),
                Err(StoreError::Conflict { constraint }) => {
                    assert_eq!(constraint, "signing_keys.status", "{kid}")
                }
                Err(other) => panic!("{kid}: expected Ok or Conflict, got {other:?}"),
            }
        }
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one rotation commits: {won:?}"
        );

        let listed = all_keys(stores).await;
        let active: Vec<&SigningKey> = listed
            .iter()
            .filter(|k| k.status == SigningKeyStatus::Active)
            .collect();
        assert_eq!(active.len(), 1, "round {round}: {listed:?}");
        let active_kid = active.first().map(|k| k.kid.clone()).unwrap_or_default();
        assert_eq!(won, std::slice::from_ref(&active_kid));
        for kid in &names {
            if !won.contains(kid) {
                assert!(
                    listed.iter().all(|k| &k.kid != kid),
                    "a refused rotation left {kid} behind"
                );
            }
        }
        if let Some(previous) = before {
            let status = listed.iter().find(|k| k.kid == previous).map(|k| k.status);
            assert_eq!(
                status,
                Some(SigningKeyStatus::Retiring),
                "{previous} was replaced"
            );
        }
        assert_eq!(
            stores
                .signing_keys
                .active_key()
                .await
                .expect("active")
                .map(|k| k.kid),
            Some(active_kid)
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// OTP challenges

/// A challenge reads back as stored with no attempts, and concurrent attempts each get their own
/// count: twenty concurrent calls return 1..=20 and leave 20.
pub async fn otp_attempts_count_atomically(stores: &Stores) {
    let (a, _) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let expires = t0() + Duration::minutes(10);
    let before = OffsetDateTime::now_utc() - Duration::seconds(1);
    stores
        .otp
        .create_challenge(challenge("c-1", Some(&a), Some(&alice), expires))
        .await
        .expect("create");

    let stored = find_challenge(stores, "c-1").await.expect("stored");
    assert_eq!(stored.id, "c-1");
    assert_eq!(stored.tenant_id, Some(a.id));
    assert_eq!(stored.user_id, Some(alice.id));
    assert_eq!(stored.channel, OtpChannel::Email);
    assert_eq!(stored.destination_hash, "dest-hash-c-1");
    assert_eq!(stored.code_hash, "code-hash-c-1");
    assert_eq!(stored.attempts, 0);
    assert_eq!(stored.expires_at, expires);
    assert_eq!(stored.consumed_at, None);
    assert!(stored.created_at >= before);

    let mut counts = join_all((0..20).map(|_| stores.otp.record_attempt("c-1")).collect())
        .await
        .into_iter()
        .map(|r| r.expect("record an attempt"))
        .collect::<Vec<i64>>();
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=20).collect::<Vec<i64>>(),
        "each caller saw its own count"
    );
    assert_eq!(
        find_challenge(stores, "c-1").await.map(|c| c.attempts),
        Some(20)
    );
    assert_eq!(
        stores.otp.record_attempt("c-1").await.expect("one more"),
        21
    );
    assert_not_found(stores.otp.record_attempt("no-such-challenge").await);
}

/// SECURITY: a challenge is consumed exactly once (ten concurrent consumers: one `true`), never after
/// it expired; challenges for unknown tenants and accounts are stored alike; a challenge cannot name
/// another tenant's user; expired challenges are purged.
pub async fn otp_challenges_are_consumed_once(stores: &Stores) {
    let (a, b) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let bob = user(stores, &b, "bob@example.com", &[]).await;
    let t = t0();
    let otp = &stores.otp;

    otp.create_challenge(challenge(
        "c-live",
        Some(&a),
        Some(&alice),
        t + Duration::minutes(10),
    ))
    .await
    .expect("create");
    let results = join_all(
        (0..10)
            .map(|_| otp.consume_challenge("c-live", t))
            .collect(),
    )
    .await;
    let wins = results
        .into_iter()
        .map(|r| r.expect("consume"))
        .filter(|won| *won)
        .count();
    assert_eq!(wins, 1, "exactly one consumer wins");
    assert_eq!(
        find_challenge(stores, "c-live")
            .await
            .and_then(|c| c.consumed_at),
        Some(t)
    );
    assert!(
        !otp.consume_challenge("c-live", t + Duration::minutes(1))
            .await
            .expect("consume")
    );
    assert!(
        !otp.consume_challenge("no-such-challenge", t)
            .await
            .expect("consume")
    );

    // An expired challenge is never consumed (at expires_at it has expired).
    otp.create_challenge(challenge("c-expired", Some(&a), Some(&alice), t))
        .await
        .expect("create");
    assert!(
        !otp.consume_challenge("c-expired", t)
            .await
            .expect("consume")
    );
    assert_eq!(
        find_challenge(stores, "c-expired")
            .await
            .and_then(|c| c.consumed_at),
        None
    );

    // Unknown tenant slug, unknown account: stored and consumable the same way.
    otp.create_challenge(challenge(
        "c-unknown",
        None,
        None,
        t + Duration::minutes(10),
    ))
    .await
    .expect("a challenge without tenant or user is stored");
    let unknown = find_challenge(stores, "c-unknown").await.expect("stored");
    assert_eq!((unknown.tenant_id, unknown.user_id), (None, None));
    otp.create_challenge(challenge(
        "c-no-account",
        Some(&b),
        None,
        t + Duration::minutes(10),
    ))
    .await
    .expect("a challenge without a user is stored");
    assert!(
        otp.consume_challenge("c-unknown", t)
            .await
            .expect("consume")
    );

    // SECURITY: a challenge's user must belong to its tenant.
    assert_conflict(
        otp.create_challenge(challenge(
            "c-cross",
            Some(&a),
            Some(&bob),
            t + Duration::minutes(10),
        ))
        .await,
        "foreign_key",
    );
    assert!(
        otp.create_challenge(challenge(
            "c-orphan",
            None,
            Some(&alice),
            t + Duration::minutes(10)
        ))
        .await
        .is_err(),
        "a user without a tenant is refused"
    );
    assert_eq!(find_challenge(stores, "c-cross").await, None);
    assert_eq!(find_challenge(stores, "c-orphan").await, None);
    assert_conflict(
        otp.create_challenge(challenge("c-live", None, None, t + Duration::minutes(10)))
            .await,
        "otp_challenges.id",
    );

    // Purging removes exactly the challenges that expired before the cut-off.
    assert_eq!(otp.purge_expired(t).await.expect("purge"), 0);
    assert_eq!(
        otp.purge_expired(t + Duration::seconds(1))
            .await
            .expect("purge"),
        1
    );
    assert_eq!(find_challenge(stores, "c-expired").await, None);
    assert!(find_challenge(stores, "c-live").await.is_some());
    assert_eq!(
        otp.purge_expired(t + Duration::hours(1))
            .await
            .expect("purge"),
        3
    );
    assert_eq!(find_challenge(stores, "c-live").await, None);
}

// ---------------------------------------------------------------------------------------------------
// Refresh tokens

/// Each rotation spends the presented token, adds the next one to the family and carries the sign-in's
/// `amr` and `auth_time` forward; unknown hashes are `NotFound`; a family can only be started for a
/// user of the scope's tenant; a refused start writes nothing.
pub async fn refresh_rotation_carries_the_session_forward(stores: &Stores) {
    let (a, b) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let t = t0();
    let refresh = &stores.refresh;

    refresh
        .create_family(
            &scope(&a),
            NewRefreshFamily {
                id: "fam-1".to_owned(),
                user_id: alice.id,
                amr: amr(&["otp", "totp"]),
                auth_time: t,
            },
            token("h1", t + Duration::days(1)),
        )
        .await
        .expect("create a family");
    assert_eq!(
        refresh.family_of("h1").await.expect("family of"),
        Some("fam-1".to_owned())
    );

    let expected = RefreshSession {
        family_id: "fam-1".to_owned(),
        tenant_id: a.id,
        user_id: alice.id,
        amr: amr(&["otp", "totp"]),
        auth_time: t,
    };
    let first = assert_rotated(
        rotate(stores, "h1", "h2", t + Duration::minutes(1)).await,
        "fam-1",
    );
    assert_eq!(first, expected);
    assert_eq!(
        refresh.family_of("h2").await.expect("family of"),
        Some("fam-1".to_owned())
    );
    let second = assert_rotated(
        rotate(stores, "h2", "h3", t + Duration::minutes(2)).await,
        "fam-1",
    );
    assert_eq!(second, expected, "the session is carried forward unchanged");
    assert_eq!(
        rotate(stores, "no-such-hash", "h-x", t).await,
        RotateOutcome::NotFound
    );
    assert_eq!(refresh.family_of("h-x").await.expect("family of"), None);
    assert_eq!(
        refresh.family_of("no-such-hash").await.expect("family of"),
        None
    );

    // SECURITY: another tenant's scope cannot start a family for alice.
    assert_not_found(
        refresh
            .create_family(
                &scope(&b),
                NewRefreshFamily {
                    id: "fam-foreign".to_owned(),
                    user_id: alice.id,
                    amr: amr(&["otp"]),
                    auth_time: t,
                },
                token("h-foreign", t + Duration::days(1)),
            )
            .await,
    );
    assert_not_found(
        refresh
            .create_family(
                &scope(&a),
                NewRefreshFamily {
                    id: "fam-nobody".to_owned(),
                    user_id: UserId::new(),
                    amr: amr(&["otp"]),
                    auth_time: t,
                },
                token("h-nobody", t + Duration::days(1)),
            )
            .await,
    );
    assert_eq!(
        refresh.family_of("h-foreign").await.expect("family of"),
        None
    );

    // Taken ids and hashes are conflicts, and a refused start leaves no family behind.
    let s_a = scope(&a);
    let start = |family_id: &str, hash: &str| {
        refresh.create_family(
            &s_a,
            NewRefreshFamily {
                id: family_id.to_owned(),
                user_id: alice.id,
                amr: Vec::new(),
                auth_time: t,
            },
            token(hash, t + Duration::days(1)),
        )
    };
    assert_conflict(start("fam-1", "h-new").await, "refresh_families.id");
    assert_conflict(start("fam-2", "h1").await, "refresh_tokens.token_hash");
    start("fam-2", "h-fam-2")
        .await
        .expect("the refused start rolled its family back");
    let empty = assert_rotated(rotate(stores, "h-fam-2", "h-fam-2b", t).await, "fam-2");
    assert!(empty.amr.is_empty());
}

/// SECURITY (RFC 9700 §4.14.2): presenting a spent token is reuse. It is refused as `Reused` and the
/// whole family is revoked, so even the newest token of the family is then `FamilyRevoked`; other
/// families are untouched.
pub async fn refresh_token_reuse_revokes_the_family(stores: &Stores) {
    let (a, _) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let t = t0();
    family(stores, &a, &alice, "fam-1", "h1", t).await;
    family(stores, &a, &alice, "fam-2", "g1", t).await;

    assert_rotated(rotate(stores, "h1", "h2", t).await, "fam-1");
    assert_eq!(
        rotate(stores, "h1", "h-replay", t + Duration::minutes(1)).await,
        RotateOutcome::Reused {
            family_id: "fam-1".to_owned(),
            user_id: alice.id,
            tenant_id: a.id,
        }
    );
    assert_eq!(
        stores
            .refresh
            .family_of("h-replay")
            .await
            .expect("family of"),
        None,
        "a reused token yields no new token"
    );
    assert_eq!(
        rotate(stores, "h2", "h3", t + Duration::minutes(2)).await,
        RotateOutcome::FamilyRevoked,
        "the newest token dies with its family"
    );
    assert_eq!(
        rotate(stores, "h1", "h4", t + Duration::minutes(3)).await,
        RotateOutcome::FamilyRevoked
    );
    assert_rotated(rotate(stores, "g1", "g2", t).await, "fam-2");
}

/// SECURITY: of two concurrent rotations of one token exactly one is `Rotated` and the other `Reused`,
/// and the family ends revoked. With more racers, the one after the winner is `Reused` (and revokes the
/// family) and any later one may instead find the family already revoked.
pub async fn concurrent_refresh_rotation_has_exactly_one_winner(stores: &Stores) {
    let (a, _) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let t = t0();

    for (racers, family_id) in [(2, "fam-2"), (5, "fam-5")] {
        let first = format!("{family_id}-h1");
        family(stores, &a, &alice, family_id, &first, t).await;
        let nexts: Vec<String> = (0..racers)
            .map(|i| format!("{family_id}-next-{i}"))
            .collect();
        let outcomes = join_all(
            nexts
                .iter()
                .map(|next| {
                    stores
                        .refresh
                        .rotate(&first, token(next, t + Duration::days(1)), t)
                })
                .collect(),
        )
        .await;

        let (mut winner, mut reused, mut revoked) = (None, 0, 0);
        for (next, outcome) in nexts.iter().zip(outcomes) {
            match outcome.expect("rotate") {
                RotateOutcome::Rotated(session) => {
                    assert_eq!(session.family_id, family_id);
                    assert!(winner.replace(next.clone()).is_none(), "two winners");
                }
                RotateOutcome::Reused {
                    family_id: reused_family,
                    user_id,
                    tenant_id,
                } => {
                    assert_eq!(
                        (reused_family.as_str(), user_id, tenant_id),
                        (family_id, alice.id, a.id)
                    );
                    reused += 1;
                }
                RotateOutcome::FamilyRevoked => revoked += 1,
                other => panic!("{family_id}: unexpected {other:?}"),
            }
        }
        let winner = winner.expect("one rotation won");
        assert!(reused >= 1, "{family_id}: the first loser detects reuse");
        if racers == 2 {
            assert_eq!((reused, revoked), (1, 0));
        }
        assert_eq!(
            rotate(stores, &winner, "after", t + Duration::minutes(1)).await,
            RotateOutcome::FamilyRevoked,
            "the race revoked the family"
        );
        for next in nexts.iter().filter(|n| **n != winner) {
            assert_eq!(
                stores.refresh.family_of(next).await.expect("family of"),
                None,
                "a loser stored no token"
            );
        }
    }
}

/// An expired token is `Expired` (at `expires_at` it has expired) and is not spent by the refusal.
pub async fn expired_refresh_tokens_are_refused(stores: &Stores) {
    let (a, _) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let t = t0();
    stores
        .refresh
        .create_family(
            &scope(&a),
            NewRefreshFamily {
                id: "fam-1".to_owned(),
                user_id: alice.id,
                amr: amr(&["otp"]),
                auth_time: t,
            },
            token("h1", t + Duration::minutes(1)),
        )
        .await
        .expect("create");

    for at in [t + Duration::minutes(1), t + Duration::days(30)] {
        assert_eq!(rotate(stores, "h1", "h2", at).await, RotateOutcome::Expired);
    }
    assert_eq!(
        stores.refresh.family_of("h2").await.expect("family of"),
        None
    );
    // Presented before its expiry the same token still rotates: the refusals spent nothing.
    assert_rotated(rotate(stores, "h1", "h2", t).await, "fam-1");
}

/// SECURITY: revoking a user's families only reaches the scope's tenant; `revoke_family` revokes one
/// family, is idempotent, and is `NotFound` for an unknown family.
pub async fn revoking_refresh_families_is_scoped(stores: &Stores) {
    let (a, b) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let carol = user(stores, &a, "carol@example.com", &[]).await;
    let bob = user(stores, &b, "bob@example.com", &[]).await;
    let t = t0();
    let refresh = &stores.refresh;
    family(stores, &a, &alice, "fam-a1", "a1", t).await;
    family(stores, &a, &alice, "fam-a2", "a2", t).await;
    family(stores, &a, &carol, "fam-c", "c1", t).await;
    family(stores, &b, &bob, "fam-b", "b1", t).await;

    assert_eq!(
        refresh
            .revoke_user_families(&scope(&b), alice.id, t)
            .await
            .expect("revoke"),
        0,
        "another tenant's scope reaches none of alice's families"
    );
    assert_rotated(rotate(stores, "a1", "a1b", t).await, "fam-a1");

    assert_eq!(
        refresh
            .revoke_user_families(&scope(&a), alice.id, t)
            .await
            .expect("revoke"),
        2
    );
    assert_eq!(
        refresh
            .revoke_user_families(&scope(&a), alice.id, t)
            .await
            .expect("revoke"),
        0,
        "already revoked"
    );
    for hash in ["a1b", "a2"] {
        assert_eq!(
            rotate(stores, hash, &format!("{hash}-next"), t).await,
            RotateOutcome::FamilyRevoked
        );
    }
    assert_rotated(rotate(stores, "c1", "c2", t).await, "fam-c");
    assert_rotated(rotate(stores, "b1", "b2", t).await, "fam-b");

    refresh.revoke_family("fam-b", t).await.expect("revoke");
    refresh
        .revoke_family("fam-b", t + Duration::minutes(1))
        .await
        .expect("revoking twice is fine");
    assert_eq!(
        rotate(stores, "b2", "b3", t).await,
        RotateOutcome::FamilyRevoked
    );
    assert_not_found(refresh.revoke_family("no-such-family", t).await);
    assert_rotated(rotate(stores, "c2", "c3", t).await, "fam-c");
}

// ---------------------------------------------------------------------------------------------------
// Users: token version, phone

/// `bump_token_version` returns the new version, counts concurrent bumps exactly, and is `NotFound`
/// (changing nothing) outside the scope's tenant.
pub async fn token_version_bumps_are_scoped_and_atomic(stores: &Stores) {
    let (a, b) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let users = &stores.users;
    assert_eq!(alice.token_version, 0);

    assert_eq!(
        users
            .bump_token_version(&scope(&a), alice.id, audit_meta())
            .await
            .expect("bump"),
        1
    );
    assert_eq!(
        users
            .bump_token_version(&scope(&a), alice.id, audit_meta())
            .await
            .expect("bump"),
        2
    );
    let reread = users
        .get_user(&scope(&a), alice.id)
        .await
        .expect("get")
        .expect("alice exists");
    assert_eq!(reread.token_version, 2);
    assert_eq!(reread.updated_at, alice.updated_at, "a session event");

    assert_not_found(
        users
            .bump_token_version(&scope(&b), alice.id, audit_meta())
            .await,
    );
    assert_not_found(
        users
            .bump_token_version(&scope(&a), UserId::new(), audit_meta())
            .await,
    );

    let s_a = scope(&a);
    let mut versions = join_all(
        (0..10)
            .map(|_| users.bump_token_version(&s_a, alice.id, audit_meta()))
            .collect(),
    )
    .await
    .into_iter()
    .map(|r| r.expect("bump"))
    .collect::<Vec<i64>>();
    versions.sort_unstable();
    assert_eq!(versions, (3..=12).collect::<Vec<i64>>());
    assert_eq!(
        users
            .get_user(&scope(&a), alice.id)
            .await
            .expect("get")
            .map(|u| u.token_version),
        Some(12),
        "the refused bump changed nothing"
    );
}

/// A phone number finds its user only within the scope's tenant, and names one user per tenant.
pub async fn phone_lookup_is_scoped_and_unique(stores: &Stores) {
    let (a, b) = two_tenants(stores).await;
    let root = stores
        .tenants
        .resolve_tenant(a.parent_id.expect("a has a parent"))
        .await
        .expect("resolve")
        .expect("root exists");
    let phone = "+442071838750";
    let alice = with_phone(stores, &a, "alice@example.com", phone)
        .await
        .expect("alice");
    let bob = with_phone(stores, &b, "bob@example.com", phone)
        .await
        .expect("the same phone is free in another tenant");
    // Users without a phone never collide.
    user(stores, &a, "nophone1@example.com", &[]).await;
    user(stores, &a, "nophone2@example.com", &["viewer"]).await;

    let find = |tenant: &Tenant, phone: &'static str| {
        let s = scope(tenant);
        async move {
            stores
                .users
                .find_user_by_phone(&s, phone)
                .await
                .expect("find")
        }
    };
    assert_eq!(find(&a, phone).await, Some(alice.clone()));
    assert_eq!(find(&b, phone).await, Some(bob));
    assert_eq!(find(&root, phone).await, None, "the parent sees nothing");
    assert_eq!(find(&a, "+15555550100").await, None);

    assert_conflict(
        with_phone(stores, &a, "mallory@example.com", phone).await,
        "users.tenant_id_phone",
    );
    // Both the e-mail and the phone taken: every backend names the same constraint.
    assert_conflict(
        with_phone(stores, &a, "alice@example.com", phone).await,
        "users.tenant_id_phone",
    );
    assert_eq!(find(&a, phone).await, Some(alice));
}

// ---------------------------------------------------------------------------------------------------
// MFA

/// Enrolment moves a pending secret to the enabled one; a TOTP step is accepted once and never one
/// older than the last accepted (also under concurrency); every operation is scoped to the tenant.
pub async fn totp_steps_are_accepted_once_and_never_backwards(stores: &Stores) {
    let (a, b) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let (s_a, s_b) = (scope(&a), scope(&b));
    let mfa = &stores.mfa;
    let state = || {
        let (s, id) = (&s_a, alice.id);
        async move { mfa.get_mfa(s, id).await.expect("get mfa") }
    };

    assert_eq!(state().await, None);
    assert_not_found(
        mfa.set_pending_totp(&s_b, alice.id, "pending-foreign".to_owned())
            .await,
    );
    assert_not_found(
        mfa.enable_totp(&s_a, alice.id, Vec::new(), audit_meta())
            .await,
    );
    assert_eq!(state().await, None, "refused writes created nothing");

    mfa.set_pending_totp(&s_a, alice.id, "pending-1".to_owned())
        .await
        .expect("pending");
    let pending = state().await.expect("state");
    assert_eq!(pending.pending_sealed.as_deref(), Some("pending-1"));
    assert_eq!((pending.totp_sealed, pending.totp_enabled), (None, false));
    assert_eq!(pending.last_totp_step, None);
    assert_eq!(mfa.get_mfa(&s_b, alice.id).await.expect("get"), None);
    assert_not_found(
        mfa.enable_totp(&s_b, alice.id, Vec::new(), audit_meta())
            .await,
    );

    mfa.enable_totp(&s_a, alice.id, vec!["rc-1".to_owned()], audit_meta())
        .await
        .expect("enable");
    let enabled = state().await.expect("state");
    assert_eq!(enabled.totp_sealed.as_deref(), Some("pending-1"));
    assert!(enabled.totp_enabled);
    assert_eq!(enabled.pending_sealed, None);
    assert_not_found(
        mfa.enable_totp(&s_a, alice.id, Vec::new(), audit_meta())
            .await,
    );

    // Steps move forward only, and each is accepted once.
    assert!(
        mfa.advance_totp_step(&s_a, alice.id, 100)
            .await
            .expect("step")
    );
    assert!(
        !mfa.advance_totp_step(&s_a, alice.id, 100)
            .await
            .expect("step")
    );
    assert!(
        !mfa.advance_totp_step(&s_a, alice.id, 99)
            .await
            .expect("step")
    );
    assert!(
        mfa.advance_totp_step(&s_a, alice.id, 101)
            .await
            .expect("step")
    );
    let wins = join_all(
        (0..10)
            .map(|_| mfa.advance_totp_step(&s_a, alice.id, 200))
            .collect(),
    )
    .await
    .into_iter()
    .map(|r| r.expect("step"))
    .filter(|won| *won)
    .count();
    assert_eq!(wins, 1, "one code accepted once");
    assert!(
        !mfa.advance_totp_step(&s_b, alice.id, 300)
            .await
            .expect("step")
    );
    assert_eq!(state().await.and_then(|s| s.last_totp_step), Some(200));
    assert!(
        !mfa.advance_totp_step(&s_a, UserId::new(), 1)
            .await
            .expect("step")
    );

    // Re-enrolment keeps the enabled secret until confirmed.
    mfa.set_pending_totp(&s_a, alice.id, "pending-2".to_owned())
        .await
        .expect("pending");
    let reenrolling = state().await.expect("state");
    assert_eq!(reenrolling.totp_sealed.as_deref(), Some("pending-1"));
    assert_eq!(reenrolling.pending_sealed.as_deref(), Some("pending-2"));
    assert!(reenrolling.totp_enabled);
    assert_eq!(reenrolling.last_totp_step, Some(200));

    // Disabling is scoped, clears the secrets, and keeps the step floor.
    assert_not_found(mfa.disable_totp(&s_b, alice.id, audit_meta()).await);
    assert!(state().await.expect("state").totp_enabled);
    mfa.disable_totp(&s_a, alice.id, audit_meta())
        .await
        .expect("disable");
    let disabled = state().await.expect("state");
    assert_eq!(
        disabled,
        MfaState {
            totp_sealed: None,
            totp_enabled: false,
            pending_sealed: None,
            last_totp_step: Some(200),
        }
    );
    assert!(
        !mfa.advance_totp_step(&s_a, alice.id, 150)
            .await
            .expect("step")
    );
    let bob = user(stores, &b, "bob@example.com", &[]).await;
    assert_not_found(mfa.disable_totp(&s_b, bob.id, audit_meta()).await);
}

/// SECURITY: a recovery code works once (ten concurrent uses: one `true`), only for its user in the
/// scope's tenant; enabling again replaces the codes and disabling deletes them.
pub async fn recovery_codes_are_single_use(stores: &Stores) {
    let (a, b) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let carol = user(stores, &a, "carol@example.com", &[]).await;
    let (s_a, s_b) = (scope(&a), scope(&b));
    let mfa = &stores.mfa;
    let consume = |user: UserId, hash: &'static str| {
        let s = s_a.clone();
        async move {
            mfa.consume_recovery_code(&s, user, hash)
                .await
                .expect("consume")
        }
    };

    enable_totp(
        stores,
        &a,
        &alice,
        "secret-1",
        &["rc-1", "rc-2", "rc-2", "rc-3"],
    )
    .await;
    enable_totp(stores, &a, &carol, "secret-c", &["rc-1"]).await;

    assert!(consume(alice.id, "rc-1").await);
    assert!(!consume(alice.id, "rc-1").await, "used");
    assert!(consume(carol.id, "rc-1").await, "carol's code is her own");
    assert!(!consume(alice.id, "rc-unknown").await);
    assert!(
        !mfa.consume_recovery_code(&s_b, alice.id, "rc-2")
            .await
            .expect("consume"),
        "another tenant's scope cannot use alice's code"
    );
    let wins = join_all((0..10).map(|_| consume(alice.id, "rc-2")).collect())
        .await
        .into_iter()
        .filter(|won| *won)
        .count();
    assert_eq!(
        wins, 1,
        "the code that another scope failed to use works once"
    );

    // Confirming a new enrolment replaces the codes.
    enable_totp(stores, &a, &alice, "secret-2", &["rc-4"]).await;
    assert!(!consume(alice.id, "rc-3").await, "old codes are gone");
    assert!(consume(alice.id, "rc-4").await);
    enable_totp(stores, &a, &alice, "secret-3", &["rc-5"]).await;
    mfa.disable_totp(&s_a, alice.id, audit_meta())
        .await
        .expect("disable");
    assert!(
        !consume(alice.id, "rc-5").await,
        "disabling deletes the codes"
    );
}

/// Deleting a user removes its MFA state, recovery codes, refresh families and tokens, and OTP
/// challenges; another user's state is untouched.
pub async fn deleting_a_user_cascades_to_sign_in_state(stores: &Stores) {
    let (a, _) = two_tenants(stores).await;
    let alice = user(stores, &a, "alice@example.com", &[]).await;
    let carol = user(stores, &a, "carol@example.com", &[]).await;
    let s_a = scope(&a);
    let t = t0();
    for (u, tag) in [(&alice, "alice"), (&carol, "carol")] {
        enable_totp(stores, &a, u, &format!("secret-{tag}"), &["rc-1", "rc-2"]).await;
        family(stores, &a, u, &format!("fam-{tag}"), &format!("h-{tag}"), t).await;
        stores
            .otp
            .create_challenge(challenge(
                &format!("c-{tag}"),
                Some(&a),
                Some(u),
                t + Duration::minutes(10),
            ))
            .await
            .expect("create a challenge");
    }

    stores
        .users
        .delete_user(&s_a, alice.id, audit_meta())
        .await
        .expect("delete");

    assert_eq!(stores.mfa.get_mfa(&s_a, alice.id).await.expect("get"), None);
    assert!(
        !stores
            .mfa
            .consume_recovery_code(&s_a, alice.id, "rc-1")
            .await
            .expect("consume")
    );
    assert_eq!(
        stores
            .refresh
            .family_of("h-alice")
            .await
            .expect("family of"),
        None
    );
    assert_eq!(
        rotate(stores, "h-alice", "h-alice-2", t).await,
        RotateOutcome::NotFound
    );
    assert_eq!(find_challenge(stores, "c-alice").await, None);
    assert_eq!(
        stores
            .refresh
            .revoke_user_families(&s_a, alice.id, t)
            .await
            .expect("revoke"),
        0
    );

    // Carol keeps everything.
    assert!(
        stores
            .mfa
            .get_mfa(&s_a, carol.id)
            .await
            .expect("get")
            .is_some_and(|m| m.totp_enabled)
    );
    assert!(
        stores
            .mfa
            .consume_recovery_code(&s_a, carol.id, "rc-1")
            .await
            .expect("consume")
    );
    assert!(find_challenge(stores, "c-carol").await.is_some());
    assert_rotated(rotate(stores, "h-carol", "h-carol-2", t).await, "fam-carol");
}
