//! Limiter decision cost: the in-process GCRA table (ns per decision) and the Redis script
//! (µs per decision, sequential round trips, and decisions per second with concurrent callers).
//!
//! Run in release mode through `bench/limiter.sh`, or directly:
//! `cargo run --release -p palisade-state --example limiter_bench -- [redis://127.0.0.1:6379]`
//! Prints one JSON object on stdout.

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use palisade_state::{MemoryLimiter, Quota, StateOptions, connect};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Nanoseconds per decision over `iterations` decisions spread across `keys` keys.
fn memory_ns(keys: usize, iterations: usize, quota: Quota) -> Result<f64, Error> {
    let limiter = MemoryLimiter::new(1_000_000);
    let names: Vec<String> = (0..keys).map(|i| format!("user:{i:08}")).collect();
    // Warm up: every key present.
    for name in &names {
        limiter.decide(name, quota)?;
    }
    let started = Instant::now();
    for i in 0..iterations {
        let name = names.get(i % keys).ok_or("key index")?;
        black_box(limiter.decide(black_box(name), quota)?);
    }
    Ok(started.elapsed().as_nanos() as f64 / iterations as f64)
}

/// Sorted latencies' percentile.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let redis_url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("TEST_REDIS_URL").ok());
    // Quotas that never deny, so every decision does the full work (read, compute, write).
    let open = Quota::new(1_000_000, 1_000_000)?;
    let one_key = memory_ns(1, 5_000_000, open)?;
    let many_keys = memory_ns(100_000, 5_000_000, open)?;

    let mut redis = serde_free_null();
    if let Some(url) = redis_url {
        let opts = StateOptions {
            key_prefix: format!("palisade-bench:{}:", uuid::Uuid::new_v4()),
            ..StateOptions::default()
        };
        let state = connect(&url, &opts).await?;
        for i in 0..1_000 {
            state.limiter.check(&format!("warm:{i}"), open).await?;
        }
        // Sequential: one caller, one round trip per decision.
        let n = 20_000;
        let mut latencies = Vec::with_capacity(n);
        let started = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            black_box(
                state
                    .limiter
                    .check(&format!("user:{}", i % 1_000), open)
                    .await?,
            );
            latencies.push(t.elapsed());
        }
        let sequential_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        latencies.sort_unstable();
        // Concurrent: 32 callers sharing the multiplexed connection.
        let callers = 32;
        let per_caller = 2_000;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..callers {
            let limiter = state.limiter.clone();
            tasks.spawn(async move {
                for i in 0..per_caller {
                    limiter
                        .check(&format!("user:{c}:{}", i % 100), open)
                        .await?;
                }
                Ok::<(), palisade_state::StateError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let per_second = f64::from(callers * per_caller) / started.elapsed().as_secs_f64();
        let health = state.limiter.health();
        if health.degraded || health.fallback_decisions > 0 {
            return Err("the Redis limiter degraded during the benchmark".into());
        }
        redis = format!(
            "{{\"sequential_us_per_decision\":{sequential_us:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"concurrent_callers\":{callers},\"concurrent_decisions_per_second\":{per_second:.0}}}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
        );
    }
    println!(
        "{{\"memory\":{{\"ns_per_decision_one_key\":{one_key:.1},\"ns_per_decision_100k_keys\":{many_keys:.1}}},\"redis\":{redis}}}"
    );
    Ok(())
}

fn serde_free_null() -> String {
    "null".to_owned()
}
