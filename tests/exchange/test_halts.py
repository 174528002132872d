"""Halts in the database: a 418 ban survives the process (a new CLI invocation still refuses),
suspensions expire, a person resumes, and every change is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from treasury.clock import ManualClock
from treasury.errors import ExchangeHalted
from treasury.exchange.halts import HaltGuard, active_halts, record_halt, resume_all
from treasury.exchange.ratelimit import LocalRateLimiter
from treasury.models import RateClass
from treasury.settings import RateLimits

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class AuditLog:
    """Stands in for treasury.audit.append_event: same signature, keeps the calls."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, conn: Any, *, type: str, actor: str, at: datetime, run_id: str | None = None,
                 step_id: str | None = None, payload: dict[str, Any] | None = None) -> None:
        assert conn is not None  # called inside the same transaction
        self.events.append({"type": type, "actor": actor, "at": at, "payload": payload})


def test_active_halts_and_resume(engine: Engine) -> None:
    with engine.begin() as conn:
        record_halt(conn, scope="host", kind="banned", reason="HTTP 418 on withdraw", at=T)
        record_halt(conn, scope="key:demo-read", kind="suspended", reason="429", at=T,
                    until=T + timedelta(seconds=60))
        record_halt(conn, scope="key:old", kind="suspended", reason="429", at=T - timedelta(hours=1),
                    until=T - timedelta(minutes=59))
    with engine.connect() as conn:
        active = active_halts(conn, T + timedelta(seconds=30))
        assert [(h["scope"], h["kind"]) for h in active] == [("host", "banned"), ("key:demo-read", "suspended")]
        assert active[0]["since"] == T and active[1]["until"] == T + timedelta(seconds=60)
        assert [h["kind"] for h in active_halts(conn, T + timedelta(days=3))] == ["banned"]
    with engine.begin() as conn:
        assert resume_all(conn, by="alice", at=T + timedelta(seconds=40)) == 1
    with engine.connect() as conn:
        assert [h["kind"] for h in active_halts(conn, T + timedelta(seconds=41))] == ["suspended"]
    with engine.begin() as conn:
        assert resume_all(conn, by="alice", at=T + timedelta(seconds=42)) == 0


def test_record_halt_refuses_unknown_kind(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="halt kind"):
        record_halt(conn, scope="host", kind="paused", reason="x", at=T)


def test_ban_survives_a_new_process_until_resumed(engine: Engine) -> None:
    clock = ManualClock()
    audit = AuditLog()
    first = HaltGuard(LocalRateLimiter(RateLimits(), clock), engine, clock, audit)
    first.acquire("demo-read", RateClass.QUERY)
    first.ban("HTTP 418 on balances")
    with pytest.raises(ExchangeHalted, match="banned"):
        first.acquire("demo-read", RateClass.QUERY)

    # A new CLI invocation: a fresh in-process limiter that never saw the 418.
    clock.advance(3600)
    second = HaltGuard(LocalRateLimiter(RateLimits(), clock), engine, clock, audit)
    with pytest.raises(ExchangeHalted, match="banned"):
        second.acquire("demo-trade", RateClass.ORDER)
    assert "HTTP 418 on balances" in (second.halted("demo-trade") or "")

    assert second.resume_count("alice") == 1
    second.acquire("demo-trade", RateClass.ORDER)
    assert [(e["type"], e["actor"]) for e in audit.events] == [
        ("exchange.banned", "system:exchange-client"),
        ("exchange.resumed", "alice"),
    ]
    assert audit.events[1]["payload"] == {"lifted": 1}


def test_suspension_is_recorded_and_expires(engine: Engine) -> None:
    clock = ManualClock()
    audit = AuditLog()
    guard = HaltGuard(LocalRateLimiter(RateLimits(), clock), engine, clock, audit)
    guard.suspend("demo-read", 60, "HTTP 429 on balances")
    fresh = HaltGuard(LocalRateLimiter(RateLimits(), clock), engine, clock)
    with pytest.raises(ExchangeHalted, match="suspended"):
        fresh.acquire("demo-read", RateClass.QUERY)
    fresh.acquire("demo-trade", RateClass.QUERY)  # only that key
    clock.advance(61)
    fresh.acquire("demo-read", RateClass.QUERY)
    assert audit.events[0]["type"] == "exchange.rate_limited"
    assert audit.events[0]["payload"]["seconds"] == 60


def test_guard_sees_another_process_ban_within_its_cache_time(engine: Engine) -> None:
    clock = ManualClock()
    watcher = HaltGuard(LocalRateLimiter(RateLimits(order=100), clock), engine, clock, cache_seconds=1.0)
    watcher.acquire("k", RateClass.ORDER)
    with engine.begin() as conn:
        record_halt(conn, scope="host", kind="banned", reason="seen elsewhere", at=clock.now())
    watcher.acquire("k", RateClass.ORDER)  # still cached: one more request at most
    clock.advance(1.0)
    with pytest.raises(ExchangeHalted, match="seen elsewhere"):
        watcher.acquire("k", RateClass.ORDER)
