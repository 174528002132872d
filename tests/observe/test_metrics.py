"""Metrics: the database gauges (both databases), the counters where work happens, the HTTP server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy import Engine

from tests.runs.conftest import SHORT_FLIGHT
from treasury.audit import verify_chain
from treasury.clock import ManualClock
from treasury.exchange.halts import SUSPENDED, key_scope, record_halt
from treasury.monitoring.collector import DatabaseCollector
from treasury.monitoring.health import Check, HealthReport
from treasury.monitoring.marks import audit_verified
from treasury.monitoring.server import MetricsServer, build_registry
from treasury.runtime import build_runtime
from treasury.settings import Settings
from treasury.simulator import Simulator, load_state

ROOT = Path(__file__).resolve().parents[2]
MONDAY_10_HKT = 1_780_279_200.0
PAYOUT = {"address": "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", "amount": "1200"}


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
def setup(engine: Engine, signed_config: Path) -> tuple[object, ManualClock, CollectorRegistry]:
    clock = ManualClock(start=MONDAY_10_HKT)
    sim = Simulator(load_state(ROOT / "config" / "simulator.yaml"), clock=clock)
    http = httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://simulator.local")
    settings = Settings(config_dir=signed_config, workflows_dir=ROOT / "workflows", settle_seconds=2,
                        reconcile_deadline_seconds=30, **SHORT_FLIGHT)
    rt = build_runtime(settings, clock=clock, engine=engine, simulator=sim, http=http)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(engine, clock, {"query": 2.0, "transfer": 1.0}))
    return rt, clock, registry


def test_gauges_follow_the_database_and_counters_the_work(setup: tuple[object, ManualClock, CollectorRegistry],
                                                          engine: Engine) -> None:
    rt, clock, registry = setup
    g = registry.get_sample_value
    assert g("treasury_database_up") == 1
    assert g("treasury_runs", {"state": "AWAITING_APPROVAL"}) == 0
    assert g("treasury_execution_records", {"state": "NEEDS_ATTENTION"}) == 0
    assert g("treasury_approval_next_expiry_seconds") is None  # nothing pending: no sample

    loaded = rt.service.load_and_check((ROOT / "workflows" / "vendor-payout.yaml").read_text(),  # type: ignore[attr-defined]
                                       source="vendor-payout.yaml")
    run_id = rt.service.start(loaded, PAYOUT, requested_by="erin")  # type: ignore[attr-defined]
    assert g("treasury_runs", {"state": "AWAITING_APPROVAL"}) == 1
    assert g("treasury_approvals_pending") == 1
    expires = g("treasury_approval_next_expiry_seconds")
    assert expires is not None and expires > 0
    clock.advance(600)
    assert g("treasury_approval_oldest_wait_seconds") == 600
    assert g("treasury_approval_next_expiry_seconds") == expires - 600

    granted_before = _value("treasury_approval_wait_seconds_count", {"decision": "granted"})
    granted_sum = _value("treasury_approval_wait_seconds_sum", {"decision": "granted"})
    steps_before = _value("treasury_steps_total", {"operation": "withdraw", "outcome": "SUCCEEDED"})
    rt.service.approve(run_id, "alice", comment="ok")  # type: ignore[attr-defined]
    rt.service.approve(run_id, "bob")  # type: ignore[attr-defined]
    assert rt.service.state_of(run_id) == "SUCCEEDED"  # type: ignore[attr-defined]
    assert _value("treasury_approval_wait_seconds_count", {"decision": "granted"}) == granted_before + 1
    assert _value("treasury_approval_wait_seconds_sum", {"decision": "granted"}) == granted_sum + 600
    assert _value("treasury_steps_total", {"operation": "withdraw", "outcome": "SUCCEEDED"}) == steps_before + 1

    assert g("treasury_runs", {"state": "SUCCEEDED"}) == 1 and g("treasury_approvals_pending") == 0
    assert g("treasury_execution_records", {"state": "SUCCEEDED"}) == 1
    result = verify_chain(engine)
    assert g("treasury_audit_chain_length") == result.head_seq > 10
    assert g("treasury_audit_last_verify_timestamp_seconds") is None
    audit_verified(engine, result, at=clock.now())
    assert g("treasury_audit_last_verify_timestamp_seconds") == clock.time()
    assert g("treasury_audit_last_verify_ok") == 1

    with engine.begin() as conn:
        record_halt(conn, scope=key_scope("demo-withdraw"), kind=SUSPENDED, reason="HTTP 429",
                    at=clock.now(), until=clock.now().replace(year=2099))
    assert g("treasury_exchange_halted", {"scope": "key:demo-withdraw", "kind": "suspended"}) == 1
    assert g("treasury_rate_limit_budget_per_second", {"rate_class": "transfer"}) == 1


def test_a_database_that_cannot_be_read_says_so_rather_than_failing_the_scrape(tmp_path: Path) -> None:
    from treasury.store.db import make_engine

    bad = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/none")
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(bad, ManualClock()))
    assert registry.get_sample_value("treasury_database_up") == 0


def test_the_server_serves_metrics_liveness_and_readiness() -> None:
    verdict = {"ok": True}

    def ready() -> HealthReport:
        return HealthReport((Check("database", verdict["ok"], "probe"),))

    server = MetricsServer("127.0.0.1", 0, build_registry(), ready)
    try:
        assert httpx.get(server.url + "/healthz").text == "ok\n"
        assert httpx.get(server.url + "/readyz").status_code == 200
        verdict["ok"] = False
        answer = httpx.get(server.url + "/readyz")
        assert answer.status_code == 503 and answer.json()["checks"][0]["status"] == "FAIL"
        assert "python_info" in httpx.get(server.url + "/metrics").text  # the default registry, single process
        assert httpx.get(server.url + "/nope").status_code == 404
    finally:
        server.shutdown()


def test_a_folder_of_its_own_is_removed_by_the_process_that_made_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = ("import os, sys; from treasury.observe import multiproc; path = multiproc.prepare(); print(path)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n    sys.exit(0)  # runs the atexit handlers it inherited\n"
            "os.waitpid(pid, 0); print(os.path.isdir(path))")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         timeout=60).stdout.split()
    path, alive_after_child = out[0], out[-1]
    assert alive_after_child == "True"  # a forked child exiting did not remove the parent's folder
    assert not Path(path).exists()  # the parent's exit did
