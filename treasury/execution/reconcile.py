"""Reconciliation: did a request whose answer was lost happen on the exchange?

Each money-moving operation declares its reconciliation (``OperationSpec.reconcile``): a
*plan* (which reads to make for a client id) and a pure *verdict* on their answers::

    FOUND(order id, row)    the exchange has it: the step succeeded (or, for a fiat or VA
                            withdrawal row marked failed, definitely failed)
    ABSENT(sources)         every lookup says it is not there; ``sources`` names them
    INCONCLUSIVE(reason)    a lookup failed or was refused: nothing can be concluded

The plans and verdicts are in the operations' own modules (reference/hashkey-pro-api.md
section 7 for the reads); this module makes the reads through a caller-supplied function
(the executor applies the read retry policy and the audit trail there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from treasury.errors import Banned, ExchangeHalted, TreasuryError
from treasury.models import Permission
from treasury.operations.asset_transfer import balance_verdict, transfer_verdict
from treasury.operations.fiat_withdraw import fiat_verdict
from treasury.operations.lookups import Absent, Answer, Found, Inconclusive, Lookup, Verdict, order_verdict
from treasury.operations.spec import OperationSpec, Reconciliation
from treasury.operations.withdraw import withdraw_verdict

__all__ = [
    "Absent", "Answer", "Found", "Inconclusive", "Lookup", "Verdict", "balance_verdict", "fiat_verdict",
    "order_verdict", "plan", "run_lookups", "transfer_verdict", "verdict_dict", "verdict_for",
    "withdraw_verdict",
]


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    """A JSON-ready description for the audit log."""
    if isinstance(verdict, Found):
        return {"verdict": "FOUND", "order_id": verdict.order_id, "source": verdict.source,
                "failed": verdict.failed, "row": verdict.data}
    if isinstance(verdict, Absent):
        return {"verdict": "ABSENT", "sources": list(verdict.sources)}
    return {"verdict": "INCONCLUSIVE", "reason": verdict.reason, "final": verdict.final}


def _reconciliation(spec: OperationSpec) -> Reconciliation:
    if spec.reconcile is None:
        raise ValueError(f"operation {spec.name!r} declares no reconciliation lookup")
    return spec.reconcile


def plan(
    spec: OperationSpec, client_id: str, params: Mapping[str, Any], *, sent_at: datetime | None,
    now: datetime, fund_statement: bool = True,
) -> list[Lookup]:
    """The reads that find ``client_id`` for operation ``spec``.

    ``fund_statement`` False (the key may not read balanceFlow) turns a transfer's lookup into
    reads of both accounts' balances.

    Raises:
        ValueError: the operation declares no reconciliation.
    """
    return _reconciliation(spec).plan(client_id, params, sent_at=sent_at, now=now,
                                      fund_statement=fund_statement)


def verdict_for(
    spec: OperationSpec, client_id: str, answers: Mapping[str, Answer], *,
    params: Mapping[str, Any] | None = None, noted: Mapping[str, Any] | None = None,
    fund_statement: bool = True,
) -> Verdict:
    """Combine the answers of :func:`plan`'s reads (keyed by ``Lookup.source``).

    ``params`` and ``noted`` (the record's baseline) serve a transfer whose key cannot read
    the fund statement (``fund_statement`` False).

    Raises:
        ValueError: the operation declares no reconciliation.
    """
    return _reconciliation(spec).verdict(client_id, answers, params=params or {}, noted=noted,
                                         fund_statement=fund_statement)


# --------------------------------------------------------------------------- doing it


ReadFn = Callable[[Lookup], Any]


def run_lookups(
    spec: OperationSpec,
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
    for lookup in plan(spec, client_id, params, sent_at=sent_at, now=now, fund_statement=fund_statement):
        try:
            answer: Answer = read(lookup)
        except (ExchangeHalted, Banned):
            raise  # nothing may be sent now: the caller stops and comes back later
        except TreasuryError as exc:
            answer = exc
        answers[lookup.source] = answer
        if on_lookup is not None:
            on_lookup(lookup, answer)
    return verdict_for(spec, client_id, answers, params=params, noted=noted, fund_statement=fund_statement)
