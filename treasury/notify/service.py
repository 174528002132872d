"""Building a sender from settings (the worker's periodic task and ``treasury notify send``)."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine

from treasury.clock import Clock
from treasury.notify.config import load_notify
from treasury.notify.sender import Sender, SenderSettings
from treasury.settings import Settings


def build_sender(settings: Settings, engine: Engine, clock: Clock, *, http: httpx.Client | None = None) -> Sender:
    """A sender for ``config/notify.yaml`` as it is now (no file: no channel, events are closed).

    Raises:
        ConfigError: the file is invalid (located) or a secret variable it names is unset.
    """
    config = load_notify(settings.notify_file)
    tuning = SenderSettings(lease_seconds=settings.notify_lease_seconds,
                            expiry_warning_seconds=settings.notify_expiry_warning_seconds,
                            console_url=settings.console_url)
    return Sender(engine, config, clock, http if http is not None else httpx.Client(), settings=tuning)
