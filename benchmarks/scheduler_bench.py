"""Benchmark 4: the scheduler with 10,000 schedules: tick time, and lag from due time to run.

10,000 workflow files with a ``schedule:`` block are written to a temporary folder; beat's
real tick (:class:`treasury.schedules.beat.Beat`: read and hash every file, then
:class:`treasury.schedules.tick.Scheduler` over PostgreSQL) is timed

- when nothing is due (the cost of evaluating 10,000 schedules), split into loading the
  files and the scheduler's own evaluation, and
- when ``--burst`` schedules fall due at the same minute: the lag from the due instant to the
  run being created (the run's ``created_at``) and to the tick that created it returning.

Cron has minute resolution, so the clock jumps from one due minute to the next (it is the
real clock plus an offset that only moves while nothing is due); every lag is real time.
``--interval`` is the pause between ticks (TREASURY_BEAT_INTERVAL; the default there is 15 s,
which alone would put the lag anywhere up to 15 s).

    python benchmarks/scheduler_bench.py                     # 10,000 schedules, 10 due minutes
    python benchmarks/scheduler_bench.py --schedules 1000 --minutes 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

WORKFLOW = """\
name: {name}
description: scheduled sweep {i}
schedule:
  cron: "{cron}"
  timezone: UTC
  catchup: latest
steps:
  - id: sweep
    op: asset_transfer
    key: transfers
    params: {{fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "1"}}
"""


class OffsetClock:
    """The real clock plus an offset that the benchmark moves forward between due minutes."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def jump_to(self, moment: datetime) -> None:
        self.offset += moment.timestamp() - self.time()


