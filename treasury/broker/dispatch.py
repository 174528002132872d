"""The run service's dispatcher when a broker is configured: one Celery message per step.

The service calls ``dispatch`` only after the transaction that made the step RUNNING has
committed, so a worker always finds the state it is asked to act on. The message carries the
run id and the step id, nothing else: no parameters, amounts or secrets. A message that is
lost (Redis down, a publish that fails) leaves a RUNNING step with no task; the sweeper
re-dispatches it, so a failed publish is logged, not raised into a state change that has
already been committed.
"""

from __future__ import annotations

import logging
import threading
import uuid

from treasury.broker.app import EXECUTE_STEP, KICK_RUN, TreasuryCelery, configure_app
from treasury.broker.options import WorkerOptions
from treasury.settings import Settings

log = logging.getLogger("treasury.worker")


def task_id(kind: str, *ids: str) -> str:
    """A readable, unique Celery task id such as ``step-r1a2b3c4d5e6-pay-1f2e3d4c``.

    Flower and ``celery inspect`` then show which run and step a message is for.
    """
    return "-".join((kind, *ids, uuid.uuid4().hex[:8]))


class CeleryDispatcher:
    """Sends ``treasury.execute_step(run_id, step_id)`` to the treasury queue.

    ``app`` is the worker's own app inside a worker; elsewhere (``treasury run`` with a
    broker) a producer-only app, with no task registered, is built from ``settings`` on first
    use: tasks are sent by name.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        app: TreasuryCelery | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        self._settings = settings
        self._app = app
        self._options = options if options is not None else (app.treasury_options if app is not None else None)
        self._lock = threading.Lock()

    @property
    def app(self) -> TreasuryCelery:
        with self._lock:
            if self._app is None:
                self._app = configure_app(self._settings, self._options)
            return self._app

    @property
    def queue(self) -> str:
        return str(self.app.treasury_options.queue)

    def _send(self, name: str, args: list[str], tid: str) -> bool:
        try:
            self.app.send_task(name, args=args, queue=self.queue, task_id=tid, ignore_result=True)
        except Exception as exc:  # the broker is down: the sweeper re-dispatches from the database
            log.error("could not queue %s%s (%s: %s); the sweeper will re-dispatch it",
                      name, tuple(args), type(exc).__name__, exc)
            return False
        return True

    def dispatch(self, run_id: str, step_id: str) -> None:
        """Queue one step. Never raises: a lost message is recovered by the sweeper."""
        self._send(EXECUTE_STEP, [run_id, step_id], task_id("step", run_id, step_id))

    def kick(self, run_id: str) -> bool:
        """Queue ``treasury.kick_run`` for a PENDING run; False when the broker refused it."""
        return self._send(KICK_RUN, [run_id], task_id("kick", run_id))

    def flush(self, service: object) -> None:
        """Nothing to do: workers run the steps."""
