"""Health checks: the database, Redis, the exchange's clock, halts and pending migrations.

``treasury health`` prints them, and ``/readyz`` (on the metrics port of worker and beat,
see ``observe.server``) answers 200 only when none failed. ``/healthz`` is liveness only:
the process answers.

Each check returns a :class:`Check`; ``ok`` is ``None`` for a check that was not made
(nothing to check, or not available yet), which does not make the process unhealthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Engine, inspect, text

from treasury.clock import Clock
from treasury.exchange.halts import active_halts, describe_halt

if TYPE_CHECKING:  # the migration module imports Alembic, which a health check needs only to run
    from treasury.store.migrate import SchemaStatus

TIME_PATH = "/api/v1/time"


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``ok`` True, False, or None (not checked), and a one-line detail."""

    name: str
    ok: bool | None
    detail: str
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return {True: "ok", False: "FAIL", None: "not checked"}[self.ok]

    def line(self) -> str:
        return f"{self.name}: {self.status} ({self.detail})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status, "seconds": round(self.seconds, 4)}


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "checks": [c.to_dict() for c in self.checks]}


def _timed(name: str, fn: Callable[[], tuple[bool | None, str]]) -> Check:
    start = time.perf_counter()
    try:
        ok, detail = fn()
    except Exception as exc:  # a health check reports every failure, it never raises
        ok, detail = False, f"{type(exc).__name__}: {_one_line(exc)}"
    return Check(name, ok, detail, time.perf_counter() - start)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def check_database(engine: Engine) -> Check:
    """``SELECT 1`` on the database (the URL, which may hold a password, is never shown)."""

    def probe() -> tuple[bool | None, str]:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, engine.dialect.name

    return _timed("database", probe)


def check_redis(url: str | None) -> Check:
    """PING the broker's Redis; not checked when no broker is configured (inline mode)."""
    if url is None:
        return Check("redis", None, "no broker configured: steps run inline")

    def probe() -> tuple[bool | None, str]:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
        return True, "PING answered"

    return _timed("redis", probe)


def check_exchange(base_url: str | None, http: httpx.Client, clock: Clock,
                   max_offset_ms: float) -> tuple[Check, Check]:
    """``GET /api/v1/time`` on the exchange, and our clock's offset against it.

    The offset is measured like the client does (the server read its clock half-way through
    the round trip); beyond ``max_offset_ms`` the clock check fails (the host's time sync is
    broken, and requests would only pass because the client corrects for it).
    """
    if base_url is None:
        return (Check("exchange", None, "in-process simulator"),
                Check("clock", None, "in-process simulator shares this clock"))
    measured: dict[str, float] = {}

    def probe() -> tuple[bool | None, str]:
        before = clock.time()
        response = http.get(base_url + TIME_PATH, timeout=5)
        after = clock.time()
        if response.status_code != 200:
            return False, f"{TIME_PATH} answered HTTP {response.status_code}"
        server_ms = int(response.json()["serverTime"])
        measured["offset"] = server_ms - (before + after) / 2 * 1000
        measured["rtt"] = (after - before) * 1000
        return True, f"{TIME_PATH} answered in {measured['rtt']:.0f} ms"

    exchange = _timed("exchange", probe)
    if "offset" not in measured:
        return exchange, Check("clock", None, "no server time to compare with")
    offset = measured["offset"]
    ok = abs(offset) <= max_offset_ms
    clock_check = Check("clock", ok, f"offset {offset:+.0f} ms against the exchange (limit ±{max_offset_ms:.0f} ms)")
    return exchange, clock_check


def check_halts(engine: Engine, clock: Clock) -> Check:
    """Exchange halts in force: a 418 ban (every key) or a suspended key fails the check."""

    def probe() -> tuple[bool | None, str]:
        if not inspect(engine).has_table("exchange_halts"):
            return None, "no schema yet"
        with engine.connect() as conn:
            halts = active_halts(conn, clock.now())
        if not halts:
            return True, "no key suspended, host not banned"
        return False, "; ".join(describe_halt(h) for h in halts)

    return _timed("exchange_halts", probe)


def check_migrations(engine: Engine, status: Callable[[Engine], SchemaStatus]) -> Check:
    """Pending schema migrations: the database's revision against this release's head, as
    ``status`` reads it (``treasury.schema.status``, which knows the whole schema); behind or
    ahead fails and names the way out."""
    from treasury.store import migrate

    try:
        found = status(engine)
    except Exception as exc:  # reported by check_database as well; say so here without a trace
        return Check("migrations", False, f"could not read the revision ({type(exc).__name__})")
    if found.state == migrate.CURRENT:
        return Check("migrations", True, found.describe())
    if found.state == migrate.EMPTY:  # the first process to start creates it whole
        return Check("migrations", None, f"{found.describe()}; created on first start or by `treasury db upgrade`")
    hint = f"; {migrate.UPGRADE_HINT}" if found.state == migrate.BEHIND else ""
    return Check("migrations", False, found.describe() + hint)


def run_checks(checks: Sequence[Callable[[], Check | tuple[Check, ...]]]) -> HealthReport:
    """Run each check (in order) into one report."""
    out: list[Check] = []
    for check in checks:
        result = check()
        out.extend(result if isinstance(result, tuple) else (result,))
    return HealthReport(tuple(out))


def standard_checks(settings: Any, engine: Engine, clock: Clock, http: httpx.Client | None = None, *,
                    schema_status: Callable[[Engine], SchemaStatus],
                    ) -> list[Callable[[], Check | tuple[Check, ...]]]:
    """The checks for these settings: database, Redis, exchange time and clock, halts, and
    migrations (read with ``schema_status``)."""
    broker = settings.broker_url.get_secret_value() if settings.broker_url is not None else None

    def exchange() -> tuple[Check, Check]:
        client = http if http is not None else httpx.Client()
        try:
            return check_exchange(settings.exchange_url(), client, clock, settings.max_clock_offset_ms)
        finally:
            if http is None:
                client.close()

    return [
        lambda: check_database(engine),
        lambda: check_redis(broker),
        exchange,
        lambda: check_halts(engine, clock),
        lambda: check_migrations(engine, schema_status),
    ]
