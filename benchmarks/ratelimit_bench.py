"""Benchmark 1: rate-limit saturation. N processes share one API key against the simulator.

Each of N processes (default 1, 2, 4, 8) sends spot orders (limit 10/s) and order queries
(limit 2/s) on the same key as fast as its limiter lets it, for ``--duration`` seconds, to the
simulator over HTTP. Reported per limiter and N: the achieved rate as a fraction of the limit
and the count of 429 and 418 answers.

Limiters compared:

- ``treasury``: the shared :class:`~treasury.exchange.ratelimit.RedisRateLimiter` (one Lua
  script in Redis for every process), with its default safety margin (the 1 s window is
  stretched to 1.1 s, so its ceiling is 1/1.1 = 0.909 of the limit);
- ``treasury-tight``: the same limiter with ``--tight-margin`` (default 0.03 s);
- ``celery``: a Celery task with ``rate_limit="10/s"`` / ``"2/s"``, one worker process per N
  (Celery counts rate limits per worker);
- ``bucket``: a per-process token bucket like ccxt's throttler (``rateLimit`` 100 ms / 500 ms).

The simulator applies HashKey's penalties for ``treasury*`` runs (a 429 suspends the key for
60 s, and any request during the suspension is a 418 and bans the host). For the baselines the
penalties are off by default (``--baseline-penalties`` turns them on) so that they keep
running and every request over the limit is counted as a 429; the table also shows when the
first 429 came, which on the real exchange is when the 60 s suspension would begin.

    python benchmarks/ratelimit_bench.py                  # 4 limiters x N=1,2,4,8 x 60 s (~17 min)
    python benchmarks/ratelimit_bench.py --duration 20 --processes 1,8
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

LIMITS = {"order": 10.0, "query": 2.0}
LIMITERS = ("treasury", "treasury-tight", "celery", "bucket")


class CcxtThrottler:
    """ccxt's throttler: tokens refill at 1/rate_limit_ms, a request may go while tokens >= 0.

    ccxt keeps one per exchange instance, that is per process: nothing is shared.
    """

    def __init__(self, rate_limit_ms: float, capacity: float = 1.0, delay: float = 0.001) -> None:
        self.refill = 1.0 / rate_limit_ms
        self.capacity = capacity
        self.delay = delay
        self.tokens = 0.0
        self.last = time.monotonic()

    def throttle(self, cost: float = 1.0) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * 1000 * self.refill)
            self.last = now
            if self.tokens >= 0:
                self.tokens -= cost
                return
            time.sleep(self.delay)


# --------------------------------------------------------------------------- one process


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One load process: an order thread and a query thread until ``end_at``; returns counts."""
    import httpx
    import redis

    from treasury.clock import SystemClock
    from treasury.exchange.client import HashKeyClient
    from treasury.exchange.ratelimit import DEFAULT_MARGIN_SECONDS, RedisRateLimiter
    from treasury.settings import RateLimits

    clock = SystemClock()
    limiter = None
    if spec["limiter"].startswith("treasury"):
        margin = spec["margin"] if spec["margin"] is not None else DEFAULT_MARGIN_SECONDS
        limiter = RedisRateLimiter(redis.Redis.from_url(spec["redis"]), RateLimits(), clock,
                                   namespace=spec["ns"], margin=margin)
    client = HashKeyClient(spec["sim"], httpx.Client(timeout=10), clock=clock, limiter=limiter)
    profile = common.trading_profile()
    counts: Counter[str] = Counter()
    first_429: list[float] = []
    lock = threading.Lock()
    # ready: tell the parent, then wait for the common start (8 processes importing treasury on
    # 2 cores take seconds, and a fixed delay made late starters look like a slow limiter)
    print("READY", flush=True)
    timing = json.loads(sys.stdin.readline())
    start_at, end_at = timing["start_at"], timing["end_at"]

    def loop(kind: str) -> None:
        throttler = CcxtThrottler(1000 / LIMITS[kind]) if spec["limiter"] == "bucket" else None
        n = 0
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        while time.time() < end_at:
            if throttler is not None:
                throttler.throttle()
            n += 1
            status = common.send_one(client, profile, kind, f"{spec['tag']}{kind[0]}{n}")
            if time.time() > end_at:
                break  # a request let through after the window would inflate the rate by up to N
            category = common.classify(status)
            with lock:
                counts[f"{kind}:{category}"] += 1
                if category == "429":
                    first_429.append(time.time() - start_at)
            if category == "halted":
                time.sleep(0.2)  # our client refuses locally while suspended; nothing is sent

    threads = [threading.Thread(target=loop, args=(k,)) for k in LIMITS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"counts": dict(counts), "first_429": min(first_429) if first_429 else None}


