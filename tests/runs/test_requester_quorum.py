"""A requester who is one of a step's approvers cannot leave it short of its quorum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from treasury.errors import ApprovalRefused
from treasury.store.tables import runs

TIGHT = """\
name: tight-pair
steps:
  - id: approve
    approval: {approvers: [alice, bob], quorum: 2}
  - id: move
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "5"}
"""


def _runs(rt: Any) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def test_an_approver_asking_for_a_two_of_two_run_is_refused_before_it_exists(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    loaded = rt.service.load_and_check(TIGHT, source="tight-pair.yaml")  # valid: 2 eligible for 2
    with pytest.raises(ApprovalRefused) as info:
        rt.service.start(loaded, {}, requested_by="alice")
    message = str(info.value)
    assert "'approve' needs 2 approvals" in message and "only 1 can approve (bob)" in message
    with pytest.raises(ApprovalRefused):
        rt.service.plan(loaded, {}, requested_by="alice")  # the dry run says the same
    assert _runs(rt) == 0 and wire.writes() == []
    run_id = rt.service.start(loaded, {}, requested_by="erin")  # not an approver: fine
    assert rt.service.state_of(run_id) == "AWAITING_APPROVAL" and _runs(rt) == 1


def test_the_cli_says_why_and_exits_non_zero(make_runtime: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from treasury.cli.context import AppContext
    from treasury.cli.main import cli

    rt, _ = make_runtime()
    wf = tmp_path / "tight-pair.yaml"
    wf.write_text(TIGHT)
    app = AppContext(settings=rt.settings, clock=rt.clock, _engine=rt.engine)
    result = CliRunner().invoke(cli, ["run", str(wf), "--as", "bob"], obj=app)
    assert result.exit_code != 0
    assert "only 1 can approve (alice)" in str(result.exception) + result.output + result.stderr
    assert _runs(rt) == 0
