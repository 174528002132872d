"""An unreachable database, broker or exchange is one line naming the setting; --debug shows the trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from tests.runs.conftest import ROOT
from treasury.cli.context import AppContext
from treasury.cli.failures import redact_url
from treasury.cli.main import cli
from treasury.settings import Settings

DEAD_PG = "postgresql+psycopg://bob:s3cret@127.0.0.1:1/treasury"


def _invoke(tmp_path: Path, *args: str, **settings: Any) -> Any:
    values: dict[str, Any] = {"config_dir": ROOT / "config", "database_url": f"sqlite:///{tmp_path / 't.db'}",
                              "workflows_dir": ROOT / "workflows", **settings}
    # the wall clock: the host-wide rate limiter shares its state file (per exchange URL) with
    # every process on this machine, in wall-clock time
    app = AppContext(settings=Settings(**values))
    return CliRunner().invoke(cli, list(args), obj=app)


def _one_line(result: Any, setting: str) -> str:
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and setting in lines[0], result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_redact_url_hides_passwords_only() -> None:
    assert redact_url(DEAD_PG) == "postgresql+psycopg://bob:***@127.0.0.1:1/treasury"
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("sqlite:////var/lib/t.db") == "sqlite:////var/lib/t.db"
    assert redact_url("postgresql://h/db?password=x&sslmode=require") == "postgresql://h/db?password=***&sslmode=require"


def test_database_unreachable_is_one_line_without_the_password(tmp_path: Path) -> None:
    line = _one_line(_invoke(tmp_path, "runs", database_url=DEAD_PG), "TREASURY_DATABASE_URL")
    assert "s3cret" not in line and "bob:***@127.0.0.1:1" in line


def test_debug_shows_the_full_error(tmp_path: Path) -> None:
    result = _invoke(tmp_path, "--debug", "runs", database_url=DEAD_PG)
    assert isinstance(result.exception, OperationalError)


def test_broker_unreachable_is_one_line(tmp_path: Path) -> None:
    result = _invoke(tmp_path, "query", "balances", "--key", "ops-read",
                     broker_url="redis://:hunter2@127.0.0.1:1/0", base_url="http://127.0.0.1:1")
    line = _one_line(result, "TREASURY_BROKER_URL")
    assert "hunter2" not in line


def test_exchange_unreachable_names_the_base_url(tmp_path: Path) -> None:
    result = _invoke(tmp_path, "query", "balances", "--key", "ops-read", base_url="http://127.0.0.1:1")
    assert "TREASURY_BASE_URL" in _one_line(result, "cannot be reached")


def test_the_installed_command_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update(TREASURY_DATABASE_URL=DEAD_PG, TREASURY_CONFIG_DIR=str(ROOT / "config"))
    proc = subprocess.run([sys.executable, "-c", "from treasury.cli.main import main; main()", "runs"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "TREASURY_DATABASE_URL" in proc.stderr
    assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr
