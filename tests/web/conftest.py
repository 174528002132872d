"""The console over a real runtime (in-process simulator, SQLite), an ASGI test client, and a
test-only way to sign in: a session opened directly in the session store for a person.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.identities import REPO_CONFIG
from tests.runs.conftest import MONDAY_10_HKT, PAYOUT, SHORT_FLIGHT, Wire
from treasury.audit import append_event
from treasury.clock import ManualClock
from treasury.people.keyring import make_demo_identities
from treasury.people.passkeys import RelyingParty
from treasury.runtime import Runtime, build_runtime
from treasury.schedules.beat import load_schedules
from treasury.settings import Settings
from treasury.simulator import Simulator, load_state
from treasury.web import sessions
from treasury.web.app import create_app
from treasury.web.ceremony import PasskeyCeremony
from treasury.web.config import WebSettings
from treasury.web.desk import RuntimeDesk

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://localhost:8700"
# one person for each single role, beside the shipped people (who hold several)
EXTRA_PEOPLE = """
  ivy:
    name: Ivy Auditor
    roles: [auditor]
    groups: []
    ssh_keys: []
  rex:
    name: Rex Requester
    roles: [requester]
    groups: []
    ssh_keys: []
  olga:
    name: Olga Operator
    roles: [operator]
    groups: []
    ssh_keys: []
  abe:
    name: Abe Approver
    roles: [approver]
    groups: []
    ssh_keys: []
"""
SINGLE_ROLE = {"auditor": "ivy", "requester": "rex", "operator": "olga", "approver": "abe"}


@pytest.fixture(scope="session")
def web_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("web") / "config"
    shutil.copytree(REPO_CONFIG, target)
    for secret in (target / "secrets").glob("*.secret"):
        secret.chmod(0o600)
    people = target / "people.yaml"
    people.write_text(people.read_text() + EXTRA_PEOPLE)
    make_demo_identities(target)
    return target


@dataclass
class Console:
    """The console under test, with the runtime, wire and clock behind it."""

    client: TestClient
    runtime: Runtime
    wire: Wire
    clock: ManualClock
    desk: RuntimeDesk

    csrf: str = ""

    def sign_in(self, person: str) -> str:
        """Test-only: open a session for ``person`` in the store and give the client its cookie."""
        with self.runtime.engine.begin() as conn:
            token, session = sessions.open_session(conn, person, now=self.clock.now())
        self.client.cookies.set(sessions.COOKIE, token)
        self.csrf = session.csrf
        return token

    def start_payout(self, requester: str = "erin", **inputs: str) -> str:
        path = ROOT / "workflows" / "vendor-payout.yaml"
        loaded = self.runtime.service.load_and_check(path.read_text(), source=str(path))
        run_id: str = self.runtime.service.start(loaded, {**PAYOUT, **inputs}, requested_by=requester)
        return run_id


@pytest.fixture
def console(tmp_path: Path, web_config: Path) -> Iterator[Console]:
    clock = ManualClock(start=MONDAY_10_HKT)
    sim = Simulator(load_state(ROOT / "config" / "simulator.yaml"), clock=clock)
    wire = Wire(sim)
    http = httpx.Client(transport=httpx.MockTransport(wire.handle), base_url="http://simulator.local")
    settings = Settings(config_dir=web_config, database_url=f"sqlite:///{tmp_path / 'web.db'}",
                        workflows_dir=ROOT / "workflows", settle_seconds=2, reconcile_deadline_seconds=30,
                        web_origin=ORIGIN, **SHORT_FLIGHT)
    rt = build_runtime(settings, clock=clock, simulator=sim, http=http)
    desk = RuntimeDesk(rt, load_schedules=lambda: load_schedules(settings.workflows_dir, rt.service))
    ceremony = PasskeyCeremony(rt.engine, RelyingParty("localhost", "treasury", ORIGIN), clock, append_event)
    app = create_app(desk, ceremony, WebSettings(), clock=clock, origin=ORIGIN,
                     decision_max_age=settings.decision_max_age)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        yield Console(client, rt, wire, clock, desk)
    rt.engine.dispose()

