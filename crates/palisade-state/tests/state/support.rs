//! Backend factories for the tests: pairs of `State`s that share one backend ("two instances"), and
//! the rule for when the Redis backend is skipped.
//!
//! Invariants:
//! - A missing `TEST_REDIS_URL` skips Redis with a printed note, except under `CI=true`, where it
//!   fails: the Redis backend is never skipped silently in CI.
//! - A set but unreachable `TEST_REDIS_URL` fails the test; it is never a skip.
//! - Every Redis pair gets a fresh random key prefix.

use palisade_state::{State, StateOptions, connect};

/// Two handles on one in-process state. The in-process backend serves a single instance, so its
/// "second instance" is a clone of the same state.
pub async fn memory_pair() -> (State, State) {
    let state = connect("memory://", &StateOptions::default())
        .await
        .unwrap();
    (state.clone(), state)
}

/// Two independent connections to the test Redis with one fresh prefix, or `None` (with a note)
/// when Redis is not configured outside CI.
pub async fn redis_pair() -> Option<(State, State)> {
    let url = redis_url()?;
    let opts = fresh_options();
    let a = connect(&url, &opts)
        .await
        .expect("TEST_REDIS_URL is set but unreachable");
    let b = connect(&url, &opts)
        .await
        .expect("TEST_REDIS_URL is set but unreachable");
    Some((a, b))
}

/// Options with a random key prefix, isolating a test's keys.
pub fn fresh_options() -> StateOptions {
    StateOptions {
        key_prefix: format!("palisade-test:{}:", uuid::Uuid::new_v4()),
        ..StateOptions::default()
    }
}

/// `TEST_REDIS_URL`, or `None` after printing why Redis is skipped. Panics under `CI=true`.
pub fn redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but TEST_REDIS_URL is unset: the Redis backend must run in CI"
            );
            eprintln!(
                "note: TEST_REDIS_URL is unset, skipping the Redis backend \
                 (set TEST_REDIS_URL=redis://127.0.0.1:6379 to run it)"
            );
            None
        }
    }
}
