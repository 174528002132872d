"""Run every benchmark, one after another, with its defaults (or ``--quick``).

The order follows the issue: rate limits, batches, engine, scheduler, approvals, the fault
campaign (then memory, which reads the campaign's worker RSS), and the other engineers'
``audit_bench.py`` and ``fault_campaign_inline.py``. Each writes ``benchmarks/results/*.json``;
a failing script is reported and the rest still run.

    python benchmarks/run_all.py                 # everything at full size (about 1.5 hours)
    python benchmarks/run_all.py --only ratelimit_bench,batch_bench
    python benchmarks/run_all.py --quick         # seconds each: proves the scripts still run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

HERE = Path(__file__).resolve().parent
SCRIPTS = ["ratelimit_bench", "batch_bench", "engine_bench", "scheduler_bench", "approval_bench",
           "fault_campaign", "memory_bench", "audit_bench", "fault_campaign_inline"]
QUICK_ARGS = {  # the other engineers' scripts have no --quick
    "audit_bench": ["--events", "20000", "--appends", "100", "--processes", "2", "--rounds", "1", "--queries", "20"],
    "fault_campaign_inline": ["--ops", "40"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCRIPTS)}")
    parser.add_argument("--quick", action="store_true", help="pass --quick (small sizes) to each script")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or SCRIPTS
    unknown = set(chosen) - set(SCRIPTS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}")
    rows = []
    for name in chosen:
        extra = QUICK_ARGS.get(name, ["--quick"]) if args.quick else []
        print(f"\n=== {name} {' '.join(extra)}", flush=True)
        t0 = time.monotonic()
        code = subprocess.call([common.PYTHON, str(HERE / f"{name}.py"), *extra], env=common.clean_env())
        rows.append([name, code, round(time.monotonic() - t0)])
    common.print_table("Benchmarks run", ["script", "exit code", "seconds"], rows)
    return 1 if any(r[1] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
