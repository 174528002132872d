"""Canonical JSON and the Decimal-to-JSON conversion: the one byte form every digest is taken of.

One serialiser, :func:`canonical_json`: sorted keys, no whitespace, UTF-8 text kept as is, and
no NaN or infinity. Audit hashes, approval digests, signed decision documents, the people
registry's digest and an execution leg's ``params_digest`` are all computed over its output.

Decimals have two written forms, and stored digests depend on both, so both stay:

- *as written* (:func:`plain_decimal`, ``format(d, "f")``: ``Decimal("1.50")`` stays ``"1.50"``):
  audit event payloads (their hashes are in the chain) and JSON printed by the CLI;
- *normalised* (:func:`treasury.models.format_amount`: ``"1.5"``, ``"100"``): stored run
  inputs, approval digests and decision documents, so that ``1.50`` and ``1.5`` approve the
  same thing.

:func:`to_jsonable` walks a value into plain JSON values with either form;
``canonical_json(value, amounts=format_amount)`` converts on the way (the approval form).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from pydantic import SecretBytes, SecretStr

from treasury.errors import ParameterError
from treasury.models import format_amount

REDACTED = "[redacted]"
DecimalForm = Callable[[Decimal], str]


def plain_decimal(value: Decimal) -> str:
    """A Decimal as written: plain digits, no exponent, trailing zeros kept (``"1.50"``)."""
    return format(value, "f")


def to_jsonable(value: Any, path: str = "payload", *, amounts: DecimalForm = plain_decimal,
                utc: bool = True, strict: bool = True) -> Any:
    """Convert ``value`` to plain JSON values (dict, list, str, int, float, bool, None).

    Decimals become strings through ``amounts`` (never floats or exponents), datetimes ISO 8601
    (aware ones in UTC unless ``utc`` is False, which keeps their offset), enums their value,
    sets sorted lists, pydantic secrets ``"[redacted]"``. Raises ParameterError naming the path
    of a value that has no JSON form (NaN or infinite floats, bytes, arbitrary objects); with
    ``strict`` False such a value is returned as it is (display code prints it as text).
    """
    kw: dict[str, Any] = {"amounts": amounts, "utc": utc, "strict": strict}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if strict and (value != value or value in (float("inf"), float("-inf"))):
            raise ParameterError(path, "is not a finite number; use a Decimal string for amounts")
        return value
    if isinstance(value, Decimal):
        return amounts(value)
    if isinstance(value, datetime):
        if utc and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_jsonable(value.value, path, **kw)
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, UUID | PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, f"{path}.{k}", **kw) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{path}[{i}]", **kw) for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v, f"{path}[]", **kw) for v in value]
        return sorted(items, key=canonical_json if strict else str)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model: its JSON mode masks SecretStr fields
        return to_jsonable(dump(mode="json"), path, **kw)
    if not strict:
        return value
    raise ParameterError(path, f"has type {type(value).__name__}, which has no JSON form")


def inputs_json(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Run inputs as stored: Decimals become normalised strings (``"1.5"``), also inside list
    inputs; the rest is already JSON."""
    return {k: _stored(v) for k, v in inputs.items()}


def _stored(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, list):
        return [_stored(v) for v in value]
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    return value


def canonical_json(value: Any, *, amounts: DecimalForm | None = None) -> str:
    """Serialise canonically: sorted keys, no spaces, non-ASCII kept as is, no NaN/infinity.

    Without ``amounts`` the value must already be plain JSON values (``TypeError`` otherwise).
    With it, Decimals are written through ``amounts``, datetimes as ``isoformat()`` (offset
    kept) and sets as sorted lists on the way: the form approval digests and decision
    documents have always been hashed in.

    Raises:
        TypeError: a value with no JSON form.
        ValueError: a NaN or infinite float.
    """
    default = None if amounts is None else _converter(amounts)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=default)


def _converter(amounts: DecimalForm) -> Callable[[Any], Any]:
    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return amounts(obj)
        if isinstance(obj, datetime):
            return obj.isoformat()
        if isinstance(obj, set | frozenset):
            return sorted(obj)
        raise TypeError(f"not serialisable: {type(obj).__name__}")

    return default
