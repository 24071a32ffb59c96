#!/usr/bin/env bash
# bench/resources.sh: declared resources (issue 6), measured in ONE run, loopback only:
#   W1  authenticated read by id: GET /v1/customers/{id} with an ES512 bearer token (full pipeline, guard,
#       capability decision, field masks, ETag over RFC 8785 JCS);
#   W2  authenticated create: POST /v1/customers (validation, record, indexed fields, audit hash-chain
#       entry, all in one write transaction);
#   W4  the W1 read with an API key (X-API-Key, capability customers.read) instead of the bearer token,
#       alternated with W1 in the same rounds (issue 7);
#   half-load p99: W1 and W2 at half their measured median throughput, rate-controlled by `oha`
#       (--latency-correction, so queueing delay counts), when oha is installed (`cargo install oha`);
#   bare  bench/bare-axum reading the same row from the same SQLite file with one bound query and no
#       authentication: the practical limit W1 is compared against.
# W1 and W2 run on SQLite (the embedded default) and, when a PostgreSQL URL is given, on PostgreSQL (in a
# fresh schema dropped afterwards). Rounds alternate bare and W1 so drift hits both sides alike.
#
# Usage (from anywhere):   bench/resources.sh
# Environment (all optional):
#   ROUNDS=3              measured rounds of each workload
#   DURATION=10s          wrk duration of each measured run
#   CONNECTIONS=32        wrk connections (-c)
#   THREADS=2             wrk threads (-t)
#   WARMUP=2s             discarded wrk run before each workload (0 to skip)
#   PG_URL=$TEST_DATABASE_URL   PostgreSQL to measure on (empty: SQLite only)
#   PORT=18092 BARE_PORT=18093  loopback ports
#   SKIP_BUILD=1          reuse the release binaries already built
#   RESULTS_DIR=bench/results   where the JSON goes
#   KEEP_TMP=1            keep the temporary directory
#   HALF_LOAD=1           run the half-load p99 phase (needs oha; 0 to skip)
#
# Rate limits stay on with a quota no benchmark reaches, so the limiter's cost is measured but it never
# answers 429 (the example palisade.toml allows a user 10 requests/s).
#
# Needs: wrk (installed with apt-get if missing), python3, curl, cargo, psql (for PostgreSQL).
# Exit status: 0 ok; 1 setup failure; 3 some request failed (non-2xx or socket errors).

set -euo pipefail

readonly HOST=127.0.0.1
readonly OWNER_EMAIL=owner@localhost
readonly TENANT=system

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
readonly SCRIPT_DIR ROOT

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-2s}"
PG_URL="${PG_URL-${TEST_DATABASE_URL:-}}"
PORT="${PORT:-18092}"
BARE_PORT="${BARE_PORT:-18093}"
SKIP_BUILD="${SKIP_BUILD:-0}"
RESULTS_DIR="${RESULTS_DIR:-$SCRIPT_DIR/results}"
KEEP_TMP="${KEEP_TMP:-0}"
HALF_LOAD="${HALF_LOAD:-1}"

log() { printf '[resources] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ "$DURATION" =~ ^[0-9]+[smh]?$ ]] || die "DURATION must look like 10s"
[[ "$WARMUP" == 0 || "$WARMUP" =~ ^[0-9]+[smh]?$ ]] || die "WARMUP must look like 2s or be 0"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ && "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "bad CONNECTIONS/THREADS"

readonly BASE_URL="http://$HOST:$PORT"
readonly BARE_URL="http://$HOST:$BARE_PORT"

TMP=""
PALISADE_PID=""
BARE_PID=""
PG_SCHEMA=""
FAILED=0

stop_pid() {
  local pid="$1" i
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PALISADE_PID"
  stop_pid "$BARE_PID"
  if [[ -n "$PG_SCHEMA" ]]; then
    psql "$PG_URL" -q -c "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" >/dev/null 2>&1 || true
  fi
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    if ((rc != 0)) && [[ -f "$TMP/palisade.log" ]]; then tail -n 30 "$TMP/palisade.log" >&2 || true; fi
    if [[ "$KEEP_TMP" == 1 ]]; then log "kept $TMP"; else rm -rf -- "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v wrk >/dev/null 2>&1; then
  log "wrk not found; installing it with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
for tool in wrk curl python3 awk; do command -v "$tool" >/dev/null || die "'$tool' is required"; done
if [[ -n "$PG_URL" ]]; then command -v psql >/dev/null || die "psql is required for PG_URL"; fi

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$ROOT/$TARGET"
readonly PALISADE_BIN="$TARGET/release/palisade"
readonly BARE_BIN="$SCRIPT_DIR/bare-axum/target/release/bare-axum"
if [[ "$SKIP_BUILD" != 1 ]]; then
  log "building palisade and bare-axum (release)"
  (cd "$ROOT" && cargo build --release -p palisade-server --bin palisade)
  (cd "$SCRIPT_DIR/bare-axum" && cargo build --release)
fi
[[ -x "$PALISADE_BIN" && -x "$BARE_BIN" ]] || die "release binaries missing (build without SKIP_BUILD=1)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/palisade-bench-resources.XXXXXX")"
cat >"$TMP/create.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"name":"Bench Customer","tier":"pro"}'
LUA

wait_healthy() { # wait_healthy PID URL
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$1" 2>/dev/null || die "server exited before answering $2/health"
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2/health" || true)" == 200 ]] && return 0
    sleep 0.2
  done
  die "no 200 from $2/health within 60 s"
}

