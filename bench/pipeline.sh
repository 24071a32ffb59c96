#!/usr/bin/env bash
# bench/pipeline.sh: throughput and p99 of Palisade's full request pipeline on a trivial route
# (GET /health), against the same handler on a bare axum router (bench/bare-axum), measured in ONE run
# with the two sides alternating (bare, palisade, bare, palisade, ...), so that both see the same noise.
#
# Usage (from anywhere):   bench/pipeline.sh
# Environment (all optional):
#   ROUNDS=5            measured rounds; each round runs bare then palisade
#   DURATION=10s        wrk duration of each measured run (wrk syntax: 10s, 1m)
#   CONNECTIONS=64      wrk connections (-c)
#   THREADS=2           wrk threads (-t)
#   WARMUP=5s           wrk warm-up run per side before the measured rounds (0 to skip)
#   PALISADE_PORT=18080 BARE_PORT=18081   ports on 127.0.0.1 (the host is fixed: loopback only)
#   SKIP_BUILD=1        reuse the release binaries already built
#   GOAL_RATIO=0.70     goal for palisade/bare median req/s; ENFORCE_GOAL=1 makes a miss exit 1
#   RESULTS_DIR=bench/results   where the JSON goes
#   KEEP_TMP=1          keep the temporary directory (palisade data, logs, raw wrk output)
#
# Needs: wrk (installed with apt-get if missing), curl, cargo, and coreutils/awk/sed/sort.
# Exit status: 0 ok; 1 setup/goal failure; 3 the measurements saw non-2xx responses or socket errors.

set -euo pipefail

# ---------------------------------------------------------------------------------------------- config
readonly HOST=127.0.0.1 # loopback only, by design: never make this configurable

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
readonly SCRIPT_DIR ROOT

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-5s}"
PALISADE_PORT="${PALISADE_PORT:-18080}"
BARE_PORT="${BARE_PORT:-18081}"
SKIP_BUILD="${SKIP_BUILD:-0}"
GOAL_RATIO="${GOAL_RATIO:-0.70}"
ENFORCE_GOAL="${ENFORCE_GOAL:-0}"
RESULTS_DIR="${RESULTS_DIR:-$SCRIPT_DIR/results}"
KEEP_TMP="${KEEP_TMP:-0}"
HEALTH_TIMEOUT_S=60

