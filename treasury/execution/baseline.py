"""Balances noted before a transfer that no lookup could find afterwards.

HashKey answers "did transfer X happen?" only through the fund statement (``balanceFlow``
with the client id), and only a master account's master key may read it. For any other key
(``fund_statement: false`` in keys.yaml) the runner notes both accounts' totals of the coin
just before the first send. If the answer is then lost, reconciliation reads them again and
shows the change to the person who must decide.

The change is evidence, never proof: a deposit, a trade or another transfer on the same
accounts can fake it or hide it. So it never re-sends and never settles a transfer by itself;
it only tells the person what the balances did (see ``reconcile.balance_verdict``).

Everything here except :func:`take` is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from treasury.audit.events import EXECUTION_BASELINE
from treasury.errors import Banned, ExchangeHalted, RateLimited, TreasuryError
from treasury.execution.context import StepContext
from treasury.execution.outcomes import error_text
from treasury.execution.records import ExecRecord
from treasury.keys import KeyProfile
from treasury.operations.registry import OperationSpec


def needed(spec: OperationSpec, profile: KeyProfile, rec: ExecRecord) -> bool:
    """A transfer sent with a key that cannot read the fund statement, with no baseline yet."""
    return spec.lookup == "transfer" and not profile.fund_statement and rec.baseline is None


def accounts(params: Mapping[str, Any]) -> tuple[str, str]:
    """The transfer's (from, to) account ids."""
    return str(params.get("fromAccountId", "")), str(params.get("toAccountId", ""))


def total_of(answer: Any, coin: str) -> Decimal | None:
    """The ``total`` of ``coin`` in a ``GET /api/v1/account`` answer (0 when the coin is not
    listed), or None when the answer is not a balances answer or the figure is unreadable."""
    rows = answer.get("balances") if isinstance(answer, dict) else None
    if not isinstance(rows, list):
        return None
    for row in rows:
        if isinstance(row, dict) and coin in (row.get("asset"), row.get("assetId")):
            try:
                return Decimal(str(row.get("total")))
            except (InvalidOperation, ValueError):
                return None
    return Decimal(0)


def _read_totals(ctx: StepContext, coin: str, ids: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """Each account's total of ``coin`` (as strings) and, for the ones that failed, why.

    Raises:
        ExchangeHalted, Banned, RateLimited: traffic is stopped; nothing may be read now.
    """
    totals: dict[str, str] = {}
    errors: dict[str, str] = {}
    for account in ids:
        try:
            answer = ctx.read("balances", {"accountId": account})
        except (ExchangeHalted, Banned, RateLimited):
            raise
        except TreasuryError as exc:
            errors[account] = error_text(exc)
            continue
        total = total_of(answer, coin)
        if total is None:
            errors[account] = "the balances answer could not be read"
        else:
            totals[account] = str(total)
    return totals, errors


def take(ctx: StepContext, rec: ExecRecord) -> ExecRecord:
    """Read and commit the baseline of ``rec`` (audited as ``execution.baseline``).

    A failed read is noted in the baseline rather than stopping the transfer: the baseline
    only ever informs a person, and its absence is said plainly when it matters.

    Raises:
        ExchangeHalted, Banned, RateLimited: traffic is stopped; the record is unchanged.
        LeaseLost: another worker took the record over.
    """
    coin = str(rec.params.get("coin", ""))
    totals, errors = _read_totals(ctx, coin, tuple(dict.fromkeys(accounts(rec.params))))
    baseline: dict[str, Any] = {"coin": coin, "at": ctx.svc.clock.now().isoformat(), "totals": totals}
    if errors:
        baseline["errors"] = errors
    (fresh,) = ctx.commit([(rec, {"baseline": baseline})],
                          events=[(EXECUTION_BASELINE, {"client_id": rec.client_id, **baseline})])
    return fresh


def describe(params: Mapping[str, Any], baseline: Mapping[str, Any] | None, now: Mapping[str, Any]) -> str:
    """What the balances did since the baseline, in words, and whether that fits the transfer.

    ``now`` is account id -> total (a string or Decimal), or an error text for a failed read.
    """
    source, target = accounts(params)
    coin = str(params.get("coin", ""))
    try:
        quantity = Decimal(str(params.get("quantity")))
    except (InvalidOperation, ValueError):
        quantity = None
    if not baseline or not isinstance(baseline.get("totals"), dict):
        return "no balances were noted before sending, so there is nothing to compare"
    before = baseline["totals"]
    parts: list[str] = []
    deltas: dict[str, Decimal] = {}
    for account in dict.fromkeys((source, target)):
        was, is_ = before.get(account), now.get(account)
        if was is None:
            parts.append(f"{account}: not noted before sending")
            continue
        try:
            delta = Decimal(str(is_)) - Decimal(str(was))
        except (InvalidOperation, ValueError):
            parts.append(f"{account}: {coin} {was} before, now unreadable ({is_})")
            continue
        deltas[account] = delta
        parts.append(f"{account}: {coin} {was} -> {is_} ({delta:+f})")
    text = "balances since before sending: " + "; ".join(parts)
    if quantity is None or set(deltas) != {source, target} or source == target:
        return text + "; this cannot be compared with the transfer"
    if deltas[source] == -quantity and deltas[target] == quantity:
        verdict = f"both moved by exactly {quantity}, as this transfer would make them"
    elif deltas[source] == 0 and deltas[target] == 0:
        verdict = "neither moved, as if this transfer had not happened"
    else:
        verdict = f"the change does not match a transfer of {quantity}: other activity moved these accounts"
    return (f"{text}; {verdict}. Balances are evidence, not proof (other movements on the same "
            "accounts can fake or hide a transfer): check the accounts' history before deciding")
