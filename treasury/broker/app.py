"""The Celery adapter's app: task names, delivery settings, and an app configured from
``Settings`` and ``WorkerOptions`` passed in explicitly, with no task registered.

This sits below the runtime: the runtime's dispatcher sends by task name through such an app.
The tasks themselves (which build a runtime in the worker process) are registered above the
runtime, by ``treasury.worker.factory.create_app``.

Delivery settings follow reliability.md §1.4. Celery gives at-least-once delivery at best, so
none of this is what makes money move once; the execution records are. These settings only
keep a message from being lost and redelivery from being slower than it must be:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a step whose worker dies is redelivered
  instead of acknowledged and forgotten;
- ``worker_prefetch_multiplier=1``: a worker holds only the message it is running, so a
  killed worker strands one message, not four;
- ``visibility_timeout``: when the whole worker dies (parent and child), Redis hands the
  unacknowledged message to another worker after this many seconds;
- ``worker_cancel_long_running_tasks_on_connection_loss``: a step whose broker connection
  dropped is cancelled (its message comes back) rather than finished unacknowledged;
- JSON only, no result backend: tasks carry ids, and the database is the record.

There is no ``autoretry_for`` and no ``Task.retry``: retries of a failed request happen once,
inside the step (tenacity), and Celery redelivery is only for lost workers.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from pydantic import ValidationError

from treasury.broker.options import WorkerOptions
from treasury.errors import ConfigError
from treasury.settings import Settings

EXECUTE_STEP = "treasury.execute_step"
KICK_RUN = "treasury.kick_run"
BEAT_TICK = "treasury.beat_tick"
SWEEP = "treasury.sweep"
# Beat's own entries. Beat logs "Sending due task <entry> (<task>)"; these names say the
# entry is internal, so it is never read as a workflow (the demo has one named treasury-sweep).
TICK_ENTRY = "internal: schedule tick"
SWEEP_ENTRY = "internal: sweeper (reconcile, expire, re-drive)"
NOTIFY_ENTRY = "internal: notifications (deliver the outbox)"
NOTIFY = "treasury.notify"


class TreasuryCelery(Celery):
    """A Celery app that knows the settings it was built from (never put in ``conf``,
    which ``celery inspect conf`` and ``celery report`` print)."""

    treasury_settings: Settings
    treasury_options: WorkerOptions


def broker_url(settings: Settings) -> str:
    """The broker URL, or ConfigError naming ``TREASURY_BROKER_URL`` when it is unset."""
    if settings.broker_url is None:
        raise ConfigError(
            "is not set; workers and beat need a Redis broker such as "
            "redis://127.0.0.1:6379/0 (without one, steps run inline in the command that starts them)",
            source="environment",
            field="TREASURY_BROKER_URL",
        )
    return settings.broker_url.get_secret_value()


def celery_config(settings: Settings, options: WorkerOptions) -> dict[str, Any]:
    """The Celery configuration for these settings (a plain dict, for tests to read)."""
    transport: dict[str, Any] = {
        "visibility_timeout": options.visibility_timeout,
        # scan for abandoned messages often enough that the timeout, not the scan, decides
        "unacked_restore_interval": options.restore_interval,
        "unacked_restore_throttle": 1,
        # a producer (``treasury run``, a step queueing the next) gives up on a dead broker in
        # about a second rather than six: the state is committed and the sweeper re-dispatches
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 1,
    }
    if options.broker_key_prefix:
        transport["global_keyprefix"] = options.broker_key_prefix
    return {
        "broker_url": broker_url(settings),
        "broker_transport_options": transport,
        "result_backend_transport_options": dict(transport),
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "result_expires": None,  # no backend, so no nightly cleanup task either
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,  # an exception is an answer: no redelivery loop
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": options.soft_shutdown_timeout,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_default_queue": options.queue,
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.5,
                                      "interval_max": 2},
        "worker_hijack_root_logger": True,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "celery.beat:Scheduler",  # in memory: the database holds what matters
        "beat_schedule": {
            TICK_ENTRY: {
                "task": BEAT_TICK,
                "schedule": options.beat_interval,
                # a tick nobody picked up in time is superseded by the next one
                "options": {"queue": options.queue, "expires": options.beat_interval},
            },
            SWEEP_ENTRY: {
                "task": SWEEP,
                "schedule": options.sweep_interval,
                "options": {"queue": options.queue, "expires": options.sweep_interval},
            },
            NOTIFY_ENTRY: {
                "task": NOTIFY,
                "schedule": options.notify_interval,
                "options": {"queue": options.queue, "expires": options.notify_interval},
            },
        },
    }


def configure_app(settings: Settings, options: WorkerOptions | None = None) -> TreasuryCelery:
    """A Celery app configured from ``settings`` with no task registered: enough to send tasks
    by name (a producer such as ``treasury run`` with a broker).

    Raises:
        ConfigError: ``TREASURY_BROKER_URL`` is unset, or a worker option is invalid (named).
    """
    options = options if options is not None else load_options()
    app = TreasuryCelery("treasury", set_as_current=False)
    app.conf.update(celery_config(settings, options))
    app.treasury_settings = settings
    app.treasury_options = options
    return app


def load_options() -> WorkerOptions:
    """``WorkerOptions`` from the environment; ConfigError names the bad variable."""

    try:
        return WorkerOptions()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "_".join(str(p) for p in first["loc"]).upper()
        where = f"TREASURY_{name}" if name else "worker options"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(message, source="environment", field=where) from None