log() { printf '[pipeline] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_pos_int() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_port() { is_uint "$1" && ((10#$1 >= 1 && 10#$1 <= 65535)); }
is_wrk_duration() { [[ "$1" =~ ^[0-9]+[smh]?$ ]]; }

is_pos_int "$ROUNDS" || die "ROUNDS must be a positive integer (got '$ROUNDS')"
is_pos_int "$CONNECTIONS" || die "CONNECTIONS must be a positive integer (got '$CONNECTIONS')"
is_pos_int "$THREADS" || die "THREADS must be a positive integer (got '$THREADS')"
((CONNECTIONS >= THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"
is_wrk_duration "$DURATION" || die "DURATION must look like 10s or 1m (got '$DURATION')"
[[ "$WARMUP" == 0 ]] || is_wrk_duration "$WARMUP" || die "WARMUP must look like 5s, or be 0 (got '$WARMUP')"
is_port "$PALISADE_PORT" || die "PALISADE_PORT is not a port: '$PALISADE_PORT'"
is_port "$BARE_PORT" || die "BARE_PORT is not a port: '$BARE_PORT'"
[[ "$PALISADE_PORT" != "$BARE_PORT" ]] || die "PALISADE_PORT and BARE_PORT must differ"
[[ "$GOAL_RATIO" =~ ^[0-9]*\.?[0-9]+$ ]] || die "GOAL_RATIO must be a number (got '$GOAL_RATIO')"

readonly PALISADE_URL="http://$HOST:$PALISADE_PORT/health"
readonly BARE_URL="http://$HOST:$BARE_PORT/health"

# ------------------------------------------------------------------------------------ cleanup (trap)
TMP=""
PALISADE_PID=""
BARE_PID=""
WRK_PID=""
LOGS_SHOWN=0

# shellcheck disable=SC2317 # only reached through the EXIT trap
stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 5 s, then SIGKILL
  local pid="$1" name="$2" i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # only reached through the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$WRK_PID" wrk
  stop_pid "$PALISADE_PID" palisade
  stop_pid "$BARE_PID" bare-axum
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    if ((rc != 0 && LOGS_SHOWN == 0)) && [[ -f "$TMP/palisade.log" ]]; then
      log "last lines of the palisade log ($TMP/palisade.log):"
      tail -n 30 "$TMP/palisade.log" >&2 || true
    fi
    if [[ "$KEEP_TMP" == 1 ]]; then
      log "kept temporary directory $TMP"
    else
      rm -rf -- "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------------------ tooling
ensure_wrk() {
  command -v wrk >/dev/null 2>&1 && return 0
  log "wrk not found; installing it with apt-get"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "wrk is missing and we are not root (install it: apt-get install -y wrk)"
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y wrk; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y wrk
  fi
  command -v wrk >/dev/null 2>&1 || die "wrk still missing after apt-get install"
}

for tool in curl cargo awk sed sort; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required"
done
ensure_wrk

# ------------------------------------------------------------------------------------------- build
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  case "$CARGO_TARGET_DIR" in
  /*) PALISADE_TARGET="$CARGO_TARGET_DIR" ;;
  *) PALISADE_TARGET="$ROOT/$CARGO_TARGET_DIR" ;;
  esac
else
  PALISADE_TARGET="$ROOT/target"
fi
readonly BARE_TARGET="$SCRIPT_DIR/bare-axum/target"
readonly PALISADE_BIN="$PALISADE_TARGET/release/palisade"
readonly BARE_BIN="$BARE_TARGET/release/bare-axum"

if [[ "$SKIP_BUILD" != 1 ]]; then
  log "building palisade (release)"
  (cd "$ROOT" && cargo build --release -p palisade-server --bin palisade)
  log "building bare-axum (release)"
  cargo build --release --locked --manifest-path "$SCRIPT_DIR/bare-axum/Cargo.toml" --target-dir "$BARE_TARGET"
fi
[[ -x "$PALISADE_BIN" ]] || die "palisade binary not found at $PALISADE_BIN"
[[ -x "$BARE_BIN" ]] || die "bare-axum binary not found at $BARE_BIN"

# ---------------------------------------------------------------------------------------- servers
TMP="$(mktemp -d "${TMPDIR:-/tmp}/palisade-bench.XXXXXX")"
log "temporary directory: $TMP"

port_is_free() { # curl exit 7 = could not connect: nobody is listening
  local rc=0
  curl -s -o /dev/null --max-time 2 "http://$HOST:$1/" || rc=$?
  ((rc == 7))
}
port_is_free "$PALISADE_PORT" || die "something already listens on $HOST:$PALISADE_PORT"
port_is_free "$BARE_PORT" || die "something already listens on $HOST:$BARE_PORT"

wait_healthy() { # wait_healthy NAME PID URL LOGFILE
  local name="$1" pid="$2" url="$3" logfile="$4" code deadline=$((SECONDS + HEALTH_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before answering $url; its output:"
      tail -n 50 "$logfile" >&2 || true
      LOGS_SHOWN=1
      die "$name did not start"
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
    [[ "$code" == 200 ]] && return 0
    sleep 0.2
  done
  die "$name did not answer 200 on $url within ${HEALTH_TIMEOUT_S}s (last status: ${code:-none})"
}

# An empty file is a valid empty SQLite database; creating it makes the URL work whether or not the
# server opens SQLite with create-if-missing.
: >"$TMP/palisade.db"
log "starting palisade on $HOST:$PALISADE_PORT (cwd $TMP)"
(
  cd "$TMP"
  export PALISADE__SERVER__LISTEN="$HOST:$PALISADE_PORT"
  export PALISADE__DATABASE__URL="sqlite://$TMP/palisade.db"
  # Forward compatibility with the rate limiter (later issue): keep it out of the way of the load.
  export PALISADE__RATE_LIMIT__ANONYMOUS__PER_SECOND=1000000
  export PALISADE__RATE_LIMIT__ANONYMOUS__BURST=1000000
  exec "$PALISADE_BIN" serve
) >"$TMP/palisade.log" 2>&1 </dev/null &
PALISADE_PID=$!

log "starting bare-axum on $HOST:$BARE_PORT"
"$BARE_BIN" "$HOST:$BARE_PORT" >"$TMP/bare-axum.log" 2>&1 </dev/null &
BARE_PID=$!

wait_healthy palisade "$PALISADE_PID" "$PALISADE_URL" "$TMP/palisade.log"
wait_healthy bare-axum "$BARE_PID" "$BARE_URL" "$TMP/bare-axum.log"

BARE_BODY="$(curl -s --max-time 2 "$BARE_URL")"
PALISADE_BODY="$(curl -s --max-time 2 "$PALISADE_URL")"
log "bare-axum /health -> $BARE_BODY"
log "palisade  /health -> $PALISADE_BODY"
[[ "$BARE_BODY" == "$PALISADE_BODY" ]] || log "warning: the two /health bodies differ; the handlers are not identical"

# ------------------------------------------------------------------------------------ measurement
WRK_VERSION="$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//')" || true
wrk_cmd() { # wrk_cmd DURATION URL: the exact command line, also recorded in the JSON
  printf 'wrk -t%s -c%s -d%s --latency %s' "$THREADS" "$CONNECTIONS" "$1" "$2"
}

# Latency token from wrk (e.g. 812.00us, 8.41ms, 1.02s, 1.50m) -> milliseconds.
to_ms() {
  awk -v t="$1" 'BEGIN {
    if (match(t, /^[0-9.]+/) == 0) { print "null"; exit }
    v = substr(t, 1, RLENGTH); u = substr(t, RLENGTH + 1)
    if (u == "us") f = 0.001; else if (u == "ms") f = 1; else if (u == "s") f = 1000
    else if (u == "m") f = 60000; else if (u == "h") f = 3600000; else { print "null"; exit }
    printf "%.3f", v * f
  }'
}

# run_wrk SIDE URL DURATION OUTFILE: runs wrk and sets RPS, P99_MS, NON2XX, SOCKERR.
run_wrk() {
  local side="$1" url="$2" dur="$3" out="$4" cmd p99
  cmd="$(wrk_cmd "$dur" "$url")"
  # In the background + `wait`, so that SIGINT/SIGTERM reach our trap at once instead of after the run.
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency "$url" >"$out" 2>&1 </dev/null &
  WRK_PID=$!
  local rc=0
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  if ((rc != 0)); then
    cat "$out" >&2
    die "wrk failed against $side (exit $rc): $cmd"
  fi
  RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
  p99="$(awk '$1 == "99%" { print $2 }' "$out")"
  [[ -n "$RPS" && -n "$p99" ]] || {
    cat "$out" >&2
    die "could not parse wrk output for $side"
  }
  P99_MS="$(to_ms "$p99")"
  NON2XX="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
  NON2XX="${NON2XX:-0}"
  # "Socket errors: connect 0, read 0, write 0, timeout 0"
  SOCKERR="$(awk '/^  Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")"
  SOCKERR="${SOCKERR:-0}"
}

median() { # median N1 N2 ...
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "null"; exit }
    if (NR % 2) printf "%.4f", a[(NR + 1) / 2]; else printf "%.4f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "null"; else printf "%.4f", a / b }'; }

if [[ "$WARMUP" != 0 ]]; then
  log "warm-up: $WARMUP per side (discarded)"
  run_wrk bare "$BARE_URL" "$WARMUP" "$TMP/wrk-warmup-bare.txt"
  run_wrk palisade "$PALISADE_URL" "$WARMUP" "$TMP/wrk-warmup-palisade.txt"
fi

declare -a B_RPS=() B_P99=() B_NON2XX=() B_SOCK=() P_RPS=() P_P99=() P_NON2XX=() P_SOCK=() R_RATIO=()
ERRORS=0
START_ISO="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "measuring: $ROUNDS rounds of [bare, palisade], each: $(wrk_cmd "$DURATION" "http://$HOST:PORT/health")"
assert_alive() { # a server that died mid-run would make its figures meaningless
  kill -0 "$PALISADE_PID" 2>/dev/null || die "palisade exited during the measurements"
  kill -0 "$BARE_PID" 2>/dev/null || die "bare-axum exited during the measurements"
}
assert_alive
for ((r = 1; r <= ROUNDS; r++)); do
  run_wrk bare "$BARE_URL" "$DURATION" "$TMP/wrk-round$r-bare.txt"
  assert_alive
  B_RPS+=("$RPS") B_P99+=("$P99_MS") B_NON2XX+=("$NON2XX") B_SOCK+=("$SOCKERR")
  run_wrk palisade "$PALISADE_URL" "$DURATION" "$TMP/wrk-round$r-palisade.txt"
  assert_alive
  P_RPS+=("$RPS") P_P99+=("$P99_MS") P_NON2XX+=("$NON2XX") P_SOCK+=("$SOCKERR")
  R_RATIO+=("$(ratio "${P_RPS[r - 1]}" "${B_RPS[r - 1]}")")
  log "round $r/$ROUNDS: bare ${B_RPS[r - 1]} req/s p99 ${B_P99[r - 1]} ms | palisade ${P_RPS[r - 1]} req/s p99 ${P_P99[r - 1]} ms | ratio ${R_RATIO[r - 1]}"
  for n in "${B_NON2XX[r - 1]}" "${B_SOCK[r - 1]}" "${P_NON2XX[r - 1]}" "${P_SOCK[r - 1]}"; do
    ((n == 0)) || ERRORS=1
  done
done

MED_B_RPS="$(median "${B_RPS[@]}")"
MED_P_RPS="$(median "${P_RPS[@]}")"
MED_B_P99="$(median "${B_P99[@]}")"
MED_P_P99="$(median "${P_P99[@]}")"
RATIO="$(ratio "$MED_P_RPS" "$MED_B_RPS")"
MED_ROUND_RATIO="$(median "${R_RATIO[@]}")"
GOAL_MET="$(awk -v r="$RATIO" -v g="$GOAL_RATIO" 'BEGIN { print (r != "null" && r + 0 >= g + 0) ? "true" : "false" }')"

# ------------------------------------------------------------------------------------------ report
{
  echo
  echo "Palisade pipeline vs bare axum — GET /health on $HOST, $ROUNDS rounds alternating bare/palisade"
  echo "each run: $(wrk_cmd "$DURATION" "http://$HOST:PORT/health")"
  echo
  printf '%-6s | %14s %12s | %14s %12s | %8s\n' round "bare req/s" "bare p99 ms" "palis. req/s" "palis. p99" "ratio"
  printf '%s\n' "-------+-----------------------------+-----------------------------+---------"
  for ((i = 0; i < ROUNDS; i++)); do
    printf '%-6s | %14.2f %12.3f | %14.2f %12.3f | %8.4f\n' "$((i + 1))" \
      "${B_RPS[i]}" "${B_P99[i]}" "${P_RPS[i]}" "${P_P99[i]}" "${R_RATIO[i]}"
  done
  printf '%s\n' "-------+-----------------------------+-----------------------------+---------"
  printf '%-6s | %14.2f %12.3f | %14.2f %12.3f | %8.4f\n' median \
    "$MED_B_RPS" "$MED_B_P99" "$MED_P_RPS" "$MED_P_P99" "$MED_ROUND_RATIO"
  echo
  echo "ratio palisade/bare of median req/s: $RATIO   (goal >= $GOAL_RATIO: $([[ $GOAL_MET == true ]] && echo MET || echo MISSED))"
  echo "median of per-round ratios:          $MED_ROUND_RATIO"
  echo "p99 (median): bare $MED_B_P99 ms, palisade $MED_P_P99 ms"
  if ((ERRORS)); then
    echo "WARNING: some runs saw non-2xx responses or socket errors; their req/s is not comparable (see JSON)"
  fi
}

json_array() { # json_array V1 V2 ... -> [V1,V2,...] (numbers)
  local IFS=,
  printf '[%s]' "$*"
}
json_str() { # minimal JSON string escaping (backslash, quote, control chars dropped)
  printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

GIT_COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
GIT_DIRTY="$(if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ]]; then echo true; else echo false; fi)"
RUSTC_VERSION="$(rustc --version 2>/dev/null || echo unknown)"

mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/pipeline-$(date -u +%Y%m%dT%H%M%SZ).json"
{
  printf '{\n'
  printf '  "benchmark": "pipeline",\n'
  printf '  "started_at": %s,\n' "$(json_str "$START_ISO")"
  printf '  "finished_at": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
  printf '  "git_commit": %s,\n' "$(json_str "$GIT_COMMIT")"
  printf '  "git_dirty": %s,\n' "$GIT_DIRTY"
  printf '  "machine": {"cpus": %s, "kernel": %s, "rustc": %s, "wrk": %s},\n' \
    "$(nproc 2>/dev/null || echo null)" "$(json_str "$(uname -srm)")" "$(json_str "$RUSTC_VERSION")" "$(json_str "$WRK_VERSION")"
  printf '  "config": {"rounds": %s, "duration": %s, "connections": %s, "threads": %s, "warmup": %s, "order": "bare,palisade per round"},\n' \
    "$ROUNDS" "$(json_str "$DURATION")" "$CONNECTIONS" "$THREADS" "$(json_str "$WARMUP")"
  printf '  "commands": {"script": %s, "bare": %s, "palisade": %s},\n' \
    "$(json_str "bench/pipeline.sh (ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS WARMUP=$WARMUP)")" \
    "$(json_str "$(wrk_cmd "$DURATION" "$BARE_URL")")" "$(json_str "$(wrk_cmd "$DURATION" "$PALISADE_URL")")"
  printf '  "health_body": {"bare": %s, "palisade": %s},\n' "$(json_str "$BARE_BODY")" "$(json_str "$PALISADE_BODY")"
  printf '  "rounds": [\n'
  for ((i = 0; i < ROUNDS; i++)); do
    printf '    {"round": %d, "bare": {"rps": %s, "p99_ms": %s, "non_2xx": %s, "socket_errors": %s}, "palisade": {"rps": %s, "p99_ms": %s, "non_2xx": %s, "socket_errors": %s}, "ratio": %s}%s\n' \
      "$((i + 1))" "${B_RPS[i]}" "${B_P99[i]}" "${B_NON2XX[i]}" "${B_SOCK[i]}" \
      "${P_RPS[i]}" "${P_P99[i]}" "${P_NON2XX[i]}" "${P_SOCK[i]}" "${R_RATIO[i]}" \
      "$([[ $i -lt $((ROUNDS - 1)) ]] && echo ,)"
  done
  printf '  ],\n'
  printf '  "bare": {"rps": %s, "p99_ms": %s, "median_rps": %s, "median_p99_ms": %s},\n' \
    "$(json_array "${B_RPS[@]}")" "$(json_array "${B_P99[@]}")" "$MED_B_RPS" "$MED_B_P99"
  printf '  "palisade": {"rps": %s, "p99_ms": %s, "median_rps": %s, "median_p99_ms": %s},\n' \
    "$(json_array "${P_RPS[@]}")" "$(json_array "${P_P99[@]}")" "$MED_P_RPS" "$MED_P_P99"
  printf '  "ratio_median_rps": %s,\n' "$RATIO"
  printf '  "median_round_ratio": %s,\n' "$MED_ROUND_RATIO"
  printf '  "goal_ratio": %s,\n' "$GOAL_RATIO"
  printf '  "goal_met": %s,\n' "$GOAL_MET"
  printf '  "errors_seen": %s\n' "$([[ $ERRORS == 1 ]] && echo true || echo false)"
  printf '}\n'
} >"$RESULT_FILE"
log "wrote $RESULT_FILE"

if ((ERRORS)); then
  exit 3
fi
if [[ "$ENFORCE_GOAL" == 1 && "$GOAL_MET" != true ]]; then
  log "goal missed: ratio $RATIO < $GOAL_RATIO"
  exit 1
fi
exit 0
