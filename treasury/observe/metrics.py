"""Prometheus metrics: counters and histograms where things happen, gauges read at scrape time.

Counters and histograms (``steps``, reconcile time, rate-limit waits, 429/418, approval wait,
beat ticks, schedule lag) are updated by the process doing the work. A Celery prefork worker
does its work in child processes, so worker and beat use prometheus_client's multiprocess
mode: ``observe.multiproc.prepare`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder
before anything imports prometheus_client, every child writes its values there, and the
parent's HTTP server adds them up. That is why prometheus_client is imported lazily here:
its value class is chosen when it is first imported.

Gauges that describe the database (runs by state, execution records by state, audit chain
length, the last ``audit verify``, halts, pending approvals, schedule ticks) are computed by
``treasury.monitoring.collector.DatabaseCollector`` with one cheap query each when Prometheus scrapes, so every
process that serves them agrees, whatever process changed the data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

# The buckets: most steps and reconciliations take well under a second; a lost answer can
# take the settle window (15 s) and more; approvals take minutes to a day.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
APPROVAL_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)

RUN_STATES = ("PENDING", "RUNNING", "AWAITING_APPROVAL", "SUCCEEDED", "FAILED", "REJECTED", "EXPIRED",
              "CANCELLED", "NEEDS_ATTENTION")
RECORD_STATES = ("PREPARED", "SENDING", "SUCCEEDED", "FAILED", "UNKNOWN", "NEEDS_ATTENTION")


class _Metrics:
    """The process's counters and histograms (built on first use; see the module docstring)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.steps = Counter("treasury_steps", "Operation steps finished, by operation and outcome",
                             ["operation", "outcome"])
        self.reconcile = Histogram("treasury_reconcile_seconds",
                                   "Time spent reconciling in-flight requests until decided or deferred",
                                   ["path"], buckets=SECONDS_BUCKETS)
        self.rate_wait = Histogram("treasury_rate_limit_wait_seconds",
                                   "Time a request waited for its rate-limit place",
                                   ["api_key", "rate_class"], buckets=SECONDS_BUCKETS)
        self.rate_weight = Counter("treasury_rate_limit_weight",
                                   "Weight granted by the rate limiter (rate() of it over the budget is "
                                   "the key's budget use)", ["api_key", "rate_class"])
        self.throttled = Counter("treasury_exchange_throttled",
                                 "Answers that rate-limited (429) or banned (418) us", ["status", "api_key"])
        self.approval_wait = Histogram("treasury_approval_wait_seconds",
                                       "From approval requested to granted, rejected or expired",
                                       ["decision"], buckets=APPROVAL_BUCKETS)
        self.beat_tick = Histogram("treasury_beat_tick_seconds", "Duration of one beat tick",
                                   buckets=SECONDS_BUCKETS)
        self.schedule_lag = Histogram("treasury_schedule_lag_seconds",
                                      "From a schedule's due time to the run being created",
                                      buckets=SECONDS_BUCKETS)
        self.schedule_missed = Counter("treasury_schedule_missed", "Due instants recorded as missed",
                                       ["schedule"])
        self.notifications = Counter("treasury_notifications",
                                     "Notification deliveries, by channel and outcome", ["channel", "outcome"])


_metrics: _Metrics | None = None
_lock = threading.Lock()


def get() -> _Metrics:
    """This process's metrics (created, and prometheus_client imported, on the first call)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def _safe(fn: Any) -> Any:
    """Metrics never break the work they measure."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:  # pragma: no cover - a metrics bug must not fail a payment
            import logging

            logging.getLogger("treasury.metrics").exception("metric update failed")

    wrapper.__doc__ = fn.__doc__
    return wrapper


@_safe
def step_finished(operation: str, outcome: str) -> None:
    """An operation step ended (SUCCEEDED, FAILED, NEEDS_ATTENTION) or was deferred (RUNNING)."""
    get().steps.labels(operation=operation, outcome=outcome).inc()


@_safe
def reconciled(seconds: float, path: str) -> None:
    """A reconciliation took ``seconds`` (``path``: ``step`` inline, ``sweeper`` for stale records)."""
    get().reconcile.labels(path=path).observe(max(0.0, seconds))


@_safe
def rate_limit_granted(api_key: str, rate_class: str, weight: int, waited: float) -> None:
    """The limiter granted ``weight`` to ``api_key`` after ``waited`` seconds."""
    m = get()
    m.rate_wait.labels(api_key=api_key, rate_class=rate_class).observe(max(0.0, waited))
    m.rate_weight.labels(api_key=api_key, rate_class=rate_class).inc(weight)


@_safe
def throttled(status: int, api_key: str) -> None:
    """The exchange answered 429 (rate-limited) or 418 (banned)."""
    get().throttled.labels(status=str(status), api_key=api_key).inc()


@_safe
def approval_decided(decision: str, seconds: float) -> None:
    """An approval was granted, rejected or expired ``seconds`` after it was requested."""
    get().approval_wait.labels(decision=decision).observe(max(0.0, seconds))


@_safe
def beat_ticked(seconds: float, lags: Sequence[float], missed: Iterable[str]) -> None:
    """One beat tick took ``seconds``; its runs were created ``lags`` after their due times."""
    m = get()
    m.beat_tick.observe(max(0.0, seconds))
    for lag in lags:
        m.schedule_lag.observe(max(0.0, lag))
    for name in missed:
        m.schedule_missed.labels(schedule=name).inc()


@_safe
def notification_delivered(channel: str, outcome: str) -> None:
    """One delivery attempt of a notification (``delivered``, ``failed``, ``gave_up``)."""
    get().notifications.labels(channel=channel, outcome=outcome).inc()