# --------------------------------------------------------------------------- one configuration


def _simulator(penalties: bool) -> Any:
    from treasury.simulator import Simulator, serve

    settings: dict[str, Any] = {} if penalties else {"rate_limits": {"suspension_seconds": 0, "ban_seconds": 0}}
    return serve(Simulator(common.sim_config(**settings)))


def run_processes(limiter: str, n: int, duration: float, sim_url: str, redis: str, margin: float | None) -> dict:
    """N plain processes (treasury limiter or per-process bucket); returns merged counts."""
    ns = f"bench:rl:{secrets.token_hex(4)}"
    procs = []
    for i in range(n):
        spec = {"limiter": limiter, "sim": sim_url, "redis": redis, "ns": ns, "margin": margin,
                "tag": f"{limiter[0]}{i}x{ns[-8:]}"}
        procs.append(subprocess.Popen([common.PYTHON, __file__, "--child", json.dumps(spec)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=common.clean_env()))
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().decode().strip()
        if line != "READY":
            raise RuntimeError(f"load process did not start: {line!r}")
    start_at = time.time() + 0.2
    for p in procs:
        assert p.stdin is not None
        p.stdin.write((json.dumps({"start_at": start_at, "end_at": start_at + duration}) + "\n").encode())
        p.stdin.flush()
    counts: Counter[str] = Counter()
    firsts = []
    for p in procs:
        out, _ = p.communicate(timeout=duration + 120)
        if p.returncode != 0:
            raise RuntimeError(f"load process exited with {p.returncode}")
        got = json.loads(out.decode().strip().splitlines()[-1])
        counts.update(got["counts"])
        if got["first_429"] is not None:
            firsts.append(got["first_429"])
    common.delete_redis_keys(redis, f"{ns}:*")
    return {"counts": dict(counts), "first_429": min(firsts) if firsts else None}


def run_celery(n: int, duration: float, sim_url: str, redis: str, tmp: Path) -> dict:
    """N Celery workers per class (one process each) with rate_limit on the tasks; returns counts."""
    import redis as redis_lib

    ns = f"bench:rl:{secrets.token_hex(4)}"
    queue = f"bench-rl-{secrets.token_hex(3)}"
    bench_dir = Path(__file__).resolve().parent
    env = common.clean_env(BENCH_BROKER=redis, BENCH_SIM_URL=sim_url, BENCH_NS=ns,
                           PYTHONPATH=f"{bench_dir}{os.pathsep}{common.ROOT}")
    # One worker process per class and N: a worker that serves both task types stalls, because
    # queries held by the 2/s bucket fill its prefetch slots and it stops fetching orders
    # (measured: 0.24 of the order limit at N=1). Separate workers give Celery its best case.
    cluster = common.Cluster(env=env, tmp=tmp, queue=queue, app="celery_baseline")
    try:
        for kind in LIMITS:
            for i in range(n):
                cluster.start(f"{kind[0]}{i}", queue=f"{queue}-{kind}")
        for w in cluster.workers:
            common.wait_for(w.ready, 90, f"worker {w.name} to be ready")
        os.environ.update(BENCH_BROKER=redis)
        import celery_baseline

        celery_baseline.app.conf.broker_url = redis
        # enough work for every worker to run at its Celery limit for the whole window, and some
        per_worker = {k: int(v * (duration + 5) * 1.3) + 5 for k, v in LIMITS.items()}
        with celery_baseline.app.producer_or_acquire() as producer:
            for i in range(max(per_worker.values()) * n):
                for kind, task in (("order", celery_baseline.order), ("query", celery_baseline.query)):
                    if i < per_worker[kind] * n:
                        task.apply_async(args=[i], queue=f"{queue}-{kind}", producer=producer)
        # the window opens once everything is queued and every worker process has its client
        # built (each first task says so, then waits for the window)
        r = redis_lib.Redis.from_url(redis)
        common.wait_for(lambda: r.scard(f"{ns}:warm") >= len(cluster.workers), 90,
                        "every Celery baseline worker to be warm")
        start_at = time.time() + 0.5
        r.set(f"{ns}:window", f"{start_at},{start_at + duration}")
        wait = start_at + duration - time.time()
        if wait > 0:
            time.sleep(wait)
        time.sleep(0.5)  # let the last answers be counted
        raw = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in r.hgetall(f"{ns}:counts").items()}
        first = r.get(f"{ns}:first429")
        r.delete(f"{queue}-order", f"{queue}-query")
        r.close()
    finally:
        cluster.stop_all()
        common.delete_redis_keys(redis, f"{ns}:*", f"*{queue}*")
    return {"counts": raw, "first_429": float(first) if first else None}


