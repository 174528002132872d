"""The database itself refuses to change or remove audit history, on both engines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tests.audit.helpers import raw_rows, seed
from treasury.audit import GENESIS_HASH, read_head, verify_chain
from treasury.audit.chain import body_digest, body_text, link_hash
from treasury.audit.tables import APPEND_ONLY_MESSAGE


def _refused(engine: Engine, sql: str, params: Mapping[str, object] | None = None) -> str:
    with pytest.raises(DBAPIError) as info, engine.begin() as conn:
        conn.execute(text(sql), params or {})
    return str(info.value)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_events SET payload = '{}' WHERE seq = 2",
        "UPDATE audit_events SET actor = 'mallory'",
        "DELETE FROM audit_events WHERE seq = 3",
        "DELETE FROM audit_events",
    ],
)
def test_update_and_delete_are_refused(engine: Engine, sql: str) -> None:
    seed(engine, 3)
    before = raw_rows(engine)
    assert APPEND_ONLY_MESSAGE in _refused(engine, sql)
    assert raw_rows(engine) == before


def test_truncate_is_refused_on_postgres(pg_engine: Engine) -> None:
    seed(pg_engine, 3)
    assert APPEND_ONLY_MESSAGE in _refused(pg_engine, "TRUNCATE audit_events")
    assert "audit_head" in _refused(pg_engine, "TRUNCATE audit_head")
    assert verify_chain(pg_engine).count == 3


def test_head_can_only_move_forward_to_an_existing_event(engine: Engine) -> None:
    records = seed(engine, 3)
    for sql, params in [
        ("DELETE FROM audit_head", {}),
        ("UPDATE audit_head SET seq = 2, hash = :h", {"h": records[1].hash}),  # rewind (hide the tail)
        ("UPDATE audit_head SET seq = 4, hash = :h", {"h": "f" * 64}),  # an event that does not exist
    ]:
        _refused(engine, sql, params)
    assert read_head(engine) == (3, records[-1].hash)


def test_an_insert_that_does_not_extend_the_head_is_refused(engine: Engine) -> None:
    records = seed(engine, 2)
    insert = (
        "INSERT INTO audit_events (seq, at, actor, type, payload, prev_hash, hash) "
        "VALUES (:seq, CURRENT_TIMESTAMP, 'mallory', 'x', '{}', :prev, :hash)"
    )
    for seq, prev in [(5, records[-1].hash), (3, GENESIS_HASH), (2, records[0].hash)]:
        _refused(engine, insert, {"seq": seq, "prev": prev, "hash": "e" * 64})
    assert [r[0] for r in raw_rows(engine)] == [1, 2]
    assert verify_chain(engine).ok


def test_a_multi_row_insert_must_link_row_by_row(engine: Engine) -> None:
    """Bulk loads (COPY, multi-row INSERT) are checked too, and move the head once per link."""
    records = seed(engine, 1)
    at = "2026-01-01T00:00:09.000000+00:00"

    def rows(prev: str, seqs: range) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for seq in seqs:
            body = body_text(seq=seq, at=at, actor="system", run_id=None, step_id=None, type="x", payload_json="{}")
            hash_ = link_hash(prev, body_digest(body))
            out.append({"seq": seq, "prev_hash": prev, "hash": hash_})
            prev = hash_
        return out

    def insert(batch: list[dict[str, object]]) -> None:
        values = ", ".join(
            f"({r['seq']}, :at, 'system', 'x', '{{}}', '{r['prev_hash']}', '{r['hash']}')" for r in batch
        )
        with engine.begin() as conn:
            conn.execute(
                text(f"INSERT INTO audit_events (seq, at, actor, type, payload, prev_hash, hash) VALUES {values}"),
                {"at": datetime.fromisoformat(at)},
            )

    good = rows(records[0].hash, range(2, 5))
    broken = [*good[:1], {**good[1], "prev_hash": "e" * 64}, good[2]]
    with pytest.raises(DBAPIError, match="does not extend"):
        insert(broken)
    assert read_head(engine)[0] == 1
    insert(good)
    assert read_head(engine) == (4, good[-1]["hash"])
    assert verify_chain(engine).count == 4
