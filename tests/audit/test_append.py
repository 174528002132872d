"""Appending: the chain links, payload conversion, transactions, and reading back."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from tests.audit.helpers import make_run, raw_rows, seed
from treasury.audit import GENESIS_HASH, NewEvent, append_event, append_events, query_events, read_head, verify_chain
from treasury.audit import events as ev
from treasury.clock import ManualClock
from treasury.errors import ParameterError
from treasury.models import RunState


def test_append_links_each_event_to_the_previous_one(engine: Engine) -> None:
    records = seed(engine, 5)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert read_head(engine) == (5, records[-1].hash)
    # what append_event returned is exactly what is stored, and its hash is recomputable
    stored = list(query_events(engine))
    assert stored == records
    assert all(len(r.hash) == 64 for r in stored)
    result = verify_chain(engine)
    assert (result.ok, result.count, result.head_seq, result.head_hash) == (True, 5, 5, records[-1].hash)


def test_payload_is_converted_to_plain_json(engine: Engine) -> None:
    at = datetime(2026, 3, 1, 17, 30, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    with engine.begin() as conn:
        rec = append_event(
            conn,
            type=ev.REQUEST_SENT,
            actor="worker:host-1",
            at=at,
            run_id="r1",
            step_id="pay",
            payload={
                "quantity": Decimal("5000.10"),
                "tiny": Decimal("1E-8"),
                "state": RunState.RUNNING,
                "due": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
                "legs": ({"n": 1}, {"n": 2}),
                "note": "Zahlung für Lieferant ✓",
                "nothing": None,
                "flag": True,
                "ratio": 0.25,
            },
        )
    assert rec.at == datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
    assert rec.payload == {
        "quantity": "5000.10",
        "tiny": "0.00000001",
        "state": "RUNNING",
        "due": "2026-03-01T09:00:00+00:00",
        "legs": [{"n": 1}, {"n": 2}],
        "note": "Zahlung für Lieferant ✓",
        "nothing": None,
        "flag": True,
        "ratio": 0.25,
    }
    (stored,) = list(query_events(engine))
    assert stored == rec
    assert verify_chain(engine).ok  # the hash survives the round trip through the database


def test_bad_input_is_refused_naming_the_parameter(engine: Engine) -> None:
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"at": datetime(2026, 1, 1)}, "at"),
        ({"actor": ""}, "actor"),
        ({"type": ""}, "type"),
        ({"run_id": "r" * 17}, "run_id"),
        ({"step_id": ""}, "step_id"),
        ({"payload": {"amount": float("nan")}}, "payload.amount"),
        ({"payload": {"legs": [{"blob": object()}]}}, "payload.legs[0].blob"),
    ]
    for override, param in cases:
        kwargs: dict[str, Any] = {"type": ev.RUN_STATE, "actor": "system", "at": now, **override}
        with engine.begin() as conn, pytest.raises(ParameterError) as info:
            append_event(conn, **kwargs)
        assert info.value.param == param
    assert read_head(engine) == (0, GENESIS_HASH)


def test_event_rolls_back_with_the_state_change(engine: Engine) -> None:
    seed(engine, 2)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        make_run(conn, "r-rollback")
        append_event(conn, type=ev.RUN_REQUESTED, actor="carol", at=datetime.now(UTC), run_id="r-rollback")
        raise RuntimeError("the state change failed")
    assert read_head(engine)[0] == 2
    assert [r[0] for r in raw_rows(engine)] == [1, 2]
    seed(engine, 1)  # the chain continues from the last committed event
    assert verify_chain(engine).ok


def test_missing_head_row_is_recreated_at_genesis(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
            conn.execute(text("DELETE FROM audit_head"))
            conn.execute(text("ALTER TABLE audit_head ENABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_head_no_delete"))
            conn.execute(text("DELETE FROM audit_head"))
    assert read_head(engine) == (0, GENESIS_HASH)
    records = seed(engine, 2)
    assert records[0].seq == 1 and records[0].prev_hash == GENESIS_HASH
    assert verify_chain(engine).ok


def test_query_filters(engine: Engine) -> None:
    clock = ManualClock()
    start = clock.now()
    with engine.begin() as conn:
        make_run(conn, "r1", workflow="vendor-payout")
        make_run(conn, "r2", workflow="payroll")
    seed(engine, 9, clock=clock, runs_=("r1", "r2", None))
    with engine.begin() as conn:
        append_event(conn, type=ev.APPROVAL_GRANTED, actor="bob", at=clock.now(), run_id="r1", step_id="approve")

    def seqs(**kw: object) -> list[int]:
        return [r.seq for r in query_events(engine, **kw)]  # type: ignore[arg-type]

    assert seqs(run_id="r1") == [1, 4, 7, 10]
    assert seqs(workflow="payroll") == [2, 5, 8]
    assert seqs(actor="bob") == [10]
    assert seqs(type=ev.APPROVAL_GRANTED) == [10]
    assert seqs(type=[ev.APPROVAL_GRANTED, ev.STEP_STATE], run_id="r1") == [1, 4, 7, 10]
    assert seqs(since=start + timedelta(seconds=3), until=start + timedelta(seconds=6)) == [4, 5, 6]
    assert seqs(run_id="r1", limit=2) == [1, 4]
    assert seqs(run_id="nope") == []
    with pytest.raises(ParameterError) as info:
        seqs(since=datetime(2026, 1, 1))
    assert info.value.param == "since"


def test_query_pages_by_seq_without_reading_everything(engine: Engine) -> None:
    seed(engine, 25, runs_=("r1",))
    selects: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "FROM audit_events" in statement:
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        it = query_events(engine, run_id="r1", batch=10)
        first = [next(it) for _ in range(3)]
        assert len(selects) == 1  # lazily: one page so far
        rest = list(it)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [r.seq for r in first + rest] == list(range(1, 26))
    assert len(selects) == 3  # pages of 10, 10, 5


def test_a_batch_is_consecutive_links_from_one_head_read_and_one_insert(engine: Engine) -> None:
    seed(engine, 2)
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    batch = [NewEvent(type=f"test.batch{i}", actor="alice", at=at, run_id="R1",
                      payload={"i": i, "amount": Decimal("1.50")}) for i in range(3)]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.begin() as conn:
            records = append_events(conn, batch)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [r.seq for r in records] == [3, 4, 5]
    assert records[0].payload == {"i": 0, "amount": "1.50"}
    # one head read (locked) and one multi-row insert; SQLite's BEGIN IMMEDIATE is a statement too
    assert [s for s in statements if s != "BEGIN"] == ["SELECT", "INSERT"]
    assert list(query_events(engine))[2:] == records
    result = verify_chain(engine)
    assert (result.ok, result.count, result.head_hash) == (True, 5, records[-1].hash)
    assert read_head(engine) == (5, records[-1].hash)
    # a batch after a batch links on, and a bad event refuses the whole batch before writing
    with pytest.raises(ParameterError), engine.begin() as conn:
        append_events(conn, [batch[0], NewEvent(type="x", actor="", at=at)])
    assert read_head(engine)[0] == 5
