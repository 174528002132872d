"""Real Celery worker processes against real Redis and PostgreSQL, and an HTTP simulator.

Each test gets a fresh PostgreSQL schema (``pg_url``), a flushed Redis database
(``redis_url``) and a queue of its own, so tests never see each other's tasks.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from tests.simulators import serve_without_rate_limits
from treasury.broker.options import WorkerOptions
from treasury.people.keyring import make_demo_identities
from treasury.schema import create_schema
from treasury.settings import Settings
from treasury.simulator import SimulatorServer
from treasury.store.db import make_engine

REPO = Path(__file__).resolve().parents[2]

TWO_TRANSFERS = """\
name: two-transfers
description: two internal transfers, one after the other
steps:
  - id: first
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "10"}
  - id: second
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "20"}
"""


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1,
             detail: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` (and ``detail()``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config folder (keys, people with demo keys, simulator state and secrets)."""
    target = tmp_path / "config"
    target.mkdir()
    for name in ("keys.yaml", "people.yaml", "simulator.yaml"):
        shutil.copy(REPO / "config" / name, target / name)
    shutil.copytree(REPO / "config" / "secrets", target / "secrets")
    (target / "policy.yaml").write_text("policy: none\n")  # no guardrails here, on purpose (simulator)
    make_demo_identities(target)
    return target


@pytest.fixture
def workflows_dir(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    target.mkdir()
    (target / "two-transfers.yaml").write_text(TWO_TRANSFERS)
    return target


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorServer]:
    """The shipped simulator over HTTP, without its server-side rate limits.

    The simulator counts a request against its limit when it processes it, which with a
    ``latency`` fault is seconds after it arrived, so the transfer that follows a slowed one
    would be refused (and its key suspended for a minute). That is an artefact of the fault,
    not what these tests are about; the client's own limiter (in Redis) still paces transfers.
    """
    server = serve_without_rate_limits(tmp_path)
    yield server
    server.shutdown()


def effects(server: SimulatorServer, client_id: str) -> list[dict[str, Any]]:
    """Transfers with ``client_id`` in the simulator's ledger, read over HTTP like any client."""
    state = httpx.get(f"{server.url}/_sim/state", timeout=5).json()
    return [t for t in state["transfers"] if t.get("clientOrderId") == client_id]


