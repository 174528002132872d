"""The operation registry: every HashKey operation's declaration, collected by name.

Each operation that moves money (or changes the whitelist) declares itself as ``SPEC`` in its
own module of this package (``asset_transfer``, ``withdraw``, ``fiat_withdraw``, ``spot_order``,
``batch_orders``, ``whitelist_wallet_signing``…); the registry finds those modules, so adding
an operation touches only its module. The reads and cancels are in ``reads``. What a
declaration holds is described in ``treasury.operations.spec``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

import treasury.operations as _package
from treasury.errors import ParameterError, UnknownOperation
from treasury.operations import params as p
from treasury.operations import reads
from treasury.operations.spec import OperationSpec

__all__ = ["REGISTRY", "OperationSpec", "get_operation", "operations", "param_problems", "parse_params"]

# the order of ``treasury ops``: the reads, these writes, any other operation module's (by
# module name), then the cancels
LISTED = ("whitelist_wallet_signing", "asset_transfer", "withdraw", "fiat_withdraw", "spot_order", "batch_orders")


def _declared() -> list[OperationSpec]:
    """The ``SPEC`` of every module of this package that declares one."""
    found: dict[str, OperationSpec] = {}
    for module in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
        if module.name == __name__.rpartition(".")[2]:
            continue
        spec = getattr(importlib.import_module(f"{_package.__name__}.{module.name}"), "SPEC", None)
        if isinstance(spec, OperationSpec):
            found[module.name] = spec
    listed = [found.pop(name) for name in LISTED]
    return [*listed, *found.values()]


_OPERATIONS: tuple[OperationSpec, ...] = (*reads.READS, *_declared(), *reads.CANCELS)

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
