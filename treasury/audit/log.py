"""Writing and reading the audit log.

``append_event`` runs inside the caller's transaction, so an event commits or rolls back
with the state change it records. It locks the chain head, which serializes appends from
every worker into one chain, and the lock is held until the caller commits. So append
*after* the state change's own writes, and touch no other rows afterwards: that keeps the
lock short, and a transaction that locked the head and then waited for a row lock held by
another appender could deadlock (PostgreSQL would abort one of the two).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, DateTime, Engine, Text, bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from treasury.audit import outbox
from treasury.audit.anchoring import OPTION as CHECKPOINTER
from treasury.audit.bundle import export_run, verify_bundle
from treasury.audit.canonical import canonical_json, format_at, to_jsonable, utc
from treasury.audit.chain import GENESIS_HASH, AuditRecord, VerifyResult, body_digest, body_parts, link_hash
from treasury.audit.redaction import redact
from treasury.audit.tables import SELECT_HEAD_FOR_UPDATE, audit_events, audit_head, read_head, record_columns
from treasury.audit.verify import verify_chain
from treasury.errors import ParameterError
from treasury.store.tables import runs

__all__ = [
    "AuditRecord",
    "NewEvent",
    "VerifyResult",
    "append_event",
    "append_events",
    "append_through",
    "export_run",
    "query_events",
    "read_head",
    "redact",
    "verify_bundle",
    "verify_chain",
]

MAX_ACTOR = 100


class AuditSink(Protocol):
    """Appends one audit event inside ``conn``'s transaction: what :func:`append_event` does.

    The layers that write history (runs, execution, schedules, exchange halts) take this
    rather than importing the chain, so a test or a wrapper can stand in for it.
    """

    def __call__(
        self,
        conn: Connection,
        *,
        type: str,
        actor: str,
        at: datetime,
        run_id: str | None = None,
        step_id: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class NewEvent:
    """One event to append (``append_events``); the fields are ``append_event``'s arguments."""

    type: str
    actor: str
    at: datetime
    run_id: str | None = None
    step_id: str | None = None
    payload: Mapping[str, Any] | None = None


