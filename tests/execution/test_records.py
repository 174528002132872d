"""Execution records on SQLite and PostgreSQL: one insert per step, leases, compare-and-set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from treasury.execution import records as R
from treasury.execution.ids import client_id_for
from treasury.models import ExecState

RUN = "r0000000000a"
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _insert(engine: Engine) -> R.ExecRecord:
    cid = client_id_for(RUN, "pay")
    with engine.begin() as conn:
        R.insert_prepared(conn, run_id=RUN, step_id="pay", operation="withdraw", key_profile="w",
                          legs=[R.NewRecord(cid, 0, {"coin": "USDT", "clientOrderId": cid})], at=AT)
        rec = R.load(conn, cid)
    assert rec is not None
    return rec


def test_insert_is_unique_per_step(engine: Engine) -> None:
    rec = _insert(engine)
    assert rec.state is ExecState.PREPARED and rec.created_at.tzinfo is not None
    assert rec.params_digest == R.params_digest({"clientOrderId": rec.client_id, "coin": "USDT"})
    with pytest.raises(IntegrityError):
        _insert(engine)


def test_lease_is_exclusive_until_it_expires(engine: Engine) -> None:
    rec = _insert(engine)
    with engine.begin() as conn:
        mine = R.claim(conn, rec, owner="a", at=AT, lease_seconds=60)
    assert mine.lease_owner == "a" and mine.version == rec.version + 1
    with engine.begin() as conn, pytest.raises(R.LeaseLost):
        R.claim(conn, mine, owner="b", at=AT + timedelta(seconds=30), lease_seconds=60)
    with engine.begin() as conn:
        theirs = R.claim(conn, mine, owner="b", at=AT + timedelta(seconds=61), lease_seconds=60)
    assert theirs.lease_owner == "b"
    # The old holder's next write is refused: it must stop.
    with engine.begin() as conn, pytest.raises(R.LeaseLost):
        R.change(conn, mine, owner="a", at=AT, lease_seconds=60, state=ExecState.SENDING)


def test_change_is_compare_and_set_on_version(engine: Engine) -> None:
    rec = _insert(engine)
    with engine.begin() as conn:
        held = R.claim(conn, rec, owner="a", at=AT, lease_seconds=60)
        sent = R.change(conn, held, owner="a", at=AT, lease_seconds=60, state=ExecState.SENDING, attempts=1,
                        sent_at=AT)
    assert sent.state is ExecState.SENDING and sent.attempts == 1 and sent.sent_at == AT
    with engine.begin() as conn, pytest.raises(R.LeaseLost):
        R.change(conn, held, owner="a", at=AT, lease_seconds=60, state=ExecState.FAILED)  # stale version


def test_stale_lists_unleased_unfinished_records(engine: Engine) -> None:
    rec = _insert(engine)
    later = AT + timedelta(seconds=120)
    with engine.begin() as conn:
        assert [r.client_id for r in R.stale(conn, at=later, older_than_seconds=60)] == [rec.client_id]
        R.claim(conn, rec, owner="a", at=later, lease_seconds=300)
        assert R.stale(conn, at=later + timedelta(seconds=100), older_than_seconds=60) == []
