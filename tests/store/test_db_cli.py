"""``treasury db current|check|upgrade``: where a database stands, exit codes, and the upgrade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from treasury import schema
from treasury.cli.main import main
from treasury.store.db import make_engine


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'treasury.db'}"
    monkeypatch.setenv("TREASURY_DATABASE_URL", url)
    return url


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _made_before_migrations(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)
        conn.execute(text(f"DROP TABLE {schema.VERSION_TABLE}"))
    engine.dispose()


def test_check_exits_1_on_a_database_made_before_migrations_and_upgrade_mends_it(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _made_before_migrations(db_url)
    code, out, _ = _run(["db", "check"], capsys)
    assert code == 1
    assert "behind" in out and "treasury db upgrade" in out

    code, out, _ = _run(["db", "upgrade", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["before"]["state"] == "behind" and report["after"]["state"] == "current"

    code, out, _ = _run(["db", "check", "--json"], capsys)
    assert code == 0
    assert json.loads(out) | {"message": ""} == {
        "state": "current", "current": schema.head_revision(), "head": schema.head_revision(),
        "pending": [], "message": "", "ok": True, "drift": [],
    }


def test_check_reports_a_table_changed_by_hand(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["db", "upgrade"], capsys)[0] == 0
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
        conn.execute(text("ALTER TABLE runs ADD COLUMN note TEXT"))
    engine.dispose()
    code, out, _ = _run(["db", "check"], capsys)
    assert code == 1
    assert "stray" in out and "note" in out


def test_current_names_the_revision_and_upgrade_creates_an_empty_database_whole(
    db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(["db", "current"], capsys)
    assert code == 0 and "empty" in out
    code, out, _ = _run(["db", "upgrade"], capsys)
    assert code == 0 and out.startswith("created the schema")
    code, out, _ = _run(["db", "current", "--json"], capsys)
    assert json.loads(out)["current"] == schema.head_revision()
    code, out, _ = _run(["db", "upgrade"], capsys)
    assert code == 0 and out.startswith("nothing to do")


@pytest.mark.parametrize("command", ["worker", "beat", "serve"])
def test_long_running_processes_refuse_a_database_behind_and_name_the_command(
    command: str, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.identities import signed_config_copy

    _made_before_migrations(db_url)
    monkeypatch.setenv("TREASURY_CONFIG_DIR", str(signed_config_copy(tmp_path / "config")))
    monkeypatch.setenv("TREASURY_WORKFLOWS_DIR", str(tmp_path))
    if command != "serve":  # workers and beat need a broker and an exchange URL; nothing is contacted
        monkeypatch.setenv("TREASURY_BROKER_URL", "redis://127.0.0.1:9/0")
        monkeypatch.setenv("TREASURY_BASE_URL", "http://127.0.0.1:9")
    code, _out, err = _run([command], capsys)
    assert code == 2
    assert "behind" in err and "treasury db upgrade" in err
