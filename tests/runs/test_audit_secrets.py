"""No secret reaches the audit history, whatever happens to the request: a canary hunt."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, select

from tests.identities import signed_config_copy
from tests.observe.jsonlog import json_log
from treasury.audit import query_events
from treasury.clock import ManualClock
from treasury.runtime import build_runtime
from treasury.settings import Settings
from treasury.simulator import Simulator, load_state

from .conftest import MONDAY_10_HKT, PAYOUT, ROOT, SHORT_FLIGHT, Wire, load

CANARY = f"CANARY{uuid.uuid4().hex}"
TOTP_CANARY = "CANARYAAAAAAAAAAAAAAAAAAAAAAAAAA"  # valid base32


def test_no_secret_in_any_table_after_payouts_with_faults_retries_and_reconciliation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    signed_config_copy(config)
    (config / "secrets" / "withdrawals.secret").write_text(CANARY + "\n")
    keys = (config / "keys.yaml").read_text()
    old = "secret_file: secrets/withdrawals.secret,  permissions: [read, withdraw]}"
    assert old in keys
    new = old.replace("withdraw]}", f"withdraw], totp_secret_env: {TOTP_CANARY}}}")
    (config / "keys.yaml").write_text(keys.replace(old, new))
    state = (config / "simulator.yaml").read_text()
    old_key = "{api_key: demo-withdraw, secret: demo-withdraw-secret,"
    assert old_key in state
    (config / "simulator.yaml").write_text(state.replace(old_key, f"{{api_key: demo-withdraw, secret: {CANARY},"))
    monkeypatch.setenv(TOTP_CANARY, TOTP_CANARY)

    clock = ManualClock(start=MONDAY_10_HKT)
    sim = Simulator(load_state(config / "simulator.yaml"), clock=clock)
    wire = Wire(sim)
    http = httpx.Client(transport=httpx.MockTransport(wire.handle), base_url="http://simulator.local")
    settings = Settings(config_dir=config, database_url=f"sqlite:///{tmp_path / 'canary.db'}",
                        workflows_dir=ROOT / "workflows", settle_seconds=2, reconcile_deadline_seconds=30,
                        **SHORT_FLIGHT)
    rt = build_runtime(settings, clock=clock, simulator=sim, http=http)
    sim.set_faults([
        {"method": "POST", "path": "/api/v1/account/withdraw", "mode": "error_after", "status": 500, "count": 1},
        {"method": "POST", "path": "/api/v1/account/withdraw", "mode": "error_before", "status": 401, "count": 1},
        {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 503,
         "count": 2},
    ])
    states = []
    with json_log() as logs:  # and the JSON log lines the runs wrote (TREASURY_LOG_FORMAT=json)
        for _ in range(3):
            run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
            rt.service.approve(run_id, "alice", comment="ok")
            rt.service.approve(run_id, "bob")
            states.append(rt.service.state_of(run_id))
    assert any(ln.get("operation") == "withdraw" for ln in logs.lines())
    assert CANARY not in logs.text and TOTP_CANARY not in logs.text
    assert "signature=" not in logs.text.replace("signature=<redacted>", "")
    assert "SUCCEEDED" in states  # signed with the canary, so the secret was really in use
    events = list(query_events(rt.engine))
    statuses = {e.payload.get("status") for e in events if e.type == "response.received"}
    assert {500, 401} <= statuses and any(e.type == "reconcile.verdict" for e in events)  # the error paths ran
    withdraw_calls = [r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]
    assert withdraw_calls and all("x-two-fa-token" in r.headers for r in withdraw_calls)  # the TOTP was used

    meta = MetaData()
    meta.reflect(rt.engine)
    seen = 0
    with rt.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                text = repr(tuple(row))
                seen += 1
                assert CANARY not in text, f"the key's secret is in {table.name}: {text[:300]}"
                assert TOTP_CANARY not in text, f"the TOTP secret is in {table.name}: {text[:300]}"
                assert "signature=" not in text  # no signed query string is stored either
    assert seen > 50  # the hunt looked at a real history

