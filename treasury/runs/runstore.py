"""Reading and writing runs, steps and approval votes (SQLAlchemy Core)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update

from treasury.engine.quorum import Vote
from treasury.errors import ApprovalRefused, UnknownRun, UnknownStep
from treasury.models import RunState, StepState
from treasury.store.tables import approvals, execution_records, runs, steps

# Statements on every step's path, built once (see execution/records.py); ``b_`` parameter
# names never collide with the column names an UPDATE's SET takes from the parameters.
_GET_RUN = select(runs).where(runs.c.id == bindparam("b_run_id"))
_LOCK_RUN = _GET_RUN.with_for_update()
_GET_STEPS = select(steps).where(steps.c.run_id == bindparam("b_run_id")).order_by(steps.c.idx)
_GET_STEP = select(steps).where(steps.c.run_id == bindparam("b_run_id"), steps.c.step_id == bindparam("b_step_id"))
_UPDATE_STEP = (update(steps)
                .where(steps.c.run_id == bindparam("b_run_id"), steps.c.step_id == bindparam("b_step_id"))
                .values(version=steps.c.version + 1))
_SET_RUN_STATE = update(runs).where(runs.c.id == bindparam("b_run_id")).values(version=runs.c.version + 1)
_STEP_COLUMNS = frozenset(steps.c.keys()) - {"run_id", "step_id", "version"}


def lock_run(conn: Connection, run_id: str) -> Row[Any]:
    """Load a run row, locking it (PostgreSQL) for the rest of the transaction.

    Raises:
        UnknownRun (a RunStateError): no such run.
    """
    row = conn.execute(_LOCK_RUN, {"b_run_id": run_id}).first()
    if row is None:
        raise UnknownRun(run_id)
    return row


def get_run(conn: Connection, run_id: str) -> Row[Any]:
    """Raises UnknownRun (a RunStateError) when there is no such run."""
    row = conn.execute(_GET_RUN, {"b_run_id": run_id}).first()
    if row is None:
        raise UnknownRun(run_id)
    return row


def get_steps(conn: Connection, run_id: str) -> list[Row[Any]]:
    return list(conn.execute(_GET_STEPS, {"b_run_id": run_id}))


def get_step(conn: Connection, run_id: str, step_id: str) -> Row[Any]:
    """Raises UnknownRun or UnknownStep (both RunStateErrors) when there is no such run or step."""
    row = conn.execute(_GET_STEP, {"b_run_id": run_id, "b_step_id": step_id}).first()
    if row is None:
        get_run(conn, run_id)
        raise UnknownStep(run_id, step_id, [s.step_id for s in get_steps(conn, run_id)])
    return row


def waiting_step(conn: Connection, run: Any) -> Row[Any]:
    """The step ``run`` waits on for approval.

    Raises:
        ApprovalRefused: the run is not waiting for approval.
    """
    for r in get_steps(conn, run.id):
        if r.state == StepState.AWAITING_APPROVAL.value:
            return r
    raise ApprovalRefused(f"run {run.id} is {run.state}; it is not waiting for approval")


def insert_run(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(runs).values(**values))


def insert_steps(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn.execute(insert(steps), [dict(r) for r in rows])


# A run's error says why it stopped; a run that goes on (a person settled the step it was
# waiting on) or succeeds has none, or `show` would keep printing an error that is over.
_NO_ERROR_STATES = frozenset({RunState.PENDING, RunState.RUNNING, RunState.AWAITING_APPROVAL, RunState.SUCCEEDED})


def set_run_state(conn: Connection, run_id: str, state: RunState, at: datetime, error: str | None = None) -> None:
    values: dict[str, Any] = {"state": state.value, "updated_at": at, "b_run_id": run_id}
    if error is not None:
        values["error"] = error
    elif state in _NO_ERROR_STATES:
        values["error"] = None
    conn.execute(_SET_RUN_STATE, values)


def as_stored(value: Any) -> Any:
    """``value`` as a JSON column gives it back once written (the engines' JSON type is
    ``json.dumps`` in and ``json.loads`` out): what a later read of a step's result sees,
    without reading it again. Raises TypeError for a value with no JSON form."""
    return json.loads(json.dumps(value))


def update_step(conn: Connection, run_id: str, step_id: str, at: datetime, **values: Any) -> None:
    if "state" in values and isinstance(values["state"], StepState):
        values["state"] = values["state"].value
    unknown = set(values) - _STEP_COLUMNS
    if unknown:
        raise ValueError(f"not step columns one may set: {sorted(unknown)}")
    conn.execute(_UPDATE_STEP, {**values, "updated_at": at, "b_run_id": run_id, "b_step_id": step_id})


def votes_for(conn: Connection, run_id: str, step_id: str) -> list[Vote]:
    rows = conn.execute(
        select(approvals).where(approvals.c.run_id == run_id, approvals.c.step_id == step_id)
        .order_by(approvals.c.id)
    )
    return [Vote(r.approver, r.decision, r.digest) for r in rows]


def insert_vote(
    conn: Connection, *, run_id: str, step_id: str, approver: str, decision: str,
    comment: str | None, digest: str, at: datetime,
) -> None:
    conn.execute(insert(approvals).values(
        run_id=run_id, step_id=step_id, approver=approver, decision=decision,
        comment=comment, digest=digest, created_at=at,
    ))


def approval_rows(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(approvals).where(approvals.c.run_id == run_id).order_by(approvals.c.id))
    return [
        {"step_id": r.step_id, "approver": r.approver, "decision": r.decision, "comment": r.comment,
         "digest": r.digest, "at": r.created_at}
        for r in rows
    ]


def records_for(conn: Connection, run_id: str) -> list[Row[Any]]:
    return list(conn.execute(
        select(execution_records).where(execution_records.c.run_id == run_id)
        .order_by(execution_records.c.step_id, execution_records.c.leg)
    ))


def list_runs(
    conn: Connection, *, state: str | None = None, workflow: str | None = None, limit: int = 100
) -> list[Row[Any]]:
    q = select(runs).order_by(runs.c.created_at.desc(), runs.c.id).limit(limit)
    if state:
        q = q.where(runs.c.state == state)
    if workflow:
        q = q.where(runs.c.workflow == workflow)
    return list(conn.execute(q))


def due_approvals(conn: Connection, now: datetime) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(steps.c.run_id, steps.c.step_id).where(
            steps.c.state == StepState.AWAITING_APPROVAL.value, steps.c.expires_at <= now
        )
    )
    return [(r.run_id, r.step_id) for r in rows]


def stale_runs(conn: Connection, state: RunState, before: datetime) -> list[str]:
    rows = conn.execute(select(runs.c.id).where(runs.c.state == state.value, runs.c.updated_at < before))
    return [r.id for r in rows]


def stale_running_steps(conn: Connection, before: datetime, *, now: datetime | None = None) -> list[tuple[str, str]]:
    """RUNNING operation steps unchanged since ``before`` whose records hold no live lease at ``now``.

    A working step renews its records' leases, so a step with a live lease is not lost
    however long it takes.
    """
    query = select(steps.c.run_id, steps.c.step_id).where(
        steps.c.state == StepState.RUNNING.value, steps.c.kind == "operation",
        steps.c.updated_at < before,
    )
    if now is not None:
        live = (select(execution_records.c.client_id)
                .where(execution_records.c.run_id == steps.c.run_id,
                       execution_records.c.step_id == steps.c.step_id,
                       execution_records.c.lease_until >= now))
        query = query.where(~live.exists())
    return [(r.run_id, r.step_id) for r in conn.execute(query)]


def running_steps(conn: Connection, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Those of ``pairs`` (run id, step id) that are RUNNING operation steps."""
    out = []
    for run_id, step_id in dict.fromkeys(pairs):
        row = conn.execute(_GET_STEP, {"b_run_id": run_id, "b_step_id": step_id}).first()
        if row is not None and row.state == StepState.RUNNING.value and row.kind == "operation":
            out.append((run_id, step_id))
    return out


def touch_step(conn: Connection, run_id: str, step_id: str, at: datetime) -> None:
    """Note that a RUNNING step was just re-dispatched (its staleness counts from now)."""
    conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == step_id,
                                     steps.c.state == StepState.RUNNING.value).values(updated_at=at))


def count_runs(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def last_policy_digest(conn: Connection, *, exclude: str) -> str | None:
    """The policy digest recorded by the most recent other run, if any."""
    row = conn.execute(
        select(runs.c.policy_digest).where(runs.c.id != exclude, runs.c.policy_digest.is_not(None))
        .order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(1)
    ).first()
    return None if row is None else str(row.policy_digest)
