"""The notification sender: delivers outbox events to their channels, at least once.

One pass (:meth:`Sender.run_once`):

1. every outbox event not done gets one delivery row per routed channel (an event with no
   route is done at once);
2. each delivery that is due is *claimed*: a conditional update sets ``claimed_until`` (a
   lease), so two senders never send the same delivery at the same time;
3. the request is sent with tenacity's retries and exponential backoff (transport errors,
   5xx and 429); a 2xx marks it delivered, anything else records the error and a later
   ``next_attempt_at`` (exponential, up to an hour) and releases the claim;
4. an event whose deliveries are all delivered is done.

A sender killed between sending and marking leaves the claim to expire; the next pass sends
that delivery again with the same event id, which the receiver deduplicates. Nothing is lost:
the outbox row was committed with the audit event that caused it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import tenacity
from sqlalchemy import Engine, and_, or_, select, update

from treasury.audit.outbox import APPROVAL_EXPIRING, enqueue, notify_outbox
from treasury.clock import Clock, as_utc
from treasury.notify.channels import Event, Outgoing, request_for
from treasury.notify.config import Channel, NotifyConfig
from treasury.notify.tables import notify_deliveries
from treasury.observe import metrics
from treasury.store.db import insert_ignoring_conflicts
from treasury.store.tables import steps

log = logging.getLogger("treasury.notify")

MAX_BACKOFF_SECONDS = 3600.0


class DeliveryFailed(Exception):
    """One attempt did not get a 2xx (the status, or the transport error's name)."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass
class SenderSettings:
    lease_seconds: float = 60.0
    batch: int = 100
    attempts_per_pass: int = 3  # tenacity's attempts inside one pass
    first_backoff_seconds: float = 5.0  # between passes, doubling per failed pass
    expiry_warning_seconds: float = 3600.0  # approval.expiring this long before an approval expires
    console_url: str | None = None


@dataclass
class PassReport:
    delivered: int = 0
    failed: int = 0
    done_events: int = 0
    expiring: int = 0
    errors: list[str] = field(default_factory=list)


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Sender:
    """Delivers the outbox of ``engine`` to the channels of ``config``.

    Args:
        http: the transport (tests pass a client on a local receiver).
        sleep: tenacity's sleep between attempts inside a pass (tests record it).
    """

    def __init__(self, engine: Engine, config: NotifyConfig, clock: Clock, http: httpx.Client, *,
                 settings: SenderSettings | None = None, sleep: Callable[[float], None] | None = None,
                 owner: str | None = None) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self.http = http
        self.settings = settings or SenderSettings()
        self.sleep = sleep or clock.sleep
        self.owner = owner or _default_owner()

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> PassReport:
        """One pass over the outbox (see the module docstring). Never raises for a channel's failure."""
        report = PassReport()
        report.expiring = self.enqueue_expiring()
        report.done_events = self._route_new()
        for event_id, channel in self._claim_due():
            try:
                self._deliver(event_id, channel)
                report.delivered += 1
            except DeliveryFailed as exc:
                report.failed += 1
                report.errors.append(f"{event_id} -> {channel}: {exc}")
        report.done_events += self._finish_events()
        return report

    def enqueue_expiring(self) -> int:
        """Outbox rows for approvals expiring within the warning window (once per approval step)."""
        now = self.clock.now()
        horizon = now + timedelta(seconds=self.settings.expiry_warning_seconds)
        written = 0
        with self.engine.begin() as conn:
            rows = conn.execute(select(steps.c.run_id, steps.c.step_id, steps.c.expires_at).where(
                steps.c.kind == "approval", steps.c.state == "AWAITING_APPROVAL",
                steps.c.expires_at.is_not(None), steps.c.expires_at <= horizon, steps.c.expires_at > now)).all()
            for run_id, step_id, expires_at in rows:
                written += enqueue(conn, event_id=f"approval-expiring-{run_id}-{step_id}", type=APPROVAL_EXPIRING,
                                   at=now, run_id=run_id, step_id=step_id,
                                   payload={"expires_at": _iso(expires_at)})
        return written

    def _route_new(self) -> int:
        """Delivery rows for events not routed yet; events with no route are done."""
        now = self.clock.now()
        done = 0
        routed = select(notify_deliveries.c.event_id).where(notify_deliveries.c.event_id == notify_outbox.c.event_id)
        with self.engine.begin() as conn:
            # only events without deliveries yet: events waiting on a failing channel keep no batch slot
            rows = conn.execute(select(notify_outbox.c.event_id, notify_outbox.c.type)
                                .where(notify_outbox.c.done_at.is_(None), ~routed.exists())
                                .order_by(notify_outbox.c.id).limit(self.settings.batch)).all()
            for event_id, kind in rows:
                channels = [c for c in self.config.channels_for(kind) if c in self.config.channels]
                if not channels:
                    conn.execute(update(notify_outbox).where(notify_outbox.c.event_id == event_id)
                                 .values(done_at=now))
                    done += 1
                    continue
                conn.execute(insert_ignoring_conflicts(conn, notify_deliveries),
                             [{"event_id": event_id, "channel": c, "attempts": 0, "next_attempt_at": now}
                              for c in channels])
        return done

    def _claim_due(self) -> list[tuple[str, str]]:
        """Claim (lease) due deliveries, one conditional update each: only one sender wins each."""
        now = self.clock.now()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        d = notify_deliveries.c
        free = or_(d.claimed_until.is_(None), d.claimed_until <= now)
        with self.engine.connect() as conn:
            due = conn.execute(select(d.event_id, d.channel).where(
                d.delivered_at.is_(None), d.next_attempt_at <= now, free,
                d.channel.in_(list(self.config.channels))).order_by(d.next_attempt_at)
                .limit(self.settings.batch)).all()
        claimed = []
        for event_id, channel in due:
            with self.engine.begin() as conn:
                won = conn.execute(update(notify_deliveries).where(
                    and_(d.event_id == event_id, d.channel == channel, d.delivered_at.is_(None), free))
                    .values(claimed_by=self.owner[:100], claimed_until=until)).rowcount
            if won:
                claimed.append((event_id, channel))
        return claimed

    def _deliver(self, event_id: str, channel_name: str) -> None:
        channel = self.config.channels[channel_name]
        event = self._event(event_id)
        d = notify_deliveries.c
        mine = and_(d.event_id == event_id, d.channel == channel_name, d.claimed_by == self.owner[:100])
        try:
            status = self._send_with_retries(channel, event)
        except DeliveryFailed as exc:
            metrics.notification_delivered(channel_name, "failed")
            with self.engine.begin() as conn:
                attempts = int(conn.execute(select(d.attempts).where(mine)).scalar_one_or_none() or 0) + 1
                backoff = min(MAX_BACKOFF_SECONDS, self.settings.first_backoff_seconds * 2 ** (attempts - 1))
                conn.execute(update(notify_deliveries).where(mine).values(
                    attempts=attempts, last_status=exc.status, last_error=str(exc)[:1000],
                    next_attempt_at=self.clock.now() + timedelta(seconds=backoff),
                    claimed_by=None, claimed_until=None))
            log.warning("notification %s to %s not delivered (will retry): %s", event_id, channel_name, exc)
            raise
        metrics.notification_delivered(channel_name, "delivered")
        with self.engine.begin() as conn:
            conn.execute(update(notify_deliveries).where(mine).values(
                delivered_at=self.clock.now(), last_status=status, last_error=None,
                attempts=d.attempts + 1, claimed_until=None))

    def _send_with_retries(self, channel: Channel, event: Event) -> int:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.settings.attempts_per_pass)),
            wait=tenacity.wait_exponential(multiplier=0.5, max=10),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, DeliveryFailed) and e.retryable),
            sleep=self.sleep, reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._send_once(channel, event)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, channel: Channel, event: Event) -> int:
        outgoing: Outgoing = request_for(channel, event, timestamp=int(self.clock.time()),
                                         console_url=self.settings.console_url)
        try:
            response = self.http.post(outgoing.url, content=outgoing.body, headers=outgoing.headers,
                                      timeout=channel.timeout_seconds)
        except httpx.HTTPError as exc:
            # the URL may be a credential (Slack): name the error, never the request
            raise DeliveryFailed(f"{type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return response.status_code
        retryable = response.status_code >= 500 or response.status_code in (408, 429)
        raise DeliveryFailed(f"HTTP {response.status_code}", status=response.status_code, retryable=retryable)

    def _event(self, event_id: str) -> Event:
        with self.engine.connect() as conn:
            row = conn.execute(select(notify_outbox).where(notify_outbox.c.event_id == event_id)).one()
        return Event(id=row.event_id, type=row.type, at=_iso(row.at), run_id=row.run_id, step_id=row.step_id,
                     payload=json.loads(row.payload))

    def _finish_events(self) -> int:
        """Mark done every open event whose deliveries are all delivered."""
        d = notify_deliveries.c
        now = self.clock.now()
        mine = d.event_id == notify_outbox.c.event_id
        finished = and_(notify_outbox.c.done_at.is_(None),
                        select(d.event_id).where(mine).exists(),
                        ~select(d.event_id).where(mine, d.delivered_at.is_(None)).exists())
        with self.engine.begin() as conn:
            done = conn.execute(update(notify_outbox).where(finished).values(done_at=now)).rowcount
        return int(done or 0)


def _iso(value: datetime | Any) -> str:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return str(value)
