"""The worker entry point: the Celery app, built from the environment at import time.

This is the one place that reads ``Settings()`` for Celery's own command line
(``celery -A treasury.worker worker|beat|inspect|events``, Flower). Everything else,
including ``treasury worker`` and ``treasury beat``, builds its app with
``treasury.worker.factory.create_app(settings)`` from settings it was given.
"""

from __future__ import annotations

from treasury.broker.app import load_options
from treasury.settings import Settings
from treasury.worker.factory import create_app

app = create_app(Settings(), load_options())
celery = app

__all__ = ["app", "celery"]
