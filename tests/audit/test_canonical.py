"""The canonical form that hashes are computed over."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treasury.audit.canonical import canonical_json, format_at, to_jsonable
from treasury.audit.chain import AuditRecord, body_digest, body_parts, body_text
from treasury.errors import ParameterError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
maybe_text = st.none() | st.text(min_size=1)


@given(
    seq=st.integers(min_value=1, max_value=2**62),
    actor=st.text(min_size=1),
    run_id=maybe_text,
    step_id=maybe_text,
    type_=st.text(min_size=1),
    payload=st.dictionaries(st.text(), json_values, max_size=5),
)
def test_body_text_equals_canonical_json_of_the_body(seq, actor, run_id, step_id, type_, payload) -> None:
    at = "2026-01-01T00:00:00.000001+00:00"
    body = {"seq": seq, "at": at, "actor": actor, "run_id": run_id, "step_id": step_id, "type": type_}
    text = body_text(
        seq=seq, at=at, actor=actor, run_id=run_id, step_id=step_id, type=type_, payload_json=canonical_json(payload)
    )
    assert text == canonical_json({**body, "payload": payload})
    before, after = body_parts(
        at=at, actor=actor, run_id=run_id, step_id=step_id, type=type_, payload_json=canonical_json(payload)
    )
    assert f"{before}{seq}{after}" == text
    # a payload that went through a JSON round trip (the database) hashes the same
    assert canonical_json(json.loads(canonical_json(payload))) == canonical_json(payload)


def test_conversions() -> None:
    class Colour:
        value = "x"

    assert to_jsonable(
        {
            1: Decimal("1E+3"),
            "d": date(2026, 1, 2),
            "t": datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8))),
            "u": UUID(int=1),
            "s": {"b", "a"},
        }
    ) == {
        "1": "1000",
        "d": "2026-01-02",
        "t": "2026-01-01T00:00:00+00:00",
        "u": "00000000-0000-0000-0000-000000000001",
        "s": ["a", "b"],
    }
    for bad in (float("inf"), b"bytes", Colour()):
        with pytest.raises(ParameterError, match=r"payload\.x"):
            to_jsonable({"x": bad})


def test_event_time_round_trips_through_naive_utc() -> None:
    aware = datetime(2026, 5, 1, 17, 0, 0, 42, tzinfo=timezone(timedelta(hours=8)))
    assert format_at(aware) == "2026-05-01T09:00:00.000042+00:00"
    assert format_at(datetime(2026, 5, 1, 9, 0, 0, 42)) == format_at(aware)  # SQLite hands back naive UTC


def test_record_dict_round_trip_keeps_the_digest() -> None:
    rec = AuditRecord(
        seq=3,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        actor="alice",
        run_id="r1",
        step_id=None,
        type="approval.granted",
        payload={"digest": "a" * 64, "n": 1.5},
        prev_hash="0" * 64,
        hash="1" * 64,
    )
    again = AuditRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec and again.body_digest == rec.body_digest
    body = {k: v for k, v in rec.to_dict().items() if k not in ("prev_hash", "hash")}
    assert rec.body_digest == body_digest(canonical_json(body))
