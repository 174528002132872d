"""Execution records: one row per money-moving request, written before anything is sent.

A record is keyed by its deterministic client id and is unique per (run, step, leg). Every
change is a compare-and-set on ``version`` *and* on the lease holder, so two workers that
both picked up the same step can never both move it: the one that lost the race sees
:class:`LeaseLost` and stops. Anyone who acts on a record claims it first, which moves
``version``, so a change that gets through proves nobody else touched the record since.
While a step works, :func:`renew` extends its lease (the heartbeat) without moving
``version``, and only while the lease is still running: a heartbeat never revives a lease that
ran out. Callers run these functions inside their own transaction, next to the audit append
that records the change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from treasury.canonical import canonical_json
from treasury.clock import as_utc
from treasury.errors import ExecutionError
from treasury.models import ExecState
from treasury.operations.params import Params
from treasury.store.tables import execution_records as T

TERMINAL = frozenset({ExecState.SUCCEEDED, ExecState.FAILED, ExecState.NEEDS_ATTENTION})
IN_FLIGHT = frozenset({ExecState.SENDING, ExecState.UNKNOWN})
_TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)


class LeaseLost(ExecutionError):
    """Another worker holds (or took over) the record; this worker must stop touching it."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"execution record {client_id} is held by another worker")


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time in a record is UTC."""
    return None if value is None else as_utc(value)


def params_digest(params: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``params`` (sorted keys, no spaces)."""
    text = canonical_json(params)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ExecRecord:
    """One row of ``execution_records``, with UTC-aware times."""

    client_id: str
    run_id: str
    step_id: str
    leg: int
    operation: str
    key_profile: str
    params: dict[str, Any]
    params_digest: str
    state: ExecState
    attempts: int
    exchange_order_id: str | None
    response: Any
    error: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    unknown_since: datetime | None
    lease_until: datetime | None
    lease_owner: str | None
    version: int
    baseline: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_row(cls, row: Any) -> ExecRecord:
        created = aware(row["created_at"])
        updated = aware(row["updated_at"])
        assert created is not None and updated is not None
        return cls(
            client_id=row["client_id"],
            run_id=row["run_id"],
            step_id=row["step_id"],
            leg=int(row["leg"]),
            operation=row["operation"],
            key_profile=row["key_profile"],
            params=dict(row["params"] or {}),
            params_digest=row["params_digest"],
            state=ExecState(row["state"]),
            attempts=int(row["attempts"] or 0),
            exchange_order_id=row["exchange_order_id"],
            response=row["response"],
            error=row["error"],
            reason=row["reason"],
            created_at=created,
            updated_at=updated,
            sent_at=aware(row["sent_at"]),
            unknown_since=aware(row["unknown_since"]),
            lease_until=aware(row["lease_until"]),
            lease_owner=row["lease_owner"],
            version=int(row["version"] or 0),
            baseline=row["baseline"],
        )


# The statements on a step's path are built once, with named parameters: building a
# SQLAlchemy statement costs several times what running it on SQLite does. Parameter names
# start with ``b_`` so they never collide with the column names an UPDATE's SET takes.
_LOAD = select(T).where(T.c.client_id == bindparam("b_client_id"))
_LOAD_STEP = (select(T).where(T.c.run_id == bindparam("b_run_id"), T.c.step_id == bindparam("b_step_id"))
              .order_by(T.c.leg))
