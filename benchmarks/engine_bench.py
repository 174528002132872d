"""Benchmark 3: engine overhead. Steps per second, and overhead per step without the exchange.

Runs of a workflow with ``--steps`` internal-transfer steps go through the real run service
(policy, execution records, audit chain) against the simulator over HTTP with its rate limits
off, and the client's limiter raised out of the way. Two set-ups:

- ``inline``: SQLite, the inline dispatcher, one process (what ``treasury run`` does);
- ``celery``: PostgreSQL, Redis and ``--workers`` Celery worker processes (``celery -A
  treasury.worker worker -c 1`` each; the machine has 2 cores, so 2 workers). Its baseline,
  in the same run: a bare Celery chain of no-op tasks (``chain_baseline.py``) with the same
  runs, steps, workers and Redis; the target is at least half of its steps per second.

Per set-up:

- **throughput**: ``--runs`` runs are created first; for Celery their first steps wait in the
  queue while no worker runs, then the workers start and the clock runs until every step
  has finished: steps per second = steps / that time;
- **overhead per step**: one run at a time; a step's time is its ``finished_at - started_at``
  (dispatch committed to result committed) minus the time the simulator spent answering its
  request (timed inside the simulator), so the exchange's own latency is excluded;
- **1,000 waiting runs**: ``--waiting`` runs of an approval workflow are left in
  AWAITING_APPROVAL, then both measurements are repeated.

    python benchmarks/engine_bench.py                 # inline and celery
    python benchmarks/engine_bench.py --modes inline --runs 200
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

FAST = "1000000"  # client-side limits out of the way: the exchange latency is what we exclude
STEP = """\
  - id: t{i}
    op: asset_transfer
    key: transfers
    params: {{fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "0.01"}}
