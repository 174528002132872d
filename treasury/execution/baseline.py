"""Balances noted before a transfer that no lookup could find afterwards.

HashKey answers "did transfer X happen?" only through the fund statement (``balanceFlow``
with the client id), and only a master account's master key may read it. For any other key
(``fund_statement: false`` in keys.yaml) the runner notes both accounts' totals of the coin
just before the first send. If the answer is then lost, reconciliation reads them again and
shows the change to the person who must decide.

The change is evidence, never proof: a deposit, a trade or another transfer on the same
accounts can fake it or hide it. So it never re-sends and never settles a transfer by itself;
it only tells the person what the balances did. Which balances, and what their change
means, the operation declares (``OperationSpec.baseline``; a transfer's in
``treasury.operations.asset_transfer``).
"""

from __future__ import annotations

from typing import Any

from treasury.audit.events import EXECUTION_BASELINE
from treasury.errors import Banned, ExchangeHalted, RateLimited, TreasuryError
from treasury.execution.context import StepContext
from treasury.execution.outcomes import error_text
from treasury.execution.records import ExecRecord
from treasury.keys import KeyProfile
from treasury.operations.balances import total_of
from treasury.operations.spec import OperationSpec


def needed(spec: OperationSpec, profile: KeyProfile, rec: ExecRecord) -> bool:
    """An operation that takes a baseline, sent with a key that cannot read the fund statement,
    with no baseline yet."""
    return spec.baseline is not None and not profile.fund_statement and rec.baseline is None


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
    declared = ctx.spec.baseline
    if declared is None:
        raise ValueError(f"operation {ctx.spec.name!r} declares no baseline")
    coin = declared.coin(rec.params)
    totals, errors = _read_totals(ctx, coin, declared.accounts(rec.params))
    baseline: dict[str, Any] = {"coin": coin, "at": ctx.svc.clock.now().isoformat(), "totals": totals}
    if errors:
        baseline["errors"] = errors
    (fresh,) = ctx.commit([(rec, {"baseline": baseline})],
                          events=[(EXECUTION_BASELINE, {"client_id": rec.client_id, **baseline})])
    return fresh
