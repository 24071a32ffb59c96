//! The conformance suite: every backend must pass each case. Each case takes two `State`s on the
//! same backend (two instances of the server) and exercises the traits only.
//!
//! Invariants:
//! - Cases use only the public traits, so they cannot depend on which backend runs.
//! - Time-based cases leave wide margins (hundreds of ms), since the machine may be busy.

use std::time::Duration;

use palisade_state::{State, StateError};
use time::OffsetDateTime;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

fn in_minutes(minutes: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::minutes(minutes)
}

pub async fn revocation_is_visible_immediately_and_across_instances(a: &State, b: &State) {
    assert!(!a.revocations.is_revoked("jti-1").await.unwrap());

    a.revocations.revoke("jti-1", in_minutes(5)).await.unwrap();

    assert!(a.revocations.is_revoked("jti-1").await.unwrap());
    assert!(b.revocations.is_revoked("jti-1").await.unwrap());
    assert!(!b.revocations.is_revoked("jti-2").await.unwrap());
}

pub async fn revocation_expires_by_itself(a: &State, b: &State) {
    let until = OffsetDateTime::now_utc() + time::Duration::milliseconds(800);
    a.revocations.revoke("family-1", until).await.unwrap();
    assert!(b.revocations.is_revoked("family-1").await.unwrap());

    tokio::time::sleep(Duration::from_millis(1_200)).await;

    assert!(!a.revocations.is_revoked("family-1").await.unwrap());
    assert!(!b.revocations.is_revoked("family-1").await.unwrap());
}

pub async fn revocation_in_the_past_writes_nothing(a: &State, b: &State) {
    let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);

    a.revocations.revoke("old", past).await.unwrap();

    assert!(!b.revocations.is_revoked("old").await.unwrap());
}

pub async fn revoking_again_never_shortens_a_revocation(a: &State, b: &State) {
    a.revocations
        .revoke("family-2", in_minutes(5))
        .await
        .unwrap();
    let soon = OffsetDateTime::now_utc() + time::Duration::milliseconds(300);

    b.revocations.revoke("family-2", soon).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    assert!(a.revocations.is_revoked("family-2").await.unwrap());
}

pub async fn counters_count_within_a_window_and_expire(a: &State, _b: &State) {
    let window = Duration::from_millis(800);
    assert_eq!(a.counters.get("otp:dest").await.unwrap(), 0);

    assert_eq!(a.counters.hit("otp:dest", window).await.unwrap(), 1);
    assert_eq!(a.counters.hit("otp:dest", window).await.unwrap(), 2);
    assert_eq!(a.counters.hit("otp:dest", window).await.unwrap(), 3);
    assert_eq!(a.counters.get("otp:dest").await.unwrap(), 3);
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    assert_eq!(a.counters.get("otp:dest").await.unwrap(), 0);
    assert_eq!(a.counters.hit("otp:dest", window).await.unwrap(), 1);
}

pub async fn counter_window_is_fixed_from_the_first_hit(a: &State, _b: &State) {
    let window = Duration::from_millis(1_500);
    assert_eq!(a.counters.hit("ip", window).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(a.counters.hit("ip", window).await.unwrap(), 2);

    // 1.7 s after the first hit: past its window, though within 1.5 s of the second hit.
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    assert_eq!(a.counters.get("ip").await.unwrap(), 0);
}

pub async fn counters_reset_and_keys_are_independent(a: &State, _b: &State) {
    let window = Duration::from_secs(60);
    a.counters.hit("left", window).await.unwrap();
    a.counters.hit("left", window).await.unwrap();
    a.counters.hit("right", window).await.unwrap();

    a.counters.reset("left").await.unwrap();

    assert_eq!(a.counters.get("left").await.unwrap(), 0);
    assert_eq!(a.counters.get("right").await.unwrap(), 1);
    assert_eq!(a.counters.hit("left", window).await.unwrap(), 1);
    // Resetting a key that was never hit is fine.
    a.counters.reset("never").await.unwrap();
}

pub async fn counters_are_shared_across_instances(a: &State, b: &State) {
    let window = Duration::from_secs(60);
    let mut tasks = JoinSet::new();
    for i in 0..40 {
        let state = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { state.counters.hit("daily-cap", window).await.unwrap() });
    }
    let mut counts: Vec<u64> = tasks.join_all().await;
    counts.sort_unstable();

    // Every hit counted once: the returned counts are exactly 1..=40.
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>());
    assert_eq!(b.counters.get("daily-cap").await.unwrap(), 40);
}

pub async fn first_use_is_true_once_then_false_until_ttl_passes(a: &State, b: &State) {
    let ttl = Duration::from_millis(800);

    assert!(a.once.first_use("totp:user:step", ttl).await.unwrap());
    assert!(!a.once.first_use("totp:user:step", ttl).await.unwrap());
    assert!(!b.once.first_use("totp:user:step", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    assert!(b.once.first_use("totp:user:step", ttl).await.unwrap());
}

/// Runs 50 concurrent `first_use` calls on `key`, alternating between `states`, all released at
/// once, and returns how many won.
async fn race(states: &[&State], key: &'static str) -> usize {
    const CALLERS: usize = 50;
    let barrier = std::sync::Arc::new(Barrier::new(CALLERS));
    let mut tasks = JoinSet::new();
    for i in 0..CALLERS {
        let state = states[i % states.len()].clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            state
                .once
                .first_use(key, Duration::from_secs(60))
                .await
                .unwrap()
        });
    }
    tasks
        .join_all()
        .await
        .into_iter()
        .filter(|won| *won)
        .count()
}

