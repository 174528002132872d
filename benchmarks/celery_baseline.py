"""Baseline for ratelimit_bench.py: Celery's own ``rate_limit`` (which counts per worker).

``celery -A celery_baseline worker`` (with ``benchmarks/`` on ``PYTHONPATH``) runs two tasks,
one spot order and one order query, each limited by Celery's per-worker token bucket
(``rate_limit="10/s"`` and ``"2/s"``, the exchange's limits for one key). Each task sends one
request with the treasury client *without* its shared limiter and counts the answer in Redis.
Read by the environment: ``BENCH_BROKER`` (Redis URL), ``BENCH_SIM_URL``, ``BENCH_NS`` (key prefix).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/8")
SIM_URL = os.environ.get("BENCH_SIM_URL", "http://127.0.0.1:8765")
NS = os.environ.get("BENCH_NS", "bench:rl")
ORDER_RATE = os.environ.get("BENCH_ORDER_RATE", "10/s")
QUERY_RATE = os.environ.get("BENCH_QUERY_RATE", "2/s")

app = Celery("celery_baseline", broker=BROKER, set_as_current=False)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=4, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, task_serializer="json", accept_content=["json"])

_state: dict[str, Any] = {}


def _client() -> tuple[Any, Any, Any]:
    """This process's exchange client (no limiter: Celery's rate_limit is the only throttle)."""
    pid = os.getpid()
    if _state.get("pid") != pid:
        import httpx
        import redis
        from common import trading_profile

        from treasury.clock import SystemClock
        from treasury.exchange.client import HashKeyClient

        _state.update(pid=pid, client=HashKeyClient(SIM_URL, httpx.Client(timeout=10), clock=SystemClock()),
                      profile=trading_profile(), redis=redis.Redis.from_url(BROKER))
    return _state["client"], _state["profile"], _state["redis"]


def _window(r: Any) -> tuple[float, float]:
    """The measurement window, published in Redis by the benchmark once every task is queued.

    Before waiting, the process says it is warm (client built, modules imported), so that the
    benchmark opens the window only when every worker can send at once: a cold start on a loaded
    machine can otherwise eat a short window whole.
    """
    r.sadd(f"{NS}:warm", str(os.getpid()))
    while True:
        raw = r.get(f"{NS}:window")
        if raw:
            start_at, end_at = (float(x) for x in raw.decode().split(","))
            return start_at, end_at
        time.sleep(0.01)


def _one(kind: str, n: int) -> None:
    from common import classify, send_one

    client, profile, r = _client()
    start_at, end_at = _window(r)
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    if time.time() >= end_at:
        return
    status = send_one(client, profile, kind, f"cel{os.getpid()}x{n}")
    if time.time() > end_at:
        return  # answered after the window: not counted
    category = classify(status)
    r.hincrby(f"{NS}:counts", f"{kind}:{category}", 1)
    if category == "429":
        r.set(f"{NS}:first429", repr(time.time() - start_at), nx=True)


@app.task(name="bench.order", rate_limit=ORDER_RATE, ignore_result=True)
def order(n: int) -> None:
    _one("order", n)


@app.task(name="bench.query", rate_limit=QUERY_RATE, ignore_result=True)
def query(n: int) -> None:
    _one("query", n)
