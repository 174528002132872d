"""Canonical JSON: the one byte form that audit hashes are computed over.

An event's payload is converted to plain JSON values (``Decimal`` to a plain decimal string,
``datetime`` to ISO 8601, enums to their value, secrets masked), then serialised with sorted
keys, no whitespace and UTF-8 text. The same text is stored in the ``payload`` column, so a
verifier can hash what it reads without re-encoding it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from pydantic import SecretBytes, SecretStr

from treasury.errors import ParameterError

REDACTED = "[redacted]"


def to_jsonable(value: Any, path: str = "payload") -> Any:
    """Convert ``value`` to plain JSON values (dict, list, str, int, float, bool, None).

    Decimals become plain decimal strings (never floats or exponents), datetimes ISO 8601
    (aware ones in UTC), enums their value, sets sorted lists, pydantic secrets
    ``"[redacted]"``. Raises ParameterError naming the path of a value that has no JSON
    form (NaN or infinite floats, bytes, arbitrary objects).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ParameterError(path, "is not a finite number; use a Decimal string for amounts")
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_jsonable(value.value, path)
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, UUID | PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v, f"{path}[]") for v in value]
        return sorted(items, key=canonical_json)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model: its JSON mode masks SecretStr fields
        return to_jsonable(dump(mode="json"), path)
    raise ParameterError(path, f"has type {type(value).__name__}, which has no JSON form")


def canonical_json(value: Any) -> str:
    """Serialise plain JSON values canonically: sorted keys, no spaces, non-ASCII kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_at(at: datetime) -> str:
    """The hashed form of an event time: UTC ISO 8601 with microseconds.

    Naive values are read as UTC: SQLite hands back the UTC wall time without an offset.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    elif at.utcoffset():  # already UTC (any zero-offset zone) prints the same "+00:00"
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def utc(at: datetime) -> datetime:
    """``at`` as an aware UTC datetime (naive values are taken to be UTC already)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
