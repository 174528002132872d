"""Fault campaign: transfers and withdrawals through the simulator over real HTTP, 30 % faults.

Runs ``--ops`` steps (half internal transfers, half VA withdrawals) inline through
:class:`treasury.execution.StepExecutor`. The simulator is served on loopback and answers
about 30 % of the writes with a fault: ``error_after`` (HTTP 500 after the effect),
``timeout_after`` (the effect, then no answer until the client's 0.5 s timeout),
``reset_after`` (the effect, then a TCP reset) and ``error_before`` (HTTP 500, nothing done).

Afterwards every step is checked against the simulator's ledger (invariant I1): exactly one
effect per SUCCEEDED step, none per FAILED step, and a plain reason on every
NEEDS_ATTENTION step. Printed and written to ``benchmarks/results/fault_campaign_inline.json``:
the outcome counts, duplicates, lost or orphaned effects, re-sends, and the time from an
unknown outcome to its settlement (median and p95).

Rate limits are switched off on both sides (they are tested elsewhere): the exchange's
1 transfer per second would otherwise make the campaign last ``ops / 2`` seconds.

    python benchmarks/fault_campaign_inline.py --ops 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from treasury.audit.tables import audit_events
from treasury.clock import SystemClock
from treasury.exchange.client import HashKeyClient
from treasury.exchange.ratelimit import LocalRateLimiter
from treasury.execution import ExecutionSettings, StepExecutor, StepRequest, new_run_id
from treasury.keys import KeyProfile
from treasury.models import Permission, StepState
from treasury.schema import create_schema
from treasury.settings import RateLimits
from treasury.simulator import Simulator, load_state, serve
from treasury.store.db import make_engine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fault_campaign_inline.json"
ADDRESS = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
PATHS = {"asset_transfer": "/api/v1/account/assetTransfer", "withdraw": "/api/v1/account/withdraw"}
STEPS = {
    "asset_transfer": ("transfers", {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT",
                                     "quantity": "1"}),
    "withdraw": ("withdrawals", {"coin": "USDT", "chainType": "ETH", "address": ADDRESS, "quantity": "2"}),
}
PROFILES = {
    "transfers": KeyProfile(name="transfers", api_key="demo-transfer", secret=SecretStr("demo-transfer-secret"),
                            permissions=frozenset({Permission.READ, Permission.TRANSFER})),
    "withdrawals": KeyProfile(name="withdrawals", api_key="demo-withdraw", secret=SecretStr("demo-withdraw-secret"),
                              permissions=frozenset({Permission.READ, Permission.WITHDRAW})),
}
# Four rules drawn in turn; each fires on 8.5 % of the draws it gets: 1 - 0.915**4 ≈ 30 % faulted.
P_EACH = 0.085


def fault_rules() -> list[dict[str, Any]]:
    rules = []
    for path in PATHS.values():
        rules += [
            {"method": "POST", "path": path, "mode": "error_after", "status": 500, "probability": P_EACH},
            {"method": "POST", "path": path, "mode": "timeout_after", "seconds": 1, "probability": P_EACH},
            {"method": "POST", "path": path, "mode": "reset_after", "probability": P_EACH},
            {"method": "POST", "path": path, "mode": "error_before", "status": 500, "probability": P_EACH},
        ]
    return rules


def _at(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def reconcile_times(engine: Any) -> list[float]:
    """Seconds from each record's first UNKNOWN to its final state, from the audit log."""
    first_unknown: dict[str, datetime] = {}
    settled: dict[str, datetime] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_events.c.at, audit_events.c.payload)
            .where(audit_events.c.type == "execution.state")
            .order_by(audit_events.c.seq)
        ).all()
    for at, payload in rows:
        data = payload if isinstance(payload, dict) else json.loads(payload)
        cid, to = str(data.get("client_id")), data.get("to")
        if to == "UNKNOWN":
            first_unknown.setdefault(cid, _at(at))
        elif to in ("SUCCEEDED", "FAILED", "NEEDS_ATTENTION") and cid in first_unknown:
            settled[cid] = _at(at)
    return [(settled[c] - first_unknown[c]).total_seconds() for c in settled]


