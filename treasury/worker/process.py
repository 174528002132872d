"""What a worker process holds between tasks: its runtime, built once, after the fork.

Prefork children are forked from the worker's parent; database connections, HTTP clients and
Redis clients must not cross a fork, so the runtime is built lazily in the process that runs
the task and rebuilt when the process id changes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text

from treasury.broker.app import TreasuryCelery
from treasury.broker.dispatch import CeleryDispatcher
from treasury.broker.options import WorkerOptions
from treasury.clock import Clock, SystemClock
from treasury.observe import metrics
from treasury.runtime import Runtime, attach_checkpointer, build_runtime
from treasury.schedules.beat import Beat
from treasury.schema import create_schema
from treasury.settings import Settings
from treasury.store.db import make_engine

log = logging.getLogger("treasury.worker")


@dataclass
class WorkerRuntime:
    """A runtime whose dispatcher is Celery, plus beat's schedule state."""

    runtime: Runtime
    dispatcher: CeleryDispatcher
    options: WorkerOptions
    beat: Beat


def build_worker_runtime(
    settings: Settings,
    options: WorkerOptions,
    *,
    app: TreasuryCelery | None = None,
    clock: Clock | None = None,
    engine: Engine | None = None,
) -> WorkerRuntime:
    """Build the runtime a worker task uses: the same service as the CLI, with a Celery dispatcher.

    Raises:
        ConfigError: settings that cannot work (no broker, an in-process simulator with a broker,
            bad config files).
    """
    settings.check()  # before opening anything
    dispatcher = CeleryDispatcher(settings, app=app, options=options)
    if engine is None:
        engine = schema_engine(settings)
        attach_checkpointer(settings, engine, clock or SystemClock())
    rt = build_runtime(settings, clock=clock, engine=engine, dispatcher=dispatcher)
    if options.lease_seconds is not None:
        # the lease decides how long a killed worker's step stays untouchable; runtime.py does
        # not take it from settings yet, so the worker sets it on the executor it was given
        rt.executor.settings = dataclasses.replace(rt.executor.settings, lease_seconds=options.lease_seconds,
                                                   renew_seconds=options.lease_seconds / 4)
    beat = Beat(rt.engine, rt.service, settings.workflows_dir, clock=rt.clock, catchup_cap=options.catchup_cap)
    return WorkerRuntime(runtime=rt, dispatcher=dispatcher, options=options, beat=beat)


# any constant shared by every treasury process: the advisory lock that serializes schema creation
_SCHEMA_LOCK = 0x7472_6561_7375_7279 & 0x7FFF_FFFF_FFFF_FFFF


def schema_engine(settings: Settings) -> Engine:
    """The database engine with the schema created, one process at a time.

    Every worker child and beat builds its runtime on its first task, at about the same time;
    on PostgreSQL concurrent ``CREATE TABLE``s of the same table fail, so they take turns
    under an advisory lock (SQLite serializes writers by itself).
    """
    engine = make_engine(settings.database_url)
    if engine.dialect.name != "postgresql":
        create_schema(engine)
        return engine
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK})
        try:
            create_schema(engine)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK})
            lock.commit()
    return engine


_cache: dict[int, tuple[int, WorkerRuntime]] = {}
_cache_lock = threading.Lock()


def runtime_for(app: TreasuryCelery) -> WorkerRuntime:
    """This process's runtime for ``app``, built on first use (and again after a fork)."""
    pid = os.getpid()
    with _cache_lock:
        hit = _cache.get(id(app))
        if hit is not None and hit[0] == pid:
            return hit[1]
        wrt = build_worker_runtime(app.treasury_settings, app.treasury_options, app=app)
        _cache[id(app)] = (pid, wrt)
        return wrt


def sweep_once(wrt: WorkerRuntime) -> dict[str, Any]:
    """One sweeper pass in a worker: :func:`sweep_pass` with the worker's options."""
    return sweep_pass(wrt.runtime, older_than=wrt.options.sweep_older_than)


def sweep_pass(rt: Runtime, *, older_than: float) -> dict[str, Any]:
    """One sweeper pass: reconcile stale execution records, expire approvals, re-drive lost work.

    Re-driving covers runs left PENDING (their kick was lost, or beat's), the steps of the
    records this pass took over from a dead worker (at once), and RUNNING steps with no
    activity and no live lease (their message was lost with Redis, or their worker died before
    writing a record). Re-dispatching a step that is in fact still running is harmless: its
    execution record's lease turns the duplicate away. ``rt``'s dispatcher carries the
    re-driven steps (Celery, or inline in ``treasury serve``). ``older_than``: seconds without
    activity before work counts as lost.
    """
    from treasury.execution import sweep_records

    swept = sweep_records(rt.executor, older_than_seconds=older_than)
    expired = rt.service.expire_due()
    # the steps of the records just taken over are re-dispatched in this same pass
    counts = rt.service.recover(older_than=timedelta(seconds=older_than),
                                steps=[(s.run_id, s.step_id) for s in swept])
    out = {"records": len(swept), "expired_approvals": len(expired), **counts}
    if rt.checkpointer is not None and rt.checkpointer.tick(rt.engine) is not None:
        out["checkpoints"] = 1  # the log went quiet: its head is anchored on time
    if any(out.values()):
        log.info("internal sweeper: %s", out)
    return out


def beat_tick(wrt: WorkerRuntime) -> list[str]:
    """One beat tick: fire due schedules, then queue a kick for each run created.

    The kicks are sent after the scheduler's transaction has committed; a kick that is lost
    leaves a PENDING run that the sweeper starts. Returns the ids of the runs created.
    """
    started = time.perf_counter()
    report = wrt.beat.tick()
    now = wrt.runtime.clock.now()
    metrics.beat_ticked(time.perf_counter() - started,
                        [(now - fired.due_at).total_seconds() for fired in report.fired],
                        [name for name, _due in report.missed])
    run_ids = [fired.run_id for fired in report.fired]
    for run_id in run_ids:
        wrt.dispatcher.kick(run_id)
    return run_ids


def notify_once(wrt: WorkerRuntime) -> dict[str, int]:
    """One pass of the notification sender with ``config/notify.yaml`` as it is now.

    A broken file is logged and the pass skipped: the outbox keeps every event until it is mended.
    """
    from treasury.errors import ConfigError
    from treasury.notify.service import build_sender

    settings = wrt.runtime.settings
    try:
        sender = build_sender(settings, wrt.runtime.engine, wrt.runtime.clock)
    except ConfigError as exc:
        log.error("notifications not sent: %s", exc)
        return {}
    try:
        report = sender.run_once()
    finally:
        sender.http.close()
    out = {"delivered": report.delivered, "failed": report.failed, "expiring": report.expiring}
    if report.delivered or report.failed:
        log.info("notify: %s", out)
    return out
