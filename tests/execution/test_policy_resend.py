"""The policy is checked again before a reserved step is sent again later."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from treasury.clock import ManualClock
from treasury.models import StepState
from treasury.policy import parse_policy
from treasury.policy.tables import policy_reservations

from .harness import PATHS, effects, make_world

WINDOW = b"""windows:
  - {op: fiat_withdraw, days: [MON, TUE, WED, THU, FRI], hours: "09:00-17:00", timezone: Asia/Hong_Kong}
"""
# Monday 2026-03-02, 16:59:58 in Hong Kong: two seconds of the window left
BEFORE_CLOSE = datetime(2026, 3, 2, 8, 59, 58, tzinfo=UTC).timestamp()


def _reservations(world: object) -> list[str]:
    with world.engine.connect() as conn:  # type: ignore[attr-defined]
        return [r.status for r in conn.execute(select(policy_reservations))]


def test_a_payout_proven_absent_after_the_window_closed_is_not_sent_again(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine, clock=ManualClock(BEFORE_CLOSE), policy=parse_policy(WINDOW, "policy.yaml"))
    world.sim.set_faults([{"method": "POST", "path": PATHS["fiat_withdraw"], "mode": "error_before",
                           "status": 503, "count": 1}])
    out = world.executor.execute(world.request("fiat_withdraw", max_seconds=300))
    # the first send was inside the window; by the time absence was proven (settle 5 s) it had closed
    assert out.state is StepState.FAILED and out.error
    assert "policy denied before sending again" in out.error and "windows" in out.error
    assert len(world.sent(PATHS["fiat_withdraw"])) == 1
    assert effects(world.sim.state(), out.client_ids[0]) == 0
    assert _reservations(world) == ["released"]
    decisions = [e["payload"] for e in world.events("policy.decision")]
    assert [d["allowed"] for d in decisions] == [True, False]
    assert decisions[1]["stage"] == "before sending again"


def test_within_the_window_the_re_send_goes_ahead_and_is_audited(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine, clock=ManualClock(BEFORE_CLOSE - 3600),
                       policy=parse_policy(WINDOW, "policy.yaml"))
    world.sim.set_faults([{"method": "POST", "path": PATHS["fiat_withdraw"], "mode": "error_before",
                           "status": 503, "count": 1}])
    out = world.executor.execute(world.request("fiat_withdraw", max_seconds=300))
    assert out.state is StepState.SUCCEEDED
    assert len(world.sent(PATHS["fiat_withdraw"])) == 2
    assert effects(world.sim.state(), out.client_ids[0]) == 1
    assert _reservations(world) == ["committed"]
    decisions = [e["payload"] for e in world.events("policy.decision")]
    assert [d["allowed"] for d in decisions] == [True, True]


def test_a_step_reserved_by_a_worker_that_died_is_checked_again_by_the_next(sqlite_engine: Engine) -> None:
    from treasury.execution.preparation import legs_for, prepare
    from treasury.operations.registry import get_operation

    clock = ManualClock(BEFORE_CLOSE)
    world = make_world(sqlite_engine, clock=clock, policy=parse_policy(WINDOW, "policy.yaml"))
    req = world.request("fiat_withdraw")
    spec = get_operation("fiat_withdraw")
    recs, inserted = prepare(world.executor._services(), spec, req, legs_for(spec, req))
    assert inserted and recs is not None and _reservations(world) == ["reserved"]
    clock.advance(60)  # the worker died before sending; the step is picked up after 17:00
    out = world.executor.execute(req)
    assert out.state is StepState.FAILED and out.error and "before sending again" in out.error
    assert world.sent(PATHS["fiat_withdraw"]) == [] and _reservations(world) == ["released"]
