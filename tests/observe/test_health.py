"""``treasury health`` and the checks behind /readyz, against real servers where there are some."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from treasury.clock import ManualClock
from treasury.exchange.halts import BANNED, HOST_SCOPE, record_halt
from treasury.monitoring.health import check_database, check_exchange, check_halts, check_migrations
from treasury.schema import create_schema, status
from treasury.simulator import Simulator, SimulatorServer, load_state, serve
from treasury.store.db import make_engine

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from treasury.cli.main import main; main()"]


def _time_server(offset_ms: float, status: int = 200) -> httpx.Client:
    clock = ManualClock()

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/time"
        return httpx.Response(status, json={"serverTime": int(clock.time() * 1000 + offset_ms)})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_exchange_time_and_clock_offset() -> None:
    clock = ManualClock()
    exchange, offset = check_exchange("http://x", _time_server(120), clock, 1000)
    assert exchange.ok and offset.ok and "+120 ms" in offset.detail
    _, far = check_exchange("http://x", _time_server(-4500), clock, 1000)
    assert far.ok is False and "-4500 ms" in far.detail
    down, unknown = check_exchange("http://x", _time_server(0, status=503), clock, 1000)
    assert down.ok is False and "HTTP 503" in down.detail and unknown.ok is None
    inproc = check_exchange(None, _time_server(0), clock, 1000)
    assert [c.ok for c in inproc] == [None, None]


def test_unreachable_exchange_fails_without_raising() -> None:
    exchange, _ = check_exchange("http://127.0.0.1:9", httpx.Client(), ManualClock(), 1000)
    assert exchange.ok is False and "ConnectError" in exchange.detail


def test_database_halts_and_migrations_on_both_databases(engine: Engine) -> None:
    clock = ManualClock()
    assert check_database(engine).ok is True
    assert check_halts(engine, clock).ok is True
    with engine.begin() as conn:
        record_halt(conn, scope=HOST_SCOPE, kind=BANNED, reason="HTTP 418", at=datetime.now(UTC))
    halted = check_halts(engine, clock)
    assert halted.ok is False and "host banned" in halted.detail
    migrations = check_migrations(engine, status)
    assert migrations.ok is True and "up to date" in migrations.detail
    with engine.begin() as conn:  # a release behind: recorded at the baseline
        conn.execute(text("UPDATE alembic_version SET version_num = '0001_baseline'"))
    behind = check_migrations(engine, status)
    assert behind.ok is False and "treasury db upgrade" in behind.detail


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = serve(Simulator(load_state(REPO / "config" / "simulator.yaml")), port=0)
    yield server
    server.shutdown()


def _health(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    return subprocess.run([*CLI, "health", *args], capture_output=True,
                          text=True, env={**base, "PYTHONPATH": str(REPO), **env}, timeout=60, check=False)


def test_health_command_healthy_then_unhealthy(tmp_path: Path, sim: SimulatorServer, redis_url: str) -> None:
    env = {"TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}", "TREASURY_BASE_URL": sim.url,
           "TREASURY_BROKER_URL": redis_url, "TREASURY_CONFIG_DIR": str(REPO / "config")}
    good = _health(**env)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines[:-1]] == \
        ["database", "redis", "exchange", "clock", "exchange_halts", "migrations"]
    assert lines[-1] == "healthy" and "migrations: not checked" in good.stdout
    as_json = json.loads(_health("--json", **env).stdout)
    assert as_json["healthy"] is True and {c["name"]: c["status"] for c in as_json["checks"]}["redis"] == "ok"

    bad = _health(**{**env, "TREASURY_BROKER_URL": "redis://127.0.0.1:9/0", "TREASURY_BASE_URL": "http://127.0.0.1:9"})
    assert bad.returncode == 1
    assert "redis: FAIL" in bad.stdout and "exchange: FAIL" in bad.stdout and bad.stdout.endswith("UNHEALTHY\n")


def test_health_on_postgresql_never_prints_the_password(pg_url: str) -> None:
    engine = make_engine(pg_url)
    create_schema(engine)
    engine.dispose()
    assert _health(TREASURY_DATABASE_URL=pg_url).returncode == 0
    canary = f"canary{uuid.uuid4().hex}"
    out = _health(TREASURY_DATABASE_URL=f"postgresql+psycopg://treasury:{canary}@127.0.0.1:9/treasury")
    assert out.returncode == 1 and "database: FAIL" in out.stdout
    assert canary not in out.stdout + out.stderr
