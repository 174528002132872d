"""Benchmark 7: memory. Peak RSS of a worker, of ``treasury audit --json``, of the simulator.

- **worker during the fault campaign**: read from ``results/fault_campaign.json`` (the campaign
  samples every worker process's VmHWM); ``--campaign-ops N`` runs a campaign of N runs first.
- **``treasury audit --json`` over 1,000,000 events**: ``--events`` events are bulk-loaded into a
  fresh PostgreSQL schema with the audit engineer's ``audit_bench.bulk_load`` (a valid chain),
  then the real command streams them all to /dev/null while its RSS is sampled; the same command
  with ``--limit 10000`` is the flat-line reference.
- **the simulator holding 100,000 effects**: a child process fills an in-process simulator with
  ``--effects`` effects (orders in batches of 20, transfers, withdrawals) through the real
  client, and reports its RSS before and after, and how long ``state()`` takes.

    python benchmarks/memory_bench.py                    # 1,000,000 events, 100,000 effects
    python benchmarks/memory_bench.py --events 200000 --effects 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


def watch(cmd: list[str], env: dict[str, str], interval: float = 0.25) -> dict[str, Any]:
    """Run ``cmd`` with stdout to /dev/null; sample its RSS; return seconds, peak and samples."""
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.PIPE, env=env)

        def sample() -> None:
            while proc.poll() is None:
                got = common.rss_mb(proc.pid)
                if got is not None:
                    samples.append((round(time.monotonic() - t0, 2), got[0]))
                time.sleep(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.join(timeout=2)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0,):
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {err[-2000:]}")
    seconds = time.monotonic() - t0
    rss = [s[1] for s in samples]
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "samples": len(rss),
            "rss_curve_mb": [s for i, s in enumerate(samples) if i % max(1, len(samples) // 20) == 0]}


def audit_streaming(events: int) -> dict[str, Any]:
    from audit_bench import bulk_load  # the audit engineer's loader: a valid chain, COPY'd in

    from treasury.schema import create_schema
    from treasury.store.db import make_engine

    with common.pg_schema("bench_mem_audit") as url:
        engine = make_engine(url)
        create_schema(engine)
        loaded, seconds = bulk_load(engine, events)
        engine.dispose()
        print(f"  loaded {loaded:,} audit events in {seconds:.0f} s", flush=True)
        env = common.clean_env(TREASURY_DATABASE_URL=url)
        treasury = [common.PYTHON, "-m", "treasury.cli.main"]
        small = watch([*treasury, "audit", "--json", "--limit", "10000"], env)
        full = watch([*treasury, "audit", "--json"], env)
    # flat: streaming everything holds no more than streaming the first 10,000
    return {"events": events, "limit_10000": small, "all": full,
            "extra_mb_over_limit_10000": round(full["peak_rss_mb"] - small["peak_rss_mb"], 1)}


SIM_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
import httpx
import common
from treasury.clock import SystemClock
from treasury.exchange.client import HashKeyClient
from treasury.simulator import Simulator
from common import trading_profile
from pydantic import SecretStr
from treasury.keys import KeyProfile
from treasury.models import Permission

effects = int(sys.argv[1])
sim = Simulator(common.sim_config(rate_limits={"enabled": False}))
client = HashKeyClient("http://sim", httpx.Client(transport=httpx.MockTransport(sim.handle)), clock=SystemClock())
trade = trading_profile()
xfer = KeyProfile(name="transfers", api_key="demo-transfer", secret=SecretStr("demo-transfer-secret"),
                  permissions=frozenset({Permission.READ, Permission.TRANSFER}))
wdr = KeyProfile(name="withdrawals", api_key="demo-withdraw", secret=SecretStr("demo-withdraw-secret"),
                 permissions=frozenset({Permission.READ, Permission.WITHDRAW}))
before = common.rss_mb(__import__("os").getpid())
t0 = time.monotonic()
n_orders = effects * 8 // 10
n_each = (effects - n_orders) // 2
made = {"orders": 0, "transfers": 0, "withdrawals": 0}
for b in range(n_orders // 20):
    legs = [{"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "price": "1",
             "quantity": "0.001", "newClientOrderId": f"m{b}x{i}"} for i in range(20)]
    client.call("batch_orders", trade, {"orders": legs})
    made["orders"] += 20
addr = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
for i in range(n_each):
    client.call("asset_transfer", xfer, {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT",
                                         "quantity": "0.01", "clientOrderId": f"mt{i}"})
    client.call("withdraw", wdr, {"coin": "USDT", "chainType": "ETH", "address": addr, "quantity": "2",
                                  "clientOrderId": f"mw{i}"})
    made["transfers"] += 1
    made["withdrawals"] += 1
fill = time.monotonic() - t0
after = common.rss_mb(__import__("os").getpid())
t1 = time.monotonic()
state = sim.state()
state_s = time.monotonic() - t1
held = len(state["orders"]) + len(state["transfers"]) + len(state["withdrawals"])
print(json.dumps({"effects": held, "made": made, "fill_seconds": round(fill, 1), "state_seconds": round(state_s, 2),
                  "rss_before_mb": before[0], "rss_after_mb": after[0], "peak_rss_mb": common.rss_mb(
                      __import__("os").getpid())[1]}))
"""


