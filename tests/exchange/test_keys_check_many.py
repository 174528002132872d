"""``treasury keys check`` over many sub-account keys: the keys are checked side by side, each
within its own budget, with no 429; progress is one line per key when not on a terminal."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from treasury.cli import ops
from treasury.cli.context import AppContext
from treasury.cli.keycheck import LineCheckProgress, check_all
from treasury.settings import Settings
from treasury.simulator import Simulator, serve
from treasury.simulator.state import parse_state

ACCOUNTS = 20
SIM_STATE = {
    "accounts": [{"id": "1001", "type": "trading", "balances": {"USDT": "1"}}],
    "sub_accounts": [{"ids": {"from": 3001, "count": ACCOUNTS}, "balances": {"USDT": "10"},
                      "key": {"api_key": "sub-{account}", "secret": "sub-{account}-secret",
                              "permissions": ["read", "transfer"]}}],
}
KEYS_YAML = f"""\
sub_accounts:
  - name: "sub-{{account}}"
    accounts: {{from: 3001, count: {ACCOUNTS}}}
    api_key: "sub-{{account}}"
    secret_env: "TREASURY_SECRET_SUB_{{account}}"
    permissions: [read, transfer]
    fund_statement: false
"""


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, str]]:
    simulator = Simulator(parse_state(SIM_STATE))
    server = serve(simulator)
    yield simulator, server.url
    server.shutdown()


def test_many_sub_account_keys_are_checked_side_by_side_without_a_429(
    sim: tuple[Simulator, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator, url = sim
    config = tmp_path / "config"
    config.mkdir()
    (config / "keys.yaml").write_text(KEYS_YAML)
    monkeypatch.setenv("TREASURY_BASE_URL", url)
    monkeypatch.setenv("TREASURY_CONFIG_DIR", str(config))
    monkeypatch.setenv("TREASURY_DATABASE_URL", f"sqlite:///{tmp_path / 'treasury.db'}")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the host limiter's files stay here
    for n in range(3001, 3001 + ACCOUNTS):
        monkeypatch.setenv(f"TREASURY_SECRET_SUB_{n}", f"sub-{n}-secret")
    group = click.Group("treasury")
    ops.register(group)
    started = time.monotonic()
    result = CliRunner().invoke(group, ["keys", "check", "--json"], obj=AppContext(settings=Settings()),
                                catch_exceptions=False)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [r["profile"] for r in report] == [f"sub-{n}" for n in range(3001, 3001 + ACCOUNTS)]
    assert all(r["ok"] and r["account_type"] == "sub" and r["warning"] is None for r in report)
    limits = simulator.state()["rate_limits"]
    assert limits["suspended"] == {} and limits["banned"] == {}  # no 429, no 418
    # A check reads balances (weight 5) after checkApiKey: at 2 queries/s a key needs a window
    # of its own, so one key after another would take over ACCOUNTS seconds.
    assert elapsed < ACCOUNTS / 2, f"{ACCOUNTS} keys took {elapsed:.1f} s"


def test_check_all_keeps_the_order_and_writes_a_line_per_key() -> None:
    lines: list[str] = []
    names = [f"k{n}" for n in range(6)]

    def check(name: str) -> dict[str, object]:
        time.sleep(0.01 * (6 - int(name[1:])))  # later names finish first
        return {"profile": name, "ok": name != "k3"}

    results = check_all(names, check, LineCheckProgress(lines.append), concurrency=3)
    assert [r["profile"] for r in results] == names
    assert len(lines) == 6 and lines[0] == "checked 1/6: k0 ok"
    assert "k3 FAILED" in " ".join(lines) and lines[-1].startswith("checked 6/6: ")
    with pytest.raises(ValueError):
        check_all(names, check, LineCheckProgress(lines.append), concurrency=0)
