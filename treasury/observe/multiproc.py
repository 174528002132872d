"""prometheus_client's multiprocess mode for Celery's prefork workers.

Each prefork child counts in its own process. With ``PROMETHEUS_MULTIPROC_DIR`` set before
prometheus_client is first imported, every process writes its values to files in that folder,
and the parent's ``/metrics`` adds them up (``MultiProcessCollector``). ``prepare`` sets it:
call it in the parent before the pool forks (``worker.factory.create_app`` does, when a
metrics port is set).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("treasury.metrics")


def prepare() -> str:
    """Make sure ``PROMETHEUS_MULTIPROC_DIR`` names a folder; returns it.

    A folder given in the environment is used as it is (empty it before the worker starts,
    as prometheus_client asks); otherwise a fresh one is made for this worker.
    """
    path = os.environ.get(ENV)
    if path:
        os.makedirs(path, exist_ok=True)
    else:
        path = tempfile.mkdtemp(prefix="treasury-metrics-")
        os.environ[ENV] = path
        # the folder is this process's to remove when it exits (never a forked child's)
        atexit.register(_remove, path, os.getpid())
    if "prometheus_client" in sys.modules and not _multiprocess_active():
        log.warning("prometheus_client was imported before %s was set: this process counts alone", ENV)
    return path


def enabled() -> bool:
    """True when this process counts into the multiprocess folder."""
    return bool(os.environ.get(ENV)) and _multiprocess_active()


def _multiprocess_active() -> bool:
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def process_exited(pid: int) -> None:
    """A pool child exited: drop its live gauges (its counters keep counting in the sum)."""
    if not enabled():
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def _remove(path: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)