"""
APPROVAL = """\
name: bench-approval
description: a run that waits for approval
steps:
  - id: approve
    approval: {approvers: [alice, bob], quorum: 1, expires_in: 24h}
  - id: pay
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "0.01"}
"""


def steps_workflow(steps: int) -> str:
    head = "name: bench-steps\ndescription: internal transfers one after another\nsteps:\n"
    return head + "".join(STEP.format(i=i) for i in range(steps))


class ExchangeTimer:
    """Times every request inside the simulator, by client id (the exchange's own latency),
    and notes when each client id first arrived (wall clock)."""

    def __init__(self, sim: Any) -> None:
        self.by_client: dict[str, float] = defaultdict(float)
        self.arrived: dict[str, float] = {}
        self.all: list[float] = []
        self._lock = threading.Lock()
        inner = sim.process

        def timed(req: Any, **kw: Any) -> Any:
            wall = time.time()
            t0 = time.perf_counter()
            try:
                return inner(req, **kw)
            finally:
                dt = time.perf_counter() - t0
                params = parse_qs(req.query) | parse_qs(req.body.decode(errors="replace"))
                cid = (params.get("clientOrderId") or [""])[0]
                with self._lock:
                    self.all.append(dt)
                    if cid:
                        self.by_client[cid] += dt
                        self.arrived.setdefault(cid, wall)

        sim.process = timed


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def step_overheads(engine: Any, run_ids: list[str], timer: ExchangeTimer) -> tuple[list[float], list[float]]:
    """(step times, step times minus the simulator's time) in seconds for these runs' steps."""
    from sqlalchemy import select

    from treasury.execution import client_id_for
    from treasury.store.tables import steps

    with engine.connect() as conn:
        rows = conn.execute(select(steps.c.run_id, steps.c.step_id, steps.c.started_at, steps.c.finished_at,
                                   steps.c.state).where(steps.c.run_id.in_(run_ids),
                                                        steps.c.kind == "operation")).all()
    times, overheads = [], []
    for run_id, step_id, started, finished, state in rows:
        if state != "SUCCEEDED" or started is None or finished is None:
            continue
        total = (_utc(finished) - _utc(started)).total_seconds()
        times.append(total)
        overheads.append(total - timer.by_client.get(client_id_for(run_id, step_id), 0.0))
    return times, overheads


def count_done(engine: Any, run_ids: list[str]) -> tuple[int, int]:
    """(runs finished, runs SUCCEEDED) among ``run_ids``."""
    from sqlalchemy import func, select

    from treasury.store.tables import runs

    done = 0
    ok = 0
    with engine.connect() as conn:
        for i in range(0, len(run_ids), 1000):
            chunk = run_ids[i:i + 1000]
            for state, n in conn.execute(select(runs.c.state, func.count()).where(runs.c.id.in_(chunk))
                                         .group_by(runs.c.state)):
                if state in ("SUCCEEDED", "FAILED", "NEEDS_ATTENTION", "CANCELLED", "REJECTED", "EXPIRED"):
                    done += n
                if state == "SUCCEEDED":
                    ok += n
    return done, ok


def run_finished(engine: Any, run_id: str) -> bool:
    """Whether the run has reached a final state."""
    return count_done(engine, [run_id])[0] == 1


def settings_for(db_url: str, sim_url: str, config_dir: Path, broker: str | None = None) -> Any:
    from treasury.settings import RateLimits, Settings

    return Settings(database_url=db_url, base_url=sim_url, config_dir=config_dir, broker_url=broker,
                    rate_limits=RateLimits(query=float(FAST), order=float(FAST), transfer=float(FAST)),
                    http_timeout_seconds=1.0, recv_window_ms=1000, settle_margin_seconds=0.2)  # settle 2.2 s


def start_waiting(service: Any, n: int) -> list[str]:
    loaded = service.load_and_check(APPROVAL, source="bench-approval.yaml")
    ids = [service.start(loaded, {}, requested_by="erin") for _ in range(n)]
    return ids


# --------------------------------------------------------------------------- inline


def run_inline(args: argparse.Namespace, sim: Any, timer: ExchangeTimer, tmp: Path) -> dict[str, Any]:
    from treasury.runtime import build_runtime

    config_dir = common.copy_config(tmp / "config-inline", policy=True)
    rt = build_runtime(settings_for(f"sqlite:///{tmp}/inline.db", sim.url, config_dir))
    service = rt.service
    loaded = service.load_and_check(steps_workflow(args.steps), source="bench-steps.yaml")
    out: dict[str, Any] = {"mode": "inline", "database": "sqlite", "workers": 0}
    for phase in ("plain", "with_waiting"):
        if phase == "with_waiting":
            t0 = time.monotonic()
            start_waiting(service, args.waiting)
            out["waiting_created_seconds"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        run_ids = [service.start(loaded, {}, requested_by="erin") for _ in range(args.runs)]
        elapsed = time.monotonic() - t0
        done, ok = count_done(rt.engine, run_ids)
        times, over = step_overheads(rt.engine, run_ids, timer)
        out[phase] = phase_figures(args, done, ok, elapsed, times, over)
        print(f"  inline/{phase}: {out[phase]['steps_per_second']} steps/s, overhead median "
              f"{out[phase]['overhead_ms']['median']} ms", flush=True)
    _, out["profile"] = common.profile_summary(
        lambda: [service.start(loaded, {}, requested_by="erin") for _ in range(max(5, args.runs // 10))], top=25)
    rt.engine.dispose()
    return out


def phase_figures(args: argparse.Namespace, done: int, ok: int, elapsed: float, times: list[float],
                  over: list[float]) -> dict[str, Any]:
    steps = ok * args.steps
    return {
        "runs": args.runs, "runs_done": done, "runs_succeeded": ok, "steps": steps,
        "seconds": round(elapsed, 2), "steps_per_second": round(steps / elapsed, 1) if elapsed else None,
        "step_time_ms": common.summary(times, 1000, 2), "overhead_ms": common.summary(over, 1000, 2),
    }


# --------------------------------------------------------------------------- celery


def run_celery(args: argparse.Namespace, sim: Any, timer: ExchangeTimer, tmp: Path) -> dict[str, Any]:
    from treasury.broker.dispatch import CeleryDispatcher
    from treasury.broker.options import WorkerOptions
    from treasury.runtime import build_runtime
    from treasury.schema import create_schema
    from treasury.store.db import make_engine

    broker = common.redis_url(common.REDIS_DB["engine"])
    common.require_redis(broker)
    queue = f"bench-engine-{secrets.token_hex(3)}"
    config_dir = common.copy_config(tmp / "config-celery", policy=True)
    out: dict[str, Any] = {"mode": "celery", "database": "postgresql", "workers": args.workers,
                           "worker_concurrency": 1}
    with common.pg_schema("bench_engine") as db_url:
        engine = make_engine(db_url)
        create_schema(engine)
        settings = settings_for(db_url, sim.url, config_dir, broker)
        dispatcher = CeleryDispatcher(settings, options=WorkerOptions(queue=queue))
        rt = build_runtime(settings, engine=engine, dispatcher=dispatcher)
        service = rt.service
        loaded = service.load_and_check(steps_workflow(args.steps), source="bench-steps.yaml")
        env = common.worker_env(broker=broker, database=db_url, base_url=sim.url, config_dir=config_dir, queue=queue,
                                TREASURY_RATE_LIMITS__QUERY=FAST, TREASURY_RATE_LIMITS__ORDER=FAST,
                                TREASURY_RATE_LIMITS__TRANSFER=FAST, TREASURY_HTTP_TIMEOUT_SECONDS="1",
                                TREASURY_RECV_WINDOW_MS="1000", TREASURY_SETTLE_MARGIN_SECONDS="0.2")
        cluster = common.Cluster(env=env, tmp=tmp, queue=queue)
        # where a worker's time goes: the same service on the same database, steps run inline
        inline_rt = build_runtime(settings.model_copy(update={"broker_url": None}), engine=engine)
        t0 = time.monotonic()
        n_prof = max(4, args.latency_runs // 4)
        _, out["profile_postgresql_inline"] = common.profile_summary(
            lambda: [inline_rt.service.start(loaded, {}, requested_by="erin") for _ in range(n_prof)], top=25)
        out["postgresql_inline_ms_per_step_profiled"] = round(
            (time.monotonic() - t0) * 1000 / (n_prof * args.steps), 2)
        try:
            for phase in ("plain", "with_waiting"):
                if phase == "with_waiting":
                    t0 = time.monotonic()
                    start_waiting(service, args.waiting)
                    out["waiting_created_seconds"] = round(time.monotonic() - t0, 1)
                # overhead: one run at a time on freshly started, idle workers
                if not cluster.live():
                    cluster.start_ready(*(f"w{i}" for i in range(args.workers)), timeout=90)
                idle_times, idle_over = latency_runs(args, service, loaded, engine, timer)
                # throughput: queue the runs' first steps with no worker running, then start them
                cluster.stop_all()
                cluster.workers.clear()
                run_ids = [service.start(loaded, {}, requested_by="erin") for _ in range(args.runs)]
                cluster.start_ready(*(f"w{i}" for i in range(args.workers)), timeout=90)
                t0 = time.monotonic()
                deadline = t0 + args.timeout
                done = ok = 0
                while time.monotonic() < deadline:
                    done, ok = count_done(engine, run_ids)
                    cluster.sample_rss()
                    if done >= len(run_ids):
                        break
                    time.sleep(0.05)
                elapsed = time.monotonic() - t0
                tput = phase_figures(args, done, ok, elapsed, [], [])
                # the same right after the burst (the database is still busy catching up)
                times, over = latency_runs(args, service, loaded, engine, timer)
                out[phase] = {**tput, "latency_runs": args.latency_runs,
                              "step_time_ms": common.summary(idle_times, 1000, 2),
                              "overhead_ms": common.summary(idle_over, 1000, 2),
                              "step_time_after_burst_ms": common.summary(times, 1000, 2),
                              "overhead_after_burst_ms": common.summary(over, 1000, 2)}
                print(f"  celery/{phase}: {tput['steps_per_second']} steps/s ({ok}/{len(run_ids)} runs ok), "
                      f"overhead median {out[phase]['overhead_ms']['median']} ms", flush=True)
            out["worker_peak_rss_mb"] = {w.name: max(w.peak_rss_mb.values(), default=None) for w in cluster.workers}
        finally:
            cluster.stop_all()
            engine.dispose()
            common.delete_redis_keys(broker, f"*{queue}*")
    out["bare_chain"] = bare_chain(args, broker, tmp)
    print(f"  celery/bare chain of no-op tasks: {out['bare_chain']['steps_per_second']} steps/s", flush=True)
    return out


def bare_chain(args: argparse.Namespace, broker: str, tmp: Path) -> dict[str, Any]:
    """The baseline: ``--runs`` chains of ``--steps`` no-op Celery tasks, first tasks queued
    while no worker runs, then ``--workers`` workers (one process each) until all are done."""
    import redis as redis_lib

    ns = f"bench:chain:{secrets.token_hex(4)}"
    queue = f"bench-chain-{secrets.token_hex(3)}"
    bench_dir = Path(__file__).resolve().parent
    env = common.clean_env(BENCH_BROKER=broker, BENCH_NS=ns, BENCH_QUEUE=queue,
                           PYTHONPATH=f"{bench_dir}{os.pathsep}{common.ROOT}")
    os.environ.update(BENCH_BROKER=broker, BENCH_NS=ns, BENCH_QUEUE=queue)
    import chain_baseline

    chain_baseline.app.conf.broker_url = broker
    r = redis_lib.Redis.from_url(broker)
    total = args.runs * args.steps
    cluster = common.Cluster(env=env, tmp=tmp, queue=queue, app="chain_baseline")
    try:
        with chain_baseline.app.producer_or_acquire() as producer:
            for run in range(args.runs):
                chain_baseline.step.apply_async(args=[run, 0, args.steps], queue=queue, producer=producer)
        cluster.start_ready(*(f"c{i}" for i in range(args.workers)), timeout=90)
        t0 = time.monotonic()
        deadline = t0 + args.timeout
        done = 0
        while time.monotonic() < deadline:
            done = int(r.get(f"{ns}:done") or 0)
            if done >= total:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
    finally:
        cluster.stop_all()
        common.delete_redis_keys(broker, f"{ns}*")
        common.delete_redis_keys(broker, f"*{queue}*")
    return {"runs": args.runs, "steps": done, "seconds": round(elapsed, 2),
            "steps_per_second": round(done / elapsed, 1) if elapsed else None}


def latency_runs(args: argparse.Namespace, service: Any, loaded: Any, engine: Any,
                 timer: ExchangeTimer) -> tuple[list[float], list[float]]:
    """``--latency-runs`` runs one at a time; (step times, overheads) of their steps."""
    ids = []
    for _ in range(args.latency_runs):
        rid = service.start(loaded, {}, requested_by="erin")
        ids.append(rid)
        common.wait_for(partial(run_finished, engine, rid), 60, f"run {rid}", interval=0.005)
    return step_overheads(engine, ids, timer)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="inline,celery", help="inline, celery or both (default both)")
    parser.add_argument("--runs", type=int, default=600, help="runs per throughput measurement (default 600)")
    parser.add_argument("--steps", type=int, default=5, help="transfer steps per run (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2, for 2 cores)")
    parser.add_argument("--waiting", type=int, default=1000, help="runs left waiting for approval (default 1000)")
    parser.add_argument("--latency-runs", type=int, default=40, help="one-at-a-time runs for overhead (default 40)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a throughput phase")
    parser.add_argument("--quick", action="store_true", help="a few runs, inline only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.modes, args.runs, args.waiting, args.latency_runs = "inline", 10, 20, 3

    from treasury.simulator import Simulator, serve

    server = serve(Simulator(common.sim_config(rate_limits={"enabled": False})))
    timer = ExchangeTimer(server.simulator)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                fn = {"inline": run_inline, "celery": run_celery}[mode]
                results.append(fn(args, server, timer, Path(tmp)))
    finally:
        server.shutdown()
    exchange = common.summary(timer.all, 1000, 3)
    rows = []
    for r in results:
        for phase in ("plain", "with_waiting"):
            f = r[phase]
            workers = f", {r['workers']} workers" if r["workers"] else ""
            rows.append([f"{r['mode']} ({r['database']}{workers})",
                         "none" if phase == "plain" else f"{args.waiting:,}", f["steps_per_second"],
                         f["overhead_ms"]["median"], f["overhead_ms"]["p99"], f["step_time_ms"]["median"],
                         f"{f['runs_succeeded']}/{f['runs']}"])
        if "bare_chain" in r:
            b = r["bare_chain"]
            rows.append([f"bare Celery chain, no-op tasks ({r['workers']} workers)", "none", b["steps_per_second"],
                         "-", "-", "-", f"{b['steps']}/{b['runs'] * args.steps} steps"])
    common.print_table(
        f"Engine overhead: runs of {args.steps} transfer steps, simulator over HTTP without limits "
        f"(its own time per request: median {exchange['median']} ms)",
        ["set-up", "waiting runs", "steps/s", "overhead p50 ms", "overhead p99 ms", "step p50 ms", "runs ok"],
        rows,
    )
    target: dict[str, bool] = {}
    for r in results:
        if r["mode"] == "inline":
            target["inline median overhead <= 5 ms"] = (r["plain"]["overhead_ms"]["median"] or 1e9) <= 5
        if r["mode"] == "celery":
            target["celery >= 300 steps/s"] = (r["plain"]["steps_per_second"] or 0) >= 300
            bare = r["bare_chain"]["steps_per_second"] or 0
            target["celery >= 0.5 of a bare Celery chain"] = bool(bare) and (
                r["plain"]["steps_per_second"] or 0) >= 0.5 * bare
        slower = (r["with_waiting"]["steps_per_second"] or 0) < 0.9 * (r["plain"]["steps_per_second"] or 0)
        target[f"{r['mode']}: waiting runs do not slow the rest (within 10 %)"] = not slower
    common.write_result("engine_bench", {"exchange_time_ms": exchange, "results": results, "target_met": target},
                        args, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
