//! Integration tests of `palisade-state`: one conformance suite run on every backend, plus the
//! backend-specific behaviour (the in-process cap, Redis outages, URL handling).
//!
//! Invariants:
//! - Every suite case runs on the in-process backend, and on Redis when `TEST_REDIS_URL` is set; with
//!   `CI=true` a missing `TEST_REDIS_URL` fails instead of skipping.
//! - Each Redis test uses a random key prefix, so tests never see each other's keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on the first broken expectation"
)]

mod outage;
mod suite;
mod support;

/// Runs each named suite case on both backends, as `memory::<case>` and `redis::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (a, b) = crate::support::memory_pair().await;
                    crate::suite::$case(&a, &b).await;
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((a, b)) = crate::support::redis_pair().await else {
                        return;
                    };
                    crate::suite::$case(&a, &b).await;
                }
            )*
        }
    };
}

conformance!(
    revocation_is_visible_immediately_and_across_instances,
    revocation_expires_by_itself,
    revocation_in_the_past_writes_nothing,
    revoking_again_never_shortens_a_revocation,
    counters_count_within_a_window_and_expire,
    counter_window_is_fixed_from_the_first_hit,
    counters_reset_and_keys_are_independent,
    counters_are_shared_across_instances,
    first_use_is_true_once_then_false_until_ttl_passes,
    first_use_has_one_winner_among_50_concurrent_callers,
    first_use_has_one_winner_across_two_instances,
    purposes_do_not_share_keys,
    long_and_odd_keys_are_accepted,
    zero_durations_are_refused,
    health_answers_and_instances_agree_on_backend,
    limiter_admits_the_burst_across_instances_then_denies,
    limiter_keys_and_quotas_are_independent_and_refill,
    blocks_are_shared_listed_extended_and_lifted,
    blocks_expire_by_themselves,
);

mod memory_only {
    use std::time::Duration;

    use palisade_state::{StateError, StateOptions, connect};
    use time::OffsetDateTime;

    #[tokio::test]
    async fn memory_backend_names_itself() {
        let state = connect("memory://", &StateOptions::default())
            .await
            .unwrap();

        assert_eq!(state.health.backend(), "memory");
        assert_eq!(format!("{state:?}"), "State { backend: \"memory\", .. }");
    }

    #[tokio::test]
    async fn full_memory_backend_fails_closed_and_keeps_its_revocations() {
        let opts = StateOptions {
            memory_max_entries: 3,
            ..StateOptions::default()
        };
        let state = connect("memory://", &opts).await.unwrap();
        let until = OffsetDateTime::now_utc() + time::Duration::minutes(5);
        for id in ["a", "b", "c"] {
            state.revocations.revoke(id, until).await.unwrap();
        }

        let refused = state.revocations.revoke("d", until).await;

        assert!(matches!(refused, Err(StateError::Unavailable(_))));
        for id in ["a", "b", "c"] {
            assert!(
                state.revocations.is_revoked(id).await.unwrap(),
                "{id} evicted"
            );
        }
        assert!(!state.revocations.is_revoked("d").await.unwrap());
        // Re-revoking a present id needs no room.
        state.revocations.revoke("a", until).await.unwrap();
    }

    #[tokio::test]
    async fn full_once_and_counter_maps_fail_closed() {
        let opts = StateOptions {
            memory_max_entries: 2,
            ..StateOptions::default()
        };
        let state = connect("memory://", &opts).await.unwrap();
        let ttl = Duration::from_secs(60);
        assert!(state.once.first_use("a", ttl).await.unwrap());
        assert!(state.once.first_use("b", ttl).await.unwrap());
        state.counters.hit("a", ttl).await.unwrap();
        state.counters.hit("b", ttl).await.unwrap();

        let once = state.once.first_use("c", ttl).await;
        let count = state.counters.hit("c", ttl).await;

        assert!(matches!(once, Err(StateError::Unavailable(_))));
        assert!(matches!(count, Err(StateError::Unavailable(_))));
        // Existing keys keep working, and a used key stays used.
        assert_eq!(state.counters.hit("a", ttl).await.unwrap(), 2);
        assert!(!state.once.first_use("a", ttl).await.unwrap());
    }

    #[tokio::test]
    async fn full_memory_backend_accepts_writes_again_once_entries_expire() {
        let opts = StateOptions {
            memory_max_entries: 1,
            ..StateOptions::default()
        };
        let state = connect("memory://", &opts).await.unwrap();
        assert!(
            state
                .once
                .first_use("a", Duration::from_millis(50))
                .await
                .unwrap()
        );
        assert!(
            state
                .once
                .first_use("b", Duration::from_secs(60))
                .await
                .is_err()
        );

        tokio::time::sleep(Duration::from_millis(120)).await;

        assert!(
            state
                .once
                .first_use("b", Duration::from_secs(60))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn separate_memory_states_are_separate() {
        let a = connect("memory://", &StateOptions::default())
            .await
            .unwrap();
        let b = connect("memory://", &StateOptions::default())
            .await
            .unwrap();
        let until = OffsetDateTime::now_utc() + time::Duration::minutes(5);

        a.revocations.revoke("jti", until).await.unwrap();

        assert!(!b.revocations.is_revoked("jti").await.unwrap());
    }
}

mod urls {
    use palisade_state::{StateError, StateOptions, connect};

    const SECRET: &str = "s3cr3t-pa55";

    async fn refused_without_echo(url: &str) {
        let err = connect(url, &StateOptions::default()).await.unwrap_err();

        assert!(matches!(err, StateError::Config(_)), "{url}: {err:?}");
        for shown in [format!("{err}"), format!("{err:?}"), source_chain(&err)] {
            assert!(
                !shown.contains(SECRET),
                "error echoes the password: {shown}"
            );
            assert!(
                !shown.contains("example.internal"),
                "error echoes the host: {shown}"
            );
        }
    }

    fn source_chain(err: &dyn std::error::Error) -> String {
        let mut out = String::new();
        let mut next = err.source();
        while let Some(source) = next {
            out.push_str(&format!("{source} / {source:?}; "));
            next = source.source();
        }
        out
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused_without_echoing_the_url() {
        refused_without_echo(&format!(
            "postgres://admin:{SECRET}@example.internal:5432/db"
        ))
        .await;
        refused_without_echo(&format!("memcached://admin:{SECRET}@example.internal")).await;
        refused_without_echo(&format!("admin:{SECRET}@example.internal")).await;
        refused_without_echo("").await;
    }

    #[tokio::test]
    async fn malformed_redis_url_is_refused_without_echoing_it() {
        refused_without_echo(&format!("redis://admin:{SECRET}@example.internal:notaport")).await;
        refused_without_echo(&format!("rediss://admin:{SECRET}@[example.internal")).await;
    }

    #[tokio::test]
    async fn memory_url_takes_nothing_after_the_scheme() {
        refused_without_echo(&format!("memory://admin:{SECRET}@example.internal")).await;
    }

    #[tokio::test]
    async fn schemes_are_case_insensitive() {
        let state = connect("MEMORY://", &StateOptions::default())
            .await
            .unwrap();

        assert_eq!(state.health.backend(), "memory");
    }
}
