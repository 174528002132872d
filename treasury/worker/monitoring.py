"""Worker and beat serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``TREASURY_METRICS_PORT``.

Off unless the port is set. The worker's parent process serves, once its pool is up; the
pool's children count into the multiprocess folder (``observe.multiproc``) that
``create_app`` prepared before the pool forked. Beat serves from its own process.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from treasury.broker.app import TreasuryCelery

log = logging.getLogger("treasury.worker")

_servers: dict[int, Any] = {}


def start_server(app: TreasuryCelery) -> Any:
    """Start the metrics server for ``app`` (once per app); returns it, or None when the port is unset."""
    options = app.treasury_options
    if options.metrics_port is None:
        return None
    if id(app) in _servers:
        return _servers[id(app)]
    from sqlalchemy.pool import NullPool

    from treasury.clock import SystemClock
    from treasury.monitoring.collector import DatabaseCollector
    from treasury.monitoring.health import run_checks, standard_checks
    from treasury.monitoring.server import MetricsServer, build_registry
    from treasury.schema import status
    from treasury.store.db import make_engine

    settings = app.treasury_settings
    clock = SystemClock()
    # no pooled connection may cross a fork of the pool's children: connect per scrape
    engine = make_engine(settings.database_url, poolclass=NullPool)
    limits = settings.rate_limits
    budgets = {"query": limits.query, "order": limits.order, "transfer": limits.transfer}
    registry = build_registry([DatabaseCollector(engine, clock, budgets)])
    server = MetricsServer(options.metrics_host, options.metrics_port, registry,
                           lambda: run_checks(standard_checks(settings, engine, clock,
                                                                       schema_status=status)))
    _servers[id(app)] = server
    log.info("metrics, /healthz and /readyz on %s", server.url)
    return server


def connect(app: TreasuryCelery) -> None:
    """Start the server when ``app``'s worker is ready or its beat starts; forget dead children."""
    if app.treasury_options.metrics_port is None:
        return

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            _start_logged(app)

    def on_child_exit(pid: int | None = None, **_: Any) -> None:
        if pid is not None:
            from treasury.observe import multiproc

            multiproc.process_exited(pid)

    signals.worker_ready.connect(on_ready, weak=False)
    signals.beat_init.connect(on_ready, weak=False)
    signals.worker_process_shutdown.connect(on_child_exit, weak=False)


def _start_logged(app: TreasuryCelery) -> None:
    try:
        start_server(app)
    except OSError as exc:  # the port is taken: the worker still works, unwatched
        log.error("metrics server not started on port %s: %s", app.treasury_options.metrics_port, exc)
