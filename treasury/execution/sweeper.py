"""The sweeper: picks up execution records that a crashed or lost worker left behind.

Run it at start-up and periodically (every minute or so). It is safe to run in several
processes at once: each record is reconciled only under its lease, so two sweepers never
work on the same record, and a record whose worker is still alive (lease running) is left
alone. The sweeper never sends a request: it reconciles SENDING/UNKNOWN records, and an
absence it proves moves the record back to PREPARED for the step's next execution.

A working step renews its lease every few seconds, so a lease that ran out means its worker
died or stalled: such a record is picked up by the next sweep, however recently it changed.
:func:`sweep_records` tells the caller which steps the records belong to, so that the same
pass can re-dispatch them (``treasury.worker.process.sweep_once``, ``treasury recover``).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from treasury.execution import records as R
from treasury.execution.executor import StepExecutor
from treasury.models import ExecState
from treasury.observe import metrics

log = logging.getLogger(__name__)


class Swept(NamedTuple):
    """One stale record the sweeper looked at, and its state afterwards."""

    client_id: str
    state: ExecState
    run_id: str
    step_id: str


def sweep(executor: StepExecutor, *, older_than_seconds: float = 60.0) -> list[tuple[str, ExecState]]:
    """:func:`sweep_records`, as ``(client_id, state after this pass)`` pairs."""
    return [(s.client_id, s.state) for s in sweep_records(executor, older_than_seconds=older_than_seconds)]


def sweep_records(executor: StepExecutor, *, older_than_seconds: float = 60.0) -> list[Swept]:
    """Reconcile stale SENDING/UNKNOWN records once; report stale PREPARED ones as they are.

    A record is stale when its lease ran out, or when it has no lease and has not changed for
    ``older_than_seconds``. Returns every stale record with its state after this pass:
    PREPARED means nothing was sent (or absence was proven) and the step should be executed
    again; NEEDS_ATTENTION means a person must decide; UNKNOWN is still being looked for (a
    worker executing the step again waits for the verdict). A record another sweeper took
    meanwhile is reported with its state unchanged.
    """
    with executor.engine.begin() as conn:
        stale = R.stale(conn, at=executor.clock.now(), older_than_seconds=older_than_seconds)
    out: list[Swept] = []
    for rec in stale:
        if rec.state is ExecState.PREPARED:
            out.append(Swept(rec.client_id, rec.state, rec.run_id, rec.step_id))
            continue
        started = executor.clock.monotonic()
        try:
            state = executor.reconcile_record(rec.client_id)
        except KeyError:  # removed meanwhile (should not happen: records are never deleted)
            continue
        finally:
            metrics.reconciled(executor.clock.monotonic() - started, "sweeper")
        log.info("swept %s: %s -> %s", rec.client_id, rec.state.value, state.value)
        out.append(Swept(rec.client_id, state, rec.run_id, rec.step_id))
    return out