# start_palisade BACKEND: a fresh working directory with the example palisade.toml (customers, invoices,
# notes) on SQLite, or on PostgreSQL in a fresh schema.
start_palisade() {
  local backend="$1"
  stop_pid "$PALISADE_PID"
  WORK="$TMP/$backend"
  mkdir -p "$WORK"
  cp "$ROOT/palisade.toml" "$WORK/palisade.toml"
  (
    cd "$WORK"
    export PALISADE__SERVER__LISTEN="$HOST:$PORT"
    export PALISADE__LOG__LEVEL=warn
    export PALISADE__SERVER__MAX_CONCURRENCY=4096
    export PALISADE__RATE_LIMIT__DEFAULT__PER_SECOND=1000000
    export PALISADE__RATE_LIMIT__DEFAULT__BURST=1000000
    if [[ "$backend" == postgres ]]; then
      export PALISADE__DATABASE__URL="$PG_URL"
      export PALISADE__DATABASE__SCHEMA="$PG_SCHEMA"
      export PALISADE__DATABASE__MAX_CONNECTIONS=16
    fi
    exec "$PALISADE_BIN" serve
  ) >>"$TMP/palisade.log" 2>&1 </dev/null &
  PALISADE_PID=$!
  wait_healthy "$PALISADE_PID" "$BASE_URL"
}

json_field() {
  python3 -c 'import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print(v if isinstance(v, str) else "")' "$1"
}

sign_in() { # sets TOKEN (ES512 access token of the owner)
  local outbox="$WORK/data/outbox.ndjson" before=0 body challenge code="" i
  [[ -f "$outbox" ]] && before="$(wc -l <"$outbox")"
  body="$(curl -sS -X POST "$BASE_URL/v1/auth/otp/start" -H 'content-type: application/json' \
    -d "{\"channel\":\"email\",\"destination\":\"$OWNER_EMAIL\",\"tenant\":\"$TENANT\"}")"
  challenge="$(json_field challenge_id <<<"$body")"
  [[ -n "$challenge" ]] || die "otp/start: $body"
  for ((i = 0; i < 100; i++)); do
    if [[ -f "$outbox" ]] && (($(wc -l <"$outbox") > before)); then
      code="$(tail -n 1 "$outbox" | json_field code)"
      [[ -n "$code" ]] && break
    fi
    sleep 0.05
  done
  [[ -n "$code" ]] || die "no one-time code in $outbox"
  body="$(curl -sS -X POST "$BASE_URL/v1/auth/otp/verify" -H 'content-type: application/json' \
    -d "{\"challenge_id\":\"$challenge\",\"code\":\"$code\"}")"
  TOKEN="$(json_field access_token <<<"$body")"
  [[ -n "$TOKEN" ]] || die "otp/verify gave no access token"
}

create_customer() { # sets RECORD_ID
  local body
  body="$(curl -sS -X POST "$BASE_URL/v1/customers" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"name":"Ada Lovelace","email":"ada@example.com","tier":"pro"}')"
  RECORD_ID="$(json_field id <<<"$body")"
  [[ -n "$RECORD_ID" ]] || die "create failed: $body"
}

