"""The database gauges, computed at scrape time: runs, records, approvals, audit, halts, schedules, outbox.

This collector reads tables of every layer, so it sits above them, beside the health checks and
the metrics server; the metric definitions it sits beside (``treasury.observe.metrics``) stay at
the bottom, where every layer can count into them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, func, inspect, select

from treasury.audit.outbox import notify_outbox
from treasury.audit.tables import audit_head
from treasury.clock import Clock, as_utc
from treasury.exchange.halts import active_halts
from treasury.notify.tables import notify_deliveries
from treasury.observe.metrics import RECORD_STATES, RUN_STATES
from treasury.observe.tables import AUDIT_VERIFY, marks
from treasury.schedules.tables import schedule_ticks
from treasury.store.tables import execution_records, runs, steps


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
                for channel, n in conn.execute(
                        select(notify_deliveries.c.channel, func.count())
                        .where(notify_deliveries.c.delivered_at.is_(None)).group_by(notify_deliveries.c.channel)):
                    pending.add_metric([channel], n)
                open_events.add_metric([], conn.execute(
                    select(func.count()).where(notify_outbox.c.done_at.is_(None))).scalar_one())
            yield pending
            yield open_events
