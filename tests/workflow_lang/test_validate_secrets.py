"""``treasury validate`` catches a key profile whose secret variable is not set, before a run sends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from treasury.cli.main import cli

from .conftest import CONFIG

KEYS = """\
profiles:
  ops-read:    {api_key: demo-read, secret_file: secrets/ops-read.secret, permissions: [read]}
  withdrawals: {api_key: demo-withdraw, secret_env: TREASURY_TEST_WITHDRAW_SECRET, permissions: [read, withdraw],
                totp_secret_env: TREASURY_TEST_WITHDRAW_TOTP}
"""
PAYOUT = """\
name: payout
steps:
  - id: look
    op: balances
    key: ops-read
    params: {accountId: "1001"}
  - id: pay
    op: withdraw
    key: withdrawals
    params: {coin: USDT, chainType: ETH, address: "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", quantity: "10"}
"""
READ_ONLY = """\
name: look
steps:
  - id: look
    op: balances
    key: ops-read
    params: {accountId: "1001"}
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    out = tmp_path / "config"
    out.mkdir()
    shutil.copy(CONFIG / "people.yaml", out / "people.yaml")
    shutil.copytree(CONFIG / "secrets", out / "secrets")
    (out / "keys.yaml").write_text(KEYS)
    (out / "policy.yaml").write_text("policy: none\n")
    return out


def _validate(config_dir: Path, *files: Path, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", *map(str, files)],
                                env={"TREASURY_CONFIG_DIR": str(config_dir), **env})
    return result.exit_code, result.stdout, result.stderr


def test_a_step_whose_profile_secret_variable_is_unset_is_a_located_problem(config_dir: Path, tmp_path: Path) -> None:
    wf = tmp_path / "payout.yaml"
    wf.write_text(PAYOUT)
    code, out, err = _validate(config_dir, wf)
    assert code == 2, out + err
    (line,) = [x for x in out.splitlines() if "TREASURY_TEST_WITHDRAW_SECRET" in x]
    assert line.startswith(f"{wf}:9:10: key profile 'withdrawals' reads its secret from "
                           "TREASURY_TEST_WITHDRAW_SECRET and TREASURY_TEST_WITHDRAW_TOTP, which are not set")
    assert line.endswith("(steps[1].key)")
    code, out, err = _validate(config_dir, wf, TREASURY_TEST_WITHDRAW_SECRET="s", TREASURY_TEST_WITHDRAW_TOTP="t")
    assert code == 0, out + err


def test_a_profile_no_workflow_uses_is_not_reported(config_dir: Path, tmp_path: Path) -> None:
    wf = tmp_path / "look.yaml"
    wf.write_text(READ_ONLY)
    code, out, err = _validate(config_dir, wf)
    assert code == 0, out + err


def test_with_a_broker_the_secret_is_the_workers_and_only_a_note(config_dir: Path, tmp_path: Path) -> None:
    wf = tmp_path / "payout.yaml"
    wf.write_text(PAYOUT)
    code, out, err = _validate(config_dir, wf, TREASURY_BROKER_URL="redis://127.0.0.1:1/0",
                               TREASURY_BASE_URL="http://127.0.0.1:1")
    assert code == 0, out + err
    assert "TREASURY_TEST_WITHDRAW_SECRET" in err and "worker" in err