_CLAIM = (
    update(T)
    .where(T.c.client_id == bindparam("b_client_id"), T.c.version == bindparam("b_version"),
           or_(T.c.lease_until.is_(None), T.c.lease_until < bindparam("b_at"),
               T.c.lease_owner == bindparam("b_owner")))
    .values(version=T.c.version + 1)
    .returning(*T.c)
)
_CHANGE = (
    update(T)
    .where(T.c.client_id == bindparam("b_client_id"), T.c.version == bindparam("b_version"),
           T.c.lease_owner == bindparam("b_owner"))
    .values(version=T.c.version + 1)
    .returning(*T.c)
)
# The heartbeat: same version, same holder, lease not yet run out. It never moves ``version``
# (the step's own next change would otherwise lose its compare-and-set to its own heartbeat).
_RENEW = (
    update(T)
    .where(T.c.client_id == bindparam("b_client_id"), T.c.version == bindparam("b_version"),
           T.c.lease_owner == bindparam("b_owner"), T.c.lease_until >= bindparam("b_at"))
    .values(lease_until=bindparam("b_until"), updated_at=bindparam("b_at"))
)
_SETTABLE = frozenset(T.c.keys()) - {"version"}  # what change() may set (version moves by itself)
_RELEASE = (
    update(T)
    .where(T.c.client_id == bindparam("b_client_id"), T.c.lease_owner == bindparam("b_owner"))
    .values(lease_owner=None, lease_until=None, version=T.c.version + 1)
)


def load(conn: Connection, client_id: str) -> ExecRecord | None:
    """The record with ``client_id``, or None."""
    row = conn.execute(_LOAD, {"b_client_id": client_id}).mappings().first()
    return ExecRecord.from_row(row) if row is not None else None


def load_step(conn: Connection, run_id: str, step_id: str) -> list[ExecRecord]:
    """Every record of one step, ordered by leg."""
    rows = conn.execute(_LOAD_STEP, {"b_run_id": run_id, "b_step_id": step_id}).mappings()
    return [ExecRecord.from_row(r) for r in rows]


@dataclass(frozen=True)
class NewRecord:
    """What a PREPARED record is made of."""

    client_id: str
    leg: int
    params: dict[str, Any]
    # the leg's parameters validated into the operation's model (what is sent), when known
    checked: Params | None = None


def insert_prepared(
    conn: Connection,
    *,
    run_id: str,
    step_id: str,
    operation: str,
    key_profile: str,
    legs: Sequence[NewRecord],
    at: datetime,
    state: ExecState = ExecState.PREPARED,
    error: str | None = None,
    lease_owner: str | None = None,
    lease_seconds: float = 0.0,
) -> list[ExecRecord]:
    """Insert one record per leg and return them, ordered by leg. A second insert for the
    same step raises IntegrityError.

    ``state``/``error`` let a refusal (policy deny) be stored as FAILED, so a redelivery
    returns the same outcome instead of deciding again. ``lease_owner``: the records are
    born leased to this holder for ``lease_seconds`` (the claim needs no write of its own).
    """
    until = at + timedelta(seconds=lease_seconds) if lease_owner is not None else None
    rows = conn.execute(
        insert(T).returning(*T.c, sort_by_parameter_order=True),
        [
            {
                "client_id": leg.client_id,
                "run_id": run_id,
                "step_id": step_id,
                "leg": leg.leg,
                "operation": operation,
                "key_profile": key_profile,
                "params": leg.params,
                "params_digest": params_digest(leg.params),
                "state": state.value,
                "attempts": 0,
                "error": error,
                "created_at": at,
                "updated_at": at,
                "version": 0,
                "lease_owner": lease_owner,
                "lease_until": until,
            }
            for leg in legs
        ],
    ).mappings().all()
    return sorted((ExecRecord.from_row(r) for r in rows), key=lambda r: r.leg)


def claim(conn: Connection, rec: ExecRecord, *, owner: str, at: datetime, lease_seconds: float) -> ExecRecord:
    """Take the lease on ``rec`` unless another holder's lease is still running.

    Raises:
        LeaseLost: the record changed since it was read, or another worker holds the lease.
    """
    until = at + timedelta(seconds=lease_seconds)
    row = conn.execute(_CLAIM, {
        "b_client_id": rec.client_id, "b_version": rec.version, "b_at": at, "b_owner": owner,
        "lease_owner": owner, "lease_until": until, "updated_at": at,
    }).mappings().first()
    if row is None:
        raise LeaseLost(rec.client_id)
    return ExecRecord.from_row(row)


