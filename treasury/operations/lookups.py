"""Reconciliation's vocabulary: the reads that find a client id, and what their answers prove.

An operation that moves money declares a :class:`Reconciliation` (its module in
``treasury.operations``); this module holds what those declarations share::

    FOUND(order id, row)    the exchange has it: the step succeeded (or, for a fiat or VA
                            withdrawal row marked failed, definitely failed)
    ABSENT(sources)         every lookup says it is not there; ``sources`` names them
    INCONCLUSIVE(reason)    a lookup failed or was refused: nothing can be concluded

Everything here is pure: the reads are made by ``treasury.execution.reconcile``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from treasury.errors import ExchangeError, NotFound, OperationNotPermitted

LOOKBACK = timedelta(minutes=5)
LOOKAHEAD = timedelta(minutes=1)  # the exchange's clock may run a little ahead of ours
FAILED_STATUSES = frozenset({"failed", "return", "rejected"})


@dataclass(frozen=True)
class Found:
    order_id: str | None
    data: dict[str, Any]
    source: str
    failed: bool = False  # the exchange has it, in a definitely failed state

    kind = "FOUND"


@dataclass(frozen=True)
class Absent:
    sources: tuple[str, ...]

    kind = "ABSENT"


@dataclass(frozen=True)
class Inconclusive:
    reason: str
    final: bool = False  # no later lookup can decide either: a person must, once it has settled

    kind = "INCONCLUSIVE"


Verdict = Found | Absent | Inconclusive
Answer = Any  # the JSON a read returned, or the exception it raised


@dataclass(frozen=True)
class Lookup:
    """One read: the registry operation and its parameters; ``source`` names it in verdicts."""

    source: str
    operation: str
    params: dict[str, Any]


def window(sent_at: datetime | None, now: datetime) -> dict[str, int]:
    """``startTime``/``endTime`` (ms) around a send: 5 minutes before it to a minute after now."""
    start = (sent_at or now) - LOOKBACK
    return {"startTime": _ms(start), "endTime": _ms(now + LOOKAHEAD)}


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def rows(data: Any) -> list[dict[str, Any]] | None:
    """The list of rows in a history answer (a bare array, or one under a common key)."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    if isinstance(data, dict):
        for key in ("rows", "data", "result", "list"):
            if isinstance(data.get(key), list):
                return [r for r in data[key] if isinstance(r, dict)]
    return None


def order_id(row: Mapping[str, Any]) -> str | None:
    """The exchange's id in a history row (``orderId``, ``id`` or ``withdrawOrderId``)."""
    for key in ("orderId", "id", "withdrawOrderId"):
        value = row.get(key)
        if value not in (None, "", "0"):
            return str(value)
    return None


def failure(what: str, answer: BaseException) -> Inconclusive:
    """INCONCLUSIVE for a read that raised, saying how it failed."""
    if isinstance(answer, OperationNotPermitted):
        return Inconclusive(f"the {what} lookup was refused: the key lacks read permission")
    if isinstance(answer, ExchangeError):
        detail = f"HTTP {answer.status}" if answer.status else type(answer).__name__
        if answer.code:
            detail += f", code {answer.code}"
        return Inconclusive(f"the {what} lookup failed ({detail})")
    return Inconclusive(f"the {what} lookup failed ({type(answer).__name__}: {answer})")


def match(client_id: str, answer: Answer, source: str) -> Verdict:
    """FOUND/ABSENT from a history answer, matching ``clientOrderId`` here as well."""
    if isinstance(answer, BaseException):
        return failure(source, answer)
    found = rows(answer)
    if found is None:
        return Inconclusive(f"the {source} lookup returned an answer that is not a list of rows")
    for row in found:
        if str(row.get("clientOrderId", "")) == client_id:
            status = str(row.get("status", "")).lower()
            return Found(order_id(row), dict(row), source, failed=status in FAILED_STATUSES)
    return Absent((source,))


def history(source: str, operation: str, extra: Mapping[str, Any], client_id: str,
            sent_at: datetime | None, now: datetime) -> Lookup:
    """A history read by client id over the window around the send (at most 100 rows)."""
    return Lookup(source, operation, {**extra, "clientOrderId": client_id, **window(sent_at, now), "limit": 100})


# --------------------------------------------------------------------------- spot orders


def order_verdict(client_id: str, answer: Answer) -> Verdict:
    """Verdict from ``GET /spot/order?origClientOrderId=``: ``0211`` means ABSENT."""
    if isinstance(answer, NotFound):
        return Absent(("order",))
    if isinstance(answer, BaseException):
        return failure("order", answer)
    if not isinstance(answer, dict):
        return Inconclusive("the order lookup returned something other than an order")
    if str(answer.get("clientOrderId", "")) != client_id:
        return Inconclusive(
            f"the order lookup returned an order with client id {answer.get('clientOrderId')!r}, "
            f"not {client_id!r}"
        )
    return Found(order_id(answer), dict(answer), "order", failed=False)


class OrderLookup:
    """A spot order (or one leg of a batch): ``GET /api/v1/spot/order?origClientOrderId=``."""

    def plan(self, client_id: str, params: Mapping[str, Any], *, sent_at: datetime | None,
             now: datetime, fund_statement: bool) -> list[Lookup]:
        return [Lookup("order", "order", {"origClientOrderId": client_id})]

    def verdict(self, client_id: str, answers: Mapping[str, Answer], *, params: Mapping[str, Any],
                noted: Mapping[str, Any] | None, fund_statement: bool) -> Verdict:
        return order_verdict(client_id, answers.get("order"))
