"""From the final approval POST to the request at the exchange: 50 approvals through the ASGI client.

Each payout gets alice's approval first; then bob's approval page is loaded, his passkey signs,
and the time runs from his POST to the moment the withdrawal reaches the (in-process)
simulator. The figures go to ``latency.json`` in the test's folder (and to the log); what the
test insists on is that every one of the 50 withdrawals was sent exactly once.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import Console
from tests.web.passkey_pages import decision_form, enrol, sign_in

APPROVALS = 50
WITHDRAW = "/api/v1/account/withdraw"
log = logging.getLogger(__name__)

pytestmark = pytest.mark.slow


class Stopwatch:
    """Stands in front of the simulator and notes when each withdrawal arrives."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.arrived: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == WITHDRAW:
            self.arrived.append(time.perf_counter())
        response: httpx.Response = self.sim.handle(request)
        return response


def test_final_approval_to_exchange_latency(console: Console, tmp_path: Path) -> None:
    watch = Stopwatch(console.wire.sim)
    console.wire.sim = watch
    alice, bob = enrol(console, "alice"), enrol(console, "bob")
    runs = [console.start_payout(amount="100") for _ in range(APPROVALS)]
    sign_in(console, alice)
    for run_id in runs:
        assert console.client.post("/decisions", data=decision_form(console, f"/runs/{run_id}/approve",
                                                                    alice)).status_code == 200
    sign_in(console, bob)
    latencies = []
    for run_id in runs:
        form = decision_form(console, f"/runs/{run_id}/approve", bob)
        before = len(watch.arrived)
        started = time.perf_counter()
        response = console.client.post("/decisions", data=form)
        assert response.status_code == 200 and "SUCCEEDED" in response.text, response.text
        assert len(watch.arrived) == before + 1  # sent once, before the answer came back
        latencies.append(watch.arrived[-1] - started)
    assert len(watch.arrived) == APPROVALS
    assert all(console.runtime.service.state_of(r) == "SUCCEEDED" for r in runs)
    ordered = sorted(latencies)
    figures = {"approvals": APPROVALS, "p50_ms": round(statistics.median(ordered) * 1000, 1),
               "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1),
               "max_ms": round(ordered[-1] * 1000, 1)}
    (tmp_path / "latency.json").write_text(json.dumps(figures))
    log.warning("final approval POST -> withdrawal at the exchange: %s", figures)
