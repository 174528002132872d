"""Benchmark 2: batch throughput. Orders per second through batch_orders (20 legs) on one key.

Batches of 20 spot orders (IOC buys far below the price, so each is accepted and cancelled at
once) go to the simulator over HTTP under its order limit of 10 per second, for
``--duration`` seconds, two ways:

- ``client``: ``HashKeyClient.call("batch_orders")`` in a loop (the limiter's ceiling);
- ``executor``: ``StepExecutor.execute`` with ``--threads`` threads, the real path of a workflow
  step: 20 execution records and their audit events in PostgreSQL per batch, then the send.

Both share one :class:`~treasury.exchange.ratelimit.RedisRateLimiter`. Each runs twice:

- ``weight 5``: batchOrders weighs 5 against the 10/s order budget, as the HashKey PRO
  reference documents (ccxt agrees), so at most 2 batches (40 orders) per second fit;
- ``weight 1``: the exchange counts a batch as 1 (HashKey Global's readme), set on the simulator
  and charged as 1 by the limiter: up to 10 batches (200 orders) per second.

The target (at least 190 orders/s per key) presumes weight 1.

    python benchmarks/batch_bench.py --duration 30
"""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

BATCH_PATH = "POST /api/v1/spot/batchOrders"
LEGS = 20


def legs(n: int = LEGS, client_ids: str | None = None) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        leg = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "price": "1",
               "quantity": "0.001"}
        if client_ids is not None:
            leg["newClientOrderId"] = f"{client_ids}-{i}"
        out.append(leg)
    return out


class WeightOne:
    """A limiter view that charges batch orders 1 instead of the registry's 5 (weight 1 mode)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def acquire(self, api_key: str, rate_class: Any, weight: int = 1) -> str | None:
        return self.inner.acquire(api_key, rate_class, 1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def measure(mode: str, weight: int, duration: float, threads: int, redis_url: str, db_url: str | None,
            margin: float | None = None) -> dict:
    import httpx
    import redis
    from common import trading_profile

    from treasury.clock import SystemClock
    from treasury.errors import ExchangeError
    from treasury.exchange.client import HashKeyClient
    from treasury.exchange.ratelimit import DEFAULT_MARGIN_SECONDS, RedisRateLimiter
    from treasury.execution import ExecutionSettings, StepExecutor, StepRequest, new_run_id
    from treasury.models import StepState
    from treasury.schema import create_schema
    from treasury.settings import RateLimits
    from treasury.simulator import Simulator, serve
    from treasury.store.db import make_engine

    tuned: dict[str, Any] = {} if weight == 5 else {"rate_limits": {"weights": {BATCH_PATH: 1}}}
    server = serve(Simulator(common.sim_config(**tuned)))
    clock = SystemClock()
    ns = f"bench:batch:{secrets.token_hex(4)}"
    margin = DEFAULT_MARGIN_SECONDS if margin is None else margin
    limiter: Any = RedisRateLimiter(redis.Redis.from_url(redis_url), RateLimits(), clock, namespace=ns, margin=margin)
    if weight == 1:
        limiter = WeightOne(limiter)
    client = HashKeyClient(server.url, httpx.Client(timeout=10), clock=clock, limiter=limiter)
    profile = trading_profile()
    engine = None
    executor = None
    if mode == "executor":
        assert db_url is not None
        engine = make_engine(db_url)
        create_schema(engine)
        executor = StepExecutor(engine, clients=lambda name: (client, profile), clock=clock,
                                settings=ExecutionSettings(settle_seconds=0.5, deadline_seconds=10))
    orders = failed = errors = batches = 0
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()
    end = start + duration

    def loop(t: int) -> None:
        nonlocal orders, failed, errors, batches
        n = 0
        while time.monotonic() < end:
            n += 1
            t0 = time.monotonic()
            ok = bad = 0
            if executor is None:
                try:
                    data = client.call("batch_orders", profile, {"orders": legs(client_ids=f"b{t}x{n}{ns[-6:]}")}).data
                    for item in data.get("result", []):
                        if str(item.get("code")) in ("0", "0000"):
                            ok += 1
                        else:
                            bad += 1
                except ExchangeError:
                    bad = LEGS
            else:
                out = executor.execute(StepRequest(run_id=new_run_id(), step_id="batch", operation="batch_orders",
                                                   key_profile="trading", params={"orders": legs()},
                                                   actor="bench"))
                if out.state is StepState.SUCCEEDED:
                    ok = LEGS
                else:
                    bad = LEGS
            with lock:
                if time.monotonic() <= end + 0.5:
                    batches += 1
                    orders += ok
                    failed += bad
                    errors += bad > 0
                    latencies.append(time.monotonic() - t0)

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads if executor else 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - start
    state = server.simulator.state()
    rl = state.get("rate_limits", {})
    server.shutdown()
    if engine is not None:
        engine.dispose()
    common.delete_redis_keys(redis_url, f"{ns}:*")
    return {
        "path": mode, "weight": weight, "margin_seconds": margin, "threads": len(workers),
        "seconds": round(elapsed, 2),
        "batches": batches, "orders_accepted": orders, "orders_failed": failed,
        "orders_per_second": round(orders / elapsed, 1),
        "ceiling_orders_per_second": round(10 // weight * LEGS / (1 + margin), 1),
        "batch_latency_ms": common.summary(latencies, 1000, 1),
        "suspended_after": bool(rl.get("suspended")), "banned_after": bool(rl.get("banned")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per measurement (default 30)")
    parser.add_argument("--threads", type=int, default=4, help="executor threads (default 4)")
    parser.add_argument("--tight-margin", type=float, default=0.03,
                        help="also measure weight 1 with this limiter margin in seconds (default 0.03; 0: skip)")
    parser.add_argument("--quick", action="store_true", help="2 s per measurement, weight 1 only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.tight_margin = 2.0, 0.0
    redis_url = common.redis_url(common.REDIS_DB["batch"])
    common.require_redis(redis_url)
    rows = []
    plan: list[tuple[int, float | None]] = [(1, None)] if args.quick else [(5, None), (1, None)]
    if args.tight_margin:
        plan.append((1, args.tight_margin))
    with common.pg_schema("bench_batch") as db_url:
        for weight, margin in plan:
            for mode in ("client", "executor"):
                row = measure(mode, weight, args.duration, args.threads, redis_url, db_url, margin)
                rows.append(row)
                print(f"  weight {weight} margin {row['margin_seconds']} {mode:8}: {row['orders_per_second']} "
                      "orders/s", flush=True)
    common.print_table(
        f"Batch throughput: batch_orders of {LEGS} legs, one key, order limit 10/s, {args.duration:g} s each",
        ["path", "batch weight", "margin s", "threads", "orders/s", "ceiling", "batch p50 ms", "batch p99 ms",
         "failed legs", "429/418 seen"],
        [[r["path"], r["weight"], r["margin_seconds"], r["threads"], r["orders_per_second"],
          r["ceiling_orders_per_second"],
          r["batch_latency_ms"]["median"], r["batch_latency_ms"]["p99"], r["orders_failed"],
          r["suspended_after"] or r["banned_after"]] for r in rows],
    )
    target = {f"{r['path']}/weight {r['weight']}/margin {r['margin_seconds']}": r["orders_per_second"] >= 190
              for r in rows}
    common.write_result("batch_bench", {"legs": LEGS, "rows": rows, "target_met": target}, args, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
