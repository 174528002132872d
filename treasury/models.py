"""Shared vocabulary: permissions, rate classes, states and money helpers.

Everything here is pure and imported from every layer, so it depends on nothing
but the standard library and pydantic.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from treasury.errors import ParameterError


class Permission(StrEnum):
    """The six API-key permission words, identical everywhere (docs/reference.md section 2)."""

    READ = "read"
    TRADE = "trade"
    WITHDRAW = "withdraw"
    FIAT_WITHDRAW = "fiat_withdraw"
    TRANSFER = "transfer"
    WHITELIST = "whitelist"


class RateClass(StrEnum):
    """Rate-limit buckets per API key: query 2/s, order 10/s, transfer 1/s by default."""

    QUERY = "query"
    ORDER = "order"
    TRANSFER = "transfer"


class RetryStrategy(StrEnum):
    """How an operation may be retried after an error whose outcome is unknown."""

    SAFE = "safe"
    RECONCILE_THEN_RETRY = "reconcile_then_retry"
    RECONCILE_THEN_ESCALATE = "reconcile_then_escalate"


class RunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_RUN


_TERMINAL_RUN = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.REJECTED, RunState.EXPIRED, RunState.CANCELLED}
)


class StepState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_STEP


_TERMINAL_STEP = frozenset(
    {StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED}
)


class ExecState(StrEnum):
    """State of one money-moving request (docs/reference.md section 5)."""

    PREPARED = "PREPARED"
    SENDING = "SENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


# --------------------------------------------------------------------------- money

MAX_DECIMAL_PLACES = 18
_PLAIN_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def parse_amount(
    value: Any,
    *,
    field: str,
    allow_zero: bool = False,
    max_places: int = MAX_DECIMAL_PLACES,
) -> Decimal:
    """Parse a money amount strictly.

    Accepts a ``Decimal``, an ``int`` or a plain decimal string such as ``"12.50"``.
    Refuses floats (binary noise), booleans, exponents, NaN/Infinity, negatives,
    zero (unless ``allow_zero``) and more than ``max_places`` decimals.

    Raises:
        ParameterError: naming ``field``.
    """
    if isinstance(value, bool | float):
        raise ParameterError(
            field, f"must be a decimal string such as \"12.50\", not {type(value).__name__} {value!r}"
        )
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ParameterError(field, f"must be a finite amount, got {value}")
        text = format(value, "f")
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ParameterError(field, f"must be a decimal string, got {type(value).__name__}")
    if text.startswith("-"):
        raise ParameterError(field, f"must not be negative, got {text!r}")
    if not _PLAIN_DECIMAL.match(text):
        raise ParameterError(field, f"is not a plain decimal number: {text!r}")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - regex already guards
        raise ParameterError(field, f"is not a decimal number: {text!r}") from exc
    places = len(text.split(".", 1)[1]) if "." in text else 0
    if places > max_places:
        raise ParameterError(field, f"has {places} decimal places; at most {max_places} allowed")
    if amount == 0 and not allow_zero:
        raise ParameterError(field, "must be greater than zero")
    return amount


def amount_value(value: Any, *, field: str = "amount", allow_zero: bool = False) -> Decimal:
    """:func:`parse_amount` for pydantic validators: the same rules, its reason as a ValueError."""
    try:
        return parse_amount(value, field=field, allow_zero=allow_zero)
    except ParameterError as exc:
        raise ValueError(exc.reason) from None


def format_amount(amount: Decimal) -> str:
    """Render a Decimal as a plain string without exponent or trailing zeros ("100", "0.5")."""
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {amount}")
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
