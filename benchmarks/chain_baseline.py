"""Baseline for engine_bench.py: a bare Celery chain of no-op tasks through the same Redis.

``celery -A chain_baseline worker`` (with ``benchmarks/`` on ``PYTHONPATH``) runs one task,
``step(run, i, steps)``, that does nothing but queue ``step(run, i + 1, steps)`` (as the run
service queues a run's next step once one has finished) and count itself in Redis. It has the
treasury worker's delivery settings (late acks, requeue on a lost worker, prefetch 1), so the
difference from the engine's figure is what a step's own work costs.
Read by the environment: ``BENCH_BROKER`` (Redis URL), ``BENCH_NS`` (key prefix), ``BENCH_QUEUE``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/8")
NS = os.environ.get("BENCH_NS", "bench:chain")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-chain")

app = Celery("chain_baseline", broker=BROKER, set_as_current=False)
app.conf.update(task_ignore_result=True, task_acks_late=True, task_reject_on_worker_lost=True,
                worker_prefetch_multiplier=1, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, task_serializer="json", accept_content=["json"],
                task_default_queue=QUEUE)

_redis: dict[int, Any] = {}


def _r() -> Any:
    pid = os.getpid()
    if pid not in _redis:
        import redis

        _redis.clear()
        _redis[pid] = redis.Redis.from_url(BROKER)
    return _redis[pid]


@app.task(name="chain_baseline.step", ignore_result=True, acks_late=True)
def step(run: int, i: int, steps: int) -> None:
    """One no-op step: queue the next one of the run, then count this one."""
    if i + 1 < steps:
        step.apply_async(args=[run, i + 1, steps], queue=QUEUE)
    _r().incr(f"{NS}:done")
