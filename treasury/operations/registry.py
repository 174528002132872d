"""The operation registry: every HashKey operation's declaration, collected by name.

Each money-moving operation declares itself in its own module (``asset_transfer``,
``withdraw``, ``fiat_withdraw``, ``spot_order``, ``batch_orders``,
``whitelist_wallet_signing``); the reads and cancels are in ``reads``. What a declaration
holds is described in ``treasury.operations.spec``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from treasury.errors import ParameterError, UnknownOperation
from treasury.operations import (
    asset_transfer,
    batch_orders,
    fiat_withdraw,
    reads,
    spot_order,
    whitelist_wallet_signing,
    withdraw,
)
from treasury.operations import params as p
from treasury.operations.spec import OperationSpec

__all__ = ["REGISTRY", "OperationSpec", "get_operation", "operations", "param_problems", "parse_params"]

_OPERATIONS: tuple[OperationSpec, ...] = (
    *reads.READS,
    whitelist_wallet_signing.SPEC,
    asset_transfer.SPEC,
    withdraw.SPEC,
    fiat_withdraw.SPEC,
    spot_order.SPEC,
    batch_orders.SPEC,
    *reads.CANCELS,
)

REGISTRY: Mapping[str, OperationSpec] = {op.name: op for op in _OPERATIONS}


def get_operation(name: str) -> OperationSpec:
    """Look an operation up by name.

    Raises:
        UnknownOperation: listing the known names.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOperation(name, list(REGISTRY)) from None


def operations() -> Iterator[OperationSpec]:
    return iter(_OPERATIONS)


def param_problems(spec: OperationSpec, raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem with ``raw`` as (parameter path, message); empty when valid."""
    try:
        spec.params_model.model_validate(dict(raw))
    except ValidationError as exc:
        return _problems(spec, exc)
    return []


def _problems(spec: OperationSpec, exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(parameters)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown parameter for {spec.name}"
        elif err["type"] == "missing":
            msg = f"required by {spec.name}"
        out.append((loc, msg))
    return out


def parse_params(spec: OperationSpec, raw: Mapping[str, Any]) -> p.Params:
    """Validate parameters for ``spec`` into its typed model.

    Raises:
        ParameterError: naming the first bad parameter (all problems are in the message).
    """
    try:
        return spec.params_model.model_validate(dict(raw))
    except ValidationError as exc:
        problems = _problems(spec, exc)
    first = problems[0][0]
    detail = "; ".join(f"{loc}: {msg}" for loc, msg in problems)
    raise ParameterError(first, f"is invalid for {spec.name}: {detail}")
