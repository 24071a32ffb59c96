#!/usr/bin/env bash
# bench/limiter.sh: the cost of one rate-limit decision (issue 7), in ONE run of a release-mode program
# (crates/palisade-state/examples/limiter_bench.rs):
#   - in-process GCRA table: ns per decision, one hot key and 100,000 keys (5,000,000 decisions each);
#   - Redis (one Lua script per decision, EVALSHA): µs per decision for one sequential caller (p50, p99)
#     and decisions per second with 32 concurrent callers over the multiplexed connection.
# Quotas are set so that nothing is denied: every decision reads, computes and writes.
#
# Usage (from anywhere):   bench/limiter.sh
# Environment (all optional):
#   REDIS_URL=redis://127.0.0.1:6379   the Redis to measure (default: TEST_REDIS_URL, else that URL);
#                                      keys go under a fresh random prefix and expire within a second
#   NO_REDIS=1                         measure the in-process limiter only
#   RESULTS_DIR=bench/results          where the JSON goes
#
# Figures are per decision on this host; the load average around the run is recorded, since a shared
# host's other work inflates them (they are upper bounds when the load exceeds the CPU count).
# Needs: cargo; a reachable Redis for the Redis half.
# Exit status: 0 ok; 1 build or run failure (including a Redis that degraded during the run).

set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench/results}"
REDIS_URL="${REDIS_URL:-${TEST_REDIS_URL:-redis://127.0.0.1:6379}}"

cd "$ROOT"
cargo build --release --locked -p palisade-state --example limiter_bench
BIN="$ROOT/target/release/examples/limiter_bench"

ARGS=()
if [[ "${NO_REDIS:-0}" != "1" ]]; then
  ARGS+=("$REDIS_URL")
fi
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
OUT="$(env -u TEST_REDIS_URL "$BIN" "${ARGS[@]}")"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$RESULTS_DIR"
FILE="$RESULTS_DIR/limiter-$STAMP.json"
{
  printf '{\n'
  printf '  "bench": "limiter",\n'
  printf '  "at": "%s",\n' "$STAMP"
  printf '  "host": {"cpus": %s, "kernel": "%s", "loadavg_before": "%s", "loadavg_after": "%s"},\n' \
    "$(nproc)" "$(uname -r)" "$LOAD_BEFORE" "$LOAD_AFTER"
  printf '  "redis": "%s",\n' "$( [[ "${NO_REDIS:-0}" == "1" ]] && echo none || (redis-cli -u "$REDIS_URL" info server 2>/dev/null | awk -F: '/^redis_version/ {gsub(/\r/,""); print "redis " $2}') )"
  printf '  "results": %s\n' "$OUT"
  printf '}\n'
} >"$FILE"
cat "$FILE"
echo "saved $FILE" >&2
