"""A step's log lines carry its run, step, client id and operation; the approvers' CLI its person."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.observe.jsonlog import json_log
from treasury.observe import context

from .conftest import PAYOUT, load


def test_every_line_a_step_writes_names_its_run_step_operation_and_client_id(
    make_runtime: Callable[..., tuple[Any, Any]],
) -> None:
    rt, _ = make_runtime()
    with json_log() as captured:
        run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
        rt.service.approve(run_id, "alice", comment="ok")
        rt.service.approve(run_id, "bob")
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    withdraw = [ln for ln in captured.lines()
                if ln["logger"] == "treasury.exchange" and "/api/v1/account/withdraw " in ln["message"]]
    assert withdraw, captured.text[-2000:]
    pay = next(s for s in rt.service.show(run_id)["steps"] if s["id"] == "pay")
    assert pay["client_order_id"]
    for line in withdraw:
        assert line["run_id"] == run_id and line["step_id"] == "pay" and line["operation"] == "withdraw"
        assert line["client_order_id"] == pay["client_order_id"]
    assert context.current() == {}  # nothing the step bound outlives it


def test_cli_decisions_log_the_person_and_nothing_outlives_the_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tests.identities import signed_config_copy
    from treasury.cli.context import AppContext
    from treasury.cli.main import cli
    from treasury.clock import ManualClock
    from treasury.settings import Settings

    from .conftest import MONDAY_10_HKT, ROOT

    settings = Settings(config_dir=signed_config_copy(tmp_path / "config"),
                        database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        workflows_dir=ROOT / "workflows")
    app = AppContext(settings=settings, clock=ManualClock(MONDAY_10_HKT))

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    import json

    with json_log() as captured:
        run_id = json.loads(invoke("run", str(ROOT / "workflows" / "vendor-payout.yaml"), "-i",
                                   f"address={PAYOUT['address']}", "-i", f"amount={PAYOUT['amount']}",
                                   "--as", "erin", "--json"))["id"]
        assert context.current() == {}
        invoke("approve", run_id, "--as", "alice")
        invoke("approve", run_id, "--as", "bob")
    assert context.current() == {}
    sends = [ln for ln in captured.lines() if "/api/v1/account/withdraw " in ln["message"]]
    assert sends and all(ln["person"] == "bob" and ln["run_id"] == run_id for ln in sends)  # bob's vote sent it
