//! Redis-specific behaviour: failing to connect, outages of a live connection, recovery, and key
//! prefixes.
//!
//! Invariants:
//! - Every failure to reach Redis surfaces as `StateError::Unavailable`, promptly (bounded by the
//!   timeouts), and `is_revoked` never answers `Ok(false)` while Redis is down.
//! - The throwaway Redis is a child process of the test, stopped with `SHUTDOWN NOSAVE` or, if a
//!   test fails midway, killed by its handle on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_state::{StateError, StateOptions, connect};
use time::OffsetDateTime;

use crate::support::{fresh_options, redis_url};

#[tokio::test]
async fn connect_to_a_closed_port_is_unavailable() {
    let started = Instant::now();

    let err = connect("redis://127.0.0.1:1", &fresh_options())
        .await
        .unwrap_err();

    assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connect_to_a_silent_server_times_out_as_unavailable() {
    // Accepts TCP connections (via the backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let opts = StateOptions {
        connect_timeout: Duration::from_millis(400),
        ..fresh_options()
    };
    let started = Instant::now();

    let err = connect(&url, &opts).await.unwrap_err();

    assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn tls_handshake_failure_is_an_error_not_a_panic() {
    // A server that hangs up at once: the TLS client is built and its handshake fails.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("rediss://{}", listener.local_addr().unwrap());
    let closer = std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            drop(stream);
        }
    });
    let opts = StateOptions {
        connect_timeout: Duration::from_millis(1_500),
        ..fresh_options()
    };

    let result = connect(&url, &opts).await;

    assert!(result.is_err());
    drop(closer);
}

#[tokio::test]
async fn zero_timeouts_are_refused() {
    let opts = StateOptions {
        op_timeout: Duration::ZERO,
        ..fresh_options()
    };

    let err = connect("redis://127.0.0.1:6379", &opts).await.unwrap_err();

    assert!(matches!(err, StateError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn key_prefixes_isolate_deployments() {
    let Some(url) = redis_url() else {
        return;
    };
    let a = connect(&url, &fresh_options()).await.unwrap();
    let b = connect(&url, &fresh_options()).await.unwrap();
    let until = OffsetDateTime::now_utc() + time::Duration::minutes(5);

    a.revocations.revoke("jti", until).await.unwrap();
    a.counters.hit("k", Duration::from_secs(60)).await.unwrap();
    a.once
        .first_use("k", Duration::from_secs(60))
        .await
        .unwrap();

    assert!(!b.revocations.is_revoked("jti").await.unwrap());
    assert_eq!(b.counters.get("k").await.unwrap(), 0);
    assert!(
        b.once
            .first_use("k", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(a.health.backend(), "redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_connection_is_unavailable_while_redis_is_down_and_recovers() {
    let Some(mut redis) = ThrowawayRedis::start() else {
        eprintln!("note: redis-server is not on PATH, skipping the outage test");
        return;
    };
    redis.wait_ready().await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let state = connect(&url, &fresh_options()).await.unwrap();
    let until = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    state.revocations.revoke("jti-down", until).await.unwrap();
    assert!(state.revocations.is_revoked("jti-down").await.unwrap());

    redis.shutdown();

    for _ in 0..3 {
        for id in ["jti-down", "jti-never-revoked"] {
            let started = Instant::now();
            let answer = state.revocations.is_revoked(id).await;
            assert!(
                matches!(answer, Err(StateError::Unavailable(_))),
                "is_revoked({id}) while down: {answer:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "call not bounded"
            );
        }
    }
    let window = Duration::from_secs(60);
    let hit = state.counters.hit("k", window).await;
    assert!(matches!(hit, Err(StateError::Unavailable(_))), "{hit:?}");
    let get = state.counters.get("k").await;
    assert!(matches!(get, Err(StateError::Unavailable(_))), "{get:?}");
    let once = state.once.first_use("k", window).await;
    assert!(matches!(once, Err(StateError::Unavailable(_))), "{once:?}");
    let revoke = state.revocations.revoke("jti-2", until).await;
    assert!(
        matches!(revoke, Err(StateError::Unavailable(_))),
        "{revoke:?}"
    );
    let ping = state.health.ping().await;
    assert!(matches!(ping, Err(StateError::Unavailable(_))), "{ping:?}");

    redis.restart();
    redis.wait_ready().await;

    let deadline = Instant::now() + Duration::from_secs(15);
    while state.health.ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    state.revocations.revoke("jti-after", until).await.unwrap();
    assert!(state.revocations.is_revoked("jti-after").await.unwrap());
    assert!(state.once.first_use("k", window).await.unwrap());
    assert_eq!(state.counters.hit("k", window).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_falls_back_to_per_instance_limits_while_redis_is_down_and_recovers() {
    let Some(mut redis) = ThrowawayRedis::start() else {
        eprintln!("note: redis-server is not on PATH, skipping the outage test");
        return;
    };
    redis.wait_ready().await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let state = connect(&url, &fresh_options()).await.unwrap();
    let quota = palisade_state::Quota::new(1, 3).unwrap();
    assert!(state.limiter.check("k", quota).await.unwrap().allowed);
    assert_eq!(state.limiter.health().backend, "redis");
    assert!(!state.limiter.health().degraded);
    let block = state
        .blocks
        .block("ip:1", "waf.burst", Duration::from_secs(60))
        .await
        .unwrap();

    redis.shutdown();

    // Never unlimited: the per-instance limiter takes over with the same quota.
    let started = Instant::now();
    let mut allowed = 0;
    for _ in 0..10 {
        allowed += u32::from(state.limiter.check("k2", quota).await.unwrap().allowed);
    }
    assert_eq!(allowed, 3);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fallback is prompt"
    );
    let health = state.limiter.health();
    assert!(health.degraded);
    assert!(health.fallback_decisions >= 9);
    // Blocks made during the outage are kept per instance; the shared list cannot be listed.
    state
        .blocks
        .block("ip:2", "waf.burst", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(state.blocks.blocked("ip:2").await.unwrap().is_some());
    assert!(state.blocks.list().await.is_err());

    redis.restart();
    redis.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let _ = state.limiter.check("probe", quota).await;
        if !state.limiter.health().degraded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Redis restarted empty (no persistence): the shared block is gone, the local one remains.
    assert!(state.blocks.blocked("ip:1").await.unwrap().is_none());
    assert!(state.blocks.blocked("ip:2").await.unwrap().is_some());
    assert!(!state.blocks.unblock(&block.id).await.unwrap());
}

/// A `redis-server` child process on a free port, without persistence.
struct ThrowawayRedis {
    port: u16,
    child: Option<Child>,
}

impl ThrowawayRedis {
    /// Starts one, or `None` when `redis-server` is not on PATH.
    fn start() -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        Some(redis)
    }

    /// Starts the server (again) on the same port.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the server answers PING.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .is_ok_and(|out| out.stdout.starts_with(b"PONG"));
            if pong {
                return;
            }
            assert!(Instant::now() < deadline, "throwaway redis did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server with `SHUTDOWN NOSAVE` and reaps it.
    fn shutdown(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
