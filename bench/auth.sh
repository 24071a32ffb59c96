#!/usr/bin/env bash
# bench/auth.sh: the cost of authentication on SQLite (issue 5), measured in ONE run:
#   part 1: authenticated GET /v1/me per second with the token-verification cache on and off
#           (auth.cache_verifications), the two sides alternating (on, off, on, off, ...); each side is a
#           restart of the same release binary in the same working directory (same keys, same database);
#   part 2: sign-ins per second (POST /v1/auth/otp/verify -> access + refresh token) with bench/auth_load.py.
#
# Usage (from anywhere):   bench/auth.sh
# Environment (all optional):
#   ROUNDS=5              measured rounds of part 1; each round runs cache on, then cache off
#   DURATION=10s          wrk duration of each measured run (wrk syntax: 10s, 1m); a token lives 900 s
#   CONNECTIONS=32        wrk connections (-c)
#   THREADS=2             wrk threads (-t)
#   WARMUP=2s             discarded wrk run after every (re)start, before the measured run (0 to skip)
#   SIGNINS=2000          sign-ins per round of part 2
#   SIGNIN_THREADS=8      client threads of part 2
#   SIGNIN_ROUNDS=$ROUNDS measured rounds of part 2
#   SIGNIN_WARMUP=100     sign-ins of a discarded warm-up round of part 2 (0 to skip)
#   PORT=18090            palisade's port on 127.0.0.1 (the host is fixed: loopback only)
#   SKIP_BUILD=1          reuse the release binary already built
#   PALISADE_BIN=path     use this palisade binary (implies SKIP_BUILD=1)
#   RESULTS_DIR=bench/results   where the JSON goes
#   KEEP_TMP=1            keep the temporary directory (palisade data, logs, raw wrk output)
#
# Needs: wrk (installed with apt-get if missing), python3 >= 3.11, curl, cargo, coreutils/awk/sed/sort.
# Exit status: 0 ok; 1 setup failure; 3 some request failed (non-2xx, socket error, failed sign-in).

set -euo pipefail

# ---------------------------------------------------------------------------------------------- config
readonly HOST=127.0.0.1 # loopback only, by design: never make this configurable
readonly OWNER_EMAIL=owner@localhost # created with the system tenant on first start
readonly TENANT=system

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
readonly SCRIPT_DIR ROOT

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-2s}"
SIGNINS="${SIGNINS:-2000}"
SIGNIN_THREADS="${SIGNIN_THREADS:-8}"
SIGNIN_ROUNDS="${SIGNIN_ROUNDS:-$ROUNDS}"
SIGNIN_WARMUP="${SIGNIN_WARMUP:-100}"
PORT="${PORT:-18090}"
SKIP_BUILD="${SKIP_BUILD:-0}"
RESULTS_DIR="${RESULTS_DIR:-$SCRIPT_DIR/results}"
KEEP_TMP="${KEEP_TMP:-0}"
HEALTH_TIMEOUT_S=60
CODE_TIMEOUT_S=10

log() { printf '[auth] %s\n' "$*" >&2; }
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
[[ "$WARMUP" == 0 ]] || is_wrk_duration "$WARMUP" || die "WARMUP must look like 2s, or be 0 (got '$WARMUP')"
is_pos_int "$SIGNINS" || die "SIGNINS must be a positive integer (got '$SIGNINS')"
is_pos_int "$SIGNIN_THREADS" || die "SIGNIN_THREADS must be a positive integer (got '$SIGNIN_THREADS')"
is_pos_int "$SIGNIN_ROUNDS" || die "SIGNIN_ROUNDS must be a positive integer (got '$SIGNIN_ROUNDS')"
is_uint "$SIGNIN_WARMUP" || die "SIGNIN_WARMUP must be a non-negative integer (got '$SIGNIN_WARMUP')"
is_port "$PORT" || die "PORT is not a port: '$PORT'"

readonly BASE_URL="http://$HOST:$PORT"
readonly ME_URL="$BASE_URL/v1/me"

