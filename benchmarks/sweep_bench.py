"""Sweep: many sub-accounts, each with its own key, move their balances to the master account.

``--accounts`` sub-accounts (default 100), made by a ``sub_accounts:`` block of the simulator
state, each hold ``--transfers`` coins and have one key with its own budget of 1 transfer/s.
Every (sub-account, coin) is one step of its own run, executed inline through
:class:`treasury.execution.StepExecutor` by ``--threads`` threads over PostgreSQL, against the
simulator served on loopback **with its rate limits on**, under the fault mix of the fault
campaigns: about 30 % of the transfers get an ambiguous fault (``error_after``,
``timeout_after``, ``reset_after``: the effect commits, the answer is lost).

Printed and written to ``benchmarks/results/sweep_bench.json``:

- the elapsed time against the ideal time the budgets allow (``transfers`` windows of 1.02 s,
  since every key sends its own transfers one window apart; target: within 1.5x). A transfer
  whose answer is lost holds its key's place for the HTTP timeout (0.5 s) plus recvWindow
  (1 s), since it may still arrive until then: the ideal leaves that out;
- the 429 and 418 answers the simulator gave (target 0);
- duplicates and lost transfers, counted in the simulator's own ledger (target 0 and 0);
- the baseline, in the same run: the same sweep of ``--baseline-accounts`` sub-accounts through
  one shared key, and what 100 sub-accounts would take through one key (its ideal).

    python benchmarks/sweep_bench.py            # 100 sub-accounts x 3 coins
    python benchmarks/sweep_bench.py --quick    # 10 x 2, seconds
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx
from common import pg_schema, print_table, write_result
from pydantic import SecretStr

from treasury.clock import SystemClock
from treasury.exchange.client import HashKeyClient
from treasury.exchange.ratelimit import LocalRateLimiter
from treasury.execution import ExecutionSettings, StepExecutor, StepRequest, new_run_id
from treasury.keys import KeyProfile
from treasury.models import Permission, StepState
from treasury.schema import create_schema
from treasury.settings import RateLimits
from treasury.simulator import Simulator, serve
from treasury.simulator.state import parse_state
from treasury.store.db import make_engine

MASTER = "1001"
FIRST_SUB = 5001
WINDOW = 1.02  # the client's transfer window: 1 s plus its margin
TRANSFER_PATH = "/api/v1/account/assetTransfer"
P_EACH = 0.11  # three ambiguous modes in turn: 1 - 0.89**3 ≈ 30 % of transfers faulted
COINS = ["USDT", "BTC", "ETH", "USDC", "HKD"]
HTTP_TIMEOUT = 0.5
RECV_WINDOW_MS = 1000


def world(accounts: int, coins: list[str]) -> dict[str, Any]:
    return {
        "accounts": [{"id": MASTER, "type": "trading", "label": "Master", "balances": {c: "0" for c in coins}}],
        "keys": [{"api_key": "shared", "secret": "shared-secret", "account": MASTER,
                  "permissions": ["read", "transfer"]}],
        "sub_accounts": [{"ids": {"from": FIRST_SUB, "count": accounts},
                          "balances": {c: f"{10 + i}.5" for i, c in enumerate(coins)},
                          # master keys of their own, so a lost answer is looked up by client id
                          "key": {"api_key": "sub-{account}", "secret": "sub-{account}-secret",
                                  "permissions": ["read", "transfer"], "master": True}}],
    }


def fault_rules(p_each: float = P_EACH) -> list[dict[str, Any]]:
    return [
        {"method": "POST", "path": TRANSFER_PATH, "mode": "error_after", "status": 500, "probability": p_each},
        {"method": "POST", "path": TRANSFER_PATH, "mode": "timeout_after", "seconds": 1, "probability": p_each},
        {"method": "POST", "path": TRANSFER_PATH, "mode": "reset_after", "probability": p_each},
    ]


def profile(api_key: str) -> KeyProfile:
    return KeyProfile(name=api_key, api_key=api_key, secret=SecretStr(f"{api_key}-secret"),
                      permissions=frozenset({Permission.READ, Permission.TRANSFER}), account_id=MASTER)


def sweep(db_url: str, accounts: int, coins: list[str], threads: int, seed: int, *, shared_key: bool,
          p_each: float = P_EACH) -> dict[str, Any]:
    """One sweep; returns its figures, counted against the simulator's own ledger."""
    clock = SystemClock()
    sim = Simulator(parse_state(world(accounts, coins)), clock=clock, seed=seed)
    sim.set_faults(fault_rules(p_each))
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    inner = sim.process

    def counted(req: Any, **kw: Any) -> Any:
        answer = inner(req, **kw)
        with lock:
            statuses[answer.status] += 1
        return answer

    sim.process = counted  # type: ignore[method-assign]
    server = serve(sim)
    engine = make_engine(db_url, pool_size=threads + 2, max_overflow=threads)
    create_schema(engine)
    # the exchange's budgets (2 queries, 1 transfer per key); an unanswered request holds its
    # key's place for the HTTP timeout plus recvWindow, as the factory sets it
    limiter = LocalRateLimiter(RateLimits(), clock, inflight=HTTP_TIMEOUT + RECV_WINDOW_MS / 1000)
    http = httpx.Client(timeout=HTTP_TIMEOUT, limits=httpx.Limits(max_connections=threads * 2))
    client = HashKeyClient(server.url, http, clock=clock, limiter=limiter, recv_window_ms=RECV_WINDOW_MS)
    settings = ExecutionSettings(settle_seconds=0.05, deadline_seconds=20.0, read_retry_seconds=5.0)
    executor = StepExecutor(engine, clients=lambda name: (client, profile(name)), clock=clock, settings=settings,
                            owner="worker:sweep")
    subs = [str(FIRST_SUB + n) for n in range(accounts)]
    # round-robin: every key's first coin, then every key's second, so no thread waits on a key
    work = [(sub, coin) for coin in coins for sub in subs]
    balances = {sub: {c: Decimal(f"{10 + i}.5") for i, c in enumerate(coins)} for sub in subs}

    def one(item: tuple[str, str]) -> tuple[str, Any]:
        sub, coin = item
        req = StepRequest(run_id=new_run_id(), step_id=f"sweep-{coin.lower()}", operation="asset_transfer",
                          key_profile="shared" if shared_key else f"sub-{sub}",
                          params={"fromAccountId": sub, "toAccountId": MASTER, "coin": coin,
                                  "quantity": str(balances[sub][coin])},
                          actor="sweep", max_seconds=120)
        return sub, executor.execute(req)

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            outcomes = list(pool.map(one, work))
        elapsed = time.monotonic() - started
        state = sim.state()
    finally:
        http.close()
        server.shutdown()
        engine.dispose()
    effects: Counter[str] = Counter(e["clientOrderId"] for e in state["transfers"] if e.get("clientOrderId"))
    counts: Counter[str] = Counter(out.state.value for _, out in outcomes)
    duplicates = sum(1 for _, out in outcomes if effects[out.client_ids[0]] > 1)
    lost = sum(1 for _, out in outcomes if out.state is StepState.SUCCEEDED and effects[out.client_ids[0]] == 0)
    orphaned = sum(1 for _, out in outcomes if out.state is StepState.FAILED and effects[out.client_ids[0]] > 0)
    master = {b["asset"]: Decimal(b["total"]) for b in _balances(state, MASTER)}
    moved = {c: sum(balances[s][c] for s in subs) for c in coins}
    transfers_per_key = len(work) if shared_key else len(coins)
    ideal = max(transfers_per_key - 1, 0) * WINDOW
    return {
        "accounts": accounts, "coins": len(coins), "transfers": len(work), "threads": threads,
        "keys": 1 if shared_key else accounts,
        "elapsed_seconds": round(elapsed, 2), "ideal_seconds": round(ideal, 2),
        "ratio": round(elapsed / ideal, 2) if ideal else None,
        "outcomes": dict(counts),
        "faults_fired": sum(int(r["fired"]) for r in state["faults"]),
        "answers_429": statuses[429], "answers_418": statuses[418],
        "duplicates": duplicates, "lost": lost, "failed_with_effect": orphaned,
        "master_balance_ok": all(master.get(c, Decimal(0)) == moved[c]
                                 for c in coins if counts.get("SUCCEEDED") == len(work)),
    }


