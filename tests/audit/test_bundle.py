"""Evidence bundles: complete for one run, verifiable alone, and tamper-evident."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.audit.helpers import disable_guards, make_run, rehash_from
from treasury.audit import append_event, check_bundle_against_db, export_run, verify_bundle
from treasury.audit import events as ev
from treasury.clock import ManualClock
from treasury.errors import AuditError


def _story(engine: Engine, clock: ManualClock) -> None:
    """Run r1 interleaved with another run's events, as a busy desk would produce."""
    with engine.begin() as conn:
        make_run(conn, "r1")
        make_run(conn, "r2", workflow="payroll")

    def add(run: str, type_: str, actor: str, payload: dict[str, Any] | None = None, step: str | None = None) -> None:
        with engine.begin() as conn:
            append_event(conn, type=type_, actor=actor, at=clock.now(), run_id=run, step_id=step, payload=payload)
        clock.advance(5)

    add("r2", ev.RUN_REQUESTED, "dave", {"inputs": {"amount": "10"}})
    add("r1", ev.RUN_REQUESTED, "carol", {"inputs": {"amount": Decimal("5000.00")}})
    add("r1", ev.APPROVAL_REQUESTED, "system", {"digest": "a" * 64}, "approve")
    add("r2", ev.STEP_STATE, "worker:h1", {"state": "RUNNING", "secret_note": "payroll detail"})
    add("r1", ev.APPROVAL_GRANTED, "alice", {"digest": "a" * 64}, "approve")
    add("r1", ev.REQUEST_SENT, "worker:h1", {"params": {"coin": "USDT", "quantity": "5000.00"}}, "pay")
    add("r1", ev.RESPONSE_RECEIVED, "worker:h1", {"status": 500}, "pay")
    add("r2", ev.STEP_STATE, "worker:h2", {"state": "SUCCEEDED"})
    add("r1", ev.RECONCILE_LOOKUP, "worker:h2", {"found": True}, "pay")
    add("r1", ev.RECONCILE_VERDICT, "worker:h2", {"verdict": "SUCCEEDED"}, "pay")
    add("r1", ev.RUN_STATE, "system", {"state": "SUCCEEDED"})
    add("r3", ev.RUN_REQUESTED, "erin")  # after r1's last event: outside its segment


@pytest.fixture
def exported(engine: Engine) -> dict[str, Any]:
    clock = ManualClock()
    _story(engine, clock)
    return export_run(engine, "r1", clock=clock)


def test_bundle_holds_everything_an_auditor_asks_for(exported: dict[str, Any]) -> None:
    b = exported
    assert b["run"]["requested_by"] == "carol" and b["run"]["inputs"] == {"amount": "5000.00", "address": "0xabc"}
    assert [s["step_id"] for s in b["steps"]] == ["approve", "pay"]
    assert [(a["approver"], a["decision"]) for a in b["approvals"]] == [("alice", "approve")]
    (record,) = b["execution_records"]
    assert record["params"]["quantity"] == "5000.00" and record["response"] == {"success": True, "id": "W1"}
    assert [e["seq"] for e in b["events"]] == [2, 3, 5, 6, 7, 9, 10, 11]
    assert {e["run_id"] for e in b["events"]} == {"r1"}
    assert b["index"]["approvals"] == [3, 5]
    assert b["index"]["requests"] == [6] and b["index"]["responses"] == [7]
    assert b["index"]["reconciliation"] == [9, 10]
    chain = b["chain"]
    assert (chain["from_seq"], chain["to_seq"]) == (2, 11)
    assert [e["seq"] for e in chain["entries"]] == list(range(2, 12))
    # other runs' events appear only as digests: nothing of their content leaks
    foreign = [e for e in chain["entries"] if e["seq"] in (4, 8)]
    assert all(set(e) == {"seq", "prev_hash", "body_digest", "hash"} for e in foreign)
    assert "payroll detail" not in json.dumps(b) and 'worker:h2", "run_id": "r2' not in json.dumps(b)
    assert b["head"]["seq"] == 12
    json.dumps(b)  # JSON-ready as is


def test_bundle_verifies_on_its_own_and_against_the_database(engine: Engine, exported: dict[str, Any]) -> None:
    result = verify_bundle(json.loads(json.dumps(exported)))
    assert (result.ok, result.count, result.head_seq) == (True, 10, 11), result.reason
    assert result.head_hash == exported["events"][-1]["hash"]
    assert check_bundle_against_db(engine, exported).ok


@pytest.mark.parametrize(
    ("tamper", "bad_seq"),
    [
        (lambda b: b["events"][3]["payload"]["params"].__setitem__("quantity", "50000.00"), 6),
        (lambda b: b["events"][1].__setitem__("actor", "mallory"), 3),
        (lambda b: b["chain"]["entries"][2].__setitem__("body_digest", "0" * 64), 4),
        (lambda b: b["chain"]["entries"].pop(4), 6),
        (lambda b: b["events"].pop(2), 5),  # an event dropped: the index still names it
        (lambda b: b["run"].__setitem__("requested_by", "mallory"), None),
        (lambda b: b["index"]["requests"].append(7), 7),
        (lambda b: b.__setitem__("format", "other"), None),
        (lambda b: b.pop("chain"), None),
    ],
)
def test_tampered_bundle_fails(exported: dict[str, Any], tamper: Any, bad_seq: int | None) -> None:
    bundle = copy.deepcopy(exported)
    tamper(bundle)
    result = verify_bundle(bundle)
    assert not result.ok
    assert result.first_bad_seq == bad_seq, result.reason


def test_rebuilt_database_no_longer_matches_an_earlier_bundle(engine: Engine, exported: dict[str, Any]) -> None:
    with engine.begin() as conn:
        disable_guards(conn)
        conn.exec_driver_sql("""UPDATE audit_events SET payload = '{"status":200}' WHERE seq = 7""")
        rehash_from(conn, 7)
    assert verify_bundle(exported).ok  # the bundle itself is untouched...
    result = check_bundle_against_db(engine, exported)
    assert (result.ok, result.first_bad_seq) == (False, 7)  # ...but the database was rewritten


def test_run_without_events_exports_an_empty_segment(engine: Engine) -> None:
    with engine.begin() as conn:
        make_run(conn, "quiet", at=datetime(2026, 2, 1, tzinfo=UTC))
    bundle = export_run(engine, "quiet")
    assert bundle["events"] == [] and bundle["chain"]["entries"] == []
    assert bundle["run"]["created_at"] == "2026-02-01T00:00:00.000000+00:00"
    assert verify_bundle(bundle).ok


def test_unknown_run_is_an_audit_error(engine: Engine) -> None:
    with pytest.raises(AuditError, match="'nope' does not exist"):
        export_run(engine, "nope")
