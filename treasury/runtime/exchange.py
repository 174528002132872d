"""Build the exchange client, its limiter and key profiles from ``Settings`` (wiring: part of the composition root).

Entry points (CLI, worker) call these once; library code receives the results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from treasury.clock import Clock
from treasury.errors import ConfigError
from treasury.exchange.client import HashKeyClient
from treasury.exchange.halts import AuditSink, HaltGuard
from treasury.exchange.hostlimit import HostRateLimiter, default_state_path
from treasury.exchange.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from treasury.keys import KeyProfile, get_spec, load_key_specs
from treasury.settings import Settings
from treasury.simulator import Simulator, load_state, persist_path_for

SIMULATOR_BASE_URL = "http://simulator.local"


def redis_broker_url(settings: Settings) -> str | None:
    """The broker URL when it is a Redis URL (the limiter then lives in Redis), else None."""
    if settings.broker_url is None:
        return None
    url = settings.broker_url.get_secret_value()
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


def build_limiter(
    settings: Settings,
    clock: Clock,
    *,
    engine: Engine | None = None,
    audit: AuditSink | None = None,
    namespace: str = "treasury",
    host_state_path: Path | None = None,
) -> RateLimiter:
    """The limiter for this process.

    - a Redis broker: :class:`RedisRateLimiter`, shared by the whole fleet;
    - an exchange URL without a broker: :class:`HostRateLimiter`, shared by every process on
      this host (each CLI invocation is one), in ``host_state_path`` or a per-user temp file;
    - the in-process simulator: :class:`LocalRateLimiter`.

    With ``engine`` it is wrapped in :class:`HaltGuard`, so bans survive the process and are
    audited through ``audit``.
    """
    url = redis_broker_url(settings)
    # an unanswered request may reach the exchange until our timeout, or its recvWindow, ends
    inflight = settings.http_timeout_seconds + settings.recv_window_ms / 1000
    limiter: RateLimiter
    if url is not None:
        import redis

        limiter = RedisRateLimiter(redis.Redis.from_url(url), settings.rate_limits, clock, namespace,
                                   inflight=inflight)
    elif settings.exchange_url() is None:
        # The in-process simulator lives and dies with this process: so may its budget.
        limiter = LocalRateLimiter(settings.rate_limits, clock, inflight=inflight)
    else:
        # Separate CLI invocations talk to one real exchange: share the budget on this host.
        path = host_state_path or default_state_path(settings.exchange_url() or "")
        limiter = HostRateLimiter(settings.rate_limits, clock, path, inflight=inflight)
    if engine is not None:
        limiter = HaltGuard(limiter, engine, clock, audit)
    return limiter


def build_simulator(settings: Settings, clock: Clock) -> Any:
    """An in-process simulator over ``settings.simulator_file``.

    With a SQLite file database its world is kept in ``<db file>.simulator.json`` (see
    ``treasury.simulator.persist``), so every CLI process sees the same exchange.

    Any other database is refused: the world would live only in this process, so a withdrawal
    one command reports SUCCEEDED could not be found by the next command.

    Raises:
        ConfigError: the database is not SQLite (names ``TREASURY_DATABASE_URL`` and what to do);
            the state file is missing or invalid, or the saved world is damaged (named).
    """
    url = settings.database_url.get_secret_value()
    persist = persist_path_for(url)
    if persist is None and not _is_sqlite(url):
        raise ConfigError(
            "the in-process simulator keeps its exchange beside a SQLite database file, so with "
            "this database every command would get an exchange of its own (a withdrawal would "
            "report SUCCEEDED and the next command could not find it). Run `treasury simulator` "
            "and set TREASURY_BASE_URL to its address (for example http://127.0.0.1:8765), or use "
            "SQLite (TREASURY_DATABASE_URL=sqlite:///treasury.db)",
            source="environment", field="TREASURY_DATABASE_URL",
        )
    return Simulator(load_state(settings.simulator_file), clock=clock, persist_path=persist)


def _is_sqlite(database_url: str) -> bool:
    scheme = database_url.partition("://")[0]
    return scheme.split("+", 1)[0].lower() == "sqlite"


def build_client(
    settings: Settings,
    *,
    clock: Clock,
    simulator: Any | None = None,
    limiter: RateLimiter | None = None,
    http: httpx.Client | None = None,
    engine: Engine | None = None,
    audit: AuditSink | None = None,
) -> HashKeyClient:
    """The client for ``settings``.

    No exchange URL (``TREASURY_ENV=simulator`` without ``TREASURY_BASE_URL``) means an
    in-process simulator behind ``httpx.MockTransport``; otherwise a real HTTP client to the
    URL. ``simulator`` (used in-process) and ``http`` override what would be built.

    Raises:
        ConfigError: an in-process simulator with a broker configured, or a bad simulator file.
    """
    settings.check()
    url = settings.exchange_url()
    if http is None:
        if url is None or simulator is not None:
            sim = simulator if simulator is not None else build_simulator(settings, clock)
            transport = httpx.MockTransport(sim.handle)
            http = httpx.Client(transport=transport, timeout=settings.http_timeout_seconds)
            url = SIMULATOR_BASE_URL
        else:
            http = httpx.Client(timeout=settings.http_timeout_seconds, follow_redirects=False)
    elif url is None:
        url = SIMULATOR_BASE_URL
    if limiter is None:
        limiter = build_limiter(settings, clock, engine=engine, audit=audit)
    return HashKeyClient(
        url, http, clock=clock, recv_window_ms=settings.recv_window_ms, limiter=limiter,
        suspension_seconds=settings.rate_limits.suspension_seconds, sync_first=True,
    )


def load_profile(settings: Settings, name: str) -> KeyProfile:
    """Load key profile ``name`` from ``settings.keys_file`` with its secret.

    Raises:
        ConfigError: the keys file is missing or invalid, the profile is unknown, or its
            secret variable/file is unset or unreadable (each named).
    """
    specs = load_key_specs(settings.keys_file)
    try:
        spec = get_spec(specs, name)
    except ConfigError as exc:
        message = str(exc).removeprefix("key: ")
        raise ConfigError(message, source=str(settings.keys_file), field="profiles") from None
    # load_key_specs already made secret_file relative to the keys file's folder, so no base_dir.
    return spec.resolve(env=settings.env.value)
