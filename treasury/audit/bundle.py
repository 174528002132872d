"""Evidence bundles: everything about one run in one JSON document that checks itself.

A bundle holds the run, its steps, approval votes and execution records (what was sent and
what the exchange answered), every audit event of the run, and the chain segment from the
run's first event to its last. Events of other runs inside that segment appear only as
``{seq, prev_hash, body_digest, hash}``: enough to prove the run's events are consecutive
links of the one chain without disclosing anything else.

``verify_bundle`` proves the bundle is internally consistent. To prove it matches the
live log (or an anchor), compare its segment hashes with the database:
``check_bundle_against_db``, or ``treasury audit verify-bundle FILE --against-db``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from treasury.audit import events as ev
from treasury.audit.canonical import canonical_json, format_at, to_jsonable
from treasury.audit.chain import GENESIS_HASH, AuditRecord, ChainChecker, VerifyResult, body_digest, body_text
from treasury.audit.redaction import redact
from treasury.audit.tables import SELECT_HEAD, audit_events, record_columns
from treasury.clock import Clock, SystemClock
from treasury.errors import AuditError
from treasury.store.tables import approvals, execution_records, runs, steps

BUNDLE_FORMAT = "treasury.audit.bundle/1"

# Where an auditor finds the answers to the usual questions (seqs into "events").
INDEX: dict[str, frozenset[str]] = {
    "requested": frozenset({ev.RUN_REQUESTED}),
    "policy": frozenset({ev.POLICY_DECISION}),
    "approvals": frozenset(
        {
            ev.APPROVAL_REQUESTED,
            ev.APPROVAL_GRANTED,
            ev.APPROVAL_REJECTED,
            ev.APPROVAL_EXPIRED,
            ev.APPROVAL_REFUSED,
            ev.DIGEST_MISMATCH,
        }
    ),
    "requests": frozenset({ev.REQUEST_SENT}),
    "responses": frozenset({ev.RESPONSE_RECEIVED}),
    "retries": frozenset({ev.RETRY_SCHEDULED}),
    "reconciliation": frozenset({ev.RECONCILE_LOOKUP, ev.RECONCILE_VERDICT, ev.DUPLICATE_SUPPRESSED}),
    "resolutions": frozenset({ev.STEP_RESOLVED}),
}


def export_run(engine: Engine, run_id: str, *, clock: Clock | None = None) -> dict[str, Any]:
    """Build the evidence bundle of ``run_id`` (a JSON-ready dict).

    Rows are read in one consistent snapshot and redacted like audit payloads. Raises
    AuditError when the run does not exist.
    """
    exported_at = (clock or SystemClock()).now()
    with _snapshot(engine) as conn:
        run = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        if run is None:
            raise AuditError(f"run {run_id!r} does not exist; nothing to export")
        step_rows = conn.execute(select(steps).where(steps.c.run_id == run_id).order_by(steps.c.idx)).mappings()
        vote_rows = conn.execute(
            select(approvals).where(approvals.c.run_id == run_id).order_by(approvals.c.created_at, approvals.c.id)
        ).mappings()
        exec_rows = conn.execute(
            select(execution_records)
            .where(execution_records.c.run_id == run_id)
            .order_by(execution_records.c.created_at, execution_records.c.client_id)
        ).mappings()
        bundle: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "run_id": run_id,
            "exported_at": format_at(exported_at),
            "run": _row(run),
            "steps": [_row(r) for r in step_rows],
            "approvals": [_row(r) for r in vote_rows],
            "execution_records": [_row(r) for r in exec_rows],
        }
        columns = record_columns(conn)
        records = [
            AuditRecord.from_row(r)
            for r in conn.execute(select(*columns).where(audit_events.c.run_id == run_id).order_by(audit_events.c.seq))
        ]
        entries: list[dict[str, Any]] = []
        if records:
            segment = conn.execute(
                select(*columns)
                .where(audit_events.c.seq.between(records[0].seq, records[-1].seq))
                .order_by(audit_events.c.seq)
                .execution_options(yield_per=5000)
            )
            for seq, at, actor, r_id, step_id, type_, text, prev_hash, hash_ in segment:
                digest = body_digest(
                    body_text(
                        seq=seq, at=format_at(at), actor=actor, run_id=r_id,
                        step_id=step_id, type=type_, payload_json=text,
                    )
                )  # fmt: skip
                entries.append({"seq": seq, "prev_hash": prev_hash, "body_digest": digest, "hash": hash_})
        head = conn.execute(SELECT_HEAD).first()
        head_seq, head_hash = (0, GENESIS_HASH) if head is None else (int(head.seq), str(head.hash))
    bundle["events"] = [r.to_dict() for r in records]
    bundle["index"] = {name: [r.seq for r in records if r.type in types] for name, types in INDEX.items()}
    bundle["chain"] = {
        "from_seq": records[0].seq if records else None,
        "to_seq": records[-1].seq if records else None,
        "entries": entries,
    }
    bundle["head"] = {"seq": head_seq, "hash": head_hash}
    bundle["bundle_digest"] = _bundle_digest(bundle)
    return bundle


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction seeing one snapshot (REPEATABLE READ on PostgreSQL).

    SQLite's transactions (BEGIN IMMEDIATE) are serializable already.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin() as tx:
            yield conn
            tx.rollback()


def _row(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        # SQLite returns naive datetimes that are UTC by construction.
        out[key] = format_at(value) if isinstance(value, datetime) else value
    return to_jsonable(redact(out))


def _bundle_digest(bundle: Mapping[str, Any]) -> str:
    body = {k: v for k, v in bundle.items() if k != "bundle_digest"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def verify_bundle(bundle: Mapping[str, Any]) -> VerifyResult:
    """Check an evidence bundle on its own.

    The segment must be an unbroken run of links (each hash recomputed from prev_hash and
    body digest), each event of the run must hash to its segment entry, the index must
    point at events of the right types, and the bundle digest must match its contents.
    Never raises on bad input: a malformed bundle is a failed verification.
    """
    checker = ChainChecker()
    try:
        _verify_bundle(bundle, checker)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        checker.fail(checker.first_bad_seq, f"malformed bundle: {type(exc).__name__}: {exc}")
    return checker.result()


def _verify_bundle(bundle: Mapping[str, Any], checker: ChainChecker) -> None:
    if bundle.get("format") != BUNDLE_FORMAT:
        checker.fail(None, f"not an evidence bundle (format {bundle.get('format')!r}, expected {BUNDLE_FORMAT})")
        return
    run_id = bundle["run_id"]
    chain = bundle["chain"]
    entries = chain["entries"]
    records = [AuditRecord.from_dict(e) for e in bundle["events"]]
    if entries:
        first = entries[0]
        checker.next_seq = int(first["seq"])
        checker.prev_hash = GENESIS_HASH if checker.next_seq == 1 else str(first["prev_hash"])
    by_seq: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if not checker.feed_digest(int(entry["seq"]), entry["prev_hash"], entry["body_digest"], entry["hash"]):
            return
        by_seq[int(entry["seq"])] = entry
    if (chain["from_seq"], chain["to_seq"]) != ((records[0].seq, records[-1].seq) if records else (None, None)) or (
        records and (min(by_seq) != records[0].seq or max(by_seq) != records[-1].seq)
    ):
        checker.fail(None, "the chain segment does not span the run's first to last event")
        return
    for rec in records:
        entry = by_seq.get(rec.seq)
        if rec.run_id != run_id:
            checker.fail(rec.seq, f"event {rec.seq} belongs to run {rec.run_id!r}, not {run_id!r}")
        elif entry is None:
            checker.fail(rec.seq, f"event {rec.seq} is not in the chain segment")
        elif rec.body_digest != entry["body_digest"]:
            checker.fail(rec.seq, "the event's contents do not match its chain entry (modified)")
        elif (rec.prev_hash, rec.hash) != (entry["prev_hash"], entry["hash"]):
            checker.fail(rec.seq, "the event's hashes differ from its chain entry")
        if not checker.ok:
            return
    types = {r.seq: r.type for r in records}
    for name, seqs in bundle["index"].items():
        allowed = INDEX.get(name, frozenset())
        for seq in seqs:
            if types.get(seq) not in allowed:
                checker.fail(seq, f"index {name!r} points at seq {seq}, which is not one of the run's {name} events")
                return
    head = bundle["head"]
    if records and (
        head["seq"] < records[-1].seq or (head["seq"] == records[-1].seq and head["hash"] != records[-1].hash)
    ):
        checker.fail(None, "the recorded chain head is inconsistent with the segment")
        return
    if bundle.get("bundle_digest") != _bundle_digest(bundle):
        checker.fail(None, "the bundle was changed after export (bundle_digest does not match)")


def check_bundle_against_db(engine: Engine, bundle: Mapping[str, Any]) -> VerifyResult:
    """``verify_bundle``, then require every segment hash to equal the database's at that seq.

    Run ``verify_chain`` (with an anchor) as well: this proves the bundle matches the
    database, and the chain check proves the database is intact.
    """
    result = verify_bundle(bundle)
    if not result.ok:
        return result
    entries = bundle["chain"]["entries"]
    if not entries:
        return result
    c = audit_events.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.seq, c.hash).where(c.seq.between(entries[0]["seq"], entries[-1]["seq"])))
        stored = {int(seq): str(hash_) for seq, hash_ in rows}
    for entry in entries:
        if stored.get(entry["seq"]) != entry["hash"]:
            return VerifyResult(
                ok=False,
                count=result.count,
                head_seq=result.head_seq,
                head_hash=result.head_hash,
                first_bad_seq=entry["seq"],
                reason=f"seq {entry['seq']} differs from the database's audit log",
            )
    return result