create_api_key() { # sets API_KEY (customers.read only)
  local body
  body="$(curl -sS -X POST "$BASE_URL/v1/api-keys" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"name":"bench","capabilities":["customers.read"]}')"
  API_KEY="$(json_field key <<<"$body")"
  [[ -n "$API_KEY" ]] || die "API key creation failed: $body"
}

# half_load LABEL RATE URL [oha args...]: p99 at a fixed request rate; appends "LABEL rps p99_ms".
half_load() {
  local label="$1" rate="$2" url="$3" out p99 rps
  shift 3
  out="$(oha --no-tui --latency-correction -z "$DURATION" -q "$rate" -c "$CONNECTIONS" --output-format json "$@" "$url" 2>&1)" ||
    die "oha failed: $out"
  read -r rps p99 < <(python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
codes = d.get("statusCodeDistribution", {})
bad = sum(n for c, n in codes.items() if not c.startswith("2"))
# Requests still in flight when the duration ends are cut off by oha; that is not a failure.
errors = {e: n for e, n in d.get("errorDistribution", {}).items() if e != "aborted due to deadline"}
if bad or errors:
    print("bad", "bad")
    print("status codes:", codes, "errors:", errors, file=sys.stderr)
else:
    print(round(d["summary"]["requestsPerSec"], 2), round(d["latencyPercentiles"]["p99"] * 1000, 3))' <<<"$out")
  if [[ "$rps" == bad ]]; then
    FAILED=1
    log "$label: non-2xx responses or errors"
    return 0
  fi
  printf '%s %s %s\n' "$label" "$rps" "$p99" >>"$TMP/figures"
  log "$label: $rps req/s offered at $rate, p99 $p99 ms"
}

to_ms() {
  awk -v t="$1" 'BEGIN {
    if (match(t, /^[0-9.]+/) == 0) { print "null"; exit }
    v = substr(t, 1, RLENGTH); u = substr(t, RLENGTH + 1)
    if (u == "us") f = 0.001; else if (u == "ms") f = 1; else if (u == "s") f = 1000; else { print "null"; exit }
    printf "%.3f", v * f
  }'
}

# run_wrk LABEL DURATION URL [wrk args...]: appends "LABEL rps p99_ms" to $TMP/figures.
run_wrk() {
  local label="$1" dur="$2" url="$3" out rps p99 bad
  shift 3
  out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency "$@" "$url" 2>&1)" || die "wrk failed: $out"
  [[ "$label" == warmup ]] && return 0
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
  bad="$(awk '/Non-2xx or 3xx responses:/ {print $NF} /Socket errors:/ {print "sock"}' <<<"$out")"
  if [[ -n "$bad" ]]; then
    FAILED=1
    log "$label: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')"
  fi
  printf '%s %s %s\n' "$label" "$rps" "$p99" >>"$TMP/figures"
  log "$label: $rps req/s, p99 $p99 ms"
}

measure() { # measure BACKEND
  local backend="$1" auth=(-H "Authorization: Bearer $TOKEN") r
  local read_url="$BASE_URL/v1/customers/$RECORD_ID"
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$read_url")" == 200 ]] || die "W1 probe failed"
  if [[ "$backend" == sqlite ]]; then
    local tenant
    tenant="$(python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT tenant_id FROM records WHERE id = ?", (sys.argv[2],)).fetchone()[0])' \
      "$WORK/data/palisade.db" "$RECORD_ID")"
    BARE_AXUM_SQLITE="$WORK/data/palisade.db" BARE_AXUM_TENANT="$tenant" \
      "$BARE_BIN" "$HOST:$BARE_PORT" >>"$TMP/bare.log" 2>&1 </dev/null &
    BARE_PID=$!
    wait_healthy "$BARE_PID" "$BARE_URL"
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BARE_URL/v1/customers/$RECORD_ID")" == 200 ]] ||
      die "bare probe failed"
    [[ "$WARMUP" == 0 ]] || run_wrk warmup "$WARMUP" "$BARE_URL/v1/customers/$RECORD_ID"
  fi
  [[ "$WARMUP" == 0 ]] || run_wrk warmup "$WARMUP" "$read_url" "${auth[@]}"
  local key=(-H "X-API-Key: $API_KEY")
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "${key[@]}" "$read_url")" == 200 ]] || die "W4 probe failed"
  for ((r = 1; r <= ROUNDS; r++)); do
    if [[ "$backend" == sqlite ]]; then run_wrk bare "$DURATION" "$BARE_URL/v1/customers/$RECORD_ID"; fi
    run_wrk "w1-$backend" "$DURATION" "$read_url" "${auth[@]}"
    run_wrk "w4-$backend" "$DURATION" "$read_url" "${key[@]}"
  done
  if [[ "$backend" == sqlite ]]; then
    stop_pid "$BARE_PID"
    BARE_PID=""
  fi
  local create_args=("${auth[@]}" -H 'Content-Type: application/json' -s "$TMP/create.lua")
  [[ "$WARMUP" == 0 ]] || run_wrk warmup "$WARMUP" "$BASE_URL/v1/customers" "${create_args[@]}"
  for ((r = 1; r <= ROUNDS; r++)); do
    run_wrk "w2-$backend" "$DURATION" "$BASE_URL/v1/customers" "${create_args[@]}"
  done
  if [[ "$HALF_LOAD" == 1 ]]; then
    if ! command -v oha >/dev/null 2>&1; then
      log "oha not found (cargo install oha): skipping the half-load p99 phase"
      return 0
    fi
    local w1 w2
    w1="$(median_rps "w1-$backend")"
    w2="$(median_rps "w2-$backend")"
    half_load "w1-$backend-half" "$(( ${w1%.*} / 2 ))" "$read_url" "${auth[@]}"
    half_load "w2-$backend-half" "$(( ${w2%.*} / 2 ))" "$BASE_URL/v1/customers" "${auth[@]}" \
      -m POST -T application/json -d '{"name":"Bench Customer","tier":"pro"}'
  fi
}

