"""What a step moves, as the policy measures it: asset, amount, account, destination.

Each money-moving operation declares how its parameters read as movements (its
``MoneyMoved`` in ``treasury.operations.spec``); this module holds what they share.

A value is *unknown* while it is an unresolved template (a string containing ``${{``, or
whatever the caller's ``resolvable`` predicate rejects). Unknown is not the same as
absent or malformed: unknown values skip a rule before run time, bad ones deny it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from treasury.errors import ParameterError
from treasury.models import parse_amount

Resolvable = Callable[[str], bool]
_EVM = re.compile(r"^0x[0-9a-fA-F]{40}$")


def default_resolvable(value: str) -> bool:
    """A string is final unless it still holds a ``${{ … }}`` template."""
    return "${{" not in value


def normalize_destination(value: str) -> str:
    """Compare-ready form: EVM hex addresses ignore case (EIP-55 checksums); others are exact."""
    text = value.strip()
    return text.lower() if _EVM.match(text) else text


@dataclass(frozen=True)
class Movement:
    """One measurable movement of a step. ``None`` means absent unless the field is in ``unknown``."""

    op: str
    leg: int
    asset: str | None
    amount: Decimal | None
    account: str | None
    destination: str | None
    chain: str | None = None
    address_ext: str | None = None
    amount_param: str = "amount"
    amount_error: str | None = None  # absent or malformed (a template is unknown, not an error)
    unknown: frozenset[str] = frozenset()

    def known(self, *names: str) -> bool:
        return not (self.unknown & set(names))


class Reader:
    """Reads parameters, recording which are still templates."""

    def __init__(self, params: Mapping[str, Any], resolvable: Resolvable | None) -> None:
        self.params = params
        self.is_final = resolvable or default_resolvable
        self.unknown: set[str] = set()

    def text(self, name: str, as_field: str, *, upper: bool = False) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            value = str(value)
        if not self.is_final(value):
            self.unknown.add(as_field)
            return None
        value = value.strip()
        return value.upper() if upper else value

    def amount(self, name: str) -> tuple[Decimal | None, str | None]:
        value = self.params.get(name)
        if value is None or value == "":
            return None, f"parameter {name!r} is missing"
        if isinstance(value, str) and not self.is_final(value):
            self.unknown.add("amount")
            return None, None
        try:
            return parse_amount(value, field=name), None
        except ParameterError as exc:
            return None, str(exc)
