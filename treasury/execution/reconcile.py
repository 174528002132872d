"""Reconciliation: did a request whose answer was lost happen on the exchange?

For each lookup kind of the operation registry there is a *plan* (which reads to make for a
client id) and a pure *verdict* function (what those answers prove)::

    FOUND(order id, row)    the exchange has it: the step succeeded (or, for a fiat or VA
                            withdrawal row marked failed, definitely failed)
    ABSENT(sources)         every lookup says it is not there; ``sources`` names them
    INCONCLUSIVE(reason)    a lookup failed or was refused: nothing can be concluded

The reads themselves are done by :func:`run_lookups` through a caller-supplied function
(the executor applies the read retry policy and the audit trail there), so everything in
this module except that one function is pure and tested from plain answers.

Lookup plans (reference/hashkey-pro-api.md section 7):

- ``order`` / ``batch_orders`` (per leg): ``GET /api/v1/spot/order?origClientOrderId=``;
  ``0211`` (order not found) is ABSENT.
- ``transfer``: ``balanceFlow type=transfer clientOrderId=`` over sent_at - 5 min .. now.
  A key that may not read the fund statement (``fund_statement: false``: only a master
  account's master key may) reads both accounts' balances instead. That is a final
  INCONCLUSIVE: balances are too weak to prove anything while other movements touch the same
  accounts, so the change since the baseline noted before sending goes to a person as evidence.
- ``withdraw``: ``withdrawOrders`` filtered by clientOrderId (and matched again here) **and**
  ``balanceFlow type=withdraw clientOrderId=``. FOUND if either has it; ABSENT only if both
  say absent (two independent reads, because an unproven absence would mean a second
  withdrawal); INCONCLUSIVE otherwise.
- ``fiat_withdraw``: ``fiat/history type=withdraw clientOrderId=``; any status is FOUND
  (``failed`` makes the record FAILED).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from treasury.errors import (
    Banned,
    ExchangeError,
    ExchangeHalted,
    ExchangePermissionDenied,
    NotFound,
    OperationNotPermitted,
    TreasuryError,
)
from treasury.execution import baseline
from treasury.models import Permission

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


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    """A JSON-ready description for the audit log."""
    if isinstance(verdict, Found):
        return {"verdict": "FOUND", "order_id": verdict.order_id, "source": verdict.source,
                "failed": verdict.failed, "row": verdict.data}
    if isinstance(verdict, Absent):
        return {"verdict": "ABSENT", "sources": list(verdict.sources)}
    return {"verdict": "INCONCLUSIVE", "reason": verdict.reason, "final": verdict.final}


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Lookup:
    """One read: the registry operation and its parameters; ``source`` names it in verdicts."""

    source: str
    operation: str
    params: dict[str, Any]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _window(sent_at: datetime | None, now: datetime) -> dict[str, int]:
    start = (sent_at or now) - LOOKBACK
    return {"startTime": _ms(start), "endTime": _ms(now + LOOKAHEAD)}


def plan(
    kind: str, client_id: str, params: Mapping[str, Any], *, sent_at: datetime | None, now: datetime,
    fund_statement: bool = True,
) -> list[Lookup]:
    """The reads that find ``client_id`` for a lookup ``kind`` of the registry.

    ``fund_statement`` False (the key may not read balanceFlow) turns a transfer's lookup into
    reads of both accounts' balances, for :func:`balance_verdict`.

    Raises:
        ValueError: an unknown lookup kind (a registry entry this module does not know).
    """
    if kind in ("order", "batch_orders"):
        return [Lookup("order", "order", {"origClientOrderId": client_id})]
    if kind == "transfer" and not fund_statement:
        return [Lookup(f"balances:{account}", "balances", {"accountId": account})
                for account in dict.fromkeys(baseline.accounts(params))]
    window = _window(sent_at, now)
    if kind == "transfer":
        return [Lookup("balance_flow", "balance_flow",
                       {"type": "transfer", "clientOrderId": client_id, **window, "limit": 100})]
    if kind == "withdraw":
        orders: dict[str, Any] = {"clientOrderId": client_id, **window, "limit": 100}
        if params.get("coin"):
            orders["coin"] = params["coin"]
        return [
            Lookup("withdraw_orders", "withdraw_orders", orders),
            Lookup("balance_flow", "balance_flow",
                   {"type": "withdraw", "clientOrderId": client_id, **window, "limit": 100}),
        ]
    if kind == "fiat_withdraw":
        return [Lookup("fiat_history", "fiat_history",
                       {"type": "withdraw", "clientOrderId": client_id, **window, "limit": 100})]
    raise ValueError(f"no reconciliation lookup for kind {kind!r}")


# --------------------------------------------------------------------------- verdicts

Answer = Any  # the JSON a read returned, or the exception it raised


def _rows(data: Any) -> list[dict[str, Any]] | None:
    """The list of rows in a history answer (a bare array, or one under a common key)."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    if isinstance(data, dict):
        for key in ("rows", "data", "result", "list"):
            if isinstance(data.get(key), list):
                return [r for r in data[key] if isinstance(r, dict)]
    return None


