"""Canonical JSON as audit hashes are computed over it (:mod:`treasury.canonical`).

An event's payload is converted to plain JSON values (``Decimal`` to a plain decimal string,
``datetime`` to ISO 8601, enums to their value, secrets masked), then serialised with sorted
keys, no whitespace and UTF-8 text. The same text is stored in the ``payload`` column, so a
verifier can hash what it reads without re-encoding it.
"""

from __future__ import annotations

from datetime import UTC, datetime

# The serialiser and the conversion live in treasury.canonical (shared with approvals,
# decisions and the CLI); audit payloads use their defaults: Decimals as written, times in UTC.
from treasury.canonical import REDACTED, canonical_json, to_jsonable
from treasury.clock import as_utc

__all__ = ["REDACTED", "canonical_json", "format_at", "to_jsonable", "utc"]


def format_at(at: datetime) -> str:
    """The hashed form of an event time: UTC ISO 8601 with microseconds.

    Naive values are read as UTC: SQLite hands back the UTC wall time without an offset.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    elif at.utcoffset():  # already UTC (any zero-offset zone) prints the same "+00:00"
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


utc = as_utc  # the audit layer's name for it
