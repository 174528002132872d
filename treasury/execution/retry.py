"""Named, bounded retry policies (tenacity) with the clock's sleep, so tests never sleep.

One retry layer per failure (style.md practice 5):

- :data:`READ_POLICY` retries reads (lookups, queries, cancels) on errors after which a
  repeat is harmless: ``NotSent``, ``RateLimited`` and ``OutcomeUnknown``.
- :data:`SEND_POLICY` retries a money-moving write **only** on ``NotSent``: the request
  never left this process. A write that may have arrived (timeout, reset, 5xx) is never
  retried here; it goes to reconciliation.
- :func:`poll` is the reconciliation loop: it repeats a lookup pass until its answer is
  final or a deadline on the injected clock passes.

tenacity measures its own ``stop_*_delay`` budgets with ``time.monotonic``, which a test
clock does not move, so every policy also stops on :class:`stop_before_clock_delay`,
measured on the injected :class:`~treasury.clock.Clock`. Nothing here retries forever: each
policy has an attempt cap as well as a time budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from treasury.clock import Clock
from treasury.errors import NotSent, OutcomeUnknown, RateLimited

T = TypeVar("T")

READ_RETRY_ON: tuple[type[BaseException], ...] = (NotSent, RateLimited, OutcomeUnknown)
SEND_RETRY_ON: tuple[type[BaseException], ...] = (NotSent,)


def exponential_jitter(initial: float, max_wait: float, jitter: float) -> wait_base:
    """``wait_exponential_jitter``: initial * 2**n + U(0, jitter), capped at ``max_wait``.

    tenacity 9 renamed ``initial`` to ``multiplier`` (and warns on the old name); 8.x only
    knows ``initial``.
    """
    try:
        return wait_exponential_jitter(multiplier=initial, max=max_wait, jitter=jitter)  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return wait_exponential_jitter(initial=initial, max=max_wait, jitter=jitter)


class stop_before_clock_delay(stop_base):
    """Stop when the next wait would end ``budget`` seconds or more after the start (on ``clock``)."""

    def __init__(self, clock: Clock, budget: float) -> None:
        self.clock = clock
        self.budget = budget
        self.start = clock.monotonic()

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock.monotonic() - self.start + retry_state.upcoming_sleep >= self.budget


class stop_past_deadline(stop_base):
    """Stop once ``clock.time()`` has reached ``deadline()`` (epoch seconds, read every time)."""

    def __init__(self, clock: Clock, deadline: Callable[[], float]) -> None:
        self.clock = clock
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock.time() >= self.deadline()


class wait_capped_by_deadline(wait_base):
    """Another wait strategy's wait, but never past ``deadline`` on ``clock``.

    The last poll then lands exactly on the deadline, where the caller decides.
    """

    def __init__(self, inner: wait_base, clock: Clock, deadline: Callable[[], float]) -> None:
        self.inner = inner
        self.clock = clock
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> float:
        left = self.deadline() - self.clock.time()
        return max(0.0, min(self.inner(retry_state), left))


@dataclass(frozen=True)
class RetryPolicy:
    """A bounded retry policy: which errors, how long to wait, when to stop.

    Attributes:
        name: for logs and audit payloads.
        retry_on: the exception classes that are retried (never a bare ``Exception``).
        initial, max_wait, jitter: ``wait_exponential_jitter`` parameters (seconds).
        max_attempts: total attempts, the first included.
        budget_seconds: stop before a wait would cross this budget (None: attempts only).
    """

    name: str
    retry_on: tuple[type[BaseException], ...]
    initial: float
    max_wait: float
    jitter: float
    max_attempts: int
    budget_seconds: float | None

    def with_limits(self, *, max_attempts: int | None = None, budget_seconds: float | None = None) -> RetryPolicy:
        """A copy with other bounds."""
        return replace(
            self,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            budget_seconds=self.budget_seconds if budget_seconds is None else budget_seconds,
        )

    def retrying(
        self, clock: Clock, *, before_sleep: Callable[[RetryCallState], None] | None = None
    ) -> Retrying:
        """A fresh tenacity ``Retrying`` for one call; re-raises the last error when it gives up."""
        stop: stop_base = stop_after_attempt(self.max_attempts)
        if self.budget_seconds is not None:
            stop = stop | stop_before_delay(self.budget_seconds) | stop_before_clock_delay(clock, self.budget_seconds)
        return Retrying(
            sleep=clock.sleep,
            stop=stop,
            wait=exponential_jitter(self.initial, self.max_wait, self.jitter),
            retry=retry_if_exception_type(self.retry_on),
            reraise=True,
            before_sleep=before_sleep,
        )

    def call(
        self,
        fn: Callable[[], T],
        clock: Clock,
        *,
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> T:
        """Run ``fn`` under this policy.

        Raises:
            The last exception of ``fn`` once the policy gives up, or at once for an
            exception that is not in ``retry_on``.
        """
        return self.retrying(clock, before_sleep=before_sleep)(fn)


READ_POLICY = RetryPolicy(
    name="read",
    retry_on=READ_RETRY_ON,
    initial=0.2,
    max_wait=5.0,
    jitter=0.2,
    max_attempts=8,
    budget_seconds=20.0,
)

SEND_POLICY = RetryPolicy(
    name="send",
    retry_on=SEND_RETRY_ON,
    initial=0.5,
    max_wait=5.0,
    jitter=0.5,
    max_attempts=3,
    budget_seconds=30.0,
)

# The reconciliation poll: first look after 0.2 s, then back off to at most 5 s between passes.
POLL_INITIAL = 0.2
POLL_MAX_WAIT = 5.0
POLL_MAX_PASSES = 200


def poll(
    fn: Callable[[], T],
    *,
    done: Callable[[T], bool],
    clock: Clock,
    deadline: Callable[[], float],
    max_passes: int = POLL_MAX_PASSES,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Call ``fn`` until ``done(result)`` or ``deadline()`` (epoch seconds on ``clock``) passes.

    Waits grow exponentially with jitter and are cut so that the last pass happens at the
    deadline itself. Returns the last result, final or not. Exceptions from ``fn`` propagate
    at once (the lookups inside ``fn`` carry their own read policy). ``sleep`` waits between
    passes (default ``clock.sleep``; the executor's renews its leases first).
    """
    retrying = Retrying(
        sleep=sleep if sleep is not None else clock.sleep,
        # The deadline may move (a re-send restarts the settle window), so it is read every pass.
        stop=stop_after_attempt(max_passes) | stop_past_deadline(clock, deadline),
        wait=wait_capped_by_deadline(
            exponential_jitter(POLL_INITIAL, POLL_MAX_WAIT, POLL_INITIAL),
            clock,
            deadline,
        ),
        retry=retry_if_result(lambda result: not done(result)),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    return retrying(fn)

