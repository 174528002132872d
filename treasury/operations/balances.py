"""Reading an account's balances answer (``GET /api/v1/account``)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


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
