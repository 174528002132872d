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
:class:`DatabaseCollector` with one cheap query each when Prometheus scrapes, so every
process that serves them agrees, whatever process changed the data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, func, select

from treasury.clock import Clock, as_utc

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


class DatabaseCollector:
    """Gauges read from the database at scrape time (one cheap query each).

    ``engine`` should not pool connections across a fork (the worker's parent serves
    metrics while its pool forks children): ``observe.server`` passes a NullPool engine.
    """

    def __init__(self, engine: Engine, clock: Clock, rate_budgets: dict[str, float] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.rate_budgets = rate_budgets or {}

    def describe(self) -> list[Any]:
        return []  # collected only when scraped: registering must not touch the database

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("treasury_database_up", "1 when the scrape could read the database")
        try:
            families = list(self._families(GaugeMetricFamily))
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        budget = GaugeMetricFamily("treasury_rate_limit_budget_per_second",
                                   "The configured weight per second of each rate class", labels=["rate_class"])
        for rate_class, per_second in sorted(self.rate_budgets.items()):
            budget.add_metric([rate_class], per_second)
        yield budget

    def _families(self, gauge: Any) -> Iterator[Any]:
        from sqlalchemy import inspect

        from treasury.exchange.halts import active_halts
        from treasury.observe.tables import AUDIT_VERIFY, marks
        from treasury.schedules.tables import schedule_ticks
        from treasury.store.tables import execution_records, runs, steps

        now = self.clock.now()
        with self.engine.connect() as conn:
            present = set(inspect(conn).get_table_names())

            by_state = gauge("treasury_runs", "Runs by state", labels=["state"])
            counts = dict.fromkeys(RUN_STATES, 0)
            if "runs" in present:
                counts.update(conn.execute(select(runs.c.state, func.count()).group_by(runs.c.state)).all())
            for state, n in sorted(counts.items()):
                by_state.add_metric([state], n)
            yield by_state

            records = gauge("treasury_execution_records", "Execution records by state", labels=["state"])
            counts = dict.fromkeys(RECORD_STATES, 0)
            if "execution_records" in present:
                counts.update(conn.execute(select(execution_records.c.state, func.count())
                                           .group_by(execution_records.c.state)).all())
            for state, n in sorted(counts.items()):
                records.add_metric([state], n)
            yield records

            attention = gauge("treasury_steps_needing_attention", "Steps in NEEDS_ATTENTION")
            waiting = gauge("treasury_approvals_pending", "Approval steps waiting for decisions")
            expiry = gauge("treasury_approval_next_expiry_seconds",
                           "Seconds until the first pending approval expires (absent when none)")
            oldest = gauge("treasury_approval_oldest_wait_seconds",
                           "How long the oldest pending approval has waited (absent when none)")
            if "steps" in present:
                attention.add_metric([], conn.execute(
                    select(func.count()).where(steps.c.state == "NEEDS_ATTENTION")).scalar_one())
                row = conn.execute(select(func.count(), func.min(steps.c.expires_at), func.min(steps.c.started_at))
                                   .where(steps.c.kind == "approval", steps.c.state == "AWAITING_APPROVAL")).one()
                waiting.add_metric([], row[0])
                if row[1] is not None:
                    expiry.add_metric([], (as_utc(row[1]) - now).total_seconds())
                if row[2] is not None:
                    oldest.add_metric([], (now - as_utc(row[2])).total_seconds())
            yield from (attention, waiting, expiry, oldest)

            chain = gauge("treasury_audit_chain_length", "Events in the audit chain (the head's seq)")
            if "audit_head" in present:
                from treasury.audit.tables import audit_head

                chain.add_metric([], conn.execute(select(audit_head.c.seq).where(audit_head.c.id == 1))
                                 .scalar_one_or_none() or 0)
            yield chain

            verified_at = gauge("treasury_audit_last_verify_timestamp_seconds",
                                "When `treasury audit verify` last ran (absent when never)")
            verified_ok = gauge("treasury_audit_last_verify_ok", "1 when the last `audit verify` passed")
            if "marks" in present:
                mark = conn.execute(select(marks).where(marks.c.name == AUDIT_VERIFY)).first()
                if mark is not None:
                    verified_at.add_metric([], as_utc(mark.at).timestamp())
                    verified_ok.add_metric([], 1 if mark.ok else 0)
            yield from (verified_at, verified_ok)

            halted = gauge("treasury_exchange_halted",
                           "1 per halt in force: scope host (418 ban) or key:<api key> (429 suspension)",
                           labels=["scope", "kind"])
            if "exchange_halts" in present:
                for halt in active_halts(conn, now):
                    halted.add_metric([halt["scope"], halt["kind"]], 1)
            yield halted

            ticks = gauge("treasury_schedule_ticks", "Handled due instants per schedule and status",
                          labels=["schedule", "status"])
            if "schedule_ticks" in present:
                for name, status, n in conn.execute(
                        select(schedule_ticks.c.schedule, schedule_ticks.c.status, func.count())
                        .group_by(schedule_ticks.c.schedule, schedule_ticks.c.status)):
                    ticks.add_metric([name, status], n)
            yield ticks

            pending = gauge("treasury_notifications_pending", "Notifications not delivered yet",
                            labels=["channel"])
            open_events = gauge("treasury_notify_outbox_open",
                                "Outbox events some routed channel has not received yet")
            if "notify_outbox" in present and "notify_deliveries" in present:
                from treasury.audit.outbox import notify_outbox
                from treasury.notify.tables import notify_deliveries

                for channel, n in conn.execute(
                        select(notify_deliveries.c.channel, func.count())
                        .where(notify_deliveries.c.delivered_at.is_(None)).group_by(notify_deliveries.c.channel)):
                    pending.add_metric([channel], n)
                open_events.add_metric([], conn.execute(
                    select(func.count()).where(notify_outbox.c.done_at.is_(None))).scalar_one())
            yield pending
            yield open_events