def _order_id(row: Mapping[str, Any]) -> str | None:
    for key in ("orderId", "id", "withdrawOrderId"):
        value = row.get(key)
        if value not in (None, "", "0"):
            return str(value)
    return None


def _failure(what: str, answer: BaseException) -> Inconclusive:
    if isinstance(answer, OperationNotPermitted):
        return Inconclusive(f"the {what} lookup was refused: the key lacks read permission")
    if isinstance(answer, ExchangeError):
        detail = f"HTTP {answer.status}" if answer.status else type(answer).__name__
        if answer.code:
            detail += f", code {answer.code}"
        return Inconclusive(f"the {what} lookup failed ({detail})")
    return Inconclusive(f"the {what} lookup failed ({type(answer).__name__}: {answer})")


def _match(client_id: str, answer: Answer, source: str) -> Verdict:
    """FOUND/ABSENT from a history answer, matching ``clientOrderId`` here as well."""
    if isinstance(answer, BaseException):
        return _failure(source, answer)
    rows = _rows(answer)
    if rows is None:
        return Inconclusive(f"the {source} lookup returned an answer that is not a list of rows")
    for row in rows:
        if str(row.get("clientOrderId", "")) == client_id:
            status = str(row.get("status", "")).lower()
            return Found(_order_id(row), dict(row), source, failed=status in FAILED_STATUSES)
    return Absent((source,))


def order_verdict(client_id: str, answer: Answer) -> Verdict:
    """Verdict from ``GET /spot/order?origClientOrderId=``: ``0211`` means ABSENT."""
    if isinstance(answer, NotFound):
        return Absent(("order",))
    if isinstance(answer, BaseException):
        return _failure("order", answer)
    if not isinstance(answer, dict):
        return Inconclusive("the order lookup returned something other than an order")
    if str(answer.get("clientOrderId", "")) != client_id:
        return Inconclusive(
            f"the order lookup returned an order with client id {answer.get('clientOrderId')!r}, "
            f"not {client_id!r}"
        )
    return Found(_order_id(answer), dict(answer), "order", failed=False)


def transfer_verdict(client_id: str, answer: Answer) -> Verdict:
    """Verdict from ``balanceFlow type=transfer``."""
    verdict = _match(client_id, answer, "balance_flow")
    if isinstance(verdict, Inconclusive) and isinstance(answer, OperationNotPermitted | ExchangeError):
        hint = ""
        if isinstance(answer, ExchangePermissionDenied):
            hint = ("; HashKey lets only a master account's master key read it: if this key is not one, "
                    "set fund_statement: false on its profile in keys.yaml, so that both accounts' "
                    "balances are noted before each transfer")
        return Inconclusive(
            verdict.reason + "; the fund statement is the only exact record of a transfer "
            "(balance changes cannot prove it while other transfers move the same accounts)" + hint
        )
    return verdict


