"""Legs: what the runner sends for one step, and what the exchange's answer says about each.

A step goes out as one or more legs, each with its own client id; an operation's
:class:`~treasury.operations.spec.Legs` declaration says how the step splits, how an answer
is read back onto its legs, and what the legs add up to as the step's result. This module
holds what those declarations share and :class:`OneLeg`, the declaration of every operation
whose step is one request (a batch's is ``treasury.operations.batch_orders.Orders``).

Everything here is pure: the records are written by ``treasury.execution``, which sees legs
only through the small views below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from treasury.errors import ExchangeError
from treasury.models import ExecState, StepState
from treasury.operations.params import Params

# One item of a multi-leg answer as (error class, exchange code, message), or None when it
# succeeded. The exchange layer's one mapping of codes to errors is passed in as this.
ItemError = tuple[type[ExchangeError], str, str]
ItemErrors = Callable[[Mapping[str, Any]], ItemError | None]


class SentLeg(Protocol):
    """A leg that was just sent (an execution record)."""

    @property
    def client_id(self) -> str: ...

    @property
    def attempts(self) -> int: ...


class LegView(Protocol):
    """A leg as it stands (an execution record), for the step's outcome."""

    @property
    def client_id(self) -> str: ...

    @property
    def state(self) -> ExecState: ...

    @property
    def response(self) -> Any: ...

    @property
    def exchange_order_id(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class LegAnswer:
    """What an answer says about one leg: SUCCEEDED (with its part of the answer), FAILED, or
    UNKNOWN (it may have happened)."""

    state: ExecState
    response: Any = None
    exchange_order_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Answered:
    """An answer read onto the legs that were sent; ``names`` and ``outcome`` are how the
    ``response.received`` event names the legs and the answer."""

    legs: dict[str, LegAnswer]
    names: dict[str, Any]
    outcome: str


@dataclass(frozen=True)
class Standing:
    """What a step's legs add up to: its state, its result, and what a person reads."""

    state: StepState
    result: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None


def exchange_order_id(data: Any) -> str | None:
    """The exchange's own id in an answer (``orderId`` or ``id``), or None when it has none."""
    if isinstance(data, Mapping):
        for key in ("orderId", "id"):
            value = data.get(key)
            if value not in (None, "", "0"):
                return str(value)
    return None


def succeeded(data: Any) -> LegAnswer:
    """A leg the exchange did, with its part of the answer."""
    return LegAnswer(ExecState.SUCCEEDED, response=data, exchange_order_id=exchange_order_id(data))


class OneLeg:
    """Most operations: the step is one request with one client id."""

    def number(self, index: int) -> int | None:
        return None

    def split(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dict(params)]

    def join(self, legs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        (leg,) = legs
        return dict(leg)

    def parts(self, checked: Params) -> list[Params]:
        return [checked]

    def whole(self, parts: Sequence[Params]) -> Params:
        (part,) = parts
        return part

    def answer(self, sent: Sequence[SentLeg], data: Any, *, item_error: ItemErrors) -> Answered:
        (leg,) = sent
        return Answered({leg.client_id: succeeded(data)},
                        names={"client_id": leg.client_id, "attempt": leg.attempts}, outcome="succeeded")

    def standing(self, legs: Sequence[LegView]) -> Standing:
        (leg,) = legs
        if leg.state is ExecState.SUCCEEDED:
            data = leg.response
            out = dict(data) if isinstance(data, Mapping) else ({"data": data} if data is not None else {})
            out["clientOrderId"] = leg.client_id
            out["orderId"] = leg.exchange_order_id
            return Standing(StepState.SUCCEEDED, out)
        if leg.state is ExecState.FAILED:
            return Standing(StepState.FAILED, error=leg.error or leg.reason)
        if leg.state is ExecState.NEEDS_ATTENTION:
            return Standing(StepState.NEEDS_ATTENTION, error=leg.error, reason=leg.reason)
        return Standing(StepState.RUNNING, error="not finished")


ONE_LEG = OneLeg()
