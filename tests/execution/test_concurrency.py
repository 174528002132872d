"""The same step executed at the same time by two workers moves money once.

Two threads on SQLite share one in-process simulator; two *processes* on PostgreSQL talk to
the simulator served over real HTTP. A real delay on the write keeps the first worker in
flight while the second arrives, so the second must find the lease held.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from typing import Any

import httpx
from sqlalchemy import Engine

from treasury.clock import SystemClock
from treasury.execution import ExecutionSettings, StepExecutor, StepRequest, new_run_id
from treasury.models import StepState
from treasury.simulator import Simulator, load_state, serve

from .harness import OPS, PATHS, STATE_FILE, effects, make_world

ROUNDS = 5


def test_two_threads_on_sqlite_make_one_effect(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    inner = world.client.http._transport  # the simulator handler

    class Slow(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                time.sleep(0.2)  # real time: the other thread arrives while this one is in flight
            return inner.handle_request(request)

    world.client.http = httpx.Client(transport=Slow())
    other = StepExecutor(sqlite_engine, clients=world.executor.clients, clock=world.clock,
                         settings=world.executor.settings, owner="worker:other")
    raced = 0
    for _ in range(ROUNDS):
        req = world.request("asset_transfer")
        barrier = threading.Barrier(2)
        outcomes: list[Any] = []

        def run(executor: StepExecutor, req: StepRequest = req, barrier: threading.Barrier = barrier,
                outcomes: list[Any] = outcomes) -> None:
            barrier.wait()
            outcomes.append(executor.execute(req))

        threads = [threading.Thread(target=run, args=(ex,)) for ex in (world.executor, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        states = sorted(o.state.value for o in outcomes)
        assert StepState.SUCCEEDED.value in states and set(states) <= {"SUCCEEDED", "RUNNING"}, outcomes
        assert effects(world.sim.state(), outcomes[0].client_ids[0]) == 1
        assert world.executor.execute(req).state is StepState.SUCCEEDED
        raced += states.count("RUNNING")
    assert len(world.sent(PATHS["asset_transfer"])) == ROUNDS
    assert raced > 0, "the two workers never overlapped: the test proved nothing"


def _worker(pg_url: str, sim_url: str, run_ids: list[str], barrier: Any, results: Any, name: str) -> None:
    from treasury.exchange.client import HashKeyClient
    from treasury.exchange.ratelimit import LocalRateLimiter
    from treasury.settings import RateLimits
    from treasury.store.db import make_engine

    from .harness import profile

    clock = SystemClock()
    engine = make_engine(pg_url)
    http = httpx.Client(timeout=5)
    client = HashKeyClient(sim_url, http, clock=clock, limiter=LocalRateLimiter(RateLimits(), clock))
    executor = StepExecutor(engine, clients=lambda n: (client, profile(n)), clock=clock,
                            settings=ExecutionSettings(settle_seconds=0.2, deadline_seconds=5), owner=name)
    key, params = OPS["withdraw"]
    for run_id in run_ids:
        barrier.wait(timeout=30)
        out = executor.execute(StepRequest(run_id=run_id, step_id="pay", operation="withdraw", key_profile=key,
                                           params=params, actor="alice"))
        results.put((run_id, name, out.state.value, out.client_ids[0], out.error))
    http.close()
    engine.dispose()


def test_two_processes_on_postgres_over_http_make_one_effect(pg_engine: Engine, pg_url: str) -> None:
    sim = Simulator(load_state(STATE_FILE), clock=SystemClock(), seed=1)
    # A real delay on the write: the second process arrives while the first is in flight.
    sim.set_faults([{"method": "POST", "path": PATHS["withdraw"], "mode": "latency", "seconds": 0.5}])
    server = serve(sim)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    run_ids = [new_run_id() for _ in range(3)]
    procs = [ctx.Process(target=_worker, args=(pg_url, server.url, run_ids, barrier, results, f"worker:p{i}"))
             for i in range(2)]
    try:
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in range(2 * len(run_ids))]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        state = sim.state()
    finally:
        server.shutdown()
    for run_id in run_ids:
        mine = [g for g in got if g[0] == run_id]
        states = sorted(g[2] for g in mine)
        assert "SUCCEEDED" in states and set(states) <= {"SUCCEEDED", "RUNNING"}, mine
        assert effects(state, mine[0][3]) == 1
    assert len(state["withdrawals"]) == len(run_ids)
    assert any(g[2] == "RUNNING" for g in got), "the processes never overlapped: the test proved nothing"
    assert sum(r["fired"] for r in state["faults"]) == len(run_ids)  # one POST per step reached the exchange