def arrival(server: SimulatorServer, path: str) -> threading.Event:
    """An event set when a request for ``path`` reaches the simulator (before any fault delays it)."""
    seen = threading.Event()
    original = server.simulator.process

    def process(request: Any, **kwargs: Any) -> Any:
        if request.path == path:
            seen.set()
        return original(request, **kwargs)

    server.simulator.process = process  # type: ignore[method-assign]
    return seen


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the prefork pool's children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready(self, marker: str = " ready.") -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
        return marker in self.text()

    def received(self) -> int:
        return self.text().count("Task treasury.execute_step[")

    def kill9(self) -> None:
        """SIGKILL the parent and its pool children at once: nothing gets to clean up."""
        kids = child_pids(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


@dataclass
class Cluster:
    """Worker processes sharing one broker, database, simulator and queue."""

    env: dict[str, str]
    tmp: Path
    queue: str
    settings: Settings
    options: WorkerOptions
    engine: Engine
    workers: list[Worker] = field(default_factory=list)

    def start(self, name: str, **env: str) -> Worker:
        log = self.tmp / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "treasury.worker", "worker", "--pool=prefork", "-c", "1",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", self.queue,
               "-n", f"{name}-{self.queue}@%h", "-l", "INFO"]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env={**self.env, **env}, cwd=self.tmp, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(name, proc, log)
        self.workers.append(worker)
        return worker

    def start_beat(self, **env: str) -> Worker:
        """``celery beat`` with the treasury schedule (beat ticks and the sweeper), ready."""
        log = self.tmp / "beat.log"
        cmd = [sys.executable, "-m", "celery", "-A", "treasury.worker", "beat", "-l", "INFO"]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env={**self.env, **env}, cwd=self.tmp, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        beat = Worker("beat", proc, log)
        self.workers.append(beat)
        wait_for(lambda: beat.ready("beat: Starting..."), 30, "beat to start")
        return beat

    def start_ready(self, *names: str, timeout: float = 30, **env: str) -> list[Worker]:
        started = [self.start(n, **env) for n in names]
        for w in started:
            wait_for(w.ready, timeout, f"worker {w.name} to be ready")
        return started

    def stop_all(self) -> None:
        """Kill what is left: the tests are over, and their Redis database is flushed after."""
        for w in self.workers:
            if w.proc.poll() is None:
                w.kill9()

    def diagnostics(self) -> str:
        """The end of every worker's log, for a failure message."""
        parts = []
        for w in self.workers:
            lines = [ln for ln in w.text().splitlines() if ln.startswith("[")]
            parts.append(f"--- {w.name} (exit {w.proc.poll()}):\n" + "\n".join(lines[-25:]))
        return "\n".join(parts)

    def run_state(self, run_id: str) -> str:
        from treasury.store.tables import runs

        with self.engine.connect() as conn:
            return str(conn.execute(select(runs.c.state).where(runs.c.id == run_id)).scalar_one())


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """Redis database 14 for the worker tests' messages, which are kept apart by key prefix.

    Nothing here flushes a database: ``redis_url`` (database 15) is flushed by every test
    that uses it, in parallel with this group under xdist, and by anyone else running the
    suite on the same server; a flush would silently drop the queued and unacknowledged
    messages these tests are about. Each test's keys carry its queue name as a prefix.
    """
    return os.environ.get("TREASURY_TEST_CELERY_REDIS") or redis_url.rsplit("/", 1)[0] + "/14"


@pytest.fixture
def cluster(
    tmp_path: Path, pg_url: str, broker_url: str, sim: SimulatorServer, config_dir: Path, workflows_dir: Path
) -> Iterator[Cluster]:
    queue = f"t-{secrets.token_hex(4)}"
    values = {
        "TREASURY_BROKER_URL": broker_url,
        "TREASURY_DATABASE_URL": pg_url,
        "TREASURY_BASE_URL": sim.url,
        "TREASURY_CONFIG_DIR": str(config_dir),
        "TREASURY_WORKFLOWS_DIR": str(workflows_dir),
        "TREASURY_QUEUE": queue,
        "TREASURY_BROKER_KEY_PREFIX": f"{queue}:",
        # short enough that a whole-worker crash is redelivered within the test
        "TREASURY_VISIBILITY_TIMEOUT": "3",
        "TREASURY_ALLOW_SHORT_VISIBILITY": "true",
        # a request's flight (HTTP timeout + recvWindow + margin) fits the settle window
        "TREASURY_SETTLE_SECONDS": "5",
        "TREASURY_HTTP_TIMEOUT_SECONDS": "3",
        "TREASURY_RECV_WINDOW_MS": "1000",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update(values)
    engine = make_engine(pg_url)
    create_schema(engine)  # once, before workers start, so they never race to create tables
    settings = Settings(broker_url=broker_url, database_url=pg_url, base_url=sim.url, config_dir=config_dir,
                        workflows_dir=workflows_dir, settle_seconds=5, http_timeout_seconds=3, recv_window_ms=1000)
    options = WorkerOptions(queue=queue, visibility_timeout=3, allow_short_visibility=True,
                            broker_key_prefix=f"{queue}:")
    c = Cluster(env=env, tmp=tmp_path, queue=queue, settings=settings, options=options, engine=engine)
    try:
        yield c
    finally:
        c.stop_all()
        engine.dispose()
        import redis

        client = redis.Redis.from_url(broker_url)
        stale = list(client.scan_iter(match=f"{queue}:*"))
        if stale:
            client.delete(*stale)
        client.close()