def write_workflows(folder: Path, schedules: int, now: datetime, first_minute: datetime, minutes: int,
                    burst: int) -> int:
    """Files for ``schedules`` daily schedules; ``burst`` of them due in each of ``minutes`` minutes
    from ``first_minute``, the rest at the minutes of the day that the clock never passes
    (after the last due minute and before ``now``). Returns how many fall due."""
    folder.mkdir(parents=True, exist_ok=True)
    due = min(schedules, burst * minutes)
    after = first_minute + timedelta(minutes=minutes + 1)
    others = int((now + timedelta(days=1) - after).total_seconds() // 60) - 2
    for i in range(schedules):
        at = first_minute + timedelta(minutes=i % minutes) if i < due else after + timedelta(minutes=i % others)
        cron = f"{at.minute} {at.hour} * * *"
        name = f"sched-{i:05d}"
        (folder / f"{name}.yaml").write_text(WORKFLOW.format(name=name, i=i, cron=cron))
    return due


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=10_000, help="schedules (default 10,000)")
    parser.add_argument("--minutes", type=int, default=10, help="due minutes measured (default 10)")
    parser.add_argument("--burst", type=int, default=50, help="schedules due in each of those minutes (default 50)")
    parser.add_argument("--idle-ticks", type=int, default=20, help="ticks timed with nothing due (default 20)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between ticks (default 0.5)")
    parser.add_argument("--quick", action="store_true", help="300 schedules, 1 due minute")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.schedules, args.minutes, args.burst, args.idle_ticks = 300, 1, 20, 3

    from sqlalchemy import select

    from treasury.runtime import build_runtime
    from treasury.schedules.beat import Beat, collector_paused
    from treasury.schema import create_schema
    from treasury.settings import Settings
    from treasury.store.db import make_engine
    from treasury.store.tables import runs

    clock = OffsetClock()
    real = datetime.now(UTC).replace(second=0, microsecond=0)
    first_due = real + timedelta(minutes=5)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp, common.pg_schema("bench_sched") as db_url:
        folder = Path(tmp) / "workflows"
        t0 = time.monotonic()
        due_total = write_workflows(folder, args.schedules, real, first_due, args.minutes, args.burst)
        write_s = time.monotonic() - t0
        engine = make_engine(db_url)
        create_schema(engine)
        settings = Settings(database_url=db_url, config_dir=common.ROOT / "config", workflows_dir=folder)
        # the bench only starts runs (nothing is sent): an in-process simulator of its own, since
        # the runtime refuses to build one from settings for a PostgreSQL database
        from treasury.simulator import Simulator, load_state

        sim = Simulator(load_state(settings.simulator_file), clock=clock)
        rt = build_runtime(settings, clock=clock, engine=engine, simulator=sim)
        beat = Beat(engine, rt.service, folder, clock=clock)

        # cold: validate every file once (cached by digest afterwards), then record the schedules
        t0 = time.monotonic()
        specs, invalid = beat.loader.load()
        cold_load_s = time.monotonic() - t0
        if invalid:
            raise SystemExit(f"{len(invalid)} workflow files are invalid, e.g. {invalid[0]}")
        t0 = time.monotonic()
        beat.tick()
        first_tick_s = time.monotonic() - t0
        print(f"  {len(specs)} schedules: files written in {write_s:.1f} s, validated in {cold_load_s:.1f} s, "
              f"first tick (records them) {first_tick_s:.1f} s", flush=True)

        # idle: nothing due
        load_times, eval_times, tick_times = [], [], []
        for _ in range(args.idle_ticks):
            with collector_paused():  # as Beat.tick does; the two halves are timed apart here
                t0 = time.monotonic()
                specs, invalid = beat.loader.load()
                t1 = time.monotonic()
                report = beat.scheduler.tick(specs, invalid=invalid)
                t2 = time.monotonic()
            assert not report.fired, "nothing should be due during the idle ticks"
            load_times.append(t1 - t0)
            eval_times.append(t2 - t1)
            tick_times.append(t2 - t0)
        results["idle_tick_ms"] = common.summary(tick_times, 1000, 1)
        results["idle_load_files_ms"] = common.summary(load_times, 1000, 1)
        results["idle_scheduler_eval_ms"] = common.summary(eval_times, 1000, 1)
        _, profile = common.profile_summary(beat.tick, top=12)
        results["idle_tick_profile"] = profile
        print(f"  idle tick: median {results['idle_tick_ms']['median']} ms "
              f"(files {results['idle_load_files_ms']['median']} ms, "
              f"scheduler {results['idle_scheduler_eval_ms']['median']} ms)", flush=True)

        # busy: jump to just before each due minute and tick every --interval seconds
        created_lags: list[float] = []
        returned_lags: list[float] = []
        busy_ticks: list[float] = []
        fired_total = 0
        unexpected = 0
        for m in range(args.minutes):
            minute = first_due + timedelta(minutes=m)
            clock.jump_to(minute - timedelta(seconds=args.interval * 1.5))
            expected = sum(1 for i in range(due_total) if i % args.minutes == m)
            got = 0
            deadline = time.monotonic() + 60
            while got < expected and time.monotonic() < deadline:
                t0 = time.monotonic()
                report = beat.tick()
                t1 = time.monotonic()
                ours = [f for f in report.fired if f.due_at == minute]
                unexpected += len(report.fired) - len(ours)
                if ours:
                    busy_ticks.append(t1 - t0)
                    back = clock.now()
                    for fired in ours:
                        returned_lags.append((back - fired.due_at).total_seconds())
                    got += len(ours)
                    with engine.connect() as conn:
                        rows = conn.execute(select(runs.c.created_at, runs.c.due_at).where(
                            runs.c.id.in_([f.run_id for f in ours]))).all()
                    for created, due_at in rows:
                        created_lags.append((_utc(created) - _utc(due_at)).total_seconds())
                time.sleep(max(0.0, args.interval - (t1 - t0)))
            fired_total += got
            print(f"  minute {m + 1}/{args.minutes}: {got}/{expected} runs created", flush=True)
        results.update({
            "schedules": len(specs),
            "due_minutes": args.minutes,
            "burst_per_minute": args.burst,
            "interval_seconds": args.interval,
            "runs_created": fired_total,
            "runs_expected": due_total,
            "runs_unexpected": unexpected,
            "files_write_seconds": round(write_s, 1),
            "cold_load_seconds": round(cold_load_s, 1),
            "first_tick_seconds": round(first_tick_s, 1),
            "busy_tick_ms": common.summary(busy_ticks, 1000, 1),
            "lag_to_run_created_s": common.summary(created_lags, 1, 3),
            "lag_to_tick_return_s": common.summary(returned_lags, 1, 3),
        })
        engine.dispose()
    results["target_met"] = {
        "idle tick <= 200 ms (median)": (results["idle_tick_ms"]["median"] or 1e9) <= 200,
        "lag p99 <= 1 s": (results["lag_to_tick_return_s"]["p99"] or 1e9) <= 1.0,
    }
    it, ld, ev = results["idle_tick_ms"], results["idle_load_files_ms"], results["idle_scheduler_eval_ms"]
    lc, lr, bt = results["lag_to_run_created_s"], results["lag_to_tick_return_s"], results["busy_tick_ms"]
    common.print_table(
        f"Scheduler: {results['schedules']:,} schedules, PostgreSQL, ticks every {args.interval:g} s",
        ["measure", "median", "p95", "p99", "max", "count"],
        [["idle tick, whole (ms)", it["median"], it["p95"], it["p99"], it["max"], it["count"]],
         ["  of which: read+hash files (ms)", ld["median"], ld["p95"], ld["p99"], ld["max"], ld["count"]],
         ["  of which: scheduler eval (ms)", ev["median"], ev["p95"], ev["p99"], ev["max"], ev["count"]],
         [f"tick firing {args.burst} runs (ms)", bt["median"], bt["p95"], bt["p99"], bt["max"], bt["count"]],
         ["lag due -> run created (s)", lc["median"], lc["p95"], lc["p99"], lc["max"], lc["count"]],
         ["lag due -> tick returned (s)", lr["median"], lr["p95"], lr["p99"], lr["max"], lr["count"]]],
    )
    print(f"cold start: validating {results['schedules']:,} files took {results['cold_load_seconds']} s; "
          f"the first tick (recording them) {results['first_tick_seconds']} s")
    common.write_result("scheduler_bench", results, args, args.out)
    return 0


def _utc(value: Any) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