def run(ops: int, db_url: str | None, seed: int) -> dict[str, Any]:
    clock = SystemClock()
    cfg = load_state(ROOT / "config" / "simulator.yaml")
    cfg.settings.rate_limits.enabled = False
    sim = Simulator(cfg, clock=clock, seed=seed)
    sim.set_faults(fault_rules())
    server = serve(sim)
    tmp = tempfile.TemporaryDirectory()
    engine = make_engine(db_url or f"sqlite:///{tmp.name}/campaign.db")
    create_schema(engine)
    fast = RateLimits(query=10_000, order=10_000, transfer=10_000)
    http = httpx.Client(timeout=0.5)
    client = HashKeyClient(server.url, http, clock=clock, limiter=LocalRateLimiter(fast, clock))
    settings = ExecutionSettings(settle_seconds=0.05, deadline_seconds=2.0, read_retry_seconds=1.0)
    executor = StepExecutor(engine, clients=lambda name: (client, PROFILES[name]), clock=clock,
                            settings=settings, owner="worker:campaign")
    outcomes: list[tuple[str, Any]] = []
    started = time.monotonic()
    try:
        for i in range(ops):
            op = "asset_transfer" if i % 2 == 0 else "withdraw"
            key, params = STEPS[op]
            req = StepRequest(run_id=new_run_id(), step_id="move", operation=op, key_profile=key, params=params,
                              actor="campaign", max_seconds=60)
            outcomes.append((op, executor.execute(req)))
        elapsed = time.monotonic() - started
        state = sim.state()
    finally:
        http.close()
        server.shutdown()
    effects: Counter[str] = Counter()
    for kind in ("transfers", "withdrawals"):
        effects.update(e["clientOrderId"] for e in state[kind] if e.get("clientOrderId"))
    counts: Counter[str] = Counter()
    by_op: dict[str, Counter[str]] = defaultdict(Counter)
    duplicates = lost = orphaned = unexplained = 0
    ours: set[str] = set()
    for op, out in outcomes:
        cid = out.client_ids[0]
        ours.add(cid)
        counts[out.state.value] += 1
        by_op[op][out.state.value] += 1
        n = effects[cid]
        duplicates += n > 1
        if out.state is StepState.SUCCEEDED:
            lost += n == 0
        elif out.state is StepState.FAILED:
            orphaned += n > 0
        elif out.state is StepState.NEEDS_ATTENTION:
            unexplained += not (out.reason or "").strip()
    stray = sorted(set(effects) - ours)
    times = reconcile_times(engine)
    faults = {f"{r['path'].rsplit('/', 1)[-1]}:{r['mode']}": r["fired"] for r in state["faults"]}
    with engine.connect() as conn:
        sends = conn.execute(select(audit_events.c.payload).where(audit_events.c.type == "request.sent")).all()
    resends = sum(1 for (p,) in sends if (p if isinstance(p, dict) else json.loads(p)).get("attempt", 1) > 1)
    engine.dispose()
    tmp.cleanup()
    return {
        "ops": ops,
        "seed": seed,
        "database": "postgresql" if db_url and db_url.startswith("postgresql") else "sqlite",
        "settings": {"settle_seconds": settings.settle_seconds, "deadline_seconds": settings.deadline_seconds,
                     "http_timeout_seconds": 0.5, "timeout_after_hold_seconds": 1.0,
                     "fault_probability_per_rule": P_EACH},
        "outcomes": dict(counts),
        "outcomes_by_operation": {op: dict(c) for op, c in by_op.items()},
        "faults_fired": faults,
        "faulted_requests": sum(faults.values()),
        "resends_same_client_id": resends,
        "duplicates": duplicates,
        "succeeded_without_effect": lost,
        "failed_with_effect": orphaned,
        "needs_attention_without_reason": unexplained,
        "effects_without_step": len(stray),
        "reconciled": len(times),
        "reconcile_seconds_median": round(statistics.median(times), 3) if times else None,
        "reconcile_seconds_p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 3) if times else None,
        "wall_seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1000, help="steps to run (default 1000)")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.ops, args.db, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    bad = (result["duplicates"] + result["succeeded_without_effect"] + result["failed_with_effect"]
           + result["needs_attention_without_reason"] + result["effects_without_step"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
