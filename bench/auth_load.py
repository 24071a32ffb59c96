#!/usr/bin/env python3
"""bench/auth_load.py: sign-ins per second (POST /v1/auth/otp/verify -> tokens) against a running Palisade.

Driven by bench/auth.sh; it can also be run by hand against a development server whose outbox it can read.
Python 3.11+, standard library only. Traffic goes to 127.0.0.1 only (the host is not configurable).

Each round:
  phase A (not timed): creates N challenges one after the other (POST /v1/auth/otp/start) and pairs each
    challenge id with its code from the outbox. The server delivers codes off the request path (a spawned
    task), so two deliveries could in principle land out of order; to pair without guessing, phase A waits
    for each challenge's code line before it starts the next challenge.
  phase B (timed): runs the N POST /v1/auth/otp/verify calls from T threads, each with its own keep-alive
    connection, and measures sign-ins/s, per-request latency, failures, the client's own CPU time and (with
    --server-pid, Linux) the server's CPU time.

stdout: the result table (text). stderr: progress. --json-out: everything, as JSON.
Exit status: 0 ok; 1 setup failure (server unreachable, no code in the outbox, ...); 3 some sign-in failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"  # loopback only, by design: never make this configurable
EXIT_SETUP = 1
EXIT_FAILED_REQUESTS = 3


class SetupError(Exception):
    """The benchmark could not be set up; nothing was measured."""


def log(msg: str) -> None:
    print(f"[auth_load] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ helpers
def post_json(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, bytes]:
    """POSTs JSON on a keep-alive connection; returns (status, body). The body is always read fully,
    so the connection can be reused."""
    payload = json.dumps(body).encode()
    conn.request(
        "POST",
        path,
        body=payload,
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil(n * pct / 100), at least 1
    return sorted_values[int(rank) - 1]


def proc_cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process (Linux /proc), in seconds; None when unavailable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the full line)
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Outbox:
    """Reads the development outbox (one JSON object per line) from a byte offset on."""

    def __init__(self, path: str, destination: str) -> None:
        self.path = path
        self.destination = destination
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.partial = b""

    def _new_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()  # an incomplete last line waits for the rest of it
        return [line for line in lines if line.strip()]

    def next_code(self, timeout_s: float) -> str:
        """Waits for the next code line for our destination (notices and other destinations are skipped)."""
        deadline = time.monotonic() + timeout_s
        pause = 0.0002
        while True:
            for raw in self._new_lines():
                try:
                    line = json.loads(raw)
                except ValueError as e:
                    raise SetupError(f"outbox line is not JSON: {e}") from None
                if line.get("destination") == self.destination and isinstance(line.get("code"), str):
                    return line["code"]
            if time.monotonic() > deadline:
                raise SetupError(f"no code for {self.destination} appeared in {self.path} within {timeout_s}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)


# ------------------------------------------------------------------------------------------ phases
def phase_a(args: argparse.Namespace, n: int) -> list[tuple[str, str]]:
    """Creates n challenges and pairs each with its code. Not timed."""
    outbox = Outbox(args.outbox, args.email)
    conn = http.client.HTTPConnection(HOST, args.port, timeout=args.timeout)
    pairs: list[tuple[str, str]] = []
    body = {"channel": "email", "destination": args.email, "tenant": args.tenant}
    try:
        for i in range(n):
            try:
                status, data = post_json(conn, "/v1/auth/otp/start", body)
            except (OSError, http.client.HTTPException) as e:
                raise SetupError(f"otp/start #{i + 1} failed: {type(e).__name__}: {e}") from None
            if status != 202:
                raise SetupError(f"otp/start #{i + 1} answered {status}: {data[:300]!r}")
            try:
                challenge_id = json.loads(data)["challenge_id"]
            except (ValueError, KeyError, TypeError):
                raise SetupError(f"otp/start #{i + 1}: no challenge_id in {data[:300]!r}") from None
            pairs.append((challenge_id, outbox.next_code(args.code_timeout)))
    finally:
        conn.close()
    return pairs


def phase_b(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> dict:
    """Runs the verify calls from args.threads threads. Timed."""
    lock = threading.Lock()
    next_index = [0]
    latencies: list[list[float]] = [[] for _ in range(args.threads)]
    failures: list[dict[str, int]] = [{} for _ in range(args.threads)]
    first_failure: list[str] = []
    barrier = threading.Barrier(args.threads + 1)

    def take() -> tuple[str, str] | None:
        with lock:
            i = next_index[0]
            if i >= len(pairs):
                return None
            next_index[0] = i + 1
            return pairs[i]

    def fail(k: int, reason: str, detail: str) -> None:
        failures[k][reason] = failures[k].get(reason, 0) + 1
        with lock:
            if not first_failure:
                first_failure.append(f"{reason}: {detail}")

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(HOST, args.port, timeout=args.timeout)
        try:
            conn.connect()  # connect before the clock starts
        except OSError as e:
            fail(k, "connect", str(e))
            barrier.wait()
            return
        barrier.wait()
        try:
            while (item := take()) is not None:
                challenge_id, code = item
                t0 = time.perf_counter()
                try:
                    status, data = post_json(conn, "/v1/auth/otp/verify", {"challenge_id": challenge_id, "code": code})
                except (OSError, http.client.HTTPException) as e:
                    # No retry: a verify that reached the server consumed its challenge.
                    fail(k, type(e).__name__, str(e))
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, args.port, timeout=args.timeout)
                    continue
                latencies[k].append(time.perf_counter() - t0)
                if status != 200:
                    fail(k, f"http_{status}", data[:300].decode(errors="replace"))
                    continue
                try:
                    ok = "access_token" in json.loads(data)
                except ValueError:
                    ok = False
                if not ok:  # e.g. {"mfa_required": true}: the owner has TOTP on, not a full sign-in
                    fail(k, "no_access_token", data[:300].decode(errors="replace"))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(args.threads)]
    for t in threads:
        t.start()
    server_cpu0 = proc_cpu_seconds(args.server_pid)
    barrier.wait()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    client_cpu = time.process_time() - cpu0
    server_cpu1 = proc_cpu_seconds(args.server_pid)
    server_cpu = None if server_cpu0 is None or server_cpu1 is None else server_cpu1 - server_cpu0

    lat = sorted(x for per in latencies for x in per)
    fails: dict[str, int] = {}
    for per in failures:
        for reason, count in per.items():
            fails[reason] = fails.get(reason, 0) + count
    n_failed = sum(fails.values())
    n_ok = len(pairs) - n_failed
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    return {
        "requests": len(pairs),
        "ok": n_ok,
        "failed": n_failed,
        "failures": fails,
        "first_failure": first_failure[0] if first_failure else None,
        "wall_s": round(wall, 4),
        "signins_per_s": round(n_ok / wall, 2) if wall > 0 else None,
        "p50_ms": None if p50 is None else round(p50 * 1000, 3),
        "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3) if lat else None,
        "client_cpu_s": round(client_cpu, 3),
        "client_cores": round(client_cpu / wall, 3) if wall > 0 else None,
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "server_cores": None if server_cpu is None or wall <= 0 else round(server_cpu / wall, 3),
        "server_cpu_ms_per_signin": None
        if server_cpu is None or n_ok == 0
        else round(server_cpu * 1000 / n_ok, 3),
    }


# ------------------------------------------------------------------------------------------ main
def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="Palisade's port on 127.0.0.1")
    p.add_argument("--outbox", required=True, help="the server's data_dir/outbox.ndjson")
    p.add_argument("--count", type=int, default=2000, help="sign-ins per round (default 2000)")
    p.add_argument("--threads", type=int, default=8, help="client threads in phase B (default 8)")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--warmup", type=int, default=100, help="sign-ins of a discarded warm-up round (0: none)")
    p.add_argument("--email", default="owner@localhost", help="the account that signs in")
    p.add_argument("--tenant", default="system", help="its tenant's slug")
    p.add_argument("--server-pid", type=int, default=None, help="server pid, to read its CPU time (Linux)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request socket timeout, s")
    p.add_argument("--code-timeout", type=float, default=10.0, help="max wait for a code in the outbox, s")
    p.add_argument("--json-out", default=None, help="write the results here as JSON")
    args = p.parse_args()
    for name in ("count", "threads", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0 or not 1 <= args.port <= 65535:
        p.error("--warmup must be >= 0 and --port a port")

    rounds: list[dict] = []
    try:
        if args.warmup:
            log(f"warm-up: {args.warmup} sign-ins (discarded)")
            w = phase_b(args, phase_a(args, args.warmup))
            if w["failed"]:
                log(f"warm-up: {w['failed']} failed sign-ins ({w['first_failure']})")
                rounds.append({"round": 0, "warmup": True, **w})
        for r in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            pairs = phase_a(args, args.count)
            setup_s = time.perf_counter() - t0
            res = {"round": r, "phase_a_s": round(setup_s, 3), **phase_b(args, pairs)}
            rounds.append(res)
            log(
                f"round {r}/{args.rounds}: {res['signins_per_s']} sign-ins/s, p50 {res['p50_ms']} ms, "
                f"p99 {res['p99_ms']} ms, failed {res['failed']}, client CPU {res['client_cpu_s']} s "
                f"over {res['wall_s']} s wall (phase A {res['phase_a_s']} s)"
            )
    except SetupError as e:
        log(f"error: {e}")
        return EXIT_SETUP

    measured = [r for r in rounds if not r.get("warmup")]
    summary = {
        "config": {
            "count": args.count,
            "threads": args.threads,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "email": args.email,
            "tenant": args.tenant,
            "client": f"python {sys.version.split()[0]} http.client, {args.threads} threads, keep-alive",
        },
        "rounds": rounds,
        "median_signins_per_s": median([r["signins_per_s"] for r in measured]),
        "median_p50_ms": median([r["p50_ms"] for r in measured]),
        "median_p99_ms": median([r["p99_ms"] for r in measured]),
        "median_client_cores": median([r["client_cores"] for r in measured]),
        "median_server_cores": median([r["server_cores"] for r in measured]),
        "median_server_cpu_ms_per_signin": median([r["server_cpu_ms_per_signin"] for r in measured]),
        "failed_total": sum(r["failed"] for r in rounds),
    }
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")

    def num(v: float | None, fmt: str) -> str:
        return format("-", ">" + fmt.split(".")[0]) if v is None else format(v, fmt)

    out = [
        f"Sign-ins: POST /v1/auth/otp/verify -> tokens, {args.count} per round, {args.threads} client threads "
        f"(keep-alive), {args.rounds} rounds",
        "",
        f"{'round':<6} | {'sign-ins/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'failed':>6} | "
        f"{'client CPU s':>12} {'client cores':>12} | {'server cores':>12} {'srv CPU ms/op':>13}",
        "-------+---------------------------------------+---------------------------+---------------------------",
    ]
    for r in measured:
        out.append(
            f"{r['round']:<6} | {num(r['signins_per_s'], '10.2f')} {num(r['p50_ms'], '9.3f')} "
            f"{num(r['p99_ms'], '9.3f')} {r['failed']:>6} | {num(r['client_cpu_s'], '12.3f')} "
            f"{num(r['client_cores'], '12.3f')} | {num(r['server_cores'], '12.3f')} "
            f"{num(r['server_cpu_ms_per_signin'], '13.3f')}"
        )
    out.append(out[3])
    out.append(
        f"{'median':<6} | {num(summary['median_signins_per_s'], '10.2f')} {num(summary['median_p50_ms'], '9.3f')} "
        f"{num(summary['median_p99_ms'], '9.3f')} {summary['failed_total']:>6} | {'':>12} "
        f"{num(summary['median_client_cores'], '12.3f')} | {num(summary['median_server_cores'], '12.3f')} "
        f"{num(summary['median_server_cpu_ms_per_signin'], '13.3f')}"
    )
    out.append("")
    out.append(
        "The client is Python (GIL): 'client cores' near 1.0 means it, not the server, may be the bottleneck;"
    )
    out.append("client and server share the machine's cores. 'failed' must be 0 (a 401 would be a pairing error).")
    print("\n".join(out), flush=True)

    if summary["failed_total"]:
        log(f"{summary['failed_total']} sign-ins failed: {[r['first_failure'] for r in rounds if r['failed']]}")
        return EXIT_FAILED_REQUESTS
    return 0


if __name__ == "__main__":
    sys.exit(main())
