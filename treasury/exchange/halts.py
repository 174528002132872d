"""Exchange halts kept in the database, so a 418 ban outlives the process that saw it.

In embedded mode (no Redis) every CLI invocation builds a fresh in-process limiter; the
``exchange_halts`` table is what stops the next invocation from sending after a ban.
:class:`HaltGuard` wraps any limiter: it checks the table before each acquire (cached for a
second to stay cheap), records bans and suspensions there, and writes audit events.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from treasury.audit.log import AuditSink
from treasury.clock import Clock
from treasury.exchange.ratelimit import RESUME_HINT, RateLimiter, halted_error
from treasury.models import RateClass
from treasury.store.tables import exchange_halts

log = logging.getLogger("treasury.exchange")

HOST_SCOPE = "host"
BANNED = "banned"
SUSPENDED = "suspended"
SYSTEM_ACTOR = "system:exchange-client"

"""``audit(conn, *, type, actor, at, run_id=None, step_id=None, payload=None)``, as
``treasury.audit.append_event``."""


def key_scope(api_key: str) -> str:
    """The ``scope`` of a halt on one API key."""
    return f"key:{api_key}"



def record_halt(
    conn: Connection,
    *,
    scope: str,
    kind: str,
    reason: str,
    at: datetime,
    until: datetime | None = None,
) -> int:
    """Insert one halt (``kind`` "banned" or "suspended"); ``until`` None lasts until resumed.

    Returns the new row id.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in (BANNED, SUSPENDED):
        raise ValueError(f"halt kind must be {BANNED!r} or {SUSPENDED!r}, got {kind!r}")
    result = conn.execute(
        insert(exchange_halts).values(scope=scope, kind=kind, since=at, until=until, reason=reason)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _active(at: datetime) -> Any:
    return and_(
        exchange_halts.c.resumed_at.is_(None),
        or_(exchange_halts.c.until.is_(None), exchange_halts.c.until > at),
    )


def active_halts(conn: Connection, at: datetime) -> list[dict[str, Any]]:
    """Halts in force at ``at`` (not resumed, not expired), oldest first."""
    rows = conn.execute(select(exchange_halts).where(_active(at)).order_by(exchange_halts.c.id)).mappings()
    return [dict(row) for row in rows]  # the column type hands back aware UTC datetimes


def resume_all(conn: Connection, *, by: str, at: datetime) -> int:
    """Mark every active ban as resumed by ``by``; returns how many were lifted.

    Suspensions are left to expire: cutting a 429 suspension short invites a 418 ban.
    """
    result = conn.execute(
        update(exchange_halts)
        .where(_active(at), exchange_halts.c.kind == BANNED)
        .values(resumed_at=at, resumed_by=by)
    )
    return int(result.rowcount or 0)


def describe_halt(halt: dict[str, Any]) -> str:
    """One line for a halt row, as acquire's refusal and the CLI show it."""
    if halt["kind"] == BANNED:
        return f"host banned since {halt['since']:%Y-%m-%d %H:%M:%S} UTC ({halt['reason']}); {RESUME_HINT}"
    return f"key suspended until {halt['until']:%H:%M:%S} UTC ({halt['reason']})"


class HaltGuard:
    """A limiter wrapper that makes bans and suspensions durable and audited.

    Args:
        limiter: the limiter that does the counting (local or Redis).
        engine: the database holding ``exchange_halts`` (and the audit log).
        clock: wall clock for halt times.
        audit: optional ``append_event``-shaped hook, called in the same transaction.
        cache_seconds: how long a database check is reused.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        engine: Engine,
        clock: Clock,
        audit: AuditSink | None = None,
        *,
        cache_seconds: float = 1.0,
    ) -> None:
        self.limiter = limiter
        self.engine = engine
        self.clock = clock
        self.audit = audit
        self.cache_seconds = cache_seconds
        self._cache: tuple[float, list[dict[str, Any]]] | None = None

    def _halts(self) -> list[dict[str, Any]]:
        mono = self.clock.monotonic()
        if self._cache is not None and mono - self._cache[0] < self.cache_seconds:
            return self._cache[1]
        with self.engine.connect() as conn:
            halts = active_halts(conn, self.clock.now())
        self._cache = (mono, halts)
        return halts

    def _db_reason(self, api_key: str) -> str | None:
        now = self.clock.now()
        for halt in self._halts():
            until = halt["until"]
            if until is not None and until <= now:
                continue  # expired since it was cached
            if halt["scope"] == HOST_SCOPE or halt["scope"] == key_scope(api_key):
                return describe_halt(halt)
        return None

    def acquire(self, api_key: str, rate_class: RateClass, weight: int = 1) -> str | None:
        """Refuse if the database holds an active ban or suspension, else ask the limiter.

        Raises:
            ExchangeHalted: halted in the database or in the wrapped limiter.
        """
        reason = self._db_reason(api_key)
        if reason is not None:
            raise halted_error(reason)
        return self.limiter.acquire(api_key, rate_class, weight)

    def answered(self, api_key: str, rate_class: RateClass, ticket: str | None) -> None:
        self.limiter.answered(api_key, rate_class, ticket)

    def _record(self, *, scope: str, kind: str, reason: str, until: datetime | None, event: str,
                payload: dict[str, Any]) -> None:
        at = self.clock.now()
        with self.engine.begin() as conn:
            record_halt(conn, scope=scope, kind=kind, reason=reason, at=at, until=until)
            if self.audit is not None:
                self.audit(conn, type=event, actor=SYSTEM_ACTOR, at=at, payload=payload)
        self._cache = None

    def suspend(self, api_key: str, seconds: float, reason: str) -> None:
        self.limiter.suspend(api_key, seconds, reason)
        until = self.clock.now() + timedelta(seconds=seconds)
        self._record(scope=key_scope(api_key), kind=SUSPENDED, reason=reason, until=until,
                     event="exchange.rate_limited",
                     payload={"api_key": api_key, "seconds": seconds, "reason": reason})
        log.warning("exchange key suspended for %.0f s: %s", seconds, reason)

    def ban(self, reason: str) -> None:
        self.limiter.ban(reason)
        self._record(scope=HOST_SCOPE, kind=BANNED, reason=reason, until=None,
                     event="exchange.banned", payload={"reason": reason})
        log.error("exchange banned this host: %s; %s", reason, RESUME_HINT)

    def resume(self, by: str) -> None:
        """Lift the ban in the wrapped limiter and the database, and audit who did it."""
        self.resume_count(by)

    def resume_count(self, by: str) -> int:
        """As :meth:`resume`; returns how many database bans were lifted."""
        self.limiter.resume(by)
        at = self.clock.now()
        with self.engine.begin() as conn:
            lifted = resume_all(conn, by=by, at=at)
            if self.audit is not None:
                self.audit(conn, type="exchange.resumed", actor=by, at=at, payload={"lifted": lifted})
        self._cache = None
        log.warning("exchange traffic resumed by %s (%d ban(s) lifted)", by, lifted)
        return lifted

    def halted(self, api_key: str) -> str | None:
        return self.limiter.halted(api_key) or self._db_reason(api_key)