def append_event(
    conn: Connection,
    *,
    type: str,
    actor: str,
    at: datetime,
    run_id: str | None = None,
    step_id: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Append one event to the chain inside the caller's open transaction.

    The payload is redacted (secret-looking keys and inline ``name=value`` secrets become
    ``"[redacted]"``) and converted to plain JSON (Decimal → string, datetime → ISO, enum →
    value). Raises ParameterError for a naive ``at``, an empty or too long actor, type, run id
    or step id, or a payload value with no JSON form. With a checkpointer installed on the
    engine (``treasury.audit.anchoring``), raises ChainBroken when the chain no longer extends
    the latest checkpoint, and CheckpointError when a due checkpoint cannot be written.
    Database errors propagate and should roll back the caller's transaction.
    """
    return append_events(conn, [NewEvent(type, actor, at, run_id, step_id, payload)])[0]


def append_events(conn: Connection, events: Sequence[NewEvent]) -> list[AuditRecord]:
    """Append ``events``, in order, as consecutive links inside the caller's open transaction.

    One read (and lock) of the chain head and one multi-row insert, whatever their number:
    a transition's events cost two statements, not two per event (a single event on
    PostgreSQL is one statement). Checks and raises as ``append_event``, for every event
    before anything is written. Returns the stored records in chain order.
    """
    if not events:
        return []
    rows = [_prepared(e) for e in events]
    if conn.dialect.name == "postgresql" and len(rows) == 1:
        values, before, after = rows[0]
        links = [_append_one_postgres(conn, values, before, after)]
    else:
        links = _append_many(conn, rows)
    checkpointer = conn.get_execution_options().get(CHECKPOINTER)
    if checkpointer is not None:  # anchors the committed head, or refuses a chain that lost history
        seq, prev_hash, _ = links[0]
        checkpointer.on_append(conn, seq, prev_hash)
    records = []
    for (values, _, _), (seq, prev_hash, hash_) in zip(rows, links, strict=True):
        record = AuditRecord(seq=seq, at=values["at"], actor=values["actor"], run_id=values["run_id"],
                             step_id=values["step_id"], type=values["type"], payload=values["clean"],
                             prev_hash=prev_hash, hash=hash_)
        outbox.on_append(conn, record)  # a notification, if it is one, commits with the event
        records.append(record)
    return records


def append_through(audit: Callable[..., Any], conn: Connection, events: Sequence[NewEvent]) -> None:
    """Append ``events`` in order with ``audit``, an ``append_event``-shaped function: as one
    batch (``append_events``) when it is ``append_event`` itself, one by one otherwise (a
    function a test or a caller put in its place sees every event)."""
    if audit is append_event:
        append_events(conn, events)
        return
    for e in events:
        audit(conn, type=e.type, actor=e.actor, at=e.at, run_id=e.run_id, step_id=e.step_id, payload=e.payload)


def _prepared(event: NewEvent) -> tuple[dict[str, Any], str, str]:
    """Check one event and build its column values and canonical body around its seq."""
    type, actor, at, run_id, step_id = event.type, event.actor, event.at, event.run_id, event.step_id
    if at.tzinfo is None:
        raise ParameterError("at", "must be a timezone-aware UTC datetime")
    if not actor or len(actor) > MAX_ACTOR:
        raise ParameterError("actor", f"must be 1 to {MAX_ACTOR} characters, got {actor!r}")
    if not type or len(type) > 64:
        raise ParameterError("type", f"must be 1 to 64 characters, got {type!r}")
    # The column sizes, checked here so SQLite (which ignores them) refuses what PostgreSQL would.
    for name, value, size in (("run_id", run_id, 16), ("step_id", step_id, 100)):
        if value is not None and not 0 < len(value) <= size:
            raise ParameterError(name, f"must be 1 to {size} characters, got {value!r}")
    at = utc(at)
    clean = to_jsonable(redact(event.payload))
    payload_json = canonical_json(clean)
    before, after = body_parts(
        at=format_at(at), actor=actor, run_id=run_id, step_id=step_id, type=type, payload_json=payload_json
    )
    values = {"at": at, "actor": actor, "run_id": run_id, "step_id": step_id, "type": type,
              "payload": payload_json, "clean": clean}
    return values, before, after


# One statement locks the head, takes the next seq, hashes and inserts, so the head lock
# is held for one round trip plus the caller's commit: that bounds the throughput of one
# chain. The hash is chain.py's design in SQL (verify_chain recomputes it in Python).
_PG_APPEND = text(
    """
INSERT INTO audit_events (seq, at, actor, run_id, step_id, type, payload, prev_hash, hash)
SELECT h.seq + 1, :at, :actor, :run_id, :step_id, :type, CAST(:payload AS json), h.hash,
       encode(sha256(decode('00', 'hex') || decode(h.hash, 'hex')
                     || sha256(convert_to(:before || (h.seq + 1)::text || :after, 'UTF8'))), 'hex')
