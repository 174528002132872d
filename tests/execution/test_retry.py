"""Retry policies: bounded, only the listed errors, waits through the injected clock."""

from __future__ import annotations

import pytest

from treasury.clock import ManualClock
from treasury.errors import NotSent, OutcomeUnknown, RateLimited, Rejected
from treasury.execution.retry import READ_POLICY, SEND_POLICY, poll


def failing(errors: list[BaseException], result: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_read_policy_retries_transient_errors_with_growing_jittered_waits() -> None:
    clock = ManualClock()
    fn, calls = failing([NotSent("x"), RateLimited("x"), OutcomeUnknown("x")])
    assert READ_POLICY.call(fn, clock) == "ok"
    assert calls["n"] == 4
    assert len(clock.sleeps) == 3
    assert 0.2 <= clock.sleeps[0] <= 0.4 and clock.sleeps[2] > clock.sleeps[0]


def test_read_policy_does_not_retry_a_definite_rejection() -> None:
    clock = ManualClock()
    fn, calls = failing([Rejected("no", code="-1171")])
    with pytest.raises(Rejected):
        READ_POLICY.call(fn, clock)
    assert calls["n"] == 1 and clock.sleeps == []


def test_read_policy_stops_within_its_budget_on_the_injected_clock() -> None:
    clock = ManualClock()
    fn, calls = failing([OutcomeUnknown("x")] * 100)
    policy = READ_POLICY.with_limits(max_attempts=100, budget_seconds=10.0)
    with pytest.raises(OutcomeUnknown):
        policy.call(fn, clock)
    assert sum(clock.sleeps) < 10.0  # stop_before: never waits past the budget
    assert 3 < calls["n"] < 100


def test_send_policy_retries_only_not_sent() -> None:
    clock = ManualClock()
    fn, calls = failing([OutcomeUnknown("timeout after send")])
    with pytest.raises(OutcomeUnknown):
        SEND_POLICY.call(fn, clock)
    assert calls["n"] == 1  # never re-sent blindly
    fn, calls = failing([NotSent("refused"), NotSent("refused")])
    assert SEND_POLICY.call(fn, clock) == "ok" and calls["n"] == 3
    fn, calls = failing([NotSent("refused")] * 10)
    with pytest.raises(NotSent):
        SEND_POLICY.with_limits(max_attempts=3).call(fn, clock)
    assert calls["n"] == 3


def test_poll_waits_until_done_and_lands_on_the_deadline() -> None:
    clock = ManualClock()
    start = clock.time()
    answers = iter([False, False, True])
    assert poll(lambda: next(answers), done=bool, clock=clock, deadline=lambda: start + 100) is True
    assert len(clock.sleeps) == 2

    clock = ManualClock()
    start = clock.time()
    result = poll(lambda: "pending", done=lambda r: r == "done", clock=clock, deadline=lambda: start + 7)
    assert result == "pending"
    assert clock.time() == pytest.approx(start + 7)  # the last pass happens at the deadline
    assert max(clock.sleeps) <= 5.0 + 0.2