def figures(limiter: str, n: int, duration: float, got: dict[str, Any], penalties: bool) -> dict[str, Any]:
    c = got["counts"]
    row: dict[str, Any] = {"limiter": limiter, "processes": n, "penalties": penalties}
    for kind, limit in LIMITS.items():
        ok = c.get(f"{kind}:ok", 0)
        row[f"{kind}_admitted"] = ok
        row[f"{kind}_rate"] = round(ok / duration, 3)
        row[f"{kind}_fraction"] = round(ok / duration / limit, 3)
        row[f"{kind}_429"] = c.get(f"{kind}:429", 0)
        row[f"{kind}_418"] = c.get(f"{kind}:418", 0)
        row[f"{kind}_halted"] = c.get(f"{kind}:halted", 0)
        row[f"{kind}_errors"] = c.get(f"{kind}:error", 0)
    row["total_429"] = row["order_429"] + row["query_429"]
    row["total_418"] = row["order_418"] + row["query_418"]
    row["first_429_s"] = None if got["first_429"] is None else round(got["first_429"], 2)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per configuration (default 60)")
    parser.add_argument("--processes", default="1,2,4,8", help="comma-separated N values (default 1,2,4,8)")
    parser.add_argument("--limiters", default=",".join(LIMITERS), help=f"subset of {','.join(LIMITERS)}")
    parser.add_argument("--tight-margin", type=float, default=0.03,
                        help="window margin in seconds for treasury-tight (default 0.03)")
    parser.add_argument("--baseline-penalties", action="store_true",
                        help="keep the 60 s suspension and 418 ban on for the baselines too")
    parser.add_argument("--quick", action="store_true", help="a few seconds: N=2, 1.5 s, no Celery")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--keep-rows", type=Path, default=None,
                        help="a previous result whose rows for limiters not run now are kept")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.quick:
        args.duration, args.processes, args.limiters = 1.5, "2", "treasury,bucket"
    ns_values = [int(x) for x in args.processes.split(",") if x.strip()]
    limiters = [x.strip() for x in args.limiters.split(",") if x.strip()]
    unknown = set(limiters) - set(LIMITERS)
    if unknown:
        parser.error(f"--limiters: unknown {sorted(unknown)}; choose from {','.join(LIMITERS)}")
    redis = common.redis_url(common.REDIS_DB["ratelimit"])
    common.require_redis(redis)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp:
        for limiter in limiters:
            for n in ns_values:
                penalties = limiter.startswith("treasury") or args.baseline_penalties
                server = _simulator(penalties)
                try:
                    if limiter == "celery":
                        got = run_celery(n, args.duration, server.url, redis, Path(tmp))
                    else:
                        margin = args.tight_margin if limiter == "treasury-tight" else None
                        got = run_processes(limiter, n, args.duration, server.url, redis, margin)
                finally:
                    server.shutdown()
                row = figures(limiter, n, args.duration, got, penalties)
                rows.append(row)
                print(f"  {limiter:15} N={n}: orders {row['order_fraction']:.3f}, queries "
                      f"{row['query_fraction']:.3f} of the limit; 429s {row['total_429']}, "
                      f"418s {row['total_418']}", flush=True)
    if args.keep_rows is not None:
        old = json.loads(args.keep_rows.read_text())["rows"]
        rows = [r for r in old if r["limiter"] not in limiters] + rows
        rows.sort(key=lambda r: (LIMITERS.index(r["limiter"]), r["processes"]))
    common.print_table(
        f"Rate-limit saturation: one key, orders limit 10/s, queries limit 2/s, {args.duration:g} s each",
        ["limiter", "N", "orders/limit", "queries/limit", "429s", "418s", "first 429 (s)", "penalties"],
        [[r["limiter"], r["processes"], r["order_fraction"], r["query_fraction"], r["total_429"],
          r["total_418"], r["first_429_s"], r["penalties"]] for r in rows],
    )
    ours = [r for r in rows if r["limiter"].startswith("treasury")]
    target = {r["limiter"] + f"/N={r['processes']}": bool(
        r["order_fraction"] >= 0.95 and r["query_fraction"] >= 0.95 and r["total_429"] == 0 and r["total_418"] == 0)
        for r in ours}
    common.write_result("ratelimit_bench", {"duration_seconds": args.duration, "limits": LIMITS, "rows": rows,
                                            "target_met": target}, args, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
