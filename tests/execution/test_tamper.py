"""Parameters changed in the database after a step was asked for are never sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, update

from treasury.audit import append_event
from treasury.execution import client_id_for
from treasury.execution import records as R
from treasury.models import ExecState, StepState
from treasury.store.tables import execution_records

from .harness import PATHS, effects, make_world

STOLEN = {"fromAccountId": "1001", "toAccountId": "1003", "coin": "USDT", "quantity": "9999"}


def test_a_prepared_record_edited_in_the_database_is_not_sent(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = world.request("asset_transfer")
    cid = client_id_for(req.run_id, req.step_id)
    legs = [R.NewRecord(cid, 0, {**req.params, "clientOrderId": cid})]
    with world.engine.begin() as conn:
        R.insert_prepared(conn, run_id=req.run_id, step_id="pay", operation="asset_transfer",
                          key_profile="transfers", legs=legs, at=world.clock.now())
        # someone edits what will be sent, but not its digest
        conn.execute(update(execution_records).where(execution_records.c.client_id == cid)
                     .values(params={**STOLEN, "clientOrderId": cid}))
    out = world.executor.execute(req)
    assert out.state is StepState.NEEDS_ATTENTION and out.reason and "nothing was sent" in out.reason
    assert world.sent(PATHS["asset_transfer"]) == []


def test_a_record_edited_while_it_waits_to_be_re_sent_is_not_sent(sqlite_engine: Engine) -> None:
    """The edit lands in the very transaction that re-opens the leg after it was proven absent."""
    edited: list[str] = []

    def audit(conn: Any, **kw: Any) -> Any:
        payload = kw.get("payload") or {}
        if kw["type"] == "reconcile.verdict" and payload.get("verdict") == "ABSENT" and not edited:
            cid = payload["client_id"]
            conn.execute(update(execution_records).where(execution_records.c.client_id == cid)
                         .values(params={**STOLEN, "clientOrderId": cid}))
            edited.append(cid)
        return append_event(conn, **kw)

    world = make_world(sqlite_engine, audit=audit)
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": "error_before",
                           "status": 503, "count": 1}])
    out = world.executor.execute(world.request("asset_transfer"))
    assert edited, "the transfer was never proven absent, so the edit was never made"
    assert out.state is StepState.NEEDS_ATTENTION and out.reason
    assert "no longer match" in out.reason and "nothing was sent" in out.reason
    bodies = [r.content.decode() for r in world.sent(PATHS["asset_transfer"])]
    assert len(bodies) == 1 and "quantity=10" in bodies[0]  # only the original, never the edit
    assert effects(world.sim.state(), edited[0]) == 0
    with world.engine.connect() as conn:
        rec = R.load(conn, edited[0])
    assert rec is not None and rec.state is ExecState.NEEDS_ATTENTION
