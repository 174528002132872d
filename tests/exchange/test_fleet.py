"""Four worker processes share one API key through the Redis limiter, against the simulator over
real HTTP: no 429 from the exchange, no window over the limit, silence after an injected 429
until the suspension ends, and silence after an injected 418 until a person resumes."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.exchange import fleet_worker
from treasury.clock import ManualClock
from treasury.exchange import RedisRateLimiter
from treasury.settings import RateLimits
from treasury.simulator import Simulator, serve
from treasury.simulator.state import load_state

CONFIG = Path(__file__).resolve().parents[2] / "config" / "simulator.yaml"
ORDER_PATH = "/api/v1.1/spot/order"
WORKERS = 4
LIMIT = 20  # orders per second, shortened so the test is quick
SUSPENSION = 1.5  # seconds, shortened from 60
# Requests already on the wire, or granted in the few milliseconds before the worker that got the
# 429/418 has written the halt to Redis, may still arrive; after that, nothing may.
GRACE = 0.25
MAX_STRAGGLERS = 2 * WORKERS


class Timeline:
    """Wraps the simulator to record when each order request arrived and what it was answered."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.events: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def process(self, req: Any, **kwargs: Any) -> Any:
        arrived = time.monotonic()
        answer = self.sim.process(req, **kwargs)
        if req.path == ORDER_PATH:
            with self._lock:
                self.events.append((arrived, answer.status))
        return answer

    def first(self, status: int) -> float | None:
        with self._lock:
            return next((t for t, s in self.events if s == status), None)

    def wait_for(self, status: int, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first(status)
            if found is not None:
                return found
            time.sleep(0.01)
        raise AssertionError(f"no HTTP {status} within {timeout} s")

    def between(self, start: float, end: float) -> list[tuple[float, int]]:
        with self._lock:
            return [e for e in self.events if start < e[0] < end]


def max_per_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    worst, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        worst = max(worst, hi - lo + 1)
    return worst


@pytest.mark.redis
@pytest.mark.slow
def test_fleet_shares_one_budget_and_obeys_429_and_418(redis_url: str) -> None:
    # The shared redis_url fixture flushes database 15 around every test, and other test runs on
    # this Redis do the same at any moment; a flush mid-run would erase the halts under test.
    # A database of its own and a unique namespace (cleaned up below) avoid that.
    redis_url = redis_url.rsplit("/", 1)[0] + "/13"
    cfg = load_state(CONFIG).tuned(rate_limits={"order": LIMIT, "window_seconds": 1.0, "suspension_seconds": 60})
    sim = Simulator(cfg)  # real time
    timeline = Timeline(sim)
    server = serve(timeline)  # type: ignore[arg-type]
    namespace = f"fleet-{uuid.uuid4().hex[:8]}"
    limits = {"order": LIMIT, "suspension_seconds": SUSPENSION}
    # forkserver with the worker module preloaded: each worker starts in milliseconds instead of
    # re-importing everything (about 5 s for four spawned workers on two cores).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.exchange.fleet_worker"])
    barrier, stop, results = ctx.Barrier(WORKERS + 1), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=fleet_worker.run,
                    args=(server.url, redis_url, namespace, limits, n, barrier, stop, results))
        for n in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=60)
        t0 = time.monotonic()

        # Phase 1: plain load for about a second (two windows' worth of orders).
        time.sleep(1.0)
        sim.set_faults([{"method": "POST", "path": ORDER_PATH, "mode": "error_before", "status": 429,
                         "code": "0003", "count": 1}])
        t429 = timeline.wait_for(429)

        # Phase 2: the suspension, then traffic again.
        time.sleep(max(0.0, t429 + SUSPENSION + 0.5 - time.monotonic()))
        sim.set_faults([{"method": "POST", "path": ORDER_PATH, "mode": "error_before", "status": 418,
                         "count": 1}])
        t418 = timeline.wait_for(418)

        # Phase 3: banned until a person resumes (here after 1 s).
        time.sleep(max(0.0, t418 + 1.0 - time.monotonic()))
        RedisRateLimiter(redis.Redis.from_url(redis_url), RateLimits(), ManualClock(), namespace).resume("tester")
        t_resume = time.monotonic()
        time.sleep(0.6)
    finally:
        stop.set()
        counts: Counter[str] = Counter()
        for _ in procs:
            _worker, c = results.get(timeout=30)
            counts.update(c)
        for p in procs:
            p.join(timeout=10)
        server.shutdown()
        cleanup = redis.Redis.from_url(redis_url)
        for key in cleanup.scan_iter(f"{namespace}:*"):
            cleanup.delete(key)
        cleanup.close()

    statuses = Counter(s for _, s in timeline.events)
    story = [(round(t - t0, 3), s) for t, s in timeline.events if s != 200 or t > t429]
    print(f"fleet: t429={t429 - t0:.3f} t418={t418 - t0:.3f} resume={t_resume - t0:.3f} {story[:40]} {counts}")
    # Only the two injected errors: the exchange itself never rate-limited us.
    assert statuses[429] == 1 and statuses[418] == 1, statuses
    assert set(statuses) == {200, 429, 418}, statuses
    assert counts["RateLimited"] == 1 and counts["Banned"] == 1, counts

    # Phase 1: the four processes together stay within the limit in every 1 s window, and use it.
    phase1 = [t for t, _ in timeline.between(t0, t429)]
    assert max_per_window(phase1) <= LIMIT
    achieved = len(phase1) / (t429 - t0)
    assert 0.6 * LIMIT <= achieved <= LIMIT, achieved
    print(f"fleet: {len(phase1)} orders in {t429 - t0:.2f} s = {achieved:.1f}/s (limit {LIMIT}/s), "
          f"busiest 1 s window {max_per_window(phase1)}")

    # After the 429: only requests already on the wire, then silence until the suspension ends.
    stragglers = timeline.between(t429, t429 + GRACE)
    assert len(stragglers) <= MAX_STRAGGLERS, stragglers
    if stragglers:
        print(f"fleet: {len(stragglers)} request(s) arrived within {stragglers[-1][0] - t429:.3f} s after the 429")
    assert timeline.between(t429 + GRACE, t429 + SUSPENSION) == []
    assert len(timeline.between(t429 + SUSPENSION, t418)) > 0  # traffic came back by itself

    # After the 418: silence from every process until the resume, then traffic again.
    assert len(timeline.between(t418, t418 + GRACE)) <= MAX_STRAGGLERS
    assert timeline.between(t418 + GRACE, t_resume) == []
    assert len(timeline.between(t_resume, t_resume + 0.6)) > 0
    assert counts["halted"] > 0
