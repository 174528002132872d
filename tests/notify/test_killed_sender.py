"""A scripted day's notifications reach a real receiver exactly once (after deduplication by event
id), although the sender process is SIGKILLed in the middle of a delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from tests.identities import signed_config_copy
from tests.notify.receiver import Receiver
from tests.runs.conftest import SHORT_FLIGHT
from treasury.audit.outbox import notify_outbox
from treasury.clock import ManualClock
from treasury.notify.service import build_sender
from treasury.notify.tables import notify_deliveries
from treasury.runtime import build_runtime
from treasury.settings import Settings
from treasury.simulator import Simulator, load_state
from treasury.store.db import make_engine

ROOT = Path(__file__).resolve().parents[2]
PAYOUT = {"address": "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", "amount": "1200"}
SECRET = "notify-signing-secret"
CLI = [sys.executable, "-c", "from treasury.cli.main import main; main()"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET.encode()).start()
    yield r
    r.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'day.db'}"
    return str(request.getfixturevalue("pg_url"))


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _scripted_day(settings: Settings, engine: Engine) -> None:
    """Requests, approvals, an ambiguous failure that needs attention, an approval about to expire, a ban."""
    clock = ManualClock(start=time.time())
    sim = Simulator(load_state(settings.config_dir / "simulator.yaml"), clock=clock)
    http = httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://simulator.local")
    rt = build_runtime(settings, clock=clock, engine=engine, simulator=sim, http=http)

    def payout() -> str:
        loaded = rt.service.load_and_check((ROOT / "workflows" / "vendor-payout.yaml").read_text(),
                                           source="vendor-payout.yaml")
        return str(rt.service.start(loaded, PAYOUT, requested_by="erin"))

    paid = payout()
    rt.service.approve(paid, "alice", comment="ok")
    rt.service.approve(paid, "bob")
    assert rt.service.state_of(paid) == "SUCCEEDED"

    sim.set_faults([  # the answer is lost and every lookup fails: a person must decide
        {"method": "POST", "path": "/api/v1/account/withdraw", "mode": "error_after", "status": 500},
        {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 503},
        {"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before", "status": 503},
    ])
    stuck = payout()
    rt.service.approve(stuck, "alice")
    rt.service.approve(stuck, "bob")
    assert rt.service.state_of(stuck) == "NEEDS_ATTENTION"
    sim.set_faults([])

    waiting = payout()  # nobody approves it; it is about to expire
    assert rt.service.state_of(waiting) == "AWAITING_APPROVAL"
    clock.advance(23.5 * 3600)
    # what the worker's sender pass does first: note approvals about to expire (in the outbox)
    assert build_sender(settings, engine, clock).enqueue_expiring() == 1

    sim.set_faults([{"method": "POST", "path": "/api/v1/account/assetTransfer", "mode": "error_before",
                     "status": 418, "count": 1}])
    loaded = rt.service.load_and_check((ROOT / "workflows" / "treasury-sweep.yaml").read_text(),
                                       source="treasury-sweep.yaml")
    rt.service.start(loaded, {"amount": "100"}, requested_by="erin")


def _sender(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*CLI, "notify", "send", "--loop", "--interval", "0.1"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def test_every_notification_of_a_day_arrives_once_across_a_killed_sender(
    tmp_path: Path, receiver: Receiver, db_url: str
) -> None:
    config = tmp_path / "config"
    signed_config_copy(config)
    (config / "notify.yaml").write_text(f"""\
channels:
  ops:
    type: webhook
    url: {receiver.url}/hook
    secret_env: TREASURY_TEST_NOTIFY_SECRET
  desk:
    type: slack
    url_env: TREASURY_TEST_SLACK_URL
routes:
  - {{events: ["*"], channels: [ops]}}
  - {{events: [approval.requested, approval.expiring, step.needs_attention], channels: [desk]}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update({"PYTHONPATH": str(ROOT), "TREASURY_CONFIG_DIR": str(config), "TREASURY_DATABASE_URL": db_url,
                "TREASURY_TEST_NOTIFY_SECRET": SECRET, "TREASURY_TEST_SLACK_URL": f"{receiver.url}/slack",
                "TREASURY_NOTIFY_LEASE_SECONDS": "2", "TREASURY_CONSOLE_URL": "https://console.example"})
    os.environ.update({"TREASURY_TEST_NOTIFY_SECRET": SECRET, "TREASURY_TEST_SLACK_URL": f"{receiver.url}/slack"})
    try:
        settings = Settings(config_dir=config, database_url=db_url, workflows_dir=ROOT / "workflows",
                            settle_seconds=2, reconcile_deadline_seconds=30, **SHORT_FLIGHT)
        engine = make_engine(db_url)
        from treasury.schema import create_schema

        create_schema(engine)
        _scripted_day(settings, engine)
    finally:
        for name in ("TREASURY_TEST_NOTIFY_SECRET", "TREASURY_TEST_SLACK_URL"):
            os.environ.pop(name, None)

    with engine.connect() as conn:
        events = {r.event_id: r.type for r in conn.execute(select(notify_outbox))}
    kinds = sorted(set(events.values()))
    assert kinds == ["approval.expiring", "approval.requested", "exchange.banned", "step.needs_attention"], kinds
    to_desk = {e for e, kind in events.items() if kind in ("approval.requested", "approval.expiring",
                                                          "step.needs_attention")}
    assert len(events) == 6 and len(to_desk) == 5  # three requests, one expiring, one needing attention, a ban

    receiver.hang_on = 3  # the third delivery is in flight when the sender dies
    log = tmp_path / "sender.log"
    first = _sender(env, log)
    try:
        assert receiver.hanging.wait(60), log.read_text()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    receiver.release.set()
    in_flight = receiver.requests[2]

    second = _sender(env, log)
    try:
        _wait(lambda: set(receiver.deduplicated("/hook")) == set(events)
              and set(receiver.deduplicated("/slack")) == to_desk, 60, "every notification")
        _wait(lambda: _all_done(engine), 30, "the outbox to be closed")
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(10)

    hook, desk = receiver.ids("/hook"), receiver.ids("/slack")
    # at least once: the delivery cut off by the kill went again, with the same event id; nothing
    # else was sent twice, and a receiver that deduplicates by id sees each event exactly once
    resent = {(p, e) for p, ids in (("/hook", hook), ("/slack", desk)) for e, n in ids.items() if n > 1}
    assert resent == {(in_flight.path, in_flight.event_id)}, (hook, desk)
    assert max(hook.values()) <= 2 and max(desk.values()) <= 2
    assert len(receiver.deduplicated("/hook")) == 6 and len(receiver.deduplicated("/slack")) == 5
    assert receiver.bad_signatures == 0  # every webhook verified with the shared secret
    banned = next(r for r in receiver.deduplicated("/hook").values() if r.json()["type"] == "exchange.banned")
    assert "resumes" in banned.json()["summary"]
    text = log.read_text()
    assert SECRET not in text and receiver.url not in text  # the Slack URL is a credential too
    engine.dispose()


def _all_done(engine: Engine) -> bool:
    with engine.connect() as conn:
        open_events = conn.execute(select(notify_outbox).where(notify_outbox.c.done_at.is_(None))).all()
        undelivered = conn.execute(select(notify_deliveries).where(notify_deliveries.c.delivered_at.is_(None))).all()
    return not open_events and not undelivered
