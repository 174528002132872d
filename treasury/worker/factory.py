"""The worker's Celery app: the configured app of ``treasury.broker.app`` with the treasury
tasks registered and the metrics server connected.

This sits above the runtime (the tasks build one in the worker process); the runtime itself
only ever sends by task name (``treasury.broker.dispatch``).
"""

from __future__ import annotations

from treasury.broker.app import TreasuryCelery, configure_app, load_options
from treasury.broker.options import WorkerOptions
from treasury.observe import multiproc
from treasury.settings import Settings
from treasury.worker import monitoring
from treasury.worker.tasks import register_tasks


def create_app(settings: Settings, options: WorkerOptions | None = None) -> TreasuryCelery:
    """A Celery app with the treasury tasks registered, configured from ``settings``.

    Raises:
        ConfigError: ``TREASURY_BROKER_URL`` is unset.
    """
    options = options if options is not None else load_options()
    if options.metrics_port is not None:
        multiproc.prepare()  # before the pool forks and before anything counts
    app = configure_app(settings, options)
    register_tasks(app)
    monitoring.connect(app)
    return app