def change(
    conn: Connection,
    rec: ExecRecord,
    *,
    owner: str,
    at: datetime,
    lease_seconds: float,
    **values: Any,
) -> ExecRecord:
    """Compare-and-set ``values`` on ``rec`` (renewing the lease) and return the new row.

    ``state`` may be given as an :class:`ExecState`.

    Raises:
        LeaseLost: the version moved or the lease is no longer ``owner``'s.
    """
    if isinstance(values.get("state"), ExecState):
        values["state"] = values["state"].value
    unknown = set(values) - _SETTABLE
    if unknown:
        raise ValueError(f"not execution record columns one may set: {sorted(unknown)}")
    lease: dict[str, Any] = {"lease_until": at + timedelta(seconds=lease_seconds)}
    if values.get("state") in _TERMINAL_VALUES:
        # a finished record needs no lease: give it up in the same write (no release later)
        lease = {"lease_owner": None, "lease_until": None}
    row = conn.execute(_CHANGE, {
        **values, "updated_at": at, **lease,
        "b_client_id": rec.client_id, "b_version": rec.version, "b_owner": owner,
    }).mappings().first()
    if row is None:
        raise LeaseLost(rec.client_id)
    return ExecRecord.from_row(row)


def renew(
    conn: Connection, recs: Sequence[ExecRecord], *, owner: str, at: datetime, lease_seconds: float
) -> dict[str, datetime]:
    """Extend ``owner``'s running lease on each of ``recs`` to ``at + lease_seconds``.

    A record is renewed only if it is still at the version in ``recs``, still ``owner``'s,
    and its lease has not run out before ``at``: a renewal never revives a lease that another
    worker may have taken, or may take, over. ``updated_at`` becomes ``at`` (when a worker last
    saw the record). Returns the new lease end of every record renewed; a record missing from
    the result is lost to this holder.
    """
    until = at + timedelta(seconds=lease_seconds)
    out: dict[str, datetime] = {}
    for rec in recs:
        result = conn.execute(_RENEW, {"b_client_id": rec.client_id, "b_version": rec.version,
                                       "b_owner": owner, "b_at": at, "b_until": until})
        if result.rowcount == 1:
            out[rec.client_id] = until
    return out


def release_lease(conn: Connection, client_id: str, *, owner: str, at: datetime) -> None:
    """Give the lease up (if still ours) so a sweeper or redelivery can continue at once."""
    conn.execute(_RELEASE, {"b_client_id": client_id, "b_owner": owner, "updated_at": at})


def settle_by_person(
    conn: Connection, rec: ExecRecord, *, state: ExecState, note: str, at: datetime
) -> ExecRecord:
    """A person's decision: set a NEEDS_ATTENTION (or never sent, PREPARED) record to ``state``
    regardless of leases.

    Raises:
        LeaseLost: the record changed between reading and writing (read it again).
    """
    row = conn.execute(
        update(T)
        .where(T.c.client_id == rec.client_id, T.c.version == rec.version)
        .values(
            state=state.value, reason=note, updated_at=at, lease_owner=None, lease_until=None,
            version=T.c.version + 1,
        )
        .returning(*T.c)
    ).mappings().first()
    if row is None:
        raise LeaseLost(rec.client_id)
    return ExecRecord.from_row(row)


def stale(conn: Connection, *, at: datetime, older_than_seconds: float, limit: int = 500) -> list[ExecRecord]:
    """Non-terminal records whose lease ran out, and unleased ones untouched for ``older_than_seconds``.

    A lease is renewed (heartbeat) for as long as its worker works on the record, so a lease
    that ran out means the worker died or stalled: such a record is stale at once. A record
    without a lease (never claimed, or released by a worker that left it for later) is stale
    once it has not changed for ``older_than_seconds``. Oldest first: these are the crashes and
    lost deliveries the sweeper picks up.
    """
    cutoff = at - timedelta(seconds=older_than_seconds)
    rows = conn.execute(
        select(T)
        .where(
            T.c.state.in_([ExecState.PREPARED.value, ExecState.SENDING.value, ExecState.UNKNOWN.value]),
            or_(T.c.lease_until < at, and_(T.c.lease_until.is_(None), T.c.updated_at < cutoff)),
        )
        .order_by(T.c.updated_at)
        .limit(limit)
    ).mappings()
    return [ExecRecord.from_row(r) for r in rows]
