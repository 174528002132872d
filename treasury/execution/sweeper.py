"""The sweeper: picks up execution records that a crashed or lost worker left behind.

Run it at start-up and periodically (every minute or so). It is safe to run in several
processes at once: each record is reconciled only under its lease, so two sweepers never
work on the same record, and a record whose worker is still alive (lease running) is left
alone. The sweeper never sends a request: it reconciles SENDING/UNKNOWN records, and an
absence it proves moves the record back to PREPARED for the step's next execution.
"""

from __future__ import annotations

import logging

from treasury.execution import records as R
from treasury.execution.executor import StepExecutor
from treasury.models import ExecState
from treasury.observe import metrics

log = logging.getLogger(__name__)


def sweep(executor: StepExecutor, *, older_than_seconds: float = 60.0) -> list[tuple[str, ExecState]]:
    """Reconcile stale SENDING/UNKNOWN records once; report stale PREPARED ones as they are.

    A record is stale when it has not changed for ``older_than_seconds`` and no lease on it
    is running. Returns ``(client_id, state after this pass)`` for every stale record:
    PREPARED means nothing was sent (or absence was proven) and the step should be executed
    again; NEEDS_ATTENTION means a person must decide; UNKNOWN is still being looked for.
    """
    with executor.engine.begin() as conn:
        stale = R.stale(conn, at=executor.clock.now(), older_than_seconds=older_than_seconds)
    out: list[tuple[str, ExecState]] = []
    for rec in stale:
        if rec.state is ExecState.PREPARED:
            out.append((rec.client_id, rec.state))
            continue
        started = executor.clock.monotonic()
        try:
            state = executor.reconcile_record(rec.client_id)
        except KeyError:  # removed meanwhile (should not happen: records are never deleted)
            continue
        finally:
            metrics.reconciled(executor.clock.monotonic() - started, "sweeper")
        log.info("swept %s: %s -> %s", rec.client_id, rec.state.value, state.value)
        out.append((rec.client_id, state))
    return out