# ------------------------------------------------------------------------------------ cleanup (trap)
TMP=""
PALISADE_PID=""
WRK_PID=""
LOAD_PID=""
LOGS_SHOWN=0

# shellcheck disable=SC2317 # only reached through the EXIT trap and restarts
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
  stop_pid "$LOAD_PID" auth_load.py
  stop_pid "$PALISADE_PID" palisade
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

for tool in curl awk sed sort python3; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required"
done
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
  die "python3 >= 3.11 is required (found $(python3 --version 2>&1))"
[[ -f "$SCRIPT_DIR/auth_load.py" ]] || die "missing $SCRIPT_DIR/auth_load.py"
ensure_wrk

# ------------------------------------------------------------------------------------------- build
if [[ -n "${PALISADE_BIN:-}" ]]; then
  SKIP_BUILD=1
else
  if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    case "$CARGO_TARGET_DIR" in
    /*) PALISADE_TARGET="$CARGO_TARGET_DIR" ;;
    *) PALISADE_TARGET="$ROOT/$CARGO_TARGET_DIR" ;;
    esac
  else
    PALISADE_TARGET="$ROOT/target"
  fi
  PALISADE_BIN="$PALISADE_TARGET/release/palisade"
fi
readonly PALISADE_BIN

if [[ "$SKIP_BUILD" != 1 ]]; then
  command -v cargo >/dev/null 2>&1 || die "'cargo' is required (or SKIP_BUILD=1 / PALISADE_BIN=...)"
  log "building palisade (release; waits for cargo's lock if another build uses the target directory)"
  (cd "$ROOT" && cargo build --release -p palisade-server --bin palisade)
fi
[[ -x "$PALISADE_BIN" ]] || die "palisade binary not found at $PALISADE_BIN"

# ---------------------------------------------------------------------------------------- server
TMP="$(mktemp -d "${TMPDIR:-/tmp}/palisade-bench-auth.XXXXXX")"
readonly WORK="$TMP/work" # palisade's working directory: its ./data (keys, SQLite, outbox) lands here
mkdir -p "$WORK"
readonly OUTBOX="$WORK/data/outbox.ndjson"
log "temporary directory: $TMP"

port_is_free() { # curl exit 7 = could not connect: nobody is listening
  local rc=0
  curl -s -o /dev/null --max-time 2 "http://$HOST:$1/" || rc=$?
  ((rc == 7))
}
port_is_free "$PORT" || die "something already listens on $HOST:$PORT"

wait_healthy() { # wait_healthy PID
  local pid="$1" code="" deadline=$((SECONDS + HEALTH_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "palisade exited before answering $BASE_URL/health; its output:"
      tail -n 50 "$TMP/palisade.log" >&2 || true
      LOGS_SHOWN=1
      die "palisade did not start"
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE_URL/health" || true)"
    [[ "$code" == 200 ]] && return 0
    sleep 0.2
  done
  die "palisade did not answer 200 on $BASE_URL/health within ${HEALTH_TIMEOUT_S}s (last status: ${code:-none})"
}

STARTS=0
# start_palisade on|off: (re)starts palisade in $WORK with the verification cache on or off.
start_palisade() {
  local cache="$1" cache_value
  case "$cache" in
  on) cache_value=true ;;
  off) cache_value=false ;;
  *) die "start_palisade: bad argument '$cache'" ;;
  esac
  stop_pid "$PALISADE_PID" palisade
  PALISADE_PID=""
  port_is_free "$PORT" || die "something still listens on $HOST:$PORT after stopping palisade"
  STARTS=$((STARTS + 1))
  printf '\n===== bench/auth.sh: start %d, auth.cache_verifications=%s =====\n' "$STARTS" "$cache_value" >>"$TMP/palisade.log"
  (
    cd "$WORK"
    export PALISADE__SERVER__LISTEN="$HOST:$PORT"
    export PALISADE__AUTH__CACHE_VERIFICATIONS="$cache_value"
    # Measure the work, not the refusals: lift the one-time-code limits (per IP, per destination, daily).
    export PALISADE__AUTH__OTP__PER_IP__COUNT=1000000000
    export PALISADE__AUTH__OTP__PER_DESTINATION__COUNT=1000000000
    export PALISADE__AUTH__OTP__DAILY_CAP_EMAIL=1000000000
    # The limiter runs on every request but never trips (one user, one IP, many requests).
    export PALISADE__RATE_LIMIT__DEFAULT__PER_SECOND=1000000 PALISADE__RATE_LIMIT__DEFAULT__BURST=1000000
    export PALISADE__RATE_LIMIT__AUTH__PER_SECOND=1000000 PALISADE__RATE_LIMIT__AUTH__BURST=1000000
    exec "$PALISADE_BIN" serve
  ) >>"$TMP/palisade.log" 2>&1 </dev/null &
  PALISADE_PID=$!
  wait_healthy "$PALISADE_PID"
}

assert_alive() { # a server that died mid-run would make its figures meaningless
  kill -0 "$PALISADE_PID" 2>/dev/null || die "palisade exited during the measurements"
}

# JSON helpers (python3 is required anyway by auth_load.py).
json_field() { # json_field KEY < JSON: prints the string value of a top-level key, or nothing
  python3 -c 'import json, sys
try:
    v = json.load(sys.stdin).get(sys.argv[1])
except (ValueError, AttributeError):
    v = None
print(v if isinstance(v, str) else "")' "$1"
}
line_count() { if [[ -f "$1" ]]; then wc -l <"$1"; else echo 0; fi; }

# sign_in: one sign-in with curl (otp/start -> code from the outbox -> otp/verify); sets TOKEN.
sign_in() {
  local before resp status body challenge code deadline
  before="$(line_count "$OUTBOX")"
  resp="$(curl -sS --max-time 10 -w '\n%{http_code}' -X POST "$BASE_URL/v1/auth/otp/start" \
    -H 'content-type: application/json' \
    -d "{\"channel\":\"email\",\"destination\":\"$OWNER_EMAIL\",\"tenant\":\"$TENANT\"}")" ||
    die "otp/start: curl failed"
  status="${resp##*$'\n'}"
  body="${resp%$'\n'*}"
  [[ "$status" == 202 ]] || die "otp/start answered $status: $body"
  challenge="$(json_field challenge_id <<<"$body")"
  [[ -n "$challenge" ]] || die "otp/start: no challenge_id in $body"
  code=""
  deadline=$((SECONDS + CODE_TIMEOUT_S))
  while [[ -z "$code" ]] && ((SECONDS < deadline)); do
    if (($(line_count "$OUTBOX") > before)); then
      code="$(tail -n "+$((before + 1))" "$OUTBOX" | python3 -c 'import json, sys
for raw in sys.stdin:
    try:
        line = json.loads(raw)
    except ValueError:
        continue
    if line.get("destination") == sys.argv[1] and isinstance(line.get("code"), str):
        print(line["code"])
        break' "$OWNER_EMAIL")"
    fi
    [[ -n "$code" ]] || sleep 0.05
  done
  [[ -n "$code" ]] || die "no code for $OWNER_EMAIL in $OUTBOX within ${CODE_TIMEOUT_S}s"
  resp="$(curl -sS --max-time 10 -w '\n%{http_code}' -X POST "$BASE_URL/v1/auth/otp/verify" \
    -H 'content-type: application/json' \
    -d "{\"challenge_id\":\"$challenge\",\"code\":\"$code\"}")" || die "otp/verify: curl failed"
  status="${resp##*$'\n'}"
  body="${resp%$'\n'*}"
  [[ "$status" == 200 ]] || die "otp/verify answered $status: $(printf '%s' "$body" | head -c 300)"
  TOKEN="$(json_field access_token <<<"$body")"
  [[ -n "$TOKEN" ]] || die "otp/verify: no access_token (TOTP enrolled for $OWNER_EMAIL?)"
}

# me_body: GET /v1/me with $TOKEN; must answer 200. Sets ME_BODY.
me_body() {
  local resp status
  resp="$(curl -sS --max-time 10 -w '\n%{http_code}' -H "Authorization: Bearer $TOKEN" "$ME_URL")" ||
    die "GET /v1/me: curl failed"
  status="${resp##*$'\n'}"
  ME_BODY="${resp%$'\n'*}"
  [[ "$status" == 200 ]] || die "GET /v1/me answered $status: $ME_BODY"
}

# ------------------------------------------------------------------------------------ measurement
WRK_VERSION="$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//')" || true
wrk_cmd() { # wrk_cmd DURATION: the command line as recorded (the token is not)
  printf "wrk -t%s -c%s -d%s --latency -H 'Authorization: Bearer <token>' %s" "$THREADS" "$CONNECTIONS" "$1" "$ME_URL"
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

CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
cpu_seconds() { # cpu_seconds PID: utime + stime of a process, from /proc (Linux); "null" elsewhere
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || {
    echo null
    return 0
  }
  # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  awk -v s="${stat##*) }" -v hz="$CLK_TCK" 'BEGIN { split(s, f, " "); printf "%.2f", (f[12] + f[13]) / hz }'
}

# run_wrk SIDE DURATION OUTFILE: runs wrk against /v1/me with $TOKEN; sets RPS, P99_MS, NON2XX, SOCKERR,
# REQS and SRV_CPU (server CPU seconds during the run).
run_wrk() {
  local side="$1" dur="$2" out="$3" p99 cpu0 cpu1
  cpu0="$(cpu_seconds "$PALISADE_PID")"
  # In the background + `wait`, so that SIGINT/SIGTERM reach our trap at once instead of after the run.
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency -H "Authorization: Bearer $TOKEN" "$ME_URL" \
    >"$out" 2>&1 </dev/null &
  WRK_PID=$!
  local rc=0
  wait "$WRK_PID" || rc=$?
  WRK_PID=""
  cpu1="$(cpu_seconds "$PALISADE_PID")"
  if ((rc != 0)); then
    cat "$out" >&2
    die "wrk failed against cache $side (exit $rc): $(wrk_cmd "$dur")"
  fi
  RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
  p99="$(awk '$1 == "99%" { print $2 }' "$out")"
  REQS="$(awk '/ requests in / { print $1 }' "$out")"
  [[ -n "$RPS" && -n "$p99" && -n "$REQS" ]] || {
    cat "$out" >&2
    die "could not parse wrk output for cache $side"
  }
  P99_MS="$(to_ms "$p99")"
  NON2XX="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
  NON2XX="${NON2XX:-0}"
  # "Socket errors: connect 0, read 0, write 0, timeout 0"
  SOCKERR="$(awk '/^  Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")"
  SOCKERR="${SOCKERR:-0}"
  SRV_CPU="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { if (a == "null" || b == "null") print "null"; else printf "%.2f", b - a }')"
}

median() { # median N1 N2 ... ("null" values are ignored)
  printf '%s\n' "$@" | { grep -v '^null$' || true; } | sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "null"; exit }
    if (NR % 2) printf "%.4f", a[(NR + 1) / 2]; else printf "%.4f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b + 0 == 0) print "null"; else printf "%.4f", a / b }'; }
round1() { awk -v v="$1" 'BEGIN { if (v == "null") print "null"; else printf "%.1f", v }'; }
us_per_req() { # us_per_req CPU_SECONDS REQUESTS: server CPU microseconds per request
  awk -v c="$1" -v n="$2" 'BEGIN { if (c == "null" || n + 0 == 0) print "null"; else printf "%.1f", c * 1e6 / n }'
}

declare -a ON_RPS=() ON_P99=() ON_NON2XX=() ON_SOCK=() ON_CPU_US=()
declare -a OFF_RPS=() OFF_P99=() OFF_NON2XX=() OFF_SOCK=() OFF_CPU_US=() R_RATIO=()
ERRORS=0
ME_BODY_ON=""
ME_BODY_OFF=""
START_ISO="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# measure_me SIDE ROUND: restart with the cache on|off, sign in, check /v1/me, warm up, measure.
measure_me() {
  local side="$1" r="$2"
  start_palisade "$side"
  sign_in
  me_body
  if [[ "$side" == on ]]; then ME_BODY_ON="$ME_BODY"; else ME_BODY_OFF="$ME_BODY"; fi
  if [[ "$WARMUP" != 0 ]]; then
    run_wrk "$side" "$WARMUP" "$TMP/wrk-round$r-$side-warmup.txt"
  fi
  run_wrk "$side" "$DURATION" "$TMP/wrk-round$r-$side.txt"
  assert_alive
  ((NON2XX == 0 && SOCKERR == 0)) || ERRORS=1
}

log "part 1: GET /v1/me, $ROUNDS rounds of [cache on, cache off], each (after a restart, a sign-in and a $WARMUP warm-up): $(wrk_cmd "$DURATION")"
for ((r = 1; r <= ROUNDS; r++)); do
  measure_me on "$r"
  ON_RPS+=("$RPS") ON_P99+=("$P99_MS") ON_NON2XX+=("$NON2XX") ON_SOCK+=("$SOCKERR")
  ON_CPU_US+=("$(us_per_req "$SRV_CPU" "$REQS")")
  measure_me off "$r"
  OFF_RPS+=("$RPS") OFF_P99+=("$P99_MS") OFF_NON2XX+=("$NON2XX") OFF_SOCK+=("$SOCKERR")
  OFF_CPU_US+=("$(us_per_req "$SRV_CPU" "$REQS")")
  R_RATIO+=("$(ratio "${OFF_RPS[r - 1]}" "${ON_RPS[r - 1]}")")
  log "round $r/$ROUNDS: cache on ${ON_RPS[r - 1]} req/s p99 ${ON_P99[r - 1]} ms | cache off ${OFF_RPS[r - 1]} req/s p99 ${OFF_P99[r - 1]} ms | off/on ${R_RATIO[r - 1]}"
  for n in "${ON_NON2XX[r - 1]}" "${ON_SOCK[r - 1]}" "${OFF_NON2XX[r - 1]}" "${OFF_SOCK[r - 1]}"; do
    ((n == 0)) || log "round $r: non-2xx responses or socket errors (see the JSON)"
  done
done
[[ "$ME_BODY_ON" == "$ME_BODY_OFF" ]] || log "warning: GET /v1/me answered differently with the cache on and off"

MED_ON_RPS="$(median "${ON_RPS[@]}")"
MED_OFF_RPS="$(median "${OFF_RPS[@]}")"
MED_ON_P99="$(median "${ON_P99[@]}")"
MED_OFF_P99="$(median "${OFF_P99[@]}")"
MED_ON_CPU_US="$(round1 "$(median "${ON_CPU_US[@]}")")"
MED_OFF_CPU_US="$(round1 "$(median "${OFF_CPU_US[@]}")")"
RATIO="$(ratio "$MED_OFF_RPS" "$MED_ON_RPS")"
MED_ROUND_RATIO="$(median "${R_RATIO[@]}")"

log "part 2: sign-ins, $SIGNIN_ROUNDS rounds of $SIGNINS with $SIGNIN_THREADS client threads (cache on: the default)"
start_palisade on
SIGNIN_RC=0
python3 "$SCRIPT_DIR/auth_load.py" --port "$PORT" --outbox "$OUTBOX" \
  --count "$SIGNINS" --threads "$SIGNIN_THREADS" --rounds "$SIGNIN_ROUNDS" --warmup "$SIGNIN_WARMUP" \
  --email "$OWNER_EMAIL" --tenant "$TENANT" --server-pid "$PALISADE_PID" --code-timeout "$CODE_TIMEOUT_S" \
  --json-out "$TMP/signin.json" >"$TMP/signin-table.txt" </dev/null &
LOAD_PID=$!
wait "$LOAD_PID" || SIGNIN_RC=$?
LOAD_PID=""
assert_alive
case "$SIGNIN_RC" in
0) ;;
3) ERRORS=1 ;;
*) die "bench/auth_load.py failed (exit $SIGNIN_RC)" ;;
esac
[[ -s "$TMP/signin.json" ]] || die "bench/auth_load.py wrote no results"
signin_get() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print("null" if v is None else v)' "$TMP/signin.json" "$1"; }
MED_SIGNINS="$(signin_get median_signins_per_s)"
MED_SIGNIN_P99="$(signin_get median_p99_ms)"
MED_CLIENT_CORES="$(signin_get median_client_cores)"

# ------------------------------------------------------------------------------------------ report
{
  echo
  echo "Palisade authentication on SQLite — $HOST, one run"
  echo
  echo "Part 1: GET /v1/me, verification cache on vs off, $ROUNDS rounds alternating on/off (restart before each run)"
  echo "each run: $(wrk_cmd "$DURATION")"
  echo
  printf '%-6s | %12s %10s %10s | %12s %10s %10s | %8s\n' round "on req/s" "on p99 ms" "on cpu us" \
    "off req/s" "off p99 ms" "off cpu us" "off/on"
  printf '%s\n' "-------+-----------------------------------+-----------------------------------+---------"
  for ((i = 0; i < ROUNDS; i++)); do
    printf '%-6s | %12.2f %10.3f %10s | %12.2f %10.3f %10s | %8.4f\n' "$((i + 1))" \
      "${ON_RPS[i]}" "${ON_P99[i]}" "${ON_CPU_US[i]}" "${OFF_RPS[i]}" "${OFF_P99[i]}" "${OFF_CPU_US[i]}" "${R_RATIO[i]}"
  done
  printf '%s\n' "-------+-----------------------------------+-----------------------------------+---------"
  printf '%-6s | %12.2f %10.3f %10s | %12.2f %10.3f %10s | %8.4f\n' median \
    "$MED_ON_RPS" "$MED_ON_P99" "$MED_ON_CPU_US" "$MED_OFF_RPS" "$MED_OFF_P99" "$MED_OFF_CPU_US" "$MED_ROUND_RATIO"
  echo
  echo "ratio off/on of median req/s: $RATIO"
  echo "median of per-round ratios:   $MED_ROUND_RATIO"
  echo "p99 (median): cache on $MED_ON_P99 ms, cache off $MED_OFF_P99 ms"
  echo "cpu us = the server's CPU time (user+system) per request during the run, in microseconds"
  echo
  echo "Part 2:"
  cat "$TMP/signin-table.txt"
  echo
  echo "sign-ins/s (median): $MED_SIGNINS   p99 (median): $MED_SIGNIN_P99 ms   client cores (median): $MED_CLIENT_CORES"
  if ((ERRORS)); then
    echo "WARNING: some requests failed (non-2xx, socket errors or failed sign-ins); those figures are not comparable (see JSON)"
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
PYTHON_VERSION="$(python3 --version 2>&1)"

mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/auth-$(date -u +%Y%m%dT%H%M%SZ).json"
{
  printf '{\n'
  printf '  "benchmark": "auth",\n'
  printf '  "database": "sqlite",\n'
  printf '  "started_at": %s,\n' "$(json_str "$START_ISO")"
  printf '  "finished_at": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
  printf '  "git_commit": %s,\n' "$(json_str "$GIT_COMMIT")"
  printf '  "git_dirty": %s,\n' "$GIT_DIRTY"
  printf '  "machine": {"cpus": %s, "kernel": %s, "rustc": %s, "wrk": %s, "python": %s},\n' \
    "$(nproc 2>/dev/null || echo null)" "$(json_str "$(uname -srm)")" "$(json_str "$RUSTC_VERSION")" \
    "$(json_str "$WRK_VERSION")" "$(json_str "$PYTHON_VERSION")"
  printf '  "config": {"rounds": %s, "duration": %s, "connections": %s, "threads": %s, "warmup": %s, "signins": %s, "signin_threads": %s, "signin_rounds": %s, "signin_warmup": %s, "order": "cache on, cache off per round; restart before each run"},\n' \
    "$ROUNDS" "$(json_str "$DURATION")" "$CONNECTIONS" "$THREADS" "$(json_str "$WARMUP")" \
    "$SIGNINS" "$SIGNIN_THREADS" "$SIGNIN_ROUNDS" "$SIGNIN_WARMUP"
  printf '  "server_env": {"PALISADE__AUTH__OTP__PER_IP__COUNT": 1000000000, "PALISADE__AUTH__OTP__PER_DESTINATION__COUNT": 1000000000, "PALISADE__AUTH__OTP__DAILY_CAP_EMAIL": 1000000000, "PALISADE__RATE_LIMIT__DEFAULT|AUTH__PER_SECOND|BURST": 1000000, "PALISADE__AUTH__CACHE_VERIFICATIONS": "true (on) | false (off)"},\n'
  printf '  "commands": {"script": %s, "me": %s, "signin": %s},\n' \
    "$(json_str "bench/auth.sh (ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS WARMUP=$WARMUP SIGNINS=$SIGNINS SIGNIN_THREADS=$SIGNIN_THREADS SIGNIN_ROUNDS=$SIGNIN_ROUNDS SIGNIN_WARMUP=$SIGNIN_WARMUP)")" \
    "$(json_str "$(wrk_cmd "$DURATION")")" \
    "$(json_str "python3 bench/auth_load.py --port $PORT --count $SIGNINS --threads $SIGNIN_THREADS --rounds $SIGNIN_ROUNDS --warmup $SIGNIN_WARMUP")"
  printf '  "me_body": {"cache_on": %s, "cache_off": %s},\n' "$(json_str "$ME_BODY_ON")" "$(json_str "$ME_BODY_OFF")"
  printf '  "me": {\n'
  printf '    "rounds": [\n'
  for ((i = 0; i < ROUNDS; i++)); do
    printf '      {"round": %d, "cache_on": {"rps": %s, "p99_ms": %s, "non_2xx": %s, "socket_errors": %s, "server_cpu_us_per_req": %s}, "cache_off": {"rps": %s, "p99_ms": %s, "non_2xx": %s, "socket_errors": %s, "server_cpu_us_per_req": %s}, "ratio_off_on": %s}%s\n' \
      "$((i + 1))" "${ON_RPS[i]}" "${ON_P99[i]}" "${ON_NON2XX[i]}" "${ON_SOCK[i]}" "${ON_CPU_US[i]}" \
      "${OFF_RPS[i]}" "${OFF_P99[i]}" "${OFF_NON2XX[i]}" "${OFF_SOCK[i]}" "${OFF_CPU_US[i]}" "${R_RATIO[i]}" \
      "$([[ $i -lt $((ROUNDS - 1)) ]] && echo ,)"
  done
  printf '    ],\n'
  printf '    "cache_on": {"rps": %s, "p99_ms": %s, "median_rps": %s, "median_p99_ms": %s, "median_server_cpu_us_per_req": %s},\n' \
    "$(json_array "${ON_RPS[@]}")" "$(json_array "${ON_P99[@]}")" "$MED_ON_RPS" "$MED_ON_P99" "$MED_ON_CPU_US"
  printf '    "cache_off": {"rps": %s, "p99_ms": %s, "median_rps": %s, "median_p99_ms": %s, "median_server_cpu_us_per_req": %s},\n' \
    "$(json_array "${OFF_RPS[@]}")" "$(json_array "${OFF_P99[@]}")" "$MED_OFF_RPS" "$MED_OFF_P99" "$MED_OFF_CPU_US"
  printf '    "ratio_off_on_median_rps": %s,\n' "$RATIO"
  printf '    "median_round_ratio_off_on": %s\n' "$MED_ROUND_RATIO"
  printf '  },\n'
  printf '  "signin": '
  sed '1!s/^/  /' "$TMP/signin.json" | sed '$s/$/,/'
  printf '  "errors_seen": %s\n' "$([[ $ERRORS == 1 ]] && echo true || echo false)"
  printf '}\n'
} >"$RESULT_FILE"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$RESULT_FILE" || die "wrote invalid JSON to $RESULT_FILE"
log "wrote $RESULT_FILE"

if ((ERRORS)); then
  exit 3
fi
exit 0
