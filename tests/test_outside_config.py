"""A command run outside a config folder says how to make one, and leaves no empty database behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from treasury.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    ["runs"],
    ["show", "R1"],
    ["audit", "verify"],
    ["schedules"],
    ["keys", "check"],
    ["query", "balances", "--key", "ops-read"],
    ["policy", "check"],
    ["run", str(ROOT / "workflows" / "treasury-sweep.yaml"), "-i", "amount=5"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_outside_a_config_folder_a_command_says_how_to_make_one(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "no config folder" in result.output
    assert "treasury demo --dir" in result.output and "TREASURY_CONFIG_DIR" in result.output
    assert list(tmp_path.iterdir()) == []  # no empty treasury.db left behind


def test_an_existing_database_can_still_be_read_without_a_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "elsewhere.db"
    monkeypatch.setenv("TREASURY_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("TREASURY_CONFIG_DIR", str(ROOT / "config"))
    assert CliRunner().invoke(cli, ["audit", "verify"]).exit_code == 0  # creates it, with a config folder
    monkeypatch.delenv("TREASURY_CONFIG_DIR")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output  # an auditor needs only the database