def simulator_effects(effects: int) -> dict[str, Any]:
    bench_dir = str(Path(__file__).resolve().parent)
    out = subprocess.run([common.PYTHON, "-c", SIM_CHILD, str(effects), bench_dir], capture_output=True,
                         env=common.clean_env(), timeout=3600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"simulator child failed: {out.stderr.decode(errors='replace')[-2000:]}")
    got: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    got["kib_per_effect"] = round((got["rss_after_mb"] - got["rss_before_mb"]) * 1024 / max(1, got["effects"]), 2)
    return got


def worker_from_campaign(ops: int | None) -> dict[str, Any] | None:
    path = common.RESULTS_DIR / "fault_campaign.json"
    if ops:
        subprocess.run([common.PYTHON, str(Path(__file__).with_name("fault_campaign.py")), "--ops", str(ops)],
                       check=False, env=common.clean_env())
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return {"source": str(path.relative_to(common.ROOT)), "campaign_ops": data.get("submitted"),
            "campaign_finished_at": data.get("finished_at"),
            "worker_peak_rss_mb": data.get("worker_peak_rss_mb"),
            "worker_parent_peak_rss_mb": data.get("worker_parent_peak_rss_mb"),
            "processes_sampled": data.get("worker_processes_sampled")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="audit events to stream (default 1,000,000)")
    parser.add_argument("--effects", type=int, default=100_000, help="simulator effects (default 100,000)")
    parser.add_argument("--campaign-ops", type=int, default=0,
                        help="run a fault campaign of this many runs first (default: use its last result)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: worker,audit,simulator")
    parser.add_argument("--quick", action="store_true", help="20,000 events, 2,000 effects, no worker")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.effects, args.skip = 20_000, 2_000, "worker"
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    results: dict[str, Any] = {}
    if "worker" not in skip:
        results["worker"] = worker_from_campaign(args.campaign_ops or None)
    if "audit" not in skip:
        results["audit_cli"] = audit_streaming(args.events)
    if "simulator" not in skip:
        results["simulator"] = simulator_effects(args.effects)
    rows = []
    w = results.get("worker")
    if w:
        rows.append([f"worker process, fault campaign ({w['campaign_ops']} runs)", w["worker_peak_rss_mb"], "<= 150"])
    a = results.get("audit_cli")
    if a:
        rows.append([f"treasury audit --json, {a['events']:,} events ({a['all']['seconds']} s)",
                     a["all"]["peak_rss_mb"], "<= 100, flat"])
        rows.append(["  same command, --limit 10000", a["limit_10000"]["peak_rss_mb"], ""])
        rows.append(["  difference (flat if about 0)", a["extra_mb_over_limit_10000"], "~0"])
    s = results.get("simulator")
    if s:
        rows.append([f"simulator holding {s['effects']:,} effects", s["rss_after_mb"], ""])
        rows.append(["  simulator before any effect", s["rss_before_mb"], ""])
        rows.append(["  KiB per effect", s["kib_per_effect"], ""])
    common.print_table("Memory (peak RSS, MiB)", ["process", "MiB", "target"], rows)
    target: dict[str, bool] = {}
    if w and w.get("worker_peak_rss_mb") is not None:
        target["worker <= 150 MB"] = w["worker_peak_rss_mb"] <= 150
    if a:
        target["audit --json <= 100 MB and flat"] = (a["all"]["peak_rss_mb"] <= 100
                                                     and a["extra_mb_over_limit_10000"] <= 10)
    results["target_met"] = target
    common.write_result("memory_bench", results, args, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