def balance_verdict(
    params: Mapping[str, Any], noted: Mapping[str, Any] | None, answers: Mapping[str, Answer]
) -> Verdict:
    """For a transfer whose key cannot read the fund statement: never FOUND nor ABSENT (balances
    prove neither), but a final INCONCLUSIVE that tells a person what the balances did."""
    coin = str(params.get("coin", ""))
    now: dict[str, Any] = {}
    for source, answer in answers.items():
        account = source.split(":", 1)[1]
        if isinstance(answer, BaseException):
            now[account] = _failure(f"balances of {account}", answer).reason
        else:
            total = baseline.total_of(answer, coin)
            now[account] = total if total is not None else "an unreadable answer"
    return Inconclusive(
        "the key cannot read the fund statement (fund_statement: false in keys.yaml), so the "
        "transfer cannot be looked up by its client id; " + baseline.describe(params, noted, now),
        final=True,
    )


def withdraw_verdict(client_id: str, orders_answer: Answer, flow_answer: Answer) -> Verdict:
    """Verdict from ``withdrawOrders`` and ``balanceFlow type=withdraw`` together.

    FOUND when either read has the client id; ABSENT only when both say absent.
    """
    by_orders = _match(client_id, orders_answer, "withdraw_orders")
    by_flow = _match(client_id, flow_answer, "balance_flow")
    for verdict in (by_orders, by_flow):
        if isinstance(verdict, Found):
            return verdict
    if isinstance(by_orders, Absent) and isinstance(by_flow, Absent):
        return Absent(by_orders.sources + by_flow.sources)
    reasons = [v.reason for v in (by_orders, by_flow) if isinstance(v, Inconclusive)]
    return Inconclusive("; ".join(reasons))


def fiat_verdict(client_id: str, answer: Answer) -> Verdict:
    """Verdict from ``fiat/history type=withdraw``: any status is FOUND; ``failed`` is a failure."""
    return _match(client_id, answer, "fiat_history")


def verdict_for(
    kind: str, client_id: str, answers: Mapping[str, Answer], *,
    params: Mapping[str, Any] | None = None, noted: Mapping[str, Any] | None = None,
    fund_statement: bool = True,
) -> Verdict:
    """Combine the answers of :func:`plan`'s reads (keyed by ``Lookup.source``).

    ``params`` and ``noted`` (the record's baseline) serve a transfer whose key cannot read
    the fund statement (``fund_statement`` False).
    """
    if kind == "transfer" and not fund_statement:
        return balance_verdict(params or {}, noted, answers)
    if kind in ("order", "batch_orders"):
        return order_verdict(client_id, answers.get("order"))
    if kind == "transfer":
        return transfer_verdict(client_id, answers.get("balance_flow"))
    if kind == "withdraw":
        return withdraw_verdict(client_id, answers.get("withdraw_orders"), answers.get("balance_flow"))
    if kind == "fiat_withdraw":
        return fiat_verdict(client_id, answers.get("fiat_history"))
    raise ValueError(f"no reconciliation lookup for kind {kind!r}")


# --------------------------------------------------------------------------- doing it


ReadFn = Callable[[Lookup], Any]


def run_lookups(
    kind: str,
    client_id: str,
    params: Mapping[str, Any],
    *,
    sent_at: datetime | None,
    now: datetime,
    read: ReadFn,
    permissions: Iterable[Permission],
    on_lookup: Callable[[Lookup, Answer], None] | None = None,
    fund_statement: bool = True,
    noted: Mapping[str, Any] | None = None,
) -> Verdict:
    """Make the reads for ``client_id`` and return the verdict.

    ``read`` does one read (with its retry policy) and returns the JSON or raises; every
    exception of the treasury tree becomes an answer, so a failed read yields INCONCLUSIVE
    rather than an error. ``on_lookup`` sees each read and its answer (for the audit log).

    Raises:
        ExchangeHalted, Banned: traffic is stopped; no verdict can be had now.
    """
    if Permission.READ not in set(permissions):
        return Inconclusive("the step's key profile lacks the read permission, so nothing can be looked up")
    answers: dict[str, Answer] = {}
    for lookup in plan(kind, client_id, params, sent_at=sent_at, now=now, fund_statement=fund_statement):
        try:
            answer: Answer = read(lookup)
        except (ExchangeHalted, Banned):
            raise  # nothing may be sent now: the caller stops and comes back later
        except TreasuryError as exc:
            answer = exc
        answers[lookup.source] = answer
        if on_lookup is not None:
            on_lookup(lookup, answer)
    return verdict_for(kind, client_id, answers, params=params, noted=noted, fund_statement=fund_statement)