pub async fn first_use_has_one_winner_among_50_concurrent_callers(a: &State, _b: &State) {
    assert_eq!(race(&[a], "dpop:jti").await, 1);
}

pub async fn first_use_has_one_winner_across_two_instances(a: &State, b: &State) {
    assert_eq!(race(&[a, b], "assertion:jti").await, 1);
}

pub async fn purposes_do_not_share_keys(a: &State, _b: &State) {
    a.revocations.revoke("shared", in_minutes(5)).await.unwrap();
    a.counters
        .hit("shared", Duration::from_secs(60))
        .await
        .unwrap();

    assert!(
        a.once
            .first_use("shared", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(a.counters.get("shared").await.unwrap(), 1);
    a.counters.reset("shared").await.unwrap();
    assert!(a.revocations.is_revoked("shared").await.unwrap());
}

pub async fn long_and_odd_keys_are_accepted(a: &State, b: &State) {
    let long = "x".repeat(100_000);
    let odd = "key with spaces, ✓ unicode, \"quotes\", *globs* and\nnewlines";

    for key in [long.as_str(), odd, ""] {
        a.revocations.revoke(key, in_minutes(5)).await.unwrap();
        assert!(b.revocations.is_revoked(key).await.unwrap());
        assert!(
            a.once
                .first_use(key, Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            !b.once
                .first_use(key, Duration::from_secs(60))
                .await
                .unwrap()
        );
    }
    // Near-identical keys stay distinct.
    assert!(!a.revocations.is_revoked(&"x".repeat(99_999)).await.unwrap());
}

pub async fn zero_durations_are_refused(a: &State, _b: &State) {
    let hit = a.counters.hit("k", Duration::ZERO).await;
    let once = a.once.first_use("k", Duration::ZERO).await;

    assert!(matches!(hit, Err(StateError::Internal(_))), "{hit:?}");
    assert!(matches!(once, Err(StateError::Internal(_))), "{once:?}");
    assert_eq!(a.counters.get("k").await.unwrap(), 0);
    assert!(a.once.first_use("k", Duration::from_secs(1)).await.unwrap());
}

pub async fn health_answers_and_instances_agree_on_backend(a: &State, b: &State) {
    a.health.ping().await.unwrap();
    b.health.ping().await.unwrap();

    assert!(["memory", "redis"].contains(&a.health.backend()));
    assert_eq!(a.health.backend(), b.health.backend());
}

fn quota(per_second: u32, burst: u32) -> palisade_state::Quota {
    palisade_state::Quota::new(per_second, burst).unwrap()
}

pub async fn limiter_admits_the_burst_across_instances_then_denies(a: &State, b: &State) {
    // 1 per second, burst 6: within this test's few milliseconds, exactly 6 pass in total, whichever
    // instance serves them.
    let q = quota(1, 6);
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let state = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { state.limiter.check("user:1", q).await.unwrap() });
    }
    let decisions = tasks.join_all().await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();

    assert_eq!(allowed, 6);
    let denied = decisions.iter().find(|d| !d.allowed).unwrap();
    assert_eq!(denied.remaining, 0);
    assert!(denied.retry_after > Duration::ZERO && denied.retry_after <= Duration::from_secs(1));
    assert!(!a.limiter.health().degraded);
}

pub async fn limiter_keys_and_quotas_are_independent_and_refill(a: &State, b: &State) {
    let q = quota(10, 2);
    assert!(a.limiter.check("ip:a", q).await.unwrap().allowed);
    let second = a.limiter.check("ip:a", q).await.unwrap();
    assert!(second.allowed);
    assert_eq!(second.remaining, 0);
    assert!(!b.limiter.check("ip:a", q).await.unwrap().allowed);
    assert!(b.limiter.check("ip:b", q).await.unwrap().allowed);

    // One emission interval (100 ms) later, one more request passes.
    tokio::time::sleep(Duration::from_millis(250)).await;

    assert!(b.limiter.check("ip:a", q).await.unwrap().allowed);
}

pub async fn blocks_are_shared_listed_extended_and_lifted(a: &State, b: &State) {
    let block = a
        .blocks
        .block("ip:203.0.113.7", "waf.burst", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(block.subject, "ip:203.0.113.7");
    assert_eq!(block.reason, "waf.burst");
    assert!(block.expires_at > block.created_at);

    let left = b.blocks.blocked("ip:203.0.113.7").await.unwrap().unwrap();
    assert!(left > Duration::from_secs(50));
    assert!(b.blocks.blocked("ip:203.0.113.8").await.unwrap().is_none());
    // A shorter block keeps the longer one, under the same id.
    let again = b
        .blocks
        .block("ip:203.0.113.7", "waf.burst", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(again.id, block.id);
    let listed = b.blocks.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, block.id);

    assert!(b.blocks.unblock(&block.id).await.unwrap());

    assert!(a.blocks.blocked("ip:203.0.113.7").await.unwrap().is_none());
    assert!(!a.blocks.unblock(&block.id).await.unwrap());
    assert!(a.blocks.list().await.unwrap().is_empty());
}

pub async fn blocks_expire_by_themselves(a: &State, b: &State) {
    a.blocks
        .block("user:9", "waf.burst", Duration::from_millis(600))
        .await
        .unwrap();
    assert!(b.blocks.blocked("user:9").await.unwrap().is_some());

    tokio::time::sleep(Duration::from_millis(1_000)).await;

    assert!(b.blocks.blocked("user:9").await.unwrap().is_none());
    assert!(b.blocks.list().await.unwrap().is_empty());
}
