"""What a step moves, read from its parameters by the operation's own declaration.

Each money-moving operation declares its movements (``OperationSpec.money``, in its module
under ``treasury.operations``): which parameter is the asset, the amount, the account and
the destination. Batch orders count as one spot-order movement per symbol with the summed
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
from treasury.operations.registry import REGISTRY

__all__ = ["Movement", "Resolvable", "default_resolvable", "movements", "normalize_destination"]


def movements(
    op: str,
    params: Mapping[str, Any],
    *,
    account: str | None = None,
    resolvable: Resolvable | None = None,
) -> list[Movement]:
    """The movements of one step; empty for operations the policy does not measure.

    ``account`` is the key profile's account, for operations whose parameters name none.
    """
    spec = REGISTRY.get(op)
    if spec is None or spec.money is None:
        return []
    return spec.money.movements(params, account=account, resolvable=resolvable)