FROM audit_head h
WHERE h.id = 1
FOR UPDATE
RETURNING seq, prev_hash, hash
"""
).bindparams(bindparam("at", type_=DateTime(timezone=True)))


def _append_one_postgres(conn: Connection, values: dict[str, Any], before: str, after: str) -> tuple[int, str, str]:
    params = {k: v for k, v in values.items() if k != "clean"} | {"before": before, "after": after}
    row = conn.execute(_PG_APPEND, params).first()
    if row is None:  # no head row yet: create it race-free, then the insert finds it
        _ensure_head(conn)
        row = conn.execute(_PG_APPEND, params).one()
    return int(row.seq), str(row.prev_hash), str(row.hash)


# The payload is already canonical JSON text, so it is bound as text (cast to json on PostgreSQL).
_PAYLOAD_TEXT = bindparam("b_payload", type_=Text)
_COLUMNS = ("seq", "at", "actor", "run_id", "step_id", "type", "prev_hash", "hash")


def _append_many(conn: Connection, rows: Sequence[tuple[dict[str, Any], str, str]]) -> list[tuple[int, str, str]]:
    # On SQLite the caller's BEGIN IMMEDIATE holds the write lock; on PostgreSQL FOR UPDATE
    # locks the head row until the caller commits. Either way nobody can move the head now.
    head = conn.execute(SELECT_HEAD_FOR_UPDATE).first()
    if head is None:
        _ensure_head(conn)
        head = conn.execute(SELECT_HEAD_FOR_UPDATE).one()
    seq, prev_hash = int(head.seq), str(head.hash)
    links: list[tuple[int, str, str]] = []
    params: list[dict[str, Any]] = []
    for i, (values, before, after) in enumerate(rows):
        seq += 1
        hash_ = link_hash(prev_hash, body_digest(f"{before}{seq}{after}"))
        links.append((seq, prev_hash, hash_))
        params.append({f"{c}_{i}": v for c, v in zip(_COLUMNS, (
            seq, values["at"], values["actor"], values["run_id"], values["step_id"], values["type"], prev_hash, hash_),
            strict=True)} | {f"payload_{i}": values["payload"]})
        prev_hash = hash_
    # The triggers check that the rows extend the head and advance the head to the last one.
    conn.execute(_insert_statement(conn.dialect.name, len(rows)), {k: v for p in params for k, v in p.items()})
    return links


_INSERTS: dict[tuple[str, int], Any] = {}


def _insert_statement(dialect: str, n: int) -> Any:
    """A multi-row INSERT of ``n`` events (built once per dialect and size)."""
    stmt = _INSERTS.get((dialect, n))
    if stmt is None:
        payload = "CAST(:payload_{i} AS json)" if dialect == "postgresql" else ":payload_{i}"
        rows = ", ".join(
            "(" + ", ".join([f":{c}_{i}" for c in _COLUMNS[:6]] + [payload.format(i=i)]
                            + [f":{c}_{i}" for c in _COLUMNS[6:]]) + ")"
            for i in range(n))
        stmt = text(
            "INSERT INTO audit_events (seq, at, actor, run_id, step_id, type, payload, prev_hash, hash) VALUES " + rows
        ).bindparams(*[bindparam(f"at_{i}", type_=DateTime(timezone=True)) for i in range(n)])
        if len(_INSERTS) < 64:
            _INSERTS[(dialect, n)] = stmt
    return stmt


def _ensure_head(conn: Connection) -> None:
    """Create the genesis head row unless it exists (concurrent callers may race here)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(audit_head).values(id=1, seq=0, hash=GENESIS_HASH).on_conflict_do_nothing(index_elements=["id"])
    )


def query_events(
    engine: Engine,
    *,
    run_id: str | None = None,
    workflow: str | None = None,
    actor: str | None = None,
    type: str | Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    batch: int = 1000,
    limit: int | None = None,
) -> Iterator[AuditRecord]:
    """Yield matching events in seq order, one page of ``batch`` rows at a time.

    Keyset pagination (``seq > last``) keeps memory flat and each page a short read, so a
    long listing never holds a transaction open. ``workflow`` matches the workflow name of
    the event's run; ``since`` is inclusive, ``until`` exclusive; ``type`` may be one type or
    several. Raises ParameterError for naive datetimes or a non-positive ``batch``/``limit``.
    """
    if batch < 1:
        raise ParameterError("batch", "must be at least 1")
    if limit is not None and limit < 1:
        raise ParameterError("limit", "must be at least 1")
    c = audit_events.c
    conds: list[ColumnElement[bool]] = []
    if run_id is not None:
        conds.append(c.run_id == run_id)
    if workflow is not None:
        conds.append(c.run_id.in_(select(runs.c.id).where(runs.c.workflow == workflow)))
    if actor is not None:
        conds.append(c.actor == actor)
    if isinstance(type, str):
        conds.append(c.type == type)
    elif type is not None:
        conds.append(c.type.in_(list(type)))
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ParameterError(name, "must be a timezone-aware datetime")
    if since is not None:
        conds.append(c.at >= utc(since))
    if until is not None:
        conds.append(c.at < utc(until))

    columns = record_columns(engine)
    last = 0
    remaining = limit
    while True:
        size = batch if remaining is None else min(batch, remaining)
        stmt = select(*columns).where(*conds, c.seq > last).order_by(c.seq).limit(size)
        # One short transaction per page: on SQLite every transaction takes the write lock.
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        for row in rows:
            yield AuditRecord.from_row(row)
        if remaining is not None:
            remaining -= len(rows)
            if remaining <= 0:
                return
        if len(rows) < size:
            return
        last = rows[-1][0]
