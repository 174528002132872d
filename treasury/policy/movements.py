"""What a step moves, read from its parameters by the operation's own declaration.

Each money-moving operation declares its movements (``OperationSpec.money``, in its module
under ``treasury.operations``): which parameter is the asset, the amount, the account and
the destination. Where a step's parameters are final (the reservation, the re-check before a
later send) the policy reads the validated model the client sends, never parsing it again;
before that (validation, run start, dry-run) it reads the raw, template-aware parameters.
Batch orders count as one spot-order movement per symbol with the summed
notional (so a batch cannot split its way under a limit). Any other operation moves
nothing the policy measures.

A value is *unknown* while it is an unresolved template (a string containing ``${{``, or
whatever the caller's ``resolvable`` predicate rejects). Unknown is not the same as
absent or malformed: unknown values skip a rule before run time, bad ones deny it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from treasury.operations.movement import Movement, Resolvable, default_resolvable, normalize_destination
from treasury.operations.params import Params
from treasury.operations.registry import REGISTRY

__all__ = ["Movement", "Resolvable", "default_resolvable", "movements", "normalize_destination"]


def movements(
    op: str,
    params: Mapping[str, Any] | Params,
    *,
    account: str | None = None,
    resolvable: Resolvable | None = None,
) -> list[Movement]:
    """The movements of one step; empty for operations the policy does not measure.

    ``params`` is the step's validated model (read as it is: its amounts are already
    ``Decimal``) or its raw parameters (read template-aware, with ``resolvable``).
    ``account`` is the key profile's account, for operations whose parameters name none.
    """
    spec = REGISTRY.get(op)
    if spec is None or spec.money is None:
        return []
    if isinstance(params, Params):
        return spec.money.from_model(params, account=account)
    return spec.money.movements(params, account=account, resolvable=resolvable)
