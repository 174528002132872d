"""No policy file, no money moves: only an explicit `policy: none` opts out, and only in the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from tests.identities import signed_config_copy
from treasury.audit import query_events
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.errors import ConfigError
from treasury.runtime import load_config
from treasury.settings import Environment, Settings

from .conftest import PAYOUT, ROOT, HeldDispatcher, load

BIG = {**PAYOUT, "amount": "60000"}  # over the shipped 50,000 per-transaction limit
READ_ONLY = """\
name: balance-check
steps:
  - id: look
    op: balances
    key: ops-read
    params: {accountId: "1001"}
"""


def _config(tmp_path: Path, policy: str | None) -> Path:
    config = signed_config_copy(tmp_path / "config")
    if policy is None:
        (config / "policy.yaml").unlink()
    else:
        (config / "policy.yaml").write_text(policy)
    return config


def test_without_a_policy_file_no_withdrawal_starts_and_the_refusal_names_the_file(
    make_runtime: Any, tmp_path: Path, engine: Engine
) -> None:
    config = _config(tmp_path, None)
    rt, wire = make_runtime(engine=engine, config_dir=config)
    with pytest.raises(ConfigError) as info:
        rt.service.start(load(rt, "vendor-payout.yaml"), BIG, requested_by="erin")
    assert str(config / "policy.yaml") in str(info.value)
    assert "money" in str(info.value) and "policy: none" in str(info.value)
    assert wire.writes() == []
    assert [e for e in query_events(rt.engine) if e.type == "run.requested"] == []


def test_a_process_started_without_a_policy_file_sends_nothing_even_for_an_approved_step(
    make_runtime: Any, tmp_path: Path, engine: Engine
) -> None:
    config = _config(tmp_path, (ROOT / "config" / "policy.yaml").read_text())
    rt, wire = make_runtime(engine=engine, config_dir=config, dispatcher=HeldDispatcher())
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")  # the send is queued, not yet executed
    (config / "policy.yaml").unlink()
    worker, wire2 = make_runtime(engine=engine, config_dir=config)  # a worker that starts with no policy file
    worker.service.execute_step(run_id, "pay")
    assert wire.writes() == [] and wire2.writes() == []
    pay = worker.service.show(run_id)["steps"][1]
    assert str(config / "policy.yaml") in (pay["error"] or "") and "nothing sent" in (pay["error"] or "")


def test_read_only_work_needs_no_policy(make_runtime: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, None)
    rt, _wire = make_runtime(config_dir=config)
    path = tmp_path / "balance-check.yaml"
    path.write_text(READ_ONLY)
    run_id = rt.service.start(rt.service.load_and_check(path.read_text(), source=str(path)), {},
                              requested_by="erin")
    assert rt.service.state_of(run_id) == "SUCCEEDED"


def test_policy_none_opts_out_in_the_simulator_and_is_audited_when_used(make_runtime: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, "# no guardrails: a local simulator only\npolicy: none\n")
    rt, _wire = make_runtime(config_dir=config)
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), BIG, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    decisions = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "policy.decision"]
    assert decisions, "the opt-out is audited where a policy would have decided"
    for event in decisions:
        (verdict,) = event.payload["verdicts"]
        assert verdict["rule"] == "policy" and "policy: none" in verdict["message"]


@pytest.mark.parametrize("env", [Environment.SANDBOX, Environment.PRODUCTION])
def test_policy_none_is_refused_outside_the_simulator(tmp_path: Path, env: Environment) -> None:
    config = _config(tmp_path, "policy: none\n")
    with pytest.raises(ConfigError) as info:
        load_config(Settings(env=env, config_dir=config))
    assert str(config / "policy.yaml") in str(info.value) and "TREASURY_ENV=simulator" in str(info.value)


def _policy_check(config: Path, env: Environment = Environment.SIMULATOR) -> Any:
    settings = Settings(env=env, config_dir=config, database_url=f"sqlite:///{config.parent / 'p.db'}")
    return CliRunner().invoke(cli, ["policy", "check"], obj=AppContext(settings=settings))


def test_policy_check_fails_on_a_missing_file_and_says_what_that_means(tmp_path: Path) -> None:
    config = _config(tmp_path, None)
    result = _policy_check(config)
    assert result.exit_code == 2
    assert str(config / "policy.yaml") in result.output and "no money-moving operation" in result.output


def test_policy_check_shows_the_opt_out_and_refuses_it_in_production(tmp_path: Path) -> None:
    config = _config(tmp_path, "policy: none\n")
    result = _policy_check(config)
    assert result.exit_code == 0 and "policy: none" in result.output
    result = _policy_check(config, Environment.PRODUCTION)
    assert result.exit_code == 2 and "TREASURY_ENV=simulator" in result.output
