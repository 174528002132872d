"""Distributed execution on Celery + Redis: thin tasks, a dispatcher, and beat's schedules.

``celery -A treasury.worker worker`` finds ``app`` here. It is built on first access (from
``treasury.worker.app``), so importing the package, for the dispatcher or the factory, never
reads the environment.

The adapter the runtime uses sits below it, in ``treasury.broker``: ``options`` (worker
tunables), ``app`` (task names, delivery settings, the configured app) and ``dispatch`` (the
run service's Celery dispatcher, sending by task name). Modules here: ``factory`` (the worker's
app: the configured app with the tasks registered), ``tasks`` (the thin tasks),
``process`` (the per-process runtime, the sweeper pass, the beat tick), ``app`` (the entry point
for Celery's own command line), ``serve``
(``treasury serve``: the same tick and sweeper with inline steps in one process, no broker).
Beat's own logic (workflow files to schedules, one tick) is ``treasury.schedules.beat``.

What recovers what (Celery itself is trusted with none of it):

- a worker killed mid-step (SIGKILL, OOM): only the child dies → its parent re-queues the
  message at once (``task_reject_on_worker_lost``); the whole worker dies → Redis hands the
  unacknowledged message to another worker after ``visibility_timeout``. Either way the
  next execution finds the execution record under the dead worker's lease, and once the
  lease has run out reconciles it by client id instead of sending again;
- a message that is gone (Redis restarted without its data, a publish that failed): the
  sweeper (every ``TREASURY_SWEEP_INTERVAL`` from beat, and when a worker starts) kicks runs
  left PENDING and re-dispatches RUNNING steps untouched for ``TREASURY_SWEEP_OLDER_THAN``;
- a duplicate (redelivery racing the original, a double beat): the execution record's lease
  turns the second execution away; the database's unique keys turn away a second run for the
  same (schedule, due time);
- a deploy: SIGTERM is a warm shutdown, running steps finish first.
"""

from __future__ import annotations

from typing import Any

from treasury.broker.dispatch import CeleryDispatcher
from treasury.broker.options import WorkerOptions
from treasury.schedules.beat import Beat, ScheduleLoader, load_schedules
from treasury.worker.factory import create_app

__all__ = ["Beat", "CeleryDispatcher", "ScheduleLoader", "WorkerOptions", "create_app", "load_schedules"]


def __getattr__(name: str) -> Any:
    # ``celery -A treasury.worker`` asks for ``app`` (then ``celery``). Once the submodule
    # ``treasury.worker.app`` is imported, ``app`` names that module; Celery then falls back
    # to ``celery``, which is the Celery instance either way.
    if name in ("app", "celery"):
        from treasury.worker.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