median_rps() { # median_rps LABEL: the median req/s of LABEL's runs so far
  awk -v l="$1" '$1 == l {print $2}' "$TMP/figures" | sort -n | awk '{a[NR] = $1} END {print (NR ? a[int((NR + 1) / 2)] : 0)}'
}

: >"$TMP/figures"
start_palisade sqlite
sign_in
create_customer
create_api_key
measure sqlite

if [[ -n "$PG_URL" ]]; then
  PG_SCHEMA="bench_resources_$$"
  psql "$PG_URL" -q -c "CREATE SCHEMA $PG_SCHEMA" >/dev/null || die "cannot create schema $PG_SCHEMA"
  start_palisade postgres
  sign_in
  create_customer
  create_api_key
  measure postgres
fi

mkdir -p "$RESULTS_DIR"
RESULT="$RESULTS_DIR/resources-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$TMP/figures" "$RESULT" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" "$(nproc)" <<'PY'
import json, statistics, sys
figures, out, rounds, duration, conns, threads, cpus = sys.argv[1:]
runs = {}
for line in open(figures):
    label, rps, p99 = line.split()
    runs.setdefault(label, []).append({"rps": float(rps), "p99_ms": None if p99 == "null" else float(p99)})
summary = {
    label: {
        "median_rps": statistics.median(r["rps"] for r in rs),
        "median_p99_ms": statistics.median(r["p99_ms"] for r in rs if r["p99_ms"] is not None),
        "runs": rs,
    }
    for label, rs in runs.items()
}
if "bare" in summary:
    for side in ("w1-sqlite", "w1-postgres", "w4-sqlite", "w4-postgres"):
        if side in summary:
            summary[side]["ratio_to_bare"] = round(summary[side]["median_rps"] / summary["bare"]["median_rps"], 3)
for backend in ("sqlite", "postgres"):
    w1, w4 = summary.get(f"w1-{backend}"), summary.get(f"w4-{backend}")
    if w1 and w4:
        w4["ratio_to_w1"] = round(w4["median_rps"] / w1["median_rps"], 3)
doc = {"benchmark": "bench/resources.sh", "rounds": int(rounds), "duration": duration,
       "connections": int(conns), "threads": int(threads), "cpus": int(cpus), "results": summary}
json.dump(doc, open(out, "w"), indent=2)
for label, s in summary.items():
    extra = f", {s['ratio_to_bare']:.2f} of bare" if "ratio_to_bare" in s else ""
    extra += f", {s['ratio_to_w1']:.2f} of W1" if "ratio_to_w1" in s else ""
    print(f"{label:12} {s['median_rps']:10.0f} req/s   p99 {s['median_p99_ms']:.2f} ms{extra}")
print(f"written: {out}")
PY
if ((FAILED)); then
  log "some requests failed (see above)"
  exit 3
fi
