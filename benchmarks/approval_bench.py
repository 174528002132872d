"""Benchmark 5: approval latency, from the final approval to the guarded request at the exchange.

``--approvals`` runs of a two-approver workflow (quorum 2) wait for approval; each gets its
first vote up front. Then, one run at a time, the final vote is cast through the run service
(as ``treasury approve`` does, minus the command's start-up) and the clock runs until the
guarded transfer reaches the simulator (timed inside the simulator by its client id).
Steps run on ``--workers`` Celery worker processes with PostgreSQL and Redis; the simulator is
served over HTTP without rate limits, so only our own machinery is measured.

    python benchmarks/approval_bench.py --approvals 200
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from engine_bench import FAST, ExchangeTimer, settings_for

WORKFLOW = """\
name: bench-approve
description: a transfer that two managers must approve
steps:
  - id: approve
    approval: {approvers: ["group:treasury-managers"], quorum: 2, expires_in: 24h}
  - id: pay
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "0.01"}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--approvals", type=int, default=200, help="final approvals measured (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="5 approvals, 1 worker")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.approvals, args.workers = 5, 1

    from treasury.broker.dispatch import CeleryDispatcher
    from treasury.broker.options import WorkerOptions
    from treasury.execution import client_id_for
    from treasury.runtime import build_runtime
    from treasury.schema import create_schema
    from treasury.simulator import Simulator, serve
    from treasury.store.db import make_engine

    broker = common.redis_url(common.REDIS_DB["approval"])
    common.require_redis(broker)
    queue = f"bench-approval-{secrets.token_hex(3)}"
    server = serve(Simulator(common.sim_config(rate_limits={"enabled": False})))
    timer = ExchangeTimer(server.simulator)
    latencies: list[float] = []
    vote_call: list[float] = []
    missing = 0
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-approval-") as tmp, \
                common.pg_schema("bench_approval") as db_url:
            config_dir = common.copy_config(Path(tmp) / "config", policy=True)
            engine = make_engine(db_url)
            create_schema(engine)
            settings = settings_for(db_url, server.url, config_dir, broker)
            dispatcher = CeleryDispatcher(settings, options=WorkerOptions(queue=queue))
            rt = build_runtime(settings, engine=engine, dispatcher=dispatcher)
            service = rt.service
            loaded = service.load_and_check(WORKFLOW, source="bench-approve.yaml")
            run_ids = [service.start(loaded, {}, requested_by="erin") for _ in range(args.approvals)]
            for rid in run_ids:
                service.approve(rid, "alice")
            env = common.worker_env(broker=broker, database=db_url, base_url=server.url, config_dir=config_dir,
                                    queue=queue, TREASURY_RATE_LIMITS__QUERY=FAST, TREASURY_RATE_LIMITS__ORDER=FAST,
                                    TREASURY_RATE_LIMITS__TRANSFER=FAST)
            cluster = common.Cluster(env=env, tmp=Path(tmp), queue=queue)
            try:
                cluster.start_ready(*(f"w{i}" for i in range(args.workers)), timeout=90)
                time.sleep(1.0)  # let the start-up sweep pass
                for rid in run_ids:
                    cid = client_id_for(rid, "pay")
                    t0 = time.time()
                    service.approve(rid, "bob")
                    vote_call.append(time.time() - t0)
                    try:
                        common.wait_for(partial(timer.arrived.__contains__, cid), 30, f"request of run {rid}",
                                        interval=0.001)
                    except TimeoutError:
                        missing += 1
                        continue
                    latencies.append(timer.arrived[cid] - t0)
                    cluster.sample_rss()
            finally:
                cluster.stop_all()
                engine.dispose()
                common.delete_redis_keys(broker, f"*{queue}*")
    finally:
        server.shutdown()
    lat = common.summary(latencies, 1000, 1)
    call = common.summary(vote_call, 1000, 1)
    results = {"approvals": args.approvals, "workers": args.workers, "arrived": len(latencies), "missing": missing,
               "latency_ms": lat, "approve_call_ms": call,
               "target_met": {"p99 <= 1 s": missing == 0 and (lat["p99"] or 1e9) <= 1000}}
    common.print_table(
        f"Approval latency: final approval -> guarded request at the simulator, Celery with {args.workers} "
        f"worker(s), PostgreSQL",
        ["measure", "median ms", "p95 ms", "p99 ms", "max ms", "count"],
        [["final approval -> request at exchange", lat["median"], lat["p95"], lat["p99"], lat["max"], lat["count"]],
         ["  of which: the approve call itself", call["median"], call["p95"], call["p99"], call["max"],
          call["count"]]],
    )
    if missing:
        print(f"{missing} guarded requests never reached the exchange within 30 s")
    common.write_result("approval_bench", results, args, args.out)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
