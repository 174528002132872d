from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from treasury.clock import ManualClock
from treasury.runs.service import InlineDispatcher
from treasury.runtime import Runtime, build_runtime
from treasury.settings import Settings
from treasury.simulator import Simulator, load_state

ROOT = Path(__file__).resolve().parents[2]
MONDAY_10_HKT = 1_780_279_200.0
# A settle window of 2 s (on the manual clock) needs a request's flight to fit in it:
# HTTP timeout + recvWindow + margin <= settle (Settings refuse anything shorter).
SHORT_FLIGHT: dict[str, Any] = {"http_timeout_seconds": 0.5, "recv_window_ms": 1000, "settle_margin_seconds": 0.5}
PAYOUT = {"address": "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", "amount": "1200"}


class Wire:
    """Counts the requests that reach the (in-process) exchange."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.sim.handle(request)

    def writes(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method != "GET"]


class HeldDispatcher(InlineDispatcher):
    """Keeps dispatched steps until the test releases them (to act between approval and send)."""

    def flush(self, service: Any) -> None:
        pass

    def release(self, service: Any) -> None:
        super().flush(service)


@pytest.fixture
def make_runtime(tmp_path: Path, signed_config: Path) -> Callable[..., tuple[Runtime, Wire]]:
    clock = ManualClock(start=MONDAY_10_HKT)
    sim = Simulator(load_state(ROOT / "config" / "simulator.yaml"), clock=clock)

    def make(engine: Engine | None = None, dispatcher: Any = None, db: str = "t.db",
             config_dir: Path = signed_config) -> tuple[Runtime, Wire]:
        wire = Wire(sim)
        http = httpx.Client(transport=httpx.MockTransport(wire.handle), base_url="http://simulator.local")
        settings = Settings(config_dir=config_dir, database_url=f"sqlite:///{tmp_path / db}",
                            workflows_dir=ROOT / "workflows", settle_seconds=2, reconcile_deadline_seconds=30,
                            **SHORT_FLIGHT)
        rt = build_runtime(settings, clock=clock, engine=engine, simulator=sim, dispatcher=dispatcher, http=http)
        return rt, wire

    return make


def load(rt: Runtime, name: str) -> Any:
    path = ROOT / "workflows" / name
    return rt.service.load_and_check(path.read_text(), source=str(path))
