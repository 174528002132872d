"""Shared fixtures: hermetic environment, databases (SQLite and real PostgreSQL), Redis.

Tests that need a server skip with a reason when it is absent, except with CI=true,
where they fail: CI must never pass by skipping the real-server tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.identities import signed_config_copy
from treasury.schema import create_schema
from treasury.store.db import make_engine


@pytest.fixture(scope="session")
def signed_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config with demo keys for every person (shared, read-only)."""
    return signed_config_copy(tmp_path_factory.mktemp("signed") / "config")


PG_BASE = os.environ.get("TREASURY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("TREASURY_TEST_REDIS", "redis://127.0.0.1:6379")
# One Redis database per xdist worker, so flushing it never touches another worker's keys.
# (14 is the Celery tests' broker, 13 the limiter fleet test's, 9 any further worker's; the
# benchmarks, which the smoke tests run beside the suite, use 4 to 7: benchmarks/common.py.)
_WORKER_DB = {"master": 15, "gw0": 15, "gw1": 12, "gw2": 11, "gw3": 10}


def _unavailable(what: str, why: object) -> None:
    msg = f"{what} is not reachable ({why}); start it as README.md says"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg} — with CI=true this is a failure, not a skip")
    pytest.skip(msg)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not see the developer's TREASURY_* variables."""
    for name in list(os.environ):
        if name.startswith("TREASURY_") and not name.startswith("TREASURY_TEST_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'treasury.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    try:
        admin = make_engine(PG_BASE)
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    schema = f"t_{secrets.token_hex(6)}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_BASE else "?"
    yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Both engines: every storage test runs on SQLite and on PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def redis_url(worker_id: str) -> Iterator[str]:
    """A real Redis database of this xdist worker's own, flushed before and after."""
    import redis

    url = f"{REDIS_BASE}/{_WORKER_DB.get(worker_id, 9)}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        _unavailable("Redis at 127.0.0.1:6379", exc)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()
