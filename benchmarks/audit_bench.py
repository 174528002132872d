"""Audit log performance on real PostgreSQL: appends, verification and queries by run.

Usage::

    python benchmarks/audit_bench.py [--pg URL] [--events 1000000] [--appends 2000]
                                     [--processes 4] [--rounds 3] [--queries 200] [--no-cli] [--keep]

Works in a schema of its own (dropped afterwards unless ``--keep``) in the database given by
``--pg``, ``TREASURY_BENCH_PG`` or postgresql+psycopg://postgres@127.0.0.1:5432/test.

1. appends/s: ``--processes`` processes append ``--appends`` events each, one transaction
   per event (the real pattern: one audit event per state change), all racing for the
   chain head, each writing a signed checkpoint every ``--checkpoint-every`` events as the
   runner does (0: none). Repeated ``--rounds`` times; each round is reported.
2. bulk load to ``--events`` events: the chain is computed in Python and streamed in with
   COPY (the append-only and link triggers stay on and check every row).
3. verify: ``verify_chain`` over the whole log, in events/s.
4. query by run: ``query_events(run_id=…)`` latency over ``--queries`` random runs.
5. CLI streaming: ``treasury audit --jsonl`` over everything, with the child's peak RSS,
   against the same command limited to 10,000 events (memory must not grow with the log).

Prints a table and writes JSON to benchmarks/results/audit.json (``--out``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # the benchmarks' shared helpers: machine, results, tables

from treasury.audit import append_event, query_events, read_head, verify_chain
from treasury.audit import events as ev
from treasury.audit.anchoring import Checkpointer, install
from treasury.audit.canonical import canonical_json, format_at
from treasury.audit.chain import body_digest, body_text, link_hash
from treasury.audit.checkpoints import CheckpointStore
from treasury.audit.server_key import ServerKey
from treasury.clock import SystemClock
from treasury.schema import create_schema
from treasury.store.db import make_engine

TARGETS = {"appends_per_s": 2000.0, "verify_events_per_s": 100_000.0, "query_by_run_p95_ms": 20.0}

# (type, weight): roughly what one withdrawal run writes
_MIX = [
    (ev.RUN_REQUESTED, 1),
    (ev.POLICY_DECISION, 1),
    (ev.APPROVAL_REQUESTED, 1),
    (ev.APPROVAL_GRANTED, 2),
    (ev.STEP_STATE, 3),
    (ev.EXECUTION_STATE, 2),
    (ev.REQUEST_SENT, 2),
    (ev.RESPONSE_RECEIVED, 2),
    (ev.RECONCILE_LOOKUP, 1),
    (ev.RUN_STATE, 1),
]


def _payload(type_: str, rng: random.Random) -> dict[str, Any]:
    amount = f"{rng.randint(1, 200_000)}.{rng.randint(0, 99):02d}"
    if type_ == ev.REQUEST_SENT:
        return {
            "operation": "withdraw",
            "method": "POST",
            "path": "/api/v1/account/withdraw",
            "params": {"coin": "USDT", "chainType": "ETH", "address": "0x5b1f" + "0" * 36, "quantity": amount},
            "attempt": 1,
        }
    if type_ == ev.RESPONSE_RECEIVED:
        return {"status": 200, "body": {"success": True, "id": str(rng.getrandbits(48)), "accountId": "1001"}}
    if type_ == ev.APPROVAL_GRANTED:
        return {"approver": rng.choice(["alice", "bob"]), "digest": secrets.token_hex(32), "quorum": 2}
    return {"state": rng.choice(["RUNNING", "SUCCEEDED", "PREPARED", "SENDING"]), "amount": amount}


# ---------------------------------------------------------------------------- appends


def _append_worker(url: str, tag: str, count: int, start: Barrier, results: Any,
                   checkpoints: tuple[str, str, int] | None = None) -> None:
    engine = make_engine(url)
    if checkpoints is not None:  # as the runner does: a signed checkpoint every N events
        folder, key, every = checkpoints
        install(engine, Checkpointer(CheckpointStore(Path(folder)), ServerKey(Path(key), create=False),
                                     clock=SystemClock(), every_events=every))
    rng = random.Random(tag)
    with engine.connect() as conn:
        start.wait(timeout=120)
        t0 = time.time()
        for i in range(count):
            with conn.begin():
                append_event(
                    conn,
                    type=ev.REQUEST_SENT,
                    actor=f"worker:{tag}",
                    at=datetime.now(UTC),
                    run_id=f"a{tag}{i // 10:06d}",
                    step_id="pay",
                    payload=_payload(ev.REQUEST_SENT, rng),
                )
        results.put((t0, time.time()))
    engine.dispose()


def bench_appends(url: str, processes: int, per_process: int, round_no: int,
                  checkpoints: tuple[str, str, int] | None = None) -> float:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_append_worker, args=(url, f"r{round_no}p{n}", per_process, start, results, checkpoints))
        for n in range(processes)
    ]
    for p in procs:
        p.start()
    spans = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"append worker failed with exit code {p.exitcode}")
    elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
    return processes * per_process / elapsed


# ---------------------------------------------------------------------------- bulk load


def _generate(start_seq: int, prev_hash: str, count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """Events continuing the chain, about 10 per run with ~50 runs in flight (interleaved)."""
    rng = random.Random(seed)
    types = [t for t, w in _MIX for _ in range(w)]
    active: list[list[Any]] = []  # [run_id, events left]
    next_run = 0
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for seq in range(start_seq, start_seq + count):
        while len(active) < 50:
            active.append([f"b{next_run:07d}", rng.randint(6, 14)])
            next_run += 1
        slot = rng.randrange(len(active))
        run_id = active[slot][0]
        active[slot][1] -= 1
        if active[slot][1] == 0:
            active.pop(slot)
        type_ = rng.choice(types)
        actor = "worker:bench-1" if type_ in (ev.REQUEST_SENT, ev.RESPONSE_RECEIVED) else "system"
        at += timedelta(milliseconds=rng.randint(1, 50))
        payload_json = canonical_json(_payload(type_, rng))
        digest = body_digest(
            body_text(
                seq=seq,
                at=format_at(at),
                actor=actor,
                run_id=run_id,
                step_id="pay",
                type=type_,
                payload_json=payload_json,
            )
        )
        hash_ = link_hash(prev_hash, digest)
        yield (seq, at, actor, run_id, "pay", type_, payload_json, prev_hash, hash_)
        prev_hash = hash_


def bulk_load(engine: Engine, total: int, chunk: int = 100_000) -> tuple[int, float]:
    """COPY events until the log holds ``total``; returns (events loaded, seconds)."""
    head_seq, head_hash = read_head(engine)
    todo = total - head_seq
    if todo <= 0:
        return 0, 0.0
    t0 = time.perf_counter()
    columns = "seq, at, actor, run_id, step_id, type, payload, prev_hash, hash"
    rows = _generate(head_seq + 1, head_hash, todo, seed=7)
    done = 0
    while done < todo:
        n = min(chunk, todo - done)
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur, cur.copy(f"COPY audit_events ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for _ in range(n):
                    copy.write_row(next(rows))
            raw.commit()
        finally:
            raw.close()
        done += n
        print(f"  loaded {head_seq + done:,} events", file=sys.stderr)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE audit_events"))
    return todo, time.perf_counter() - t0


# ---------------------------------------------------------------------------- reads


def bench_verify(engine: Engine) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = verify_chain(engine)
    seconds = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"chain does not verify: seq {result.first_bad_seq}: {result.reason}")
    return {"events": result.count, "seconds": round(seconds, 2), "events_per_s": round(result.count / seconds)}


def bench_queries(engine: Engine, queries: int) -> dict[str, Any]:
    with engine.connect() as conn:
        run_ids = list(
            conn.execute(text("SELECT DISTINCT run_id FROM audit_events TABLESAMPLE SYSTEM (1) LIMIT 5000")).scalars()
        )
    rng = random.Random(11)
    sample = [rng.choice(run_ids) for _ in range(queries)]
    for run_id in sample[:10]:  # warm the pool and the plan cache
        list(query_events(engine, run_id=run_id))
    latencies, sizes = [], []
    for run_id in sample:
        t0 = time.perf_counter()
        sizes.append(len(list(query_events(engine, run_id=run_id))))
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "queries": queries,
        "events_per_query_mean": round(statistics.mean(sizes), 1),
        "p50_ms": round(common.percentile(latencies, 50) or 0, 2),
        "p95_ms": round(common.percentile(latencies, 95) or 0, 2),
        "max_ms": round(max(latencies), 2),
        "mean_ms": round(statistics.mean(latencies), 2),
    }


_CLI = """
import sys, click
from treasury.cli.audit import register
from treasury.cli.context import AppContext
from treasury.settings import Settings
group = click.Group()
register(group)
group.main(args=sys.argv[1:], prog_name="treasury", obj=AppContext(settings=Settings()))
"""


def bench_cli(url: str, limit: int | None) -> dict[str, Any]:
    """Run ``treasury audit --jsonl`` in a child process; time it and read its peak RSS."""
    args = [sys.executable, "-c", _CLI, "audit", "--jsonl"] + (["--limit", str(limit)] if limit else [])
    env = {**os.environ, "TREASURY_DATABASE_URL": url}
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"treasury audit exited with {proc.returncode}")
    return {"limit": limit, "seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=common.PG_BASE, help="PostgreSQL URL (default: TREASURY_BENCH_PG or local)")
    parser.add_argument("--events", type=int, default=1_000_000, help="log size for verify and queries")
    parser.add_argument("--appends", type=int, default=2000, help="appends per process per round")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="append rounds")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the script runs")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI streaming measurement")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark schema")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "audit.json")
    parser.add_argument("--checkpoint-every", type=int, default=100, metavar="N",
                        help="appenders write a signed checkpoint every N events, as the runner does (0: off)")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.events, opts.appends, opts.processes, opts.rounds, opts.queries = 20_000, 100, 2, 1, 20

    schema = f"audit_bench_{secrets.token_hex(4)}"
    admin = make_engine(opts.pg)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in opts.pg else "?"
    url = f"{opts.pg}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    create_schema(engine)
    # The box may be shared: a busy one lowers every figure, so record how busy it was.
    figures: dict[str, Any] = {
        "database": opts.pg.split("@")[-1],
        "schema": schema,
        "targets": TARGETS,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        print(f"appends: {opts.rounds} rounds of {opts.processes} x {opts.appends}", file=sys.stderr)
        checkpoints = None
        if opts.checkpoint_every > 0:
            folder = Path(tempfile.mkdtemp(prefix="audit-bench-checkpoints-"))
            ServerKey(folder / "server.key", create=True).load()
            checkpoints = (str(folder / "checkpoints"), str(folder / "server.key"), opts.checkpoint_every)
        rounds = [bench_appends(url, opts.processes, opts.appends, r, checkpoints) for r in range(opts.rounds)]
        figures["appends"] = {
            "checkpoint_every": opts.checkpoint_every,
            "checkpoints_written": len(CheckpointStore(Path(checkpoints[0])).seqs()) if checkpoints else 0,
            "processes": opts.processes,
            "per_process": opts.appends,
            "rounds_per_s": [round(r) for r in rounds],
            "median_per_s": round(statistics.median(rounds)),
            "best_per_s": round(max(rounds)),
        }
        print(f"bulk load to {opts.events:,} events", file=sys.stderr)
        loaded, seconds = bulk_load(engine, opts.events)
        figures["bulk_load"] = {
            "events": loaded,
            "seconds": round(seconds, 1),
            "events_per_s": round(loaded / seconds) if seconds else None,
        }
        print("verify", file=sys.stderr)
        figures["verify"] = bench_verify(engine)
        print("queries by run", file=sys.stderr)
        figures["query_by_run"] = bench_queries(engine, opts.queries)
        if not opts.no_cli:
            print("CLI streaming", file=sys.stderr)
            figures["cli_jsonl"] = [bench_cli(url, 10_000), bench_cli(url, None)]
    finally:
        engine.dispose()
        if not opts.keep:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["met"] = {
        "appends_per_s": figures["appends"]["median_per_s"] >= TARGETS["appends_per_s"],
        "verify_events_per_s": figures["verify"]["events_per_s"] >= TARGETS["verify_events_per_s"],
        "query_by_run_p95_ms": figures["query_by_run"]["p95_ms"] <= TARGETS["query_by_run_p95_ms"],
    }
    _print_table(figures)
    common.write_result("audit", figures, args=opts, out=opts.out)
    return 0


def _print_table(r: dict[str, Any]) -> None:
    a, v, q, b, met = r["appends"], r["verify"], r["query_by_run"], r["bulk_load"], r["met"]
    rows: list[list[Any]] = [
        [
            f"appends/s, {a['processes']} processes, 1 event per transaction, checkpoint every {a['checkpoint_every']}",
            f"{a['median_per_s']:,} median (rounds {', '.join(f'{x:,}' for x in a['rounds_per_s'])})",
            f">= {TARGETS['appends_per_s']:,.0f}",
            met["appends_per_s"],
        ],
        [
            f"verify, {v['events']:,} events",
            f"{v['events_per_s']:,} events/s ({v['seconds']} s)",
            f">= {TARGETS['verify_events_per_s']:,.0f}",
            met["verify_events_per_s"],
        ],
        [
            f"query by run, {q['queries']} runs of ~{q['events_per_query_mean']} events",
            f"p50 {q['p50_ms']} ms, p95 {q['p95_ms']} ms, max {q['max_ms']} ms",
            f"p95 <= {TARGETS['query_by_run_p95_ms']:.0f} ms",
            met["query_by_run_p95_ms"],
        ],
        ["bulk load (COPY, triggers on)", f"{b['events']:,} events in {b['seconds']} s", None, None],
    ]
    for c in r.get("cli_jsonl", []):
        what = f"first {c['limit']:,}" if c["limit"] else "all"
        rows.append(
            [f"treasury audit --jsonl ({what})", f"{c['seconds']} s, peak RSS {c['peak_rss_mb']} MB", None, None]
        )
    rows.append(
        [
            "load average 1/5/15 min, start / end",
            f"{r['load_average_at_start']} / {r['load_average_at_end']}",
            None,
            None,
        ]
    )
    common.print_table("Audit log on PostgreSQL", ["measure", "result", "target", "met"], rows)


if __name__ == "__main__":
    sys.exit(main())