def _balances(state: dict[str, Any], account: str) -> list[dict[str, Any]]:
    book = state["balances"].get(account, {})
    return [{"asset": a, "total": v["total"] if isinstance(v, dict) else v} for a, v in book.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--transfers", type=int, default=3, help="coins each sub-account sweeps (1 to 5)")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--baseline-accounts", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--quick", action="store_true", help="10 sub-accounts x 2 coins; baseline of 2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.accounts, args.transfers, args.baseline_accounts, args.threads = 10, 2, 2, 10
    coins = COINS[: max(1, min(args.transfers, len(COINS)))]
    with pg_schema("sweep") as url:
        keys = sweep(url, args.accounts, coins, args.threads, args.seed, shared_key=False)
    with pg_schema("sweep") as url:
        shared = sweep(url, args.baseline_accounts, coins, min(args.threads, args.baseline_accounts), args.seed,
                       shared_key=True)
    one_key_ideal = round((args.accounts * len(coins) - 1) * WINDOW, 1)
    rows = [[f"{keys['keys']} keys", keys["transfers"], keys["elapsed_seconds"], keys["ideal_seconds"],
             keys["ratio"], keys["answers_429"], keys["duplicates"], keys["lost"]],
            [f"1 shared key ({args.baseline_accounts} accounts)", shared["transfers"], shared["elapsed_seconds"],
             shared["ideal_seconds"], shared["ratio"], shared["answers_429"], shared["duplicates"], shared["lost"]],
            [f"1 shared key ({args.accounts} accounts, ideal)", args.accounts * len(coins), "-", one_key_ideal,
             "-", "-", "-", "-"]]
    print_table("sweep to the master account (30 % ambiguous faults)",
                ["keys", "transfers", "elapsed s", "ideal s", "ratio", "429s", "duplicates", "lost"], rows)
    print(f"outcomes: {keys['outcomes']}; faults fired: {keys['faults_fired']}")
    figures = {"per_key": keys, "shared_key": shared, "shared_key_ideal_seconds": one_key_ideal,
               "target_ratio": 1.5}
    write_result("sweep_bench", figures, args, args.out)
    bad = (keys["duplicates"] + keys["lost"] + keys["failed_with_effect"] + keys["answers_429"] + keys["answers_418"]
           + shared["duplicates"] + shared["lost"] + shared["answers_429"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
