"""A step's ``timeout``: nothing of it is sent after it; what was sent is still reconciled."""

from __future__ import annotations

from sqlalchemy import Engine

from treasury.models import StepState

from .harness import PATHS, effects, make_world


def test_a_step_held_back_past_its_timeout_fails_with_nothing_sent(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": "error_before",
                           "status": 429, "count": 1}])
    req = world.request("asset_transfer", not_after=world.clock.time() + 30, timeout_text="30s")
    first = world.executor.execute(req)
    assert first.state is StepState.RUNNING  # the key is suspended for 60 s, longer than the timeout
    world.clock.advance(61)
    out = world.executor.execute(req)
    assert out.state is StepState.FAILED and out.error
    assert "timeout (30s) passed before it was sent; nothing was sent" in out.error
    assert len(world.sent(PATHS["asset_transfer"])) == 1  # only the attempt the 429 refused
    assert effects(world.sim.state(), out.client_ids[0]) == 0


def test_a_request_in_flight_at_the_timeout_is_still_reconciled(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": "timeout_after"}])
    # the answer is lost (the client waits 10 s for it), long after the 1 s timeout
    req = world.request("asset_transfer", not_after=world.clock.time() + 1, timeout_text="1s")
    out = world.executor.execute(req)
    assert out.state is StepState.SUCCEEDED  # found by its client id: the money moved once
    assert len(world.sent(PATHS["asset_transfer"])) == 1
    assert effects(world.sim.state(), out.client_ids[0]) == 1


def test_within_its_timeout_a_step_behaves_as_before(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    out = world.executor.execute(world.request("asset_transfer", not_after=world.clock.time() + 600,
                                               timeout_text="10m"))
    assert out.state is StepState.SUCCEEDED and len(world.sent(PATHS["asset_transfer"])) == 1
