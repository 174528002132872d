"""The treasury tasks: ids in, one library call, nothing out.

Each task may run 0, 1 or N times, possibly at once on two workers (reliability.md §1.4):
the run service and the execution records make every repeat harmless, so the tasks neither
retry nor deduplicate. Results are ignored; the database is the record.

- ``treasury.execute_step(run_id, step_id)``: execute one operation step;
- ``treasury.kick_run(run_id)``: start a PENDING run (policy, approvals, first dispatch);
- ``treasury.beat_tick()``: fire due schedules from the workflow files, then kick the runs;
- ``treasury.sweep()``: reconcile stale execution records and re-drive lost work. It also
  runs once when a worker starts.
- ``treasury.notify()``: one pass of the notification sender (the outbox to its channels).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from treasury.broker.app import BEAT_TICK, EXECUTE_STEP, KICK_RUN, NOTIFY, SWEEP, TreasuryCelery, broker_url
from treasury.observe import context as log_context
from treasury.observe.logs import LogFormat, apply_format
from treasury.worker import process
from treasury.worker.liveness import Beacon

log = logging.getLogger("treasury.worker")


def register_tasks(app: TreasuryCelery) -> None:
    """Register the treasury tasks on ``app`` and the start-up sweep."""
    # shared=False: a shared task is re-created on every app finalized later in the process, so a
    # second app (tests, a CLI command beside a worker) would get this app's closures and runtime.
    common: dict[str, Any] = {
        "ignore_result": True, "acks_late": True, "reject_on_worker_lost": True, "shared": False,
    }

    @app.task(name=EXECUTE_STEP, **common)
    def execute_step(run_id: str, step_id: str) -> None:
        process.runtime_for(app).runtime.service.execute_step(run_id, step_id)

    @app.task(name=KICK_RUN, **common)
    def kick_run(run_id: str) -> None:
        with log_context.bound(run_id=run_id):
            process.runtime_for(app).runtime.service.kick(run_id)

    @app.task(name=BEAT_TICK, **common)
    def beat_tick() -> None:
        process.beat_tick(process.runtime_for(app))

    @app.task(name=SWEEP, **common)
    def sweep() -> None:
        process.sweep_once(process.runtime_for(app))

    @app.task(name=NOTIFY, **common)
    def notify() -> None:
        process.notify_once(process.runtime_for(app))

    beacons: list[Any] = []

    def on_worker_ready(sender: Any = None, **_: Any) -> None:
        # Runs in the worker's parent process: queue the sweep for a child rather than opening
        # database connections here that every forked child would share.
        if getattr(sender, "app", None) is not app:
            return
        try:
            app.send_task(SWEEP, queue=app.treasury_options.queue, ignore_result=True)
        except Exception as exc:  # the broker went away again; beat's periodic sweep covers it
            log.warning("start-up sweep not queued: %s: %s", type(exc).__name__, exc)
        start_beacon(sender)

    def start_beacon(consumer: Any) -> None:
        """Check this worker in for the queues it consumes (``treasury show`` reads it)."""
        try:
            queues = [q.name for q in consumer.task_consumer.queues] or [app.treasury_options.queue]
        except AttributeError:
            queues = [app.treasury_options.queue]
        name = str(getattr(consumer, "hostname", None) or "worker")
        beacon = Beacon(broker_url(app.treasury_settings), name, queues,
                        prefix=app.treasury_options.broker_key_prefix)
        beacon.start()
        beacons.append(beacon)

    def on_worker_shutdown(**_: Any) -> None:
        while beacons:
            beacons.pop().stop()

    signals.worker_ready.connect(on_worker_ready, weak=False)
    signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
    if app.treasury_settings.log_format is LogFormat.JSON:
        # Celery sets up its own handlers (worker_hijack_root_logger); give them JSON lines
        signals.after_setup_logger.connect(_json_logs, weak=False, dispatch_uid="treasury.json-logs")
        signals.after_setup_task_logger.connect(_json_logs, weak=False, dispatch_uid="treasury.json-task-logs")


def _json_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is not None:
        apply_format(LogFormat.JSON, logger)
