"""`treasury worker --help` and `treasury beat --help` print our help with no broker, database or settings."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from treasury.cli.main import cli


@pytest.mark.parametrize("command", ["worker", "beat"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_needs_no_environment(command: str, flag: str) -> None:
    # the hermetic fixture leaves no TREASURY_* variable at all
    result = CliRunner().invoke(cli, [command, flag], prog_name="treasury", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: treasury {command} [CELERY_ARGS]...")
    assert "TREASURY_BROKER_URL" in result.output and "TREASURY_BASE_URL" in result.output
    assert "celery" in result.output.lower()


@pytest.mark.parametrize("args", [["worker", "--help"], ["beat", "--help"], ["runs", "--help"]])
def test_help_works_even_when_a_setting_is_wrong(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv("TREASURY_ENV", "bogus")
    result = CliRunner().invoke(cli, args, prog_name="treasury", catch_exceptions=False)
    assert result.exit_code == 0 and result.output.startswith(f"Usage: treasury {args[0]}"), result.output
    refused = CliRunner().invoke(cli, ["runs"])
    assert refused.exit_code == 2 and "TREASURY_ENV" in refused.output
