"""Many clients at once: the ledger lock never loses an update."""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx

from tests.simulator.conftest import HK, balance
from treasury.clock import ManualClock
from treasury.simulator import Simulator

THREADS = 8
ROUNDS = 40


def test_eight_threads_transferring_back_and_forth_conserve_balances(sim: Simulator, clock: ManualClock) -> None:
    moved_in: list[Decimal] = []  # into 1002, per successful transfer
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="https://sim.test") as c:
            signer = HK(c, clock, "demo-transfer")
            start.wait()
            for i in range(ROUNDS):
                amount = Decimal(n + 1) + Decimal(i) / 100
                for src, dst, sign in (("1001", "1002", 1), ("1002", "1001", -1)):
                    r = signer.post(
                        "/api/v1/account/assetTransfer",
                        fromAccountId=src,
                        toAccountId=dst,
                        coin="USDT",
                        quantity=str(amount),
                        clientOrderId=f"t{n}-{i}-{src}",
                    )
                    with lock:
                        if r.status_code == 200:
                            moved_in.append(sign * amount)
                        elif r.json().get("code") != "0401":
                            errors.append(r.text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = sim.state()
    assert len(state["transfers"]) == len(moved_in)
    assert len({t["clientOrderId"] for t in state["transfers"]}) == len(moved_in)
    custody = Decimal(balance(sim, "1002", "USDT"))
    trading = Decimal(balance(sim, "1001", "USDT"))
    assert custody == sum(moved_in, Decimal(0))
    assert trading + custody == Decimal(250000)
    assert custody >= 0


def test_concurrent_orders_never_overspend(sim: Simulator, clock: ManualClock) -> None:
    """8 threads try to buy 2 BTC (120000 USDT) twice each with 250000 USDT: exactly two fit."""
    results: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="https://sim.test") as c:
            signer = HK(c, clock, "demo-trade")
            for i in range(2):
                r = signer.post(
                    "/api/v1.1/spot/order",
                    symbol="BTCUSDT",
                    side="BUY",
                    type="MARKET",
                    quantity="2",
                    newClientOrderId=f"o{n}-{i}",
                )
                with lock:
                    results.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 2  # 250000 // 120000
    assert Decimal(balance(sim, "1001", "USDT")) == Decimal(10000)
    assert Decimal(balance(sim, "1001", "BTC")) == Decimal(7)
